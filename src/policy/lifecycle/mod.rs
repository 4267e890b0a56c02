//! Lifecycle decisions for credit information: disclosure periods (公示期),
//! credit repair (信用修复), objections (异议) and red/black/focus list status.
//!
//! Everything here is pure, like the rest of `policy`: "today" is an
//! argument, never read from a clock, so every period boundary can be tested
//! exactly and the decision stays sub-microsecond.
//!
//! # Disclosure periods (docs/compliance.md rule 8, 国办发〔2025〕22号)
//!
//! A negative record carries a severity [`Tier`] and a decision date. The
//! catalog gives each tier a disclosure period in whole months, within the
//! legal bounds of [`Tier::legal_bounds`]. The record is shared while
//! `today < decision_date + period` (calendar months, the day clamped to the
//! end of a shorter month) and expires *on* that date. A period of 0 months
//! (allowed for minor information) means "not shown at all".
//!
//! # Record states
//!
//! [`Policy::record_state`](crate::policy::Policy::record_state) folds what the store knows about a record
//! (withdrawn, superseded by a corrected version, repaired, disputed) and the
//! disclosure period into one [`RecordState`]; [`Policy::sharing`](crate::policy::Policy::sharing) then
//! decides, per caller, whether it is shared and with which status. Precedence:
//! withdrawn > superseded > expired > repaired > disputed > active.
//!
//! | file | what |
//! |---|---|
//! | `dates.rs` | calendar arithmetic and the strict `YYYY-MM-DD` format |
//! | `disclosure.rs` | tiers, disclosure periods, terms of a record, submitted terms |
//! | `state.rs` | record states, precedence and per-role sharing |
//! | `steps.rs` | refusals of lifecycle steps; report scopes |
//! | `objections.rs` | who may file and answer objections; the answer deadline |
//! | `repairs.rs` | repair eligibility; who may apply and decide |
//! | `lists.rs` | red/black/focus lists: adding (black excludes red), exiting; list-derived items |
//! | `views.rs` | views and their summaries |
//!
//! The catalog tables are compiled by `policy::load::lifecycle`; nothing
//! here reads files.

mod dates;
mod disclosure;
mod lists;
mod objections;
mod repairs;
mod state;
mod steps;
mod views;

#[cfg(test)]
mod steps_tests;
#[cfg(test)]
mod tests;

pub use dates::{add_months, date_format, format_date, parse_date};
pub use disclosure::{ItemRules, RecordTerms, Terms, TermsError, Tier, TierRule};
pub use lists::{ListAddition, ListEntryFacts, ListExit, ListKind};
pub use objections::{OBJECTION_ANSWER_DAYS, ObjectionAnswer, ObjectionFiling};
pub use repairs::{RepairApplication, RepairDecision, RepairRefusal};
pub use state::{RecordFacts, RecordState, RecordStatus, Sharing, StoredState};
pub use steps::{Case, CaseRead, CaseSubject, LifecycleRefusal, Noun, OverdueScope, SubjectView};
pub use views::{SummaryDef, SummaryRule, ViewDef, ViewRefusal};

/// Compiled lifecycle rules (part of [`Policy`](crate::policy::Policy)).
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub(in crate::policy) tiers: Vec<TierRule>,
    /// By item index; `Some` exactly for negative items.
    pub(in crate::policy) items: Vec<Option<ItemRules>>,
    /// Items derived from the list tables: item index and field → list.
    pub(in crate::policy) list_items: Vec<(usize, Vec<(String, ListKind)>)>,
    pub(in crate::policy) views: Vec<ViewDef>,
}
