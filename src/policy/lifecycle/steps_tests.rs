//! Property tests of the lifecycle step decisions (permissions, the
//! black-excludes-red rule) against the sample policies.

use proptest::prelude::*;
use serde_json::Map;
use time::Date;
use time::macros::date;

use super::*;
use crate::policy::Organisation;
use crate::policy::testing::{org, sample, shared};

const DEPT: &str = "113703000043000010";
const TAX: &str = "113703000043000023";
const AUDITOR: &str = "113703000043000036";
const PORTAL: &str = "123703000043000046";
const ISSUERS: [&str; 3] = [DEPT, TAX, "113703000043000099"];

fn day(n: i64) -> Date {
    date!(2026 - 01 - 01) + time::Duration::days(n)
}

/// A stored list entry: list, issuer, effective_from and effective_to as
/// day offsets, exited.
#[derive(Clone, Debug)]
struct Entry {
    list: ListKind,
    issuer: usize,
    from: i64,
    to: Option<i64>,
    exited: bool,
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        0usize..3,
        0usize..3,
        0i64..60,
        proptest::option::of(1i64..90),
        any::<bool>(),
    )
        .prop_map(|(l, issuer, from, len, exited)| Entry {
            list: ListKind::ALL[l],
            issuer,
            from,
            to: len.map(|n| from + n),
            exited,
        })
}

fn facts(entries: &[Entry]) -> Vec<ListEntryFacts<'static>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| ListEntryFacts {
            id: i as i64 + 1,
            list: e.list,
            issuer: ISSUERS[e.issuer],
            effective_from: day(e.from),
            effective_to: e.to.map(day),
            exited: e.exited,
        })
        .collect()
}

fn current(entries: &[ListEntryFacts<'_>], list: ListKind, today: Date) -> Vec<i64> {
    let mut v: Vec<i64> = entries
        .iter()
        .filter(|e| e.list == list && e.current(today))
        .map(|e| e.id)
        .collect();
    v.sort_unstable();
    v
}

/// One step of a list history: add an entry, or exit one, on a day.
#[derive(Clone, Debug)]
enum Op {
    Add {
        list: ListKind,
        issuer: usize,
        len: Option<i64>,
    },
    Exit {
        pick: usize,
        issuer: usize,
    },
    NextDay(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 0usize..3, proptest::option::of(1i64..30)).prop_map(|(l, issuer, len)| {
            Op::Add {
                list: ListKind::ALL[l],
                issuer,
                len,
            }
        }),
        (0usize..16, 0usize..3).prop_map(|(pick, issuer)| Op::Exit { pick, issuer }),
        (1i64..20).prop_map(Op::NextDay),
    ]
}

proptest! {
    /// Any history of additions and exits carried out as the policy
    /// permits never has a red and a black entry current on the same day,
    /// never lets an issuer hold two current entries on one list, and a
    /// black listing exits every current red entry, whoever issued it.
    #[test]
    fn black_excludes_red_in_any_history(ops in proptest::collection::vec(op(), 1..40)) {
        let p = shared();
        let orgs: Vec<Organisation> = ISSUERS[..2].iter().map(|c| org(p, c)).collect();
        let mut entries: Vec<ListEntryFacts<'static>> = Vec::new();
        let mut today = day(0);
        for op in ops {
            match op {
                Op::Add { list, issuer, len } => {
                    let reds = current(&entries, ListKind::Red, today);
                    let blacks = current(&entries, ListKind::Black, today);
                    match p.list_addition(list, ISSUERS[issuer], &entries, today) {
                        Ok(permit) => {
                            prop_assert!(list != ListKind::Red || blacks.is_empty());
                            let expected: &[i64] = if list == ListKind::Black { &reds } else { &[] };
                            prop_assert_eq!(permit.exit_red(), expected);
                            for e in entries.iter_mut() {
                                if permit.exit_red().contains(&e.id) {
                                    e.exited = true;
                                }
                            }
                            entries.push(ListEntryFacts {
                                id: entries.len() as i64 + 1,
                                list,
                                issuer: ISSUERS[issuer],
                                effective_from: today,
                                effective_to: len.map(|n| today + time::Duration::days(n)),
                                exited: false,
                            });
                        }
                        Err(LifecycleRefusal::BlackListed(ids)) => {
                            prop_assert_eq!(list, ListKind::Red);
                            prop_assert_eq!(ids, blacks);
                        }
                        Err(LifecycleRefusal::AlreadyListed(id)) => {
                            let dup = entries.iter().find(|e| e.id == id).unwrap();
                            prop_assert!(dup.list == list && dup.issuer == ISSUERS[issuer]);
                            prop_assert!(dup.current(today));
                        }
                        Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                    }
                }
                Op::Exit { pick, issuer } => {
                    if entries.is_empty() {
                        continue;
                    }
                    let i = pick % entries.len();
                    let by = &orgs[issuer % orgs.len()];
                    let e = entries[i];
                    match p.list_exit(by, &e, today) {
                        Ok(_) => {
                            prop_assert_eq!(e.issuer, by.code.as_str());
                            prop_assert!(!e.exited);
                            entries[i].exited = true;
                        }
                        Err(LifecycleRefusal::NotVisible(Noun::ListEntry)) => prop_assert_ne!(e.issuer, by.code.as_str()),
                        Err(LifecycleRefusal::AlreadyExited) => prop_assert!(e.exited),
                        Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                    }
                }
                Op::NextDay(n) => today += time::Duration::days(n),
            }
            let reds = current(&entries, ListKind::Red, today);
            let blacks = current(&entries, ListKind::Black, today);
            prop_assert!(reds.is_empty() || blacks.is_empty(), "red {reds:?} and black {blacks:?}");
            for list in ListKind::ALL {
                for issuer in ISSUERS {
                    let n = entries
                        .iter()
                        .filter(|e| e.list == list && e.issuer == issuer && e.current(today))
                        .count();
                    prop_assert!(n <= 1, "{issuer} holds {n} current {list:?} entries");
                }
            }
        }
    }

    /// On any stored state, the addition is refused exactly as the rules
    /// say, in their order: black blocks red, then one entry per issuer and
    /// list; a black listing exits exactly the current red entries.
    #[test]
    fn list_addition_follows_the_rules(
        stored in proptest::collection::vec(entry(), 0..12),
        list_i in 0usize..3,
        issuer in 0usize..3,
        today in 0i64..120,
    ) {
        let p = shared();
        let entries = facts(&stored);
        let (list, issuer, today) = (ListKind::ALL[list_i], ISSUERS[issuer], day(today));
        let blacks = current(&entries, ListKind::Black, today);
        let mine = entries
            .iter()
            .filter(|e| e.list == list && e.issuer == issuer && e.current(today))
            .map(|e| e.id)
            .min();
        let got = p.list_addition(list, issuer, &entries, today);
        if list == ListKind::Red && !blacks.is_empty() {
            prop_assert_eq!(got, Err(LifecycleRefusal::BlackListed(blacks)));
        } else if let Some(id) = mine {
            prop_assert_eq!(got, Err(LifecycleRefusal::AlreadyListed(id)));
        } else {
            let permit = got.unwrap();
            let reds = current(&entries, ListKind::Red, today);
            let expected: &[i64] = if list == ListKind::Black { &reds } else { &[] };
            prop_assert_eq!(permit.exit_red(), expected);
        }
    }

    /// An entry is in force while current and once in effect; in force
    /// implies current.
    #[test]
    fn in_force_is_current_and_in_effect(e in entry(), today in 0i64..150) {
        let f = facts(std::slice::from_ref(&e))[0];
        let t = day(today);
        prop_assert_eq!(f.current(t), !e.exited && e.to.is_none_or(|to| to > today));
        prop_assert_eq!(f.in_force(t), f.current(t) && e.from <= today);
    }

    /// Only the issuer exits an entry, once, never before it took effect.
    #[test]
    fn list_exit_is_the_issuers_once_and_not_early(
        e in entry(),
        by in 0usize..2,
        on in 0i64..120,
    ) {
        let p = shared();
        let who = org(p, ISSUERS[by]);
        let f = facts(std::slice::from_ref(&e))[0];
        let got = p.list_exit(&who, &f, day(on));
        let expected = if ISSUERS[e.issuer] != ISSUERS[by] {
            Err(LifecycleRefusal::NotVisible(Noun::ListEntry))
        } else if e.exited {
            Err(LifecycleRefusal::AlreadyExited)
        } else if on < e.from {
            Err(LifecycleRefusal::ExitBeforeEffective(day(e.from)))
        } else {
            Ok(())
        };
        prop_assert_eq!(got.map(|_| ()), expected);
    }

    /// A list entry's end comes after its start; an exit is never dated in
    /// the future.
    #[test]
    fn list_dates_are_ordered_and_exits_not_in_advance(
        from in 0i64..400,
        len in proptest::option::of(-30i64..400),
        on in 0i64..400,
        today in 0i64..400,
    ) {
        let p = shared();
        let to = len.map(|l| day(from + l));
        let got = p.list_period(day(from), to);
        if len.is_some_and(|l| l <= 0) {
            prop_assert_eq!(got, Err(LifecycleRefusal::PeriodEndsBeforeStart));
        } else {
            prop_assert_eq!(got, Ok(()));
        }
        let got = p.exit_date(day(on), day(today));
        if on > today {
            prop_assert_eq!(got, Err(LifecycleRefusal::ExitInFuture));
        } else {
            prop_assert_eq!(got, Ok(()));
        }
    }

    /// An objection is filed only on a shared record without an open
    /// objection; the answer is due 20 days after filing.
    #[test]
    fn objection_filing_needs_a_shared_undisputed_record(
        tier_i in 0usize..3,
        decided in 0i64..2_000,
        after in 0i64..2_000,
        stored_i in 0usize..3,
        repaired in any::<bool>(),
        open in proptest::option::of(1i64..1_000),
    ) {
        let p = shared();
        let data = Map::new();
        let decided = date!(2020 - 01 - 01) + time::Duration::days(decided);
        let today = decided + time::Duration::days(after);
        let f = RecordFacts {
            item: "admin_penalty",
            data: &data,
            tier: Some(Tier::ALL[tier_i]),
            decision_date: Some(decided),
            recorded_on: decided,
            stored: [StoredState::Active, StoredState::Withdrawn, StoredState::Superseded][stored_i],
            repaired,
            disputed: open.is_some(),
        };
        let state = p.record_state(&f, today);
        match p.objection_filing(&f, open, today) {
            Ok(permit) => {
                prop_assert!(matches!(state, RecordState::Active | RecordState::Repaired));
                prop_assert!(open.is_none());
                prop_assert_eq!(permit.filed_on(), today);
                prop_assert_eq!((permit.due_on() - today).whole_days(), OBJECTION_ANSWER_DAYS);
            }
            Err(LifecycleRefusal::ObjectionOpen(id)) => prop_assert_eq!(Some(id), open),
            Err(LifecycleRefusal::RecordState(s)) => {
                prop_assert_eq!(s, state);
                prop_assert!(matches!(s, RecordState::Expired | RecordState::Withdrawn | RecordState::Superseded));
            }
            Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
        }
    }

    /// A repair is applied for only on a current, unrepaired negative record
    /// inside its repair window, without a pending application; the permit
    /// carries the record's terms.
    #[test]
    fn repair_application_needs_an_eligible_record(
        tier_i in 0usize..3,
        decided in 0i64..2_000,
        after in 0i64..1_500,
        stored_i in 0usize..3,
        repaired in any::<bool>(),
        disputed in any::<bool>(),
        pending in proptest::option::of(1i64..1_000),
    ) {
        let p = shared();
        let data = Map::new();
        let decided = date!(2020 - 01 - 01) + time::Duration::days(decided);
        let today = decided + time::Duration::days(after);
        let f = RecordFacts {
            item: "admin_penalty",
            data: &data,
            tier: Some(Tier::ALL[tier_i]),
            decision_date: Some(decided),
            recorded_on: decided,
            stored: [StoredState::Active, StoredState::Withdrawn, StoredState::Superseded][stored_i],
            repaired,
            disputed,
        };
        let state = p.record_state(&f, today);
        match p.repair_application(&f, pending, today) {
            Ok(permit) => {
                prop_assert!(matches!(state, RecordState::Active | RecordState::Disputed));
                prop_assert!(pending.is_none());
                prop_assert_eq!(Some(permit.terms()), p.terms(&f));
                prop_assert_eq!(p.repair_eligibility(&f, today), Ok(permit.terms()));
            }
            Err(LifecycleRefusal::RecordState(s)) => {
                prop_assert_eq!(s, state);
                prop_assert!(matches!(s, RecordState::Repaired | RecordState::Withdrawn | RecordState::Superseded));
            }
            Err(LifecycleRefusal::RepairIneligible(e)) => {
                prop_assert_eq!(p.repair_eligibility(&f, today), Err(e));
            }
            Err(LifecycleRefusal::RepairPending(id)) => {
                prop_assert_eq!(Some(id), pending);
                prop_assert!(p.repair_eligibility(&f, today).is_ok());
            }
            Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
        }
    }

    /// Only the record's provider answers an objection or decides a repair,
    /// only while it is open (pending) and, for a repair, the record current
    /// — and, for an approval, still disclosed (not expired).
    #[test]
    fn only_the_provider_takes_provider_steps(
        provider_i in 0usize..3,
        by_i in 0usize..2,
        status_i in 0usize..5,
        state_i in 0usize..6,
        approve in proptest::bool::ANY,
    ) {
        let p = shared();
        let by = org(p, ISSUERS[by_i]);
        let status = ["open", "pending", "upheld", "approved", "rejected"][status_i];
        let case = Case { provider: ISSUERS[provider_i], status };
        let state = [
            RecordState::Active,
            RecordState::Disputed,
            RecordState::Repaired,
            RecordState::Expired,
            RecordState::Withdrawn,
            RecordState::Superseded,
        ][state_i];
        let is_provider = provider_i == by_i;
        let answer = p.objection_answer(&by, &case).map(|_| ());
        let decide = p.repair_decision(&by, &case, state, approve).map(|_| ());
        if !is_provider {
            prop_assert_eq!(answer, Err(LifecycleRefusal::NotVisible(Noun::Objection)));
            prop_assert_eq!(decide, Err(LifecycleRefusal::NotVisible(Noun::Repair)));
        } else {
            prop_assert_eq!(
                answer,
                if status == "open" { Ok(()) } else { Err(LifecycleRefusal::ObjectionClosed(status.into())) }
            );
            let expected = match (status, state) {
                ("pending", RecordState::Withdrawn | RecordState::Superseded) => Err(LifecycleRefusal::RecordState(state)),
                ("pending", RecordState::Expired) if approve => Err(LifecycleRefusal::RepairIneligible(RepairRefusal::Expired)),
                ("pending", _) => Ok(()),
                (s, _) => Err(LifecycleRefusal::RepairClosed(s.into())),
            };
            prop_assert_eq!(decide, expected);
        }
    }
}

#[test]
fn auditors_see_every_history_hashed_departments_only_their_own() {
    let p = sample();
    let (dept, tax, auditor) = (org(&p, DEPT), org(&p, TAX), org(&p, AUDITOR));
    assert_eq!(p.history_view(&dept, DEPT), Ok(SubjectView::Clear));
    assert_eq!(
        p.history_view(&tax, DEPT),
        Err(LifecycleRefusal::NotVisible(Noun::Record))
    );
    assert_eq!(p.history_view(&auditor, DEPT), Ok(SubjectView::Hashed));
    assert_eq!(
        p.history_view(&org(&p, PORTAL), DEPT),
        Err(LifecycleRefusal::NotVisible(Noun::Record))
    );
    assert_eq!(
        p.overdue_scope(&auditor),
        OverdueScope {
            provider: None,
            subjects: SubjectView::Hashed
        }
    );
    assert_eq!(
        p.overdue_scope(&dept),
        OverdueScope {
            provider: Some(DEPT),
            subjects: SubjectView::Clear
        }
    );
}

/// Only the portal reads an objection or application, and only for the
/// subject it is about; everything else is the same `NotVisible`.
#[test]
fn only_the_portal_reads_a_case_and_only_for_its_subject() {
    let p = sample();
    let other = format!(
        "91370300MA3L00001{}",
        crate::ids::CreditCode::check_char("91370300MA3L00001").unwrap()
    );
    let a = crate::ids::SubjectId::parse("legal_person", "91370300MA3CXQ001R").unwrap();
    let b = crate::ids::SubjectId::parse("legal_person", &other).unwrap();
    let stored = CaseSubject {
        subject_type: "legal_person",
        subject_id: a.id(),
    };
    let portal = org(&p, PORTAL);
    assert!(p.case_read(&portal, Noun::Objection, stored, &a).is_ok());
    for noun in [Noun::Objection, Noun::Repair] {
        assert_eq!(
            p.case_read(&portal, noun, stored, &b),
            Err(LifecycleRefusal::NotVisible(noun))
        );
        let wrong_type = CaseSubject {
            subject_type: "natural_person",
            subject_id: a.id(),
        };
        assert_eq!(
            p.case_read(&portal, noun, wrong_type, &a),
            Err(LifecycleRefusal::NotVisible(noun))
        );
        for code in [DEPT, TAX, AUDITOR] {
            assert_eq!(
                p.case_read(&org(&p, code), noun, stored, &a),
                Err(LifecycleRefusal::NotVisible(noun)),
                "{code}"
            );
        }
    }
    assert!(!p.objection_overdue(true, day(20), day(20)));
    assert!(p.objection_overdue(true, day(20), day(21)));
    assert!(!p.objection_overdue(false, day(20), day(21)));
}

/// One lapse rule for checks and list status: an entry lapses with a
/// repaired, expired, withdrawn or superseded basis, never with an active
/// or disputed one, nor without a basis record.
#[test]
fn list_entries_lapse_with_their_basis() {
    use crate::policy::Reason;
    let cases = [
        (Some(RecordState::Repaired), Some(Reason::Repaired)),
        (Some(RecordState::Expired), Some(Reason::Expired)),
        (Some(RecordState::Withdrawn), Some(Reason::Withdrawn)),
        (Some(RecordState::Superseded), Some(Reason::Superseded)),
        (Some(RecordState::Active), None),
        (Some(RecordState::Disputed), None),
        (None, None),
    ];
    for (basis, want) in cases {
        assert_eq!(crate::policy::Policy::basis_lapse(basis), want, "{basis:?}");
    }
}

/// A new list entry names a basis that still counts: active or disputed;
/// any other state refuses the entry with that state.
#[test]
fn a_new_entry_needs_a_basis_that_still_counts() {
    let p = shared();
    for ok in [RecordState::Active, RecordState::Disputed] {
        assert_eq!(p.list_basis(ok), Ok(()), "{ok:?}");
    }
    for lapsed in [
        RecordState::Expired,
        RecordState::Repaired,
        RecordState::Withdrawn,
        RecordState::Superseded,
    ] {
        assert_eq!(
            p.list_basis(lapsed),
            Err(LifecycleRefusal::RecordState(lapsed)),
            "{lapsed:?}"
        );
    }
}
