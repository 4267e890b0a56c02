//! Prometheus counters, rendered in the text exposition format by the admin
//! listener. Hand-rolled: a handful of atomics do not justify a dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::audit::AuditHealth;

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
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
}

impl Metrics {
    /// Count one request.
    pub fn request(&self, action: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((action, status)).or_default() += 1;
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
        out
    }
}
