//! 应查必查 checks: their inputs, results and feedback.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use time::Date;

use super::lists::ListEntryView;
use super::{CachedRow, Refusal};
use crate::ids::SubjectId;
use crate::policy::Policy;
use crate::policy::lifecycle::LifecycleRefusal;
use crate::policy::lifecycle::{ListKind, RecordState, Terms, format_date};
use crate::policy::measures::FeedbackPermit;
use crate::store::{Backend, Store, StoreError};

/// A record of the subject with its state (no field values).
#[derive(Debug, Clone, Serialize)]
pub struct SubjectRecord {
    /// Record id.
    pub record_id: i64,
    /// Item.
    pub item: String,
    /// Provider.
    pub provided_by: String,
    /// State today.
    pub state: RecordState,
    /// Terms, for negative records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms: Option<Terms>,
}

/// What a check needs to know about a subject.
#[derive(Debug, Clone, Default)]
pub struct CheckInputs {
    /// List entries in force today.
    pub entries: Vec<ListEntryView>,
    /// Negative records that are neither withdrawn nor superseded.
    pub negative: Vec<SubjectRecord>,
}

/// A stored check.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// Department that ran it.
    pub org: String,
    /// Subject type of the subject checked.
    pub subject_type: String,
    /// Subject id of the subject checked.
    pub subject_id: String,
    /// Its result JSON.
    pub result: Value,
    /// Feedback JSON, once given.
    pub feedback: Option<Value>,
}

impl Store {
    /// What a 应查必查 check needs: list entries in force with the state of
    /// their basis record (following corrections to the latest version),
    /// and the subject's negative records that are still on file.
    pub async fn check_inputs(
        &self,
        subject: &SubjectId,
        policy: &Policy,
        today: Date,
    ) -> Result<CheckInputs, StoreError> {
        // The same rows as the read path, from the subject cache on SQLite.
        let rows = self.subject_rows(subject).await?;
        let mut states: HashMap<i64, (RecordState, Option<i64>)> = HashMap::new();
        let mut negative = Vec::new();
        for CachedRow { row, data } in rows.iter() {
            let facts = row.facts(data);
            let state = policy.record_state(&facts, today);
            states.insert(row.id, (state, row.superseded_by));
            if let Some(terms) = policy.check_record_terms(&facts, state) {
                negative.push(SubjectRecord {
                    record_id: row.id,
                    item: row.item.clone(),
                    provided_by: row.provider.clone(),
                    state,
                    terms: Some(terms),
                });
            }
        }
        let latest = |id: i64| super::latest_version(&states, id);
        let entries = self
            .lists_in_force(subject, today)
            .await?
            .into_iter()
            .map(|(entry_id, list, issuer, basis, basis_record, from, to)| {
                let (basis_record_id, basis_state) = match basis_record.map(latest) {
                    Some((id, state)) => (Some(id), state),
                    None => (None, None),
                };
                let list = ListKind::parse(&list).ok_or_else(|| {
                    StoreError::Corrupt(format!("list entry {entry_id}: list '{list}'"))
                })?;
                Ok(ListEntryView {
                    entry_id,
                    list,
                    issuer,
                    basis,
                    basis_record_id,
                    basis_state,
                    effective_from: from,
                    effective_to: to,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(CheckInputs { entries, negative })
    }

    /// Store a check and its result; returns its id.
    pub async fn insert_check(
        &self,
        org: &str,
        subject: &SubjectId,
        matter: &str,
        today: Date,
        result: &Value,
        intent: &crate::store::AuditIntent,
    ) -> Result<i64, StoreError> {
        let _turn = self.write_turn().await;
        let request_id = intent.request_id();
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO checks (org, subject_type, subject_id, matter, checked_on, result, request_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(org)
            .bind(subject.kind().as_str())
            .bind(subject.id())
            .bind(matter)
            .bind(format_date(today))
            .bind(result.to_string())
            .bind(request_id)
            .fetch_one(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// A stored check.
    pub async fn check(&self, id: i64) -> Result<Option<CheckRow>, StoreError> {
        let row: Option<(String, String, String, String, Option<String>)> = dispatch!(self, p => {
            sqlx::query_as("SELECT org, subject_type, subject_id, result, feedback FROM checks WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        let Some((org, subject_type, subject_id, result, feedback)) = row else {
            return Ok(None);
        };
        let parse = |s: &str| {
            serde_json::from_str::<Value>(s)
                .map_err(|_| StoreError::Corrupt(format!("check {id} holds invalid JSON")))
        };
        Ok(Some(CheckRow {
            org,
            subject_type,
            subject_id,
            result: parse(&result)?,
            feedback: feedback.as_deref().map(parse).transpose()?,
        }))
    }

    /// Record a check's feedback, once, as [`Policy::check_feedback`]
    /// permitted it. The update is conditional on no feedback being
    /// recorded yet, so of two racing reports one is stored; the other gets
    /// the refusal the permit would have been refused with.
    pub async fn check_feedback(
        &self,
        permit: &FeedbackPermit,
        feedback: &Value,
        intent: &crate::store::AuditIntent,
        now: &str,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let id = permit.check_id();
        let request_id = intent.request_id();
        let n = dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(
                "UPDATE checks SET feedback = $1, feedback_at = $2, feedback_request = $3 \
                 WHERE id = $4 AND feedback IS NULL",
            )
            .bind(feedback.to_string())
            .bind(now)
            .bind(request_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                crate::store::outbox::write_intent!(&mut *tx, intent);
            }
            tx.commit().await?;
            n
        });
        if n == 1 {
            return Ok(Ok(()));
        }
        Ok(Err(match self.check(id).await? {
            None => Refusal::CheckNotFound,
            Some(_) => LifecycleRefusal::FeedbackRecorded.into(),
        }))
    }
}
