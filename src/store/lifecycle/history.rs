//! A record's lifecycle history (no field values).

use serde::Serialize;
use serde_json::Value;
use time::Date;

use super::RecordRow;
use crate::policy::Policy;
use crate::policy::lifecycle::{RecordState, Terms};
use crate::store::{Backend, Store, StoreError};

/// A record's lifecycle history, without field values.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The record.
    pub record_id: i64,
    /// Item.
    pub item: String,
    /// Provider.
    pub provided_by: String,
    /// Subject type.
    pub subject_type: String,
    /// Subject id (the HTTP layer hashes it for auditors).
    pub subject_id: String,
    /// Stored at.
    pub recorded_at: String,
    /// State today.
    pub state: RecordState,
    /// Terms of a negative record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
    /// Version it corrects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<i64>,
    /// Version that corrects it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<i64>,
    /// Repair date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired_on: Option<String>,
    /// Objections, oldest first.
    pub objections: Vec<Value>,
    /// Repair applications, oldest first.
    pub repairs: Vec<Value>,
    /// List entries citing it as basis.
    pub list_entries: Vec<Value>,
}

impl Store {
    /// A record's lifecycle history (no field values), or `None`.
    pub async fn record_history(
        &self,
        id: i64,
        policy: &Policy,
        today: Date,
    ) -> Result<Option<History>, StoreError> {
        type ObjRow = (
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        type RepRow = (i64, String, String, Option<String>, Option<String>);
        type EntryRow = (
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        type HistoryRows = (RecordRow, Vec<ObjRow>, Vec<RepRow>, Vec<EntryRow>);
        let found: Option<HistoryRows> = dispatch!(self, p => {
            let row: Option<RecordRow> = sqlx::query_as(record_select!("WHERE r.id = $1"))
                .bind(id)
                .fetch_optional(p)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let o: Vec<ObjRow> = sqlx::query_as(
                        "SELECT id, filed_on, due_on, status, resolved_by, resolved_on, new_record_id \
                         FROM objections WHERE record_id = $1 ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(p)
                    .await?;
                    let r: Vec<RepRow> = sqlx::query_as(
                        "SELECT id, applied_on, status, decided_by, decided_on FROM repairs WHERE record_id = $1 ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(p)
                    .await?;
                    let l: Vec<EntryRow> = sqlx::query_as(
                        "SELECT id, list, issuer, effective_from, effective_to, exited_on, exit_reason \
                         FROM list_entries WHERE basis_record_id = $1 ORDER BY id",
                    )
                    .bind(id)
                    .fetch_all(p)
                    .await?;
                    Some((row, o, r, l))
                }
            }
        });
        let Some((row, objections, repairs, entries)) = found else {
            return Ok(None);
        };
        let data = row.data()?;
        let facts = row.facts(&data);
        Ok(Some(History {
            record_id: row.id,
            state: policy.record_state(&facts, today),
            terms: policy.terms(&facts),
            item: row.item.clone(),
            provided_by: row.provider.clone(),
            subject_type: row.subject_type.clone(),
            subject_id: row.subject_id.clone(),
            recorded_at: row.recorded_at.clone(),
            supersedes: row.supersedes,
            superseded_by: row.superseded_by,
            repaired_on: row.repaired_on.clone(),
            objections: objections
                .into_iter()
                .map(|o| {
                    serde_json::json!({"objection_id": o.0, "filed_on": o.1, "due_on": o.2, "status": o.3,
                        "resolved_by": o.4, "resolved_on": o.5, "new_record_id": o.6})
                })
                .collect(),
            repairs: repairs
                .into_iter()
                .map(|r| {
                    serde_json::json!({"repair_id": r.0, "applied_on": r.1, "status": r.2,
                        "decided_by": r.3, "decided_on": r.4})
                })
                .collect(),
            list_entries: entries
                .into_iter()
                .map(|e| {
                    serde_json::json!({"entry_id": e.0, "list": e.1, "issuer": e.2, "effective_from": e.3,
                        "effective_to": e.4, "exited_on": e.5, "exit_reason": e.6})
                })
                .collect(),
        }))
    }
}
