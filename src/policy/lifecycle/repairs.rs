//! Credit repair (信用修复): when an application may be made.

use time::Date;

use super::dates::add_months;
use super::disclosure::Terms;
use super::state::RecordFacts;
use crate::policy::Policy;

/// Why a repair application cannot be accepted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairRefusal {
    /// Not negative information: there is nothing to repair.
    NotNegative,
    /// The minimum disclosure period has not passed; applications open on
    /// this date.
    TooEarly(Date),
    /// Already past its disclosure period: it is no longer shared anyway.
    Expired,
}

impl Policy {
    /// Whether a repair of the record may be applied for on `today`: it must
    /// be negative, still disclosed, and past the tier's minimum disclosure.
    pub fn repair_eligibility(
        &self,
        facts: &RecordFacts<'_>,
        today: Date,
    ) -> Result<Terms, RepairRefusal> {
        let terms = self.terms(facts).ok_or(RepairRefusal::NotNegative)?;
        if today >= terms.disclosed_until {
            return Err(RepairRefusal::Expired);
        }
        let opens = add_months(
            terms.decision_date,
            self.tier_rule(terms.tier).repair_after_months,
        );
        if today < opens {
            return Err(RepairRefusal::TooEarly(opens));
        }
        Ok(terms)
    }
}
