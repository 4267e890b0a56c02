//! Handlers for the credit-information lifecycle: objections (异议), credit
//! repair (信用修复), red/black/focus lists, 应查必查 checks with feedback,
//! record history, and the lifecycle parts of queries and submissions
//! (disclosure terms, views with a summary).
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /v1/objections` | portal |
//! | `POST /v1/objections/{id}/resolution` | department (the record's provider) |
//! | `GET /v1/objections/overdue` | department (own records), auditor (all) |
//! | `POST /v1/repairs` | portal |
//! | `POST /v1/repairs/{id}/decision` | department (the record's provider) |
//! | `POST /v1/lists/{red,black,focus}` | department |
//! | `POST /v1/lists/entries/{id}/exit` | department (the issuer) |
//! | `POST /v1/checks` | department |
//! | `POST /v1/checks/{id}/feedback` | department (that ran the check) |
//! | `GET /v1/records/{id}/history` | department (the provider), auditor |
//!
//! Every decision (state, sharing, measures, periods) comes from the pure
//! policy; the store persists; these handlers validate input, ask, and fill
//! the audit draft. Like every request, each call is one audit entry.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | routing, the [`Clock`] |
//! | `input.rs` | body, id, text and date parsing shared by the handlers |
//! | `disclosure.rs` | the lifecycle parts of queries: views, summaries, withheld records |
//! | `objections.rs`, `repairs.rs`, `lists.rs`, `checks.rs`, `history.rs` | one file per endpoint family |

mod checks;
mod disclosure;
mod history;
mod input;
mod lists;
mod objections;
mod repairs;

use std::sync::{Arc, PoisonError};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use time::Date;

use self::input::path_id;
use super::{ApiError, App, AuditDraft, Caller, Reply};
use crate::policy::Role;
use crate::policy::lifecycle::ListKind;

pub(in crate::http) use disclosure::{add_summary, audit_withheld, expand_view};

/// Source of "today" for lifecycle decisions. The policy never reads a
/// clock; the gateway passes this date in, and tests replace it.
pub type Clock = Arc<dyn Fn() -> Date + Send + Sync>;

/// The system clock's calendar date in China Standard Time (UTC+8, no DST):
/// decision dates and disclosure periods are Chinese calendar days.
pub(super) fn system_clock() -> Clock {
    Arc::new(|| {
        time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date()
    })
}

impl App {
    /// Today's date for lifecycle decisions.
    pub fn today(&self) -> Date {
        let clock = self
            .clock
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        clock()
    }

    /// Replace the clock (tests pin dates at period boundaries with it).
    pub fn set_clock(&self, clock: Clock) {
        *self.clock.write().unwrap_or_else(PoisonError::into_inner) = clock;
    }
}

/// Longest free-text field (grounds, basis, reasons, notes), in characters.
pub(super) const MAX_TEXT: usize = 500;
/// Most measures named in one feedback.
pub(super) const MAX_FEEDBACK_ITEMS: usize = 64;

/// Whether `path` belongs to this module.
pub(super) fn handles(path: &str) -> bool {
    ["/v1/objections", "/v1/repairs", "/v1/lists", "/v1/checks"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || path.starts_with("/v1/records/")
}

/// Route a lifecycle request. Sets the audit action first, then checks the
/// role, then parses path ids and the body.
pub(super) async fn route(
    app: &App,
    caller: &Caller,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let post = method == Method::POST;
    let get = method == Method::GET;
    match segs.as_slice() {
        ["objections"] if post => {
            draft.action = "objection_file";
            let org = caller.require(&[Role::Portal])?;
            let body = app.body(req).await?;
            objections::file_objection(app, org, &body, draft).await
        }
        ["objections", "overdue"] if get => {
            draft.action = "objection_overdue";
            let org = caller.require(&[Role::Department, Role::Auditor])?;
            objections::overdue(app, org).await
        }
        ["objections", id, "resolution"] if post => {
            draft.action = "objection_resolve";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            objections::resolve_objection(app, org, id, &body, draft).await
        }
        ["repairs"] if post => {
            draft.action = "repair_apply";
            let org = caller.require(&[Role::Portal])?;
            let body = app.body(req).await?;
            repairs::apply_repair(app, org, &body, draft).await
        }
        ["repairs", id, "decision"] if post => {
            draft.action = "repair_decide";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            repairs::decide_repair(app, org, id, &body, draft).await
        }
        ["lists", name] if post && ListKind::parse(name).is_some() => {
            draft.action = "list_add";
            let org = caller.require(&[Role::Department])?;
            let list = ListKind::parse(name)
                .ok_or_else(|| ApiError::not_found("not_found", "no such list"))?;
            let body = app.body(req).await?;
            lists::add_list_entry(app, org, list, &body, draft).await
        }
        ["lists", "entries", id, "exit"] if post => {
            draft.action = "list_exit";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            lists::exit_list_entry(app, org, id, &body, draft).await
        }
        ["checks"] if post => {
            draft.action = "check";
            let org = caller.require(&[Role::Department])?;
            let body = app.body(req).await?;
            checks::run_check(app, org, &body, draft).await
        }
        ["checks", id, "feedback"] if post => {
            draft.action = "check_feedback";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            checks::check_feedback(app, org, id, &body, draft).await
        }
        ["records", id, "history"] if get => {
            draft.action = "record_history";
            let org = caller.require(&[Role::Department, Role::Auditor])?;
            let id = path_id(id)?;
            history::history(app, org, id, draft).await
        }
        ["objections"]
        | ["objections", "overdue"]
        | ["objections", _, "resolution"]
        | ["repairs"]
        | ["repairs", _, "decision"]
        | ["lists", "red" | "black" | "focus"]
        | ["lists", "entries", _, "exit"]
        | ["checks"]
        | ["checks", _, "feedback"]
        | ["records", _, "history"] => {
            draft.action = "method_not_allowed";
            caller.require(&Role::ALL)?;
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            ))
        }
        _ => {
            caller.require(&Role::ALL)?;
            Err(ApiError::not_found("not_found", "no such endpoint"))
        }
    }
}
