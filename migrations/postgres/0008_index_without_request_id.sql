-- The search index never looked entries up by request id: the column and
-- its index only cost a B-tree insert per entry. (The request id stays in
-- every entry in the log.)
DROP INDEX audit_index_request;
ALTER TABLE audit_index DROP COLUMN request_id;
