//! credgate: a privacy-preserving exchange gateway for public credit information.
//!
//! See `ARCHITECTURE.md` for the bird's-eye view. In one sentence: every
//! request arrives over mutual TLS ([`tls`], [`identity`]), is decided field
//! by field by the pure [`policy`] engine, is served from the [`store`] only
//! with the [`policy::Permit`] that decision produced, and is recorded in the
//! [`audit`] log before its response leaves.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod audit;
pub mod backup;
pub mod cli;
pub mod config;
pub mod config_example;
pub mod connection;
pub mod consent;
pub mod datadir;
pub mod devcerts;
pub mod endpoint;
pub mod http;
pub mod identity;
pub mod ids;
pub mod metrics;
pub mod policy;
pub mod reload;
pub mod server;
pub mod store;
pub mod tls;
