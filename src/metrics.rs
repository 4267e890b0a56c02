//! Prometheus counters, rendered in the text exposition format by the admin
//! listener. Hand-rolled: a handful of atomics do not justify a dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::audit::AuditHealth;
use crate::audit::anomaly::{Anomalies, AnomalyLimits, OrgStatus};

/// A per-organisation series: name, type, help, value.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&OrgStatus) -> u64,
);

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
    /// Handler panics caught (each answered 500 and audited).
    pub handler_panics: AtomicU64,
    /// Connections currently open (after accept).
    pub connections_open: AtomicI64,
    /// Connections refused because the cap was reached.
    pub connections_rejected: AtomicU64,
    /// TLS handshakes that failed (bad, missing, expired or revoked certificates).
    pub handshake_failures: AtomicU64,
    /// Handshakes that did not finish in time.
    pub handshake_timeouts: AtomicU64,
    /// Responses replaced by 503 because the audit log could not be written.
    pub audit_failures: AtomicU64,
    /// Per-organisation quota and anomaly counters (this node only).
    pub anomalies: Anomalies,
}

impl Metrics {
    /// Counters with the configured quota and anomaly limits.
    pub fn with_limits(limits: AnomalyLimits) -> Self {
        Metrics {
            anomalies: Anomalies::new(limits),
            ..Metrics::default()
        }
    }

    /// Count one request.
    pub fn request(&self, action: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((action, status)).or_default() += 1;
        }
    }

    /// Count one request by its action name as logged.
    pub fn request_action(&self, action: &str, status: u16) {
        // Action names come from the endpoint table (static); look the
        // static name up so the map keeps `&'static str` keys.
        let action = crate::endpoint::Endpoint::from_action(action)
            .map(|e| e.action())
            .unwrap_or(match action {
                "malformed_http" => "malformed_http",
                "method_not_allowed" => "method_not_allowed",
                _ => "unknown",
            });
        self.request(action, status);
    }

    /// Count one request the HTTP layer refused before any handler ran.
    pub fn rejection(&self, outcome: &'static str) {
        if let Ok(mut m) = self.rejections.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    /// Render everything, including the audit pipeline's counters.
    pub fn render(&self, audit: &AuditHealth) -> String {
        let mut out = String::new();
        out.push_str("# HELP credgate_requests_total Requests by action and status.\n# TYPE credgate_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((action, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "credgate_requests_total{{action=\"{action}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP credgate_http_rejections_total Requests refused by the HTTP layer before a handler ran (each audited as malformed_http).\n# TYPE credgate_http_rejections_total counter\n");
        if let Ok(m) = self.rejections.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "credgate_http_rejections_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        let g = |out: &mut String, name: &str, kind: &str, help: &str, v: i128| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        g(
            &mut out,
            "credgate_connections_open",
            "gauge",
            "Open connections.",
            self.connections_open.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_connections_rejected_total",
            "counter",
            "Connections refused at the cap.",
            self.connections_rejected.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_handshake_failures_total",
            "counter",
            "Failed TLS handshakes.",
            self.handshake_failures.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_handshake_timeouts_total",
            "counter",
            "Timed-out TLS handshakes.",
            self.handshake_timeouts.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_unavailable_total",
            "counter",
            "Responses refused because the audit log failed.",
            self.audit_failures.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_handler_panics_total",
            "counter",
            "Handler panics caught (answered 500 internal_error and audited).",
            self.handler_panics.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_entries_total",
            "counter",
            "Audit entries committed.",
            audit.committed.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_batches_total",
            "counter",
            "Audit group commits.",
            audit.batches.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_failed_total",
            "counter",
            "Audit entries that failed to commit.",
            audit.failed.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_indexed_entries",
            "gauge",
            "Log entries the audit search index covers.",
            audit.indexed.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_index_lag_entries",
            "gauge",
            "Durable log entries not yet in the search index (readiness fails above the limit).",
            audit.index_lag.load(Ordering::Relaxed).into(),
        );
        g(
            &mut out,
            "credgate_audit_index_failures_total",
            "counter",
            "Search index batches that failed.",
            audit.index_failures.load(Ordering::Relaxed).into(),
        );
        self.render_anomalies(&mut out);
        out
    }

    /// Per-organisation series; org codes are validated credit codes, so
    /// they need no label escaping.
    fn render_anomalies(&self, out: &mut String) {
        let orgs = self.anomalies.snapshot(|_| None);
        let series: [Series; 4] = [
            (
                "credgate_org_distinct_subjects",
                "gauge",
                "Distinct subjects queried in the last hour by quota-tracked organisations (this node).",
                |s| s.distinct_subjects,
            ),
            (
                "credgate_org_denied_attempts",
                "gauge",
                "Denied attempts (failed, or a field withheld) in the last hour (this node).",
                |s| s.denied,
            ),
            (
                "credgate_quota_refused_total",
                "counter",
                "Queries refused with 429 quota_exceeded (this node).",
                |s| s.refused_total,
            ),
            (
                "credgate_org_over_quota",
                "gauge",
                "Queries for a new subject beyond the quota in the last hour (this node).",
                |s| s.over_quota,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &orgs {
                let _ = writeln!(out, "{name}{{org=\"{}\"}} {}", s.org, value(s));
            }
        }
        let _ = writeln!(
            out,
            "# HELP credgate_anomaly Organisation flagged in the last hour (this node): 1 flagged, 0 not.\n# TYPE credgate_anomaly gauge"
        );
        for s in &orgs {
            let _ = writeln!(
                out,
                "credgate_anomaly{{org=\"{}\",kind=\"distinct_subjects\"}} {}",
                s.org,
                u8::from(s.quota_flag())
            );
            let _ = writeln!(
                out,
                "credgate_anomaly{{org=\"{}\",kind=\"denied_attempts\"}} {}",
                s.org,
                u8::from(self.anomalies.denied_flag(s))
            );
        }
    }
}
