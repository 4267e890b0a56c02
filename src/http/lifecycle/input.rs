//! Input parsing shared by the lifecycle handlers: bodies, ids, free text,
//! dates, subjects.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::Date;

use super::MAX_TEXT;
use crate::http::dto::SubjectDto;
use crate::http::error::{json_error_at, value_error_at};
use crate::http::{ApiError, App, AuditDraft};
use crate::ids::SubjectId;
use crate::policy::lifecycle::parse_date;

/// Parse a JSON body: malformed → 400, a prohibited key anywhere → 422
/// (logged as its category), schema mismatch → 400.
pub(super) fn parse_body<T: DeserializeOwned>(
    app: &App,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<T, ApiError> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| json_error_at(&e, body))?;
    if let Some((path, cat)) = app.policy.prohibited().scan_json(&raw, &mut String::new()) {
        draft.field(
            format!("prohibited:{}", cat.id),
            "refused",
            "prohibited",
            None,
        );
        let path: String = path.chars().take(64).collect();
        return Err(ApiError::unprocessable(
            "prohibited_field",
            format!(
                "'{path}' falls in the prohibited category {} ({}); nothing was stored",
                cat.label_en, cat.label_zh
            ),
        )
        .with(json!({"field": path, "category": cat.id})));
    }
    serde_json::from_value(raw).map_err(|e| value_error_at::<T>(&e, body))
}

/// A numeric id from the path: 1–18 ASCII digits, positive.
pub(in crate::http) fn path_id(s: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_id",
            "the id in the path must be a positive integer",
        )
    };
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad)
}

/// A positive id from a body field.
pub(super) fn body_id(what: &'static str, n: i64) -> Result<i64, ApiError> {
    if n > 0 {
        Ok(n)
    } else {
        Err(
            ApiError::bad_request("invalid_id", format!("{what} must be a positive integer"))
                .with(json!({"field": what})),
        )
    }
}

/// Free text: at most [`MAX_TEXT`] characters as sent (padding counts),
/// not blank, no control characters other than newline and tab; returned
/// trimmed.
pub(super) fn text<'a>(what: &'static str, s: &'a str) -> Result<&'a str, ApiError> {
    let t = s.trim();
    let ok = !t.is_empty()
        && s.chars().count() <= MAX_TEXT
        && !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if ok {
        Ok(t)
    } else {
        Err(ApiError::bad_request(
            "invalid_text",
            format!("{what} must be 1 to {MAX_TEXT} characters of text"),
        )
        .with(json!({"field": what})))
    }
}

pub(super) fn opt_text<'a>(
    what: &'static str,
    s: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    s.map(|s| text(what, s)).transpose()
}

/// A `YYYY-MM-DD` date from a body field.
pub(super) fn date(what: &'static str, s: &str) -> Result<Date, ApiError> {
    parse_date(s).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_date",
            format!("{what} must be a real YYYY-MM-DD date, year 0001 or later"),
        )
        .with(json!({"field": what}))
    })
}

pub(super) fn subject(
    app: &App,
    dto: &SubjectDto,
    draft: &mut AuditDraft,
) -> Result<SubjectId, ApiError> {
    let s = SubjectId::parse_at(&dto.kind, &dto.id, app.today())?;
    draft.subject = Some(s.clone());
    Ok(s)
}

/// A stored subject (validated when it was stored).
pub(super) fn stored_subject(kind: &str, id: &str) -> Option<SubjectId> {
    SubjectId::parse_stored(kind, id).ok()
}

pub(super) fn record_field(id: i64) -> String {
    format!("record:{id}")
}
