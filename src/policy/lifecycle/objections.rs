//! Objections (异议): who may file and answer them, and the provider's
//! answer deadline.

use time::Date;

use super::state::{RecordFacts, RecordState};
use super::steps::{Case, LifecycleRefusal, Noun};
use crate::policy::{Organisation, Policy};

/// Days a providing department has to answer an objection
/// (征信业管理条例 第二十五条: 自收到异议之日起20日内).
pub const OBJECTION_ANSWER_DAYS: i64 = 20;

impl Policy {
    /// Last day for the provider to answer an objection filed on `filed_on`.
    pub fn objection_due(filed_on: Date) -> Date {
        filed_on
            .checked_add(time::Duration::days(OBJECTION_ANSWER_DAYS))
            .unwrap_or(Date::MAX)
    }
}

/// Permission to file an objection on one record, from
/// [`Policy::objection_filing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectionFiling {
    filed_on: Date,
    due_on: Date,
}

impl ObjectionFiling {
    /// Filing date.
    pub fn filed_on(&self) -> Date {
        self.filed_on
    }

    /// Last day for the provider to answer.
    pub fn due_on(&self) -> Date {
        self.due_on
    }
}

/// Permission for a provider to answer one open objection, from
/// [`Policy::objection_answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectionAnswer {
    _minted: (),
}

impl Policy {
    /// Whether an objection may be filed on `today` on the record `facts`
    /// describes; `open` is the objection already open on it, if any. Only
    /// a record that is shared (active or repaired) and not already
    /// disputed can be objected to.
    pub fn objection_filing(
        &self,
        facts: &RecordFacts<'_>,
        open: Option<i64>,
        today: Date,
    ) -> Result<ObjectionFiling, LifecycleRefusal> {
        match self.record_state(facts, today) {
            RecordState::Disputed => {
                return Err(LifecycleRefusal::ObjectionOpen(open.unwrap_or_default()));
            }
            s @ (RecordState::Expired | RecordState::Withdrawn | RecordState::Superseded) => {
                return Err(LifecycleRefusal::RecordState(s));
            }
            RecordState::Active | RecordState::Repaired => {}
        }
        if let Some(id) = open {
            return Err(LifecycleRefusal::ObjectionOpen(id));
        }
        Ok(ObjectionFiling {
            filed_on: today,
            due_on: Policy::objection_due(today),
        })
    }

    /// Whether `org` may answer the objection `case` describes: only the
    /// record's provider, only while the objection is open. To anyone else
    /// the objection is [`LifecycleRefusal::NotVisible`], answered like one
    /// that does not exist.
    pub fn objection_answer(
        &self,
        org: &Organisation,
        case: &Case<'_>,
    ) -> Result<ObjectionAnswer, LifecycleRefusal> {
        if case.provider != org.code.as_str() {
            return Err(LifecycleRefusal::NotVisible(Noun::Objection));
        }
        if case.status != "open" {
            return Err(LifecycleRefusal::ObjectionClosed(case.status.to_owned()));
        }
        Ok(ObjectionAnswer { _minted: () })
    }
}
