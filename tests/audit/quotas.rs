//! Per-organisation quotas: refused, flagged and reported.

use super::*;

#[tokio::test]
async fn quotas_refuse_flag_and_reach_the_report() {
    // A copy of the policies where bank2 has its own, smaller quota.
    let pol = TempDir::new("policies");
    for f in std::fs::read_dir(policies()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pol.0.join(f.file_name().unwrap())).unwrap();
    }
    let orgs = std::fs::read_to_string(pol.0.join("organisations.toml")).unwrap();
    let orgs = orgs.replacen(
        "code = \"91370300164100002D\"",
        "code = \"91370300164100002D\"\nquota_distinct_subjects_per_hour = 1",
        1,
    );
    // Without the sample role quota for banks, the server default applies.
    let orgs = orgs.replacen("\nbank = 300\n", "\n", 1);
    std::fs::write(pol.0.join("organisations.toml"), orgs).unwrap();
    let pol_dir = pol.0.clone();
    let gw = TestGateway::start_with(
        move |c| {
            c.policy.dir = pol_dir;
            c.server.quota_distinct_subjects_per_hour = Some(2);
            c.server.anomaly_denied_per_hour = 3;
        },
        true,
    )
    .await;

    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                "91350100M000100Y43",
                "financing",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    assert_eq!(r.body["error"]["details"]["limit"], 2);
    // Subjects already queried this hour stay available.
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    // bank2's own quota from organisations.toml.
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CERAMICS)
            .await
            .status,
        429
    );
    // The refusal is audited with the subject.
    let last = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.status),
        ("quota_exceeded", 429)
    );
    assert!(last.subject.is_some());

    // The department piles up denied attempts (bad identifiers).
    for _ in 0..4 {
        let r = gw
            .client("department")
            .post(
                "/v1/query",
                &query(
                    "legal_person",
                    "91370300MA3CXQ001T",
                    "administration",
                    &["enterprise_name"],
                ),
            )
            .await;
        assert_eq!(r.status, 400);
    }

    let (_, m) = gw.admin_get("/metrics").await;
    let bank = ids::BANK;
    let bank2 = ids::BANK2;
    let dept = ids::DEPARTMENT;
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank2}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_quota_refused_total{{org=\"{bank}\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_org_distinct_subjects{{org=\"{bank}\"}}")
        ),
        Some(2)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{dept}\",kind=\"denied_attempts\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{dept}\",kind=\"distinct_subjects\"}}")
        ),
        Some(0)
    );

    let r = post(&gw, "auditor", "/v1/audit/report", json!({"top": 5})).await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    let by_org: HashMap<String, &Value> = v["volume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["org"].as_str().unwrap_or("").to_owned(), o))
        .collect();
    let b = by_org[bank];
    // Disjoint: tax_paid_annual withheld for want of consent is an
    // ordinary answer; the 429 is the one refusal.
    assert_eq!(
        (
            b["total"].as_i64(),
            b["ok"].as_i64(),
            b["partly_refused"].as_i64(),
            b["refused"].as_i64()
        ),
        (Some(4), Some(3), Some(0), Some(1))
    );
    assert!(b["name"].as_str().unwrap().contains("ICBC"));
    assert_eq!(by_org[dept]["refused"].as_i64(), Some(4));
    let denied = v["denied"].as_array().unwrap();
    assert!(
        denied
            .iter()
            .any(|d| d["org"] == dept && d["outcome"] == "invalid_identifier" && d["count"] == 4)
    );
    assert!(
        denied
            .iter()
            .any(|d| d["org"] == bank && d["outcome"] == "quota_exceeded" && d["count"] == 1)
    );
    let top = v["top_subjects"].as_array().unwrap();
    assert!(
        top[0]["queries"].as_i64().unwrap() >= top.last().unwrap()["queries"].as_i64().unwrap()
    );
    // Refused queries name their subject too: three subjects in all.
    assert_eq!(top.len(), 3, "{v}");
    assert_eq!(top[0]["queries"], 3);
    let hourly = v["anomalies"]["hourly"].as_array().unwrap();
    let flagged =
        |org: &str, kind: &str| hourly.iter().any(|h| h["org"] == org && h["kind"] == kind);
    assert!(flagged(bank, "distinct_subjects"), "{v}");
    assert!(flagged(bank2, "distinct_subjects"));
    assert!(flagged(dept, "denied_attempts"));
    assert!(!flagged(dept, "distinct_subjects"));
    let node = v["anomalies"]["this_node"].as_array().unwrap();
    let b2 = node.iter().find(|s| s["org"] == bank2).unwrap();
    assert_eq!(b2["quota"], 1);
    assert_eq!(b2["flags"], json!(["distinct_subjects"]));
    assert_eq!(
        v["anomalies"]["limits"]["default_distinct_subjects_per_hour"],
        2
    );
    gw.stop().await;
}

#[tokio::test]
async fn flag_only_quota_serves_but_flags() {
    // Without the sample role quota for banks, the server default applies.
    let pol = TempDir::new("policies");
    for f in std::fs::read_dir(policies()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pol.0.join(f.file_name().unwrap())).unwrap();
    }
    let orgs = std::fs::read_to_string(pol.0.join("organisations.toml")).unwrap();
    let orgs = orgs.replacen("\nbank = 300\n", "\n", 1);
    std::fs::write(pol.0.join("organisations.toml"), orgs).unwrap();
    let pol_dir = pol.0.clone();
    let gw = TestGateway::start_with(
        move |c| {
            c.policy.dir = pol_dir;
            c.server.quota_distinct_subjects_per_hour = Some(1);
            c.server.quota_enforce = false;
        },
        true,
    )
    .await;
    for id in [ids::CERAMICS, ids::CHEM] {
        assert_eq!(
            bank_query(&gw, "bank", "legal_person", id).await.status,
            200
        );
    }
    let (_, m) = gw.admin_get("/metrics").await;
    let bank = ids::BANK;
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_quota_refused_total{{org=\"{bank}\"}}")
        ),
        Some(0)
    );
    let v = post(&gw, "auditor", "/v1/audit/report", json!({}))
        .await
        .json();
    assert!(
        v["anomalies"]["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["org"] == bank && h["value"] == 2 && h["limit"] == 1),
        "{v}"
    );
    gw.stop().await;
}
