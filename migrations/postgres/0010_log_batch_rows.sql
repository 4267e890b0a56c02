-- Audit log: a batch writes its entries once (src/store/tlog.rs, PgStorage).
-- The partial entry bundle and the partial level-0 hash tile are no longer
-- rows rewritten by every batch: each batch inserts one `tlog_batches` row
-- with its entries in the partial bundle (bundle encoding) and their leaf
-- hashes, keyed by the sequence number of the first of them; the partial
-- bundle and tile are those rows joined in order. The batch that fills a
-- bundle writes the full bundle (`tlog_bundles`) and level-0 tile
-- (`tlog_tiles`) and deletes that bundle's batch rows, in its transaction.
-- Partial tiles of level 1 and up stay in `tlog_tiles`, written when they
-- change. Served bytes are unchanged.
CREATE TABLE tlog_batches (
    first   BIGINT PRIMARY KEY,
    entries BYTEA  NOT NULL,
    leaves  BYTEA  NOT NULL
);

-- An existing log's partial bundle and level-0 tile become one batch row.
INSERT INTO tlog_batches (first, entries, leaves)
SELECT b.idx * 256, b.data, t.data
FROM tlog_head h
JOIN tlog_bundles b ON b.idx = h.size / 256
JOIN tlog_tiles t ON t.level = 0 AND t.idx = h.size / 256
WHERE h.id = 1 AND h.size % 256 <> 0;
DELETE FROM tlog_bundles b USING tlog_head h
WHERE h.id = 1 AND h.size % 256 <> 0 AND b.idx = h.size / 256;
DELETE FROM tlog_tiles t USING tlog_head h
WHERE h.id = 1 AND h.size % 256 <> 0 AND t.level = 0 AND t.idx = h.size / 256;
