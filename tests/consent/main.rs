//! Consent tokens end to end over real mTLS: hostile tokens, binding to
//! subject, grantee and purpose, scope, written notice, enterprise
//! authorisation, revocation through the portal, use limits (also across two
//! gateway nodes on one database), collection consent for submissions, and
//! the audit trail. Runs on SQLite, and on PostgreSQL when
//! `CREDGATE_TEST_DATABASE_URL` is set.

mod collection;
#[path = "../common/mod.rs"]
mod common;
mod revocation;
mod tokens;
mod uses;

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

fn income_record(person: &str, token: Option<&str>) -> Value {
    let mut r = json!({"subject": {"type": "natural_person", "id": person},
        "item": "person_income", "fields": {"monthly_income": 12_345}});
    if let Some(t) = token {
        r["consent_token"] = json!(t);
    }
    r
}
