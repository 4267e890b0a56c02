//! Collecting consent-protected data: a collection consent per submitted record.

use super::*;

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
