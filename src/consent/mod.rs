//! Consent: signed, purpose-bound, revocable consent tokens
//! (征信业管理条例 第十四条、第十八条; 个人信息保护法 第十五条).
//!
//! # Pieces
//!
//! * [`token`] — the pure RFC 8725 verifier (signature, header, claims, time).
//! * [`policy`] — `policies/consent.toml`: trusted issuers and their pinned
//!   keys, leeway and maximum lifetime; loaded strictly, errors name file and
//!   line.
//! * [`dev`] — a development issuer for `credgate quickstart` and the tests.
//! * [`tool`] — `credgate consent keygen` and `credgate consent issue`.
//! * The registry (revocation, use counting) lives in the store
//!   (`Store::use_consent` and friends); the HTTP flow in `http::consent`.
//!
//! # Where issuer keys are pinned
//!
//! Production issuers are pinned inline in `policies/consent.toml`, next to
//! the catalog and grants, so whoever reviews the policy sees exactly which
//! keys can open income and property data. A development issuer's private
//! key must never be committed, so a deployment may name one *additional*
//! issuers file in its configuration (`policy.extra_consent_issuers`), with
//! the same `[[issuer]]` syntax and nothing else (it cannot loosen leeway or
//! lifetime). Quickstart and the test harness generate a key pair in their
//! data directory and point that setting at the generated file; the gateway
//! logs a warning at startup naming every key pinned that way. Production
//! configurations leave it unset.
//!
//! # What a token opens (`scope`)
//!
//! Each scope entry is exactly one of (exact, case-sensitive match):
//! * a catalog field name (`monthly_income`, `tax_paid_annual`);
//! * a personal consent category (`income`, `deposits`, `securities`,
//!   `commercial_insurance`, `real_estate`, `tax_amount`) — opens the
//!   natural-person fields of that category;
//! * a catalog item id (`enterprise_tax`) — opens every field of that item;
//!   this is the natural unit of an enterprise authorisation (企业授权), which
//!   is given per kind of record rather than per column.
//!
//! Entries naming nothing in the catalog open nothing (issuers and the
//! catalog evolve independently). There are no wildcards.
//!
//! # Binding and counting
//!
//! A verified token must name the request's subject (`sub`), the caller's
//! org code from its certificate (`grantee`) and the request's purpose;
//! collection consents (for `POST /v1/records`) use purpose `collection`
//! with the submitting department as grantee. A natural person's consent
//! must also prove written consent after the adverse-consequence notice
//! (`written: true`, `notice` = hex SHA-256 of the notice text); the gateway
//! stores the notice hash with the registration but cannot know the text.
//!
//! A use is counted only when the token actually opened (or, for a
//! submission, admitted) at least one consent-classified field: the query's
//! decision returns or masks such a field because of it. That counts even if
//! the subject has no such record (learning that there is none is also
//! consented information). A query that asks only for public fields, or
//! whose consent fields are all withheld for other reasons, spends nothing —
//! but a revoked or exhausted token is still reported as such.
//!
//! A query's use counts only if the query is answered with the data. It is
//! spent (one conditional statement, so the last use goes to one request
//! on one node) before the request's audit entry exists; if that entry then
//! cannot be made durable (storage refusing writes, the entry refused as
//! too large, the sequencer closed) or the handler fails after the spend,
//! the request is answered 503 without data and the use is given back
//! before the answer (`Store::give_back_consent`, also one conditional
//! statement): `uses` drops by one, an `exhausted` the spend caused becomes
//! `active` again, a revocation that arrived meanwhile stands. While the
//! request is in flight its use is taken, so a concurrent request may be
//! refused `exhausted` for a use that is then given back (fail closed). A
//! refund that fails is logged at error level and the use stays spent —
//! the subject may lose a use, data is never released without one. A crash
//! between the spend and the entry also leaves the use spent.
//!
//! A submission spends one use per distinct token per batch, in the same
//! transaction that stores the records and writes their audit entry to the
//! outbox (`store::outbox`). Those uses are never given back: once the
//! transaction commits the records are stored, and if the entry then cannot
//! be appended (503) it stays in the outbox and reaches the log at the next
//! start — the consent admitted data that is kept.
//!
//! # Sub-reasons
//!
//! A refused token yields `consent_invalid` with one stable `detail`:
//! `malformed`, `bad_signature`, `unknown_issuer`, `wrong_audience` (a
//! genuine token addressed to another gateway — kept apart from `malformed`
//! because it points at a routing or `server.gateway_id` mistake, not an
//! attack), `expired`, `not_yet_valid`, `wrong_subject`, `wrong_grantee`,
//! `wrong_purpose`, `out_of_scope`, `not_written`, `revoked`, `exhausted`,
//! `jti_conflict` (the id is registered for another binding).
//!
//! # Revocation
//!
//! The portal revokes by `jti` for an identity-verified subject it names.
//! A consent the registry knows (used, or revoked before) is revoked only
//! for the subject it is bound to; naming anyone else is refused (409
//! `consent_subject_mismatch`, audited). A `jti` the registry has never seen
//! is recorded as revoked *bound to the named subject*: that subject's token
//! is then refused as `revoked`, a token of anyone else carrying the `jti`
//! as `jti_conflict` — it was not revoked by its own subject, but its id is
//! taken. See `store::consent` for why issuers must mint unguessable ids.

pub mod dev;
pub mod policy;
pub mod token;
pub mod tool;

use crate::policy::Policy;

/// Longest `jti` accepted; it is a registry key and appears in URLs.
pub const MAX_JTI_LEN: usize = 128;

/// Whether a `jti` can be registered and revoked: 1–128 characters from the
/// URL-unreserved set plus `:`, so the portal can name it in a path without
/// encoding and the audit log can hold several of them comma-separated.
pub fn jti_ok(jti: &str) -> bool {
    !jti.is_empty()
        && jti.len() <= MAX_JTI_LEN
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':'))
}

/// The token scope in the form the policy engine matches (field names and
/// consent categories): item ids are replaced by their fields' names.
pub fn expand_scope(policy: &Policy, scope: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(scope.len());
    for s in scope {
        match policy.item(s) {
            Some((_, item)) => out.extend(
                item.fields
                    .iter()
                    .map(|&fi| policy.fields()[fi].name.to_string()),
            ),
            None => out.push(s.clone()),
        }
    }
    out
}

/// Whether the token scope (with item ids) covers a catalog field.
pub fn scope_covers(policy: &Policy, scope: &[String], field: &str) -> bool {
    let Some((_, def)) = policy.field(field) else {
        return false;
    };
    let item = policy.items()[def.item].id.as_str();
    scope
        .iter()
        .any(|s| s == field || s == item || def.consent_category.as_deref() == Some(s.as_str()))
}

/// Current unix time in seconds: the `now` consent verification judges by.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lowercase hex SHA-256 of a notice text, the form the `notice` claim takes.
pub fn notice_hash(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}
