//! Audit log exports: a contiguous slice of the log plus everything an
//! auditor needs to check it offline against a signed checkpoint, without
//! trusting the gateway or its operator.
//!
//! # Why a contiguous range
//!
//! An export always covers the sequence numbers `[start, end)` of the tree
//! named by its checkpoint (`end <= tree_size`), with no gaps. The verifier
//! recomputes the checkpoint's root from the entries and a short *range
//! proof* (the hashes of the subtrees outside the range, at most about
//! 2·log2(tree_size) of them). So not only is every entry proven to be in the
//! log: the file is proven *complete* for its range — an entry cannot be
//! dropped, inserted, reordered or altered, and the tail cannot be cut, without
//! the root changing. Per-entry inclusion proofs of a filtered selection could
//! not prove that; auditors who want a filtered view search the API, then
//! export the range they care about. Exports of the whole log (`start = 0`,
//! the default) need no proof hashes at all.
//!
//! Each entry line also carries the leaf hash the gateway stored when it
//! appended the entry. The leaf hashes are authenticated as a whole by the
//! root; each entry is then checked against its own leaf, which lets the
//! verifier name the *first* altered entry instead of only reporting that the
//! root differs (an operator who rewrote an entry in the database is caught
//! exactly there).
//!
//! # JSON Lines (`application/x-ndjson`)
//!
//! ```text
//! {"format":"credgate-audit-export","version":1,"checkpoint":"<signed note>","tree_size":N,"start":A,"end":B,"range_proof":["<b64>",…],"consistency":null}
//! {"seq":A,"leaf":"<b64 leaf hash>","entry":"<canonical entry JSON, as a string>"}
//! …one line per entry, seq A, A+1, …, B-1
//! ```
//!
//! * `checkpoint` — the C2SP signed note ([`crate::checkpoint`]) for a tree
//!   of `tree_size` leaves; its root is what everything is checked against.
//! * `range_proof` — hashes of the subtrees that lie outside `[start, end)`,
//!   left to right, as enumerated by [`range_proof_ranges`].
//! * `consistency` — optional `{"old_size":M,"proof":[…]}`: an RFC 9162
//!   consistency proof from an earlier tree size `M` to `tree_size`, for an
//!   auditor who saved the checkpoint of size `M` and exports a range that
//!   does not start at 0 (a range starting at 0 that reaches `M` proves
//!   consistency by itself).
//! * `entry` — the exact canonical bytes ([`crate::entry::AuditEntry::canonical`])
//!   whose leaf hash `SHA-256(0x00 || entry)` is in the tree. It is a JSON
//!   string (not an embedded object) so its bytes survive re-encoding.
//! * Hashes are standard base64 with padding, as in the checkpoint note.
//!
//! # CSV (`text/csv`, RFC 4180 quoting, one record per line)
//!
//! ```text
//! record,seq,ts,org,action,subject_type,subject,purpose,outcome,status,leaf,entry
//! export,,,,,,,,,,,"<the JSON Lines header object, CSV-quoted>"
//! entry,A,<ts>,<org>,<action>,<subject_type>,<subject hash>,<purpose>,<outcome>,<status>,<b64 leaf>,"<canonical entry, CSV-quoted>"
//! ```
//!
//! The readable columns between `seq` and `leaf` are for spreadsheets; the
//! verifier checks each of them against the signed `entry`, so editing a
//! visible cell is detected like editing the entry itself. No cell can start
//! with `=`, `+`, `-` or `@` (they are codes, hashes, digits and JSON), so the
//! file is safe to open in a spreadsheet.
//!
//! The format is frozen by the golden test in this module; verification is
//! [`crate::verify`].

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::entry::AuditEntry;
use crate::merkle::{self, Hash, ProofError};

/// Value of the header's `format` key.
pub const EXPORT_FORMAT: &str = "credgate-audit-export";
/// Current export format version.
pub const EXPORT_VERSION: u32 = 1;
/// Column names of the CSV flavour, in order.
pub const CSV_COLUMNS: [&str; 12] = [
    "record",
    "seq",
    "ts",
    "org",
    "action",
    "subject_type",
    "subject",
    "purpose",
    "outcome",
    "status",
    "leaf",
    "entry",
];

/// Export flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// JSON Lines: header object, then one object per entry.
    Jsonl,
    /// CSV with readable columns plus the signed entry.
    Csv,
}

impl ExportFormat {
    /// HTTP content type of the flavour.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// A 32-byte hash that travels as canonical padded base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct B64Hash(pub Hash);

impl Serialize for B64Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for B64Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        decode_hash(&s)
            .map(B64Hash)
            .ok_or_else(|| serde::de::Error::custom("not 32 bytes of canonical base64"))
    }
}

/// Strict base64 → 32-byte hash (canonical padding and trailing bits).
pub fn decode_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok().and_then(|v| Hash::try_from(v).ok())
}

/// Base64 of a hash, as used throughout the audit API and exports.
pub fn encode_hash(h: &Hash) -> String {
    B64.encode(h)
}

/// An RFC 9162 consistency proof carried by an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConsistency {
    /// The earlier tree size the proof starts from.
    pub old_size: u64,
    /// Proof hashes from `old_size` to the export's `tree_size`.
    pub proof: Vec<B64Hash>,
}

/// First line of an export (JSON Lines), or the `export` record (CSV).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// Always [`EXPORT_VERSION`] for this layout.
    pub version: u32,
    /// The C2SP signed checkpoint note everything is verified against.
    pub checkpoint: String,
    /// Tree size of that checkpoint (must equal the size inside the note).
    pub tree_size: u64,
    /// First sequence number in the file.
    pub start: u64,
    /// One past the last sequence number in the file.
    pub end: u64,
    /// Hashes of the subtrees outside `[start, end)` ([`range_proof_ranges`]).
    pub range_proof: Vec<B64Hash>,
    /// Optional consistency proof from an earlier size.
    pub consistency: Option<ExportConsistency>,
}

/// One entry line of a JSON Lines export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    /// Position in the log.
    pub seq: u64,
    /// Leaf hash stored when the entry was appended.
    pub leaf: B64Hash,
    /// Canonical entry bytes (UTF-8 JSON).
    pub entry: String,
}

/// Largest power of two strictly below `n` (RFC 6962 split); `n >= 2`.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The subtrees (leaf ranges, left to right) of the tree of `size` leaves
/// that lie wholly outside `[start, end)`: their hashes, with the leaves of
/// the range, determine the root.
///
/// Follows the RFC 6962 split, so every returned range is a subtree as MTH
/// shapes it and can be hashed from stored perfect nodes with
/// [`merkle::nodes_for`] / [`merkle::assemble`]. Empty when the range is the
/// whole tree; `[(0, size)]` when the range is empty at the edge.
pub fn range_proof_ranges(start: u64, end: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if start > end || end > size {
        return Err(ProofError::BadSize {
            old_size: end,
            new_size: size,
        });
    }
    let mut out = Vec::new();
    if size > 0 {
        outside(0, size, start, end, &mut out);
    }
    Ok(out)
}

fn outside(lo: u64, hi: u64, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
    if hi <= a || lo >= b {
        out.push((lo, hi));
    } else if !(a <= lo && hi <= b) {
        // Partial overlap implies at least two leaves.
        let mid = lo + split_point(hi - lo);
        outside(lo, mid, a, b, out);
        outside(mid, hi, a, b, out);
    }
}

/// Recompute the root of a tree of `size` leaves from the leaf hashes of
/// `[start, start + leaves.len())` and the range proof.
///
/// Hostile input is rejected without panicking: bad sizes and wrong proof
/// lengths are errors. The caller compares the result with a signed root.
pub fn root_from_range(
    start: u64,
    size: u64,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    let end = start
        .checked_add(leaves.len() as u64)
        .ok_or(ProofError::TreeFull)?;
    let ranges = range_proof_ranges(start, end, size)?;
    if ranges.len() != proof.len() {
        return Err(ProofError::WrongProofLength {
            expected: ranges.len(),
            got: proof.len(),
        });
    }
    if size == 0 {
        return Ok(merkle::EMPTY_ROOT);
    }
    let mut next = proof.iter();
    Ok(rebuild(0, size, start, end, leaves, &mut next))
}

fn rebuild<'a>(
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    leaves: &[Hash],
    proof: &mut impl Iterator<Item = &'a Hash>,
) -> Hash {
    if hi <= a || lo >= b {
        // The proof length was checked against the same recursion.
        proof.next().copied().unwrap_or(merkle::EMPTY_ROOT)
    } else if a <= lo && hi <= b {
        merkle::root_of(&leaves[(lo - a) as usize..(hi - a) as usize])
    } else {
        let mid = lo + split_point(hi - lo);
        let left = rebuild(lo, mid, a, b, leaves, proof);
        let right = rebuild(mid, hi, a, b, leaves, proof);
        merkle::node_hash(&left, &right)
    }
}

/// Quote one CSV cell when needed (RFC 4180).
fn csv_cell(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Split one CSV record (a single physical line) into cells.
///
/// Strict RFC 4180: quotes only around whole cells, `""` inside quotes.
pub fn parse_csv_line(line: &str) -> Result<Vec<String>, &'static str> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted cell"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some('"') => break,
                    Some(c) => cur.push(c),
                }
            }
            match chars.next() {
                None => {
                    cells.push(std::mem::take(&mut cur));
                    return Ok(cells);
                }
                Some(',') => cells.push(std::mem::take(&mut cur)),
                Some(_) => return Err("text after a closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        cells.push(std::mem::take(&mut cur));
                        return Ok(cells);
                    }
                    Some(',') => {
                        cells.push(std::mem::take(&mut cur));
                        break;
                    }
                    Some('"') => return Err("quote inside an unquoted cell"),
                    Some(c) => cur.push(c),
                }
            }
        }
    }
}

/// The readable CSV columns of an entry (`ts` … `status`), in column order.
pub fn csv_columns_of(e: &AuditEntry) -> [String; 8] {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.ts.clone(),
        o(&e.org),
        e.action.clone(),
        o(&e.subject_type),
        o(&e.subject),
        o(&e.purpose),
        e.outcome.clone(),
        e.status.to_string(),
    ]
}

/// Writes an export: header first, then entries in sequence order.
pub struct ExportWriter<W: Write> {
    out: W,
    format: ExportFormat,
    line: String,
}

impl<W: Write> ExportWriter<W> {
    /// Start an export by writing its header.
    pub fn new(mut out: W, format: ExportFormat, header: &ExportHeader) -> std::io::Result<Self> {
        let json = serde_json::to_string(header).map_err(std::io::Error::other)?;
        let mut line = String::new();
        match format {
            ExportFormat::Jsonl => {
                line.push_str(&json);
            }
            ExportFormat::Csv => {
                line.push_str(&CSV_COLUMNS.join(","));
                line.push('\n');
                line.push_str("export");
                line.push_str(&",".repeat(CSV_COLUMNS.len() - 2));
                line.push(',');
                csv_cell(&mut line, &json);
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        line.clear();
        Ok(Self { out, format, line })
    }

    /// Append one stored entry as it is: the export is evidence, so nothing
    /// is repaired or skipped here (the verifier judges).
    pub fn entry(&mut self, seq: u64, entry: &[u8], leaf: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(entry);
        let leaf = B64.encode(leaf);
        self.line.clear();
        match self.format {
            ExportFormat::Jsonl => {
                // Hand-built to keep the stored leaf as is even if it is not
                // 32 bytes; equivalent to serialising an ExportLine.
                self.line.push_str("{\"seq\":");
                self.line.push_str(&seq.to_string());
                self.line.push_str(",\"leaf\":");
                self.line
                    .push_str(&serde_json::to_string(&leaf).map_err(std::io::Error::other)?);
                self.line.push_str(",\"entry\":");
                self.line
                    .push_str(&serde_json::to_string(&*text).map_err(std::io::Error::other)?);
                self.line.push('}');
            }
            ExportFormat::Csv => {
                self.line.push_str("entry,");
                self.line.push_str(&seq.to_string());
                let cols = AuditEntry::parse(entry)
                    .map(|e| csv_columns_of(&e))
                    .unwrap_or_default();
                for c in &cols {
                    self.line.push(',');
                    csv_cell(&mut self.line, c);
                }
                self.line.push(',');
                self.line.push_str(&leaf);
                self.line.push(',');
                csv_cell(&mut self.line, &text);
            }
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }

    /// Flush and hand back the sink.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, CheckpointSigner};
    use crate::entry::AuditField;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A fixed Ed25519 key (PKCS#8 v1 around a constant seed), so signatures
    /// and therefore golden files are reproducible.
    pub(crate) fn fixed_signer(seed: u8) -> CheckpointSigner {
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&[seed; 32]);
        CheckpointSigner::from_pkcs8("credgate.test/audit", &der).unwrap()
    }

    /// Entry `i`, version 1 (the golden export below holds v1 entries).
    pub(crate) fn entry(i: u32) -> AuditEntry {
        AuditEntry {
            v: 1,
            ts: format!("2026-11-23T02:30:{:02}.000Z", i % 60),
            request_id: format!("r-{i}"),
            gateway: "credgate-test".into(),
            org: Some("91370300164100001A".into()),
            cert_fp: None,
            action: "query".into(),
            subject_type: Some("legal_person".into()),
            subject: Some(format!("{i:064x}")),
            purpose: Some("financing".into()),
            consent: None,
            fields: vec![AuditField {
                field: "enterprise_name".into(),
                decision: if i.is_multiple_of(3) {
                    "withheld"
                } else {
                    "returned"
                }
                .into(),
                reason: "authorised, \"quoted\"".into(),
                detail: None,
            }],
            records: 1,
            status: 200,
            outcome: "ok".into(),
            policy: None,
        }
    }

    /// Entry `i` as version 2, under policy `policy`.
    pub(crate) fn entry_v2(i: u32, policy: &str) -> AuditEntry {
        AuditEntry {
            v: 2,
            policy: Some(policy.into()),
            ..entry(i)
        }
    }

    /// Entry `i` as version 3, under policy `policy`, its subject hashed
    /// under key `key_id`.
    pub(crate) fn entry_v3(i: u32, policy: &str, key_id: &str) -> AuditEntry {
        AuditEntry {
            v: 3,
            subject: Some(format!("{key_id}:{i:064x}")),
            ..entry_v2(i, policy)
        }
    }

    /// An in-memory export of `entries` (all of them in the tree) covering
    /// `[start, end)`, built from the reference tree functions.
    pub(crate) fn export_of(
        entries: &[AuditEntry],
        start: u64,
        end: u64,
        signer: &CheckpointSigner,
        format: ExportFormat,
        consistency_from: Option<u64>,
    ) -> String {
        let bytes: Vec<Vec<u8>> = entries.iter().map(AuditEntry::canonical).collect();
        let leaves: Vec<Hash> = bytes.iter().map(|b| merkle::leaf_hash(b)).collect();
        let size = leaves.len() as u64;
        let note = signer
            .sign(&Checkpoint {
                origin: "credgate.test/audit".into(),
                size,
                root: merkle::root_of(&leaves),
            })
            .unwrap();
        let range_proof = range_proof_ranges(start, end, size)
            .unwrap()
            .into_iter()
            .map(|(a, b)| B64Hash(merkle::root_of(&leaves[a as usize..b as usize])))
            .collect();
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            checkpoint: note,
            tree_size: size,
            start,
            end,
            range_proof,
            consistency: consistency_from.map(|m| ExportConsistency {
                old_size: m,
                proof: merkle::consistency_proof(&leaves, m)
                    .unwrap()
                    .into_iter()
                    .map(B64Hash)
                    .collect(),
            }),
        };
        let mut w = ExportWriter::new(Vec::new(), format, &header).unwrap();
        for i in start..end {
            w.entry(i, &bytes[i as usize], &leaves[i as usize]).unwrap();
        }
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    /// The export format is a public contract: auditors' own tools read it.
    /// These golden files must not change for version 1.
    #[test]
    fn golden_export_files() {
        let signer = fixed_signer(7);
        let entries: Vec<AuditEntry> = (0..3).map(entry).collect();
        let jsonl = export_of(&entries, 1, 3, &signer, ExportFormat::Jsonl, None);
        // Produced by a fixed key (Ed25519 signatures are deterministic), so
        // every byte, including the signature, is pinned.
        let golden = concat!(
            r##"{"format":"credgate-audit-export","version":1,"checkpoint":"credgate.test/audit\n3\ndtvh1igufkWebgJQ8OZlK1SyjbJItFtm/X1G6fIdD5A=\n\n— credgate.test/audit dxSYVAiOQjlSF7ArbAKzPOXVRhZ0ISRAxGJXH6J1faQqSGT4u7LDgR9LT7tXLivrUFkfMxf1ibuO5HA47zrU+n7nOwA=\n","tree_size":3,"start":1,"end":3,"range_proof":["78KvPfyoZ4lj/LMkyuhSGLDgfFno7i0Y9EEjqqNrcps="],"consistency":null}"##,
            "\n",
            r##"{"seq":1,"leaf":"M00JiH7bFVne+cmgNIfQfMARTD6pw9pM6kR6pg0Ybe4=","entry":"{\"v\":1,\"ts\":\"2026-11-23T02:30:01.000Z\",\"request_id\":\"r-1\",\"gateway\":\"credgate-test\",\"org\":\"91370300164100001A\",\"cert_fp\":null,\"action\":\"query\",\"subject_type\":\"legal_person\",\"subject\":\"0000000000000000000000000000000000000000000000000000000000000001\",\"purpose\":\"financing\",\"consent\":null,\"fields\":[{\"field\":\"enterprise_name\",\"decision\":\"returned\",\"reason\":\"authorised, \\\"quoted\\\"\",\"detail\":null}],\"records\":1,\"status\":200,\"outcome\":\"ok\"}"}"##,
            "\n",
            r##"{"seq":2,"leaf":"7Vx87bUYlrFLYjB+x2KWdSMGswyqnL4dkUAJnk0rJ6I=","entry":"{\"v\":1,\"ts\":\"2026-11-23T02:30:02.000Z\",\"request_id\":\"r-2\",\"gateway\":\"credgate-test\",\"org\":\"91370300164100001A\",\"cert_fp\":null,\"action\":\"query\",\"subject_type\":\"legal_person\",\"subject\":\"0000000000000000000000000000000000000000000000000000000000000002\",\"purpose\":\"financing\",\"consent\":null,\"fields\":[{\"field\":\"enterprise_name\",\"decision\":\"returned\",\"reason\":\"authorised, \\\"quoted\\\"\",\"detail\":null}],\"records\":1,\"status\":200,\"outcome\":\"ok\"}"}"##,
            "\n",
        );
        assert_eq!(jsonl, golden);
        let leaves: Vec<Hash> = entries
            .iter()
            .map(|e| merkle::leaf_hash(&e.canonical()))
            .collect();
        assert!(golden.contains(&encode_hash(&leaves[1])));
        assert!(golden.contains(&encode_hash(&merkle::root_of(&leaves))));
        assert!(
            golden.contains(&encode_hash(&leaves[0])),
            "range proof of [1, 3) in 3 is leaf 0"
        );
        crate::verify::verify_export(golden.as_bytes(), &signer.verifier(), None)
            .expect("the golden file verifies");

        let csv = export_of(&entries, 1, 3, &signer, ExportFormat::Csv, None);
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "record,seq,ts,org,action,subject_type,subject,purpose,outcome,status,leaf,entry"
        );
        let header_json = jsonl.lines().next().unwrap();
        assert_eq!(
            lines.next().unwrap(),
            format!("export,,,,,,,,,,,\"{}\"", header_json.replace('"', "\"\""))
        );
        let e1 = String::from_utf8(entries[1].canonical()).unwrap();
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "entry,1,2026-11-23T02:30:01.000Z,91370300164100001A,query,legal_person,{},financing,ok,200,{},\"{}\"",
                "0".repeat(63) + "1",
                encode_hash(&leaves[1]),
                e1.replace('"', "\"\"")
            )
        );
        assert_eq!(lines.clone().count(), 1);
        // Every record is one physical line, and the parser inverts the writer.
        for line in csv.lines() {
            let cells = parse_csv_line(line).unwrap();
            assert_eq!(cells.len(), CSV_COLUMNS.len(), "{line}");
        }
        let cells = parse_csv_line(csv.lines().nth(1).unwrap()).unwrap();
        assert_eq!(cells[11], header_json);
    }

    #[test]
    fn csv_parser_is_strict() {
        assert_eq!(
            parse_csv_line("a,,\"b,\"\"c\"\"\"").unwrap(),
            vec!["a", "", "b,\"c\""]
        );
        assert_eq!(parse_csv_line("").unwrap(), vec![""]);
        assert_eq!(parse_csv_line("\"\"").unwrap(), vec![""]);
        for bad in ["\"abc", "a\"b", "\"a\"b", "\"a\"\""] {
            assert!(parse_csv_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_proof_shapes() {
        assert_eq!(range_proof_ranges(0, 7, 7).unwrap(), vec![]);
        assert_eq!(range_proof_ranges(0, 0, 7).unwrap(), vec![(0, 7)]);
        assert_eq!(range_proof_ranges(7, 7, 7).unwrap(), vec![(0, 7)]);
        assert_eq!(
            range_proof_ranges(3, 3, 7).unwrap(),
            vec![(0, 2), (2, 3), (3, 4), (4, 7)]
        );
        assert_eq!(
            range_proof_ranges(2, 5, 8).unwrap(),
            vec![(0, 2), (5, 6), (6, 8)]
        );
        assert!(range_proof_ranges(3, 2, 8).is_err());
        assert!(range_proof_ranges(0, 9, 8).is_err());
        assert_eq!(range_proof_ranges(0, 0, 0).unwrap(), vec![]);
        assert!(
            range_proof_ranges(0, u64::MAX, u64::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(range_proof_ranges(1, u64::MAX - 1, u64::MAX).unwrap().len() <= 128);
        assert_eq!(root_from_range(0, 0, &[], &[]), Ok(merkle::EMPTY_ROOT));
        assert!(root_from_range(u64::MAX, u64::MAX, &[[0; 32]], &[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn range_proofs_rebuild_the_root(n in 1u64..=200, a_seed: u64, b_seed: u64, flip: usize) {
            let leaves: Vec<Hash> = (0..n).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect();
            let a = a_seed % (n + 1);
            let b = a + b_seed % (n - a + 1);
            let ranges = range_proof_ranges(a, b, n).unwrap();
            prop_assert!(ranges.len() <= 2 * 64);
            let proof: Vec<Hash> = ranges.iter().map(|&(x, y)| merkle::root_of(&leaves[x as usize..y as usize])).collect();
            let slice = &leaves[a as usize..b as usize];
            let root = merkle::root_of(&leaves);
            prop_assert_eq!(root_from_range(a, n, slice, &proof), Ok(root));
            // Storage path agrees with the reference.
            let mut f = merkle::Frontier::new();
            let mut store = HashMap::new();
            for l in &leaves {
                for (id, h) in f.push(*l).unwrap() { store.insert(id, h); }
            }
            let stored = merkle::assemble(&ranges, |id| store.get(&id).copied()).unwrap();
            prop_assert_eq!(&stored, &proof);
            // Any change is detected.
            if !slice.is_empty() {
                let mut bad = slice.to_vec();
                let i = flip % bad.len();
                bad[i][0] ^= 1;
                prop_assert_ne!(root_from_range(a, n, &bad, &proof), Ok(root));
                prop_assert!(root_from_range(a, n, &slice[..slice.len() - 1], &proof).map(|r| r != root).unwrap_or(true));
                if slice.len() >= 2 {
                    let mut swapped = slice.to_vec();
                    swapped.swap(0, 1);
                    if swapped[0] != swapped[1] {
                        prop_assert_ne!(root_from_range(a, n, &swapped, &proof), Ok(root));
                    }
                }
            }
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let i = flip % bad.len();
                bad[i][31] ^= 0x80;
                prop_assert_ne!(root_from_range(a, n, slice, &bad), Ok(root));
                prop_assert!(root_from_range(a, n, slice, &proof[1..]).is_err());
            }
        }
    }
}
