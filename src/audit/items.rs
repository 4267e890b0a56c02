//! Bulk fields: one audit field per record or list entry a request touched
//! in bulk (every record a query withheld, every list entry that lapsed or
//! was exited along with another change), bounded so that an entry always
//! fits in one entry-bundle slot ([`credlog::tiles::MAX_ENTRY_LEN`],
//! 65,535 bytes) however many records a subject has.
//!
//! # The shape
//!
//! The first [`MAX_LISTED_ITEMS`] of them are listed individually, in the
//! order the handler produced them (records and list entries in id order),
//! exactly as before: `{"field":"record:123","decision":"withheld",
//! "reason":"expired","detail":"admin_penalty"}`. The rest are counted: one
//! summary field per (kind, decision, reason), after the individual ones,
//! sorted by field then reason:
//!
//! ```json
//! {"field":"records_withheld","decision":"withheld","reason":"expired","detail":"712 more"}
//! ```
//!
//! `field` is `records_<decision>` or `list_entries_<decision>`, `decision`
//! and `reason` are those of the fields it counts, and `detail` is
//! `"<count> more"`. An entry with no more than [`MAX_LISTED_ITEMS`] bulk
//! fields has no summary field, so its canonical bytes are what they were.
//!
//! Should the rest of the entry leave less room than the individual fields
//! need (a query naming all of its 256 fields with the longest names the
//! limits allow), fewer are listed, the last ones moving into the counts;
//! if even the counts do not fit, the entry is left too large and the log
//! refuses it (503 `audit_unavailable`, fail-closed), never truncated.

use std::borrow::Cow;
use std::collections::BTreeMap;

use credlog::entry::{AuditEntry, AuditField};

/// How many bulk fields one entry lists individually; the rest are counted
/// per (kind, decision, reason).
///
/// Budget: a bulk field is at most 185 bytes of canonical JSON (the comma
/// included): `{"field":"` 10, `list_entry:` and a 19-digit id 30,
/// `","decision":"` 14 and a decision code (≤ 16), `","reason":"` 12 and a
/// reason code (≤ 24), `","detail":"` 12 and a catalog item id (≤ 64,
/// snake_case ASCII: no escapes), `"}` and `,` 3; call it 200. Listing 100
/// takes at most 20,000 bytes, and the counts (one per withheld reason and
/// one per lapse reason, under 200 bytes each) under 2,000. A query naming
/// catalog fields only (at most 256 names of at most 64 ASCII characters,
/// under 120 bytes a decision: 31,000 bytes) with its header (under 1,000
/// bytes, consent id included) therefore stays under 55,000 bytes. Only
/// unknown names that escape to more leave less room: the largest query
/// the request limits allow (256 names of 64 characters escaping to 170
/// bytes each) is 63,504 bytes before any bulk field, and then fewer are
/// listed ([`append_bounded`]; the test
/// `the_largest_query_with_many_withheld_records_fits_in_one_slot`).
/// 100 named records is also what an auditor reads; the counts say how
/// many more there were.
pub const MAX_LISTED_ITEMS: usize = 100;

/// What a bulk field is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    /// A stored record: field `record:<id>`.
    Record,
    /// A red, black or focus list entry: field `list_entry:<id>`.
    ListEntry,
}

impl ItemKind {
    /// The field naming one of them: `record:<id>`, `list_entry:<id>`.
    pub fn field(self, id: i64) -> String {
        match self {
            ItemKind::Record => format!("record:{id}"),
            ItemKind::ListEntry => format!("list_entry:{id}"),
        }
    }

    /// The plural that names a summary field (`records_withheld`).
    pub fn plural(self) -> &'static str {
        match self {
            ItemKind::Record => "records",
            ItemKind::ListEntry => "list_entries",
        }
    }
}

/// The summary field counting `n` bulk fields of `kind` with `decision`
/// and `reason`.
pub fn summary_field(kind: ItemKind, decision: &str, reason: &str, n: usize) -> AuditField {
    AuditField {
        field: format!("{}_{decision}", kind.plural()),
        decision: Cow::Owned(decision.to_owned()),
        reason: Cow::Owned(reason.to_owned()),
        detail: Some(Cow::Owned(format!("{n} more"))),
    }
}

/// Add `items` to `entry`'s fields, bounded: with the room the rest of
/// the entry leaves in a bundle slot ([`append_bounded`]). The one place
/// an entry's bulk fields are decided (the gateway makes every entry
/// through it).
pub fn bound_entry(entry: &mut AuditEntry, items: Vec<(ItemKind, AuditField)>) {
    if items.is_empty() {
        return;
    }
    let room = credlog::tiles::MAX_ENTRY_LEN.saturating_sub(entry.canonical().len());
    append_bounded(&mut entry.fields, items, room);
}

/// Canonical length of one field in an entry's `fields` array, with the
/// comma that separates it from its neighbour (an upper bound for the
/// first field, which has none). A field that would not serialise (it
/// always does) counts as larger than a slot.
fn len_in_entry(f: &AuditField) -> usize {
    serde_json::to_vec(f).map_or(credlog::tiles::MAX_ENTRY_LEN + 1, |v| v.len()) + 1
}

/// Append `items` to `fields`: the first [`MAX_LISTED_ITEMS`] as they are,
/// the rest as summary fields (see the module documentation), and fewer
/// than [`MAX_LISTED_ITEMS`] individually if what is appended would
/// otherwise exceed `room` bytes of canonical JSON. With no more than
/// [`MAX_LISTED_ITEMS`] items that fit, `fields` is simply extended.
pub fn append_bounded(
    fields: &mut Vec<AuditField>,
    items: Vec<(ItemKind, AuditField)>,
    room: usize,
) {
    let mut listed = items;
    let rest = listed.split_off(listed.len().min(MAX_LISTED_ITEMS));
    type Key = (ItemKind, Cow<'static, str>, Cow<'static, str>);
    let mut counts: BTreeMap<Key, usize> = BTreeMap::new();
    for (kind, f) in rest {
        *counts.entry((kind, f.decision, f.reason)).or_default() += 1;
    }
    let summaries = |counts: &BTreeMap<Key, usize>| -> Vec<AuditField> {
        counts
            .iter()
            .map(|((kind, d, r), n)| summary_field(*kind, d, r, *n))
            .collect()
    };
    let mut listed_len: usize = listed.iter().map(|(_, f)| len_in_entry(f)).sum();
    let mut summary = summaries(&counts);
    loop {
        let total = listed_len + summary.iter().map(len_in_entry).sum::<usize>();
        if total <= room {
            break;
        }
        // Too large: count the last individual one instead (if any is left;
        // otherwise the log refuses the entry, fail-closed).
        let Some((kind, f)) = listed.pop() else { break };
        listed_len -= len_in_entry(&f);
        *counts.entry((kind, f.decision, f.reason)).or_default() += 1;
        summary = summaries(&counts);
    }
    fields.extend(listed.into_iter().map(|(_, f)| f));
    fields.extend(summary);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withheld(id: i64, reason: &'static str) -> (ItemKind, AuditField) {
        (
            ItemKind::Record,
            AuditField {
                field: ItemKind::Record.field(id),
                decision: "withheld".into(),
                reason: reason.into(),
                detail: Some("admin_penalty".into()),
            },
        )
    }

    #[test]
    fn up_to_the_cap_every_item_is_listed_as_it_was() {
        let items: Vec<_> = (1..=MAX_LISTED_ITEMS as i64)
            .map(|i| withheld(i, "expired"))
            .collect();
        let want: Vec<AuditField> = items.iter().map(|(_, f)| f.clone()).collect();
        let mut fields = Vec::new();
        append_bounded(&mut fields, items, usize::MAX);
        assert_eq!(fields, want);
    }

    #[test]
    fn beyond_the_cap_the_rest_is_counted_per_kind_decision_and_reason() {
        let mut items: Vec<_> = (1..=150).map(|i| withheld(i, "expired")).collect();
        items.push(withheld(151, "withdrawn"));
        items.push((
            ItemKind::ListEntry,
            AuditField {
                field: ItemKind::ListEntry.field(7),
                decision: "lapsed".into(),
                reason: "expired".into(),
                detail: None,
            },
        ));
        let mut fields = Vec::new();
        append_bounded(&mut fields, items, usize::MAX);
        assert_eq!(fields.len(), MAX_LISTED_ITEMS + 3);
        assert_eq!(fields[0].field, "record:1");
        assert_eq!(fields[MAX_LISTED_ITEMS - 1].field, "record:100");
        let tail: Vec<String> = fields[MAX_LISTED_ITEMS..]
            .iter()
            .map(|f| String::from_utf8(serde_json::to_vec(f).unwrap()).unwrap())
            .collect();
        assert_eq!(
            tail,
            [
                r#"{"field":"records_withheld","decision":"withheld","reason":"expired","detail":"50 more"}"#,
                r#"{"field":"records_withheld","decision":"withheld","reason":"withdrawn","detail":"1 more"}"#,
                r#"{"field":"list_entries_lapsed","decision":"lapsed","reason":"expired","detail":"1 more"}"#,
            ]
        );
    }

    #[test]
    fn with_little_room_fewer_are_listed_and_the_counts_stay_exact() {
        let items: Vec<_> = (1..=1000).map(|i| withheld(i, "expired")).collect();
        let mut fields = Vec::new();
        append_bounded(&mut fields, items, 2_000);
        let len: usize = fields.iter().map(len_in_entry).sum();
        assert!(len <= 2_000, "{len}");
        let listed = fields.len() - 1;
        assert!(listed > 0 && listed < MAX_LISTED_ITEMS, "{listed}");
        let last = fields.last().unwrap();
        assert_eq!(last.field, "records_withheld");
        assert_eq!(
            last.detail.as_deref(),
            Some(format!("{} more", 1000 - listed).as_str())
        );
        // No room at all: only the count (the log decides whether it fits).
        let mut fields = Vec::new();
        append_bounded(&mut fields, vec![withheld(1, "expired")], 0);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].detail.as_deref(), Some("1 more"));
    }

    /// The largest query the request limits allow (256 distinct field
    /// names of 64 characters that escape to 170 bytes, a consent id of
    /// the longest length) about a subject with 1,000 withheld records and
    /// 100 lapsed list entries still fits, naming fewer records.
    #[test]
    fn the_largest_query_with_many_withheld_records_fits_in_one_slot() {
        use crate::http::dto::{AUDIT_NAME_CHARS, MAX_QUERY_FIELDS};
        let name = |i: usize| {
            // A distinct four-byte character, 43 quotes (2 bytes each in
            // JSON) and 20 more four-byte characters: 127 bytes as sent,
            // 64 characters, 170 bytes in the entry.
            let mut n: String = char::from_u32(0x1F600 + i as u32).into_iter().collect();
            n.push_str(&"\"".repeat(43));
            n.push_str(&"😀".repeat(20));
            n
        };
        assert_eq!(name(0).chars().count(), AUDIT_NAME_CHARS);
        assert_eq!(name(0).len(), 127);
        let fields: Vec<AuditField> = (0..MAX_QUERY_FIELDS)
            .map(|i| AuditField {
                field: name(i),
                decision: "withheld".into(),
                reason: "not_in_catalog".into(),
                detail: None,
            })
            .collect();
        let mut entry = AuditEntry {
            v: credlog::entry::ENTRY_VERSION,
            ts: "2026-11-23T02:30:00.123Z".into(),
            request_id: "credgate-dev-0123456789abcdef-ffffffffffffffff".into(),
            gateway: "g".repeat(64),
            org: Some("91370300164100001A".into()),
            cert_fp: Some("ab".repeat(32)),
            action: "query".into(),
            subject_type: Some("legal_person".into()),
            subject: Some(format!("{}:{}", "k".repeat(16), "cd".repeat(32))),
            purpose: Some("p".repeat(64)),
            consent: Some("j".repeat(crate::consent::MAX_JTI_LEN)),
            fields,
            records: u32::MAX,
            status: 200,
            outcome: "ok".into(),
            policy: Some(format!("sha256:{}", "ef".repeat(32))),
        };
        let mut items: Vec<_> = (1..=1000)
            .map(|i| {
                withheld(
                    i,
                    ["expired", "repaired", "withdrawn", "superseded"][i as usize % 4],
                )
            })
            .collect();
        items.extend((1..=100).map(|i| {
            (
                ItemKind::ListEntry,
                AuditField {
                    field: ItemKind::ListEntry.field(i),
                    decision: "lapsed".into(),
                    reason: "superseded".into(),
                    detail: None,
                },
            )
        }));
        let before = entry.canonical().len();
        bound_entry(&mut entry, items);
        let len = entry.canonical().len();
        assert!(
            len <= credlog::tiles::MAX_ENTRY_LEN,
            "{before} then {len} bytes"
        );
        let counted: usize = entry.fields[MAX_QUERY_FIELDS..]
            .iter()
            .filter_map(|f| {
                f.detail
                    .as_deref()?
                    .strip_suffix(" more")?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        let listed = entry.fields[MAX_QUERY_FIELDS..]
            .iter()
            .filter(|f| f.field.contains(':'))
            .count();
        assert_eq!(listed + counted, 1100);
        assert!(listed < MAX_LISTED_ITEMS, "{listed}");
    }

    /// The budget in [`MAX_LISTED_ITEMS`]'s documentation: no bulk field
    /// the gateway writes is longer than 200 bytes.
    #[test]
    fn a_bulk_field_is_at_most_200_bytes() {
        let f = AuditField {
            field: ItemKind::ListEntry.field(i64::MAX),
            decision: "x".repeat(16).into(),
            reason: "y".repeat(24).into(),
            detail: Some("z".repeat(64).into()),
        };
        assert!(len_in_entry(&f) <= 200, "{}", len_in_entry(&f));
        let s = summary_field(
            ItemKind::ListEntry,
            &"x".repeat(16),
            &"y".repeat(24),
            1 << 40,
        );
        assert!(len_in_entry(&s) <= 200, "{}", len_in_entry(&s));
    }
}
