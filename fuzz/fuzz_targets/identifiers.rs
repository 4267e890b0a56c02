//! GB 32100 / GB 11643 parsers: never panic; anything accepted round-trips.
#![no_main]
use credgate::ids::{CreditCode, IdNumber, SubjectId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    if let Ok(c) = CreditCode::parse(data) {
        assert_eq!(c.as_str(), data);
    }
    let today = time::Date::from_calendar_date(2026, time::Month::November, 23).unwrap();
    if let Ok(n) = IdNumber::parse_at(data, today) {
        assert_eq!(n.as_str(), data.to_ascii_uppercase());
    }
    let _ = SubjectId::parse("legal_person", data);
    let _ = SubjectId::parse(data, data);
});
