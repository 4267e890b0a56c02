//! The joint reward-and-punishment measures list (联合奖惩措施清单) and the
//! 应查必查 check decision.
//!
//! `policies/measures.toml` declares the closed list of administrative
//! matters a department may check a subject for, and per list type × matter
//! the measures that apply (seed 003 五(一): 明确…实施对象、实施措施和实施依据).
//! [`Policy::decide_check`] turns a subject's current list entries into the
//! measures that apply, are suspended, or have lapsed. It is pure: the caller
//! passes the state of each entry's basis record.
//!
//! # Rules
//!
//! * A disputed basis record suspends punishment and supervision measures
//!   (seed 003 七(三): 信息核实期间暂不执行联合惩戒措施); incentives are not
//!   suspended by an objection. An entry without a recorded basis record is
//!   suspended when any of the subject's negative records is disputed.
//! * A basis record that is repaired, expired, withdrawn or superseded no
//!   longer triggers anything: the measure has lapsed (docs/compliance.md, rule 8).
//! * Several entries on one list yield each measure once: it applies if any
//!   entry makes it apply, else it is suspended if any suspends it.

use std::collections::HashMap;

use serde::Serialize;

use super::lifecycle::{LifecycleRefusal, ListKind, Noun, RecordFacts, RecordState, Terms};
use super::{Organisation, Policy, Reason};

/// What a measure does to the subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// 守信激励 (red list).
    Incentive,
    /// 失信惩戒 (black list).
    Punishment,
    /// 重点监管 (focus list, or supervision of black-listed subjects).
    Supervision,
}

/// An administrative matter a check is run for (e.g. 政府采购).
#[derive(Clone, Debug)]
pub struct Matter {
    /// Wire id.
    pub id: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
}

/// One entry of the measures list.
#[derive(Clone, Debug)]
pub struct Measure {
    /// Stable id; departments report feedback by it.
    pub id: String,
    /// Which list triggers it.
    pub list: ListKind,
    /// What it does.
    pub kind: MeasureKind,
    /// Indices of the matters it applies to.
    pub matters: Vec<usize>,
    /// Text in Chinese.
    pub text_zh: String,
    /// Text in English.
    pub text_en: String,
    /// Legal basis (实施依据).
    pub basis: String,
}

/// The compiled measures list (part of [`Policy`]).
#[derive(Clone, Debug, Default)]
pub struct Measures {
    pub(in crate::policy) matters: Vec<Matter>,
    pub(in crate::policy) matter_index: HashMap<String, usize>,
    pub(in crate::policy) measures: Vec<Measure>,
}

/// A current list entry of the subject, as the check sees it.
#[derive(Clone, Copy, Debug)]
pub struct ListFact {
    /// Entry id.
    pub entry_id: i64,
    /// Which list.
    pub list: ListKind,
    /// State of its basis record (latest version), if it names one.
    pub basis: Option<RecordState>,
}

/// Whether a measure is to be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureStatus {
    /// Its basis is repaired, expired, withdrawn or superseded.
    Lapsed,
    /// Suspended while an objection is open.
    Suspended,
    /// Apply it.
    Applies,
}

/// A measure in a check result.
#[derive(Clone, Debug)]
pub struct MeasureOutcome<'a> {
    /// The measure.
    pub measure: &'a Measure,
    /// Apply, suspended or lapsed.
    pub status: MeasureStatus,
    /// Why suspended or lapsed.
    pub reason: Option<Reason>,
    /// The list entries that trigger it.
    pub entries: Vec<i64>,
}

impl Policy {
    /// A matter by id.
    pub fn matter(&self, id: &str) -> Option<&Matter> {
        self.measures
            .matter_index
            .get(id)
            .map(|&i| &self.measures.matters[i])
    }

    /// All matters.
    pub fn matters(&self) -> &[Matter] {
        &self.measures.matters
    }

    /// All measures.
    pub fn measures(&self) -> &[Measure] {
        &self.measures.measures
    }

    /// The measures `lists` trigger for `matter` (see the module rules).
    /// `disputed_negative`: some negative record of the subject is disputed.
    /// An unknown matter yields nothing.
    pub fn decide_check(
        &self,
        matter: &str,
        lists: &[ListFact],
        disputed_negative: bool,
    ) -> Vec<MeasureOutcome<'_>> {
        let Some(&mi) = self.measures.matter_index.get(matter) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in &self.measures.measures {
            if !m.matters.contains(&mi) {
                continue;
            }
            let mut best: Option<(MeasureStatus, Option<Reason>)> = None;
            let mut entries = Vec::new();
            for e in lists.iter().filter(|e| e.list == m.list) {
                entries.push(e.entry_id);
                let s = entry_status(m.kind, e.basis, disputed_negative);
                if best.is_none_or(|b| s.0 > b.0) {
                    best = Some(s);
                }
            }
            if let Some((status, reason)) = best {
                out.push(MeasureOutcome {
                    measure: m,
                    status,
                    reason,
                    entries,
                });
            }
        }
        out
    }
}

/// What a check decided.
#[derive(Clone, Debug)]
pub struct CheckDecision<'a> {
    /// The measures, as [`Policy::decide_check`] gives them.
    pub outcomes: Vec<MeasureOutcome<'a>>,
    /// Some punishment measure is suspended by an open objection.
    pub punishment_suspended: bool,
}

/// A stored check, as the feedback decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct CheckFacts<'a> {
    /// Check id.
    pub id: i64,
    /// The department that ran it.
    pub org: &'a str,
    /// Its measures: id and status (`applies`, `suspended`, `lapsed`).
    pub measures: &'a [(&'a str, &'a str)],
    /// Feedback was already recorded.
    pub feedback_recorded: bool,
}

/// Permission to record one check's feedback, from
/// [`Policy::check_feedback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedbackPermit {
    check_id: i64,
}

impl FeedbackPermit {
    /// The check the feedback is for.
    pub fn check_id(&self) -> i64 {
        self.check_id
    }
}

impl MeasureStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureStatus::Applies => "applies",
            MeasureStatus::Suspended => "suspended",
            MeasureStatus::Lapsed => "lapsed",
        }
    }
}

impl Policy {
    /// The check for `matter`: [`Policy::decide_check`] with "some negative
    /// record is disputed" taken from `negative` (the states of the
    /// subject's negative records), and whether punishment is suspended.
    pub fn check_decision(
        &self,
        matter: &str,
        lists: &[ListFact],
        negative: &[RecordState],
    ) -> CheckDecision<'_> {
        let disputed = negative.contains(&RecordState::Disputed);
        let outcomes = self.decide_check(matter, lists, disputed);
        let punishment_suspended = outcomes.iter().any(|o| {
            o.measure.kind == MeasureKind::Punishment && o.status == MeasureStatus::Suspended
        });
        CheckDecision {
            outcomes,
            punishment_suspended,
        }
    }

    /// The terms of a record a check lists among the subject's negative
    /// records: negative and still on file (not withdrawn or superseded) in
    /// `state`; `None` for any other record.
    pub fn check_record_terms(&self, facts: &RecordFacts<'_>, state: RecordState) -> Option<Terms> {
        if matches!(state, RecordState::Withdrawn | RecordState::Superseded) {
            return None;
        }
        self.terms(facts)
    }

    /// Whether `org` may report feedback on `check` at all: only the
    /// department that ran it (to anyone else the check is
    /// [`LifecycleRefusal::NotVisible`], answered like a missing id), only
    /// once.
    pub fn feedback_allowed(
        &self,
        org: &Organisation,
        check: &CheckFacts<'_>,
    ) -> Result<(), LifecycleRefusal> {
        if check.org != org.code.as_str() {
            return Err(LifecycleRefusal::NotVisible(Noun::Check));
        }
        if check.feedback_recorded {
            return Err(LifecycleRefusal::FeedbackRecorded);
        }
        Ok(())
    }

    /// Whether feedback naming `applied` and `not_applied` measures may be
    /// recorded on `check` by `org` ([`Policy::feedback_allowed`]): every
    /// named measure is a measure of the check, named once; only measures
    /// that apply may be reported applied; every measure that applies is
    /// reported one way or the other.
    pub fn check_feedback(
        &self,
        org: &Organisation,
        check: &CheckFacts<'_>,
        applied: &[&str],
        not_applied: &[&str],
    ) -> Result<FeedbackPermit, LifecycleRefusal> {
        self.feedback_allowed(org, check)?;
        let status_of = |m: &str| check.measures.iter().find(|x| x.0 == m).map(|x| x.1);
        let mut named: Vec<&str> = Vec::new();
        for &m in applied.iter().chain(not_applied) {
            let shown: String = m.chars().take(64).collect();
            let Some(status) = status_of(m) else {
                return Err(LifecycleRefusal::UnknownMeasure(shown));
            };
            if named.contains(&m) {
                return Err(LifecycleRefusal::MeasureNamedTwice(shown));
            }
            if applied.contains(&m) && status != MeasureStatus::Applies.as_str() {
                return Err(LifecycleRefusal::MeasureNotApplicable {
                    measure: shown,
                    status: status.to_owned(),
                });
            }
            named.push(m);
        }
        let missing: Vec<String> = check
            .measures
            .iter()
            .filter(|x| x.1 == MeasureStatus::Applies.as_str() && !named.contains(&x.0))
            .map(|x| x.0.to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(LifecycleRefusal::FeedbackIncomplete(missing));
        }
        Ok(FeedbackPermit { check_id: check.id })
    }
}

fn entry_status(
    kind: MeasureKind,
    basis: Option<RecordState>,
    disputed_negative: bool,
) -> (MeasureStatus, Option<Reason>) {
    let suspendable = kind != MeasureKind::Incentive;
    // One rule for checks and list status (`Policy::basis_lapse`).
    if let Some(reason) = Policy::basis_lapse(basis) {
        return (MeasureStatus::Lapsed, Some(reason));
    }
    match basis {
        Some(RecordState::Disputed) if suspendable => {
            (MeasureStatus::Suspended, Some(Reason::Disputed))
        }
        None if disputed_negative && suspendable => {
            (MeasureStatus::Suspended, Some(Reason::Disputed))
        }
        _ => (MeasureStatus::Applies, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::sample;

    fn statuses(
        p: &Policy,
        matter: &str,
        lists: &[ListFact],
        d: bool,
    ) -> Vec<(String, MeasureStatus)> {
        p.decide_check(matter, lists, d)
            .into_iter()
            .map(|o| (o.measure.id.clone(), o.status))
            .collect()
    }

    #[test]
    fn sample_measures_load() {
        let p = sample();
        assert!(p.matter("government_procurement").is_some());
        assert!(p.measures().iter().any(|m| m.list == ListKind::Red));
        assert!(p.measures().iter().any(|m| m.list == ListKind::Focus));
    }

    #[test]
    fn disputes_suspend_punishment_not_incentives_and_repairs_lapse_it() {
        let p = sample();
        let black = |basis| ListFact {
            entry_id: 1,
            list: ListKind::Black,
            basis,
        };
        let red = ListFact {
            entry_id: 2,
            list: ListKind::Red,
            basis: None,
        };
        let m = "government_procurement";
        let all_status = |lists: &[ListFact], d: bool| {
            let v = statuses(&p, m, lists, d);
            assert!(!v.is_empty());
            v.into_iter().map(|(_, s)| s).collect::<Vec<_>>()
        };
        assert!(
            all_status(&[black(Some(RecordState::Active))], false)
                .iter()
                .all(|s| *s == MeasureStatus::Applies)
        );
        assert!(
            all_status(&[black(Some(RecordState::Disputed))], false)
                .iter()
                .all(|s| *s == MeasureStatus::Suspended)
        );
        assert!(
            all_status(&[black(None)], true)
                .iter()
                .all(|s| *s == MeasureStatus::Suspended)
        );
        assert!(
            all_status(&[black(None)], false)
                .iter()
                .all(|s| *s == MeasureStatus::Applies)
        );
        for gone in [
            RecordState::Repaired,
            RecordState::Expired,
            RecordState::Withdrawn,
            RecordState::Superseded,
        ] {
            assert!(
                all_status(&[black(Some(gone))], false)
                    .iter()
                    .all(|s| *s == MeasureStatus::Lapsed)
            );
        }
        // Incentives are not suspended by an objection.
        assert!(
            all_status(&[red], true)
                .iter()
                .all(|s| *s == MeasureStatus::Applies)
        );
        // A second, undisputed entry keeps the measure in force.
        let two = [
            black(Some(RecordState::Disputed)),
            ListFact {
                entry_id: 3,
                list: ListKind::Black,
                basis: Some(RecordState::Active),
            },
        ];
        let o = p.decide_check(m, &two, false);
        assert!(
            o.iter()
                .all(|x| x.status == MeasureStatus::Applies && x.entries == [1, 3])
        );
        assert!(p.decide_check("no_such_matter", &two, false).is_empty());
    }

    const DEPT: &str = "113703000043000010";
    const TAX: &str = "113703000043000023";
    const STATUSES: [&str; 3] = ["applies", "suspended", "lapsed"];

    proptest::proptest! {
        /// Feedback is accepted exactly when its owner reports it once, names
        /// only the check's measures, each once, applies none that does not
        /// apply, and reports every one that does.
        #[test]
        fn feedback_is_complete_and_applies_only_what_applies(
            statuses in proptest::collection::vec(0usize..3, 0..6),
            picks in proptest::collection::vec((0usize..8, proptest::bool::ANY), 0..10),
            by_owner in proptest::bool::ANY,
            recorded in proptest::bool::ANY,
        ) {
            let p = crate::policy::testing::shared();
            let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
            let measures: Vec<(&str, &str)> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| (ids[i].as_str(), STATUSES[*s]))
                .collect();
            let check = CheckFacts { id: 7, org: DEPT, measures: &measures, feedback_recorded: recorded };
            let who = crate::policy::testing::org(p, if by_owner { DEPT } else { TAX });
            let applied: Vec<&str> = picks.iter().filter(|x| x.1).map(|x| ids[x.0].as_str()).collect();
            let not_applied: Vec<&str> = picks.iter().filter(|x| !x.1).map(|x| ids[x.0].as_str()).collect();
            let got = p.check_feedback(&who, &check, &applied, &not_applied);
            let status = |m: &str| measures.iter().find(|x| x.0 == m).map(|x| x.1);
            let named: Vec<&str> = applied.iter().chain(&not_applied).copied().collect();
            let mut sorted = named.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let acceptable = by_owner
                && !recorded
                && named.iter().all(|m| status(m).is_some())
                && sorted.len() == named.len()
                && applied.iter().all(|m| status(m) == Some("applies"))
                && measures.iter().filter(|x| x.1 == "applies").all(|x| named.contains(&x.0));
            proptest::prop_assert_eq!(got.is_ok(), acceptable, "{:?}", got);
            if let Ok(permit) = got {
                proptest::prop_assert_eq!(permit.check_id(), 7);
            }
            if !by_owner {
                proptest::prop_assert_eq!(got, Err(LifecycleRefusal::NotVisible(Noun::Check)));
            } else if recorded {
                proptest::prop_assert_eq!(got, Err(LifecycleRefusal::FeedbackRecorded));
            }
        }

        /// Punishment is reported suspended exactly when some punishment
        /// measure of the check is suspended, and a disputed negative record
        /// suspends like `decide_check` says.
        #[test]
        fn check_decision_agrees_with_decide_check(
            lists in proptest::collection::vec((0usize..3, proptest::option::of(0usize..6)), 0..5),
            negative in proptest::collection::vec(0usize..6, 0..4),
        ) {
            let p = crate::policy::testing::shared();
            let states = [
                RecordState::Active,
                RecordState::Disputed,
                RecordState::Repaired,
                RecordState::Expired,
                RecordState::Withdrawn,
                RecordState::Superseded,
            ];
            let facts: Vec<ListFact> = lists
                .iter()
                .enumerate()
                .map(|(i, (l, b))| ListFact {
                    entry_id: i as i64 + 1,
                    list: ListKind::ALL[*l],
                    basis: b.map(|b| states[b]),
                })
                .collect();
            let negative: Vec<RecordState> = negative.iter().map(|i| states[*i]).collect();
            for m in p.matters() {
                let d = p.check_decision(&m.id, &facts, &negative);
                let plain = p.decide_check(&m.id, &facts, negative.contains(&RecordState::Disputed));
                let a: Vec<_> = d.outcomes.iter().map(|o| (&o.measure.id, o.status)).collect();
                let b: Vec<_> = plain.iter().map(|o| (&o.measure.id, o.status)).collect();
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(
                    d.punishment_suspended,
                    d.outcomes.iter().any(|o| o.measure.kind == MeasureKind::Punishment
                        && o.status == MeasureStatus::Suspended)
                );
            }
        }
    }
}
