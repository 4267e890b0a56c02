//! The audit log served read-only as C2SP tlog-tiles, to the auditor role.
//!
//! | path | body |
//! |---|---|
//! | `GET /v1/audit/log/checkpoint` | the latest signed checkpoint (`text/plain`) |
//! | `GET /v1/audit/log/tile/<L>/<N>[.p/<W>]` | a hash tile ([`credlog::tiles`]) |
//! | `GET /v1/audit/log/tile/entries/<N>[.p/<W>]` | an entry bundle |
//!
//! A standard tlog client pointed at `https://<gateway>/v1/audit/log/`
//! (with an auditor's client certificate) mirrors and verifies the log with
//! plain GETs. Full tiles and bundles never change and are sent with
//! `Cache-Control: public, max-age=31536000, immutable`; partial ones (and
//! the checkpoint) with `no-cache`. A partial resource is served at any
//! width up to what is durable (it is a prefix of the stored one). Like
//! every request, each GET is itself audited.

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderMap, HeaderValue};
use serde_json::Value;

use super::error::ApiError;
use super::{App, Reply};
use credlog::tiles::{self, Resource};

/// Path prefix of the tiles.
pub(super) const PREFIX: &str = "/v1/audit/log/";

/// Content type of full tiles and bundles (cached forever).
const FULL: &str = "application/octet-stream";
/// Content type of partial tiles and bundles (the `tlog` parameter only
/// tells [`cache_control`] apart; clients may ignore it).
const PARTIAL: &str = "application/octet-stream; tlog=partial";
/// Content type of the checkpoint.
const CHECKPOINT: &str = "text/plain; charset=utf-8";

/// Add `Cache-Control` to a raw response of this module, by its content type.
pub(super) fn cache_control(ctype: &str, headers: &mut HeaderMap) {
    let value = match ctype {
        FULL => "public, max-age=31536000, immutable",
        PARTIAL | CHECKPOINT => "no-cache",
        _ => return,
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
}

fn missing(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

fn raw(ctype: &'static str, bytes: Vec<u8>) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: Value::Null,
        raw: Some((ctype, Bytes::from(bytes))),
    }
}

/// Serve `path` (starting with [`PREFIX`]); the caller has checked the
/// role, the method and that there is no query string.
pub(super) async fn serve(app: &App, path: &str) -> Result<Reply, ApiError> {
    let rel = path.strip_prefix(PREFIX).unwrap_or_default();
    let res = Resource::parse(rel).map_err(|_| missing("log resource"))?;
    let ctype = if res.is_immutable() { FULL } else { PARTIAL };
    match res {
        Resource::Checkpoint => match app.store.checkpoint(None).await? {
            Some((_, note)) => Ok(raw(CHECKPOINT, note.into_bytes())),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_checkpoint",
                "the log has no signed checkpoint yet",
            )),
        },
        Resource::Tile { id, width } => {
            let want = usize::from(width) * 32;
            match app.store.read_tile(id).await? {
                Some(mut b) if b.len() >= want => {
                    b.truncate(want);
                    Ok(raw(ctype, b))
                }
                _ => Err(missing("tile")),
            }
        }
        Resource::Bundle { index, width } => {
            let Some(b) = app.store.read_bundle(index).await? else {
                return Err(missing("entry bundle"));
            };
            let entries = tiles::decode_bundle(&b)
                .map_err(|e| ApiError::from(crate::store::StoreError::Corrupt(e.to_string())))?;
            let w = usize::from(width);
            if entries.len() < w {
                return Err(missing("entry bundle"));
            }
            let bytes = tiles::encode_bundle(&entries[..w])
                .map_err(|e| ApiError::from(crate::store::StoreError::Corrupt(e.to_string())))?;
            Ok(raw(ctype, bytes))
        }
    }
}
