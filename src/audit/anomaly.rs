//! Per-organisation anomaly counters: distinct subjects queried per hour
//! (against an optional quota) and denied attempts per hour.
//!
//! # Per node, in memory
//!
//! Counting happens in this process only, so it costs one uncontended mutex
//! and a hash-map probe on the hot path and needs no database round trip.
//! With several gateway nodes behind a load balancer each node counts the
//! requests it serves: a quota of N per hour is enforced as N *per node*
//! (an organisation spreading load over k nodes can reach up to k·N). The
//! auditor report complements this with exact, cluster-wide hourly counts
//! computed from the log itself.
//!
//! # Windows
//!
//! Both counts cover a sliding hour at one-minute resolution: the current
//! minute and the 59 before it. A subject counts once per window however
//! often it is queried; a re-query refreshes it. Memory per organisation is
//! bounded by the quota (refused subjects are not remembered) times the 60
//! minute buckets, and by 60 counters for denied attempts. Organisations
//! without a quota are not tracked for distinct subjects at all.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

use crate::ids::SubjectId;
use crate::policy::Organisation;

/// Minutes in the sliding window.
const WINDOW_MINUTES: u32 = 60;

/// Limits, from the configuration and the organisation registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnomalyLimits {
    /// Quota for organisations that do not set their own.
    pub default_distinct_subjects_per_hour: Option<u32>,
    /// Refuse (429 `quota_exceeded`) a query for a new subject beyond the
    /// quota; when false the query is served and only flagged.
    pub enforce_quota: bool,
    /// More denied attempts than this in an hour flags the organisation.
    pub denied_per_hour: u32,
}

impl Default for AnomalyLimits {
    fn default() -> Self {
        AnomalyLimits {
            default_distinct_subjects_per_hour: None,
            enforce_quota: true,
            denied_per_hour: 100,
        }
    }
}

/// A query for a new subject was refused because the organisation reached
/// its quota of distinct subjects per hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("quota of {limit} distinct subjects per hour reached")]
pub struct QuotaExceeded {
    /// The quota that applied.
    pub limit: u32,
}

/// One organisation's counters as seen now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgStatus {
    /// Org code.
    pub org: String,
    /// Its quota, if any.
    pub quota: Option<u32>,
    /// Distinct subjects in the window (quota-tracked organisations only).
    pub distinct_subjects: u64,
    /// Queries for a new subject beyond the quota in the window (refused
    /// or, when not enforcing, served and flagged).
    pub over_quota: u64,
    /// Denied attempts in the window.
    pub denied: u64,
    /// Queries refused with 429 since start.
    pub refused_total: u64,
}

impl OrgStatus {
    /// Flagged for querying more distinct subjects than its quota.
    pub fn quota_flag(&self) -> bool {
        self.over_quota > 0
    }
}

/// Per-minute counts over the window.
#[derive(Debug, Default)]
struct MinuteCounts(VecDeque<(u32, u64)>);

impl MinuteCounts {
    fn expire(&mut self, now: u32) {
        while self
            .0
            .front()
            .is_some_and(|&(m, _)| m + WINDOW_MINUTES <= now)
        {
            self.0.pop_front();
        }
    }

    fn add(&mut self, now: u32) {
        match self.0.back_mut() {
            Some((m, n)) if *m == now => *n += 1,
            _ => self.0.push_back((now, 1)),
        }
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }
}

#[derive(Debug, Default)]
struct OrgWindow {
    /// Subject key → minute it was last seen.
    last_seen: HashMap<u64, u32>,
    /// Keys seen in each minute (a key may also sit in older buckets with a
    /// stale minute; expiry checks `last_seen`).
    buckets: VecDeque<(u32, Vec<u64>)>,
    over_quota: MinuteCounts,
    denied: MinuteCounts,
    refused_total: u64,
}

impl OrgWindow {
    fn expire(&mut self, now: u32) {
        while self
            .buckets
            .front()
            .is_some_and(|(m, _)| m + WINDOW_MINUTES <= now)
        {
            if let Some((m, keys)) = self.buckets.pop_front() {
                for k in keys {
                    if self.last_seen.get(&k) == Some(&m) {
                        self.last_seen.remove(&k);
                    }
                }
            }
        }
        self.over_quota.expire(now);
        self.denied.expire(now);
    }

    fn touch(&mut self, key: u64, now: u32) {
        self.last_seen.insert(key, now);
        match self.buckets.back_mut() {
            Some((m, keys)) if *m == now => keys.push(key),
            _ => self.buckets.push_back((now, vec![key])),
        }
    }
}

/// Anomaly tracker shared by all connections of one gateway process.
#[derive(Debug)]
pub struct Anomalies {
    limits: AnomalyLimits,
    epoch: Instant,
    keys: RandomState,
    orgs: Mutex<HashMap<String, OrgWindow>>,
}

impl Default for Anomalies {
    fn default() -> Self {
        Anomalies::new(AnomalyLimits::default())
    }
}

/// Outcome of admitting a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within quota (or no quota).
    Admitted,
    /// Beyond quota but served, because the quota is not enforced.
    Flagged,
}

impl Anomalies {
    /// A tracker with these limits.
    pub fn new(limits: AnomalyLimits) -> Self {
        Anomalies {
            limits,
            epoch: Instant::now(),
            keys: RandomState::new(),
            orgs: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limits.
    pub fn limits(&self) -> &AnomalyLimits {
        &self.limits
    }

    /// The quota that applies to `org`: its own, else the default.
    pub fn quota_of(&self, org: &Organisation) -> Option<u32> {
        org.quota_distinct_subjects_per_hour
            .or(self.limits.default_distinct_subjects_per_hour)
    }

    fn minute(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs() / 60).unwrap_or(u32::MAX - WINDOW_MINUTES)
    }

    /// Count a query by `org` about `subject` before any data is read;
    /// `Err` means refuse it with 429.
    pub fn admit(
        &self,
        org: &Organisation,
        subject: &SubjectId,
    ) -> Result<Admission, QuotaExceeded> {
        let Some(limit) = self.quota_of(org) else {
            return Ok(Admission::Admitted);
        };
        let key = self.keys.hash_one((subject.kind().as_str(), subject.id()));
        self.admit_at(org.code.as_str(), limit, key, self.minute())
    }

    fn admit_at(
        &self,
        org: &str,
        limit: u32,
        key: u64,
        now: u32,
    ) -> Result<Admission, QuotaExceeded> {
        let Ok(mut orgs) = self.orgs.lock() else {
            // A poisoned lock only means another thread panicked mid-update;
            // counting is best effort, serving is not blocked by it.
            return Ok(Admission::Admitted);
        };
        let w = match orgs.get_mut(org) {
            Some(w) => w,
            None => orgs.entry(org.to_owned()).or_default(),
        };
        w.expire(now);
        match w.last_seen.get(&key) {
            Some(&m) if m == now => return Ok(Admission::Admitted),
            Some(_) => {
                w.touch(key, now);
                return Ok(Admission::Admitted);
            }
            None => {}
        }
        if (w.last_seen.len() as u64) < u64::from(limit) {
            w.touch(key, now);
            return Ok(Admission::Admitted);
        }
        w.over_quota.add(now);
        if self.limits.enforce_quota {
            w.refused_total += 1;
            Err(QuotaExceeded { limit })
        } else {
            // Remember one subject beyond the quota so the count shows the
            // overrun, but no more: memory stays bounded by the quota.
            if w.last_seen.len() as u64 <= u64::from(limit) {
                w.touch(key, now);
            }
            Ok(Admission::Flagged)
        }
    }

    /// Count a finished request: `denied` when it failed or withheld a field.
    pub fn record(&self, org: &str, denied: bool) {
        if denied {
            self.record_at(org, self.minute());
        }
    }

    fn record_at(&self, org: &str, now: u32) {
        if let Ok(mut orgs) = self.orgs.lock() {
            let w = match orgs.get_mut(org) {
                Some(w) => w,
                None => orgs.entry(org.to_owned()).or_default(),
            };
            w.expire(now);
            w.denied.add(now);
        }
    }

    /// Whether `status` should be flagged for denied attempts.
    pub fn denied_flag(&self, status: &OrgStatus) -> bool {
        status.denied > u64::from(self.limits.denied_per_hour)
    }

    /// Current counters of every tracked organisation, sorted by org code.
    /// `quota` resolves an org code to its quota (registry + default).
    pub fn snapshot(&self, quota: impl Fn(&str) -> Option<u32>) -> Vec<OrgStatus> {
        self.snapshot_at(quota, self.minute())
    }

    fn snapshot_at(&self, quota: impl Fn(&str) -> Option<u32>, now: u32) -> Vec<OrgStatus> {
        let Ok(mut orgs) = self.orgs.lock() else {
            return Vec::new();
        };
        orgs.retain(|_, w| {
            w.expire(now);
            !(w.last_seen.is_empty()
                && w.over_quota.0.is_empty()
                && w.denied.0.is_empty()
                && w.refused_total == 0)
        });
        let mut out: Vec<OrgStatus> = orgs
            .iter()
            .map(|(org, w)| OrgStatus {
                org: org.clone(),
                quota: quota(org),
                distinct_subjects: w.last_seen.len() as u64,
                over_quota: w.over_quota.sum(),
                denied: w.denied.sum(),
                refused_total: w.refused_total,
            })
            .collect();
        out.sort_by(|a, b| a.org.cmp(&b.org));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(enforce: bool) -> Anomalies {
        Anomalies::new(AnomalyLimits {
            default_distinct_subjects_per_hour: Some(3),
            enforce_quota: enforce,
            denied_per_hour: 2,
        })
    }

    #[test]
    fn quota_counts_distinct_subjects_in_a_sliding_hour() {
        let t = tracker(true);
        for k in 1..=3 {
            assert_eq!(t.admit_at("A", 3, k, 0), Ok(Admission::Admitted));
        }
        // Re-querying a known subject is always fine.
        assert_eq!(t.admit_at("A", 3, 2, 10), Ok(Admission::Admitted));
        assert_eq!(t.admit_at("A", 3, 4, 10), Err(QuotaExceeded { limit: 3 }));
        // Other organisations have their own window.
        assert_eq!(t.admit_at("B", 3, 4, 10), Ok(Admission::Admitted));
        // Subjects 1 and 3 expire after an hour; 2 was refreshed at minute 10.
        assert_eq!(t.admit_at("A", 3, 4, 59), Err(QuotaExceeded { limit: 3 }));
        assert_eq!(t.admit_at("A", 3, 4, 60), Ok(Admission::Admitted));
        assert_eq!(t.admit_at("A", 3, 5, 60), Ok(Admission::Admitted));
        assert_eq!(t.admit_at("A", 3, 6, 60), Err(QuotaExceeded { limit: 3 }));
        let s = t.snapshot_at(|_| Some(3), 60);
        assert_eq!(s[0].org, "A");
        assert_eq!(s[0].distinct_subjects, 3);
        // Refusals at minutes 10, 59 and 60 are all within the hour.
        assert_eq!(s[0].over_quota, 3);
        assert_eq!(s[0].refused_total, 3);
        assert!(s[0].quota_flag());
        // After another quiet hour everything but the lifetime counter is gone.
        let s = t.snapshot_at(|_| Some(3), 200);
        assert_eq!(s[0].distinct_subjects, 0);
        assert!(!s[0].quota_flag());
        assert_eq!(s[0].refused_total, 3);
        // B expired entirely and was dropped.
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn flag_only_mode_serves_and_bounds_memory() {
        let t = tracker(false);
        for k in 0..1000 {
            let want = if k < 3 {
                Admission::Admitted
            } else {
                Admission::Flagged
            };
            assert_eq!(t.admit_at("A", 3, k, 5), Ok(want));
        }
        let s = &t.snapshot_at(|_| Some(3), 5)[0];
        assert_eq!(s.distinct_subjects, 4, "saturates at quota + 1");
        assert_eq!(s.over_quota, 997);
        assert_eq!(s.refused_total, 0);
        assert!(s.quota_flag());
    }

    #[test]
    fn denied_attempts_flag_over_the_threshold() {
        let t = tracker(true);
        t.record_at("A", 0);
        t.record_at("A", 30);
        let s = &t.snapshot_at(|_| None, 30)[0];
        assert_eq!(s.denied, 2);
        assert!(!t.denied_flag(s));
        t.record_at("A", 59);
        assert!(t.denied_flag(&t.snapshot_at(|_| None, 59)[0]));
        // Minute 0 leaves the window at minute 60.
        assert!(!t.denied_flag(&t.snapshot_at(|_| None, 60)[0]));
        t.record("A", false);
        assert_eq!(t.snapshot_at(|_| None, 60)[0].denied, 2);
    }
}
