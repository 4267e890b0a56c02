//! The consent registry: revocation and use counting for consent tokens.
//!
//! A token is registered by its `jti` the first time it is about to release
//! or admit consent-classified data; a revocation may create the row
//! earlier, so a token revoked before its first use is still refused. Every
//! decision that matters is one conditional statement on that row — the use
//! count rises only `WHERE state = 'active' AND (max_uses IS NULL OR uses <
//! max_uses)` — so two gateway nodes on one PostgreSQL can never both spend
//! the last use, and a committed revocation wins over any later request.
//!
//! # Giving a use back
//!
//! A query spends its use before its audit entry is durable. If the entry
//! then fails (or the handler does), the request is not answered with the
//! data and [`Store::give_back_consent`] compensates exactly that spend:
//! one conditional statement on the same row and binding, `uses = uses -
//! 1`, `exhausted` back to `active` (the state only the spend can have
//! caused, since `uses` is then below `max_uses` again), `revoked` and
//! `expired` left as they are. Spends and refunds on any number of nodes
//! are each atomic on the row, so `uses` is always the number of counted
//! spends not given back: never above `max_uses`, never below zero (`WHERE
//! uses > 0`). A spend refused while another request held the last use is
//! not retried when that use is given back — refusing is the safe side.
//! A submission's uses are spent in the transaction that stores its records
//! and are never given back (see `crate::consent`).
//!
//! States: `active`, `revoked` (by the portal, final), `exhausted` (the use
//! that reached `max_uses` flips it), `expired` (set when the status of a
//! token past its `exp` is read; verification refuses such tokens anyway).
//!
//! # Binding
//!
//! Every row is bound to a subject (keyed hash): a row created by a use
//! carries the token's whole binding (issuer, subject, grantee, purpose); a
//! row created by a revocation that arrives before any use carries only the
//! subject the portal named, because the gateway has never seen the token
//! and cannot know whose it is. Either way:
//!
//! * a revocation naming another subject than the row's changes nothing
//!   (`consent_subject_mismatch`);
//! * a use whose binding differs from the row's in any recorded column is
//!   refused as [`UseOutcome::Conflict`] (`jti_conflict`) *before* the row's
//!   state is considered — so another subject's token that happens to carry
//!   (or was issued with) a `jti` someone revoked in advance is refused as a
//!   conflict, never reported as revoked by its own subject, and no state of
//!   one subject's consent is disclosed to a token of another.
//!
//! A revocation for a `jti` the registry has never seen cannot be refused:
//! whoever learns a `jti` before its first use can make it unusable (the
//! token is then refused as `jti_conflict`). Issuers must therefore mint
//! unguessable `jti`s (e.g. 128 random bits) and keep them between the
//! subject, the issuer and the grantee.

use super::{Backend, NewRecord, Store, StoreError};
use serde_json::Value;

/// One use of a verified, request-bound consent token, as the registry
/// records it. Borrowed so the hot path copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct ConsentUse<'a> {
    /// Token id; the registry key.
    pub jti: &'a str,
    /// Issuer that signed it.
    pub iss: &'a str,
    /// Keyed hash of the subject (the clear id is never stored).
    pub subject: &'a str,
    /// Org code the consent was granted to.
    pub grantee: &'a str,
    /// Purpose consented to.
    pub purpose: &'a str,
    /// Token expiry, unix seconds.
    pub exp: u64,
    /// Use limit from the token, if any.
    pub max_uses: Option<u32>,
    /// Hash of the adverse-consequence notice, kept for disputes.
    pub notice: Option<&'a str>,
}

/// What the registry made of an attempted use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseOutcome {
    /// Counted; `uses` includes this one.
    Counted {
        /// Uses so far, this one included.
        uses: u64,
    },
    /// The subject revoked the consent.
    Revoked,
    /// `max_uses` already reached.
    Exhausted,
    /// Marked expired by the registry.
    Expired,
    /// The `jti` is registered for a different issuer, subject, grantee or
    /// purpose: two tokens share an id, so neither may be trusted with it.
    Conflict,
}

/// A registry row as reported to the portal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsentStatus {
    /// Token id.
    pub jti: String,
    /// `active`, `revoked`, `expired` or `exhausted`.
    pub state: String,
    /// Uses counted so far.
    pub uses: u64,
    /// Use limit, if any.
    pub max_uses: Option<u64>,
    /// Token expiry (unix seconds), once registered by a use.
    pub exp: Option<u64>,
    /// First attempted use (RFC 3339), kept even if that use was given
    /// back; `None` if never used.
    pub registered_at: Option<String>,
    /// Latest counted use (RFC 3339); a use given back may leave the time of
    /// its attempt here while other uses are still counted, and clears it
    /// when none is.
    pub last_used_at: Option<String>,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
}

const REGISTER_SQL: &str = "INSERT INTO consents \
     (jti, iss, subject, grantee, purpose, exp, max_uses, notice, uses, state, registered_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 'active', $9) ON CONFLICT (jti) DO NOTHING";

/// The one statement that spends a use. Column references on the right of
/// SET see the old row in both SQLite and PostgreSQL.
const USE_SQL: &str = "UPDATE consents SET uses = uses + 1, last_used_at = $2, \
     state = CASE WHEN max_uses IS NOT NULL AND uses + 1 >= max_uses THEN 'exhausted' ELSE state END \
     WHERE jti = $1 AND state = 'active' AND (max_uses IS NULL OR uses < max_uses) \
     AND iss = $3 AND subject = $4 AND grantee = $5 AND purpose = $6 \
     RETURNING uses";

/// The one statement that gives a use back ([`Store::give_back_consent`]):
/// the compensation of exactly one counted [`USE_SQL`] for the same `jti`
/// and binding whose request was not answered with the data. It undoes the
/// state flip that use may have made (`exhausted` → `active`) and nothing
/// else: a consent revoked (or marked expired) meanwhile keeps that state,
/// so a refund never resurrects it. `last_used_at` is cleared when no
/// counted use remains. Like the spend it is one statement on the row, so
/// it composes with concurrent spends and refunds on any node: `uses` is
/// always the number of spends not given back, never above `max_uses`.
const GIVE_BACK_SQL: &str = "UPDATE consents SET uses = uses - 1, \
     last_used_at = CASE WHEN uses = 1 THEN NULL ELSE last_used_at END, \
     state = CASE WHEN state = 'exhausted' AND max_uses IS NOT NULL AND uses - 1 < max_uses \
     THEN 'active' ELSE state END \
     WHERE jti = $1 AND uses > 0 \
     AND iss = $2 AND subject = $3 AND grantee = $4 AND purpose = $5 \
     RETURNING uses";

const WHY_SQL: &str = "SELECT state, iss, subject, grantee, purpose FROM consents WHERE jti = $1";

type WhyRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Whether a registry row's recorded binding admits `u`. Columns a
/// revocation-created row leaves NULL (it knows only the subject) do not
/// count against a use; the subject is always recorded.
fn binding_matches(u: &ConsentUse<'_>, row: &WhyRow) -> bool {
    let (_, iss, subject, grantee, purpose) = row;
    let same = |col: &Option<String>, v: &str| col.as_deref().is_none_or(|c| c == v);
    subject.as_deref() == Some(u.subject)
        && same(iss, u.iss)
        && same(grantee, u.grantee)
        && same(purpose, u.purpose)
}

/// Why a use was not counted (or, from [`Store::consent_blocked`], whether
/// it would be refused). The binding is compared first: a token bound to
/// another subject, issuer, grantee or purpose learns nothing about the
/// state of the consent registered under its `jti`.
fn why(u: &ConsentUse<'_>, row: Option<WhyRow>) -> UseOutcome {
    let Some(row) = row else {
        // Vanished between the statements: never count it.
        return UseOutcome::Conflict;
    };
    if !binding_matches(u, &row) {
        return UseOutcome::Conflict;
    }
    match row.0.as_str() {
        "revoked" => UseOutcome::Revoked,
        "exhausted" => UseOutcome::Exhausted,
        "expired" => UseOutcome::Expired,
        // Active and matching, yet not counted: the limit was reached by a
        // row written before the state flip existed. Treat as spent.
        _ => UseOutcome::Exhausted,
    }
}

/// Register-if-absent, spend one use, and on refusal read why. `$exec` is
/// evaluated at each statement so it may reborrow a transaction.
macro_rules! spend {
    ($exec:expr, $u:expr, $now:expr) => {{
        let u: &ConsentUse<'_> = $u;
        sqlx::query(REGISTER_SQL)
            .bind(u.jti)
            .bind(u.iss)
            .bind(u.subject)
            .bind(u.grantee)
            .bind(u.purpose)
            .bind(i64::try_from(u.exp).unwrap_or(i64::MAX))
            .bind(u.max_uses.map(i64::from))
            .bind(u.notice)
            .bind($now)
            .execute($exec)
            .await?;
        let counted: Option<i64> = sqlx::query_scalar(USE_SQL)
            .bind(u.jti)
            .bind($now)
            .bind(u.iss)
            .bind(u.subject)
            .bind(u.grantee)
            .bind(u.purpose)
            .fetch_optional($exec)
            .await?;
        match counted {
            Some(n) => UseOutcome::Counted {
                uses: u64::try_from(n).unwrap_or(0),
            },
            None => {
                let row: Option<WhyRow> = sqlx::query_as(WHY_SQL)
                    .bind(u.jti)
                    .fetch_optional($exec)
                    .await?;
                why(u, row)
            }
        }
    }};
}

type StatusRow = (
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const STATUS_SQL: &str = "SELECT jti, state, uses, max_uses, exp, registered_at, last_used_at, revoked_at \
     FROM consents WHERE jti = $1";

fn status(r: StatusRow) -> ConsentStatus {
    let (jti, state, uses, max_uses, exp, registered_at, last_used_at, revoked_at) = r;
    ConsentStatus {
        jti,
        state,
        uses: u64::try_from(uses).unwrap_or(0),
        max_uses: max_uses.and_then(|m| u64::try_from(m).ok()),
        exp: exp.and_then(|e| u64::try_from(e).ok()),
        registered_at,
        last_used_at,
        revoked_at,
    }
}

impl Store {
    /// The subject hash a consent's registry row is bound to, if the `jti`
    /// is registered. A row's subject never changes once written, so a
    /// caller may read it before the statement that spends a use.
    pub async fn consent_subject(&self, jti: &str) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> = dispatch!(self, p => {
            sqlx::query_scalar("SELECT subject FROM consents WHERE jti = $1")
                .bind(jti)
                .fetch_optional(p)
                .await?
        });
        Ok(row.flatten())
    }

    /// Spend one use of a consent (registering it on first use). Atomic per
    /// row, so concurrent requests on any number of nodes never exceed
    /// `max_uses` and never use a revoked consent.
    pub async fn use_consent(
        &self,
        u: &ConsentUse<'_>,
        now: &str,
    ) -> Result<UseOutcome, StoreError> {
        let _turn = self.write_turn().await;
        Ok(dispatch!(self, p => spend!(p, u, now)))
    }

    /// Give back one use of `u` that [`Store::use_consent`] counted for a
    /// request that was then not answered with the data (its audit entry
    /// could not be made durable, or it failed after the spend). One
    /// conditional statement (`GIVE_BACK_SQL`): it restores `active` only
    /// if the spend had made the consent `exhausted`, never over a
    /// revocation. Returns the uses left counted, or `None` if no counted
    /// use of that binding was found (nothing changed). Call it at most
    /// once per counted use.
    pub async fn give_back_consent(&self, u: &ConsentUse<'_>) -> Result<Option<u64>, StoreError> {
        let _turn = self.write_turn().await;
        let left: Option<i64> = dispatch!(self, p => {
            sqlx::query_scalar(GIVE_BACK_SQL)
                .bind(u.jti)
                .bind(u.iss)
                .bind(u.subject)
                .bind(u.grantee)
                .bind(u.purpose)
                .fetch_optional(p)
                .await?
        });
        Ok(left.map(|n| u64::try_from(n).unwrap_or(0)))
    }

    /// Whether a consent may still be used, without spending a use (for
    /// requests that release no consent-classified field). `None` means
    /// usable: never seen, or active and bound as `u` is. A row bound to
    /// another subject (or issuer, grantee, purpose) is a conflict, whatever
    /// its state.
    pub async fn consent_blocked(
        &self,
        u: &ConsentUse<'_>,
    ) -> Result<Option<UseOutcome>, StoreError> {
        let row: Option<WhyRow> = dispatch!(self, p => {
            sqlx::query_as(WHY_SQL)
                .bind(u.jti)
                .fetch_optional(p)
                .await?
        });
        Ok(match row {
            None => None,
            Some(r) if r.0 == "active" && binding_matches(u, &r) => None,
            Some(r) => Some(why(u, Some(r))),
        })
    }

    /// Revoke a consent on behalf of its subject, effective for every
    /// request that starts after this returns. An unknown `jti` is recorded
    /// as revoked *and bound to `subject`*: that subject's token is refused
    /// at its first use as revoked, anyone else's as a conflict (see the
    /// module docs). Returns `None` if the `jti` is registered for another
    /// subject, by a use or by an earlier revocation (nothing changed).
    pub async fn revoke_consent(
        &self,
        jti: &str,
        subject: &str,
        by: &str,
        intent: &super::AuditIntent,
        now: &str,
    ) -> Result<Option<ConsentStatus>, StoreError> {
        let _turn = self.write_turn().await;
        let request_id = intent.request_id();
        let row: Option<StatusRow> = dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let row: Option<StatusRow> = sqlx::query_as(
                "INSERT INTO consents (jti, subject, state, revoked_at, revoked_by, revoke_request) \
                 VALUES ($1, $2, 'revoked', $3, $4, $5) \
                 ON CONFLICT (jti) DO UPDATE SET state = 'revoked', \
                 subject = COALESCE(consents.subject, excluded.subject), \
                 revoked_at = COALESCE(consents.revoked_at, excluded.revoked_at), \
                 revoked_by = COALESCE(consents.revoked_by, excluded.revoked_by), \
                 revoke_request = COALESCE(consents.revoke_request, excluded.revoke_request) \
                 WHERE consents.subject IS NULL OR consents.subject = excluded.subject \
                 RETURNING jti, state, uses, max_uses, exp, registered_at, last_used_at, revoked_at",
            )
            .bind(jti)
            .bind(subject)
            .bind(now)
            .bind(by)
            .bind(request_id)
            .fetch_optional(&mut *tx)
            .await?;
            // Only a revocation that took effect changes state; a refused
            // one (another subject's consent) is audited as a refusal.
            if row.is_some() {
                super::outbox::write_intent!(&mut *tx, intent);
            }
            tx.commit().await?;
            row
        });
        Ok(row.map(status))
    }

    /// A consent's registry row; an active consent past `now_unix` is marked
    /// `expired` first, so the portal sees the state a request would meet.
    pub async fn consent_status(
        &self,
        jti: &str,
        now_unix: u64,
    ) -> Result<Option<ConsentStatus>, StoreError> {
        let _turn = self.write_turn().await;
        let now = i64::try_from(now_unix).unwrap_or(i64::MAX);
        let row: Option<StatusRow> = dispatch!(self, p => {
            sqlx::query("UPDATE consents SET state = 'expired' WHERE jti = $1 AND state = 'active' AND exp <= $2")
                .bind(jti)
                .bind(now)
                .execute(p)
                .await?;
            sqlx::query_as(STATUS_SQL).bind(jti).fetch_optional(p).await?
        });
        Ok(row.map(status))
    }

    /// [`Store::insert_records`] for a batch that carries collection
    /// consents: spends one use of each consent and stores the records in one
    /// transaction, so a refused consent stores nothing and a failed insert
    /// spends nothing. `Ok(Err((i, outcome)))` names the first consent in
    /// `uses` that was refused.
    pub async fn insert_records_with_consents(
        &self,
        batch: &[NewRecord],
        uses: &[ConsentUse<'_>],
        intent: &super::AuditIntent,
        now: &str,
    ) -> Result<Result<Vec<i64>, (usize, UseOutcome)>, StoreError> {
        let _turn = self.write_turn().await;
        let request_id = intent.request_id();
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            for (i, u) in uses.iter().enumerate() {
                let outcome = spend!(&mut *tx, u, now);
                if !matches!(outcome, UseOutcome::Counted { .. }) {
                    tx.rollback().await?;
                    return Ok(Err((i, outcome)));
                }
            }
            let mut ids = Vec::with_capacity(batch.len());
            for r in batch {
                ids.push(insert_record!(&mut *tx, r, request_id, now));
            }
            super::outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(Ok(ids))
        })
    }
}
