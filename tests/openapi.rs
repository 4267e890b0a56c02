//! The OpenAPI 3.1 document (`docs/openapi.json`) against the code: every
//! route of the endpoint table and nothing else, the same methods, bodies and
//! roles (`policies/access.toml`), the pipeline's refusals on every
//! operation, error codes that exist and that are all documented, examples
//! that the real gateway (SQLite or PostgreSQL) answers with a documented
//! status, code and body shape, and the served copy identical to the
//! repository's.
//!
//! Generated requests, with each role, are schemathesis' job
//! (`scripts/schemathesis.sh`, against a live gateway).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{TestGateway, policies};
use credgate::endpoint::{Body, Endpoint, Method, TABLE};
use serde_json::Value;

fn doc() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("docs/openapi.json is JSON")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document: (method, path) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()), op.clone());
            }
        }
    }
    out
}

/// The table's pattern in OpenAPI form (`{list=red|black|focus}` → `{list}`)
/// and the options of each restricted parameter.
fn openapi_path(pattern: &str) -> (String, BTreeMap<String, Vec<String>>) {
    let mut options = BTreeMap::new();
    let path = pattern
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(inner) => {
                    let name = match inner.split_once('=') {
                        Some((name, opts)) => {
                            options.insert(
                                name.to_owned(),
                                opts.split('|').map(str::to_owned).collect(),
                            );
                            name
                        }
                        None => inner.trim_start_matches('*'),
                    };
                    format!("{{{name}}}")
                }
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    (path, options)
}

fn method_name(m: Method) -> String {
    m.as_str().to_ascii_lowercase()
}

/// The operation documenting `endpoint`.
fn operation_of(doc: &Value, endpoint: Endpoint) -> Value {
    let spec = endpoint.spec();
    let (path, _) = openapi_path(spec.pattern);
    doc["paths"][&path][method_name(spec.method)].clone()
}

/// Follow a local `$ref` (one level is all the document uses).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let ptr = r.strip_prefix('#').expect("local reference");
            doc.pointer(ptr)
                .unwrap_or_else(|| panic!("dangling reference {r}"))
        }
        None => v,
    }
}

/// The error codes a response documents (the `enum` of `error.code`).
fn codes(doc: &Value, response: &Value) -> Vec<String> {
    let r = resolve(doc, response);
    let schema = &r["content"]["application/json"]["schema"];
    let Some(parts) = schema["allOf"].as_array() else {
        return Vec::new();
    };
    parts
        .iter()
        .flat_map(|p| {
            let code = &p["properties"]["error"]["properties"]["code"];
            let mut v: Vec<String> = code["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            if let Some(c) = code["const"].as_str() {
                v.push(c.to_owned());
            }
            v
        })
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_with_mutual_tls() {
    let d = doc();
    assert!(
        d["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        d["openapi"]
    );
    assert_eq!(
        d["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );
    assert_eq!(d["security"], serde_json::json!([{"mutualTLS": []}]));
    for h in ["RequestId", "AuditSeq", "Allow"] {
        assert!(d["components"]["headers"][h].is_object(), "header {h}");
    }
    let e405 = &d["components"]["responses"]["MethodNotAllowed"];
    assert!(e405["headers"]["Allow"].is_object());
    assert_eq!(codes(&d, e405), ["method_not_allowed"]);
}

/// A route missing from the document, a route the table does not have, or
/// a different method fails here.
#[test]
fn the_document_has_exactly_the_routes_of_the_endpoint_table() {
    let d = doc();
    let documented: BTreeSet<(String, String, String)> = operations(&d)
        .into_iter()
        .map(|((m, p), op)| {
            let id = op["operationId"].as_str().unwrap_or("<no operationId>");
            (m, p, id.to_owned())
        })
        .collect();
    let table: BTreeSet<(String, String, String)> = TABLE
        .iter()
        .map(|s| {
            (
                method_name(s.method),
                openapi_path(s.pattern).0,
                s.endpoint.action().to_owned(),
            )
        })
        .collect();
    let missing: Vec<_> = table.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes (method, path, operationId = action) missing from docs/openapi.json: {missing:?}; \
         documented but not in crate::endpoint::TABLE: {extra:?}"
    );
}

#[test]
fn path_parameters_and_bodies_match_the_table() {
    let d = doc();
    for spec in TABLE {
        let op = operation_of(&d, spec.endpoint);
        let (path, options) = openapi_path(spec.pattern);
        let names: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let params: BTreeMap<String, Value> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| (p["name"].as_str().unwrap().to_owned(), p.clone()))
            .collect();
        assert_eq!(
            params.keys().cloned().collect::<BTreeSet<_>>(),
            names,
            "{path}: path parameters"
        );
        for (name, opts) in options {
            let documented: Vec<String> = params[&name]["schema"]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: {name} needs an enum"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(documented, opts, "{path}: {name}");
        }
        let body = &op["requestBody"];
        match spec.body {
            Body::Json => {
                assert_eq!(body["required"], true, "{path}: body required");
                assert!(
                    body["content"]["application/json"]["schema"].is_object(),
                    "{path}: a JSON body schema"
                );
            }
            Body::Form => {
                assert_eq!(body["required"], true, "{path}: body required");
                assert!(
                    body["content"]["application/x-www-form-urlencoded"]["schema"].is_object(),
                    "{path}: a form body schema"
                );
            }
            Body::None => assert!(body.is_null(), "{path} takes no body"),
        }
    }
}

/// The roles in `x-credgate-roles` and in the prose are those the gateway
/// enforces (`policies/access.toml`, compiled).
#[test]
fn the_roles_of_each_operation_are_those_of_access_toml() {
    let d = doc();
    let policy = credgate::policy::load(&policies(), b"openapi-test").unwrap();
    for e in Endpoint::ALL {
        let op = operation_of(&d, *e);
        let mut want: Vec<&str> = policy
            .access()
            .roles(*e)
            .iter()
            .map(|r| r.as_str())
            .collect();
        let mut got: Vec<&str> = op["x-credgate-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{e}: no x-credgate-roles"))
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let prose = format!("**Roles:** {}.", got.join(", "));
        assert!(
            op["description"].as_str().unwrap_or("").contains(&prose),
            "{e}: the description must say {prose}"
        );
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{e}: x-credgate-roles differ from access.toml");
    }
}

/// Every operation documents what the pipeline can refuse before its
/// handler runs, and every response the headers every response carries.
#[test]
fn every_operation_documents_the_pipeline_refusals_and_headers() {
    let d = doc();
    for spec in TABLE {
        let e = spec.endpoint;
        let op = operation_of(&d, e);
        let responses = op["responses"].as_object().unwrap();
        let has = |status: &str, code: &str| {
            responses
                .get(status)
                .is_some_and(|r| codes(&d, r).iter().any(|c| c == code))
        };
        let mut want = vec![
            ("401", "no_identity"),
            ("403", "unregistered_organisation"),
            ("403", "role_not_permitted"),
            ("400", "invalid_request"),
            ("500", "internal_error"),
            ("503", "audit_unavailable"),
        ];
        if spec.body == Body::Json {
            want.extend([
                ("400", "malformed_json"),
                ("400", "duplicate_key"),
                ("400", "too_deep"),
                ("408", "body_timeout"),
                ("413", "body_too_large"),
                ("415", "unsupported_media_type"),
            ]);
        }
        if spec.body == Body::Form {
            want.extend([
                ("400", "malformed_form"),
                ("400", "duplicate_form_field"),
                ("400", "unknown_form_field"),
                ("408", "body_timeout"),
                ("413", "body_too_large"),
                ("415", "unsupported_media_type"),
            ]);
        }
        for (status, code) in want {
            assert!(has(status, code), "{e}: {status} {code} not documented");
        }
        // A 2xx, or a redirect (`GET /console`).
        let success: Vec<&String> = responses
            .keys()
            .filter(|s| s.starts_with('2') || s.starts_with('3'))
            .collect();
        assert_eq!(success.len(), 1, "{e}: one success status");
        for (status, r) in responses {
            let r = resolve(&d, r);
            assert!(
                r["headers"]["x-request-id"].is_object(),
                "{e} {status}: x-request-id"
            );
            assert!(
                r["headers"]["x-audit-seq"].is_object(),
                "{e} {status}: x-audit-seq"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert!(!codes(&d, r).is_empty(), "{e} {status}: no error codes");
            }
        }
    }
}

/// A schema that admits `null` (an optional body field: serde takes `null`
/// for `None`) must list `null` in its `enum` too, or the document calls
/// `{"decision": null}` invalid while the gateway accepts it (found by
/// schemathesis' negative-data check on `POST /v1/audit/search`).
#[test]
fn nullable_enums_admit_null() {
    fn walk(v: &Value, at: &str, bad: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let nullable = m
                    .get("type")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|t| t == "null"));
                if let (true, Some(e)) = (nullable, m.get("enum").and_then(Value::as_array))
                    && !e.contains(&Value::Null)
                {
                    bad.push(at.to_owned());
                }
                for (k, x) in m {
                    walk(x, &format!("{at}/{k}"), bad);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), bad);
                }
            }
            _ => {}
        }
    }
    let mut bad = Vec::new();
    walk(&doc(), "", &mut bad);
    assert!(bad.is_empty(), "nullable enums without null: {bad:?}");
}

/// No documented code is invented: each is a string literal of the source.
#[test]
fn every_documented_error_code_exists_in_the_source() {
    fn rust_files(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut src = String::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut src);
    let d = doc();
    let mut all = BTreeSet::new();
    for op in operations(&d).values() {
        for r in op["responses"].as_object().unwrap().values() {
            all.extend(codes(&d, r));
        }
    }
    assert!(all.len() > 40, "{all:?}");
    let unknown: Vec<&String> = all
        .iter()
        .filter(|c| !src.contains(&format!("\"{c}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "codes documented but not in src/: {unknown:?}"
    );
}

/// The other way round: every code the HTTP layer can put in an error is
/// documented on some operation (a code added to a handler without the
/// document fails here). Codes are read from the source: the first string
/// argument of the `ApiError` constructors, the code after a `StatusCode`,
/// and in `error.rs` the codes of the refusal tables (`=> "code"` and
/// `("code",` rows).
#[test]
fn every_error_code_of_the_http_layer_is_documented() {
    /// The snake_case string literal `rest` starts with (after blanks).
    fn literal_at(rest: &str, out: &mut BTreeSet<String>) {
        if let Some(rest) = rest.trim_start().strip_prefix('"')
            && let Some(end) = rest.find('"')
        {
            let code = &rest[..end];
            if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                out.insert(code.to_owned());
            }
        }
    }
    fn literal_after(text: &str, marker: &str, out: &mut BTreeSet<String>) {
        for (i, _) in text.match_indices(marker) {
            literal_at(&text[i + marker.len()..], out);
        }
    }
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut paths,
    );
    let mut used = BTreeSet::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        for marker in [
            "bad_request(",
            "forbidden(",
            "not_found(",
            "conflict(",
            "unprocessable(",
        ] {
            literal_after(&text, marker, &mut used);
        }
        for (i, _) in text.match_indices("StatusCode::") {
            if let Some(j) = text[i..].find([',', ')', ';']) {
                literal_at(&text[i + j + 1..], &mut used);
            }
        }
        if p.ends_with("error.rs") {
            literal_after(&text, "=> ", &mut used);
            for line in text.lines() {
                let t = line.trim().trim_end_matches(',');
                if t.starts_with('"') && t.ends_with('"') {
                    literal_at(t, &mut used);
                }
            }
        }
    }
    // The scanner sees each way a code is written.
    for code in [
        "no_identity",
        "body_too_large",
        "lifecycle_terms_required",
        "record_expired",
        "unknown_subject_type",
        "quota_exceeded",
        "consent_not_found",
    ] {
        assert!(used.contains(code), "scanner missed {code}: {used:?}");
    }
    let d = doc();
    let mut documented = BTreeSet::new();
    for op in operations(&d).values() {
        for r in op["responses"].as_object().unwrap().values() {
            documented.extend(codes(&d, r));
        }
    }
    for r in d["components"]["responses"].as_object().unwrap().values() {
        documented.extend(codes(&d, r));
    }
    let missing: Vec<&String> = used.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "error codes of src/http/ documented on no operation: {missing:?}"
    );
}

/// Whether `v` conforms to `schema`, for the JSON Schema keywords the
/// document uses (`$ref`, `allOf`, `anyOf`, `type`, `enum`, `const`,
/// `properties`, `required`, `additionalProperties: false`, `items`,
/// `minimum`/`maximum`, `minItems`/`maxItems`, `minLength`/`maxLength`).
/// Any other keyword fails loudly, so the check never silently weakens.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        return errors.push(format!("{at}: schema is not an object"));
    };
    let fail = |errors: &mut Vec<String>, what: String| errors.push(format!("{at}: {what}"));
    for (k, kw) in s {
        match k.as_str() {
            "$ref" => conforms(doc, resolve(doc, schema), v, at, errors),
            "allOf" => {
                for sub in kw.as_array().unwrap() {
                    conforms(doc, sub, v, at, errors);
                }
            }
            "anyOf" => {
                let ok = kw.as_array().unwrap().iter().any(|sub| {
                    let mut e = Vec::new();
                    conforms(doc, sub, v, at, &mut e);
                    e.is_empty()
                });
                if !ok {
                    errors.push(format!("{at}: matches no anyOf branch: {v}"));
                }
            }
            "type" => {
                let types: Vec<&str> = match kw {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    _ => false,
                });
                if !ok {
                    fail(errors, format!("{v} is not of type {kw}"));
                }
            }
            "enum" if !kw.as_array().unwrap().contains(v) => {
                fail(errors, format!("{v} not in {kw}"))
            }
            "const" if kw != v => fail(errors, format!("{v} is not {kw}")),
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in kw.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            conforms(doc, sub, x, &format!("{at}/{name}"), errors);
                        }
                    }
                }
            }
            "required" => {
                for name in kw.as_array().unwrap() {
                    if v.is_object() && v.get(name.as_str().unwrap()).is_none() {
                        errors.push(format!("{at}: missing {name}"));
                    }
                }
            }
            "additionalProperties" => {
                if let (Some(o), Value::Bool(false)) = (v.as_object(), kw) {
                    let known = s.get("properties").and_then(Value::as_object);
                    for name in o.keys() {
                        if !known.is_some_and(|p| p.contains_key(name)) {
                            errors.push(format!("{at}: unexpected property {name}"));
                        }
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    conforms(doc, kw, x, &format!("{at}/{i}"), errors);
                }
            }
            "minimum" if v.as_f64().zip(kw.as_f64()).is_some_and(|(x, m)| x < m) => {
                fail(errors, format!("{v} < {kw}"))
            }
            "maximum" if v.as_f64().zip(kw.as_f64()).is_some_and(|(x, m)| x > m) => {
                fail(errors, format!("{v} > {kw}"))
            }
            "minItems" | "maxItems" | "minLength" | "maxLength" => {
                let n = match v {
                    Value::Array(a) => a.len() as u64,
                    Value::String(t) => t.chars().count() as u64,
                    _ => continue,
                };
                let bound = kw.as_u64().unwrap();
                if (k.starts_with("min") && n < bound) || (k.starts_with("max") && n > bound) {
                    fail(errors, format!("length {n} violates {k} {bound}"));
                }
            }
            "enum" | "const" | "minimum" | "maximum" => {}
            "description" | "format" | "example" | "examples" | "pattern" | "title" => {}
            other => panic!("{at}: the test validator does not know the keyword {other}"),
        }
    }
}

#[test]
fn the_validator_refuses_what_it_should() {
    let d = doc();
    let err = |schema: Value, v: Value| {
        let mut e = Vec::new();
        conforms(&d, &schema, &v, "", &mut e);
        e
    };
    let sub = serde_json::json!({"$ref": "#/components/schemas/ConsentStatus"});
    let ok = serde_json::json!({"jti": "j", "state": "active", "uses": 0, "max_uses": null,
        "exp": null, "registered_at": null, "last_used_at": null, "revoked_at": null});
    assert!(err(sub.clone(), ok.clone()).is_empty());
    for (k, bad) in [
        ("state", serde_json::json!("gone")),
        ("uses", serde_json::json!(-1)),
        ("uses", serde_json::json!("1")),
        ("extra", serde_json::json!(1)),
    ] {
        let mut v = ok.clone();
        v[k] = bad;
        assert!(!err(sub.clone(), v).is_empty(), "{k}");
    }
    let mut v = ok;
    v.as_object_mut().unwrap().remove("jti");
    assert!(!err(sub, v).is_empty());
    let e = serde_json::json!({"$ref": "#/components/responses/NoIdentity/content/application~1json/schema"});
    assert!(
        err(
            e.clone(),
            serde_json::json!({"error": {"code": "no_identity", "message": "m"}})
        )
        .is_empty()
    );
    assert!(
        !err(
            e,
            serde_json::json!({"error": {"code": "other", "message": "m"}})
        )
        .is_empty()
    );
}

fn cert_of(role: &str) -> &'static str {
    match role {
        "department" => "department",
        "bank" => "bank",
        "credit_agency" => "agency",
        "auditor" => "auditor",
        "portal" => "portal",
        other => panic!("unknown role {other}"),
    }
}

/// Each documented request example, sent by each permitted role to a real
/// gateway with the sample data, gets a status the operation documents, and
/// an error code documented for that status.
#[tokio::test]
async fn documented_examples_get_documented_answers() {
    let gw = TestGateway::start().await;
    let d = doc();
    let (mut sent, mut checked) = (0, 0);
    for spec in TABLE {
        let op = operation_of(&d, spec.endpoint);
        let (mut path, _) = openapi_path(spec.pattern);
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            let value = match &p["example"] {
                Value::String(s) => s.clone(),
                Value::Null => p["schema"]["enum"][0].as_str().unwrap().to_owned(),
                v => v.to_string(),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        let bodies: Vec<Value> = match spec.body {
            Body::None => vec![Value::Null],
            Body::Json => op["requestBody"]["content"]["application/json"]["examples"]
                .as_object()
                .unwrap_or_else(|| panic!("{}: no request examples", spec.endpoint))
                .values()
                .map(|x| x["value"].clone())
                .collect(),
            Body::Form => {
                op["requestBody"]["content"]["application/x-www-form-urlencoded"]["examples"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{}: no request examples", spec.endpoint))
                    .values()
                    .map(|x| x["value"].clone())
                    .collect()
            }
        };
        for role in op["x-credgate-roles"].as_array().unwrap() {
            let client = gw.client(cert_of(role.as_str().unwrap()));
            for body in &bodies {
                let r = match (spec.method, spec.body) {
                    (Method::Get, _) => client.get(&path).await,
                    (Method::Post, Body::Form) => {
                        let mut form = form_urlencoded::Serializer::new(String::new());
                        for (k, v) in body.as_object().unwrap() {
                            form.append_pair(k, v.as_str().unwrap());
                        }
                        let form = bytes::Bytes::from(form.finish());
                        let ctype = Some("application/x-www-form-urlencoded");
                        client.send("POST", &path, form, ctype).await.unwrap()
                    }
                    (Method::Post, _) => client.post(&path, body).await,
                };
                sent += 1;
                let documented = &op["responses"][r.status.to_string()];
                assert!(
                    documented.is_object(),
                    "{} as {role}: status {} is not documented: {}",
                    spec.endpoint,
                    r.status,
                    r.body
                );
                if r.status >= 400 {
                    let code = r.body["error"]["code"].as_str().unwrap_or("");
                    assert!(
                        codes(&d, documented).iter().any(|c| c == code),
                        "{} as {role}: {} {code} is not documented",
                        spec.endpoint,
                        r.status
                    );
                }
                let response = resolve(&d, documented);
                // The documented media type the answer came as (a proof may
                // be a `text/plain` tlog-proof file instead of JSON).
                let ctype = r
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let media = response["content"].as_object().and_then(|c| {
                    c.keys()
                        .find(|k| ctype.starts_with(k.split(';').next().unwrap_or(k)))
                        .cloned()
                });
                assert!(
                    media.is_some() || response["content"].is_null(),
                    "{} as {role}: content type {ctype} is not documented for {}",
                    spec.endpoint,
                    r.status
                );
                if media.as_deref() != Some("application/json") {
                    if let Some(m) = &media {
                        assert!(
                            !r.bytes.is_empty(),
                            "{} as {role}: empty {m} body",
                            spec.endpoint
                        );
                        checked += 1;
                    }
                } else if let Some(schema) = response["content"]["application/json"].get("schema") {
                    let mut errors = Vec::new();
                    conforms(&d, schema, &r.body, "", &mut errors);
                    assert!(
                        errors.is_empty(),
                        "{} as {role}: the {} body does not conform: {errors:?}\n{}",
                        spec.endpoint,
                        r.status,
                        r.body
                    );
                    checked += 1;
                }
                assert!(r.headers.contains_key("x-request-id"));
                assert!(r.headers.contains_key("x-audit-seq"));
            }
        }
    }
    assert!(sent > TABLE.len(), "{sent}");
    assert!(checked > TABLE.len(), "{checked}");
    gw.stop().await;
}

/// `GET /v1/openapi.json` is the repository's document, byte for byte, for
/// every role; it is audited like any request; the pipeline's refusals hold.
#[tokio::test]
async fn the_served_document_is_the_repository_copy() {
    let gw = TestGateway::start().await;
    let file =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")).unwrap();
    let roles = ["department", "bank", "agency", "auditor", "portal"];
    for who in roles {
        let r = gw.client(who).get("/v1/openapi.json").await;
        assert_eq!(r.status, 200, "{who}: {}", r.body);
        assert_eq!(r.headers["content-type"], "application/json", "{who}");
        assert!(r.headers.contains_key("x-audit-seq"), "{who}");
        assert!(
            r.bytes[..] == file[..],
            "{who}: served != docs/openapi.json"
        );
    }
    let r = gw.client("unregistered").get("/v1/openapi.json").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("unregistered_organisation"))
    );
    let r = gw
        .client("bank")
        .post("/v1/openapi.json", &serde_json::json!({}))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET");
    let r = gw.client("bank").get("/v1/openapi.json?x=1").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // Every one of those requests is one entry: five served documents and
    // the three refusals, under the endpoint's action or the 405's.
    let entries = common::audit_entries(&gw.store).await;
    let served: Vec<_> = entries.iter().filter(|e| e.action == "openapi").collect();
    assert_eq!(
        served.iter().map(|e| e.status).collect::<Vec<_>>(),
        [200, 200, 200, 200, 200, 403, 400]
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "method_not_allowed")
            .count(),
        1
    );
    gw.stop().await;
}
