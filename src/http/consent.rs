//! Consent in the request flow: the token presented with a query, the
//! collection consents of a submission, and the portal's revocation and
//! status endpoints. Semantics are documented in [`crate::consent`].

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;

use super::dto::RevokeRequest;
use super::error::json_error_at;
use super::{ApiError, App, AuditDraft, Reply};
use crate::audit::now_rfc3339;
use crate::consent::token::{ConsentClaims, ConsentError};
use crate::consent::{expand_scope, jti_ok, now_unix, scope_covers};
use crate::ids::SubjectId;
use crate::policy::{ConsentInput, ConsentNeed, FieldDecision, Organisation, Permit, PurposeDef};
use crate::store::{ConsentUse, NewRecord, UseOutcome};

/// Purpose a collection consent must name.
const COLLECTION: &str = "collection";

fn outcome_reason(o: UseOutcome) -> &'static str {
    match o {
        UseOutcome::Counted { .. } => "counted",
        UseOutcome::Revoked => ConsentError::Revoked.sub_reason(),
        UseOutcome::Exhausted => ConsentError::Exhausted.sub_reason(),
        UseOutcome::Expired => ConsentError::Expired.sub_reason(),
        UseOutcome::Conflict => "jti_conflict",
    }
}

/// Verify `token` and record its `jti` once it is known to be genuine (an
/// unverified `jti` is attacker-chosen and stays out of the log).
fn verified(app: &App, token: &str, draft: &mut AuditDraft) -> Result<ConsentClaims, &'static str> {
    let claims = app.consent.verify(token, now_unix()).map_err(|e| {
        if e == ConsentError::WrongAudience {
            // Genuine but addressed to another gateway: a routing or
            // gateway_id mistake worth an operator's attention.
            tracing::warn!("consent token addressed to another gateway (check server.gateway_id)");
        }
        e.sub_reason()
    })?;
    if !jti_ok(&claims.jti) {
        return Err(ConsentError::Malformed("jti format").sub_reason());
    }
    draft.consent = Some(claims.jti.clone());
    Ok(claims)
}

/// Decide a query's fields under the consent `token` presents, spending a
/// use only if a consent-classified field is actually released.
pub(super) async fn decide_query<'f, S: AsRef<str>>(
    app: &App,
    org: &Organisation,
    purpose: &PurposeDef,
    subject: &SubjectId,
    fields: &'f [S],
    token: Option<&str>,
    draft: &mut AuditDraft,
) -> Result<(Vec<FieldDecision<'f>>, Permit), ApiError> {
    let policy = &app.policy;
    let decide = |c: &ConsentInput| policy.decide_query(org, purpose, subject.kind(), fields, c);
    let Some(token) = token else {
        return Ok(decide(&ConsentInput::Absent));
    };
    let claims = match verified(app, token, draft) {
        Ok(c) => c,
        Err(sub) => return Ok(decide(&ConsentInput::Invalid(sub))),
    };
    if let Err(e) = claims.check_binding(subject.id(), org.code.as_str(), purpose.name.as_str()) {
        return Ok(decide(&ConsentInput::Invalid(e.sub_reason())));
    }
    let (decisions, permit) = decide(&ConsentInput::Valid {
        scope: expand_scope(policy, &claims.scope),
        written: claims.has_written_notice(),
    });
    let releases_consent_data = permit
        .fields()
        .iter()
        .any(|&(fi, _)| policy.class_of(&policy.fields()[fi]).consent != ConsentNeed::None);
    let subject_hash = registry_subject(app, &claims.jti, subject).await?;
    let u = registry_use(&claims, &subject_hash);
    let blocked = if releases_consent_data {
        match app.store.use_consent(&u, &now_rfc3339()).await? {
            UseOutcome::Counted { .. } => {
                // Counted for now; `App::handle` gives it back unless the
                // request is answered with the data (see `give_back`).
                draft.spent.push(Spent {
                    subject_hash: subject_hash.clone(),
                    claims: claims.clone(),
                });
                None
            }
            other => Some(other),
        }
    } else {
        app.store.consent_blocked(&u).await?
    };
    Ok(match blocked {
        Some(o) => decide(&ConsentInput::Invalid(outcome_reason(o))),
        None => (decisions, permit),
    })
}

/// A use a query spent, to give back if the request is not answered with
/// the data it opened.
#[derive(Debug)]
pub(super) struct Spent {
    subject_hash: String,
    claims: ConsentClaims,
}

/// Give back the uses `spent` by a request that was not answered with the
/// data: its entry could not be made durable (503 `audit_unavailable`) or
/// the handler failed after the spend. A refund that fails is logged at
/// error level and the use stays spent: the request still fails closed,
/// never releasing data, and the subject's consent may have one use less
/// than it should (never more).
pub(super) async fn give_back(app: &App, request_id: &str, spent: &[Spent]) {
    for s in spent {
        let u = registry_use(&s.claims, &s.subject_hash);
        match app.store.give_back_consent(&u).await {
            Ok(Some(left)) => tracing::info!(
                request_id,
                jti = %s.claims.jti,
                uses = left,
                "consent use given back: the request was not answered with the data"
            ),
            Ok(None) => tracing::error!(
                request_id,
                jti = %s.claims.jti,
                "consent use to give back not found in the registry; nothing changed"
            ),
            Err(e) => tracing::error!(
                request_id,
                jti = %s.claims.jti,
                error = %e,
                "consent use could not be given back; it stays spent"
            ),
        }
    }
}

/// The subject hash a consent is bound to in the registry: the bare hash
/// under the current subject key (the registry's own format, unchanged by
/// key ids), or, after a key rotation, the hash under the retired key a row
/// registered before the rotation holds, so a consent given before a
/// rotation keeps working (and can be revoked) until it expires.
async fn registry_subject(
    app: &App,
    jti: &str,
    subject: &SubjectId,
) -> Result<String, crate::store::StoreError> {
    let mut all = app.hasher.bare_all(subject);
    if all.len() > 1
        && let Some(stored) = app.store.consent_subject(jti).await?
        && all.contains(&stored)
    {
        return Ok(stored);
    }
    Ok(all.swap_remove(0))
}

fn registry_use<'a>(c: &'a ConsentClaims, subject_hash: &'a str) -> ConsentUse<'a> {
    ConsentUse {
        jti: &c.jti,
        iss: &c.iss,
        subject: subject_hash,
        grantee: &c.grantee,
        purpose: &c.purpose,
        exp: c.exp,
        max_uses: c.max_uses,
        notice: c.notice.as_deref(),
    }
}

/// Collection consents of one submission, gathered while the batch is
/// validated and spent in the transaction that stores it.
#[derive(Default)]
pub(super) struct Collection {
    /// One per distinct `jti`, with where it was first presented.
    tokens: Vec<Presented>,
}

struct Presented {
    record: usize,
    field: String,
    subject: SubjectId,
    claims: ConsentClaims,
}

impl Collection {
    /// Record `i` carries the consent-classified fields `personal` of
    /// `subject`: they need a verified collection consent from that subject
    /// to this department whose scope covers every one of them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check(
        &mut self,
        app: &App,
        org: &Organisation,
        i: usize,
        subject: &SubjectId,
        personal: &[&str],
        token: Option<&str>,
        draft: &mut AuditDraft,
    ) -> Result<(), ApiError> {
        let Some(&first) = personal.first() else {
            return Ok(());
        };
        let Some(token) = token else {
            draft.field(first.to_owned(), "refused", "consent_required", None);
            return Err(ApiError::unprocessable(
                "consent_required",
                format!(
                    "record {i}: '{first}' may be collected only with the person's written consent \
                     (a consent_token with purpose '{COLLECTION}' granted to this department)"
                ),
            )
            .with(json!({"record": i, "field": first})));
        };
        let refuse = |draft: &mut AuditDraft, field: &str, sub: &'static str| {
            draft.field(field.to_owned(), "refused", "consent_invalid", Some(sub));
            ApiError::unprocessable(
                "consent_invalid",
                format!("record {i}: the collection consent for '{field}' does not hold ({sub})"),
            )
            .with(json!({"record": i, "field": field, "reason": sub}))
        };
        let claims = match verified(app, token, draft) {
            Ok(c) => c,
            Err(sub) => return Err(refuse(draft, first, sub)),
        };
        self.note_jtis(&claims.jti, draft);
        if let Err(e) = claims.check_binding(subject.id(), org.code.as_str(), COLLECTION) {
            return Err(refuse(draft, first, e.sub_reason()));
        }
        if !claims.has_written_notice() {
            return Err(refuse(draft, first, "not_written"));
        }
        if let Some(f) = personal
            .iter()
            .find(|f| !scope_covers(&app.policy, &claims.scope, f))
        {
            return Err(refuse(draft, f, ConsentError::OutOfScope.sub_reason()));
        }
        match self.tokens.iter().find(|p| p.claims.jti == claims.jti) {
            Some(p) if p.claims == claims && p.subject == *subject => {}
            Some(_) => return Err(refuse(draft, first, "jti_conflict")),
            None => self.tokens.push(Presented {
                record: i,
                field: first.to_owned(),
                subject: subject.clone(),
                claims,
            }),
        }
        Ok(())
    }

    /// Audit the ids of every verified token so far, comma-separated.
    fn note_jtis(&self, current: &str, draft: &mut AuditDraft) {
        let mut ids: Vec<&str> = self.tokens.iter().map(|p| p.claims.jti.as_str()).collect();
        if !ids.contains(&current) {
            ids.push(current);
        }
        draft.consent = Some(ids.join(","));
    }

    /// Store the batch, spending one use of each consent in the same
    /// transaction; a consent revoked or exhausted meanwhile refuses it all.
    pub(super) async fn store(
        self,
        app: &App,
        batch: &[NewRecord],
        draft: &mut AuditDraft,
    ) -> Result<Vec<i64>, ApiError> {
        let now = now_rfc3339();
        draft.records = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        let intent = app.intend(draft, StatusCode::CREATED).await?;
        if self.tokens.is_empty() {
            return Ok(app.store.insert_records(batch, &intent, &now).await?);
        }
        let mut hashes: Vec<String> = Vec::with_capacity(self.tokens.len());
        for p in &self.tokens {
            hashes.push(registry_subject(app, &p.claims.jti, &p.subject).await?);
        }
        let uses: Vec<ConsentUse<'_>> = self
            .tokens
            .iter()
            .zip(&hashes)
            .map(|(p, h)| registry_use(&p.claims, h))
            .collect();
        match app
            .store
            .insert_records_with_consents(batch, &uses, &intent, &now)
            .await?
        {
            Ok(ids) => Ok(ids),
            Err((k, outcome)) => {
                let p = &self.tokens[k];
                let sub = outcome_reason(outcome);
                // Nothing was stored: the entry must not also say the
                // batch's fields were accepted.
                draft.fields.retain(|f| f.decision != "accepted");
                draft.field(p.field.clone(), "refused", "consent_invalid", Some(sub));
                Err(ApiError::unprocessable(
                    "consent_invalid",
                    format!(
                        "record {}: the collection consent for '{}' does not hold ({sub}); nothing was stored",
                        p.record, p.field
                    ),
                )
                .with(json!({"record": p.record, "field": p.field, "reason": sub})))
            }
        }
    }
}

/// `GET /v1/consents/{jti}`, for the portal acting for an identity-verified
/// subject. The status read needs no subject: it returns registry state
/// only, no personal data.
pub(super) async fn status(
    app: &App,
    jti: &str,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let jti = consent_id(jti, draft)?;
    match app.store.consent_status(&jti, now_unix()).await? {
        Some(s) => Ok(Reply::ok(json!(s))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "consent_not_found",
            "this consent has never been used or revoked here",
        )),
    }
}

/// A consent id from the path, recorded in the entry once it is well formed.
fn consent_id(jti: &str, draft: &mut AuditDraft) -> Result<String, ApiError> {
    if !jti_ok(jti) {
        return Err(ApiError::bad_request(
            "invalid_consent_id",
            "a consent id is 1-128 characters from A-Z a-z 0-9 - _ . ~ :",
        ));
    }
    draft.consent = Some(jti.to_owned());
    Ok(jti.to_owned())
}

/// `POST /v1/consents/{jti}/revoke`, for the portal acting for an
/// identity-verified subject. The issuer is not a TLS party, so revocation
/// goes through the portal; it must name the subject, which must match the
/// one the consent was registered for.
pub(super) async fn revoke(
    app: &App,
    org: &Organisation,
    jti: &str,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let jti = consent_id(jti, draft)?;
    let r: RevokeRequest = serde_json::from_slice(body).map_err(|e| json_error_at(&e, body))?;
    let subject = SubjectId::parse_at(&r.subject.kind, &r.subject.id, app.today())?;
    let subject_hash = registry_subject(app, &jti, &subject).await?;
    draft.subject = Some(subject);
    let intent = app.intend(draft, StatusCode::OK).await?;
    match app
        .store
        .revoke_consent(
            &jti,
            &subject_hash,
            org.code.as_str(),
            &intent,
            &now_rfc3339(),
        )
        .await?
    {
        Some(s) => Ok(Reply::ok(json!(s))),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "consent_subject_mismatch",
            "this consent was given by another subject; nothing was revoked",
        )),
    }
}
