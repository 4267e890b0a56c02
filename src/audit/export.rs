//! Audit log exports, gateway side: reading the slice and its proofs from
//! the store. The format itself (header, lines, CSV, range proofs) is
//! [`credlog::export`], re-exported here.

use std::collections::HashMap;
use std::io::Write;

pub use credlog::export::*;

use super::merkle::{self, ProofError};
use crate::store::{Store, StoreError};

/// Entries read from the store per query while exporting.
const CHUNK: u64 = 5_000;

/// Why an export could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the store failed (or it lacks tree nodes it must have).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("write: {0}")]
    Io(#[from] std::io::Error),
}

/// What to export: a stored checkpoint and a sequence range inside it.
#[derive(Clone, Debug)]
pub struct ExportPlan {
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Its signed note.
    pub checkpoint: String,
    /// First sequence number.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Also prove consistency from this earlier size.
    pub consistency_from: Option<u64>,
}

/// Build the header of `plan`: the range proof (and consistency proof) are
/// read from stored tree nodes with a single query.
pub async fn build_header(store: &Store, plan: &ExportPlan) -> Result<ExportHeader, StoreError> {
    let corrupt = |e: ProofError| StoreError::Corrupt(e.to_string());
    let ranges = range_proof_ranges(plan.start, plan.end, plan.tree_size).map_err(corrupt)?;
    let cons = match plan.consistency_from {
        Some(m) => merkle::consistency_ranges(m, plan.tree_size).map_err(corrupt)?,
        None => Vec::new(),
    };
    let all: Vec<(u64, u64)> = ranges.iter().chain(&cons).copied().collect();
    let nodes: HashMap<_, _> = store
        .audit_nodes(&merkle::nodes_for(&all))
        .await?
        .into_iter()
        .collect();
    let hashes = merkle::assemble(&all, |id| nodes.get(&id).copied()).map_err(corrupt)?;
    let (range_proof, cons_proof) = hashes.split_at(ranges.len());
    Ok(ExportHeader {
        format: EXPORT_FORMAT.to_owned(),
        version: EXPORT_VERSION,
        checkpoint: plan.checkpoint.clone(),
        tree_size: plan.tree_size,
        start: plan.start,
        end: plan.end,
        range_proof: range_proof.iter().copied().map(B64Hash).collect(),
        consistency: plan.consistency_from.map(|old_size| ExportConsistency {
            old_size,
            proof: cons_proof.iter().copied().map(B64Hash).collect(),
        }),
    })
}

/// Write the export of `plan` to `out`, reading entries in chunks so a
/// whole-log export runs in bounded memory.
pub async fn write_export<W: Write>(
    store: &Store,
    plan: &ExportPlan,
    format: ExportFormat,
    out: W,
) -> Result<W, ExportError> {
    let header = build_header(store, plan).await?;
    let mut w = ExportWriter::new(out, format, &header)?;
    let mut from = plan.start;
    while from < plan.end {
        let to = plan.end.min(from.saturating_add(CHUNK));
        for row in store.audit_leaves(from, to).await? {
            w.entry(row.seq, &row.entry, &row.leaf)?;
        }
        from = to;
    }
    Ok(w.finish()?)
}

/// `credgate audit export`: the whole log up to the latest stored
/// checkpoint, read from the store directly (operators; no API involved).
/// Entries appended after that checkpoint are not included.
pub async fn export_to_file(
    store: &Store,
    path: &std::path::Path,
    format: ExportFormat,
) -> Result<ExportPlan, String> {
    let (size, note) = store
        .checkpoint(None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the log has no signed checkpoint yet; start the gateway to create one")?;
    let plan = ExportPlan {
        tree_size: size,
        checkpoint: note,
        start: 0,
        end: size,
        consistency_from: None,
    };
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    write_export(store, &plan, format, std::io::BufWriter::new(file))
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?
        .into_inner()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .sync_all()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(plan)
}
