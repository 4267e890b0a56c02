//! Tests of the identifier newtypes.
use super::*;
use proptest::prelude::*;

/// GB/T 2260 province-level codes plus 83 (residence permits).
const PROVINCES: [u8; 35] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
];

fn today() -> time::Date {
    time::macros::date!(2026 - 11 - 23)
}

#[test]
fn known_credit_codes() {
    // Published example codes.
    assert!(CreditCode::parse("91350100M000100Y43").is_ok());
    assert!(CreditCode::parse("91110000802100433B").is_ok());
    assert_eq!(
        CreditCode::parse("91350100M000100Y44").unwrap_err().check(),
        "check_character"
    );
    assert_eq!(CreditCode::parse("9135").unwrap_err().check(), "length");
    assert_eq!(
        CreditCode::parse("91350100M000100YI3").unwrap_err().check(),
        "charset"
    );
    assert_eq!(
        CreditCode::parse("Z1350100M000100Y43").unwrap_err().check(),
        "charset"
    );
    assert_eq!(
        CreditCode::parse("B1350100M000100Y43").unwrap_err().check(),
        "registration_authority"
    );
    assert_eq!(
        CreditCode::parse("97350100M000100Y43").unwrap_err().check(),
        "category"
    );
    assert_eq!(
        CreditCode::parse("9135A100M000100Y43").unwrap_err().check(),
        "charset"
    );
}

#[test]
fn check_character_zero() {
    // Find a prefix whose check value is 31 → '0' and make sure it round-trips.
    let mut found = false;
    for n in 0..10_000u32 {
        let prefix = format!("91370300MA{:07}", n);
        if CreditCode::check_char(&prefix) == Some('0') {
            assert!(CreditCode::parse(&format!("{prefix}0")).is_ok());
            found = true;
            break;
        }
    }
    assert!(found);
}

#[test]
fn id_numbers() {
    assert!(IdNumber::parse_at("11010519491231002X", today()).is_ok());
    let lower = IdNumber::parse_at("11010519491231002x", today()).unwrap();
    assert_eq!(lower.as_str(), "11010519491231002X");
    assert_eq!(
        IdNumber::parse_at("110105194912310021", today())
            .unwrap_err()
            .check(),
        "check_character"
    );
    // 30 February.
    let p = "11010519490230002";
    let c = IdNumber::check_char(p).unwrap();
    assert_eq!(
        IdNumber::parse_at(&format!("{p}{c}"), today())
            .unwrap_err()
            .check(),
        "birth_date"
    );
    // Born tomorrow.
    let p = "11010520261124002";
    let c = IdNumber::check_char(p).unwrap();
    assert_eq!(
        IdNumber::parse_at(&format!("{p}{c}"), today())
            .unwrap_err()
            .check(),
        "birth_date"
    );
    // A full-width digit: 18 characters (20 bytes). Reported as the
    // character it is, never as "exactly 18 characters, got 18".
    let e = IdNumber::parse_at("1101051949123100２X", today()).unwrap_err();
    assert_eq!(
        e,
        IdError::Charset {
            position: 17,
            found: '２'
        }
    );
    assert_eq!(
        e.to_string(),
        "character 17 (U+FF12) is not allowed here, a full-width digit: use ASCII 0-9"
    );
    // Wrong length counts characters, not bytes.
    assert_eq!(
        IdNumber::parse_at("１１０１０５", today()).unwrap_err(),
        IdError::Length(6)
    );
    assert_eq!(
        IdNumber::parse_at("11010519491231002", today())
            .unwrap_err()
            .to_string(),
        "must be exactly 18 characters, got 17"
    );
}

#[test]
fn id_number_region_codes() {
    // The case from issue 13: a valid check digit, no such province.
    let e = IdNumber::parse_at("000303198503150011", today()).unwrap_err();
    assert_eq!(e.check(), "region");
    assert_eq!(
        e.to_string(),
        "address code (positions 1-6) does not start with a province-level code of \
         GB/T 2260 (got 00)"
    );
    let with_region = |r: &str| {
        IdNumber::parse_at(&id_with(&format!("{r}19850315001")), today())
            .map(|_| ())
            .map_err(|e| e.check())
    };
    // Every province-level code of GB/T 2260 (34), spelt out here rather
    // than derived from `province_ok`, so a typo there shows up.
    let provinces = [
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51,
        52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
    ];
    assert_eq!(provinces.len(), 34);
    for p in 0..100u32 {
        let undivided = matches!(p, 71 | 81 | 82 | 83);
        let r = with_region(&format!(
            "{p:02}{}",
            if undivided { "0000" } else { "0302" }
        ));
        let known = provinces.contains(&p) || p == 83;
        assert_eq!(r.is_ok(), known, "{p:02}: {r:?}");
        if !known {
            assert_eq!(r, Err("region"), "{p:02}");
        }
    }
    // Hong Kong, Macao, Taiwan (and the residence-permit 83) have no
    // subdivisions in GB/T 2260.
    for r in ["810100", "820001", "710100", "830200"] {
        let e = IdNumber::parse_at(&id_with(&format!("{r}19850315001")), today()).unwrap_err();
        assert_eq!(e.check(), "region", "{r}");
        assert!(e.to_string().contains("no subdivisions"), "{e}");
    }
}

/// Issue 13: born 1880 with a valid check digit. Accepted: registered
/// birth years in the 1880s are on real cards (see [`IdNumber`]).
#[test]
fn id_number_birth_year_1880_is_accepted() {
    let n = IdNumber::parse_at("440524188001010014", today()).unwrap();
    assert_eq!(n.as_str(), "440524188001010014");
    let check = |p: &str| {
        IdNumber::parse_at(&id_with(p), today())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(check("44052418500101001"), Ok(()));
    assert_eq!(
        check("44052418491231001"),
        Err(
            "birth date (positions 7-14) is before 1850-01-01, earlier than any card holder's"
                .into()
        )
    );
    assert_eq!(
        check("44052420261124001"),
        Err("birth date (positions 7-14) is in the future".into())
    );
    assert_eq!(
        check("44052419850230001"),
        Err("birth date (positions 7-14) is not a calendar date".into())
    );
}

#[test]
fn untyped_subjects_for_consent_tokens() {
    assert_eq!(
        SubjectId::parse_untyped("11010519491231002x").unwrap(),
        SubjectId::Natural(IdNumber("11010519491231002X".into()))
    );
    assert_eq!(
        SubjectId::parse_untyped("91350100M000100Y43")
            .unwrap()
            .kind(),
        SubjectType::LegalPerson
    );
    // All digits and a valid GB 32100 code (a public institution).
    assert_eq!(
        SubjectId::parse_untyped("113703000043000010")
            .unwrap()
            .kind(),
        SubjectType::LegalPerson
    );
    let e = SubjectId::parse_untyped("000303198503150011").unwrap_err();
    assert_eq!(e.as_id_number.check(), "region");
    assert_eq!(e.as_credit_code.check(), "registration_authority");
    assert!(
        e.to_string()
            .starts_with("neither a resident ID number (GB 11643: address code"),
        "{e}"
    );
}

fn id_with(prefix17: &str) -> String {
    format!("{prefix17}{}", IdNumber::check_char(prefix17).unwrap())
}

#[test]
fn id_number_calendar_edges() {
    let check = |p: &str| {
        IdNumber::parse_at(&id_with(p), today())
            .map(|_| ())
            .map_err(|e| e.check())
    };
    // Leap days: 2000 is a leap year, 1900 and 2023 are not.
    assert_eq!(check("11010520000229002"), Ok(()));
    assert_eq!(check("11010520230229002"), Err("birth_date"));
    assert_eq!(check("11010519000229002"), Err("birth_date"));
    // Month 00 and 13, day 00 and 32, year before 1900.
    assert_eq!(check("11010519851315002"), Err("birth_date"));
    assert_eq!(check("11010519850015002"), Err("birth_date"));
    assert_eq!(check("11010519850100002"), Err("birth_date"));
    assert_eq!(check("11010519850132002"), Err("birth_date"));
    assert_eq!(check("11010518991231002"), Ok(()));
    assert_eq!(check("11010518491231002"), Err("birth_date"));
    assert_eq!(check("11010518500101002"), Ok(()));
    // Born today is fine.
    assert_eq!(check("11010520261123002"), Ok(()));
}

#[test]
fn today_is_judged_in_china_standard_time() {
    // 2026-11-23 17:30 UTC is 2026-11-24 01:30 in Beijing: someone born
    // on the 24th is born today there, not in the future.
    let late_utc = time::macros::datetime!(2026-11-23 17:30 UTC);
    assert_eq!(
        IdNumber::today_at(late_utc),
        time::macros::date!(2026 - 11 - 24)
    );
    let prefix = "11010520261124002";
    let id = format!("{prefix}{}", IdNumber::check_char(prefix).unwrap());
    assert!(IdNumber::parse_at(&id, IdNumber::today_at(late_utc)).is_ok());
    // The day before in Beijing (15:59 UTC = 23:59 CST), still the future.
    let before = time::macros::datetime!(2026-11-23 15:59 UTC);
    assert_eq!(
        IdNumber::today_at(before),
        time::macros::date!(2026 - 11 - 23)
    );
    assert_eq!(
        IdNumber::parse_at(&id, IdNumber::today_at(before))
            .unwrap_err()
            .check(),
        "birth_date"
    );
    // Any instant: the CST date is the UTC date of eight hours later.
    let t = time::OffsetDateTime::now_utc();
    assert_eq!(IdNumber::today_at(t), (t + time::Duration::hours(8)).date());
    // And `parse` uses it: someone born on today's Beijing date is
    // accepted at any hour (the date only moves forward meanwhile).
    let born = IdNumber::today_at(time::OffsetDateTime::now_utc());
    let prefix = format!(
        "110105{:04}{:02}{:02}002",
        born.year(),
        u8::from(born.month()),
        born.day()
    );
    let id = format!("{prefix}{}", IdNumber::check_char(&prefix).unwrap());
    assert!(IdNumber::parse(&id).is_ok(), "{id}");
    // An X anywhere but last, and surrounding whitespace.
    assert_eq!(
        IdNumber::parse_at("1101051949123100X2", today())
            .unwrap_err()
            .check(),
        "charset"
    );
    assert_eq!(
        IdNumber::parse_at(" 11010519491231002X", today())
            .unwrap_err()
            .check(),
        "length"
    );
}

#[test]
fn credit_code_case_and_width() {
    // GB 32100 letters are upper case; lower case is a charset error,
    // not silently accepted (the code is an identity).
    assert_eq!(
        CreditCode::parse("91350100m000100y43").unwrap_err().check(),
        "charset"
    );
    // A full-width character is named as such, at its character position.
    let e = CreditCode::parse("９1350100M000100Y43").unwrap_err();
    assert_eq!(
        e,
        IdError::Charset {
            position: 1,
            found: '９'
        }
    );
    assert!(!e.to_string().contains("18"), "{e}");
    assert!(e.to_string().contains("full-width digit"), "{e}");
    let e = CreditCode::parse("91350100M000100Ｙ43").unwrap_err();
    assert_eq!(e.check(), "charset");
    assert!(e.to_string().starts_with("character 16 (U+FF39)"), "{e}");
    assert!(e.to_string().contains("full-width letter"), "{e}");
    assert_eq!(
        CreditCode::parse("91350100m000100Y43")
            .unwrap_err()
            .to_string(),
        "character 9 ('m') is not allowed here"
    );
    // Every registration authority with an undefined category.
    for (code, ok) in [
        ("Y1", true),
        ("Y2", false),
        ("N9", true),
        ("A2", false),
        ("31", true),
        ("36", false),
    ] {
        let prefix = format!("{code}370300MA3C00001");
        let c = CreditCode::check_char(&prefix).unwrap();
        let r = CreditCode::parse(&format!("{prefix}{c}"));
        assert_eq!(r.is_ok(), ok, "{code}: {r:?}");
        if !ok {
            assert_eq!(r.unwrap_err().check(), "category");
        }
    }
}

proptest! {
    #[test]
    fn valid_credit_codes_round_trip(prefix in "9[123][0-9]{6}[0-9A-HJ-NPQRTUWXY]{9}") {
        let c = CreditCode::check_char(&prefix).unwrap();
        let code = format!("{prefix}{c}");
        prop_assert!(CreditCode::parse(&code).is_ok());
        // Changing the check character always fails.
        let other = USCC_CHARSET.iter().map(|&b| b as char).find(|&x| x != c).unwrap();
        prop_assert_eq!(CreditCode::parse(&format!("{prefix}{other}")).unwrap_err().check(), "check_character");
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,40}") {
        let _ = CreditCode::parse(&s);
        let _ = IdNumber::parse_at(&s, today());
        let _ = SubjectId::parse_untyped(&s);
        let _ = FieldName::parse(&s);
    }

    /// Any ID number built from a known province, any district digits
    /// (undivided codes aside), a date in range and any sequence digits
    /// is accepted with its computed check character and refused with
    /// any other.
    #[test]
    fn valid_id_numbers_round_trip(
        p in proptest::sample::select(&PROVINCES[..]),
        district in 0..10_000u32,
        day in 0..=(today() - IdNumber::EARLIEST_BIRTH).whole_days(),
        seq in 0..1000u32,
        lower in any::<bool>(),
    ) {
        let district = if matches!(p, 71 | 81..=83) { 0 } else { district };
        let birth = IdNumber::EARLIEST_BIRTH + time::Duration::days(day);
        let prefix = format!(
            "{p:02}{district:04}{:04}{:02}{:02}{seq:03}",
            birth.year(), u8::from(birth.month()), birth.day()
        );
        let c = IdNumber::check_char(&prefix).unwrap();
        let s = format!("{prefix}{}", if lower { c.to_ascii_lowercase() } else { c });
        let n = IdNumber::parse_at(&s, today()).unwrap();
        prop_assert_eq!(n.as_str(), format!("{prefix}{c}"));
        let untyped = SubjectId::parse_untyped(&s).unwrap();
        prop_assert_eq!(untyped.id(), n.as_str());
        for other in "0123456789X".chars().filter(|&x| x != c) {
            prop_assert_eq!(
                IdNumber::parse_at(&format!("{prefix}{other}"), today()).unwrap_err().check(),
                "check_character"
            );
        }
    }

    /// A number whose first two digits are no province is refused as
    /// `region` whatever else it holds, check character included.
    #[test]
    fn unknown_provinces_are_refused(
        p in (0..100u8).prop_filter("not a province", |p| !PROVINCES.contains(p)),
        rest in "[0-9]{15}",
    ) {
        let prefix = format!("{p:02}{rest}");
        let s = format!("{prefix}{}", IdNumber::check_char(&prefix).unwrap());
        let e = IdNumber::parse_at(&s, today()).unwrap_err();
        prop_assert_eq!(e.check(), "region");
        let want = format!("(got {p:02})");
        prop_assert!(e.to_string().contains(&want), "{}", e);
    }

    /// Length errors count characters; an 18-character input is never
    /// refused for its length, and a charset error points at a character
    /// that really is outside the alphabet at that position.
    #[test]
    fn errors_describe_the_input(
        s in prop_oneof![
            "\\PC{0,30}",
            "[0-9０-９xXＸ]{18}",
            "[0-9A-Z９Ｙａ]{16,20}",
        ],
    ) {
        let n = s.chars().count();
        let id = IdNumber::parse_at(&s, today());
        let cc = CreditCode::parse(&s);
        for (e, id_rules) in [(id.err(), true), (cc.err(), false)] {
            match e {
                Some(IdError::Length(got)) => {
                    prop_assert_eq!(got, n);
                    prop_assert_ne!(got, 18);
                }
                Some(IdError::Charset { position, found }) => {
                    prop_assert_eq!(n, 18);
                    prop_assert_eq!(s.chars().nth(position - 1), Some(found));
                    let allowed = if id_rules {
                        found.is_ascii_digit() || (position == 18 && "xX".contains(found))
                    } else {
                        found.is_ascii()
                            && USCC_CHARSET.contains(&(found as u8))
                            && (found.is_ascii_digit() || !(3..=8).contains(&position))
                    };
                    prop_assert!(!allowed, "{found:?} at {position}");
                    // Every character before it is fine.
                    prop_assert!(s.chars().take(position - 1).all(|c| c.is_ascii()));
                }
                _ => prop_assert_eq!(n, 18),
            }
        }
    }
}
