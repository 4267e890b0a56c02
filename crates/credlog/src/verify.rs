//! Offline verification of an audit export (`credgate audit verify`).
//!
//! An auditor runs this on a file the gateway produced ([`super::export`]),
//! with the checkpoint verifier key obtained out of band, and optionally a
//! checkpoint saved from an earlier visit. Nothing from the gateway is
//! trusted except through that key:
//!
//! 1. the checkpoint note must be signed by the key; the header's unsigned
//!    fields must agree with it;
//! 2. entries must be exactly seq `start, start+1, …, end-1`, one per line —
//!    a missing, duplicated, reordered or extra line is named;
//! 3. each entry must hash to the leaf hash next to it, must be a well-formed
//!    canonical v1 entry, and (CSV) its readable columns must match it — the
//!    first altered entry is named;
//! 4. the leaf hashes and the range proof must rebuild the signed root, which
//!    authenticates every leaf hash (and so every entry checked against one);
//! 5. with `--previous`, the earlier checkpoint must be by the same key and
//!    log, and a prefix of this one: recomputed from the entries when the
//!    export starts at 0 and reaches it, else by the consistency proof the
//!    export carries. A log whose history was rewritten fails here even if
//!    the operator re-signed everything.
//!
//! The first failure stops verification and names its line (1-based) and,
//! where known, the sequence number.

use std::fmt;
use std::io::BufRead;

use crate::checkpoint::{Checkpoint, CheckpointVerifier};
use crate::entry::AuditEntry;
use crate::export::{
    CSV_COLUMNS, EXPORT_FORMAT, EXPORT_VERSION, ExportHeader, ExportLine, csv_columns_of,
    decode_hash, encode_hash, parse_csv_line, root_from_range,
};
use crate::merkle::{self, Hash};

/// Why an export did not verify, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct VerifyError {
    /// 1-based line of the file, when the failure has one.
    pub line: Option<usize>,
    /// Sequence number of the entry concerned, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.seq) {
            (Some(l), Some(s)) => write!(f, "line {l} (seq {s}): {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            (None, Some(s)) => write!(f, "seq {s}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

fn fail(line: Option<usize>, seq: Option<u64>, message: impl Into<String>) -> VerifyError {
    VerifyError {
        line,
        seq,
        message: message.into(),
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note itself, to save for the next `--previous`.
    pub note: String,
    /// First sequence number in the file.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Size of the earlier checkpoint this one was shown consistent with.
    pub consistent_with: Option<u64>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ok: {} entries (seq {}..{}) verified against the checkpoint of {} at tree size {}, root {}",
            self.end - self.start,
            self.start,
            self.end,
            self.checkpoint.origin,
            self.checkpoint.size,
            encode_hash(&self.checkpoint.root)
        )?;
        if let Some(m) = self.consistent_with {
            writeln!(
                f,
                "ok: consistent with the previous checkpoint at tree size {m}"
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Jsonl,
    Csv,
}

/// Verify the export read from `input` (see the module docs).
///
/// `previous` is an earlier signed checkpoint note by the same key.
pub fn verify_export(
    input: impl BufRead,
    key: &CheckpointVerifier,
    previous: Option<&str>,
) -> Result<VerifyReport, VerifyError> {
    verify_export_keys(input, std::slice::from_ref(key), previous)
}

/// [`verify_export`] with a verifier list: each checkpoint (the export's
/// and `previous`) must be signed by one of `keys`, not necessarily the same
/// one, so an export verifies across a rotation of the checkpoint key when
/// the list holds both keys (see [`CheckpointVerifier::verify_any`]).
pub fn verify_export_keys(
    input: impl BufRead,
    keys: &[CheckpointVerifier],
    previous: Option<&str>,
) -> Result<VerifyReport, VerifyError> {
    if keys.is_empty() {
        return Err(fail(None, None, "no checkpoint verifier key given"));
    }
    let mut lines = input.lines().enumerate().map(|(i, l)| {
        let n = i + 1;
        l.map(|s| (n, s.strip_suffix('\r').map(str::to_owned).unwrap_or(s)))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => fail(Some(n), None, "not valid UTF-8"),
                _ => fail(Some(n), None, format!("read error: {e}")),
            })
    });
    let (first_no, first) = lines
        .next()
        .transpose()?
        .ok_or_else(|| fail(None, None, "the file is empty"))?;

    // Header.
    let (flavour, header_no, header_json) = if first.starts_with("record,") {
        let cols = parse_csv_line(&first).map_err(|e| fail(Some(first_no), None, e))?;
        if cols != CSV_COLUMNS {
            return Err(fail(
                Some(first_no),
                None,
                format!("CSV columns must be: {}", CSV_COLUMNS.join(",")),
            ));
        }
        let (n, line) = lines
            .next()
            .transpose()?
            .ok_or_else(|| fail(Some(first_no + 1), None, "missing export record"))?;
        let cells = parse_csv_line(&line).map_err(|e| fail(Some(n), None, e))?;
        if cells.len() != CSV_COLUMNS.len()
            || cells[0] != "export"
            || cells[1..CSV_COLUMNS.len() - 1]
                .iter()
                .any(|c| !c.is_empty())
        {
            return Err(fail(
                Some(n),
                None,
                "the second record must be the export header",
            ));
        }
        (Flavour::Csv, n, cells[CSV_COLUMNS.len() - 1].clone())
    } else {
        (Flavour::Jsonl, first_no, first)
    };
    let header: ExportHeader = serde_json::from_str(&header_json).map_err(|e| {
        fail(
            Some(header_no),
            None,
            format!("malformed export header: {e}"),
        )
    })?;
    if header.format != EXPORT_FORMAT || header.version != EXPORT_VERSION {
        return Err(fail(
            Some(header_no),
            None,
            format!("not a {EXPORT_FORMAT} version {EXPORT_VERSION} file"),
        ));
    }
    let (cp, _) = CheckpointVerifier::verify_any(keys, &header.checkpoint).map_err(|e| {
        fail(
            Some(header_no),
            None,
            format!(
                "the checkpoint does not verify with the given key{}: {e}",
                plural(keys)
            ),
        )
    })?;
    if cp.size != header.tree_size {
        return Err(fail(
            Some(header_no),
            None,
            format!(
                "header tree_size {} differs from the signed checkpoint's {}",
                header.tree_size, cp.size
            ),
        ));
    }
    let (start, end) = (header.start, header.end);
    if start > end || end > cp.size {
        return Err(fail(
            Some(header_no),
            None,
            format!(
                "range [{start}, {end}) is not inside the tree of size {}",
                cp.size
            ),
        ));
    }

    // Entries.
    let expected = end - start;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut last_line = header_no;
    for item in lines {
        let (n, line) = item?;
        last_line = n;
        let want = start + leaves.len() as u64;
        if leaves.len() as u64 == expected {
            return Err(fail(
                Some(n),
                None,
                format!("extra line after the last entry of the range [{start}, {end})"),
            ));
        }
        let (seq, leaf, entry, columns) = match flavour {
            Flavour::Jsonl => {
                let l: ExportLine = serde_json::from_str(&line)
                    .map_err(|e| fail(Some(n), Some(want), format!("malformed entry line: {e}")))?;
                (l.seq, l.leaf.0, l.entry, None)
            }
            Flavour::Csv => {
                let mut cells = parse_csv_line(&line).map_err(|e| fail(Some(n), Some(want), e))?;
                if cells.len() != CSV_COLUMNS.len() || cells[0] != "entry" {
                    return Err(fail(
                        Some(n),
                        Some(want),
                        format!(
                            "an entry record has {} cells starting with 'entry'",
                            CSV_COLUMNS.len()
                        ),
                    ));
                }
                let seq = parse_seq(&cells[1])
                    .ok_or_else(|| fail(Some(n), Some(want), "seq is not a number"))?;
                let leaf = decode_hash(&cells[10])
                    .ok_or_else(|| fail(Some(n), Some(want), "leaf is not 32 bytes of base64"))?;
                let entry = cells.pop().unwrap_or_default();
                (seq, leaf, entry, Some(cells[2..10].to_vec()))
            }
        };
        if seq != want {
            return Err(fail(
                Some(n),
                Some(want),
                format!(
                    "expected seq {want}, found seq {seq}: entries are missing, duplicated or out of order"
                ),
            ));
        }
        if merkle::leaf_hash(entry.as_bytes()) != leaf {
            return Err(fail(
                Some(n),
                Some(seq),
                "the entry does not match its leaf hash: it was altered",
            ));
        }
        let parsed = AuditEntry::parse(entry.as_bytes())
            .ok()
            .filter(|e| e.canonical() == entry.as_bytes())
            .ok_or_else(|| {
                fail(
                    Some(n),
                    Some(seq),
                    "the entry is not a canonical audit entry of a known version",
                )
            })?;
        if let Some(cols) = columns {
            let want_cols = csv_columns_of(&parsed);
            if let Some(i) = (0..want_cols.len()).find(|&i| cols[i] != want_cols[i]) {
                return Err(fail(
                    Some(n),
                    Some(seq),
                    format!(
                        "column '{}' does not match the signed entry",
                        CSV_COLUMNS[i + 2]
                    ),
                ));
            }
        }
        leaves.push(leaf);
    }
    if (leaves.len() as u64) < expected {
        let missing = start + leaves.len() as u64;
        return Err(fail(
            Some(last_line + 1),
            Some(missing),
            format!(
                "the file ends before seq {missing}; the header promises entries up to seq {} (truncated)",
                end.saturating_sub(1)
            ),
        ));
    }

    // Root.
    let proof: Vec<Hash> = header.range_proof.iter().map(|h| h.0).collect();
    let root = root_from_range(start, cp.size, &leaves, &proof).map_err(|e| {
        fail(
            Some(header_no),
            None,
            format!("range proof does not fit the range: {e}"),
        )
    })?;
    if root != cp.root {
        return Err(fail(
            None,
            None,
            "the entries and range proof do not rebuild the signed root: an entry was altered \
             together with its leaf hash, or the range proof was altered",
        ));
    }

    // Consistency with an earlier checkpoint.
    let consistent_with = match previous {
        None => None,
        Some(note) => Some(check_previous(note, keys, &cp, &header, start, &leaves)?),
    };
    Ok(VerifyReport {
        checkpoint: cp,
        note: header.checkpoint,
        start,
        end,
        consistent_with,
    })
}

fn parse_seq(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn check_previous(
    note: &str,
    keys: &[CheckpointVerifier],
    cp: &Checkpoint,
    header: &ExportHeader,
    start: u64,
    leaves: &[Hash],
) -> Result<u64, VerifyError> {
    let (prev, _) = CheckpointVerifier::verify_any(keys, note).map_err(|e| {
        fail(
            None,
            None,
            format!(
                "the previous checkpoint does not verify with the given key{}: {e}{}",
                plural(keys),
                if keys.len() == 1 {
                    " (if the checkpoint key was rotated since, give the old verifier key too)"
                } else {
                    ""
                }
            ),
        )
    })?;
    if prev.origin != cp.origin {
        return Err(fail(
            None,
            None,
            format!(
                "the previous checkpoint is for log '{}', the export for '{}'",
                prev.origin, cp.origin
            ),
        ));
    }
    if prev.size > cp.size {
        return Err(fail(
            None,
            None,
            format!(
                "the previous checkpoint (size {}) is larger than the export's (size {}): \
                 export against a newer checkpoint",
                prev.size, cp.size
            ),
        ));
    }
    let rewritten = |how: &str| {
        fail(
            None,
            None,
            format!(
                "NOT consistent with the previous checkpoint (size {}): {how}; \
                 the log's history was rewritten, or the previous checkpoint is forged",
                prev.size
            ),
        )
    };
    let covered = start == 0 && prev.size <= leaves.len() as u64;
    if covered {
        if merkle::root_of(&leaves[..prev.size as usize]) != prev.root {
            return Err(rewritten(
                "the export's first entries do not rebuild its root",
            ));
        }
        return Ok(prev.size);
    }
    match &header.consistency {
        Some(c) if c.old_size == prev.size => {
            let proof: Vec<Hash> = c.proof.iter().map(|h| h.0).collect();
            merkle::verify_consistency(prev.size, cp.size, &prev.root, &cp.root, &proof)
                .map_err(|e| rewritten(&format!("consistency proof fails ({e})")))?;
            Ok(prev.size)
        }
        _ => Err(fail(
            None,
            None,
            format!(
                "cannot check consistency with the previous checkpoint (size {}): export from \
                 seq 0 through at least {0}, or with consistency_from = {0}",
                prev.size
            ),
        )),
    }
}

fn plural(keys: &[CheckpointVerifier]) -> &'static str {
    if keys.len() == 1 { "" } else { "s" }
}

/// Parse verifier keys: each is the key itself (`name+id+key`) or a file
/// holding one or more, one per line (blank lines and `#` comments
/// skipped).
pub fn parse_verifier_keys(keys: &[String]) -> Result<Vec<CheckpointVerifier>, String> {
    let mut out = Vec::new();
    for key in keys {
        match CheckpointVerifier::from_verifier_key(key.trim()) {
            Ok(v) => out.push(v),
            Err(e) => match std::fs::read_to_string(key) {
                Ok(text) => {
                    let mut n = 0;
                    for (i, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        out.push(
                            CheckpointVerifier::from_verifier_key(line)
                                .map_err(|e| format!("--key {key}:{}: {e}", i + 1))?,
                        );
                        n += 1;
                    }
                    if n == 0 {
                        return Err(format!("--key {key}: the file holds no verifier key"));
                    }
                }
                Err(_) => return Err(format!("--key: {e} (and no file of that name)")),
            },
        }
    }
    if out.is_empty() {
        return Err("--key: give at least one checkpoint verifier key".into());
    }
    Ok(out)
}

/// `credgate audit verify`: `key` is the verifier key itself or a file
/// holding it; `previous` a file holding an earlier signed checkpoint.
pub fn verify_file(
    file: &std::path::Path,
    key: &str,
    previous: Option<&std::path::Path>,
) -> Result<VerifyReport, String> {
    verify_file_keys(file, &[key.to_owned()], previous)
}

/// [`verify_file`] with a verifier list (`--key` repeated, or a file of
/// keys): across a rotation of the checkpoint key, the old and the new key.
pub fn verify_file_keys(
    file: &std::path::Path,
    keys: &[String],
    previous: Option<&std::path::Path>,
) -> Result<VerifyReport, String> {
    let verifiers = parse_verifier_keys(keys)?;
    let previous = previous
        .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let input = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    verify_export_keys(
        std::io::BufReader::new(input),
        &verifiers,
        previous.as_deref(),
    )
    .map_err(|e| format!("{}: verification FAILED at {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportFormat;
    use crate::export::tests::{entry, entry_v2, entry_v3, export_of, fixed_signer};

    fn verify(text: &str, prev: Option<&str>) -> Result<VerifyReport, VerifyError> {
        let key = fixed_signer(7).verifier();
        verify_export(text.as_bytes(), &key, prev)
    }

    #[test]
    fn untouched_exports_verify_and_tampering_is_named() {
        let signer = fixed_signer(7);
        let entries: Vec<AuditEntry> = (0..11).map(entry).collect();
        for format in [ExportFormat::Jsonl, ExportFormat::Csv] {
            let hdr = if format == ExportFormat::Csv { 2 } else { 1 };
            for (a, b) in [(0, 11), (3, 8), (0, 0), (11, 11), (10, 11)] {
                let text = export_of(&entries, a, b, &signer, format, None);
                let r = verify(&text, None).unwrap_or_else(|e| panic!("{a}..{b}: {e}"));
                assert_eq!((r.start, r.end, r.checkpoint.size), (a, b, 11));
            }
            let text = export_of(&entries, 2, 9, &signer, format, None);
            let lines: Vec<&str> = text.lines().collect();
            let join = |v: Vec<&str>| v.join("\n") + "\n";
            // Line of the entry with seq s.
            let line_of = |s: usize| hdr + 1 + (s - 2);

            let mut flipped = lines.clone();
            let altered = lines[line_of(5) - 1].replace("r-5", "r-X");
            flipped[line_of(5) - 1] = &altered;
            let e = verify(&join(flipped), None).unwrap_err();
            assert_eq!((e.line, e.seq), (Some(line_of(5)), Some(5)), "{e}");

            let mut deleted = lines.clone();
            deleted.remove(line_of(4) - 1);
            let e = verify(&join(deleted), None).unwrap_err();
            assert_eq!((e.line, e.seq), (Some(line_of(4)), Some(4)), "{e}");

            let mut swapped = lines.clone();
            swapped.swap(line_of(3) - 1, line_of(6) - 1);
            let e = verify(&join(swapped), None).unwrap_err();
            assert_eq!((e.line, e.seq), (Some(line_of(3)), Some(3)), "{e}");

            let truncated = join(lines[..line_of(7)].to_vec());
            let e = verify(&truncated, None).unwrap_err();
            assert_eq!((e.line, e.seq), (Some(line_of(8)), Some(8)), "{e}");

            let other = export_of(&entries, 2, 9, &fixed_signer(8), format, None);
            let mut forged = lines.clone();
            forged[hdr - 1] = other.lines().nth(hdr - 1).unwrap();
            let e = verify(&join(forged), None).unwrap_err();
            assert_eq!(e.line, Some(hdr), "{e}");
            assert!(e.message.contains("checkpoint"), "{e}");
        }
        // Editing a readable CSV column is caught like editing the entry.
        let text = export_of(&entries, 0, 3, &signer, ExportFormat::Csv, None);
        let edited = text.replacen(",financing,ok,200,", ",financing,denied,200,", 1);
        let e = verify(&edited, None).unwrap_err();
        assert_eq!((e.line, e.seq), (Some(3), Some(0)), "{e}");
        assert!(e.message.contains("outcome"), "{e}");
    }

    /// A log that spans the entry-version change (v1 entries, then v2 with
    /// policy hashes) verifies as a whole and in part, in both formats; an
    /// edited policy hash is caught like any other edit.
    #[test]
    fn logs_spanning_entry_versions_verify() {
        let signer = fixed_signer(7);
        // v1, v2, then v3 under key k1 and, after a rotation, k2.
        let entries: Vec<AuditEntry> = (0..14)
            .map(|i| match i {
                0..5 => entry(i),
                5..10 => entry_v2(i, "sha256:aaaa"),
                10..12 => entry_v3(i, "sha256:aaaa", "k1"),
                _ => entry_v3(i, "sha256:aaaa", "k2"),
            })
            .collect();
        for format in [ExportFormat::Jsonl, ExportFormat::Csv] {
            for (a, b) in [(0, 14), (3, 7), (6, 10), (8, 13), (11, 14)] {
                let text = export_of(&entries, a, b, &signer, format, None);
                let r = verify(&text, None).unwrap_or_else(|e| panic!("{a}..{b}: {e}"));
                assert_eq!((r.start, r.end), (a, b));
            }
        }
        let text = export_of(&entries, 0, 14, &signer, ExportFormat::Jsonl, None);
        assert!(text.contains(r#"\"policy\":\"sha256:aaaa\""#), "{text}");
        let edited = text.replacen("sha256:aaaa", "sha256:bbbb", 1);
        let e = verify(&edited, None).unwrap_err();
        assert_eq!(e.seq, Some(5), "{e}");
        // A subject's key id is part of the leaf: changing it is tampering.
        let edited = text.replacen(r#"\"subject\":\"k2:"#, r#"\"subject\":\"k1:"#, 1);
        assert_ne!(edited, text);
        let e = verify(&edited, None).unwrap_err();
        assert_eq!(e.seq, Some(12), "{e}");
    }

    #[test]
    fn consistency_with_previous_checkpoints() {
        let signer = fixed_signer(7);
        let entries: Vec<AuditEntry> = (0..11).map(entry).collect();
        let old = export_of(&entries[..6], 0, 6, &signer, ExportFormat::Jsonl, None);
        let old_note = verify(&old, None).unwrap().note;
        // Whole-log export: recomputed from the entries.
        let full = export_of(&entries, 0, 11, &signer, ExportFormat::Jsonl, None);
        assert_eq!(
            verify(&full, Some(&old_note)).unwrap().consistent_with,
            Some(6)
        );
        // Partial export: needs the carried proof.
        let part = export_of(&entries, 7, 11, &signer, ExportFormat::Jsonl, None);
        assert!(
            verify(&part, Some(&old_note))
                .unwrap_err()
                .message
                .contains("cannot check")
        );
        let part = export_of(&entries, 7, 11, &signer, ExportFormat::Jsonl, Some(6));
        assert_eq!(
            verify(&part, Some(&old_note)).unwrap().consistent_with,
            Some(6)
        );
        // A history rewritten before size 6, re-signed with the real key.
        let mut rewritten: Vec<AuditEntry> = entries.clone();
        rewritten[2].outcome = "forbidden".into();
        let forged = export_of(&rewritten[..6], 0, 6, &signer, ExportFormat::Jsonl, None);
        let forged_note = verify(&forged, None).unwrap().note;
        for e in [
            verify(&full, Some(&forged_note)).unwrap_err(),
            verify(
                &export_of(&entries, 7, 11, &signer, ExportFormat::Jsonl, Some(6)),
                Some(&forged_note),
            )
            .unwrap_err(),
        ] {
            assert!(e.message.contains("NOT consistent"), "{e}");
        }
        // A previous checkpoint signed by another key.
        let alien = export_of(
            &entries[..6],
            0,
            6,
            &fixed_signer(9),
            ExportFormat::Jsonl,
            None,
        );
        let alien_note = verify_export(alien.as_bytes(), &fixed_signer(9).verifier(), None)
            .unwrap()
            .note;
        assert!(verify(&full, Some(&alien_note)).is_err());
    }

    #[test]
    fn a_verifier_list_verifies_across_a_key_rotation() {
        let (old_key, new_key) = (fixed_signer(7), fixed_signer(8));
        let entries: Vec<AuditEntry> = (0..11).map(entry).collect();
        let before = export_of(&entries[..6], 0, 6, &old_key, ExportFormat::Jsonl, None);
        let old_note = verify(&before, None).unwrap().note;
        // After the rotation the log goes on; its checkpoints are signed by the new key.
        let after = export_of(&entries, 0, 11, &new_key, ExportFormat::Jsonl, None);
        let both = [new_key.verifier(), old_key.verifier()];
        let r = verify_export_keys(after.as_bytes(), &both, Some(&old_note)).unwrap();
        assert_eq!((r.checkpoint.size, r.consistent_with), (11, Some(6)));
        // Without the old key the previous checkpoint cannot be checked...
        let e = verify_export_keys(after.as_bytes(), &both[..1], Some(&old_note)).unwrap_err();
        assert!(
            e.message.contains("previous checkpoint does not verify"),
            "{e}"
        );
        assert!(e.message.contains("rotated"), "{e}");
        // ...and without the new one the export's own checkpoint is not trusted.
        let e = verify_export_keys(after.as_bytes(), &both[1..], Some(&old_note)).unwrap_err();
        assert!(e.message.contains("the checkpoint does not verify"), "{e}");
        // A rewritten history stays a rewritten history under either key.
        let mut rewritten = entries.clone();
        rewritten[2].outcome = "forbidden".into();
        let forged = export_of(&rewritten, 0, 11, &new_key, ExportFormat::Jsonl, None);
        let e = verify_export_keys(forged.as_bytes(), &both, Some(&old_note)).unwrap_err();
        assert!(e.message.contains("NOT consistent"), "{e}");
        // An empty list is refused, not treated as "anything goes".
        assert!(verify_export_keys(after.as_bytes(), &[], None).is_err());
    }

    #[test]
    fn verify_any_rejects_a_bad_signature_by_a_listed_key() {
        let (a, b) = (fixed_signer(7), fixed_signer(8));
        let entries: Vec<AuditEntry> = (0..3).map(entry).collect();
        let text = export_of(&entries, 0, 3, &a, ExportFormat::Jsonl, None);
        let note = verify(&text, None).unwrap().note;
        let keys = [b.verifier(), a.verifier()];
        assert_eq!(CheckpointVerifier::verify_any(&keys, &note).unwrap().1, 1);
        // Tamper with the signed size: a's signature no longer verifies.
        let mut lines: Vec<&str> = note.split('\n').collect();
        lines[1] = "4";
        let bad = lines.join("\n");
        assert_eq!(
            CheckpointVerifier::verify_any(&keys, &bad).unwrap_err(),
            crate::checkpoint::CheckpointError::BadSignature
        );
        assert_eq!(
            CheckpointVerifier::verify_any(&keys[..1], &note).unwrap_err(),
            crate::checkpoint::CheckpointError::NotSignedByKey
        );
    }

    #[test]
    fn garbage_never_verifies() {
        for text in [
            "",
            "\n",
            "{}",
            "record,seq\n",
            "not json\n",
            "\u{feff}{\"x\":1}\n",
        ] {
            assert!(verify(text, None).is_err(), "{text:?}");
        }
        let bytes: &[u8] = b"{\"format\":\xff}\n";
        let e = verify_export(bytes, &fixed_signer(7).verifier(), None).unwrap_err();
        assert_eq!(e.line, Some(1));
    }
}
