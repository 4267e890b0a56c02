//! The endpoint table: every `(method, path)` the gateway serves, in one
//! place, as data.
//!
//! [`route`] turns a method and a path into a [`Routed`] endpoint with its
//! path parameters, or into [`RouteError::NotFound`] or
//! [`RouteError::MethodNotAllowed`] (with the methods the path allows, for
//! the `Allow` header). Each endpoint carries its audit action name
//! ([`Endpoint::action`]) and whether it takes a JSON body.
//!
//! *Who* may call an endpoint is not here: it is policy data
//! (`policies/access.toml`, loaded and checked by `policy`), so that an
//! official can read and change it without reading Rust. This module has no
//! dependencies inside the crate, so both `policy` (which validates the
//! access file against [`Endpoint::ALL`]) and `http` (which routes) can use
//! it; the OpenAPI document is checked against [`TABLE`].

use std::fmt;

/// HTTP methods the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    /// From hyper's method; `None` for methods no endpoint uses.
    pub fn from_http(m: &hyper::Method) -> Option<Method> {
        match *m {
            hyper::Method::GET => Some(Method::Get),
            hyper::Method::POST => Some(Method::Post),
            _ => None,
        }
    }
}

/// Whether an endpoint reads a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body is read.
    None,
    /// A JSON body through the one body extractor.
    Json,
    /// An HTML form body (`application/x-www-form-urlencoded`) through the
    /// same extractor; the console's forms (`http::console::form`).
    Form,
}

macro_rules! endpoints {
    ($( $(#[$doc:meta])* $name:ident = $action:literal, $method:ident $path:literal, $body:ident; )*) => {
        /// One endpoint of the API. The variant names the operation; its
        /// action string is what audit entries and `policies/access.toml` use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Endpoint {
            $( $(#[$doc])* $name, )*
        }

        impl Endpoint {
            /// Every endpoint, in table order.
            pub const ALL: &'static [Endpoint] = &[ $( Endpoint::$name, )* ];

            /// The audit action name (also the key in `policies/access.toml`).
            pub fn action(self) -> &'static str {
                match self { $( Endpoint::$name => $action, )* }
            }

            /// The endpoint with this action name.
            pub fn from_action(action: &str) -> Option<Endpoint> {
                match action { $( $action => Some(Endpoint::$name), )* _ => None }
            }
        }

        /// The routing table: endpoint, method, path pattern, body.
        ///
        /// Pattern segments: a literal; `{name}` captures one segment;
        /// `{name=a|b}` captures one of the listed literals; `{*name}`
        /// captures the rest of the path (one or more segments).
        pub const TABLE: &[Spec] = &[
            $( Spec { endpoint: Endpoint::$name, method: Method::$method, pattern: $path, body: Body::$body }, )*
        ];
    };
}

endpoints! {
    /// Query a subject's credit data.
    Query = "query", Post "/v1/query", Json;
    /// A department submits a batch of records.
    SubmitRecords = "submit_records", Post "/v1/records", Json;
    /// A record's change history (provider department, auditor).
    RecordHistory = "record_history", Get "/v1/records/{id}/history", None;
    /// The portal files an objection (异议) for a subject.
    ObjectionFile = "objection_file", Post "/v1/objections", Json;
    /// Objections past their 20-day deadline.
    ObjectionOverdue = "objection_overdue", Get "/v1/objections/overdue", None;
    /// The providing department resolves an objection.
    ObjectionResolve = "objection_resolve", Post "/v1/objections/{id}/resolution", Json;
    /// The portal reads an objection's status and answer, for its subject.
    ObjectionStatus = "objection_status", Post "/v1/objections/{id}/status", Json;
    /// The portal applies for credit repair (信用修复).
    RepairApply = "repair_apply", Post "/v1/repairs", Json;
    /// The providing department decides a repair application.
    RepairDecide = "repair_decide", Post "/v1/repairs/{id}/decision", Json;
    /// The portal reads a repair application's status, for its subject.
    RepairStatus = "repair_status", Post "/v1/repairs/{id}/status", Json;
    /// A department adds a subject to a red, black or focus list.
    ListAdd = "list_add", Post "/v1/lists/{list=red|black|focus}", Json;
    /// The issuing department takes a list entry off its list.
    ListExit = "list_exit", Post "/v1/lists/entries/{id}/exit", Json;
    /// A 应查必查 check of a subject against the measures list.
    Check = "check", Post "/v1/checks", Json;
    /// Feedback on the measures a check applied.
    CheckFeedback = "check_feedback", Post "/v1/checks/{id}/feedback", Json;
    /// A consent's registry state.
    ConsentStatus = "consent_status", Get "/v1/consents/{jti}", None;
    /// The portal revokes a consent for its subject.
    ConsentRevoke = "consent_revoke", Post "/v1/consents/{jti}/revoke", Json;
    /// Who accessed a subject's data (the portal, for the subject).
    AccessHistory = "access_history", Post "/v1/portal/access-history", Json;
    /// Search the audit log.
    AuditSearch = "audit_search", Post "/v1/audit/search", Json;
    /// An inclusion proof for one entry.
    AuditInclusionProof = "audit_inclusion_proof", Post "/v1/audit/proof/inclusion", Json;
    /// A consistency proof between two tree sizes.
    AuditConsistencyProof = "audit_consistency_proof", Post "/v1/audit/proof/consistency", Json;
    /// The latest signed checkpoint and its verifier key.
    AuditCheckpoint = "audit_checkpoint", Get "/v1/audit/checkpoint", None;
    /// Volume, denials, anomalies and most-queried subjects.
    AuditReport = "audit_report", Post "/v1/audit/report", Json;
    /// Entries with proofs, as JSON Lines or CSV.
    AuditExport = "audit_export", Post "/v1/audit/export", Json;
    /// The log's latest signed checkpoint, C2SP tlog-tiles (`text/plain`).
    AuditLogCheckpoint = "audit_log_checkpoint", Get "/v1/audit/log/checkpoint", None;
    /// A hash tile or entry bundle, C2SP tlog-tiles.
    AuditLogTile = "audit_log_tile", Get "/v1/audit/log/tile/{*path}", None;
    /// This API's OpenAPI 3.1 document (`docs/openapi.json`).
    OpenApi = "openapi", Get "/v1/openapi.json", None;
    /// `/console` without the slash: a 308 redirect to `/console/`.
    ConsoleRoot = "console_root", Get "/console", None;
    /// The auditor console: the log search form (`text/html`).
    ConsoleHome = "console_home", Get "/console/", None;
    /// The console's log search results, from an HTML form (subject id in the body).
    ConsoleSearch = "console_search", Post "/console/search", Form;
    /// One log entry; the page verifies its inclusion proof in the browser.
    ConsoleEntry = "console_entry", Get "/console/entries/{seq}", None;
    /// Reports as charts, for the last 24 hours.
    ConsoleReports = "console_reports", Get "/console/reports", None;
    /// Reports as charts, for a time range from an HTML form.
    ConsoleReportsRange = "console_reports_range", Post "/console/reports", Form;
    /// Objections past their 20-day deadline, as a page.
    ConsoleOverdue = "console_overdue", Get "/console/objections/overdue", None;
    /// The export form.
    ConsoleExportForm = "console_export_form", Get "/console/export", None;
    /// An export download (JSON Lines or CSV, with proofs), from an HTML form.
    ConsoleExport = "console_export", Post "/console/export", Form;
    /// The console's script, style sheet and icon, embedded in the binary.
    ConsoleAsset = "console_asset", Get "/console/assets/{name=console.js|console.css|favicon.svg}", None;
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its method.
    pub method: Method,
    /// Its path pattern (see [`TABLE`]).
    pub pattern: &'static str,
    /// Whether it reads a body, and which kind.
    pub body: Body,
}

/// A request matched to an endpoint, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed<'p> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Whether it reads a JSON body.
    pub body: Body,
    params: Vec<(&'static str, &'p str)>,
}

impl<'p> Routed<'p> {
    /// The captured path parameter `name` (as sent; handlers validate it).
    pub fn param(&self, name: &str) -> &'p str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or("")
    }
}

/// Why a request matched no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No endpoint has this path.
    #[error("no such endpoint")]
    NotFound,
    /// The path exists, but not for this method.
    #[error("method not allowed; allowed: {}", allow_header(.allow))]
    MethodNotAllowed {
        /// Methods the path does allow.
        allow: Vec<Method>,
    },
}

/// The `Allow` header value for `methods`.
pub fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Match `method` and `path` against [`TABLE`].
pub fn route<'p>(method: &hyper::Method, path: &'p str) -> Result<Routed<'p>, RouteError> {
    let method = Method::from_http(method);
    let mut allow = Vec::new();
    for spec in TABLE {
        let Some(params) = matches(spec.pattern, path) else {
            continue;
        };
        if Some(spec.method) == method {
            return Ok(Routed {
                endpoint: spec.endpoint,
                body: spec.body,
                params,
            });
        }
        if !allow.contains(&spec.method) {
            allow.push(spec.method);
        }
    }
    if allow.is_empty() {
        Err(RouteError::NotFound)
    } else {
        allow.sort();
        Err(RouteError::MethodNotAllowed { allow })
    }
}

/// Match one pattern; the captures on success.
fn matches<'p>(pattern: &'static str, path: &'p str) -> Option<Vec<(&'static str, &'p str)>> {
    let mut params = Vec::new();
    let mut segs = path.strip_prefix('/')?.split('/');
    let mut pats = pattern.strip_prefix('/')?.split('/');
    loop {
        match (pats.next(), segs.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) => {
                if let Some(inner) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if let Some(name) = inner.strip_prefix('*') {
                        let start = s.as_ptr() as usize - path.as_ptr() as usize;
                        let rest = &path[start..];
                        if rest.split('/').any(str::is_empty) {
                            return None;
                        }
                        params.push((name, rest));
                        return Some(params);
                    }
                    if s.is_empty() {
                        return None;
                    }
                    match inner.split_once('=') {
                        Some((name, options)) => {
                            if !options.split('|').any(|o| o == s) {
                                return None;
                            }
                            params.push((name, s));
                        }
                        None => params.push((inner, s)),
                    }
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action())
    }
}

impl Endpoint {
    /// This endpoint's row in [`TABLE`].
    pub fn spec(self) -> &'static Spec {
        TABLE
            .iter()
            .find(|s| s.endpoint == self)
            .expect("every endpoint has a row")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method as M;

    #[test]
    fn every_endpoint_has_one_row_and_a_unique_action() {
        assert_eq!(Endpoint::ALL.len(), TABLE.len());
        let mut actions: Vec<&str> = Endpoint::ALL.iter().map(|e| e.action()).collect();
        actions.sort_unstable();
        actions.dedup();
        assert_eq!(actions.len(), TABLE.len());
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_action(e.action()), Some(*e));
            assert_eq!(TABLE.iter().filter(|s| s.endpoint == *e).count(), 1);
        }
    }

    /// Every row is reachable by a concrete path built from its own
    /// pattern: no row is shadowed by an earlier one.
    #[test]
    fn every_row_routes_to_itself() {
        for spec in TABLE {
            let path: String = spec
                .pattern
                .split('/')
                .map(
                    |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(inner) => match inner.split_once('=') {
                            Some((_, opts)) => opts.split('|').next().unwrap().to_owned(),
                            None if inner.starts_with('*') => "a/b".to_owned(),
                            None => "42".to_owned(),
                        },
                        None => seg.to_owned(),
                    },
                )
                .collect::<Vec<_>>()
                .join("/");
            let m = match spec.method {
                Method::Get => M::GET,
                Method::Post => M::POST,
            };
            let r = route(&m, &path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(r.endpoint, spec.endpoint, "{path}");
        }
    }

    #[test]
    fn actions_and_params() {
        let r = route(&M::POST, "/v1/objections/17/resolution").unwrap();
        assert_eq!(r.endpoint, Endpoint::ObjectionResolve);
        assert_eq!(r.endpoint.action(), "objection_resolve");
        assert_eq!(r.param("id"), "17");
        let r = route(&M::POST, "/v1/lists/black").unwrap();
        assert_eq!((r.endpoint, r.param("list")), (Endpoint::ListAdd, "black"));
        let r = route(&M::GET, "/v1/consents/abc-1").unwrap();
        assert_eq!(
            (r.endpoint, r.param("jti")),
            (Endpoint::ConsentStatus, "abc-1")
        );
        assert_eq!(route(&M::POST, "/v1/query").unwrap().body, Body::Json);
        assert_eq!(
            route(&M::GET, "/v1/audit/checkpoint").unwrap().body,
            Body::None
        );
    }

    #[test]
    fn not_found_versus_method_not_allowed() {
        for path in [
            "/",
            "/v1",
            "/v1/",
            "/v1/queryx",
            "/v1/query/",
            "//v1/query",
            "/v1/lists/grey",
            "/v1/lists/entries",
            "/v1/records//history",
            "/v1/consents/",
            "/v1/consents/a/b",
            "/v1/objections/1/resolution/x",
        ] {
            assert_eq!(route(&M::POST, path), Err(RouteError::NotFound), "{path}");
            assert_eq!(route(&M::GET, path), Err(RouteError::NotFound), "{path}");
        }
        let only_post = RouteError::MethodNotAllowed {
            allow: vec![Method::Post],
        };
        for (m, path) in [
            (M::GET, "/v1/query"),
            (M::PUT, "/v1/query"),
            (M::DELETE, "/v1/records"),
            (M::GET, "/v1/lists/red"),
            (M::GET, "/v1/consents/j/revoke"),
        ] {
            assert_eq!(route(&m, path), Err(only_post.clone()), "{m} {path}");
        }
        assert_eq!(
            route(&M::POST, "/v1/objections/overdue"),
            Err(RouteError::MethodNotAllowed {
                allow: vec![Method::Get]
            })
        );
        assert_eq!(allow_header(&[Method::Get, Method::Post]), "GET, POST");
    }
}
