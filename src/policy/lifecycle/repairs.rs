//! Credit repair (信用修复): when an application may be made, and who may
//! decide it.

use time::Date;

use super::dates::add_months;
use super::disclosure::Terms;
use super::state::{RecordFacts, RecordState};
use super::steps::{Case, LifecycleRefusal, Noun};
use crate::policy::{Organisation, Policy};

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

/// Permission to apply for the repair of one record, from
/// [`Policy::repair_application`]: carries the record's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairApplication {
    terms: Terms,
}

impl RepairApplication {
    /// The record's disclosure terms.
    pub fn terms(&self) -> Terms {
        self.terms
    }
}

/// Permission for a provider to decide one pending application, from
/// [`Policy::repair_decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairDecision {
    _minted: (),
}

impl Policy {
    /// Whether a repair of the record `facts` describes may be applied for
    /// on `today`; `pending` is an application already pending on it. The
    /// record must not be repaired, withdrawn or superseded, must be
    /// eligible ([`Policy::repair_eligibility`]) and have no pending
    /// application.
    pub fn repair_application(
        &self,
        facts: &RecordFacts<'_>,
        pending: Option<i64>,
        today: Date,
    ) -> Result<RepairApplication, LifecycleRefusal> {
        if let s @ (RecordState::Repaired | RecordState::Withdrawn | RecordState::Superseded) =
            self.record_state(facts, today)
        {
            return Err(LifecycleRefusal::RecordState(s));
        }
        let terms = self
            .repair_eligibility(facts, today)
            .map_err(LifecycleRefusal::RepairIneligible)?;
        if let Some(id) = pending {
            return Err(LifecycleRefusal::RepairPending(id));
        }
        Ok(RepairApplication { terms })
    }

    /// Whether `org` may decide the application `case` describes, on a
    /// record in `state` today: only the record's provider, only while the
    /// application is pending and the record still current; to anyone else
    /// the application is [`LifecycleRefusal::NotVisible`]. An approval
    /// also needs the record still disclosed: once its disclosure period has
    /// passed it is shared with nobody and there is nothing left to repair
    /// ([`RepairRefusal::Expired`], as for an application); a rejection
    /// still closes the case.
    pub fn repair_decision(
        &self,
        org: &Organisation,
        case: &Case<'_>,
        state: RecordState,
        approve: bool,
    ) -> Result<RepairDecision, LifecycleRefusal> {
        if case.provider != org.code.as_str() {
            return Err(LifecycleRefusal::NotVisible(Noun::Repair));
        }
        if case.status != "pending" {
            return Err(LifecycleRefusal::RepairClosed(case.status.to_owned()));
        }
        match state {
            RecordState::Withdrawn | RecordState::Superseded => {
                Err(LifecycleRefusal::RecordState(state))
            }
            RecordState::Expired if approve => {
                Err(LifecycleRefusal::RepairIneligible(RepairRefusal::Expired))
            }
            _ => Ok(RepairDecision { _minted: () }),
        }
    }
}
