//! Handlers for the credit-information lifecycle: objections (异议), credit
//! repair (信用修复), red/black/focus lists, 应查必查 checks with feedback,
//! record history, and the lifecycle parts of queries and submissions
//! (disclosure terms, views with a summary).
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /v1/objections` | portal |
//! | `POST /v1/objections/{id}/resolution` | department (the record's provider) |
//! | `POST /v1/objections/{id}/status` | portal (for the objection's subject) |
//! | `GET /v1/objections/overdue` | department (own records), auditor (all) |
//! | `POST /v1/repairs` | portal |
//! | `POST /v1/repairs/{id}/decision` | department (the record's provider) |
//! | `POST /v1/repairs/{id}/status` | portal (for the application's subject) |
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
//! | `mod.rs` | the [`Clock`] (routing is the endpoint table's: `crate::endpoint`) |
//! | `input.rs` | body, id, text and date parsing shared by the handlers |
//! | `disclosure.rs` | the lifecycle parts of queries: views, summaries, withheld records |
//! | `objections.rs`, `repairs.rs`, `lists.rs`, `checks.rs`, `history.rs` | one file per endpoint family |

pub(super) mod checks;
mod disclosure;
pub(super) mod history;
pub(super) mod input;
pub(super) mod lists;
pub(super) mod objections;
pub(super) mod repairs;

use std::sync::{Arc, PoisonError};

use time::Date;

use super::App;

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
