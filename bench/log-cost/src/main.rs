//! The per-request log line of `App::handle`, timed: the same event (target
//! `credgate::request`, debug level, the same fields) through the JSON
//! formatter `credgate --log-format json` installs. Arguments: the filter
//! (`RUST_LOG` syntax) and the writer (`sink` or `stderr`). Each figure is
//! the fastest of 20 rounds.

use std::hint::black_box;
use std::time::Instant;

fn line(i: u64) {
    let rid = black_box("5f0c9a1e-2a");
    tracing::debug!(
        target: "credgate::request",
        request_id = %rid,
        seq = Some(i),
        action = %"query",
        status = 200u16,
        outcome = %"ok",
        micros = i,
        "request"
    );
}

fn best(n: u64) -> f64 {
    (0..20)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                line(black_box(i));
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_else(|| "info".into());
    let writer = std::env::args().nth(2).unwrap_or_else(|| "sink".into());
    let logs =
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(&filter));
    if writer == "stderr" {
        logs.with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        logs.with_writer(std::io::sink)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    }
    let n = if filter == "info" { 1_000_000 } else { 20_000 };
    println!(
        "filter {filter:?}, writer {writer}: {:.1} ns per request line",
        best(n)
    );
}
