//! Request validation at its edges, over real mTLS on SQLite or PostgreSQL:
//! refused queries do not use the subject quota, bodies need their exact
//! media type, text limits count what was sent, year 0000 is not a date,
//! a correction's refusal names its record, and the largest request the
//! limits allow still fits in one audit entry.

mod common;

use bytes::Bytes;
use common::*;
use credgate::ids::CreditCode;
use serde_json::{Value, json};

/// A valid unified social credit code, distinct per `n`.
fn code(n: u32) -> String {
    let prefix = format!("91370300MA3N{n:05}");
    format!("{prefix}{}", CreditCode::check_char(&prefix).unwrap())
}

fn lp(id: &str) -> Value {
    json!({"type": "legal_person", "id": id})
}

fn penalty(subject: &str, decided: &str, penalty_date: &str) -> Value {
    json!({"subject": lp(subject), "item": "admin_penalty", "tier": "general", "decision_date": decided,
        "fields": {"penalty_decision_no": "淄市监罚〔2026〕1号", "penalty_content": "罚款",
                   "penalty_date": penalty_date, "penalty_authority": "淄博市市场监督管理局"}})
}

fn code_of(r: &Resp) -> Option<&str> {
    r.body["error"]["code"].as_str()
}

/// A copy of the sample policies with the banks' role quota set to `n`.
fn policies_with_bank_quota(n: u32) -> TempDir {
    let pol = TempDir::new("policies");
    for f in std::fs::read_dir(policies()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pol.0.join(f.file_name().unwrap())).unwrap();
    }
    let orgs = std::fs::read_to_string(pol.0.join("organisations.toml")).unwrap();
    assert!(orgs.contains("\nbank = 300\n"));
    let orgs = orgs.replacen("\nbank = 300\n", &format!("\nbank = {n}\n"), 1);
    std::fs::write(pol.0.join("organisations.toml"), orgs).unwrap();
    pol
}

#[tokio::test]
async fn malformed_queries_do_not_use_the_subject_quota() {
    let pol = policies_with_bank_quota(1);
    let dir = pol.0.clone();
    let gw = TestGateway::start_with(move |c| c.policy.dir = dir, true).await;
    let bank = gw.client("bank");
    let base = audit_entries(&gw.store).await.len();
    // A burst of refused queries, each about a valid subject of its own.
    let other = "91350100M000100Y43";
    let long = "x".repeat(129);
    let malformed = [
        json!({"subject": lp(ids::CHEM), "purpose": "financing", "fields": []}),
        json!({"subject": lp(other), "purpose": "financing", "fields": [long]}),
        json!({"subject": lp(other), "purpose": "financing", "fields": [""]}),
        json!({"subject": lp(ids::CHEM), "purpose": "financing", "view": "no_such_view"}),
        json!({"subject": lp(ids::CHEM), "purpose": "financing",
               "fields": vec!["enterprise_name"; 257]}),
        json!({"subject": lp(other), "purpose": "financing", "view": "financing_profile",
               "fields": ["enterprise_name"]}),
    ];
    for (i, q) in malformed.iter().enumerate() {
        let r = bank.post("/v1/query", q).await;
        assert_eq!(r.status, 400, "case {i}: {}", r.body);
        assert_ne!(code_of(&r), Some("quota_exceeded"), "case {i}");
    }
    // The one subject the quota allows is still free to take.
    let ok = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    let r = bank.post("/v1/query", &ok).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // And the quota still holds for a well-formed query about another.
    let r = bank
        .post(
            "/v1/query",
            &query("legal_person", ids::CHEM, "financing", &["enterprise_name"]),
        )
        .await;
    assert_eq!((r.status, code_of(&r)), (429, Some("quota_exceeded")));
    // Every attempt audited with its own outcome.
    let entries = audit_entries(&gw.store).await;
    let outcomes: Vec<(&str, u16)> = entries[base..]
        .iter()
        .map(|e| (e.outcome.as_str(), e.status))
        .collect();
    let mut want = vec![("invalid_request", 400); 3];
    want.extend([("unknown_view", 400), ("invalid_request", 400)]);
    want.extend([
        ("invalid_request", 400),
        ("ok", 200),
        ("quota_exceeded", 429),
    ]);
    assert_eq!(outcomes, want);
    gw.stop().await;
}

#[tokio::test]
async fn bodies_need_their_exact_media_type() {
    let gw = TestGateway::start().await;
    let dept = gw.client("department");
    let s = code(1);
    let body =
        Bytes::from(json!({"records": [penalty(&s, "2026-10-01", "2026-10-01")]}).to_string());
    let before = gw.store.record_count().await.unwrap();
    let base = audit_entries(&gw.store).await.len();
    let refused: [Option<&str>; 9] = [
        None,
        Some("application/jsonx"),
        Some("application/json-seq"),
        Some("application/json; charset=latin1"),
        Some("application/json; charset=utf-16"),
        Some("application/json;"),
        Some("application/json; charset"),
        Some("text/json"),
        Some("application/x-www-form-urlencoded"),
    ];
    for ct in refused {
        let r = dept
            .send("POST", "/v1/records", body.clone(), ct)
            .await
            .unwrap();
        assert_eq!(
            (r.status, code_of(&r)),
            (415, Some("unsupported_media_type")),
            "{ct:?}: {}",
            r.body
        );
    }
    assert_eq!(gw.store.record_count().await.unwrap(), before);
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), base + refused.len());
    for e in &entries[base..] {
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str(), e.status, e.records),
            ("submit_records", "unsupported_media_type", 415, 0)
        );
    }
    // No body and no media type is not a media type problem.
    let r = dept
        .send("POST", "/v1/records", Bytes::new(), None)
        .await
        .unwrap();
    assert_eq!((r.status, code_of(&r)), (400, Some("malformed_json")));
    // Case-insensitive, with a utf-8 charset or other parameters.
    for (i, ct) in [
        "Application/JSON; charset=UTF-8",
        "application/json;charset=\"utf-8\"",
        "application/json ; profile=x",
    ]
    .into_iter()
    .enumerate()
    {
        let s = code(10 + i as u32);
        let body =
            Bytes::from(json!({"records": [penalty(&s, "2026-10-01", "2026-10-01")]}).to_string());
        let r = dept
            .send("POST", "/v1/records", body, Some(ct))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{ct}: {}", r.body);
    }
    assert_eq!(gw.store.record_count().await.unwrap(), before + 3);
    // The console's forms keep their own media type.
    let auditor = gw.client("auditor");
    let r = auditor
        .send(
            "POST",
            "/console/search",
            Bytes::from_static(b"org=x"),
            Some("application/x-www-form-urlencodedx"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, code_of(&r)),
        (415, Some("unsupported_media_type"))
    );
    let r = auditor
        .send(
            "POST",
            "/console/search",
            Bytes::from_static(b"org=91370300164100001A"),
            Some("application/x-www-form-urlencoded"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn text_limits_count_the_padding_sent() {
    let gw = TestGateway::start().await;
    let dept = gw.client("department");
    let s = code(20);
    let before = gw.store.lifecycle_row_count().await.unwrap();
    let base = audit_entries(&gw.store).await.len();
    // 1 character of text in 501 characters sent, and other paddings.
    for basis in [
        format!("严重失信{}", " ".repeat(497)),
        format!("{}b{}", " ".repeat(300), " ".repeat(300)),
        format!("{}\n", "x".repeat(500)),
    ] {
        assert!(basis.chars().count() > 500);
        let r = dept
            .post(
                "/v1/lists/black",
                &json!({"subject": lp(&s), "basis": basis}),
            )
            .await;
        assert_eq!(
            (r.status, code_of(&r)),
            (400, Some("invalid_text")),
            "{}",
            r.body
        );
        assert_eq!(r.body["error"]["details"]["field"], "basis");
    }
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), before);
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), base + 3);
    assert!(entries[base..].iter().all(|e| e.outcome == "invalid_text"));
    // 500 characters, padding included, are accepted (stored trimmed).
    let r = dept
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": format!(" {} ", "信".repeat(498))}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), before + 1);
    gw.stop().await;
}

#[tokio::test]
async fn year_zero_is_not_a_date() {
    let gw = TestGateway::start().await;
    let dept = gw.client("department");
    let s = code(30);
    let before = (
        gw.store.record_count().await.unwrap(),
        gw.store.lifecycle_row_count().await.unwrap(),
    );
    // A catalog date field.
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [{"subject": lp(&s), "item": "admin_licence",
                "fields": {"licence_no": "鲁0001", "licence_valid_until": "0000-12-31"}}]}),
        )
        .await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_value")),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["error"]["details"],
        json!({"record": 0, "field": "licence_valid_until", "expected": "date"})
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("year 0001 or later"),
        "{}",
        r.body
    );
    // A decision date (the lifecycle terms).
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [penalty(&s, "0000-10-01", "2026-10-01")]}),
        )
        .await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_date")),
        "{}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("year 0001 or later")
    );
    // A list date.
    for field in ["effective_from", "effective_to"] {
        let r = dept
            .post(
                "/v1/lists/black",
                &json!({"subject": lp(&s), "basis": "严重失信", field: "0000-01-01"}),
            )
            .await;
        assert_eq!(
            (r.status, code_of(&r)),
            (400, Some("invalid_date")),
            "{}",
            r.body
        );
        assert_eq!(r.body["error"]["details"]["field"], field);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("year 0001 or later")
        );
    }
    assert_eq!(
        (
            gw.store.record_count().await.unwrap(),
            gw.store.lifecycle_row_count().await.unwrap()
        ),
        before
    );
    let last = audit_entries(&gw.store).await;
    let outcomes: Vec<&str> = last[last.len() - 4..]
        .iter()
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "invalid_value",
            "invalid_date",
            "invalid_date",
            "invalid_date"
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_correction_names_its_record_not_a_batch_index() {
    let gw = TestGateway::start().await;
    let s = code(40);
    // A second record first, so the objection's record is not the first.
    let r = gw
        .client("department")
        .post(
            "/v1/records",
            &json!({"records": [penalty(&s, "2026-09-01", "2026-09-01"), penalty(&s, "2026-10-01", "2026-10-01")]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rec = r.body["record_ids"][1].as_i64().unwrap();
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": rec, "grounds": "日期有误"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let objection = r.body["objection_id"].as_i64().unwrap();
    let path = format!("/v1/objections/{objection}/resolution");
    let cases = [
        (
            json!({"tier": "grave", "decision_date": "2026-10-01"}),
            "unknown_tier",
            "tier",
        ),
        (
            json!({"tier": "general", "decision_date": "2026-13-01"}),
            "invalid_date",
            "decision_date",
        ),
        (
            json!({"tier": "general", "decision_date": "2099-10-01"}),
            "future_decision_date",
            "decision_date",
        ),
    ];
    for (terms, want, field) in cases {
        let mut body = json!({"outcome": "corrected",
            "fields": {"penalty_content": "警告", "penalty_date": "2026-10-01"}});
        body.as_object_mut()
            .unwrap()
            .extend(terms.as_object().unwrap().clone());
        let r = gw.client("department").post(&path, &body).await;
        assert_eq!((r.status, code_of(&r)), (400, Some(want)), "{}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(!msg.contains("record 0"), "{msg}");
        assert_eq!(
            r.body["error"]["details"],
            json!({"record_id": rec, "item": "admin_penalty", "field": field}),
            "{}",
            r.body
        );
    }
    // A batch still names its index.
    let r = gw
        .client("department")
        .post(
            "/v1/records",
            &json!({"records": [penalty(&s, "2026-10-01", "2026-10-01"), penalty(&s, "2099-10-01", "2026-10-01")]}),
        )
        .await;
    assert_eq!(r.body["error"]["details"]["record"], 1, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("record 1: ")
    );
    gw.stop().await;
}

/// The raw bytes of the last audit entry.
async fn last_entry_bytes(gw: &TestGateway) -> Vec<u8> {
    let all = gw.store.audit_range(0, u64::MAX / 2).await.unwrap();
    all.last().unwrap().entry.clone()
}

#[tokio::test]
async fn the_largest_request_the_limits_allow_fits_in_one_audit_entry() {
    use credgate::consent::token::MAX_TOKEN_BYTES;
    use credgate::http::dto::{MAX_FIELD_NAME, MAX_QUERY_FIELDS};
    let max_entry = credlog::tiles::MAX_ENTRY_LEN;
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    // As many field names as allowed, each as long as allowed and made of
    // the characters that grow most in the entry's JSON (`"` → `\"`).
    let fields: Vec<String> = (0..MAX_QUERY_FIELDS)
        .map(|i| format!("{i:03}{}", "\"".repeat(MAX_FIELD_NAME - 3)))
        .collect();
    assert!(fields.iter().all(|f| f.len() == MAX_FIELD_NAME));
    let q = json!({"subject": lp(ids::CERAMICS), "purpose": "financing", "fields": fields});
    let r = bank.post("/v1/query", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let bytes = last_entry_bytes(&gw).await;
    let entry = credgate::audit::AuditEntry::parse(&bytes).unwrap();
    assert_eq!(entry.fields.len(), MAX_QUERY_FIELDS);
    assert!(entry.fields.iter().all(|f| f.field.chars().count() == 64));
    // Room to spare for the id of a verified consent token (at most as long
    // as the token itself).
    assert!(
        bytes.len() + MAX_TOKEN_BYTES < max_entry,
        "{} bytes",
        bytes.len()
    );
    // Control characters (six bytes each in JSON) are not field names.
    // (Distinct: a query's names are decided once each.) This entry was
    // too large for the log: 503 before they were refused.
    let control: Vec<String> = (0..MAX_QUERY_FIELDS)
        .map(|i| format!("{i:03}{}", "\u{1}".repeat(MAX_FIELD_NAME - 3)))
        .collect();
    let q = json!({"subject": lp(ids::CERAMICS), "purpose": "financing", "fields": control});
    let r = bank.post("/v1/query", &q).await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_request")),
        "{}",
        r.body
    );
    // A submitted record's field names are bounded too: a 60,000-byte name
    // was an entry the log could not hold (503); now a 400, nothing stored.
    let dept = gw.client("department");
    let s = code(60);
    let before = gw.store.record_count().await.unwrap();
    let huge = "n".repeat(60_000);
    let mut rec = penalty(&s, "2026-10-01", "2026-10-01");
    rec["fields"][&huge] = json!(1);
    let r = dept.post("/v1/records", &json!({"records": [rec]})).await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_request")),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["record"], 0);
    let e = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!((e.outcome.as_str(), e.status), ("invalid_request", 400));
    // The longest allowed unknown name is refused as unknown, logged cut to
    // 64 characters.
    let long = format!("x{}", "\"".repeat(MAX_FIELD_NAME - 1));
    let mut rec = penalty(&s, "2026-10-01", "2026-10-01");
    rec["fields"][&long] = json!(1);
    let r = dept.post("/v1/records", &json!({"records": [rec]})).await;
    assert_eq!(
        (r.status, code_of(&r)),
        (422, Some("unknown_field")),
        "{}",
        r.body
    );
    let e = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!(e.outcome, "unknown_field");
    assert_eq!(e.fields[0].field, long.chars().take(64).collect::<String>());
    // More distinct consent tokens than a batch may carry.
    let recs: Vec<Value> = (0..5)
        .map(|i| {
            let mut r = penalty(&s, "2026-10-01", "2026-10-01");
            r["consent_token"] = json!(format!("token-{i}"));
            r
        })
        .collect();
    let r = dept.post("/v1/records", &json!({"records": recs})).await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_request")),
        "{}",
        r.body
    );
    assert_eq!(gw.store.record_count().await.unwrap(), before);

    // And a correction's.
    let rec = {
        let r = dept
            .post(
                "/v1/records",
                &json!({"records": [penalty(&s, "2026-10-01", "2026-10-01")]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["record_ids"][0].as_i64().unwrap()
    };
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": rec, "grounds": "有误"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let objection = r.body["objection_id"].as_i64().unwrap();
    let lifecycle = gw.store.lifecycle_row_count().await.unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{objection}/resolution"),
            &json!({"outcome": "corrected", "fields": {huge.clone(): "x"}}),
        )
        .await;
    assert_eq!(
        (r.status, code_of(&r)),
        (400, Some("invalid_request")),
        "{}",
        r.body
    );
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), lifecycle);
    let e = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!((e.outcome.as_str(), e.status), ("invalid_request", 400));
    gw.stop().await;
}

/// Well-formed JSON of the wrong shape — a wrong type, a value outside a
/// closed list, also where the wire type is an enum (which serde_json
/// reports as a syntax error) — is 400 `invalid_request` naming the field's
/// path, audited with that outcome; only a body that is not JSON is
/// `malformed_json`.
#[tokio::test]
async fn wrong_types_and_unknown_variants_name_their_field() {
    let gw = TestGateway::start().await;
    let (bank, dept, auditor, portal) = (
        gw.client("bank"),
        gw.client("department"),
        gw.client("auditor"),
        gw.client("portal"),
    );
    let s = code(7);
    let mut bad_tier = penalty(&s, "2026-10-01", "2026-10-01");
    bad_tier["tier"] = json!(3);
    #[rustfmt::skip]
    let cases: Vec<(&Client, &str, Value, Option<&str>)> = vec![
        (&auditor, "/v1/audit/export", json!({"format": 5}), Some("format")),
        (&auditor, "/v1/audit/export", json!({"format": ["jsonl"]}), Some("format")),
        (&auditor, "/v1/audit/export", json!({"format": "xml"}), Some("format")),
        (&auditor, "/v1/audit/proof/inclusion", json!({"seq": "1"}), Some("seq")),
        (&bank, "/v1/query", json!({"subject": {"type": 5, "id": ids::CERAMICS}, "purpose": "financing", "fields": []}), Some("subject.type")),
        (&bank, "/v1/query", json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}, "purpose": "financing", "fields": ["a", 2]}), Some("fields[1]")),
        (&bank, "/v1/query", json!({"subject": {"type": "legal_person", "id": ids::CERAMICS, "kind": 1}, "purpose": "financing", "fields": []}), Some("subject.kind")),
        (&dept, "/v1/records", json!({"records": [penalty(&s, "2026-10-01", "2026-10-01"), bad_tier]}), Some("records[1].tier")),
        (&portal, "/v1/objections", json!({"subject": lp(&s), "record_id": "1", "grounds": "x"}), Some("record_id")),
        (&bank, "/v1/query", json!({"purpose": "financing"}), None),
    ];
    let base = audit_entries(&gw.store).await.len();
    for (client, path, body, field) in &cases {
        let r = client.post(path, body).await;
        assert_eq!(
            (r.status, code_of(&r)),
            (400, Some("invalid_request")),
            "{path} {body}: {}",
            r.body
        );
        assert_eq!(
            r.body["error"]["details"]["field"].as_str(),
            *field,
            "{path} {body}: {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains(" at line "), "{message}");
    }
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), base + cases.len());
    for e in &entries[base..] {
        assert_eq!((e.outcome.as_str(), e.status), ("invalid_request", 400));
    }
    gw.stop().await;
}
