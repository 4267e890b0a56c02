//! Red/black/focus list entries (红黑名单): adding, exiting, in force.

use serde::Serialize;
use time::Date;

use super::{RecordRow, Refusal};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{ListEntryFacts, ListKind, RecordState, format_date, parse_date};
use crate::policy::{Organisation, Policy};
use crate::store::{Backend, Store, StoreError};

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

pub(super) type ListRow = (
    i64,
    String,
    String,
    String,
    Option<i64>,
    String,
    Option<String>,
);

impl Store {
    /// List entries of `subject` in force on `today`
    /// ([`ListEntryFacts::in_force`]), in id order.
    pub(super) async fn lists_in_force(
        &self,
        subject: &SubjectId,
        today: Date,
    ) -> Result<Vec<ListRow>, StoreError> {
        let rows: Vec<ListRow> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT id, list, issuer, basis, basis_record_id, effective_from, effective_to \
                 FROM list_entries WHERE subject_id = $1 AND subject_type = $2 \
                 AND exited_on IS NULL ORDER BY id",
            )
            .bind(subject.id())
            .bind(subject.kind().as_str())
            .fetch_all(p)
            .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if entry_facts(r.0, &r.1, &r.2, &r.5, r.6.as_deref())?.in_force(today) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Add a list entry, as far as [`Policy::list_addition`] permits
    /// (black excludes red, docs/compliance.md rule 9): the red entries the permit names are
    /// exited in the same transaction, under the subject lock, so a black
    /// listing racing a red listing cannot both pass.
    pub async fn add_list_entry(
        &self,
        e: &NewListEntry<'_>,
        policy: &Policy,
        today: Date,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<ListAdded, Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let day = format_date(today);
        let (kind, id) = (e.subject.kind().as_str(), e.subject.id());
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            lock_subject!(tx, kind, id);
            if let Some(basis) = e.basis_record_id {
                let Some(row) = subject_record!(tx, e.subject, basis) else {
                    return Ok(Err(Refusal::BasisNotFound));
                };
                let data = row.data()?;
                if let Err(r) = policy.list_basis(policy.record_state(&row.facts(&data), today)) {
                    return Ok(Err(r.into()));
                }
            }
            let rows: Vec<EntryRow> = sqlx::query_as(
                "SELECT id, list, issuer, effective_from, effective_to FROM list_entries \
                 WHERE subject_id = $1 AND subject_type = $2 AND exited_on IS NULL ORDER BY id",
            )
            .bind(id)
            .bind(kind)
            .fetch_all(&mut *tx)
            .await?;
            let entries = rows
                .iter()
                .map(|r| entry_facts(r.0, &r.1, &r.2, &r.3, r.4.as_deref()))
                .collect::<Result<Vec<_>, _>>()?;
            let permit = match policy.list_addition(e.list, e.issuer, &entries, today) {
                Ok(p) => p,
                Err(r) => return Ok(Err(r.into())),
            };
            for red in permit.exit_red() {
                sqlx::query(
                    "UPDATE list_entries SET exited_on = $1, exit_reason = 'black_listed', exited_by = $2, exit_request = $3 \
                     WHERE id = $4",
                )
                .bind(&day)
                .bind(e.issuer)
                .bind(e.request_id)
                .bind(red)
                .execute(&mut *tx)
                .await?;
            }
            let removed_red = permit.exit_red().to_vec();
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
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(ListAdded { entry_id, removed_red }))
        })
    }

    /// Exit (移出) a list entry on `exit_on`, as far as
    /// [`Policy::list_exit`] permits. Returns the entry's list and subject.
    pub async fn exit_list_entry(
        &self,
        entry_id: i64,
        org: &Organisation,
        reason: &str,
        exit_on: Date,
        policy: &Policy,
        intent: &crate::store::AuditIntent,
    ) -> Result<Result<(ListKind, String, String), Refusal>, StoreError> {
        let _turn = self.write_turn().await;
        let request_id = intent.request_id();
        type Row = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let sql = "SELECT list, subject_type, subject_id, issuer, effective_from, effective_to, exited_on \
                   FROM list_entries WHERE id = $1";
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
            let (list, st, sid, issuer, from, to, exited): Row =
                sqlx::query_as(sql).bind(entry_id).fetch_one(&mut *tx).await?;
            let facts = ListEntryFacts {
                exited: exited.is_some(),
                ..entry_facts(entry_id, &list, &issuer, &from, to.as_deref())?
            };
            if let Err(r) = policy.list_exit(org, &facts, exit_on) {
                return Ok(Err(r.into()));
            }
            sqlx::query(
                "UPDATE list_entries SET exited_on = $1, exit_reason = $2, exited_by = $3, exit_request = $4 WHERE id = $5",
            )
            .bind(&exit_day)
            .bind(reason)
            .bind(org.code.as_str())
            .bind(request_id)
            .bind(entry_id)
            .execute(&mut *tx)
            .await?;
            crate::store::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            let list = ListKind::parse(&list)
                .ok_or_else(|| StoreError::Corrupt(format!("list entry {entry_id}: list '{list}'")))?;
            Ok(Ok((list, st, sid)))
        })
    }
}

/// A stored list entry: id, list, issuer, effective from, effective to.
type EntryRow = (i64, String, String, String, Option<String>);

/// The facts the policy decides on, from a stored entry (not exited).
fn entry_facts<'a>(
    id: i64,
    list: &str,
    issuer: &'a str,
    from: &str,
    to: Option<&str>,
) -> Result<ListEntryFacts<'a>, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("list entry {id}"));
    Ok(ListEntryFacts {
        id,
        list: ListKind::parse(list).ok_or_else(corrupt)?,
        issuer,
        effective_from: parse_date(from).ok_or_else(corrupt)?,
        effective_to: match to {
            Some(d) => Some(parse_date(d).ok_or_else(corrupt)?),
            None => None,
        },
        exited: false,
    })
}
