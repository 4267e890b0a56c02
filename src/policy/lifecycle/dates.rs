//! Calendar arithmetic for disclosure periods and the strict date format.

use time::{Date, Month};

/// `date + months` in calendar months, the day clamped to the end of a
/// shorter month (31 January + 1 month = 28/29 February). Saturates at
/// [`Date::MAX`].
pub fn add_months(date: Date, months: u32) -> Date {
    let total =
        i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + i64::from(months);
    let (Ok(year), Ok(month)) = (
        i32::try_from(total.div_euclid(12)),
        Month::try_from((total.rem_euclid(12) + 1) as u8),
    ) else {
        return Date::MAX;
    };
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX)
}

/// Whether `b` is shaped `DDDD-DD-DD` (ASCII digits and two dashes).
fn date_shaped(b: &[u8]) -> bool {
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// Parse a `YYYY-MM-DD` date: exactly ten ASCII characters, so stored
/// dates compare correctly as text (no signs, no five-digit years), and a
/// year from 0001 (year 0000 is refused).
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if !date_shaped(b) {
        return None;
    }
    // The shape is checked, so the digits are read directly: a query
    // parses every returned record's dates, and `time`'s format-description
    // parser was a visible share of a request (`bench/RESULTS.md`).
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u16, |n, c| n * 10 + u16::from(c - b'0'));
    let month = Month::try_from(u8::try_from(num(5..7)).ok()?).ok()?;
    let day = u8::try_from(num(8..10)).ok()?;
    // Year 0000 has no calendar meaning on a record (there was no year 0).
    Date::from_calendar_date(i32::from(num(0..4)), month, day)
        .ok()
        .filter(|d| d.year() >= 1)
}

/// Format a date as `YYYY-MM-DD` (years 0–9999 as four digits; the
/// gateway only stores those, see [`parse_date`]).
pub fn format_date(d: Date) -> String {
    let (y, m, day) = (d.year(), u8::from(d.month()), d.day());
    if !(0..=9999).contains(&y) {
        return d.to_string();
    }
    let y = y as u32;
    let digits = [
        y / 1000,
        y / 100 % 10,
        y / 10 % 10,
        y % 10,
        u32::from(m / 10),
        u32::from(m % 10),
        u32::from(day / 10),
        u32::from(day % 10),
    ];
    let mut out = String::with_capacity(10);
    for (i, v) in digits.iter().enumerate() {
        if i == 4 || i == 6 {
            out.push('-');
        }
        out.push(char::from(b'0' + *v as u8));
    }
    out
}

/// Serde helper: dates as `YYYY-MM-DD`.
pub mod date_format {
    use time::Date;

    /// Serialise as `YYYY-MM-DD`.
    pub fn serialize<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_date(*d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: `time`'s own parser and formatter for `YYYY-MM-DD`.
    const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]");

    fn reference(s: &str) -> Option<Date> {
        // The shape is the same rule; the digits go through `time`.
        date_shaped(s.as_bytes())
            .then(|| Date::parse(s, DATE).ok())
            .flatten()
            .filter(|d| d.year() >= 1)
    }

    proptest! {
        /// Any ten characters of digits and dashes (every shape, every
        /// out-of-range month and day): the same answer as `time`'s parser.
        #[test]
        fn parse_date_agrees_with_time(s in "[0-9-]{10}", y in 0u16..=9999, m in 0u8..=13, d in 0u8..=32) {
            prop_assert_eq!(parse_date(&s), reference(&s));
            let shaped = format!("{y:04}-{m:02}-{d:02}");
            prop_assert_eq!(parse_date(&shaped), reference(&shaped));
        }

        /// Formatting is `time`'s format and parses back to the same date.
        #[test]
        fn format_date_round_trips(days in 0i32..3_652_059) {
            let d = Date::from_julian_day(Date::from_calendar_date(1, Month::January, 1).unwrap().to_julian_day() + days).unwrap();
            let s = format_date(d);
            prop_assert_eq!(&s, &d.format(DATE).unwrap());
            prop_assert_eq!(parse_date(&s), Some(d));
        }
    }

    #[test]
    fn edges() {
        assert_eq!(parse_date("0000-01-01"), None);
        assert_eq!(
            parse_date("2024-02-29"),
            Date::from_calendar_date(2024, Month::February, 29).ok()
        );
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("2024-00-10"), None);
        assert_eq!(parse_date("2024-1-010"), None);
        assert_eq!(parse_date("+024-01-01"), None);
        assert_eq!(
            format_date(Date::from_calendar_date(1, Month::January, 9).unwrap()),
            "0001-01-09"
        );
    }
}
