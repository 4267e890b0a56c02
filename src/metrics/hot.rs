//! The recording side of the metrics: what runs on every request, every
//! connection and every audit batch. `std` atomics only — no lock, no
//! allocation, no registry lookup — so that `bench/metrics-cost` can compile
//! this file on its own (`rustc -O`) and time it.
//!
//! Every series has a fixed slot: actions and status codes index dense
//! arrays, so recording is a bounds check and a `fetch_add` or two. The
//! exposition side (`super`) reads the slots at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bucket upper bounds for durations, in microseconds (100 µs … 10 s).
/// Every request waits for its audit entry's group commit, so most answers
/// fall between 1 and 25 ms. (Microseconds, not nanoseconds: the sum of
/// the latencies of 100,000 requests a second at 10 ms each would overflow
/// a `u64` of nanoseconds in about 200 days.)
pub const DURATION_BOUNDS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Bucket upper bounds for audit batch sizes, in entries (`audit.max_batch`
/// is at most 10,000).
pub const BATCH_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10_000,
];

/// A histogram with fixed buckets and atomic counts: `observe` is two
/// relaxed `fetch_add`s. A scrape reads the buckets and the sum one after
/// the other, so it may see an observation in one and not yet in the other;
/// the next scrape sees both (Prometheus' `rate` and `histogram_quantile`
/// tolerate that).
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending, in the unit observations are made in.
    bounds: &'static [u64],
    /// Observation units per exposed unit (1e6: µs → s). Divided, not
    /// multiplied by its inverse, so that bounds come out as written
    /// (`25_000 / 1e6` is `0.025`; `25_000 * 1e-6` is `0.024999999999999998`).
    per_unit: f64,
    /// Per-bucket counts (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations, in the observation unit.
    sum: AtomicU64,
}

/// What a scrape reads from a [`Histogram`], in the exposed unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
    /// `(upper bound, count in that bucket alone)` for the finite bounds.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// A histogram over `bounds` (ascending), exposed divided by `per_unit`.
    pub fn new(bounds: &'static [u64], per_unit: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            inner: Arc::new(Inner {
                bounds,
                per_unit,
                buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0),
            }),
        }
    }

    /// Durations, exposed in seconds ([`DURATION_BOUNDS_US`]).
    pub fn durations() -> Self {
        Self::new(DURATION_BOUNDS_US, 1e6)
    }

    /// Counts such as batch sizes ([`BATCH_BOUNDS`]).
    pub fn sizes() -> Self {
        Self::new(BATCH_BOUNDS, 1.0)
    }

    /// Record one observation, in the bounds' unit.
    #[inline]
    pub fn observe(&self, v: u64) {
        let i = self.inner.bounds.partition_point(|&b| b < v);
        self.inner.buckets[i].fetch_add(1, Relaxed);
        self.inner.sum.fetch_add(v, Relaxed);
    }

    /// Record a duration (for a histogram made by [`Histogram::durations`]).
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Read the histogram.
    pub fn snapshot(&self) -> Snapshot {
        let s = &self.inner;
        let mut count = 0;
        let mut buckets = Vec::with_capacity(s.bounds.len());
        for (i, b) in s.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            count += n;
            if let Some(&bound) = s.bounds.get(i) {
                buckets.push((bound as f64 / s.per_unit, n));
            }
        }
        Snapshot {
            sum: s.sum.load(Relaxed) as f64 / s.per_unit,
            count,
            buckets,
        }
    }
}

/// Status codes get a slot each from 0 (no response sent) to 599; credgate
/// sends nothing above 599 (every status comes from `http::StatusCode`
/// constants), and anything that did would count as 599.
pub const STATUS_SLOTS: usize = 600;

/// Status classes of the latency histograms, by `status / 100`.
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Requests by action and status (a counter) and by action and status
/// class (a latency histogram), in dense arrays indexed by action number.
#[derive(Debug)]
pub struct Requests {
    actions: usize,
    counts: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
}

impl Requests {
    /// Slots for `actions` actions.
    pub fn new(actions: usize) -> Self {
        Requests {
            actions,
            counts: (0..actions * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..actions * STATUS_CLASSES.len())
                .map(|_| Histogram::durations())
                .collect(),
        }
    }

    /// Number of actions.
    pub fn actions(&self) -> usize {
        self.actions
    }

    fn action(&self, action: usize) -> usize {
        action.min(self.actions - 1)
    }

    /// Count one request (an action number past the last counts as the last).
    #[inline]
    pub fn count(&self, action: usize, status: u16) {
        let slot = usize::from(status).min(STATUS_SLOTS - 1);
        self.counts[self.action(action) * STATUS_SLOTS + slot].fetch_add(1, Relaxed);
    }

    /// Record how long a request took from its head to its response.
    #[inline]
    pub fn latency(&self, action: usize, status: u16, took: Duration) {
        let class = usize::from(status / 100).min(STATUS_CLASSES.len() - 1);
        self.latency[self.action(action) * STATUS_CLASSES.len() + class].observe_duration(took);
    }

    /// Every non-zero count: `(action number, status, count)`.
    pub fn counts(&self) -> impl Iterator<Item = (usize, u16, u64)> + '_ {
        self.counts.iter().enumerate().filter_map(|(i, c)| {
            let n = c.load(Relaxed);
            (n > 0).then_some((i / STATUS_SLOTS, (i % STATUS_SLOTS) as u16, n))
        })
    }

    /// Every latency histogram that has observations: `(action number,
    /// status class, histogram)`.
    pub fn latencies(&self) -> impl Iterator<Item = (usize, &'static str, Snapshot)> + '_ {
        self.latency.iter().enumerate().filter_map(|(i, h)| {
            let s = h.snapshot();
            (s.count > 0).then(|| {
                let n = STATUS_CLASSES.len();
                (i / n, STATUS_CLASSES[i % n], s)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_inclusive() {
        let h = Histogram::new(&[1, 10], 1.0);
        for v in [0, 1, 2, 10, 11, 1000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1.0, 2), (10.0, 2)]);
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 1024.0);
    }

    #[test]
    fn duration_bounds_are_exposed_as_written() {
        let bounds: Vec<String> = Histogram::durations()
            .snapshot()
            .buckets
            .iter()
            .map(|(b, _)| b.to_string())
            .collect();
        assert_eq!(
            bounds,
            [
                "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                "0.1", "0.25", "0.5", "1", "2.5", "5", "10"
            ]
        );
    }

    #[test]
    fn durations_are_exposed_in_seconds() {
        let h = Histogram::durations();
        h.observe_duration(Duration::from_millis(3));
        let s = h.snapshot();
        assert!((s.sum - 0.003).abs() < 1e-12, "{s:?}");
        let (bound, n) = s.buckets.iter().find(|(_, n)| *n == 1).unwrap();
        assert_eq!((*bound, *n), (0.005, 1));
    }

    #[test]
    fn requests_land_in_their_action_status_and_class() {
        let r = Requests::new(3);
        r.count(1, 200);
        r.count(1, 200);
        r.count(2, 503);
        r.count(9, 0);
        r.latency(1, 201, Duration::from_micros(50));
        r.latency(2, 999, Duration::from_secs(20));
        let counts: Vec<_> = r.counts().collect();
        assert_eq!(counts, vec![(1, 200, 2), (2, 0, 1), (2, 503, 1)]);
        let lat: Vec<_> = r.latencies().map(|(a, c, s)| (a, c, s.count)).collect();
        assert_eq!(lat, vec![(1, "2xx", 1), (2, "5xx", 1)]);
    }
}
