//! Lifecycle persistence: the lifecycle-aware read path, objections, credit
//! repair, red/black/focus lists and 应查必查 checks.
//!
//! Same rules as the rest of the store: one SQL text for SQLite and
//! PostgreSQL through [`dispatch!`], no decision made here — every state and
//! visibility question goes to the pure policy (`policy::lifecycle`), with
//! "today" passed in by the caller.
//!
//! Every mutation runs in one transaction that first upserts the subject's
//! row in `subject_locks`: on PostgreSQL the row lock serialises concurrent
//! changes to one subject (a black listing racing a red listing cannot both
//! pass their checks); on SQLite that first write takes the database lock
//! before anything is read. Domain refusals come back as [`Refusal`] (the
//! transaction is rolled back by dropping it); database failures as
//! [`StoreError`].

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use time::Date;

use super::{Backend, Store, StoreError};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{
    ListKind, RecordFacts, RecordState, RecordStatus, RecordTerms, RepairRefusal, Sharing,
    StoredState, Terms, Tier, format_date, parse_date,
};
use crate::policy::{Organisation, Permit, Policy, Reason};

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
}

/// A domain refusal of a lifecycle change (mapped to 404/403/409 by the
/// HTTP layer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No such record for this subject.
    RecordNotFound,
    /// The caller did not provide the record.
    NotProvider,
    /// The record is in a state that does not allow this step.
    RecordState(RecordState),
    /// An objection on the record is already open.
    ObjectionOpen(i64),
    /// No such objection.
    ObjectionNotFound,
    /// The objection was already resolved (status).
    ObjectionClosed(String),
    /// A repair application is already pending.
    RepairPending(i64),
    /// No such repair application.
    RepairNotFound,
    /// The application was already decided (status).
    RepairClosed(String),
    /// The record cannot be repaired now.
    RepairIneligible(RepairRefusal),
    /// Red listing refused: the subject is on a black list (entry ids).
    BlackListed(Vec<i64>),
    /// The issuer already has this subject on this list (entry id).
    AlreadyListed(i64),
    /// The basis record is not a record of this subject.
    BasisNotFound,
    /// No such list entry.
    EntryNotFound,
    /// Only the issuing department may exit an entry.
    NotIssuer,
    /// The entry was already exited.
    AlreadyExited,
    /// The exit date is before the entry took effect.
    ExitBeforeEffective(Date),
    /// No such check.
    CheckNotFound,
    /// Only the department that ran a check gives its feedback.
    NotCheckOwner,
    /// Feedback was already recorded.
    FeedbackRecorded,
}

/// What an objection or repair concerns, read before validating a step.
#[derive(Debug, Clone)]
pub struct ObjectionTarget {
    /// Objection or repair id.
    pub id: i64,
    /// The record.
    pub record_id: i64,
    /// Its item.
    pub item: String,
    /// Its provider.
    pub provider: String,
    /// Subject type.
    pub subject_type: String,
    /// Subject id.
    pub subject_id: String,
    /// Objection or repair status.
    pub status: String,
}

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

/// A new list entry.
#[derive(Debug, Clone)]
pub struct NewListEntry<'a> {
    /// Which list.
    pub list: ListKind,
    /// Whom.
    pub subject: &'a SubjectId,
    /// Issuing department.
    pub issuer: &'a str,
    /// Legal basis / decision text.
    pub basis: &'a str,
    /// The record the listing is based on, if any.
    pub basis_record_id: Option<i64>,
    /// First day in force.
    pub effective_from: Date,
    /// First day no longer in force, if planned.
    pub effective_to: Option<Date>,
    /// Request id (audit correlation).
    pub request_id: &'a str,
    /// RFC 3339 now.
    pub now: &'a str,
}

/// Result of adding a list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAdded {
    /// The new entry.
    pub entry_id: i64,
    /// Red entries exited in the same transaction (black listing only).
    pub removed_red: Vec<i64>,
}

/// A list entry in force, as a check reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ListEntryView {
    /// Entry id.
    pub entry_id: i64,
    /// Which list.
    pub list: ListKind,
    /// Issuing department.
    pub issuer: String,
    /// Legal basis text.
    pub basis: String,
    /// Basis record (latest version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis_record_id: Option<i64>,
    /// State of the basis record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis_state: Option<RecordState>,
    /// First day in force.
    pub effective_from: String,
    /// First day no longer in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_to: Option<String>,
}

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
    /// Its result JSON.
    pub result: Value,
    /// Feedback JSON, once given.
    pub feedback: Option<Value>,
}

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

/// An objection or repair application from the portal.
#[derive(Debug, Clone, Copy)]
pub struct Application<'a> {
    /// Whose record.
    pub subject: &'a SubjectId,
    /// Which record.
    pub record_id: i64,
    /// Filing organisation (the portal).
    pub by: &'a str,
    /// Grounds, free text.
    pub grounds: &'a str,
    /// Request id.
    pub request_id: &'a str,
}

/// A provider's step on an objection or repair application.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Objection or repair id.
    pub id: i64,
    /// The deciding organisation.
    pub org: &'a str,
    /// Optional note, free text.
    pub note: Option<&'a str>,
    /// Request id.
    pub request_id: &'a str,
    /// RFC 3339 now.
    pub now: &'a str,
    /// Today's date (the gateway clock).
    pub today: Date,
}

/// A record row with its data parsed once, as kept by the subject cache.
#[derive(Debug)]
pub(crate) struct CachedRow {
    row: RecordRow,
    data: Map<String, Value>,
}

/// A stored record row with its open objection, if any.
#[derive(Debug, Clone, sqlx::FromRow)]
struct RecordRow {
    id: i64,
    subject_type: String,
    subject_id: String,
    item: String,
    provider: String,
    data: String,
    recorded_at: String,
    tier: Option<String>,
    decision_date: Option<String>,
    state: String,
    supersedes: Option<i64>,
    superseded_by: Option<i64>,
    repaired_on: Option<String>,
    objection: Option<i64>,
}

impl RecordRow {
    fn data(&self) -> Result<Map<String, Value>, StoreError> {
        match serde_json::from_str::<Value>(&self.data) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(StoreError::Corrupt(format!(
                "record {} is not a JSON object",
                self.id
            ))),
        }
    }

    fn facts<'a>(&'a self, data: &'a Map<String, Value>) -> RecordFacts<'a> {
        RecordFacts {
            item: &self.item,
            data,
            tier: self.tier.as_deref().and_then(Tier::parse),
            decision_date: self.decision_date.as_deref().and_then(parse_date),
            recorded_on: self
                .recorded_at
                .get(..10)
                .and_then(parse_date)
                .unwrap_or(Date::MIN),
            stored: StoredState::from_db(&self.state),
            repaired: self.repaired_on.is_some(),
            disputed: self.objection.is_some(),
        }
    }
}

macro_rules! record_select {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, r.subject_type, r.subject_id, r.item, r.provider, r.data, r.recorded_at, \
             r.tier, r.decision_date, r.state, r.supersedes, r.superseded_by, r.repaired_on, \
             (SELECT o.id FROM objections o WHERE o.record_id = r.id AND o.status = 'open') AS objection \
             FROM records r ",
            $tail
        )
    };
}

/// Upsert the subject's lock row: first statement of every lifecycle
/// transaction (see the module docs).
macro_rules! lock_subject {
    ($tx:expr, $kind:expr, $id:expr) => {
        sqlx::query(
            "INSERT INTO subject_locks (subject_type, subject_id, n) VALUES ($1, $2, 1) \
             ON CONFLICT (subject_type, subject_id) DO UPDATE SET n = subject_locks.n + 1",
        )
        .bind($kind)
        .bind($id)
        .execute(&mut *$tx)
        .await?
    };
}

type ListRow = (
    i64,
    String,
    String,
    String,
    Option<i64>,
    String,
    Option<String>,
);

impl Store {
    /// A subject's record rows, parsed; from the [`SubjectCache`](super::SubjectCache)
    /// when this store has one and nothing was written since they were read.
    async fn subject_rows(&self, subject: &SubjectId) -> Result<Arc<Vec<CachedRow>>, StoreError> {
        let key = (subject.kind().as_str().to_owned(), subject.id().to_owned());
        let read_at = match &self.cache {
            Some(c) => {
                if let Some(rows) = c.get(&key) {
                    return Ok(rows);
                }
                Some(c.generation())
            }
            None => None,
        };
        let rows: Vec<RecordRow> = dispatch!(self, p => {
            sqlx::query_as(record_select!("WHERE r.subject_id = $1 AND r.subject_type = $2 ORDER BY r.id"))
                .bind(subject.id())
                .bind(subject.kind().as_str())
                .fetch_all(p)
                .await?
        });
        let parsed = rows
            .into_iter()
            .map(|row| row.data().map(|data| CachedRow { row, data }))
            .collect::<Result<Vec<_>, _>>()?;
        let parsed = Arc::new(parsed);
        if let (Some(c), Some(generation)) = (&self.cache, read_at) {
            c.put(key, generation, parsed.clone());
        }
        Ok(parsed)
    }
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
        for CachedRow { row, data } in rows.iter() {
            let Some(fields) = permit.release(policy, &row.item, data) else {
                continue;
            };
            let facts = row.facts(data);
            let state = policy.record_state(&facts, today);
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
        for item in policy.list_items_for(subject.kind()) {
            let Some(list_fields) = policy.list_item_fields(item) else {
                continue;
            };
            // Cheap test first: does the permit touch this item at all?
            if permit.release(policy, item, &Map::new()).is_none() {
                continue;
            }
            let lists = self.lists_in_force(subject, today).await?;
            let mut map = Map::new();
            for (name, kind) in list_fields {
                map.insert(
                    name.clone(),
                    Value::Bool(lists.iter().any(|l| l.1 == kind.as_str())),
                );
            }
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

    /// List entries of `subject` in force on `today`.
    async fn lists_in_force(
        &self,
        subject: &SubjectId,
        today: Date,
    ) -> Result<Vec<ListRow>, StoreError> {
        let today = format_date(today);
        Ok(dispatch!(self, p => {
            sqlx::query_as(
                "SELECT id, list, issuer, basis, basis_record_id, effective_from, effective_to \
                 FROM list_entries WHERE subject_id = $1 AND subject_type = $2 \
                 AND exited_on IS NULL AND effective_from <= $3 \
                 AND (effective_to IS NULL OR effective_to > $3) ORDER BY id",
            )
            .bind(subject.id())
            .bind(subject.kind().as_str())
            .bind(&today)
            .fetch_all(p)
            .await?
        }))
    }

    // -------------------------------------------------------------- objections

    /// File an objection on one of the subject's records: it is flagged
    /// `disputed` from now on, with an answer due in 20 days.
    pub async fn file_objection(
        &self,
        a: Application<'_>,
        policy: &Policy,
        today: Date,
    ) -> Result<Result<ObjectionRow, Refusal>, StoreError> {
        let filed_on = format_date(today);
        let due_on = format_date(Policy::objection_due(today));
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, a.subject.kind().as_str(), a.subject.id());
            let row: Option<RecordRow> = sqlx::query_as(record_select!(
                "WHERE r.id = $1 AND r.subject_id = $2 AND r.subject_type = $3"
            ))
            .bind(a.record_id)
            .bind(a.subject.id())
            .bind(a.subject.kind().as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(Err(Refusal::RecordNotFound)) };
            let data = row.data()?;
            match policy.record_state(&row.facts(&data), today) {
                RecordState::Disputed => {
                    return Ok(Err(Refusal::ObjectionOpen(row.objection.unwrap_or_default())));
                }
                s @ (RecordState::Expired | RecordState::Withdrawn | RecordState::Superseded) => {
                    return Ok(Err(Refusal::RecordState(s)));
                }
                RecordState::Active | RecordState::Repaired => {}
            }
            if let Some(open) = row.objection {
                return Ok(Err(Refusal::ObjectionOpen(open)));
            }
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

    /// Answer an open objection (only the record's provider may). A
    /// correction stores a new version that supersedes the old one (kept,
    /// never shared again); a withdrawal stops sharing the record.
    /// Returns the new version's id for a correction.
    pub async fn resolve_objection(
        &self,
        step: Step<'_>,
        resolution: &Resolution,
    ) -> Result<Result<Option<i64>, Refusal>, StoreError> {
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
        let today = format_date(today);
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, t.subject_type.as_str(), t.subject_id.as_str());
            let status: String = sqlx::query_scalar("SELECT status FROM objections WHERE id = $1")
                .bind(objection_id)
                .fetch_one(&mut *tx)
                .await?;
            if t.provider != org {
                return Ok(Err(Refusal::NotProvider));
            }
            if status != "open" {
                return Ok(Err(Refusal::ObjectionClosed(status)));
            }
            let mut new_id = None;
            match resolution {
                Resolution::Upheld => {}
                Resolution::Withdrawn => {
                    sqlx::query("UPDATE records SET state = 'withdrawn' WHERE id = $1")
                        .bind(t.record_id)
                        .execute(&mut *tx)
                        .await?;
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
            .bind(org)
            .bind(&today)
            .bind(note)
            .bind(new_id)
            .bind(request_id)
            .bind(objection_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(new_id))
        })
    }

    /// Open objections past their answer deadline on `today`, oldest due
    /// first; only those on records `provider` provided, if given.
    pub async fn overdue_objections(
        &self,
        provider: Option<&str>,
        today: Date,
    ) -> Result<Vec<ObjectionRow>, StoreError> {
        let today = format_date(today);
        type Row = (i64, i64, String, String, String, String, String, String);
        let rows: Vec<Row> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT o.id, o.record_id, r.item, r.provider, o.subject_type, o.subject_id, o.filed_on, o.due_on \
                 FROM objections o JOIN records r ON r.id = o.record_id \
                 WHERE o.status = 'open' AND o.due_on < $1 AND ($2 IS NULL OR r.provider = $2) \
                 ORDER BY o.due_on, o.id",
            )
            .bind(&today)
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

    // ----------------------------------------------------------------- repairs

    /// Apply for the repair of a negative record.
    pub async fn apply_repair(
        &self,
        a: Application<'_>,
        policy: &Policy,
        today: Date,
    ) -> Result<Result<(i64, Terms), Refusal>, StoreError> {
        let applied_on = format_date(today);
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, a.subject.kind().as_str(), a.subject.id());
            let row: Option<RecordRow> = sqlx::query_as(record_select!(
                "WHERE r.id = $1 AND r.subject_id = $2 AND r.subject_type = $3"
            ))
            .bind(a.record_id)
            .bind(a.subject.id())
            .bind(a.subject.kind().as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(Err(Refusal::RecordNotFound)) };
            let data = row.data()?;
            let facts = row.facts(&data);
            match policy.record_state(&facts, today) {
                RecordState::Repaired => return Ok(Err(Refusal::RecordState(RecordState::Repaired))),
                s @ (RecordState::Withdrawn | RecordState::Superseded) => {
                    return Ok(Err(Refusal::RecordState(s)));
                }
                _ => {}
            }
            let terms = match policy.repair_eligibility(&facts, today) {
                Ok(t) => t,
                Err(e) => return Ok(Err(Refusal::RepairIneligible(e))),
            };
            let pending: Option<i64> =
                sqlx::query_scalar("SELECT id FROM repairs WHERE record_id = $1 AND status = 'pending'")
                    .bind(a.record_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(id) = pending {
                return Ok(Err(Refusal::RepairPending(id)));
            }
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
            tx.commit().await?;
            self.invalidate();
            Ok(Ok((id, terms)))
        })
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

    /// The record an objection or repair application concerns.
    async fn step_target(
        &self,
        sql: &'static str,
        id: i64,
    ) -> Result<Option<ObjectionTarget>, StoreError> {
        let row: Option<(i64, i64, String, String, String, String, String)> = dispatch!(self, p => {
            sqlx::query_as(sql).bind(id).fetch_optional(p).await?
        });
        Ok(row.map(target))
    }

    /// Decide a pending repair application (only the record's provider
    /// may). Approval marks the record repaired as of `today`.
    pub async fn decide_repair(
        &self,
        step: Step<'_>,
        approve: bool,
    ) -> Result<Result<ObjectionTarget, Refusal>, StoreError> {
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
            let (status, state): (String, String) = sqlx::query_as(
                "SELECT a.status, r.state FROM repairs a JOIN records r ON r.id = a.record_id WHERE a.id = $1",
            )
            .bind(repair_id)
            .fetch_one(&mut *tx)
            .await?;
            if t.provider != org {
                return Ok(Err(Refusal::NotProvider));
            }
            if status != "pending" {
                return Ok(Err(Refusal::RepairClosed(status)));
            }
            match StoredState::from_db(&state) {
                StoredState::Active => {}
                StoredState::Withdrawn => return Ok(Err(Refusal::RecordState(RecordState::Withdrawn))),
                StoredState::Superseded => return Ok(Err(Refusal::RecordState(RecordState::Superseded))),
            }
            if approve {
                sqlx::query("UPDATE records SET repaired_on = $1 WHERE id = $2")
                    .bind(&day)
                    .bind(t.record_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE repairs SET status = $1, decided_by = $2, decided_on = $3, decision_note = $4, decided_request = $5 WHERE id = $6",
            )
            .bind(if approve { "approved" } else { "rejected" })
            .bind(org)
            .bind(&day)
            .bind(note)
            .bind(request_id)
            .bind(repair_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(t.clone()))
        })
    }

    // ------------------------------------------------------------------- lists

    /// Add a list entry. Black listing exits the subject's red entries in the
    /// same transaction; red listing a subject with a black entry in force
    /// (or scheduled) is refused (SPEC §2.9).
    pub async fn add_list_entry(
        &self,
        e: &NewListEntry<'_>,
        today: Date,
    ) -> Result<Result<ListAdded, Refusal>, StoreError> {
        let today = format_date(today);
        let (kind, id) = (e.subject.kind().as_str(), e.subject.id());
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, kind, id);
            if let Some(basis) = e.basis_record_id {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM records WHERE id = $1 AND subject_id = $2 AND subject_type = $3",
                )
                .bind(basis)
                .bind(id)
                .bind(kind)
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    return Ok(Err(Refusal::BasisNotFound));
                }
            }
            // Entries not exited and not past their end: in force or scheduled.
            let current = "SELECT id FROM list_entries WHERE subject_id = $1 AND subject_type = $2 \
                 AND list = $3 AND exited_on IS NULL AND (effective_to IS NULL OR effective_to > $4)";
            if e.list == ListKind::Red {
                let black: Vec<i64> = sqlx::query_scalar(current)
                    .bind(id)
                    .bind(kind)
                    .bind("black")
                    .bind(&today)
                    .fetch_all(&mut *tx)
                    .await?;
                if !black.is_empty() {
                    return Ok(Err(Refusal::BlackListed(black)));
                }
            }
            let mine: Option<i64> = sqlx::query_scalar(&format!("{current} AND issuer = $5"))
                .bind(id)
                .bind(kind)
                .bind(e.list.as_str())
                .bind(&today)
                .bind(e.issuer)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(dup) = mine {
                return Ok(Err(Refusal::AlreadyListed(dup)));
            }
            let mut removed_red = Vec::new();
            if e.list == ListKind::Black {
                removed_red = sqlx::query_scalar(
                    "UPDATE list_entries SET exited_on = $1, exit_reason = 'black_listed', exited_by = $2, exit_request = $3 \
                     WHERE subject_id = $4 AND subject_type = $5 AND list = 'red' AND exited_on IS NULL \
                     AND (effective_to IS NULL OR effective_to > $1) RETURNING id",
                )
                .bind(&today)
                .bind(e.issuer)
                .bind(e.request_id)
                .bind(id)
                .bind(kind)
                .fetch_all(&mut *tx)
                .await?;
                removed_red.sort_unstable();
            }
            let entry_id: i64 = sqlx::query_scalar(
                "INSERT INTO list_entries (list, subject_type, subject_id, issuer, basis, basis_record_id, \
                 effective_from, effective_to, listed_at, listed_request) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .bind(e.list.as_str())
            .bind(kind)
            .bind(id)
            .bind(e.issuer)
            .bind(e.basis)
            .bind(e.basis_record_id)
            .bind(format_date(e.effective_from))
            .bind(e.effective_to.map(format_date))
            .bind(e.now)
            .bind(e.request_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(ListAdded { entry_id, removed_red }))
        })
    }

    /// Exit (移出) a list entry on `exit_on` (only its issuer may). Returns
    /// the entry's list and subject.
    pub async fn exit_list_entry(
        &self,
        entry_id: i64,
        org: &str,
        reason: &str,
        exit_on: Date,
        request_id: &str,
    ) -> Result<Result<(ListKind, String, String), Refusal>, StoreError> {
        type Row = (String, String, String, String, String, Option<String>);
        let sql = "SELECT list, subject_type, subject_id, issuer, effective_from, exited_on FROM list_entries WHERE id = $1";
        let first: Option<Row> = dispatch!(self, p => {
            sqlx::query_as(sql).bind(entry_id).fetch_optional(p).await?
        });
        let Some(first) = first else {
            return Ok(Err(Refusal::EntryNotFound));
        };
        let exit_day = format_date(exit_on);
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, first.1.as_str(), first.2.as_str());
            let (list, st, sid, issuer, from, exited): Row =
                sqlx::query_as(sql).bind(entry_id).fetch_one(&mut *tx).await?;
            if issuer != org {
                return Ok(Err(Refusal::NotIssuer));
            }
            if exited.is_some() {
                return Ok(Err(Refusal::AlreadyExited));
            }
            if exit_day < from {
                return Ok(Err(Refusal::ExitBeforeEffective(parse_date(&from).unwrap_or(Date::MIN))));
            }
            sqlx::query(
                "UPDATE list_entries SET exited_on = $1, exit_reason = $2, exited_by = $3, exit_request = $4 WHERE id = $5",
            )
            .bind(&exit_day)
            .bind(reason)
            .bind(org)
            .bind(request_id)
            .bind(entry_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.invalidate();
            let list = ListKind::parse(&list)
                .ok_or_else(|| StoreError::Corrupt(format!("list entry {entry_id}: list '{list}'")))?;
            Ok(Ok((list, st, sid)))
        })
    }

    // ------------------------------------------------------------------ checks

    /// What a 应查必查 check needs: list entries in force with the state of
    /// their basis record (following corrections to the latest version),
    /// and the subject's negative records that are still on file.
    pub async fn check_inputs(
        &self,
        subject: &SubjectId,
        policy: &Policy,
        today: Date,
    ) -> Result<CheckInputs, StoreError> {
        let rows: Vec<RecordRow> = dispatch!(self, p => {
            sqlx::query_as(record_select!("WHERE r.subject_id = $1 AND r.subject_type = $2 ORDER BY r.id"))
                .bind(subject.id())
                .bind(subject.kind().as_str())
                .fetch_all(p)
                .await?
        });
        let mut states: HashMap<i64, (RecordState, Option<i64>)> = HashMap::new();
        let mut negative = Vec::new();
        for row in &rows {
            let data = row.data()?;
            let facts = row.facts(&data);
            let state = policy.record_state(&facts, today);
            states.insert(row.id, (state, row.superseded_by));
            if let Some(terms) = policy.terms(&facts)
                && !matches!(state, RecordState::Withdrawn | RecordState::Superseded)
            {
                negative.push(SubjectRecord {
                    record_id: row.id,
                    item: row.item.clone(),
                    provided_by: row.provider.clone(),
                    state,
                    terms: Some(terms),
                });
            }
        }
        let latest = |mut id: i64| {
            for _ in 0..32 {
                match states.get(&id) {
                    Some((RecordState::Superseded, Some(next))) => id = *next,
                    _ => break,
                }
            }
            (id, states.get(&id).map(|s| s.0))
        };
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
        request_id: &str,
    ) -> Result<i64, StoreError> {
        dispatch!(self, p => {
            Ok(sqlx::query_scalar(
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
            .fetch_one(p)
            .await?)
        })
    }

    /// A stored check.
    pub async fn check(&self, id: i64) -> Result<Option<CheckRow>, StoreError> {
        let row: Option<(String, String, Option<String>)> = dispatch!(self, p => {
            sqlx::query_as("SELECT org, result, feedback FROM checks WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        let Some((org, result, feedback)) = row else {
            return Ok(None);
        };
        let parse = |s: &str| {
            serde_json::from_str::<Value>(s)
                .map_err(|_| StoreError::Corrupt(format!("check {id} holds invalid JSON")))
        };
        Ok(Some(CheckRow {
            org,
            result: parse(&result)?,
            feedback: feedback.as_deref().map(parse).transpose()?,
        }))
    }

    /// Record a department's feedback on its check, once.
    pub async fn check_feedback(
        &self,
        id: i64,
        org: &str,
        feedback: &Value,
        request_id: &str,
        now: &str,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let n = dispatch!(self, p => {
            sqlx::query(
                "UPDATE checks SET feedback = $1, feedback_at = $2, feedback_request = $3 \
                 WHERE id = $4 AND org = $5 AND feedback IS NULL",
            )
            .bind(feedback.to_string())
            .bind(now)
            .bind(request_id)
            .bind(id)
            .bind(org)
            .execute(p)
            .await?
            .rows_affected()
        });
        if n == 1 {
            return Ok(Ok(()));
        }
        Ok(Err(match self.check(id).await? {
            None => Refusal::CheckNotFound,
            Some(c) if c.org != org => Refusal::NotCheckOwner,
            Some(_) => Refusal::FeedbackRecorded,
        }))
    }

    // ----------------------------------------------------------------- history

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

    /// Rows in the lifecycle tables, for tests proving a refused request
    /// stored nothing.
    #[doc(hidden)]
    pub async fn lifecycle_row_count(&self) -> Result<i64, StoreError> {
        dispatch!(self, p => Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM records) + (SELECT COUNT(*) FROM objections) \
             + (SELECT COUNT(*) FROM repairs) + (SELECT COUNT(*) FROM list_entries) \
             + (SELECT COUNT(*) FROM checks WHERE feedback IS NOT NULL) + (SELECT COUNT(*) FROM checks)",
        )
        .fetch_one(p)
        .await?))
    }
}

fn target(r: (i64, i64, String, String, String, String, String)) -> ObjectionTarget {
    ObjectionTarget {
        id: r.0,
        record_id: r.1,
        item: r.2,
        provider: r.3,
        subject_type: r.4,
        subject_id: r.5,
        status: r.6,
    }
}
