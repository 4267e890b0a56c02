//! Severity tiers and disclosure periods (公示期): when a negative record
//! stops being shared, and the tier and decision date a submission carries.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use super::dates::{add_months, date_format, parse_date};
use super::state::RecordFacts;
use crate::policy::{Policy, Role};

/// Severity tier of negative information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 轻微失信信息.
    Minor,
    /// 一般失信信息.
    General,
    /// 严重失信信息.
    Serious,
}

impl Tier {
    /// All tiers, mildest first.
    pub const ALL: [Tier; 3] = [Tier::Minor, Tier::General, Tier::Serious];

    /// Wire / policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Minor => "minor",
            Tier::General => "general",
            Tier::Serious => "serious",
        }
    }

    /// Parse the wire name (exact, lower case).
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Inclusive bounds, in months, that the law puts on the disclosure
    /// period: minor at most 3 (may be 0: not shown), general 3–12,
    /// serious 12–36. The catalog may choose within them, never outside.
    pub fn legal_bounds(self) -> (u32, u32) {
        match self {
            Tier::Minor => (0, 3),
            Tier::General => (3, 12),
            Tier::Serious => (12, 36),
        }
    }

    pub(in crate::policy) fn index(self) -> usize {
        self as usize
    }
}

/// The catalog's rule for one tier.
#[derive(Clone, Debug)]
pub struct TierRule {
    /// Which tier.
    pub tier: Tier,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Months from the decision date during which the record is shared.
    pub disclosure_months: u32,
    /// Months from the decision date before a repair may be applied for:
    /// the minimum disclosure the law demands before repair.
    pub repair_after_months: u32,
}

/// Lifecycle rules of one negative catalog item.
#[derive(Clone, Debug)]
pub struct ItemRules {
    /// Tier assumed for records stored without one (records that predate
    /// lifecycle tracking, or bulk-loaded sample data).
    pub default_tier: Tier,
    /// A date field of the item that holds the decision date; used for
    /// records stored without an explicit one, and checked for consistency
    /// on submission.
    pub decision_date_field: Option<String>,
    /// Roles that still see a record after an approved repair (flagged
    /// `repaired`); everyone else has it withheld with reason `repaired`.
    pub repaired_visible_to: Vec<Role>,
}

/// Tier and decision date as submitted with a negative record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTerms {
    /// Severity tier.
    pub tier: Tier,
    /// Date of the decision the record reports.
    pub decision_date: Date,
}

/// The effective disclosure terms of a negative record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Terms {
    /// Severity tier.
    pub tier: Tier,
    /// Decision date the period counts from.
    #[serde(with = "date_format")]
    pub decision_date: Date,
    /// First day on which the record is no longer shared.
    #[serde(with = "date_format")]
    pub disclosed_until: Date,
    /// False when tier or date were not recorded and the catalog defaults
    /// were applied (records predating lifecycle tracking).
    pub recorded: bool,
}

impl Policy {
    /// The catalog's rule for `tier`.
    pub fn tier_rule(&self, tier: Tier) -> &TierRule {
        &self.lifecycle.tiers[tier.index()]
    }

    /// Lifecycle rules of a negative item; `None` for any other item.
    pub fn item_rules(&self, item: &str) -> Option<&ItemRules> {
        let (i, _) = self.item(item)?;
        self.lifecycle.items.get(i)?.as_ref()
    }

    /// First day on which a record of `tier` decided on `decision_date` is
    /// no longer shared.
    pub fn disclosure_end(&self, tier: Tier, decision_date: Date) -> Date {
        add_months(decision_date, self.tier_rule(tier).disclosure_months)
    }

    /// Whether a record of `tier` decided on `decision_date` is still within
    /// its disclosure period on `today`.
    pub fn is_disclosed(&self, tier: Tier, decision_date: Date, today: Date) -> bool {
        today < self.disclosure_end(tier, decision_date)
    }

    /// Effective terms of a record: recorded tier and date, else the
    /// catalog's default tier and the item's decision-date field, else the
    /// date it was stored. `None` for items that are not negative.
    pub fn terms(&self, facts: &RecordFacts<'_>) -> Option<Terms> {
        let rules = self.item_rules(facts.item)?;
        let tier = facts.tier.unwrap_or(rules.default_tier);
        let decision_date = facts
            .decision_date
            .or_else(|| {
                let f = rules.decision_date_field.as_deref()?;
                parse_date(facts.data.get(f)?.as_str()?)
            })
            .unwrap_or(facts.recorded_on);
        Some(Terms {
            tier,
            decision_date,
            disclosed_until: self.disclosure_end(tier, decision_date),
            recorded: facts.tier.is_some() && facts.decision_date.is_some(),
        })
    }

    /// Validate a submission's tier and decision date against the catalog
    /// and `today`: required on negative items, refused elsewhere, the date
    /// real, not in the future, and equal to the item's decision-date field
    /// when the record carries it.
    pub fn check_terms(
        &self,
        item: &str,
        tier: Option<&str>,
        decision_date: Option<&str>,
        data: &Map<String, Value>,
        today: Date,
    ) -> Result<Option<RecordTerms>, TermsError> {
        let Some(rules) = self.item_rules(item) else {
            return if tier.is_some() || decision_date.is_some() {
                Err(TermsError::NotNegative)
            } else {
                Ok(None)
            };
        };
        let (Some(tier), Some(date)) = (tier, decision_date) else {
            return Err(TermsError::Missing);
        };
        let tier = Tier::parse(tier).ok_or(TermsError::UnknownTier)?;
        let date = parse_date(date).ok_or(TermsError::BadDate)?;
        if date > today {
            return Err(TermsError::FutureDate);
        }
        if let Some(f) = rules.decision_date_field.as_deref()
            && let Some(v) = data.get(f)
            && v.as_str().and_then(parse_date) != Some(date)
        {
            return Err(TermsError::Mismatch(f.to_owned()));
        }
        Ok(Some(RecordTerms {
            tier,
            decision_date: date,
        }))
    }
}

/// Why a submission's lifecycle terms are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermsError {
    /// Negative item without tier or decision date.
    Missing,
    /// Tier or decision date on an item that is not negative.
    NotNegative,
    /// Tier not one of minor, general, serious.
    UnknownTier,
    /// Decision date is not a real `YYYY-MM-DD` date.
    BadDate,
    /// Decision date after today.
    FutureDate,
    /// Decision date differs from the item's own date field (named).
    Mismatch(String),
}
