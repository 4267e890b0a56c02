use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::ids::CreditCode;

fn sample() -> Policy {
    load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        b"test-mask-key",
    )
    .unwrap()
}

fn org(p: &Policy, code: &str) -> Organisation {
    p.organisation(&CreditCode::parse(code).unwrap())
        .unwrap()
        .clone()
}

const BANK: &str = "91370300164100001A";
const AGENCY: &str = "91370300MA3C00001U";
const AUDITOR: &str = "113703000043000036";

#[test]
fn sample_policies_load() {
    let p = sample();
    assert!(p.fields().len() > 30);
    assert_eq!(p.organisations().len(), 7);
}

#[test]
fn precedence_and_reasons() {
    let p = sample();
    let bank = org(&p, BANK);
    let fin = p.purpose("financing").unwrap().clone();
    let lp = SubjectType::LegalPerson;
    let np = SubjectType::NaturalPerson;
    let d =
        |subject, f: &'static str, c: &ConsentInput| p.decide_field(&bank, &fin, subject, f, c).0;
    let none = ConsentInput::Absent;
    assert_eq!(d(lp, "enterprise_name", &none).reason, Reason::Authorised);
    assert_eq!(d(lp, "religion", &none).reason, Reason::Prohibited);
    assert_eq!(d(lp, "Blood_Type", &none).reason, Reason::Prohibited);
    assert_eq!(
        d(lp, "favourite_colour", &none).reason,
        Reason::NotInCatalog
    );
    // A natural-person field asked of a legal person is not in its catalog.
    assert_eq!(d(lp, "person_name", &none).reason, Reason::NotInCatalog);
    assert_eq!(
        d(np, "monthly_income", &none).reason,
        Reason::ConsentRequired
    );
    assert_eq!(
        d(lp, "tax_paid_annual", &none).reason,
        Reason::ConsentRequired
    );
    let bad = ConsentInput::Invalid("expired");
    let dec = d(np, "monthly_income", &bad);
    assert_eq!(
        (dec.reason, dec.detail),
        (Reason::ConsentInvalid, Some("expired"))
    );
    let ok = ConsentInput::Valid {
        scope: vec!["income".into()],
        written: true,
    };
    assert_eq!(d(np, "monthly_income", &ok).decision, Decision::Returned);
    assert_eq!(d(np, "deposit_balance", &ok).detail, Some("out_of_scope"));
    let unwritten = ConsentInput::Valid {
        scope: vec!["income".into()],
        written: false,
    };
    assert_eq!(
        d(np, "monthly_income", &unwritten).detail,
        Some("not_written")
    );
    // Field grant overrides the class grant.
    let addr = d(np, "residence_address", &none);
    assert_eq!(
        (addr.decision, addr.reason),
        (Decision::Masked, Reason::Minimised)
    );
    // Bank asking for a purpose it has no grant for.
    let rep = p.purpose("credit_report").unwrap().clone();
    assert_eq!(
        p.decide_field(&bank, &rep, lp, "enterprise_name", &none)
            .0
            .reason,
        Reason::NotAuthorised
    );
}

#[test]
fn permit_carries_only_released_fields() {
    let p = sample();
    let agency = org(&p, AGENCY);
    let rep = p.purpose("credit_report").unwrap().clone();
    let req: Vec<String> = [
        "person_name",
        "birth_date",
        "monthly_income",
        "religion",
        "person_name",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (ds, permit) = p.decide_query(
        &agency,
        &rep,
        SubjectType::NaturalPerson,
        &req,
        &ConsentInput::Absent,
    );
    assert_eq!(ds.len(), 4, "duplicates decided once");
    let released: Vec<&str> = permit
        .fields()
        .iter()
        .map(|(i, _)| p.fields()[*i].name.as_str())
        .collect();
    assert_eq!(released, ["person_name", "birth_date"]);
    assert!(matches!(
        permit.fields()[1].1,
        Action::Mask(MaskKind::YearOnly)
    ));
}

#[test]
fn auditors_see_nothing() {
    let p = sample();
    let auditor = org(&p, AUDITOR);
    for purpose in p.purposes().to_vec() {
        for f in p.fields() {
            let subject = p.items()[f.item].subject;
            let all = ConsentInput::Valid {
                scope: vec![f.name.to_string()],
                written: true,
            };
            let (d, permit) = p.decide_field(&auditor, &purpose, subject, f.name.as_str(), &all);
            assert_eq!(d.decision, Decision::Withheld);
            assert!(permit.is_none());
        }
    }
}

fn field_names() -> Vec<String> {
    sample()
        .fields()
        .iter()
        .map(|f| f.name.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever the caller, purpose, subject or consent: a prohibited name is
    /// never released, a consent-classified field never leaves without a
    /// valid consent listing it, and nothing is released without a grant.
    #[test]
    fn safety_properties(
        org_i in 0usize..7,
        purpose_i in 0usize..5,
        natural in any::<bool>(),
        field_i in 0usize..64,
        junk in "[a-zA-Z_\\-]{0,12}",
        consent_kind in 0u8..3,
        written in any::<bool>(),
    ) {
        let p = sample();
        let orgs = p.organisations();
        let o = orgs[org_i % orgs.len()];
        let purpose = &p.purposes()[purpose_i % p.purposes().len()];
        let names = field_names();
        let subject = if natural { SubjectType::NaturalPerson } else { SubjectType::LegalPerson };
        let name = if field_i < names.len() { names[field_i].clone() } else { format!("{junk}blood_type") };
        let consent = match consent_kind {
            0 => ConsentInput::Absent,
            1 => ConsentInput::Invalid("expired"),
            _ => ConsentInput::Valid { scope: vec![name.clone()], written },
        };
        let (d, permit) = p.decide_field(o, purpose, subject, &name, &consent);
        prop_assert_eq!(d.decision == Decision::Withheld, permit.is_none());
        if p.prohibited().classify(&name).is_some() {
            prop_assert_eq!(d.reason, Reason::Prohibited);
        }
        if let Some((_, f)) = p.field(&name) {
            let need = p.class_of(f).consent;
            if d.decision != Decision::Withheld {
                prop_assert!(p.items()[f.item].subject == subject);
                match need {
                    ConsentNeed::None => {}
                    ConsentNeed::Enterprise => prop_assert!(consent_kind == 2),
                    ConsentNeed::Personal => prop_assert!(consent_kind == 2 && written),
                }
                prop_assert!(!o.has_role(Role::Auditor));
            }
        }
    }
}

/// Denied attempts are refusals only: any failed outcome, or a field
/// refused as not_authorised, consent_invalid or prohibited; the lifecycle
/// withholdings and a missing optional consent are ordinary answers.
#[test]
fn denied_attempts_are_refusals_only() {
    use crate::policy::{is_denied_attempt, is_refused_field};
    for reason in ["not_authorised", "consent_invalid", "prohibited"] {
        assert!(is_refused_field("withheld", reason), "{reason}");
        assert!(is_refused_field("refused", reason), "{reason}");
        assert!(!is_refused_field("returned", reason), "{reason}");
        assert!(is_denied_attempt("ok", [("withheld", reason)].into_iter()));
    }
    for reason in [
        "expired",
        "repaired",
        "withdrawn",
        "superseded",
        "disputed",
        "consent_required",
        "not_in_catalog",
    ] {
        assert!(!is_refused_field("withheld", reason), "{reason}");
        assert!(!is_denied_attempt(
            "ok",
            [("withheld", reason), ("returned", "authorised")].into_iter()
        ));
    }
    assert!(is_denied_attempt("quota_exceeded", std::iter::empty()));
    assert!(is_denied_attempt("internal_error", std::iter::empty()));
    assert!(!is_denied_attempt("ok", std::iter::empty()));
}
