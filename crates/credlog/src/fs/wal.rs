//! The write-ahead file's records: the length prefix, reading record by
//! record up to the preallocated zeros, writing zeros, parsing a record
//! (the format is in the module docs of [`super`]).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::merkle::Hash;
use crate::sequencer::StorageError;
use crate::tiles::{self};

/// end of the file or in the preallocated zeros).
pub(super) fn record_len_at(f: &File, pos: u64, file_len: u64) -> Result<u32, StorageError> {
    let mut b = [0u8; 4];
    let n = file_len.saturating_sub(pos).min(4) as usize;
    f.read_exact_at(&mut b[..n], pos)?;
    if n < 4 {
        // Fewer than four bytes: a torn prefix if any is non-zero.
        return Ok(u32::from(b.iter().any(|&x| x != 0)));
    }
    Ok(u32::from_le_bytes(b))
}

/// The records from `start` on, as bytes, up to the first zero length
/// prefix or the end of the file (whatever a torn last record left is
/// included: [`parse_record`] then refuses it).
pub(super) fn read_records(f: &File, start: u64, file_len: u64) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    let mut pos = start;
    loop {
        let len = record_len_at(f, pos, file_len)?;
        if len == 0 {
            return Ok(out);
        }
        let end = (pos + 4 + u64::from(len)).min(file_len);
        let at = out.len();
        out.resize(at + (end - pos) as usize, 0);
        f.read_exact_at(&mut out[at..], pos)?;
        if end == file_len {
            return Ok(out);
        }
        pos = end;
    }
}

/// Write zeros to `[from, to)`.
pub(super) fn write_zeros(f: &File, from: u64, to: u64) -> Result<(), StorageError> {
    const CHUNK: usize = 256 * 1024;
    let zeros = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(CHUNK);
        f.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

pub(super) fn parse_record(d: &[u8]) -> Option<(usize, u64, Vec<&[u8]>, Hash)> {
    let len = u32::from_le_bytes(d.get(..4)?.try_into().ok()?) as usize;
    let body = d.get(4..4 + len)?;
    if body.len() < 12 + 32 {
        return None;
    }
    let first = u64::from_le_bytes(body[..8].try_into().ok()?);
    let count = u32::from_le_bytes(body[8..12].try_into().ok()?) as usize;
    let (entries_bytes, root) = body[12..].split_at(body.len() - 12 - 32);
    let entries = tiles::decode_bundle_unbounded(entries_bytes)?;
    if entries.len() != count {
        return None;
    }
    Some((4 + len, first, entries, root.try_into().ok()?))
}
