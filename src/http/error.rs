//! The one place errors become HTTP responses.
//!
//! Every refusal the gateway can give is an [`ApiError`]: a status, a stable
//! snake_case code, a human message and optional structured details. Layer
//! errors convert into it here, and nowhere else, so the mapping (and what
//! is *not* revealed: database messages, file paths, token contents) can be
//! reviewed in one screen.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::audit::AuditError;
use crate::audit::anomaly::QuotaExceeded;
use crate::ids::IdError;
use crate::store::StoreError;

/// A refusal with its wire representation.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (part of the public contract).
    pub code: &'static str,
    /// Human-readable message (no internal detail).
    pub message: String,
    /// Structured details, e.g. the record index and field.
    pub details: Option<Value>,
}

impl ApiError {
    /// Build an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Attach details.
    pub fn with(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: the caller has no usable identity.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "no_identity", message)
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with `code`: the request is valid but conflicts with the state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500 without detail; the cause goes to the log, not the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the request has been logged",
        )
    }

    /// The JSON body `{"error": {code, message, details}}`.
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        json!({ "error": e })
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        let code = if matches!(e, IdError::SubjectType) {
            "unknown_subject_type"
        } else {
            "invalid_identifier"
        };
        ApiError::bad_request(code, format!("invalid subject identifier: {e}"))
            .with(json!({"check": e.check()}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the data store is unavailable; try again later",
        )
    }
}

impl From<AuditError> for ApiError {
    fn from(_: AuditError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log cannot be written, so no data is served (fail closed)",
        )
    }
}

impl From<QuotaExceeded> for ApiError {
    fn from(e: QuotaExceeded) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "this organisation has queried its quota of {} distinct subjects in the last hour; \
                 subjects already queried in that hour remain available",
                e.limit
            ),
        )
        .with(json!({"limit": e.limit, "window_secs": 3600}))
    }
}

impl From<super::strict_json::StrictJsonError> for ApiError {
    fn from(e: super::strict_json::StrictJsonError) -> Self {
        use super::strict_json::StrictJsonError as E;
        match &e {
            E::DuplicateKey { key } => {
                ApiError::bad_request("duplicate_key", e.to_string()).with(json!({ "key": key }))
            }
            E::TooDeep => ApiError::bad_request("too_deep", e.to_string()),
            E::Syntax { .. } => ApiError::bad_request("malformed_json", e.to_string()),
        }
    }
}

/// Map a JSON body deserialisation error to a 400 without echoing input.
pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            "malformed_json",
            format!(
                "request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        ),
        Category::Data => ApiError::bad_request(
            "invalid_request",
            format!("request does not match the schema: {e}"),
        ),
    }
}
