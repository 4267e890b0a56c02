//! GB 32100 / GB 11643 parsers: never panic; anything accepted round-trips;
//! refusals describe the input (lengths count characters, a charset error
//! points at a character that is really there and really not ASCII-valid).
#![no_main]
use credgate::ids::{CreditCode, IdError, IdNumber, SubjectId};
use libfuzzer_sys::fuzz_target;

fn describes(data: &str, e: &IdError) {
    let n = data.chars().count();
    match e {
        IdError::Length(got) => assert!(*got == n && n != 18, "{e} for {n} chars"),
        IdError::Charset { position, found } => {
            assert_eq!(n, 18);
            assert_eq!(data.chars().nth(position - 1), Some(*found));
        }
        _ => assert_eq!(n, 18),
    }
}

fuzz_target!(|data: &str| {
    match CreditCode::parse(data) {
        Ok(c) => assert_eq!(c.as_str(), data),
        Err(e) => describes(data, &e),
    }
    let today = time::Date::from_calendar_date(2026, time::Month::November, 23).unwrap();
    match IdNumber::parse_at(data, today) {
        Ok(n) => {
            assert_eq!(n.as_str(), data.to_ascii_uppercase());
            let province: u8 = data[..2].parse().unwrap();
            assert!((11..=83).contains(&province), "{province}");
        }
        Err(e) => describes(data, &e),
    }
    if let Ok(s) = SubjectId::parse_untyped(data) {
        assert_eq!(s.id(), data.to_ascii_uppercase());
    }
    let _ = SubjectId::parse("legal_person", data);
    let _ = SubjectId::parse(data, data);
});
