//! Credit repair (信用修复): applications and the provider's decision.

use serde::Serialize;
use time::Date;

use super::{Application, ObjectionTarget, RecordRow, Refusal, Step};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{Case, Noun, RecordState, Terms, format_date};
use crate::policy::{Organisation, Policy};
use crate::store::{Backend, Store, StoreError};

/// A repair application as its subject sees it
/// (`POST /v1/repairs/{id}/status`), a rejection included.
#[derive(Debug, Clone, Serialize)]
pub struct RepairStatus {
    /// Application id.
    pub repair_id: i64,
    /// The record.
    pub record_id: i64,
    /// Its item.
    pub item: String,
    /// The department that decides.
    pub provider: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// The grounds as filed.
    pub grounds: String,
    /// Application date.
    pub applied_on: String,
    /// Decision date.
    pub decided_on: Option<String>,
    /// The provider's note.
    pub note: Option<String>,
    /// Date the repair took effect (approved only).
    pub repaired_on: Option<String>,
}

impl Store {
    /// Apply for the repair of a negative record.
    pub async fn apply_repair(
        &self,
        a: Application<'_>,
        policy: &Policy,
        today: Date,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<(i64, Terms), Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let applied_on = format_date(today);
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, a.subject.kind().as_str(), a.subject.id());
            let Some(row) = subject_record!(tx, a.subject, a.record_id) else {
                return Ok(Err(Refusal::RecordNotFound));
            };
            let data = row.data()?;
            let pending: Option<i64> =
                sqlx::query_scalar("SELECT id FROM repairs WHERE record_id = $1 AND status = 'pending'")
                    .bind(a.record_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let terms = match policy.repair_application(&row.facts(&data), pending, today) {
                Ok(permit) => permit.terms(),
                Err(e) => return Ok(Err(e.into())),
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO repairs (record_id, subject_type, subject_id, applied_by, grounds, applied_on, status, applied_request) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7) RETURNING id",
            )
            .bind(a.record_id)
            .bind(a.subject.kind().as_str())
            .bind(a.subject.id())
            .bind(a.by)
            .bind(a.grounds)
            .bind(&applied_on)
            .bind(a.request_id)
            .fetch_one(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok((id, terms)))
        })
    }

    /// One repair application for its subject, as far as
    /// [`Policy::case_read`] lets `org` see it (like
    /// [`Store::objection_status`]).
    pub async fn repair_status(
        &self,
        id: i64,
        asked: &SubjectId,
        org: &Organisation,
        policy: &Policy,
    ) -> Result<Result<RepairStatus, Refusal>, StoreError> {
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
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT a.id, a.record_id, r.item, r.provider, a.subject_type, a.subject_id, a.status, \
                 a.grounds, a.applied_on, a.decided_on, a.decision_note \
                 FROM repairs a JOIN records r ON r.id = a.record_id WHERE a.id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        let Some(r) = row else {
            return Ok(Err(Refusal::RepairNotFound));
        };
        if let Err(e) = super::case_visible(policy, org, Noun::Repair, (&r.4, &r.5), asked) {
            return Ok(Err(e));
        }
        let repaired_on = (r.6 == "approved").then(|| r.9.clone()).flatten();
        Ok(Ok(RepairStatus {
            repair_id: r.0,
            record_id: r.1,
            item: r.2,
            provider: r.3,
            status: r.6,
            grounds: r.7,
            applied_on: r.8,
            decided_on: r.9,
            note: r.10,
            repaired_on,
        }))
    }

    /// What a repair application concerns.
    pub async fn repair_target(&self, id: i64) -> Result<Option<ObjectionTarget>, StoreError> {
        self.step_target(
            "SELECT a.id, a.record_id, r.item, r.provider, a.subject_type, a.subject_id, a.status \
             FROM repairs a JOIN records r ON r.id = a.record_id WHERE a.id = $1",
            id,
        )
        .await
    }

    /// Decide a pending repair application, as far as
    /// [`Policy::repair_decision`] permits. Approval marks the record repaired as of `today`.
    pub async fn decide_repair(
        &self,
        step: Step<'_>,
        approve: bool,
        policy: &Policy,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<(ObjectionTarget, Vec<i64>), Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let Step {
            id: repair_id,
            org,
            note,
            request_id,
            today,
            ..
        } = step;
        let Some(t) = self.repair_target(repair_id).await? else {
            return Ok(Err(Refusal::RepairNotFound));
        };
        let day = format_date(today);
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, t.subject_type.as_str(), t.subject_id.as_str());
            let status: String = sqlx::query_scalar("SELECT status FROM repairs WHERE id = $1")
                .bind(repair_id)
                .fetch_one(&mut *tx)
                .await?;
            // The record's state today, under the lock: an approval needs
            // it still disclosed.
            let before = record_state!(tx, policy, t.record_id, today);
            let case = Case { provider: &t.provider, status: &status };
            if let Err(e) = policy.repair_decision(org, &case, before, approve) {
                return Ok(Err(e.into()));
            }
            let mut lapsed = Vec::new();
            if approve {
                sqlx::query("UPDATE records SET repaired_on = $1 WHERE id = $2")
                    .bind(&day)
                    .bind(t.record_id)
                    .execute(&mut *tx)
                    .await?;
                lapsed = lapse_entries!(
                    tx, t.record_id, before => RecordState::Repaired,
                    org.code.as_str(), &day, request_id
                );
            }
            sqlx::query(
                "UPDATE repairs SET status = $1, decided_by = $2, decided_on = $3, decision_note = $4, decided_request = $5 WHERE id = $6",
            )
            .bind(if approve { "approved" } else { "rejected" })
            .bind(org.code.as_str())
            .bind(&day)
            .bind(note)
            .bind(request_id)
            .bind(repair_id)
            .execute(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok((t.clone(), lapsed)))
        })
    }
}
