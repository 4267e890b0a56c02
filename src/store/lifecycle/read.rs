//! The lifecycle-aware read path: a subject's records as shared with one
//! caller, and the items derived from the lists.

use serde::Serialize;
use serde_json::{Map, Value};
use time::Date;

use super::CachedRow;
use crate::ids::SubjectId;
use crate::policy::lifecycle::{ListKind, RecordStatus, Sharing, Terms};
use crate::policy::{Organisation, Permit, Policy, Reason};
use crate::store::{Store, StoreError};

/// A record (or the derived list status) as shared with one caller.
#[derive(Debug, Clone, Serialize)]
pub struct SharedRecord {
    /// Stable record id (absent for derived items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<i64>,
    /// Catalog item.
    pub item: String,
    /// Providing organisation (absent for derived items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provided_by: Option<String>,
    /// When it was stored (RFC 3339; absent for derived items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// `normal`, `disputed` or `repaired`.
    pub status: RecordStatus,
    /// Disclosure terms of a negative record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
    /// The version this record corrects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<i64>,
    /// Where a derived item comes from (`lists`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<&'static str>,
    /// Released fields, masked as granted.
    pub fields: Map<String, Value>,
}

/// A record the requested fields touch but the lifecycle rules withhold.
/// Goes to the audit entry only: a response never reveals that it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithheldRecord {
    /// Record id.
    pub record_id: i64,
    /// Catalog item.
    pub item: String,
    /// `expired`, `repaired`, `withdrawn` or `superseded`.
    pub reason: Reason,
}

/// Result of [`Store::read_shared`].
#[derive(Debug, Clone, Default)]
pub struct SharedRead {
    /// Shared records, in id order, then derived items.
    pub records: Vec<SharedRecord>,
    /// Withheld by the lifecycle rules.
    pub withheld: Vec<WithheldRecord>,
    /// List entries in force that lapsed with their basis record
    /// ([`Policy::basis_lapse`]): entry id and why. For the audit entry.
    pub lapsed_entries: Vec<(i64, Reason)>,
}

impl Store {
    /// The lifecycle-aware read path: a subject's records, each released
    /// only as far as `permit` allows and only if the lifecycle rules share
    /// it with `org` on `today`; plus items derived from the lists.
    pub async fn read_shared(
        &self,
        subject: &SubjectId,
        permit: &Permit,
        policy: &Policy,
        org: &Organisation,
        today: Date,
    ) -> Result<SharedRead, StoreError> {
        let mut out = SharedRead::default();
        if permit.is_empty() {
            return Ok(out);
        }
        let rows = self.subject_rows(subject).await?;
        // Record ids from our own store: no hash flooding to fear.
        let mut states = crate::policy::FastMap::default();
        for CachedRow { row, data } in rows.iter() {
            let state = policy.record_state(&row.facts(data), today);
            states.insert(row.id, (state, row.superseded_by));
        }
        for CachedRow { row, data } in rows.iter() {
            let Some(fields) = permit.release(policy, &row.item, data) else {
                continue;
            };
            let facts = row.facts(data);
            let state = states[&row.id].0;
            match policy.sharing(org, &row.item, state) {
                Sharing::Shared(status) => {
                    let terms = policy.terms(&facts);
                    out.records.push(SharedRecord {
                        record_id: Some(row.id),
                        item: row.item.clone(),
                        provided_by: Some(row.provider.clone()),
                        recorded_at: Some(row.recorded_at.clone()),
                        status,
                        terms,
                        supersedes: row.supersedes,
                        derived_from: None,
                        fields,
                    });
                }
                Sharing::Withheld(reason) => out.withheld.push(WithheldRecord {
                    record_id: row.id,
                    item: row.item.clone(),
                    reason,
                }),
            }
        }
        // The lists in force are read once, and only if the permit touches a
        // list-derived item at all.
        let mut kinds: Option<Vec<ListKind>> = None;
        for item in policy.list_items_for(subject.kind()) {
            // Cheap test first: does the permit touch this item at all?
            if permit.release(policy, item, &Map::new()).is_none() {
                continue;
            }
            if kinds.is_none() {
                let mut in_force = Vec::new();
                for l in self.lists_in_force(subject, today).await? {
                    let basis = l.4.map(|id| super::latest_version(&states, id).1);
                    match Policy::basis_lapse(basis.flatten()) {
                        Some(reason) => out.lapsed_entries.push((l.0, reason)),
                        None => in_force.extend(ListKind::parse(&l.1)),
                    }
                }
                kinds = Some(in_force);
            }
            let kinds = kinds.as_deref().unwrap_or_default();
            let Some(map) = policy.list_item_values(item, kinds) else {
                continue;
            };
            if let Some(fields) = permit.release(policy, item, &map) {
                out.records.push(SharedRecord {
                    record_id: None,
                    item: item.to_owned(),
                    provided_by: None,
                    recorded_at: None,
                    status: RecordStatus::Normal,
                    terms: None,
                    supersedes: None,
                    derived_from: Some("lists"),
                    fields,
                });
            }
        }
        Ok(out)
    }
}
