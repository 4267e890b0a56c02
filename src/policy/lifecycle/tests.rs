//! Tests of the lifecycle decisions against the sample catalog.

use proptest::prelude::*;
use serde_json::{Map, Value};
use time::Date;
use time::macros::date;

use super::*;
use crate::ids::SubjectType;
use crate::policy::testing::{load_patched, org, sample};
use crate::policy::{Organisation, Policy, Reason};

fn facts<'a>(data: &'a Map<String, Value>, tier: Tier, decided: Date) -> RecordFacts<'a> {
    RecordFacts {
        item: "admin_penalty",
        data,
        tier: Some(tier),
        decision_date: Some(decided),
        recorded_on: decided,
        stored: StoredState::Active,
        repaired: false,
        disputed: false,
    }
}

#[test]
fn calendar_months_clamp_to_month_end() {
    assert_eq!(add_months(date!(2026 - 01 - 31), 1), date!(2026 - 02 - 28));
    assert_eq!(add_months(date!(2028 - 01 - 31), 1), date!(2028 - 02 - 29));
    assert_eq!(add_months(date!(2026 - 11 - 30), 3), date!(2027 - 02 - 28));
    assert_eq!(add_months(date!(2026 - 05 - 12), 12), date!(2027 - 05 - 12));
    assert_eq!(add_months(date!(2024 - 02 - 29), 36), date!(2027 - 02 - 28));
    assert_eq!(add_months(date!(2026 - 05 - 12), 0), date!(2026 - 05 - 12));
    assert_eq!(add_months(Date::MAX, 36), Date::MAX);
}

#[test]
fn sample_tiers_are_the_legal_maxima() {
    let p = sample();
    let months: Vec<u32> = Tier::ALL
        .iter()
        .map(|t| p.tier_rule(*t).disclosure_months)
        .collect();
    assert_eq!(months, [3, 12, 36]);
}

/// Day before, on and after expiry, for every tier, with the sample
/// catalog's periods.
#[test]
fn every_tier_expires_exactly_on_its_boundary() {
    let p = sample();
    let data = Map::new();
    let decided = date!(2025 - 08 - 31);
    for (tier, end) in [
        (Tier::Minor, date!(2025 - 11 - 30)),
        (Tier::General, date!(2026 - 08 - 31)),
        (Tier::Serious, date!(2028 - 08 - 31)),
    ] {
        let f = facts(&data, tier, decided);
        assert_eq!(p.terms(&f).unwrap().disclosed_until, end, "{tier:?}");
        let day = time::Duration::days(1);
        assert_eq!(
            p.record_state(&f, end - day),
            RecordState::Active,
            "{tier:?} day before"
        );
        assert_eq!(
            p.record_state(&f, end),
            RecordState::Expired,
            "{tier:?} on the day"
        );
        assert_eq!(
            p.record_state(&f, end + day),
            RecordState::Expired,
            "{tier:?} day after"
        );
        assert_eq!(
            p.record_state(&f, decided),
            RecordState::Active,
            "{tier:?} decision day"
        );
    }
}

#[test]
fn zero_month_minor_is_never_shown() {
    let p = load_patched(
        "catalog.toml",
        "disclosure_months = 3\nrepair_after_months = 0",
        "disclosure_months = 0\nrepair_after_months = 0",
    )
    .unwrap();
    let data = Map::new();
    let d = date!(2026 - 03 - 01);
    assert!(!p.is_disclosed(Tier::Minor, d, d));
    assert_eq!(
        p.record_state(&facts(&data, Tier::Minor, d), d),
        RecordState::Expired
    );
}

#[test]
fn legacy_records_fall_back_to_catalog_defaults() {
    let p = sample();
    let data: Map<String, Value> =
        serde_json::from_str(r#"{"penalty_date": "2026-05-12"}"#).unwrap();
    let mut f = facts(&data, Tier::General, date!(2026 - 01 - 01));
    f.tier = None;
    f.decision_date = None;
    f.recorded_on = date!(2026 - 11 - 01);
    let t = p.terms(&f).unwrap();
    assert_eq!(
        (t.tier, t.decision_date, t.recorded),
        (Tier::General, date!(2026 - 05 - 12), false)
    );
    // Without the date field: the storage date.
    let empty = Map::new();
    f.data = &empty;
    assert_eq!(p.terms(&f).unwrap().decision_date, date!(2026 - 11 - 01));
    // Items that are not negative have no terms and never expire.
    f.item = "registration";
    assert!(p.terms(&f).is_none());
    assert_eq!(
        p.record_state(&f, date!(2099 - 01 - 01)),
        RecordState::Active
    );
}

#[test]
fn precedence_and_per_role_sharing() {
    let p = sample();
    let data = Map::new();
    let today = date!(2026 - 01 - 10);
    let mut f = facts(&data, Tier::General, date!(2025 - 12 - 01));
    f.disputed = true;
    assert_eq!(p.record_state(&f, today), RecordState::Disputed);
    f.repaired = true;
    assert_eq!(p.record_state(&f, today), RecordState::Repaired);
    assert_eq!(
        p.record_state(&f, date!(2026 - 12 - 01)),
        RecordState::Expired
    );
    f.stored = StoredState::Superseded;
    assert_eq!(p.record_state(&f, today), RecordState::Superseded);
    f.stored = StoredState::Withdrawn;
    assert_eq!(p.record_state(&f, today), RecordState::Withdrawn);

    let dept = org(&p, "113703000043000010");
    let bank = org(&p, "91370300164100001A");
    let agency = org(&p, "91370300MA3C00001U");
    let portal = org(&p, "123703000043000046");
    let s = |o: &Organisation, st| p.sharing(o, "admin_penalty", st);
    assert_eq!(
        s(&dept, RecordState::Repaired),
        Sharing::Shared(RecordStatus::Repaired)
    );
    assert_eq!(
        s(&portal, RecordState::Repaired),
        Sharing::Shared(RecordStatus::Repaired)
    );
    assert_eq!(
        s(&bank, RecordState::Repaired),
        Sharing::Withheld(Reason::Repaired)
    );
    assert_eq!(
        s(&agency, RecordState::Repaired),
        Sharing::Withheld(Reason::Repaired)
    );
    assert_eq!(
        s(&bank, RecordState::Disputed),
        Sharing::Shared(RecordStatus::Disputed)
    );
    for o in [&dept, &bank, &agency, &portal] {
        assert_eq!(
            s(o, RecordState::Expired),
            Sharing::Withheld(Reason::Expired)
        );
        assert_eq!(
            s(o, RecordState::Withdrawn),
            Sharing::Withheld(Reason::Withdrawn)
        );
        assert_eq!(
            s(o, RecordState::Superseded),
            Sharing::Withheld(Reason::Superseded)
        );
    }
    // Per-item override: repaired arrears stay visible to banks.
    assert_eq!(
        p.sharing(&bank, "arrears", RecordState::Repaired),
        Sharing::Shared(RecordStatus::Repaired)
    );
    assert_eq!(
        p.sharing(&agency, "arrears", RecordState::Repaired),
        Sharing::Withheld(Reason::Repaired)
    );
}

#[test]
fn repair_opens_after_the_minimum_disclosure() {
    let p = sample();
    let data = Map::new();
    let decided = date!(2026 - 01 - 31);
    let day = time::Duration::days(1);
    for (tier, opens) in [
        (Tier::Minor, decided),
        (Tier::General, date!(2026 - 04 - 30)),
        (Tier::Serious, date!(2027 - 01 - 31)),
    ] {
        let f = facts(&data, tier, decided);
        if opens > decided {
            assert_eq!(
                p.repair_eligibility(&f, opens - day),
                Err(RepairRefusal::TooEarly(opens))
            );
        }
        assert!(p.repair_eligibility(&f, opens).is_ok(), "{tier:?}");
        let end = p.terms(&f).unwrap().disclosed_until;
        assert_eq!(p.repair_eligibility(&f, end), Err(RepairRefusal::Expired));
    }
    let mut f = facts(&data, Tier::General, decided);
    f.item = "registration";
    assert_eq!(
        p.repair_eligibility(&f, decided),
        Err(RepairRefusal::NotNegative)
    );
}

#[test]
fn dates_are_strict() {
    assert_eq!(parse_date("2026-02-28"), Some(date!(2026 - 02 - 28)));
    for bad in [
        "2026-02-29",
        "2026-2-28",
        "+2026-02-28",
        "-2026-02-28",
        "12026-02-28",
        "2026/02/28",
        "2026-02-28 ",
        "２０２６-02-28",
        "0000-01-01",
        "0000-02-29",
        "",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
    assert_eq!(parse_date("0001-01-01"), Some(date!(0001 - 01 - 01)));
    assert_eq!(format_date(date!(2026 - 02 - 08)), "2026-02-08");
}

#[test]
fn objection_deadline_is_twenty_days() {
    assert_eq!(
        Policy::objection_due(date!(2026 - 11 - 23)),
        date!(2026 - 12 - 13)
    );
}

#[test]
fn submission_terms() {
    let p = sample();
    let today = date!(2026 - 11 - 23);
    let none = Map::new();
    let ok = p.check_terms(
        "admin_penalty",
        Some("serious"),
        Some("2026-11-23"),
        &none,
        today,
    );
    assert_eq!(
        ok,
        Ok(Some(RecordTerms {
            tier: Tier::Serious,
            decision_date: today
        }))
    );
    let e = |item, t, d| p.check_terms(item, t, d, &none, today).unwrap_err();
    assert_eq!(
        e("admin_penalty", None, Some("2026-01-01")),
        TermsError::Missing
    );
    assert_eq!(
        e("admin_penalty", Some("general"), None),
        TermsError::Missing
    );
    assert_eq!(
        e("admin_penalty", Some("Serious"), Some("2026-01-01")),
        TermsError::UnknownTier
    );
    assert_eq!(
        e("admin_penalty", Some("minor"), Some("2026-02-30")),
        TermsError::BadDate
    );
    assert_eq!(
        e("admin_penalty", Some("minor"), Some("2026-11-24")),
        TermsError::FutureDate
    );
    assert_eq!(
        e("registration", Some("minor"), None),
        TermsError::NotNegative
    );
    assert_eq!(
        p.check_terms("registration", None, None, &none, today),
        Ok(None)
    );
    let data: Map<String, Value> =
        serde_json::from_str(r#"{"penalty_date": "2026-05-12"}"#).unwrap();
    assert_eq!(
        p.check_terms(
            "admin_penalty",
            Some("general"),
            Some("2026-05-13"),
            &data,
            today
        ),
        Err(TermsError::Mismatch("penalty_date".into()))
    );
    assert!(
        p.check_terms(
            "admin_penalty",
            Some("general"),
            Some("2026-05-12"),
            &data,
            today
        )
        .is_ok()
    );
}

#[test]
fn views_and_list_items() {
    let p = sample();
    let v = p.view("financing_profile").unwrap();
    assert_eq!(v.purpose, "financing");
    assert!(v.fields.iter().any(|f| f == "black_listed"));
    assert!(v.fields.iter().any(|f| f == "tax_paid_annual"));
    assert_eq!(p.list_items_for(SubjectType::LegalPerson), ["list_status"]);
    let lf = p.list_item_fields("list_status").unwrap();
    assert!(lf.contains(&("black_listed".to_owned(), ListKind::Black)));
    let values = p
        .list_item_values("list_status", &[ListKind::Black])
        .unwrap();
    assert_eq!(values["black_listed"], true);
    assert_eq!(values["red_listed"], false);
    assert!(p.list_item_values("admin_penalty", &[]).is_none());
    assert_eq!(
        p.view_for("financing_profile", SubjectType::LegalPerson, "financing")
            .map(|v| v.id.as_str()),
        Ok("financing_profile")
    );
    assert!(matches!(
        p.view_for("financing_profile", SubjectType::NaturalPerson, "financing"),
        Err(ViewRefusal::SubjectMismatch { .. })
    ));
    assert!(matches!(
        p.view_for("financing_profile", SubjectType::LegalPerson, "employment"),
        Err(ViewRefusal::PurposeMismatch { .. })
    ));
    assert_eq!(
        p.view_for("gossip", SubjectType::LegalPerson, "financing")
            .map(|v| v.id.as_str()),
        Err(ViewRefusal::Unknown {
            known: vec!["financing_profile".to_owned()]
        })
    );
    assert!(p.item_rules("list_status").is_none());
}

#[test]
fn summary_is_null_for_what_was_not_released() {
    let p = sample();
    let v = p.view("financing_profile").unwrap();
    let pen: Map<String, Value> = serde_json::from_str(r#"{"penalty_content": "x"}"#).unwrap();
    let arr: Map<String, Value> =
        serde_json::from_str(r#"{"tax_arrears_amount": 0, "social_insurance_arrears_amount": 0}"#)
            .unwrap();
    let lists: Map<String, Value> = serde_json::from_str(r#"{"black_listed": true}"#).unwrap();
    let rows = [
        ("admin_penalty", RecordStatus::Disputed, &pen),
        ("admin_penalty", RecordStatus::Repaired, &pen),
        ("arrears", RecordStatus::Normal, &arr),
        ("list_status", RecordStatus::Normal, &lists),
    ];
    let released = ["penalty_content", "tax_arrears_amount", "black_listed"];
    let s = v.summarise(&p, &released, &rows);
    assert_eq!(s["active_penalties"], 1, "repaired records are not active");
    assert_eq!(s["disputed_items"], 1);
    assert_eq!(s["arrears"], false, "zero arrears are no arrears");
    assert_eq!(s["black_listed"], true);
    assert_eq!(
        s["dishonest_debtor"],
        Value::Null,
        "not released: unknown, not false"
    );
    assert_eq!(s["red_listed"], Value::Null);
    let none = v.summarise(&p, &[], &[]);
    assert!(none.values().all(Value::is_null), "{none:?}");
}

proptest! {
    /// For any decision date and tier: shared the day before the
    /// disclosure end, expired on it and every day after.
    #[test]
    fn expiry_boundary_holds_for_any_date(
        days in 0i64..40_000,
        tier_i in 0usize..3,
        after in 0i64..2_000,
    ) {
        let p = sample();
        let data = Map::new();
        let decided = date!(1990 - 01 - 01) + time::Duration::days(days);
        let tier = Tier::ALL[tier_i];
        let f = facts(&data, tier, decided);
        let end = p.terms(&f).unwrap().disclosed_until;
        let months = p.tier_rule(tier).disclosure_months;
        prop_assert_eq!(end, add_months(decided, months));
        prop_assert!(end >= decided);
        prop_assert!(end > decided || months == 0);
        if end > decided {
            prop_assert_eq!(p.record_state(&f, end - time::Duration::days(1)), RecordState::Active);
        }
        prop_assert_eq!(p.record_state(&f, end + time::Duration::days(after)), RecordState::Expired);
        // Never longer than the legal maximum: 31 days per month is a
        // generous upper bound on calendar months.
        let (_, hi) = tier.legal_bounds();
        prop_assert!((end - decided).whole_days() <= i64::from(hi) * 31);
    }
}

#[test]
fn a_step_exits_list_entries_only_while_their_basis_still_counts() {
    use RecordState as S;
    // A repair or a withdrawal of a basis that still counts (active, or
    // disputed: checks suspend punishment instead) exits its entries.
    for before in [S::Active, S::Disputed] {
        assert_eq!(
            Policy::basis_change_lapse(before, S::Repaired),
            Some(Reason::Repaired)
        );
        assert_eq!(
            Policy::basis_change_lapse(before, S::Withdrawn),
            Some(Reason::Withdrawn)
        );
        assert_eq!(Policy::basis_change_lapse(before, S::Disputed), None);
    }
    // A basis that already lapsed (expired, above all) lapsed its entries
    // then: no later step writes an exit for it.
    for before in [S::Expired, S::Repaired, S::Withdrawn, S::Superseded] {
        for after in [S::Repaired, S::Withdrawn, S::Superseded, S::Expired] {
            assert_eq!(
                Policy::basis_change_lapse(before, after),
                None,
                "{before:?} -> {after:?}"
            );
        }
    }
}
