//! Searching the log by subject across subject-key rotations, and
//! `credgate audit search`.
//!
//! A subject id is hashed under every configured subject key
//! ([`super::SubjectHasher::hashes`]) and an entry matches if its subject is
//! any of those hashes; a presented hash may be keyed (`k2:<hex>`, entry
//! version 3) or bare (versions 1 and 2, read as key id `k1`). The search
//! index holds every subject in the keyed form, so both reach entries of
//! every version. Entries under a key no longer configured are not found
//! by subject id (they still verify; they are found by their hash).
//!
//! `credgate audit search` reads the store directly, like `audit export`:
//! it needs the configuration and its key files (operator access), and is
//! not itself an entry in the log — an auditor searches over mTLS with
//! `POST /v1/audit/search`, which is audited.

use serde_json::{Value, json};

use super::{AuditEntry, SubjectHasher};
use crate::config::Config;
use crate::ids::SubjectId;
use crate::store::{AuditQuery, Store};

/// Most hashes in one `subject_hash` filter (and most subject keys a
/// configuration may list: [`crate::config::MAX_KEYS`]).
pub const MAX_SUBJECT_HASHES: usize = crate::config::MAX_KEYS;

/// Parse a `subject_hash` filter: one subject hash, or several separated by
/// single spaces (an entry matches any), each keyed (`k2:<64 hex>`) or bare
/// (64 lowercase hex: key id `k1`). Returned in the keyed form the search
/// index holds, without duplicates. `None` if anything is malformed.
pub fn parse_subject_hashes(v: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, h) in v.split(' ').enumerate() {
        if i == MAX_SUBJECT_HASHES {
            return None;
        }
        credlog::entry::split_subject_hash(h)?;
        let h = credlog::entry::keyed_subject_hash(h).into_owned();
        if !out.contains(&h) {
            out.push(h);
        }
    }
    Some(out)
}

/// What `credgate audit search` looks for.
#[derive(Debug, Clone)]
pub enum SubjectFilter {
    /// A subject id, hashed under every configured subject key.
    Id(SubjectId),
    /// Subject hashes as [`parse_subject_hashes`] takes them.
    Hashes(String),
}

/// `credgate audit search`: the entries about one subject, in log order
/// after `after`, at most `limit`, as JSON lines `{"seq": …, "entry": …}`
/// (the entry as its canonical text parses).
pub async fn search_store(
    cfg: &Config,
    subject: SubjectFilter,
    after: Option<u64>,
    limit: u32,
) -> Result<String, String> {
    let subjects = match subject {
        SubjectFilter::Id(id) => {
            let keys = cfg.audit.read_subject_keys().map_err(|e| e.to_string())?;
            SubjectHasher::with_keys(&keys).hashes(&id)
        }
        SubjectFilter::Hashes(h) => parse_subject_hashes(&h).ok_or_else(|| {
            format!(
                "--subject-hash: 1-{MAX_SUBJECT_HASHES} hashes separated by spaces, each 64 \
                 lowercase hex characters, optionally prefixed by a key id and ':' (k2:…)"
            )
        })?,
    };
    if !(1..=10_000).contains(&limit) {
        return Err("--limit must be between 1 and 10000".into());
    }
    let store = Store::connect_config(cfg)
        .await
        .map_err(|e| e.to_string())?;
    let q = AuditQuery {
        subjects,
        after,
        limit,
        ..AuditQuery::default()
    };
    let rows = store.audit_query(&q).await.map_err(|e| e.to_string());
    store.close().await;
    let mut out = String::new();
    for r in rows? {
        let entry: Value = AuditEntry::parse(&r.entry)
            .ok()
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or(Value::Null);
        out += &json!({"seq": r.seq, "entry": entry}).to_string();
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_hash_filters_are_keyed_and_strict() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_subject_hashes(&hex).unwrap(),
            vec![format!("k1:{hex}")]
        );
        assert_eq!(
            parse_subject_hashes(&format!("k2:{hex} {hex} k1:{hex}")).unwrap(),
            vec![format!("k2:{hex}"), format!("k1:{hex}")]
        );
        for bad in [
            "AB".repeat(32),
            "ab".repeat(31),
            format!("K2:{hex}"),
            format!("k2:{hex}  k1:{hex}"),
            format!(" {hex}"),
            String::new(),
            vec![hex.as_str(); MAX_SUBJECT_HASHES + 1].join(" "),
        ] {
            assert!(parse_subject_hashes(&bad).is_none(), "{bad}");
        }
    }
}
