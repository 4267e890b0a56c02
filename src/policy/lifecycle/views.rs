//! Views: named bundles of catalog items with an at-a-glance summary.

use serde_json::{Map, Value};

use super::state::RecordStatus;
use crate::ids::SubjectType;
use crate::policy::Policy;

/// Why a view cannot be used for a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewRefusal {
    /// No such view (the known ones).
    #[error("view is not in the catalog")]
    Unknown {
        /// Ids of the catalog's views.
        known: Vec<String>,
    },
    /// The view describes another subject type.
    #[error("view '{view}' describes a {}", .describes.as_str())]
    SubjectMismatch {
        /// View id.
        view: String,
        /// What it describes.
        describes: SubjectType,
    },
    /// The view is for another purpose.
    #[error("view '{view}' is for purpose '{purpose}'")]
    PurposeMismatch {
        /// View id.
        view: String,
        /// Its purpose.
        purpose: String,
    },
}

/// A named bundle of catalog items (e.g. the 信易贷 financing profile), so a
/// caller can ask for a standard view instead of listing fields; the fields
/// still go through the ordinary per-field decision.
#[derive(Clone, Debug)]
pub struct ViewDef {
    /// View id used on the wire.
    pub id: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Subject type it applies to.
    pub subject: SubjectType,
    /// The one purpose it may be used for.
    pub purpose: String,
    /// Item ids, in display order.
    pub items: Vec<String>,
    /// Every field of those items, in catalog order.
    pub fields: Vec<String>,
    /// The at-a-glance summary computed from what was released.
    pub summary: Vec<SummaryDef>,
}

/// One key of a view's summary block.
#[derive(Clone, Debug)]
pub struct SummaryDef {
    /// Key in the `summary` object.
    pub key: String,
    /// How it is computed.
    pub rule: SummaryRule,
}

/// How a summary key is computed from the shared records. Every rule yields
/// `null` when nothing it looks at was released to the caller, so a summary
/// never reveals more than the records next to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SummaryRule {
    /// Number of shared, unrepaired records of the item.
    Count(String),
    /// Whether there is a shared, unrepaired record of the item.
    Any(String),
    /// Whether a shared, unrepaired record of the item has a released
    /// number above zero (or no released number at all).
    AnyPositive(String),
    /// The released boolean field (of a list-derived item).
    Flag(String),
    /// Number of shared records flagged `disputed`.
    Disputed,
}

impl ViewDef {
    /// Compute the summary block. `released` names the fields the caller's
    /// permit releases; `records` are the shared records as
    /// (item, status, released fields).
    pub fn summarise(
        &self,
        policy: &Policy,
        released: &[&str],
        records: &[(&str, RecordStatus, &Map<String, Value>)],
    ) -> Map<String, Value> {
        let touched = |item: &str| {
            released.iter().any(|f| {
                policy
                    .field(f)
                    .is_some_and(|(_, d)| policy.items[d.item].id.as_str() == item)
            })
        };
        let live = |item: &str| -> Vec<&Map<String, Value>> {
            records
                .iter()
                .filter(|(i, st, _)| *i == item && *st != RecordStatus::Repaired)
                .map(|(_, _, f)| *f)
                .collect()
        };
        let mut out = Map::new();
        for s in &self.summary {
            let v = match &s.rule {
                SummaryRule::Count(item) if touched(item) => Value::from(live(item).len()),
                SummaryRule::Any(item) if touched(item) => Value::Bool(!live(item).is_empty()),
                SummaryRule::AnyPositive(item) if touched(item) => {
                    Value::Bool(live(item).iter().any(|f| {
                        // Numbers, and exact decimals sent as strings.
                        let nums: Vec<f64> = f
                            .values()
                            .filter_map(|v| match v {
                                Value::String(s) if crate::policy::submission::is_decimal(s) => {
                                    s.parse().ok()
                                }
                                v => v.as_f64(),
                            })
                            .collect();
                        nums.is_empty() || nums.iter().any(|n| *n > 0.0)
                    }))
                }
                SummaryRule::Flag(field) if released.contains(&field.as_str()) => records
                    .iter()
                    .find_map(|(_, _, f)| f.get(field).cloned())
                    .unwrap_or(Value::Bool(false)),
                SummaryRule::Disputed if !released.is_empty() => Value::from(
                    records
                        .iter()
                        .filter(|(_, st, _)| *st == RecordStatus::Disputed)
                        .count(),
                ),
                _ => Value::Null,
            };
            out.insert(s.key.clone(), v);
        }
        out
    }
}

impl Policy {
    /// A view by id.
    pub fn view(&self, id: &str) -> Option<&ViewDef> {
        self.lifecycle.views.iter().find(|v| v.id == id)
    }

    /// The view `name` for a query about a subject of type `subject` for
    /// `purpose`: it must exist, describe that subject type and be meant
    /// for that purpose.
    pub fn view_for(
        &self,
        name: &str,
        subject: SubjectType,
        purpose: &str,
    ) -> Result<&ViewDef, ViewRefusal> {
        let Some(v) = self.view(name) else {
            return Err(ViewRefusal::Unknown {
                known: self.views().iter().map(|v| v.id.clone()).collect(),
            });
        };
        if v.subject != subject {
            return Err(ViewRefusal::SubjectMismatch {
                view: v.id.clone(),
                describes: v.subject,
            });
        }
        if v.purpose != purpose {
            return Err(ViewRefusal::PurposeMismatch {
                view: v.id.clone(),
                purpose: v.purpose.clone(),
            });
        }
        Ok(v)
    }

    /// All views.
    pub fn views(&self) -> &[ViewDef] {
        &self.lifecycle.views
    }
}
