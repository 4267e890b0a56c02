//! The file backend killed with SIGKILL at random instants while it appends
//! and takes snapshots every few kilobytes: every batch whose `append`
//! returned is there after a restart, the tree is the one its entries make,
//! and the next writer goes on from it. A real process and a real kill (the
//! page cache survives it: this holds the order of the files' steps, not
//! the disk's flushes).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use credlog::fs::FsLog;
use credlog::merkle;
use credlog::sequencer::{Sequencer, entries_from};

const CHILD: &str = "CREDLOG_KILL9_CHILD";

fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 97) as usize)).into_bytes()
}

/// The child: append batches of 1–40 entries forever, printing the log's
/// size after each returned append; snapshots every 16 KB of WAL.
fn child(dir: &Path) -> ! {
    let log = FsLog::open(dir).unwrap();
    let mut w = log.writer().unwrap();
    w.set_wal_limit(16 * 1024);
    w.set_wal_prealloc(4 * 1024);
    let mut s = Sequencer::open(w).unwrap();
    let mut out = std::io::stdout().lock();
    let mut n = s.state().size();
    loop {
        let k = 1 + n % 40;
        let batch: Vec<Vec<u8>> = (n..n + k).map(entry).collect();
        assert_eq!(s.append(&batch).unwrap(), n);
        n += k;
        writeln!(out, "acked {n}").unwrap();
        out.flush().unwrap();
    }
}

/// The size in a child's `acked N` line (0 for the test harness's own).
fn acked_in(line: &str) -> u64 {
    line.strip_prefix("acked ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn kill_9_at_any_instant_loses_no_returned_batch() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child(Path::new(&dir));
    }
    let dir = std::env::temp_dir().join(format!("credlog-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let me = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    let mut snapshots = 0;
    for round in 0..12u64 {
        let mut c = Command::new(&me)
            .args([
                "--exact",
                "kill_9_at_any_instant_loses_no_returned_batch",
                "--nocapture",
            ])
            .env(CHILD, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        // Run for 30–250 ms (varied per round), then kill -9.
        let until = Instant::now() + Duration::from_millis(30 + (round * 37) % 220);
        while Instant::now() < until {
            match lines.next() {
                Some(Ok(l)) => acked = acked.max(acked_in(&l)),
                _ => break,
            }
        }
        c.kill().unwrap();
        c.wait().unwrap();
        // Whatever the pipe still holds was acknowledged before the kill.
        for l in lines.map_while(Result::ok) {
            acked = acked.max(acked_in(&l));
        }
        eprintln!(
            "round {round}: acked {acked}, wal.prev {}, state {}",
            dir.join("wal.prev").exists(),
            dir.join("state").exists()
        );
        if dir.join("wal.prev").exists() || dir.join("state").exists() {
            snapshots += 1;
        }
        let log = FsLog::open(&dir).unwrap();
        let (size, root) = log.head().unwrap();
        assert!(
            size >= acked,
            "round {round}: {size} entries, {acked} acknowledged"
        );
        let all: Vec<Vec<u8>> = (0..size).map(entry).collect();
        let leaves: Vec<_> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        assert_eq!(root, merkle::root_of(&leaves), "round {round}");
        assert_eq!(entries_from(&log, 0, size).unwrap(), all, "round {round}");
        acked = size;
    }
    assert!(acked > 1000, "the child appended only {acked} entries");
    assert!(snapshots > 0, "no snapshot was taken");
    let _ = std::fs::remove_dir_all(&dir);
}
