//! A record's state (active, disputed, repaired, expired, withdrawn,
//! superseded) and whether it is shared with a given caller.

use serde::Serialize;
use serde_json::{Map, Value};
use time::Date;

use super::disclosure::Tier;
use crate::policy::{Organisation, Policy, Reason};

/// What the store holds about a record's provider-side state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredState {
    /// Current.
    Active,
    /// Withdrawn by its provider after an objection.
    Withdrawn,
    /// Replaced by a corrected version after an objection.
    Superseded,
}

impl StoredState {
    /// Parse the stored text; unknown text is treated as withdrawn, so a
    /// corrupt row is never shared.
    pub fn from_db(s: &str) -> StoredState {
        match s {
            "active" => StoredState::Active,
            "superseded" => StoredState::Superseded,
            _ => StoredState::Withdrawn,
        }
    }
}

/// Everything the lifecycle decision needs to know about one record.
#[derive(Clone, Copy, Debug)]
pub struct RecordFacts<'a> {
    /// Catalog item id.
    pub item: &'a str,
    /// Stored fields (only read for the catalog's decision-date field).
    pub data: &'a Map<String, Value>,
    /// Recorded tier, if any.
    pub tier: Option<Tier>,
    /// Recorded decision date, if any.
    pub decision_date: Option<Date>,
    /// Date the gateway stored it (last-resort start of the period).
    pub recorded_on: Date,
    /// Provider-side state.
    pub stored: StoredState,
    /// An approved repair exists.
    pub repaired: bool,
    /// An objection is open.
    pub disputed: bool,
}

/// A record's state, independent of who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Shared normally.
    Active,
    /// An objection is open: shared, flagged, excluded from punishment.
    Disputed,
    /// Repaired: hidden from most, never triggers checks.
    Repaired,
    /// Past its disclosure period.
    Expired,
    /// Withdrawn by its provider.
    Withdrawn,
    /// Replaced by a corrected version.
    Superseded,
}

impl RecordState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Active => "active",
            RecordState::Disputed => "disputed",
            RecordState::Repaired => "repaired",
            RecordState::Expired => "expired",
            RecordState::Withdrawn => "withdrawn",
            RecordState::Superseded => "superseded",
        }
    }
}

/// Status shown next to a shared record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Nothing to flag.
    Normal,
    /// Under objection (异议处理中).
    Disputed,
    /// Repaired (信用已修复), shown only to roles the catalog names.
    Repaired,
}

/// Whether one record is shared with one caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Shared, with this status.
    Shared(RecordStatus),
    /// Not shared, for this reason.
    Withheld(Reason),
}

impl Policy {
    /// The record's state on `today`, independent of the caller.
    pub fn record_state(&self, facts: &RecordFacts<'_>, today: Date) -> RecordState {
        match facts.stored {
            StoredState::Withdrawn => return RecordState::Withdrawn,
            StoredState::Superseded => return RecordState::Superseded,
            StoredState::Active => {}
        }
        let terms = self.terms(facts);
        if let Some(t) = terms {
            if today >= t.disclosed_until {
                return RecordState::Expired;
            }
            if facts.repaired {
                return RecordState::Repaired;
            }
        }
        if facts.disputed {
            RecordState::Disputed
        } else {
            RecordState::Active
        }
    }

    /// Whether a record of `item` in `state` is shared with `org`, and how.
    /// Expired, withdrawn and superseded records are shared with nobody;
    /// a repaired one only with the roles the catalog names (never credit
    /// agencies: the loader refuses that).
    pub fn sharing(&self, org: &Organisation, item: &str, state: RecordState) -> Sharing {
        match state {
            RecordState::Active => Sharing::Shared(RecordStatus::Normal),
            RecordState::Disputed => Sharing::Shared(RecordStatus::Disputed),
            RecordState::Repaired => {
                let visible = self
                    .item_rules(item)
                    .is_some_and(|r| org.roles.iter().any(|x| r.repaired_visible_to.contains(x)));
                if visible {
                    Sharing::Shared(RecordStatus::Repaired)
                } else {
                    Sharing::Withheld(Reason::Repaired)
                }
            }
            RecordState::Expired => Sharing::Withheld(Reason::Expired),
            RecordState::Withdrawn => Sharing::Withheld(Reason::Withdrawn),
            RecordState::Superseded => Sharing::Withheld(Reason::Superseded),
        }
    }
}
