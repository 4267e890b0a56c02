//! # credlog
//!
//! credgate's audit log as a library an auditor can build and read on its
//! own: it depends on no database, HTTP stack or async runtime.
//!
//! * [`entry`] — the audit entry and its frozen canonical form (the leaf data);
//! * [`merkle`] — RFC 6962 / RFC 9162 tree math, proofs and their verification;
//! * [`checkpoint`] — C2SP signed notes carrying `c2sp.org/tlog-checkpoint`s;
//! * [`tiles`] — the C2SP `tlog-tiles` layout: paths, hash tiles, entry bundles;
//! * [`sequencer`] — integrating batches into tiles in memory, and the
//!   [`LogStorage`] / [`TileReader`] traits backends implement;
//! * [`fs`] — the embedded backend: files in a directory, one fsync per batch;
//! * [`export`] — the JSON Lines / CSV export format with range proofs;
//! * [`proof`] — inclusion proofs as `c2sp.org/tlog-proof@v1` files;
//! * [`verify`] — the offline verifier behind `credgate audit verify`.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(clippy::manual_let_else, clippy::use_self)]

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod fs;
pub mod merkle;
pub mod proof;
pub mod sequencer;
pub mod tiles;
pub mod verify;

pub use sequencer::{LogStorage, Sequencer, StorageError, TileReader, TreeState};
