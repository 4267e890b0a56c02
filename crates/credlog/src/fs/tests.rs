//! Tests of the file backend: recovery, torn tails, snapshots and their
//! crash steps, preallocated zeros, several writers on one directory.

use super::*;
use crate::merkle;
use crate::sequencer::LogStorage;
use crate::sequencer::{Sequencer, entries_from, nodes_from};
use std::os::unix::fs::FileExt;

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
fn tmp(name: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("credlog-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    Tmp(p)
}

fn entries(n: u32) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

#[test]
fn batches_survive_reopen_and_torn_tails_are_cut() {
    let d = tmp("reopen");
    let all = entries(1000);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        assert_eq!(s.append(&all[..300]).unwrap(), 0);
        assert_eq!(s.append(&all[300..301]).unwrap(), 300);
        assert_eq!(s.append(&all[301..700]).unwrap(), 301);
        assert_eq!(log.head().unwrap(), (700, merkle::root_of(&leaves[..700])));
        assert!(d.0.join("tile/entries/001").exists());
        assert!(d.0.join("tile/0/001").exists());
        assert!(!d.0.join("tile/0/002").exists());
        // Only one writer per view.
        assert!(log.writer().is_err());
        let view = FsLog::open(&d.0).unwrap();
        assert_eq!(view.head().unwrap().0, 700);
        assert_eq!(
            entries_from(&view, 650, 700).unwrap(),
            all[650..700].to_vec()
        );
    }
    // A torn record at the end: half of a batch written over the
    // preallocated zeros, never synced.
    let wal = d.0.join("wal");
    let good = {
        let log = FsLog::open(&d.0).unwrap();
        log.shared.read().unwrap().wal_seen
    };
    assert!(
        fs::metadata(&wal).unwrap().len() > good,
        "zeros are preallocated after the records"
    );
    {
        let f = OpenOptions::new().write(true).open(&wal).unwrap();
        let mut rec = Vec::new();
        rec.extend_from_slice(&100u32.to_le_bytes());
        rec.extend_from_slice(&700u64.to_le_bytes());
        rec.extend_from_slice(&[7; 20]);
        f.write_all_at(&rec, good).unwrap();
    }
    // And a lost full tile (written, not synced, gone in the crash).
    fs::remove_file(d.0.join("tile/entries/001")).unwrap();
    {
        let log = FsLog::open(&d.0).unwrap();
        assert_eq!(fs::metadata(&wal).unwrap().len(), good, "torn tail cut");
        assert!(d.0.join("tile/entries/001").exists(), "lost tile rewritten");
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        assert_eq!(s.state().size(), 700);
        assert_eq!(s.append(&all[700..]).unwrap(), 700);
        assert_eq!(log.head().unwrap().1, merkle::root_of(&leaves));
        let ids = merkle::nodes_for(&[(0, 1000)]);
        let nodes = nodes_from(&log, &ids).unwrap();
        let root = merkle::assemble(&[(0, 1000)], |id| nodes.get(&id).copied()).unwrap();
        assert_eq!(root[0], merkle::root_of(&leaves));
    }
}

#[test]
fn a_batch_whose_fdatasync_failed_is_never_read_back() {
    let d = tmp("syncfail");
    let all = entries(12);
    let log = FsLog::open(&d.0).unwrap();
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    assert_eq!(s.append(&all[..5]).unwrap(), 0);
    drop(s);
    let mut w = log.writer().unwrap();
    w.fail_next_sync = true;
    let mut s = Sequencer::open(w).unwrap();
    assert!(s.append(&all[5..10]).is_err());
    // Its record was written before the failed sync: neither another
    // process's view (reading the file) nor this writer reads it back.
    assert_eq!(FsLog::open(&d.0).unwrap().head().unwrap().0, 5);
    assert_eq!(s.append(&all[10..]).unwrap(), 5);
    drop(s);
    let mut kept: Vec<Hash> = all[..5].iter().map(|e| merkle::leaf_hash(e)).collect();
    kept.extend(all[10..].iter().map(|e| merkle::leaf_hash(e)));
    let reopened = FsLog::open(&d.0).unwrap();
    assert_eq!(reopened.head().unwrap(), (7, merkle::root_of(&kept)));
    assert_eq!(entries_from(&reopened, 5, 7).unwrap(), all[10..].to_vec());
}

#[test]
fn a_writer_that_panics_leaves_a_view_the_next_writer_rereads() {
    let d = tmp("panic");
    let all = entries(30);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let log = FsLog::open(&d.0).unwrap();
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    s.append(&all[..10]).unwrap();
    let before = log.shared.read().unwrap().state.clone();
    s.append(&all[10..20]).unwrap();
    // What a panic between a batch's fsync and its publication leaves:
    // the WAL position after the batch, the tree before it.
    log.shared.write().unwrap().state = before;
    let dead = std::thread::spawn(move || {
        let _writer = s;
        panic!("the writer panics");
    })
    .join();
    assert!(dead.is_err());
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    assert_eq!(s.state().size(), 20, "the reopened writer read the disk");
    assert_eq!(s.append(&all[20..]).unwrap(), 20);
    drop(s);
    let fresh = FsLog::open(&d.0).unwrap();
    assert_eq!(fresh.head().unwrap(), (30, merkle::root_of(&leaves)));
}

#[test]
fn a_bad_record_in_the_middle_is_corruption() {
    let d = tmp("corrupt");
    let all = entries(10);
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..5]).unwrap();
        s.append(&all[5..]).unwrap();
    }
    let wal = d.0.join("wal");
    let mut bytes = fs::read(&wal).unwrap();
    bytes[20] ^= 1; // inside the first record's entries
    fs::write(&wal, &bytes).unwrap();
    assert!(matches!(FsLog::open(&d.0), Err(StorageError::Corrupt(_))));
}

#[test]
fn snapshots_start_a_new_wal_generation_and_reload() {
    let d = tmp("snapshot");
    let all = entries(600);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..333]).unwrap();
        let view = FsLog::open(&d.0).unwrap();
        assert_eq!(view.head().unwrap().0, 333);
        drop(s);
        let mut w = log.writer().unwrap();
        w.load().unwrap();
        w.snapshot().unwrap();
        assert_eq!(fs::metadata(d.0.join("wal")).unwrap().len(), WAL_HEADER);
        let mut s = Sequencer::open(w).unwrap();
        s.append(&all[333..400]).unwrap();
        // The other view notices the new generation.
        assert_eq!(view.head().unwrap(), (400, merkle::root_of(&leaves[..400])));
    }
    let log = FsLog::open(&d.0).unwrap();
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    assert_eq!(s.state().size(), 400);
    s.append(&all[400..]).unwrap();
    assert_eq!(s.state().root(), merkle::root_of(&leaves));
    assert_eq!(entries_from(&log, 0, 600).unwrap(), all);
}

#[test]
fn a_crash_between_state_and_wal_restart_recovers() {
    let d = tmp("midsnap");
    let all = entries(700);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let old_wal;
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..300]).unwrap();
        s.append::<Vec<u8>>(&[]).unwrap(); // a probe record
        s.append(&all[300..500]).unwrap();
        drop(s);
        old_wal = fs::read(d.0.join("wal")).unwrap();
        let mut w = log.writer().unwrap();
        w.load().unwrap();
        w.snapshot().unwrap();
    }
    // The crash: `state` (500 entries) renamed, the WAL not restarted.
    fs::write(d.0.join("wal"), &old_wal).unwrap();
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), (500, merkle::root_of(&leaves[..500])));
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    s.append::<Vec<u8>>(&[]).unwrap();
    s.append(&all[500..]).unwrap();
    drop(s);
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), (700, merkle::root_of(&leaves)));
}

#[test]
fn background_snapshots_keep_every_batch() {
    let d = tmp("bgsnap");
    let all = entries(3000);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut w = log.writer().unwrap();
        w.set_wal_limit(4096);
        let mut s = Sequencer::open(w).unwrap();
        for chunk in all.chunks(97) {
            s.append(chunk).unwrap();
            // Give the snapshot thread a chance now and then.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(d.0.join("state").exists(), "a snapshot was taken");
        assert!(
            log.shared.read().unwrap().wal_seen < 200_000,
            "the wal was restarted"
        );
    }
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), (3000, merkle::root_of(&leaves)));
    assert_eq!(entries_from(&log, 0, 3000).unwrap(), all);
}

/// A snapshot begins a new WAL generation without copying a record:
/// while its files are fsynced, `wal.prev` bridges the old `state` to
/// the new generation for every view (another process's, a restart's),
/// and a later batch finishes it without replacing `wal`.
#[test]
fn a_snapshot_under_way_is_read_through_wal_prev_and_finished_in_place() {
    use std::os::unix::fs::MetadataExt;
    let d = tmp("due");
    let all = entries(900);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let other = {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..300]).unwrap();
        let other = FsLog::open(&d.0).unwrap();
        assert_eq!(other.head().unwrap().0, 300);
        drop(s);
        let mut w = log.writer().unwrap();
        w.load().unwrap();
        w.begin_snapshot_only().unwrap();
        assert!(d.0.join(WAL_PREV).exists());
        assert_eq!(log.wal_status(), (WAL_HEADER, true));
        assert_eq!(fs::metadata(d.0.join("wal")).unwrap().len(), WAL_HEADER);
        let mut s = Sequencer::open(w).unwrap();
        s.append(&all[300..500]).unwrap();
        // The writer stops here (a crash, as far as the files go): no
        // `state` yet, the snapshot due.
        assert!(!d.0.join("state").exists());
        other
    };
    assert_eq!(
        other.head().unwrap(),
        (500, merkle::root_of(&leaves[..500]))
    );
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), (500, merkle::root_of(&leaves[..500])));
    let wal_inode = fs::metadata(d.0.join("wal")).unwrap().ino();
    // The next writer finishes the due snapshot after its batches.
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    let mut next = 500;
    while d.0.join(WAL_PREV).exists() {
        assert!(next < 900, "the due snapshot was never finished");
        s.append(&all[next..next + 1]).unwrap();
        next += 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The snapshot is of the generation's start.
    assert_eq!(read_state(&d.0).unwrap().size(), 300);
    assert!(!log.wal_status().1, "no snapshot due once finished");
    assert_eq!(
        fs::metadata(d.0.join("wal")).unwrap().ino(),
        wal_inode,
        "finishing the snapshot replaced the wal"
    );
    s.append(&all[next..]).unwrap();
    drop(s);
    assert_eq!(other.head().unwrap(), (900, merkle::root_of(&leaves)));
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), (900, merkle::root_of(&leaves)));
    assert_eq!(entries_from(&log, 0, 900).unwrap(), all);
}

/// The next generation's file is filled with zeros in the background
/// before the snapshot that starts it: the commits of that generation
/// write no zeros of their own.
#[test]
fn a_prepared_generation_needs_no_zeros_from_its_commits() {
    let d = tmp("prep");
    let all = entries(4000);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let log = FsLog::open(&d.0).unwrap();
    let mut w = log.writer().unwrap();
    w.set_wal_limit(16 * 1024);
    w.set_wal_prealloc(4 * 1024);
    let mut s = Sequencer::open(w).unwrap();
    let base = |log: &FsLog| log.shared.read().unwrap().base;
    let mut next = 0;
    // Past half the limit: the preparation starts; wait for it.
    while !s.storage().next_wal_ready() {
        assert!(next < 1500, "wal.next was never prepared");
        s.append(&all[next..next + 10]).unwrap();
        next += 10;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(base(&log), 0, "prepared before the snapshot began");
    while base(&log) == 0 {
        assert!(next < 3000, "no snapshot began");
        s.append(&all[next..next + 10]).unwrap();
        next += 10;
    }
    let fills = s.storage().zero_fills;
    // About 6 KB of records, well inside the prepared 20 KB.
    for _ in 0..40 {
        s.append(&all[next..next + 10]).unwrap();
        next += 10;
    }
    assert_eq!(s.storage().zero_fills, fills, "a commit wrote zeros");
    drop(s);
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(
        log.head().unwrap(),
        (next as u64, merkle::root_of(&leaves[..next]))
    );
    assert_eq!(entries_from(&log, 0, next as u64).unwrap(), all[..next]);
}

/// A crash at each step of beginning or finishing a snapshot leaves a
/// log that opens with every batch, and the leftovers are removed.
#[test]
fn a_crash_at_any_step_of_a_snapshot_recovers() {
    let d = tmp("snapsteps");
    let all = entries(700);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let head = |n: usize| (n as u64, merkle::root_of(&leaves[..n]));
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..300]).unwrap();
    }
    // The new generation half written.
    let next = d.0.join(format!("{WAL_NEXT}4242"));
    fs::write(&next, b"credwal1\x2c\x01").unwrap();
    assert_eq!(FsLog::open(&d.0).unwrap().head().unwrap(), head(300));
    assert!(!next.exists());
    // `wal` linked to `wal.prev`, the new generation not renamed yet.
    fs::hard_link(d.0.join("wal"), d.0.join(WAL_PREV)).unwrap();
    assert_eq!(FsLog::open(&d.0).unwrap().head().unwrap(), head(300));
    assert!(!d.0.join(WAL_PREV).exists());
    // `state` replaced, `wal.prev` not yet removed.
    let old_wal = fs::read(d.0.join("wal")).unwrap();
    {
        let log = FsLog::open(&d.0).unwrap();
        let mut w = log.writer().unwrap();
        w.load().unwrap();
        w.snapshot().unwrap();
        let mut s = Sequencer::open(w).unwrap();
        s.append(&all[300..700]).unwrap();
    }
    fs::write(d.0.join(WAL_PREV), &old_wal).unwrap();
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap(), head(700));
    assert!(!d.0.join(WAL_PREV).exists());
    assert_eq!(entries_from(&log, 0, 700).unwrap(), all);
    // A `wal.prev` that does not reach the new generation is refused.
    drop(log);
    fs::remove_file(d.0.join("state")).unwrap();
    // (The first record, 300 entries, is longer than 2,000 bytes.)
    fs::write(d.0.join(WAL_PREV), &old_wal[..2000]).unwrap();
    assert!(matches!(FsLog::open(&d.0), Err(StorageError::Corrupt(_))));
}

/// A lone writer's batches, and the heads read between them, never
/// `stat` the WAL (`FsLog::nothing_new`: a stat makes ext4 write the
/// inode with the next `fdatasync`); a batch by another process is
/// still seen.
#[test]
fn a_lone_writer_commits_without_a_stat_of_the_wal() {
    let d = tmp("nostat");
    let all = entries(400);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let log = FsLog::open(&d.0).unwrap();
    let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
    s.append(&all[..3]).unwrap();
    let looks = log.full_looks.load(Ordering::Relaxed);
    // 130 batches of three: across a full bundle (256 entries), whose
    // file is written after its batch.
    for i in 1..131 {
        s.append(&all[i * 3..i * 3 + 3]).unwrap();
        assert_eq!(log.head().unwrap().0, (i as u64 + 1) * 3);
    }
    assert_eq!(
        log.full_looks.load(Ordering::Relaxed),
        looks,
        "a lone writer looked at the WAL in full"
    );
    drop(s);
    // Another process's batch: found by the cheap look, read in full.
    let other = FsLog::open(&d.0).unwrap();
    let mut t = Sequencer::open(other.writer().unwrap()).unwrap();
    assert_eq!(t.append(&all[393..400]).unwrap(), 393);
    assert_eq!(log.head().unwrap(), (400, merkle::root_of(&leaves)));
    assert!(log.full_looks.load(Ordering::Relaxed) > looks);
}

#[test]
fn two_writers_on_one_directory_share_one_log() {
    let d = tmp("two");
    let all = entries(900);
    let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
    let a = FsLog::open(&d.0).unwrap();
    let b = FsLog::open(&d.0).unwrap();
    let mut sa = Sequencer::open(a.writer().unwrap()).unwrap();
    let mut sb = Sequencer::open(b.writer().unwrap()).unwrap();
    let mut next = 0usize;
    for (i, n) in [5usize, 300, 1, 250, 44, 300].into_iter().enumerate() {
        let s = if i % 2 == 0 { &mut sa } else { &mut sb };
        assert_eq!(s.append(&all[next..next + n]).unwrap(), next as u64);
        next += n;
    }
    assert_eq!(next, 900);
    // Each writer wrote zeros once, at its first batch (a writer's
    // first open cuts the file to its records), and from then on used
    // the ones the other left.
    assert_eq!(
        (sa.storage().zero_fills, sb.storage().zero_fills),
        (1, 1),
        "the writers kept each other's preallocated zeros"
    );
    assert_eq!(a.head().unwrap(), (900, merkle::root_of(&leaves)));
    assert_eq!(b.head().unwrap().1, merkle::root_of(&leaves));
    assert_eq!(entries_from(&a, 0, 900).unwrap(), all);
}

/// The configurable snapshot threshold: no generation smaller than
/// [`MIN_WAL_LIMIT`] (a threshold of 0 would snapshot after every batch),
/// and the first snapshot begins once the WAL holds that much.
#[test]
fn the_snapshot_threshold_has_a_floor_and_starts_the_first_snapshot() {
    let d = tmp("threshold");
    let log = FsLog::open(&d.0).unwrap();
    let mut w = log.writer().unwrap();
    w.set_snapshot_threshold(0);
    let mut s = Sequencer::open(w).unwrap();
    let base = |log: &FsLog| log.shared.read().unwrap().base;
    // 2 KiB entries, 16 per batch: 32 KiB of records per batch.
    let entry = |i: u64| {
        let mut e = format!("entry {i} ").into_bytes();
        e.resize(2048, b'.');
        e
    };
    let mut next = 0u64;
    while base(&log) == 0 {
        assert!(next < 2048, "no snapshot began within 4 MiB of records");
        let batch: Vec<Vec<u8>> = (next..next + 16).map(entry).collect();
        s.append(&batch).unwrap();
        next += 16;
    }
    // The first generation held at least the floor's worth of records.
    assert!(
        base(&log) * 2048 >= MIN_WAL_LIMIT,
        "snapshot began after {} entries",
        base(&log)
    );
    drop(s);
    let log = FsLog::open(&d.0).unwrap();
    assert_eq!(log.head().unwrap().0, next);
    let want: Vec<Vec<u8>> = (0..next).map(entry).collect();
    assert_eq!(entries_from(&log, 0, next).unwrap(), want);
}
