//! Consent tokens: hostile tokens refused with stable sub-reasons, exactly the consented fields of that subject, enterprise authorisation, issuing, and misuse of the consent endpoints.

use super::*;

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
