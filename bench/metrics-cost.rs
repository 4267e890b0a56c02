//! What recording the metrics costs per request, measured on the very code
//! the gateway runs (`src/metrics/hot.rs`, included below), optimised, with
//! no dependencies: `bash bench/metrics-cost.sh`.
//!
//! Per request, `App::handle` and the audit sequencer do: two clock reads
//! and two action-name lookups in `App::handle` (start, and latency at the
//! end), a counter and a latency histogram, one clock read when the entry
//! is queued and one durable-latency observation. The batch-level work
//! (one clock read per batch, commit duration and batch size) is left out,
//! since a batch holds many entries.
//!
//! Each figure is the fastest of N rounds (argument, default 50) of 100,000
//! requests: the minimum is the cost without preemption on a shared machine.

#[allow(dead_code)]
#[path = "../src/metrics/hot.rs"]
mod hot;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// The same match `Endpoint::from_action` compiles to (the endpoint
/// table's action names, in order), then the extra actions.
fn action_index(action: &str) -> usize {
    match action {
        "query" => 0,
        "submit_records" => 1,
        "record_history" => 2,
        "objection_file" => 3,
        "objection_overdue" => 4,
        "objection_resolve" => 5,
        "repair_apply" => 6,
        "repair_decide" => 7,
        "list_add" => 8,
        "list_exit" => 9,
        "check" => 10,
        "check_feedback" => 11,
        "consent_status" => 12,
        "consent_revoke" => 13,
        "access_history" => 14,
        "audit_search" => 15,
        "audit_inclusion_proof" => 16,
        "audit_consistency_proof" => 17,
        "audit_checkpoint" => 18,
        "audit_report" => 19,
        "audit_export" => 20,
        "audit_log_checkpoint" => 21,
        "audit_log_tile" => 22,
        "openapi" => 23,
        "method_not_allowed" => 24,
        "malformed_http" => 26,
        _ => 25,
    }
}

struct Recorder {
    requests: hot::Requests,
    durable: hot::Histogram,
}

#[inline(never)]
fn one_request(r: &Recorder, action: &str, status: u16, batch_durable: Instant) {
    let started = Instant::now();
    // App::count
    r.requests.count(action_index(action), status);
    // AuditLog::append stamps the job; the sequencer observes it against
    // the one clock read it makes per batch.
    let queued = Instant::now();
    r.durable
        .observe_duration(batch_durable.saturating_duration_since(queued));
    // End of App::handle.
    r.requests
        .latency(action_index(action), status, started.elapsed());
}

/// The fastest of `rounds` rounds of `n` requests, in ns per request: the
/// machine is shared, and the minimum is the cost without preemption.
fn run(r: &Recorder, rounds: u32, n: u64) -> f64 {
    let actions = ["query", "submit_records", "audit_search", "openapi"];
    let durable = Instant::now();
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                let a = black_box(actions[(i % 4) as usize]);
                one_request(r, a, black_box(200), durable);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn clock_only(rounds: u32, n: u64) -> f64 {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(Instant::now());
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let n = 100_000;
    let r = Arc::new(Recorder {
        requests: hot::Requests::new(27),
        durable: hot::Histogram::durations(),
    });
    run(&r, 2, n); // warm up
    println!("Instant::now(): {:.1} ns", clock_only(rounds, n));
    println!(
        "metrics per request, 1 thread: {:.1} ns",
        run(&r, rounds, n)
    );
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || run(&r, rounds, n))
        })
        .collect();
    let worst = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold(0.0, f64::max);
    println!(
        "metrics per request, {threads} threads on the same series: {worst:.1} ns (slowest thread)"
    );
}
