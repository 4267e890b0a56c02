//! Revocation: effective on the next request and audited, and bound to the revoking subject for a consent the gateway never saw.

use super::*;

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
