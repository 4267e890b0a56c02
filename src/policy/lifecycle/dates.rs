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

/// Parse a `YYYY-MM-DD` date: exactly ten ASCII characters, so stored
/// dates compare correctly as text (no signs, no five-digit years), and a
/// year from 0001 (year 0000 is refused).
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return None;
    }
    // Year 0000 has no calendar meaning on a record (there was no year 0).
    Date::parse(s, DATE).ok().filter(|d| d.year() >= 1)
}

/// Format a date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    d.format(DATE).unwrap_or_default()
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Serde helper: dates as `YYYY-MM-DD`.
pub mod date_format {
    use time::Date;

    /// Serialise as `YYYY-MM-DD`.
    pub fn serialize<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_date(*d))
    }
}
