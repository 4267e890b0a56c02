//! Files of the log directory other than the WAL: the `state` snapshot
//! (encoded with a checksum) and the write-once tiles and bundles (temp
//! file + rename, optionally fsynced).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use ring::digest;

use crate::merkle::Hash;
use crate::sequencer::{StorageError, TreeState};
use crate::tiles::{self};

pub(super) const STATE_MAGIC: &[u8] = b"credlog-state v1\n";

pub(super) fn encode_state(state: &TreeState) -> Result<Vec<u8>, StorageError> {
    let mut out = STATE_MAGIC.to_vec();
    out.extend_from_slice(&state.size().to_le_bytes());
    let levels: Vec<&[Hash]> = (0..=tiles::MAX_TILE_LEVEL)
        .map(|l| state.edge_tile(l))
        .collect();
    out.push(levels.len() as u8);
    for hs in levels {
        out.extend_from_slice(&(hs.len() as u16).to_le_bytes());
        out.extend_from_slice(&tiles::encode_tile(hs));
    }
    let bundle = state.partial_bundle();
    out.extend_from_slice(&(bundle.len() as u32).to_le_bytes());
    out.extend_from_slice(bundle);
    out.extend_from_slice(&state.root());
    let sum = digest::digest(&digest::SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    Ok(out)
}

pub(super) fn read_state(dir: &Path) -> Result<TreeState, StorageError> {
    let mut f = match File::open(dir.join("state")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TreeState::new()),
        Err(e) => return Err(e.into()),
    };
    let mut d = Vec::new();
    f.read_to_end(&mut d)?;
    decode_state(&d).ok_or_else(|| StorageError::Corrupt("state file does not parse".into()))?
}

pub(super) fn decode_state(d: &[u8]) -> Option<Result<TreeState, StorageError>> {
    let (body, sum) = d.split_at(d.len().checked_sub(32)?);
    if digest::digest(&digest::SHA256, body).as_ref() != sum {
        return None;
    }
    let mut r = body.strip_prefix(STATE_MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let size = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let levels = take(1)?[0];
    let mut edge = Vec::new();
    for _ in 0..levels {
        let n = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        edge.push(tiles::decode_tile(take(n * 32)?).ok()?);
    }
    let blen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let bundle = tiles::decode_bundle(take(blen)?)
        .ok()?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let root: Hash = take(32)?.try_into().ok()?;
    Some(TreeState::from_edge(size, edge, bundle).and_then(|s| {
        if s.root() == root {
            Ok(s)
        } else {
            Err(StorageError::Corrupt("state root does not match".into()))
        }
    }))
}

/// A temp file name beside `path`, unique across threads and processes.
pub(super) fn temp_name(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// Remove `path` if it exists.
pub(super) fn remove_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Write `dir/rel` via a temp file and rename (no fsync: the WAL covers it).
pub(super) fn write_file(
    dir: &Path,
    rel: &str,
    bytes: &[u8],
    dirs: &mut std::collections::HashSet<PathBuf>,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(rel);
    let parent = path
        .parent()
        .ok_or_else(|| StorageError::Backend("path without parent".into()))?
        .to_owned();
    if !dirs.contains(&parent) {
        fs::create_dir_all(&parent)?;
        dirs.insert(parent);
    }
    let tmp = temp_name(&path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Replace `dir/name` atomically; with `sync`, durably.
pub(super) fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    sync: bool,
) -> Result<(), StorageError> {
    let tmp = temp_name(&dir.join(name));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
