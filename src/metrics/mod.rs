//! Prometheus metrics, exposed by the admin listener's `GET /metrics` in the
//! Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! * Recording ([`hot`]) is lock-free: plain counters and gauges are
//!   `prometheus-client`'s atomics; requests, handshakes and the audit
//!   pipeline record into fixed slots of atomic counters and histograms
//!   (`prometheus-client`'s own `Histogram` takes a mutex per observation).
//! * Exposition goes through one `prometheus-client` [`Registry`]: the
//!   atomics are registered as they are, and collectors read the slots, the
//!   audit pipeline's [`AuditHealth`] and the per-organisation
//!   [`Anomalies`] at scrape time.
//!
//! Every series name is listed in `docs/operator-guide.md` (`/metrics`);
//! `packaging/grafana-dashboard.json` is built on them.

pub mod hot;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::audit::AuditHealth;
use crate::audit::anomaly::{Anomalies, AnomalyLimits};
use crate::endpoint::Endpoint;
pub use hot::Histogram;

/// Actions that are not endpoints, after [`Endpoint::ALL`] in the action
/// numbering.
const EXTRA_ACTIONS: [&str; 3] = ["method_not_allowed", "unknown", "malformed_http"];

/// The action number of an action name as logged: an endpoint's position in
/// [`Endpoint::ALL`], then `EXTRA_ACTIONS`; any other name is `unknown`.
pub fn action_index(action: &str) -> usize {
    match Endpoint::from_action(action) {
        Some(e) => e as usize,
        None => {
            let extra = EXTRA_ACTIONS.iter().position(|a| *a == action).unwrap_or(1);
            Endpoint::ALL.len() + extra
        }
    }
}

fn action_name(index: usize) -> &'static str {
    Endpoint::ALL
        .get(index)
        .map(|e| e.action())
        .unwrap_or_else(|| EXTRA_ACTIONS[(index - Endpoint::ALL.len()).min(2)])
}

/// How a TLS handshake ended, the `outcome` label of
/// `credgate_handshake_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Completed.
    Ok = 0,
    /// Refused (bad, missing, expired or revoked certificate, bad TLS).
    Failed = 1,
    /// Not finished within `server.handshake_timeout_ms`.
    Timeout = 2,
}

const HANDSHAKE_OUTCOMES: [&str; 3] = ["ok", "failed", "timeout"];

/// Why a TLS handshake was refused, the `reason` label of
/// `credgate_handshake_refusals_total` (see `connection::refusal_reason`).
pub const HANDSHAKE_REFUSALS: [&str; 10] = [
    "no_certificate",
    "certificate_expired",
    "certificate_revoked",
    "certificate_untrusted",
    "certificate_invalid",
    "alert_received",
    "incompatible",
    "protocol_error",
    "connection_closed",
    "timeout",
];

/// Process-wide metrics of one gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Arc<hot::Requests>,
    rejections: Family<[(&'static str, &'static str); 1], Counter>,
    reloads: Family<[(&'static str, &'static str); 2], Counter>,
    handshakes: Arc<[Histogram; 3]>,
    handshake_refusals: Family<[(&'static str, &'static str); 1], Counter>,
    /// Handler panics caught (each answered 500 and audited).
    pub handler_panics: Counter,
    /// Connections currently open (after accept).
    pub connections_open: Gauge,
    /// Connections refused because the cap was reached.
    pub connections_rejected: Counter,
    /// TLS handshakes that failed (bad, missing, expired or revoked certificates).
    pub handshake_failures: Counter,
    /// Handshakes that did not finish in time.
    pub handshake_timeouts: Counter,
    /// Responses replaced by 503 because the audit log could not be written.
    pub audit_failures: Counter,
    /// Per-organisation quota and anomaly counters (this node only).
    pub anomalies: Arc<Anomalies>,
}

impl Metrics {
    /// Metrics with the configured quota and anomaly limits, exposing the
    /// audit pipeline's `audit` counters and histograms too.
    pub fn new(limits: AnomalyLimits, audit: Arc<AuditHealth>) -> Self {
        let requests = Arc::new(hot::Requests::new(
            Endpoint::ALL.len() + EXTRA_ACTIONS.len(),
        ));
        let handshakes = Arc::new([
            Histogram::durations(),
            Histogram::durations(),
            Histogram::durations(),
        ]);
        let anomalies = Arc::new(Anomalies::new(limits));
        let m = Metrics {
            registry: Registry::default(),
            requests,
            rejections: Family::default(),
            reloads: Family::default(),
            handshakes,
            handshake_refusals: Family::default(),
            handler_panics: Counter::default(),
            connections_open: Gauge::default(),
            connections_rejected: Counter::default(),
            handshake_failures: Counter::default(),
            handshake_timeouts: Counter::default(),
            audit_failures: Counter::default(),
            anomalies,
        };
        let mut r = Registry::default();
        r.register_collector(Box::new(RequestCollector(m.requests.clone())));
        r.register(
            "credgate_http_rejections",
            "Requests refused by the HTTP layer before a handler ran (each audited as malformed_http)",
            m.rejections.clone(),
        );
        // Every series exists from the start (at 0), so an alert on
        // `refused` has something to compare with.
        for what in ["policy", "tls"] {
            for outcome in ["ok", "unchanged", "refused"] {
                drop(
                    m.reloads
                        .get_or_create(&[("what", what), ("outcome", outcome)]),
                );
            }
        }
        r.register(
            "credgate_reloads",
            "Reloads of policies/ and TLS material by part (policy, tls) and outcome (ok, unchanged, refused)",
            m.reloads.clone(),
        );
        r.register(
            "credgate_connections_open",
            "Open connections",
            m.connections_open.clone(),
        );
        r.register(
            "credgate_connections_rejected",
            "Connections refused at the cap",
            m.connections_rejected.clone(),
        );
        r.register(
            "credgate_handshake_failures",
            "Failed TLS handshakes",
            m.handshake_failures.clone(),
        );
        r.register(
            "credgate_handshake_timeouts",
            "Timed-out TLS handshakes",
            m.handshake_timeouts.clone(),
        );
        for reason in HANDSHAKE_REFUSALS {
            drop(m.handshake_refusals.get_or_create(&[("reason", reason)]));
        }
        r.register(
            "credgate_handshake_refusals",
            "Refused or timed-out TLS handshakes by reason (no_certificate, certificate_expired, certificate_revoked, certificate_untrusted, certificate_invalid, alert_received, incompatible, protocol_error, connection_closed, timeout)",
            m.handshake_refusals.clone(),
        );
        r.register_collector(Box::new(HandshakeCollector(m.handshakes.clone())));
        r.register(
            "credgate_audit_unavailable",
            "Responses refused because the audit log failed",
            m.audit_failures.clone(),
        );
        r.register(
            "credgate_handler_panics",
            "Handler panics caught (answered 500 internal_error and audited)",
            m.handler_panics.clone(),
        );
        r.register_collector(Box::new(AuditCollector(audit)));
        r.register_collector(Box::new(AnomalyCollector(m.anomalies.clone())));
        Metrics { registry: r, ..m }
    }

    /// Count one finished request by its action name as logged and the
    /// status in its audit entry.
    #[inline]
    pub fn request_action(&self, action: &str, status: u16) {
        self.requests.count(action_index(action), status);
    }

    /// Record the time from a request's head to its response (`status` is
    /// the one sent, after the audit append).
    #[inline]
    pub fn request_latency(&self, action: &str, status: u16, took: Duration) {
        self.requests.latency(action_index(action), status, took);
    }

    /// Count one request the HTTP layer refused before any handler ran.
    pub fn rejection(&self, outcome: &'static str) {
        self.rejections.get_or_create(&[("reason", outcome)]).inc();
    }

    /// Count one reload of `what` (`policy`, `tls`) with `outcome` (`ok`,
    /// `unchanged`, `refused`); see [`crate::reload`].
    pub fn reload(&self, what: &'static str, outcome: &'static str) {
        self.reloads
            .get_or_create(&[("what", what), ("outcome", outcome)])
            .inc();
    }

    /// Record a TLS handshake and how long it took.
    pub fn handshake(&self, outcome: Handshake, took: Duration) {
        match outcome {
            Handshake::Ok => {}
            Handshake::Failed => {
                self.handshake_failures.inc();
            }
            Handshake::Timeout => {
                self.handshake_timeouts.inc();
            }
        }
        self.handshakes[outcome as usize].observe_duration(took);
    }

    /// Count one refused handshake by its reason (one of
    /// [`HANDSHAKE_REFUSALS`]).
    pub fn handshake_refused(&self, reason: &'static str) {
        self.handshake_refusals
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Encode one histogram family: `(labels, histogram)` pairs.
fn encode_histograms<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, String)>, hot::Snapshot)> + 'a,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, s) in series {
        let mut f = m.encode_family(&labels)?;
        f.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            s.sum, s.count, &s.buckets, None,
        )?;
    }
    Ok(())
}

fn encode_one<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: M,
) -> Result<(), std::fmt::Error> {
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

#[derive(Debug)]
struct RequestCollector(Arc<hot::Requests>);

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "credgate_requests",
            "Requests by action and status.",
            None,
            MetricType::Counter,
        )?;
        for (action, status, n) in self.0.counts() {
            let labels = [
                ("action", action_name(action).to_owned()),
                ("status", status.to_string()),
            ];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
        encode_histograms(
            &mut encoder,
            "credgate_request_duration_seconds",
            "Time from a request's head to its response (after its audit entry is durable), by action and status class.",
            self.0.latencies().map(|(action, class, s)| {
                (
                    vec![
                        ("action", action_name(action).to_owned()),
                        ("status_class", class.to_owned()),
                    ],
                    s,
                )
            }),
        )
    }
}

#[derive(Debug)]
struct HandshakeCollector(Arc<[Histogram; 3]>);

impl Collector for HandshakeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_histograms(
            &mut encoder,
            "credgate_handshake_duration_seconds",
            "TLS handshake duration, by outcome (ok, failed, timeout).",
            self.0
                .iter()
                .zip(HANDSHAKE_OUTCOMES)
                .map(|(h, o)| (vec![("outcome", o.to_owned())], h.snapshot())),
        )
    }
}

#[derive(Debug)]
struct AuditCollector(Arc<AuditHealth>);

impl Collector for AuditCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let a = &self.0;
        let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
        encode_one(
            &mut e,
            "credgate_audit_entries",
            "Audit entries committed.",
            ConstCounter::new(load(&a.committed)),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_batches",
            "Audit group commits.",
            ConstCounter::new(load(&a.batches)),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_failed",
            "Audit entries that failed to commit.",
            ConstCounter::new(load(&a.failed)),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_indexed_entries",
            "Log entries the audit search index covers.",
            ConstGauge::new(load(&a.indexed) as i64),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_index_lag_entries",
            "Durable log entries not yet in the search index (readiness fails above the limit).",
            ConstGauge::new(load(&a.index_lag) as i64),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_index_failures",
            "Search index batches that failed.",
            ConstCounter::new(load(&a.index_failures)),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_wal_bytes",
            "Bytes of records in the embedded log's current write-ahead file (a new one begins past 64 MiB; 0 on PostgreSQL).",
            ConstGauge::new(load(&a.wal_bytes) as i64),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_snapshot_due",
            "1 while a snapshot of the embedded log is under way; one that stays 1 means its files fail to fsync and the write-ahead file grows.",
            ConstGauge::new(i64::from(a.snapshot_due.load(Ordering::Relaxed))),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_late_waiting_entries",
            "Entries of stored changes whose append failed, waiting for the log to recover.",
            ConstGauge::new(load(&a.late_waiting) as i64),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_late_appended",
            "Entries of stored changes appended after the log recovered.",
            ConstCounter::new(load(&a.late_appended)),
        )?;
        encode_one(
            &mut e,
            "credgate_audit_late_overflow",
            "Entries of stored changes left in the outbox for the next start (too many waiting).",
            ConstCounter::new(load(&a.late_overflow)),
        )?;
        encode_histograms(
            &mut e,
            "credgate_audit_append_to_durable_seconds",
            "Time from handing an entry to the sequencer to its batch being durable (queueing plus the group commit).",
            [(Vec::new(), a.durable_latency.snapshot())],
        )?;
        encode_histograms(
            &mut e,
            "credgate_audit_commit_duration_seconds",
            "Duration of one group commit (one fdatasync, or one PostgreSQL transaction).",
            [(Vec::new(), a.commit_duration.snapshot())],
        )?;
        encode_histograms(
            &mut e,
            "credgate_audit_batch_entries",
            "Entries per committed audit batch.",
            [(Vec::new(), a.batch_size.snapshot())],
        )
    }
}

#[derive(Debug)]
struct AnomalyCollector(Arc<Anomalies>);

impl Collector for AnomalyCollector {
    /// Per-organisation series; org codes are validated credit codes (and
    /// the encoder escapes label values anyway).
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let orgs = self.0.snapshot(|_| None);
        type Series = (
            &'static str,
            bool,
            &'static str,
            fn(&crate::audit::anomaly::OrgStatus) -> u64,
        );
        let series: [Series; 4] = [
            (
                "credgate_org_distinct_subjects",
                false,
                "Distinct subjects queried in the last hour by quota-tracked organisations (this node).",
                |s| s.distinct_subjects,
            ),
            (
                "credgate_org_denied_attempts",
                false,
                "Denied attempts (failed, or a field withheld) in the last hour (this node).",
                |s| s.denied,
            ),
            (
                "credgate_quota_refused",
                true,
                "Queries refused with 429 quota_exceeded (this node).",
                |s| s.refused_total,
            ),
            (
                "credgate_org_over_quota",
                false,
                "Queries for a new subject beyond the quota in the last hour (this node).",
                |s| s.over_quota,
            ),
        ];
        for (name, counter, help, value) in series {
            let kind = if counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut m = e.encode_descriptor(name, help, None, kind)?;
            for s in &orgs {
                let labels = [("org", s.org.as_str())];
                let f = m.encode_family(&labels)?;
                if counter {
                    ConstCounter::new(value(s)).encode(f)?;
                } else {
                    ConstGauge::new(value(s) as i64).encode(f)?;
                }
            }
        }
        let mut m = e.encode_descriptor(
            "credgate_anomaly",
            "Organisation flagged in the last hour (this node): 1 flagged, 0 not.",
            None,
            MetricType::Gauge,
        )?;
        for s in &orgs {
            let flags = [
                ("distinct_subjects", s.quota_flag()),
                ("denied_attempts", self.0.denied_flag(s)),
            ];
            for (kind, flagged) in flags {
                let labels = [("org", s.org.as_str()), ("kind", kind)];
                ConstGauge::new(i64::from(flagged)).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_numbers_follow_the_endpoint_table() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
            assert_eq!(action_index(e.action()), i);
            assert_eq!(action_name(i), e.action());
        }
        for a in EXTRA_ACTIONS {
            assert_eq!(action_name(action_index(a)), a);
        }
        assert_eq!(action_name(action_index("no such action")), "unknown");
    }

    #[test]
    fn exposition_keeps_the_series_names() {
        let m = Metrics::new(AnomalyLimits::default(), Arc::new(AuditHealth::default()));
        m.request_action("query", 200);
        m.request_latency("query", 200, Duration::from_millis(2));
        m.rejection("uri_too_long");
        m.handshake(Handshake::Failed, Duration::from_millis(1));
        m.handler_panics.inc();
        let text = m.render();
        for line in [
            "credgate_requests_total{action=\"query\",status=\"200\"} 1",
            "credgate_http_rejections_total{reason=\"uri_too_long\"} 1",
            "credgate_handshake_failures_total 1",
            "credgate_handler_panics_total 1",
            "credgate_connections_open 0",
            "credgate_audit_entries_total 0",
            "credgate_audit_index_lag_entries 0",
            "credgate_request_duration_seconds_bucket{action=\"query\",status_class=\"2xx\",le=\"0.0025\"} 1",
            "credgate_request_duration_seconds_count{action=\"query\",status_class=\"2xx\"} 1",
            "credgate_request_duration_seconds_bucket{action=\"query\",status_class=\"2xx\",le=\"0.0001\"} 0",
            "credgate_request_duration_seconds_bucket{action=\"query\",status_class=\"2xx\",le=\"0.025\"} 1",
            "credgate_handshake_duration_seconds_count{outcome=\"failed\"} 1",
            "credgate_audit_batch_entries_count 0",
            "# TYPE credgate_requests_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// Every `credgate_…` name in `text`, with a histogram's `_bucket`,
    /// `_sum` and `_count` suffix taken off.
    fn series_named(text: &str, histograms: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("credgate_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let mut name = &tail[..end];
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix)
                    && histograms.contains(&base)
                {
                    name = base;
                }
            }
            out.push(name.to_owned());
            rest = &tail[end..];
        }
        out
    }

    #[test]
    fn dashboard_and_operator_guide_name_exactly_the_exposed_series() {
        let m = Metrics::new(AnomalyLimits::default(), Arc::new(AuditHealth::default()));
        m.rejection("uri_too_long");
        let text = m.render();
        let exposed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let histograms: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
            .collect();
        assert!(exposed.len() > 20, "{text}");
        let dashboard = include_str!("../../packaging/grafana-dashboard.json");
        let guide = include_str!("../../docs/operator-guide.md");
        let section = &guide[guide.find("\n## Metrics").expect("a Metrics section")..];
        let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
        for (what, names) in [
            ("dashboard", series_named(dashboard, &histograms)),
            ("operator guide", series_named(guide, &histograms)),
        ] {
            assert!(names.len() > 10, "{what}: {names:?}");
            for n in &names {
                assert!(
                    exposed.contains(&n.as_str()),
                    "{what} names {n}, not exposed"
                );
            }
        }
        let documented = series_named(section, &histograms);
        for n in &exposed {
            assert!(
                documented.iter().any(|d| d == n),
                "{n} is not in the operator guide's Metrics section"
            );
        }
    }
}
