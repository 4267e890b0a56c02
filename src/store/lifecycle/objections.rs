//! Objections (异议): filing, the provider's answer, the overdue report.

use serde::Serialize;
use serde_json::{Map, Value};
use time::Date;

use super::{Application, ObjectionTarget, RecordRow, Refusal, Step};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{Case, Noun, RecordState, RecordTerms, format_date, parse_date};
use crate::policy::{Organisation, Policy};
use crate::store::{Backend, Store, StoreError};

/// How a provider answers an objection.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// The record was wrong: store this corrected version, keep the old.
    Corrected {
        /// The corrected fields (validated against the catalog).
        data: Map<String, Value>,
        /// New terms; `None` keeps the old record's.
        terms: Option<RecordTerms>,
    },
    /// The record stands.
    Upheld,
    /// The record is withdrawn from sharing.
    Withdrawn,
}

impl Resolution {
    /// Stored status / wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Resolution::Corrected { .. } => "corrected",
            Resolution::Upheld => "upheld",
            Resolution::Withdrawn => "withdrawn",
        }
    }
}

/// An open objection: as filed, or in the overdue report.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectionRow {
    /// Objection id.
    pub objection_id: i64,
    /// Disputed record.
    pub record_id: i64,
    /// Its item.
    pub item: String,
    /// The department that has to answer.
    pub provider: String,
    /// Subject type.
    pub subject_type: String,
    /// Subject id (the HTTP layer replaces it by a keyed hash for auditors).
    pub subject_id: String,
    /// Filing date.
    pub filed_on: String,
    /// Last day to answer.
    pub due_on: String,
}

/// An objection as its subject sees it (`POST /v1/objections/{id}/status`):
/// the answer owed to the objector (征信业管理条例 第二十五条).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectionStatus {
    /// Objection id.
    pub objection_id: i64,
    /// Disputed record.
    pub record_id: i64,
    /// Its item.
    pub item: String,
    /// The department that answers.
    pub provider: String,
    /// `open`, or the outcome once answered.
    pub status: String,
    /// `corrected`, `upheld` or `withdrawn`; `None` while open.
    pub outcome: Option<String>,
    /// The grounds as filed.
    pub grounds: String,
    /// Filing date.
    pub filed_on: String,
    /// Last day for the provider to answer.
    pub due_on: String,
    /// Open past its deadline.
    pub overdue: bool,
    /// Date of the answer.
    pub resolved_on: Option<String>,
    /// The provider's note.
    pub note: Option<String>,
    /// The corrected version, for `corrected`.
    pub new_record_id: Option<i64>,
}

impl Store {
    /// One objection for its subject, as far as [`Policy::case_read`]
    /// lets `org` see it: an objection about another subject is
    /// [`Refusal::Denied`] with `NotVisible`, answered like a missing one.
    pub async fn objection_status(
        &self,
        id: i64,
        asked: &SubjectId,
        org: &Organisation,
        policy: &Policy,
        today: Date,
    ) -> Result<Result<ObjectionStatus, Refusal>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let row: Option<Row> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT o.id, o.record_id, r.item, r.provider, o.subject_type, o.subject_id, o.status, \
                 o.grounds, o.filed_on, o.due_on, o.resolved_on, o.resolution_note, o.new_record_id \
                 FROM objections o JOIN records r ON r.id = o.record_id WHERE o.id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        let Some(r) = row else {
            return Ok(Err(Refusal::ObjectionNotFound));
        };
        if let Err(e) = super::case_visible(policy, org, Noun::Objection, (&r.4, &r.5), asked) {
            return Ok(Err(e));
        }
        let open = r.6 == "open";
        let overdue =
            parse_date(&r.9).is_some_and(|due| policy.objection_overdue(open, due, today));
        Ok(Ok(ObjectionStatus {
            objection_id: r.0,
            record_id: r.1,
            item: r.2,
            provider: r.3,
            outcome: (!open).then(|| r.6.clone()),
            status: r.6,
            grounds: r.7,
            filed_on: r.8,
            due_on: r.9,
            overdue,
            resolved_on: r.10,
            note: r.11,
            new_record_id: r.12,
        }))
    }

    /// File an objection on one of the subject's records: it is flagged
    /// `disputed` from now on, with an answer due in 20 days.
    pub async fn file_objection(
        &self,
        a: Application<'_>,
        policy: &Policy,
        today: Date,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<ObjectionRow, Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, a.subject.kind().as_str(), a.subject.id());
            let Some(row) = subject_record!(tx, a.subject, a.record_id) else {
                return Ok(Err(Refusal::RecordNotFound));
            };
            let data = row.data()?;
            let permit = match policy.objection_filing(&row.facts(&data), row.objection, today) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e.into())),
            };
            let filed_on = format_date(permit.filed_on());
            let due_on = format_date(permit.due_on());
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO objections (record_id, subject_type, subject_id, filed_by, grounds, filed_on, due_on, status, filed_request) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8) RETURNING id",
            )
            .bind(a.record_id)
            .bind(a.subject.kind().as_str())
            .bind(a.subject.id())
            .bind(a.by)
            .bind(a.grounds)
            .bind(&filed_on)
            .bind(&due_on)
            .bind(a.request_id)
            .fetch_one(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(ObjectionRow {
                objection_id: id,
                record_id: row.id,
                item: row.item,
                provider: row.provider,
                subject_type: row.subject_type,
                subject_id: row.subject_id,
                filed_on,
                due_on,
            }))
        })
    }

    /// What an objection concerns (for validating a resolution).
    pub async fn objection_target(&self, id: i64) -> Result<Option<ObjectionTarget>, StoreError> {
        self.step_target(
            "SELECT a.id, a.record_id, r.item, r.provider, a.subject_type, a.subject_id, a.status \
             FROM objections a JOIN records r ON r.id = a.record_id WHERE a.id = $1",
            id,
        )
        .await
    }

    /// Answer an open objection, as far as [`Policy::objection_answer`]
    /// permits. A
    /// correction stores a new version that supersedes the old one (kept,
    /// never shared again); a withdrawal stops sharing the record.
    /// Returns the new version's id for a correction.
    pub async fn resolve_objection(
        &self,
        step: Step<'_>,
        resolution: &Resolution,
        policy: &Policy,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<(Option<i64>, Vec<i64>), Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let Step {
            id: objection_id,
            org,
            note,
            request_id,
            now,
            today,
        } = step;
        let Some(t) = self.objection_target(objection_id).await? else {
            return Ok(Err(Refusal::ObjectionNotFound));
        };
        let (on, today) = (today, format_date(today));
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, t.subject_type.as_str(), t.subject_id.as_str());
            let status: String = sqlx::query_scalar("SELECT status FROM objections WHERE id = $1")
                .bind(objection_id)
                .fetch_one(&mut *tx)
                .await?;
            let case = Case { provider: &t.provider, status: &status };
            if let Err(e) = policy.objection_answer(org, &case) {
                return Ok(Err(e.into()));
            }
            let mut new_id = None;
            let mut lapsed = Vec::new();
            match resolution {
                Resolution::Upheld => {}
                Resolution::Withdrawn => {
                    let before = record_state!(tx, policy, t.record_id, on);
                    sqlx::query("UPDATE records SET state = 'withdrawn' WHERE id = $1")
                        .bind(t.record_id)
                        .execute(&mut *tx)
                        .await?;
                    lapsed = lapse_entries!(
                        tx, t.record_id, before => RecordState::Withdrawn,
                        org.code.as_str(), &today, request_id
                    );
                }
                Resolution::Corrected { data, terms } => {
                    let old: (Option<String>, Option<String>) =
                        sqlx::query_as("SELECT tier, decision_date FROM records WHERE id = $1")
                            .bind(t.record_id)
                            .fetch_one(&mut *tx)
                            .await?;
                    let (tier, date) = match terms {
                        Some(x) => (Some(x.tier.as_str().to_owned()), Some(format_date(x.decision_date))),
                        None => old,
                    };
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO records (subject_type, subject_id, item, provider, data, recorded_at, request_id, tier, decision_date, supersedes) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    )
                    .bind(&t.subject_type)
                    .bind(&t.subject_id)
                    .bind(&t.item)
                    .bind(&t.provider)
                    .bind(Value::Object(data.clone()).to_string())
                    .bind(now)
                    .bind(request_id)
                    .bind(tier)
                    .bind(date)
                    .bind(t.record_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE records SET state = 'superseded', superseded_by = $1 WHERE id = $2")
                        .bind(id)
                        .bind(t.record_id)
                        .execute(&mut *tx)
                        .await?;
                    new_id = Some(id);
                }
            }
            sqlx::query(
                "UPDATE objections SET status = $1, resolved_by = $2, resolved_on = $3, resolution_note = $4, \
                 new_record_id = $5, resolved_request = $6 WHERE id = $7",
            )
            .bind(resolution.as_str())
            .bind(org.code.as_str())
            .bind(&today)
            .bind(note)
            .bind(new_id)
            .bind(request_id)
            .bind(objection_id)
            .execute(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok((new_id, lapsed)))
        })
    }

    /// Open objections, earliest due first; only those on records
    /// `provider` provided, if given. Which are overdue is the policy's
    /// rule ([`Policy::objection_overdue`]), not a filter here.
    pub async fn open_objections(
        &self,
        provider: Option<&str>,
    ) -> Result<Vec<ObjectionRow>, StoreError> {
        type Row = (i64, i64, String, String, String, String, String, String);
        let rows: Vec<Row> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT o.id, o.record_id, r.item, r.provider, o.subject_type, o.subject_id, o.filed_on, o.due_on \
                 FROM objections o JOIN records r ON r.id = o.record_id \
                 WHERE o.status = 'open' AND ($1 IS NULL OR r.provider = $1) \
                 ORDER BY o.due_on, o.id",
            )
            .bind(provider)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ObjectionRow {
                objection_id: r.0,
                record_id: r.1,
                item: r.2,
                provider: r.3,
                subject_type: r.4,
                subject_id: r.5,
                filed_on: r.6,
                due_on: r.7,
            })
            .collect())
    }
}
