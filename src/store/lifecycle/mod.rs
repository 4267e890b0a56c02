//! Lifecycle persistence: the lifecycle-aware read path, objections, credit
//! repair, red/black/focus lists and 应查必查 checks.
//!
//! Same rules as the rest of the store: one SQL text for SQLite and
//! PostgreSQL through [`dispatch!`], no decision made here — every state,
//! visibility and permission question goes to the pure policy
//! (`policy::lifecycle`), with "today" passed in by the caller.
//!
//! Every mutation runs in one transaction that first upserts the subject's
//! row in `subject_locks`: on PostgreSQL the row lock serialises concurrent
//! changes to one subject (a black listing racing a red listing cannot both
//! pass their checks); on SQLite that first write takes the database lock
//! before anything is read. Inside it the store reads the facts, hands them
//! to the policy and executes the permit it gets back (the dates of an
//! objection, the terms of a repair application, the red entries a black
//! listing exits). Refusals come back as [`Refusal`]: "not found", or
//! `Denied` with the policy's reason (the transaction is rolled back by
//! dropping it); database failures as [`StoreError`].
//!
//! | file | what |
//! |---|---|
//! | `read.rs` | the lifecycle-aware read path ([`Store::read_shared`]) |
//! | `objections.rs` | filing, resolving and the overdue report |
//! | `repairs.rs` | repair applications and decisions |
//! | `lists.rs` | red/black/focus list entries |
//! | `checks.rs` | 应查必查 checks and their feedback |
//! | `history.rs` | a record's lifecycle history |
//!
//! This file holds what they share: the record row, the subject lock, a
//! subject's own record (`subject_record!`, for filing, applying and a list
//! basis), a record's state before a change (`record_state!`) and the list
//! exits the change lapses (`lapse_entries!`, for a withdrawal and a
//! repair), and the refusals.

use std::sync::Arc;

use serde_json::{Map, Value};
use time::Date;

use super::{Backend, Store, StoreError};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{
    Case, CaseSubject, LifecycleRefusal, Noun, RecordFacts, StoredState, Tier, parse_date,
};
use crate::policy::{Organisation, Policy};

/// Why a lifecycle change did not happen: something it names does not
/// exist, or the policy refused the step (mapped to 404/403/409 in
/// `http/error.rs`). The store never refuses on its own judgement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No such record for this subject.
    #[error("no such record for this subject")]
    RecordNotFound,
    /// No such objection.
    #[error("no such objection")]
    ObjectionNotFound,
    /// No such repair application.
    #[error("no such repair application")]
    RepairNotFound,
    /// The basis record is not a record of this subject.
    #[error("the basis record is not a record of this subject")]
    BasisNotFound,
    /// No such list entry.
    #[error("no such list entry")]
    EntryNotFound,
    /// No such check.
    #[error("no such check")]
    CheckNotFound,
    /// The policy refused the step.
    #[error(transparent)]
    Denied(#[from] LifecycleRefusal),
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

impl ObjectionTarget {
    /// The facts the policy decides a provider's step on.
    pub fn case(&self) -> Case<'_> {
        Case {
            provider: &self.provider,
            status: &self.status,
        }
    }
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
    pub org: &'a Organisation,
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

/// Whether `org` may read an objection or repair application stored about
/// (`subject_type`, `subject_id`) for the subject `asked` about
/// ([`Policy::case_read`]); a refusal is answered like a missing id.
fn case_visible(
    policy: &Policy,
    org: &Organisation,
    noun: Noun,
    (subject_type, subject_id): (&str, &str),
    asked: &SubjectId,
) -> Result<(), Refusal> {
    let stored = CaseSubject {
        subject_type,
        subject_id,
    };
    policy
        .case_read(org, noun, stored, asked)
        .map(|_read| ())
        .map_err(Refusal::from)
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

/// Record `$record` if it is a record of `$subject` (a [`SubjectId`]), read
/// inside the step's transaction: `None` alike for a missing id and for
/// another subject's record, so a step on a record is bound to its subject.
macro_rules! subject_record {
    ($tx:expr, $subject:expr, $record:expr) => {
        sqlx::query_as::<_, RecordRow>(record_select!(
            "WHERE r.id = $1 AND r.subject_id = $2 AND r.subject_type = $3"
        ))
        .bind($record)
        .bind($subject.id())
        .bind($subject.kind().as_str())
        .fetch_optional(&mut *$tx)
        .await?
    };
}

/// Record `$record`'s state as the policy sees it on `$on`
/// ([`Policy::record_state`]), read inside the step's transaction: the
/// "before" of a change to a list basis (see [`lapse_entries!`]).
macro_rules! record_state {
    ($tx:expr, $policy:expr, $record:expr, $on:expr) => {{
        let row: RecordRow = sqlx::query_as(record_select!("WHERE r.id = $1"))
            .bind($record)
            .fetch_one(&mut *$tx)
            .await?;
        let data = row.data()?;
        $policy.record_state(&row.facts(&data), $on)
    }};
}

/// After record `$record` changed from state `$before` to `$after`: exit
/// (移出) the current list entries whose basis is that record or an earlier
/// version it corrects, if the policy says the change lapses them
/// ([`Policy::basis_change_lapse`], for the reason it gives); inside the
/// step's transaction. Evaluates to the exited entry ids, in id order (none
/// when the change lapses nothing).
macro_rules! lapse_entries {
    ($tx:expr, $record:expr, $before:expr => $after:expr, $by:expr, $day:expr, $request:expr) => {{
        match crate::policy::Policy::basis_change_lapse($before, $after) {
            None => Vec::new(),
            Some(reason) => lapse_entries!(@exit $tx, $record, reason, $by, $day, $request),
        }
    }};
    (@exit $tx:expr, $record:expr, $reason:expr, $by:expr, $day:expr, $request:expr) => {{
        let mut chain: Vec<i64> = vec![$record];
        for _ in 0..32 {
            let prev: Option<i64> =
                sqlx::query_scalar("SELECT supersedes FROM records WHERE id = $1")
                    .bind(*chain.last().unwrap_or(&0))
                    .fetch_optional(&mut *$tx)
                    .await?
                    .flatten();
            match prev {
                Some(p) if !chain.contains(&p) => chain.push(p),
                _ => break,
            }
        }
        let exit_reason = format!("basis_{}", $reason.as_str());
        let mut exited: Vec<i64> = Vec::new();
        for basis in chain {
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE list_entries SET exited_on = $1, exit_reason = $2, exited_by = $3, exit_request = $4 \
                 WHERE basis_record_id = $5 AND exited_on IS NULL \
                 AND (effective_to IS NULL OR effective_to > $1) RETURNING id",
            )
            .bind($day)
            .bind(&exit_reason)
            .bind($by)
            .bind($request)
            .bind(basis)
            .fetch_all(&mut *$tx)
            .await?;
            exited.extend(ids);
        }
        exited.sort_unstable();
        exited
    }};
}

// After the macros: macro_rules scoping is textual.
mod checks;
mod history;
mod lists;
mod objections;
mod read;
mod repairs;

pub use checks::{CheckInputs, CheckRow, SubjectRecord};
pub use history::History;
pub use lists::{ListAdded, ListEntryView, NewListEntry};
pub use objections::{ObjectionRow, ObjectionStatus, Resolution};
pub use read::{SharedRead, SharedRecord, WithheldRecord};
pub use repairs::RepairStatus;

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

/// The latest version of record `id` (following corrections) and its
/// state, from `states` (record id → state and the version superseding it).
pub(super) fn latest_version<S: std::hash::BuildHasher>(
    states: &std::collections::HashMap<
        i64,
        (crate::policy::lifecycle::RecordState, Option<i64>),
        S,
    >,
    mut id: i64,
) -> (i64, Option<crate::policy::lifecycle::RecordState>) {
    use crate::policy::lifecycle::RecordState;
    for _ in 0..32 {
        match states.get(&id) {
            Some((RecordState::Superseded, Some(next))) => id = *next,
            _ => break,
        }
    }
    (id, states.get(&id).map(|s| s.0))
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
