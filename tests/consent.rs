//! Consent tokens end to end over real mTLS: hostile tokens, binding to
//! subject, grantee and purpose, scope, written notice, enterprise
//! authorisation, revocation through the portal, use limits (also across two
//! gateway nodes on one database), collection consent for submissions, and
//! the audit trail. Runs on SQLite, and on PostgreSQL when
//! `CREDGATE_TEST_DATABASE_URL` is set.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use credgate::consent::dev::DevIssuer;
use credgate::consent::{notice_hash, now_unix};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

const AUD: &str = "credgate-test";
const NOTICE: &str =
    "如未按约定履行还款义务，相关信息将被记入信用档案，可能影响您今后获得金融服务。";
const INCOME: &str = "18500";

fn jti(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Claims of a valid natural-person consent to `grantee` for `purpose`.
fn claims(dev: &DevIssuer, sub: &str, grantee: &str, purpose: &str, scope: &[&str]) -> Value {
    let now = now_unix();
    json!({
        "iss": dev.iss, "sub": sub, "aud": AUD, "grantee": grantee, "purpose": purpose,
        "scope": scope, "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "jti": jti("c"), "written": true, "notice": notice_hash(NOTICE),
    })
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn hdr(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","typ":"consent+jwt","kid":"{kid}"}}"#)
}

/// Sign arbitrary header and payload bytes with the dev issuer's key.
fn sign_raw(dev: &DevIssuer, header: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload));
    let key = Ed25519KeyPair::from_pkcs8(&dev.pkcs8).unwrap();
    format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()))
}

fn token(dev: &DevIssuer, c: &Value) -> String {
    sign_raw(dev, &hdr("EdDSA", &dev.kid), c.to_string().as_bytes())
}

fn q(kind: &str, id: &str, purpose: &str, fields: &[&str], token: Option<&str>) -> Value {
    let mut v = query(kind, id, purpose, fields);
    if let Some(t) = token {
        v["consent_token"] = json!(t);
    }
    v
}

/// (decision, reason, detail) of one field in a query response.
fn decision_of(body: &Value, field: &str) -> (String, String, Option<String>) {
    let d = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == field)
        .unwrap_or_else(|| panic!("no decision for {field}: {body}"));
    (
        d["decision"].as_str().unwrap().to_owned(),
        d["reason"].as_str().unwrap().to_owned(),
        d["detail"].as_str().map(str::to_owned),
    )
}

fn invalid(sub: &str) -> (String, String, Option<String>) {
    (
        "withheld".into(),
        "consent_invalid".into(),
        Some(sub.to_owned()),
    )
}

fn returned() -> (String, String, Option<String>) {
    ("returned".into(), "authorised".into(), None)
}

/// Released fields of the response, merged over records.
fn released(body: &Value) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for r in body["records"].as_array().unwrap() {
        for (k, v) in r["fields"].as_object().unwrap() {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

async fn consent_rows(gw: &TestGateway) -> i64 {
    gw.store
        .count_raw("SELECT COUNT(*) FROM consents")
        .await
        .unwrap()
}

async fn status(gw: &TestGateway, jti: &str) -> Resp {
    gw.client("portal")
        .get(&format!("/v1/consents/{jti}"))
        .await
}

async fn revoke(gw: &TestGateway, jti: &str, kind: &str, id: &str) -> Resp {
    gw.client("portal")
        .post(
            &format!("/v1/consents/{jti}/revoke"),
            &json!({"subject": {"type": kind, "id": id}}),
        )
        .await
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_stable_sub_reasons() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let good = || claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let now = now_unix();
    let dev_pub = Ed25519KeyPair::from_pkcs8(&dev.pkcs8)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let valid = token(&dev, &good());

    let mut cases: Vec<(&str, String, &str, &str)> = Vec::new();
    // (name, token, caller, expected sub-reason); subject PERSON, purpose financing.
    let body = b64(good().to_string().as_bytes());
    cases.push((
        "alg none",
        format!("{}.{body}.", b64(hdr("none", &dev.kid).as_bytes())),
        "bank",
        "bad_signature",
    ));
    let hs = {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some("consent+jwt".into());
        h.kid = Some(dev.kid.clone());
        jsonwebtoken::encode(&h, &good(), &EncodingKey::from_secret(&dev_pub)).unwrap()
    };
    cases.push((
        "HS256 keyed with the public key",
        hs,
        "bank",
        "bad_signature",
    ));
    cases.push((
        "unknown kid",
        sign_raw(
            &dev,
            &hdr("EdDSA", "no-such-kid"),
            good().to_string().as_bytes(),
        ),
        "bank",
        "unknown_issuer",
    ));
    cases.push((
        "claims another issuer (iss of the pinned production issuer)",
        token(
            &dev,
            &with("iss", json!("https://credit.zibo.gov.cn/consent")),
        ),
        "bank",
        "unknown_issuer",
    ));
    cases.push((
        "another issuer's kid, signed with ours",
        sign_raw(
            &dev,
            &hdr("EdDSA", "zibo-consent-2026-01"),
            with("iss", json!("https://credit.zibo.gov.cn/consent"))
                .to_string()
                .as_bytes(),
        ),
        "bank",
        "bad_signature",
    ));
    let tampered_payload = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = b64(with("scope", json!(["income", "real_estate"]))
            .to_string()
            .as_bytes());
        parts.join(".")
    };
    cases.push((
        "tampered payload",
        tampered_payload,
        "bank",
        "bad_signature",
    ));
    let tampered_sig = {
        let (input, sig) = valid.rsplit_once('.').unwrap();
        let mut s = URL_SAFE_NO_PAD.decode(sig).unwrap();
        s[7] ^= 0x20;
        format!("{input}.{}", b64(&s))
    };
    cases.push(("tampered signature", tampered_sig, "bank", "bad_signature"));
    let mut expired = good();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 120);
    cases.push(("expired", token(&dev, &expired), "bank", "expired"));
    cases.push((
        "not yet valid",
        token(&dev, &with("nbf", json!(now + 600))),
        "bank",
        "not_yet_valid",
    ));
    cases.push((
        "missing exp",
        token(&dev, &without("exp")),
        "bank",
        "malformed",
    ));
    cases.push((
        "missing aud",
        token(&dev, &without("aud")),
        "bank",
        "malformed",
    ));
    cases.push((
        "wrong aud",
        token(&dev, &with("aud", json!("credgate-other-node"))),
        "bank",
        "wrong_audience",
    ));
    cases.push((
        "bank A's token used by bank B",
        valid.clone(),
        "bank2",
        "wrong_grantee",
    ));
    cases.push((
        "wrong purpose",
        token(&dev, &with("purpose", json!("credit_report"))),
        "bank",
        "wrong_purpose",
    ));
    cases.push((
        "scope does not cover the field",
        token(
            &dev,
            &with("scope", json!(["deposits", "real_estate_count"])),
        ),
        "bank",
        "out_of_scope",
    ));
    cases.push((
        "no proof of written consent",
        token(&dev, &without("written")),
        "bank",
        "not_written",
    ));
    let mut big = good();
    big["scope"] = json!(vec!["x".repeat(100); 90]);
    let big = token(&dev, &big);
    assert!(big.len() > 8192);
    cases.push(("oversized token", big, "bank", "malformed"));
    cases.push((
        "non-JSON payload",
        sign_raw(&dev, &hdr("EdDSA", &dev.kid), b"income: yes please"),
        "bank",
        "malformed",
    ));
    let dup = {
        let g = good().to_string();
        format!(
            r#"{{"scope":["income","real_estate","deposits"],{}"#,
            &g[1..]
        )
    };
    cases.push((
        "duplicate claims",
        sign_raw(&dev, &hdr("EdDSA", &dev.kid), dup.as_bytes()),
        "bank",
        "malformed",
    ));
    cases.push(("garbage", "a.b.c.d".repeat(3), "bank", "malformed"));

    for (name, t, who, sub) in &cases {
        let r = gw
            .client(who)
            .post(
                "/v1/query",
                &q(
                    "natural_person",
                    ids::PERSON,
                    "financing",
                    &["person_name", "monthly_income"],
                    Some(t),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        assert_eq!(
            decision_of(&r.body, "monthly_income"),
            invalid(sub),
            "{name}"
        );
        // The consent-free field is unaffected; the consent field never leaks.
        assert_eq!(decision_of(&r.body, "person_name"), returned(), "{name}");
        let text = r.body["records"].to_string();
        assert!(text.contains("张伟"), "{name}");
        assert!(!text.contains(INCOME), "{name}: income leaked: {text}");
    }
    // Wrong subject: the same valid token presented for someone else.
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON2,
                "financing",
                &["monthly_income"],
                Some(&valid),
            ),
        )
        .await;
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        invalid("wrong_subject")
    );

    // Nothing was registered, every request was audited with its sub-reason,
    // and only verified tokens put their jti in the log.
    assert_eq!(consent_rows(&gw).await, 0);
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), cases.len() + 1);
    for (e, (name, _, _, sub)) in entries.iter().zip(&cases) {
        assert_eq!(e.outcome, "ok", "{name}");
        let f = e
            .fields
            .iter()
            .find(|f| f.field == "monthly_income")
            .unwrap();
        assert_eq!(
            (&*f.reason, f.detail.as_deref()),
            ("consent_invalid", Some(*sub)),
            "{name}"
        );
        let verified = matches!(
            *sub,
            "wrong_grantee" | "wrong_purpose" | "out_of_scope" | "not_written"
        );
        assert_eq!(e.consent.is_some(), verified, "{name}: {:?}", e.consent);
    }
    gw.stop().await;
}

#[tokio::test]
async fn valid_consent_opens_exactly_the_consented_fields_of_that_subject() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    let id = c["jti"].as_str().unwrap().to_owned();
    let t = token(&dev, &c);
    let fields = [
        "person_name",
        "monthly_income",
        "real_estate_count",
        "deposit_balance",
    ];
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &fields,
                Some(&t),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(decision_of(&r.body, "monthly_income"), returned());
    assert_eq!(decision_of(&r.body, "person_name"), returned());
    assert_eq!(
        decision_of(&r.body, "real_estate_count"),
        invalid("out_of_scope")
    );
    assert_eq!(
        decision_of(&r.body, "deposit_balance"),
        invalid("out_of_scope")
    );
    let got = released(&r.body);
    assert_eq!(
        got,
        json!({"person_name": "张伟", "monthly_income": 18500})
            .as_object()
            .unwrap()
            .clone()
    );

    // The same token for another subject, and no token at all.
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON2,
                "financing",
                &["monthly_income"],
                Some(&t),
            ),
        )
        .await;
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        invalid("wrong_subject")
    );
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &["monthly_income"],
                None,
            ),
        )
        .await;
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        ("withheld".to_owned(), "consent_required".to_owned(), None)
    );
    assert!(!r.body.to_string().contains(INCOME));

    // Asking only for consent-free fields with the token spends no use.
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &["person_name"],
                Some(&t),
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let s = status(&gw, &id).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["state"], "active");
    assert_eq!(s.body["uses"], 1);

    // The use is in that request's audit entry.
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries[0].consent.as_deref(), Some(id.as_str()));
    assert_eq!(entries[0].action, "query");
    assert_eq!(entries[2].consent, None);
    gw.stop().await;
}

#[tokio::test]
async fn enterprise_authorisation_opens_tax_paid() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let ask = |t: Option<String>| {
        q(
            "legal_person",
            ids::CERAMICS,
            "financing",
            &[
                "enterprise_name",
                "tax_paid_annual",
                "tax_credit_rating",
                "insured_employees",
            ],
            t.as_deref(),
        )
    };
    let r = bank.post("/v1/query", &ask(None)).await;
    assert_eq!(
        decision_of(&r.body, "tax_paid_annual"),
        ("withheld".to_owned(), "consent_required".to_owned(), None)
    );
    assert!(!r.body.to_string().contains("1286000"));

    // Item id in scope: the whole enterprise_tax item. Enterprises need no
    // written-notice claims.
    let mut c = claims(
        &dev,
        ids::CERAMICS,
        ids::BANK,
        "financing",
        &["enterprise_tax"],
    );
    c.as_object_mut().unwrap().remove("written");
    c.as_object_mut().unwrap().remove("notice");
    let r = bank.post("/v1/query", &ask(Some(token(&dev, &c)))).await;
    assert_eq!(decision_of(&r.body, "tax_paid_annual"), returned());
    assert_eq!(decision_of(&r.body, "tax_credit_rating"), returned());
    assert_eq!(
        decision_of(&r.body, "insured_employees"),
        invalid("out_of_scope")
    );
    let got = released(&r.body);
    assert_eq!(got["tax_paid_annual"], 1_286_000);
    assert_eq!(got["tax_credit_rating"], "A");
    assert!(!got.contains_key("insured_employees"));

    // A field name in scope opens only that field.
    let mut c = claims(
        &dev,
        ids::CERAMICS,
        ids::BANK,
        "financing",
        &["tax_paid_annual"],
    );
    c.as_object_mut().unwrap().remove("written");
    let r = bank.post("/v1/query", &ask(Some(token(&dev, &c)))).await;
    assert_eq!(decision_of(&r.body, "tax_paid_annual"), returned());
    assert_eq!(
        decision_of(&r.body, "tax_credit_rating"),
        invalid("out_of_scope")
    );
    assert_eq!(released(&r.body)["tax_paid_annual"], 1_286_000);

    // Authorisation given by another enterprise opens nothing here.
    let c = claims(&dev, ids::CHEM, ids::BANK, "financing", &["enterprise_tax"]);
    let r = bank.post("/v1/query", &ask(Some(token(&dev, &c)))).await;
    assert_eq!(
        decision_of(&r.body, "tax_paid_annual"),
        invalid("wrong_subject")
    );
    gw.stop().await;
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request_and_is_audited() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    let id = c["jti"].as_str().unwrap().to_owned();
    let t = token(&dev, &c);
    let ask = q(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
        Some(&t),
    );
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), returned());

    // Only the portal may revoke, and only for the consenting subject.
    let r = gw
        .client("bank")
        .post(
            &format!("/v1/consents/{id}/revoke"),
            &json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("role_not_permitted"))
    );
    let r = revoke(&gw, &id, "natural_person", ids::PERSON2).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("consent_subject_mismatch"))
    );
    let r = revoke(&gw, "bad*id", "natural_person", ids::PERSON).await;
    assert_eq!(r.status, 400);
    let r = revoke(&gw, &id, "natural_person", ids::PERSON).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "revoked");
    assert_eq!(r.body["uses"], 1);

    // The very next request is refused.
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));
    assert!(!r.body.to_string().contains(INCOME));
    // Even for consent-free fields, the caller learns the token is dead.
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &["person_name", "monthly_income"],
                Some(&t),
            ),
        )
        .await;
    assert_eq!(decision_of(&r.body, "person_name"), returned());
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));
    // Revoking again is idempotent.
    assert_eq!(
        revoke(&gw, &id, "natural_person", ids::PERSON).await.status,
        200
    );

    // A token revoked before its first use is refused at its first use.
    let c2 = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    let id2 = c2["jti"].as_str().unwrap().to_owned();
    assert_eq!(status(&gw, &id2).await.status, 404);
    let r = revoke(&gw, &id2, "natural_person", ids::PERSON).await;
    assert_eq!((r.status, &r.body["state"]), (200, &json!("revoked")));
    let r = bank
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &["monthly_income"],
                Some(&token(&dev, &c2)),
            ),
        )
        .await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));
    assert_eq!(status(&gw, &id2).await.body["uses"], 0);

    // Revocations are audited: who, whose (hashed), which consent.
    let entries = audit_entries(&gw.store).await;
    let revs: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "consent_revoke")
        .collect();
    assert_eq!(revs.len(), 6, "{revs:?}");
    let ok: Vec<_> = revs.iter().filter(|e| e.outcome == "ok").collect();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|e| e.org.as_deref() == Some(ids::PORTAL)));
    assert_eq!(ok[0].consent.as_deref(), Some(id.as_str()));
    assert_eq!(ok[2].consent.as_deref(), Some(id2.as_str()));
    assert!(ok.iter().all(|e| e.subject.is_some()));
    assert_eq!(revs[0].outcome, "role_not_permitted");
    assert_eq!(revs[1].outcome, "consent_subject_mismatch");
    assert_eq!(revs[2].outcome, "invalid_consent_id");
    gw.stop().await;
}

/// A revocation for a `jti` the registry has never seen cannot be checked
/// against the consent's subject, so it is recorded bound to the revoking
/// subject: the token of anyone else carrying that `jti` is then refused as
/// `jti_conflict` (not silently revoked on their behalf), the revoking
/// subject's own token as `revoked`, and a revocation naming anyone else is
/// refused like one for any other registered consent.
#[tokio::test]
async fn revocation_of_an_unseen_consent_is_bound_to_the_revoking_subject() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let dept = gw.client("department");
    // PERSON's consent to the bank, never presented; PERSON2 revokes its jti.
    let c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    let id = c["jti"].as_str().unwrap().to_owned();
    let r = revoke(&gw, &id, "natural_person", ids::PERSON2).await;
    assert_eq!(
        (r.status, &r.body["state"]),
        (200, &json!("revoked")),
        "{}",
        r.body
    );
    assert_eq!(r.body["registered_at"], Value::Null);

    // PERSON's token is not treated as revoked but as sharing its id with
    // another subject's consent; nothing consent-classified is released.
    let ask = |t: &str, who: &str, fields: &[&str]| {
        q("natural_person", who, "financing", fields, Some(t))
    };
    let t = token(&dev, &c);
    let r = bank
        .post(
            "/v1/query",
            &ask(&t, ids::PERSON, &["person_name", "monthly_income"]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        invalid("jti_conflict")
    );
    assert_eq!(decision_of(&r.body, "person_name"), returned());
    assert!(!r.body.to_string().contains(INCOME));

    // Also when nothing consent-classified would be released (the scope
    // does not cover the field), so no use would be spent.
    let mut c3 = claims(&dev, ids::PERSON, ids::BANK, "financing", &["deposits"]);
    c3["jti"] = json!(id);
    let r = bank
        .post(
            "/v1/query",
            &ask(&token(&dev, &c3), ids::PERSON, &["monthly_income"]),
        )
        .await;
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        invalid("jti_conflict")
    );

    // PERSON2's own token with that jti is refused as revoked.
    let mut c2 = claims(&dev, ids::PERSON2, ids::BANK, "financing", &["income"]);
    c2["jti"] = json!(id);
    let t2 = token(&dev, &c2);
    let r = bank
        .post("/v1/query", &ask(&t2, ids::PERSON2, &["monthly_income"]))
        .await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));

    // A collection consent from PERSON with that jti admits nothing either.
    let mut cc = claims(
        &dev,
        ids::PERSON,
        ids::DEPARTMENT,
        "collection",
        &["income"],
    );
    cc["jti"] = json!(id);
    let before = gw.store.record_count().await.unwrap();
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [income_record(ids::PERSON, Some(&token(&dev, &cc)))]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "consent_invalid");
    assert_eq!(r.body["error"]["details"]["reason"], "jti_conflict");
    assert_eq!(gw.store.record_count().await.unwrap(), before);

    // The registry now knows the jti as PERSON2's: a revocation naming
    // PERSON (whose token it really was) is refused and changes nothing.
    let r = revoke(&gw, &id, "natural_person", ids::PERSON).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("consent_subject_mismatch")),
        "{}",
        r.body
    );
    let s = status(&gw, &id).await;
    assert_eq!(
        (s.body["state"].clone(), s.body["uses"].clone()),
        (json!("revoked"), json!(0))
    );
    // PERSON2 revoking again stays idempotent.
    assert_eq!(
        revoke(&gw, &id, "natural_person", ids::PERSON2)
            .await
            .status,
        200
    );

    // Every step is audited with its outcome, the jti and the subject hash.
    let entries = audit_entries(&gw.store).await;
    let revs: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "consent_revoke")
        .collect();
    let outcomes: Vec<&str> = revs.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "consent_subject_mismatch", "ok"]);
    assert!(
        revs.iter()
            .all(|e| e.consent.as_deref() == Some(id.as_str()))
    );
    assert_eq!(revs[0].subject, revs[2].subject);
    assert_ne!(revs[0].subject, revs[1].subject);
    assert_eq!(revs[1].status, 409);
    let queries: Vec<_> = entries.iter().filter(|e| e.action == "query").collect();
    assert_eq!(queries.len(), 3);
    let f = queries[0]
        .fields
        .iter()
        .find(|f| f.field == "monthly_income")
        .unwrap();
    assert_eq!(
        (&*f.reason, f.detail.as_deref()),
        ("consent_invalid", Some("jti_conflict"))
    );
    assert_eq!(queries[0].consent.as_deref(), Some(id.as_str()));
    let submit = entries
        .iter()
        .rfind(|e| e.action == "submit_records")
        .unwrap();
    assert_eq!(submit.outcome, "consent_invalid");
    // Refused in the storing transaction: nothing is recorded as accepted.
    let got: Vec<_> = submit
        .fields
        .iter()
        .map(|f| (f.field.as_str(), &*f.decision, f.detail.as_deref()))
        .collect();
    assert_eq!(got, [("monthly_income", "refused", Some("jti_conflict"))]);
    gw.stop().await;
}

/// `credgate consent issue --sub` validates the subject like the gateway
/// does (GB 11643 or GB 32100, every check), and writes it in the canonical
/// form the gateway compares `sub` against, so the minted token works.
#[tokio::test]
async fn consent_issue_validates_and_canonicalises_the_subject() {
    use credgate::consent::tool::{IssueParams, issue};
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let args = |sub: &str| IssueParams {
        issuer_key: dev.key_file.clone(),
        kid: dev.kid.clone(),
        iss: dev.iss.clone(),
        sub: sub.to_owned(),
        grantee: ids::BANK.to_owned(),
        purpose: "financing".to_owned(),
        scope: vec!["income".to_owned()],
        ttl: 600,
        max_uses: None,
        written: true,
        notice_text: Some(NOTICE.to_owned()),
        aud: AUD.to_owned(),
        jti: Some(jti("cli")),
    };
    for (sub, why) in [
        // Accepted before: right shape, wrong content.
        ("000303198503150011", "address code (positions 1-6)"),
        ("370303198503150016", "check character is '6', expected '5'"),
        (
            "370303198502300011",
            "birth date (positions 7-14) is not a calendar date",
        ),
        ("37030319850315001５", "character 18 (U+FF15)"),
        ("3703031985031500", "must be exactly 18 characters, got 16"),
    ] {
        let e = issue(&args(sub), now_unix()).unwrap_err().to_string();
        assert!(
            e.starts_with("--sub is neither a resident ID number"),
            "{sub}: {e}"
        );
        assert!(e.contains(why), "{sub}: {e}");
    }
    // A lower-case x is minted as X: the gateway's canonical form.
    let person_x = "11010519491231002x";
    let t = issue(&args(person_x), now_unix()).unwrap();
    let payload = t.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "11010519491231002X");
    // And a token minted for a sample person opens that person's income.
    let t = issue(&args(ids::PERSON), now_unix()).unwrap();
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON,
                "financing",
                &["monthly_income"],
                Some(&t),
            ),
        )
        .await;
    assert_eq!(
        decision_of(&r.body, "monthly_income"),
        returned(),
        "{}",
        r.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn max_uses_is_enforced_atomically_across_two_gateway_nodes() {
    let gw = TestGateway::start().await;
    // A second node on the same database: PostgreSQL serves several nodes;
    // an embedded SQLite store serves one process, so there the second
    // gateway is refused and the concurrent uses all go to the first.
    let node2 = if gw.config.store.url.starts_with("postgres") {
        Some(TestGateway::start_config(gw.config.clone(), TempDir::new("node2"), None, false).await)
    } else {
        let refused = credgate::server::Gateway::build(&gw.config).await;
        assert!(
            matches!(refused, Err(credgate::server::StartError::Locked(_))),
            "a second gateway on one SQLite store must be refused"
        );
        None
    };
    let dev = gw.consent_issuer();
    let mut c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    c["max_uses"] = json!(3);
    let id = c["jti"].as_str().unwrap().to_owned();
    let t = token(&dev, &c);
    let ask = q(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
        Some(&t),
    );
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = match &node2 {
            Some(n) if i % 2 == 1 => n.client("bank"),
            _ => gw.client("bank"),
        };
        let ask = ask.clone();
        tasks.push(tokio::spawn(
            async move { client.post("/v1/query", &ask).await },
        ));
    }
    let mut got = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        got.push(decision_of(&r.body, "monthly_income"));
    }
    assert_eq!(
        got.iter().filter(|d| **d == returned()).count(),
        3,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|d| **d == invalid("exhausted")).count(),
        9,
        "{got:?}"
    );
    let s = status(&gw, &id).await;
    assert_eq!(
        (s.body["state"].clone(), s.body["uses"].clone()),
        (json!("exhausted"), json!(3))
    );
    if let Some(n) = node2 {
        n.stop().await;
    }
    gw.stop().await;
}

/// A use counts only for a request answered with the data. A `max_uses =
/// 1` consent opens `monthly_income`, but that query's audit entry cannot
/// be made durable (the log's writer fails the batch holding it, the
/// debug-build fault hook `tests/pipeline.rs` uses): 503 `audit_unavailable`,
/// nothing released, no entry — and the use is given back, the consent
/// still `active` with 0 uses. Once the log recovers, the same token is
/// answered with the income (200), its entry names the consent, and the
/// registry shows the one use that reached the bank (`exhausted`, 1). A
/// refund arriving after a revocation leaves the consent revoked.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_use_is_given_back_when_the_audit_log_refuses_the_entry() {
    let dir = TempDir::new("consent-giveback");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let mut audit = None;
    let gw = TestGateway::start_prepared(cfg, dir, pg_db, true, |g| {
        g.app()
            .set_clock(std::sync::Arc::new(|| time::macros::date!(2026 - 11 - 23)));
        audit = Some(g.app().audit.clone());
    })
    .await;
    let audit = audit.unwrap();
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let mut c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    c["max_uses"] = json!(1);
    let id = c["jti"].as_str().unwrap().to_owned();
    let ask = q(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
        Some(&token(&dev, &c)),
    );
    let registry = |jti: String| {
        let store = gw.store.clone();
        async move { store.consent_status(&jti, now_unix()).await.unwrap() }
    };
    let logged = audit_entries(&gw.store).await.len();

    // The log refuses this request's entry: 503, no data, no entry, no use.
    audit.inject_writer_panic();
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    assert!(!r.body.to_string().contains(INCOME), "{}", r.body);
    assert!(r.headers.get("x-audit-seq").is_none());
    let failed_request = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let row = registry(id.clone()).await.expect("registered by the spend");
    assert_eq!(
        (row.state.as_str(), row.uses, row.max_uses, row.last_used_at),
        ("active", 0, Some(1), None),
        "the use of an unanswered request was given back"
    );
    assert_eq!(audit_entries(&gw.store).await.len(), logged);

    // The log recovers by itself (the sequencer reopens its writer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = gw.admin_get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The same token now opens the income, once.
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(decision_of(&r.body, "monthly_income"), returned());
    assert_eq!(released(&r.body)["monthly_income"], json!(18500));
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let row = registry(id.clone()).await.unwrap();
    assert_eq!((row.state.as_str(), row.uses), ("exhausted", 1));
    assert!(row.last_used_at.is_some());
    let s = status(&gw, &id).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(
        (s.body["state"].clone(), s.body["uses"].clone()),
        (json!("exhausted"), json!(1))
    );
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("exhausted"));
    assert!(!r.body.to_string().contains(INCOME));
    assert_eq!(registry(id.clone()).await.unwrap().uses, 1);

    // The log: no entry for the refused request; the answered query's entry
    // (at the sequence number it was answered with) names the consent and
    // the returned field; then the status read and the exhausted query.
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), logged + 3);
    assert!(entries.iter().all(|e| e.request_id != failed_request));
    let answered = &entries[usize::try_from(seq).unwrap()];
    assert_eq!(
        (
            answered.action.as_str(),
            answered.outcome.as_str(),
            answered.status
        ),
        ("query", "ok", 200)
    );
    assert_eq!(answered.consent.as_deref(), Some(id.as_str()));
    assert!(
        answered
            .fields
            .iter()
            .any(|f| f.field == "monthly_income" && f.decision == "returned"),
        "{answered:?}"
    );
    assert_eq!(entries[logged + 1].action, "consent_status");
    assert!(
        entries[logged + 2]
            .fields
            .iter()
            .any(|f| f.field == "monthly_income" && f.detail.as_deref() == Some("exhausted")),
        "{:?}",
        entries[logged + 2]
    );

    // A refund landing after a revocation gives the use back but leaves the
    // consent revoked; one of another binding, or with no use left, changes
    // nothing.
    let r = revoke(&gw, &id, "natural_person", ids::PERSON).await;
    assert_eq!((r.status, &r.body["state"]), (200, &json!("revoked")));
    let subject = gw.store.consent_subject(&id).await.unwrap().unwrap();
    let exp = c["exp"].as_u64().unwrap();
    let u = credgate::store::ConsentUse {
        jti: &id,
        iss: &dev.iss,
        subject: &subject,
        grantee: ids::BANK,
        purpose: "financing",
        exp,
        max_uses: Some(1),
        notice: None,
    };
    let other = credgate::store::ConsentUse {
        grantee: ids::BANK2,
        ..u
    };
    assert_eq!(gw.store.give_back_consent(&other).await.unwrap(), None);
    assert_eq!(gw.store.give_back_consent(&u).await.unwrap(), Some(0));
    assert_eq!(gw.store.give_back_consent(&u).await.unwrap(), None);
    let row = registry(id.clone()).await.unwrap();
    assert_eq!((row.state.as_str(), row.uses), ("revoked", 0));
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));
    // The sequencer stops with its last handle.
    drop(audit);
    gw.stop().await;
}

fn income_record(person: &str, token: Option<&str>) -> Value {
    let mut r = json!({"subject": {"type": "natural_person", "id": person},
        "item": "person_income", "fields": {"monthly_income": 12_345}});
    if let Some(t) = token {
        r["consent_token"] = json!(t);
    }
    r
}

#[tokio::test]
async fn collection_of_consent_data_needs_a_collection_consent_per_record() {
    let gw = TestGateway::start().await;
    let dev = gw.consent_issuer();
    let dept = gw.client("department");
    let public = json!({"subject": {"type": "natural_person", "id": ids::PERSON2},
        "item": "professional_qualification", "fields": {"qualification_name": "注册会计师"}});
    let before = gw.store.record_count().await.unwrap();
    let coll = |scope: &[&str]| claims(&dev, ids::PERSON2, ids::DEPARTMENT, "collection", scope);

    // No consent: the whole batch is refused.
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [public.clone(), income_record(ids::PERSON2, None)]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "consent_required");
    assert_eq!(
        r.body["error"]["details"],
        json!({"record": 1, "field": "monthly_income"})
    );

    let mut not_written = coll(&["income"]);
    not_written.as_object_mut().unwrap().remove("written");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "query purpose, not collection",
            token(
                &dev,
                &claims(
                    &dev,
                    ids::PERSON2,
                    ids::DEPARTMENT,
                    "financing",
                    &["income"],
                ),
            ),
            "wrong_purpose",
        ),
        (
            "granted to another department",
            token(
                &dev,
                &claims(
                    &dev,
                    ids::PERSON2,
                    "113703000043000023",
                    "collection",
                    &["income"],
                ),
            ),
            "wrong_grantee",
        ),
        (
            "another person's consent",
            token(
                &dev,
                &claims(
                    &dev,
                    ids::PERSON,
                    ids::DEPARTMENT,
                    "collection",
                    &["income"],
                ),
            ),
            "wrong_subject",
        ),
        ("scope", token(&dev, &coll(&["deposits"])), "out_of_scope"),
        ("not written", token(&dev, &not_written), "not_written"),
        (
            "forged",
            {
                let t = token(&dev, &coll(&["income"]));
                let (input, sig) = t.rsplit_once('.').unwrap();
                let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
                sig[0] ^= 1;
                format!("{input}.{}", b64(&sig))
            },
            "bad_signature",
        ),
        ("garbage", "not-a-token".into(), "malformed"),
    ];
    for (name, t, sub) in &cases {
        let r = dept
            .post(
                "/v1/records",
                &json!({"records": [public.clone(), income_record(ids::PERSON2, Some(t))]}),
            )
            .await;
        assert_eq!(r.status, 422, "{name}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "consent_invalid", "{name}");
        assert_eq!(r.body["error"]["details"]["reason"], *sub, "{name}");
        assert_eq!(r.body["error"]["details"]["record"], 1, "{name}");
    }
    assert_eq!(gw.store.record_count().await.unwrap(), before);
    assert_eq!(consent_rows(&gw).await, 0);

    // With a valid consent the batch is stored, the use counted and audited.
    let good = coll(&["income"]);
    let id = good["jti"].as_str().unwrap().to_owned();
    let t = token(&dev, &good);
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [public.clone(), income_record(ids::PERSON2, Some(&t))]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(gw.store.record_count().await.unwrap(), before + 2);
    assert_eq!(status(&gw, &id).await.body["uses"], 1);
    let entries = audit_entries(&gw.store).await;
    let submits: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "submit_records")
        .collect();
    let last = submits.last().unwrap();
    assert_eq!(last.outcome, "ok");
    assert_eq!(last.consent.as_deref(), Some(id.as_str()));
    let refused = submits[submits.len() - 2];
    assert_eq!(refused.outcome, "consent_invalid");
    assert_eq!(refused.fields[0].detail.as_deref(), Some("malformed"));

    // The bank still needs its own consent to read what was collected.
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &q(
                "natural_person",
                ids::PERSON2,
                "financing",
                &["monthly_income"],
                None,
            ),
        )
        .await;
    assert!(!r.body.to_string().contains("12345"), "{}", r.body);

    // Once revoked, the same consent admits nothing more, and nothing is stored.
    assert_eq!(
        revoke(&gw, &id, "natural_person", ids::PERSON2)
            .await
            .status,
        200
    );
    let n = gw.store.record_count().await.unwrap();
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [public, income_record(ids::PERSON2, Some(&t))]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["reason"], "revoked");
    assert_eq!(gw.store.record_count().await.unwrap(), n);
    gw.stop().await;
}

#[tokio::test]
async fn consent_endpoints_refuse_misuse_without_5xx() {
    let gw = TestGateway::start().await;
    let portal = gw.client("portal");
    let long = format!("/v1/consents/{}", "a".repeat(200));
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "GET",
            "/v1/consents/abc/revoke",
            None,
            405,
            "method_not_allowed",
        ),
        ("POST", "/v1/consents/abc", None, 405, "method_not_allowed"),
        (
            "POST",
            "/v1/consents/abc/revoke",
            Some(json!({})),
            400,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/consents/abc/revoke",
            Some(json!({"subject": {"type": "natural_person", "id": "370303198503150016"}})),
            400,
            "invalid_identifier",
        ),
        ("GET", "/v1/consents/abc/x", None, 404, "not_found"),
        // No consent id at all is no endpoint (was 400 invalid_consent_id).
        ("GET", "/v1/consents/", None, 404, "not_found"),
        ("GET", &long, None, 400, "invalid_consent_id"),
        (
            "GET",
            "/v1/consents/never-seen",
            None,
            404,
            "consent_not_found",
        ),
    ];
    for (method, path, body, st, code) in cases {
        let body = body
            .map(|b| bytes::Bytes::from(b.to_string()))
            .unwrap_or_default();
        let r = portal
            .send(method, path, body, Some("application/json"))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (st, Some(code)),
            "{method} {path}: {}",
            r.body
        );
    }
    assert_eq!(consent_rows(&gw).await, 0);
    gw.stop().await;
}
