//! Validated identifiers.
//!
//! Every identifier that crosses the wire is parsed into one of these newtypes
//! exactly once, at the edge. Code deeper in the gateway takes the newtype, so
//! "was this checked?" is answered by the type system, not by reading callers.
//!
//! * [`CreditCode`] — 统一社会信用代码, GB 32100-2015.
//! * [`IdNumber`] — 居民身份证号码, GB 11643-1999.
//! * [`SubjectId`] — the subject of a record or query: one of the two above.
//! * [`FieldName`], [`ItemId`], [`Purpose`] — catalog and policy vocabulary.

use std::fmt;

use serde::Serialize;

/// Why an identifier was refused. The [`IdError::check`] string is part of the
/// public error contract (it appears in `details.check` of a 400 response);
/// the message says what is wrong (naming at most the offending character or
/// digits, never the whole identifier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not exactly 18 characters (Unicode scalar values, not bytes).
    #[error("must be exactly 18 characters, got {0}")]
    Length(usize),
    /// A character outside the permitted alphabet at a 1-based position
    /// (counted in characters).
    #[error("character {position} ({}) is not allowed here{}", code_point(*found), charset_hint(*found))]
    Charset {
        /// 1-based position of the offending character.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// GB 32100 position 1: unknown registration authority.
    #[error("unknown registration authority code '{0}'")]
    RegistrationAuthority(char),
    /// GB 32100 position 2: category not defined for that authority.
    #[error("category code '{category}' is not defined for registration authority '{authority}'")]
    Category {
        /// Registration authority code (position 1).
        authority: char,
        /// Category code (position 2).
        category: char,
    },
    /// The final check character does not match the computed one.
    #[error("check character is '{found}', expected '{expected}'")]
    CheckCharacter {
        /// What the checksum algorithm yields.
        expected: char,
        /// What the identifier carries.
        found: char,
    },
    /// GB 11643 positions 1–6: the address code does not start with a
    /// province-level code of GB/T 2260 (see [`IdNumber`]).
    #[error("address code (positions 1-6) {0}")]
    Region(RegionProblem),
    /// GB 11643 positions 7–14 are not a calendar date, or one no card
    /// holder can have (see [`IdNumber`]).
    #[error("birth date (positions 7-14) {0}")]
    BirthDate(BirthDateProblem),
    /// The subject type is not one the gateway knows.
    #[error("unknown subject type")]
    SubjectType,
}

/// What is wrong with a GB 11643 address code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionProblem {
    /// Positions 1–2 are no GB/T 2260 province-level code.
    #[error("does not start with a province-level code of GB/T 2260 (got {0:02})")]
    UnknownProvince(u8),
    /// 71 (Taiwan), 81 (Hong Kong), 82 (Macao) and 83 (Taiwan residents'
    /// residence permits) have no subdivisions: the code must end in 0000.
    #[error("must be {0:02}0000: GB/T 2260 has no subdivisions of {0:02}")]
    NotUndivided(u8),
}

/// What is wrong with a GB 11643 birth date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BirthDateProblem {
    /// Month or day out of range for the year (e.g. 30 February).
    #[error("is not a calendar date")]
    NotADate,
    /// Before [`IdNumber::EARLIEST_BIRTH`].
    #[error("is before 1850-01-01, earlier than any card holder's")]
    TooEarly,
    /// After the date the number is judged on.
    #[error("is in the future")]
    Future,
}

fn code_point(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

fn charset_hint(c: char) -> &'static str {
    match c {
        '\u{FF10}'..='\u{FF19}' => ", a full-width digit: use ASCII 0-9",
        '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => ", a full-width letter: use ASCII A-Z",
        c if c.is_whitespace() => ", white space",
        c if !c.is_ascii() => ", not an ASCII character",
        _ => "",
    }
}

/// 18 characters, or [`IdError::Length`]; then the first non-ASCII one, if
/// any, as [`IdError::Charset`] (so a full-width digit is reported as what
/// it is, not as a length that looks right), else the bytes.
fn eighteen_ascii(s: &str) -> Result<&[u8; 18], IdError> {
    let n = s.chars().count();
    if n != 18 {
        return Err(IdError::Length(n));
    }
    if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
        return Err(IdError::Charset {
            position: i + 1,
            found: c,
        });
    }
    Ok(s.as_bytes()
        .try_into()
        .expect("18 ASCII characters are 18 bytes"))
}

impl IdError {
    /// Stable snake_case name of the failed check.
    pub fn check(&self) -> &'static str {
        match self {
            IdError::Length(_) => "length",
            IdError::Charset { .. } => "charset",
            IdError::RegistrationAuthority(_) => "registration_authority",
            IdError::Category { .. } => "category",
            IdError::CheckCharacter { .. } => "check_character",
            IdError::Region(_) => "region",
            IdError::BirthDate(_) => "birth_date",
            IdError::SubjectType => "subject_type",
        }
    }
}

/// GB 32100 alphabet: digits and upper-case letters without I, O, Z, S, V.
const USCC_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// GB 32100 weights 3^(i-1) mod 31 for positions 1..=17.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARSET.iter().position(|&x| x == c).map(|p| p as u32)
}

/// Categories each registration authority (position 1) may use (position 2),
/// from GB 32100-2015 appendix A as amended.
fn uscc_categories(authority: u8) -> Option<&'static [u8]> {
    Some(match authority {
        b'1' => b"1239",   // 机构编制
        b'2' => b"19",     // 外交
        b'3' => b"123459", // 司法行政
        b'4' => b"19",     // 文化
        b'5' => b"1239",   // 民政
        b'6' => b"129",    // 旅游
        b'7' => b"129",    // 宗教
        b'8' => b"19",     // 工会
        b'9' => b"123",    // 工商 / 市场监管
        b'A' => b"19",     // 中央军委改革和编制办公室
        b'N' => b"1239",   // 农业
        b'Y' => b"1",      // 其他
        _ => return None,
    })
}

/// 统一社会信用代码 (unified social credit code), validated per GB 32100-2015.
///
/// Organisations are identified by this code in their client certificate;
/// legal-person subjects by the same code.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CreditCode(String);

impl CreditCode {
    /// Validate `s`: length, alphabet, registration authority and category
    /// codes, division-code digits and the check character (31 → `0`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let b = eighteen_ascii(s)?;
        let mut sum = 0u32;
        for (i, &c) in b.iter().enumerate() {
            let bad = IdError::Charset {
                position: i + 1,
                found: char::from(c),
            };
            let v = uscc_value(c).ok_or_else(|| bad.clone())?;
            if (2..8).contains(&i) && !c.is_ascii_digit() {
                return Err(bad);
            }
            if i < 17 {
                sum += v * USCC_WEIGHTS[i];
            }
        }
        let cats = uscc_categories(b[0]).ok_or(IdError::RegistrationAuthority(b[0] as char))?;
        if !cats.contains(&b[1]) {
            return Err(IdError::Category {
                authority: b[0] as char,
                category: b[1] as char,
            });
        }
        let expected = USCC_CHARSET[((31 - sum % 31) % 31) as usize];
        if b[17] != expected {
            return Err(IdError::CheckCharacter {
                expected: expected as char,
                found: b[17] as char,
            });
        }
        Ok(CreditCode(s.to_owned()))
    }

    /// Compute the check character for a 17-character prefix (dev tooling
    /// and tests use it to mint valid codes). `None` if the prefix is not 17
    /// characters of the GB 32100 alphabet.
    pub fn check_char(prefix: &str) -> Option<char> {
        let b = prefix.as_bytes();
        if b.len() != 17 {
            return None;
        }
        let mut sum = 0;
        for (i, &c) in b.iter().enumerate() {
            sum += uscc_value(c)? * USCC_WEIGHTS[i];
        }
        Some(USCC_CHARSET[((31 - sum % 31) % 31) as usize] as char)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Organisations are identified by their unified social credit code.
pub type OrgCode = CreditCode;

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Province-level codes of GB/T 2260 (positions 1–2 of every address code):
/// 11–15 北京 天津 河北 山西 内蒙古; 21–23 辽宁 吉林 黑龙江; 31–37 上海 江苏
/// 浙江 安徽 福建 江西 山东; 41–46 河南 湖北 湖南 广东 广西 海南; 50–54 重庆
/// 四川 贵州 云南 西藏; 61–65 陕西 甘肃 青海 宁夏 新疆; 71 台湾; 81 香港;
/// 82 澳门. Plus 83, which is not in GB/T 2260: the 公民身份号码 of a
/// 港澳台居民居住证 (国办发〔2018〕81号) starts 810000 / 820000 / 830000 for
/// residents of Hong Kong / Macao / Taiwan, and those holders are data
/// subjects like anyone else.
fn province_ok(code: u8) -> bool {
    matches!(code, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83)
}

/// 居民身份证号码 (resident identity card number), validated per GB 11643-1999.
///
/// Checks, in order, each with its own [`IdError::check`] name: 18
/// characters (`length`); 17 ASCII digits then a digit or `X` (`charset`);
/// an address code whose first two digits are a GB/T 2260 province-level
/// code, and exactly `710000`/`810000`/`820000`/`830000` for the codes
/// GB/T 2260 does not subdivide (`region`; see `province_ok` for the list);
/// a birth date that is a calendar date from 1850-01-01 up to today
/// (`birth_date`); the ISO 7064 MOD 11-2 check character (`check_character`).
/// Prefecture and county codes are not checked: GB/T 2260 changes every
/// year and numbers keep the code of the place they were first issued in,
/// including codes since abolished, so only a historical table could judge
/// them, and the check character already catches mistyped digits.
///
/// **Birth years before 1900 are accepted**, back to 1850. The date on a
/// card is the registered one, and cards with registered birth years in the
/// 1880s exist (Luo Meizhen's card gave 1885, Alimihan Seyiti's 1886; both
/// were reported widely when they were counted among the oldest people in
/// China). Refusing them would lock real holders out of their own records
/// and misstate the reason ("not a real date"). The lower bound only refuses
/// what no holder of an 18-digit number can have: 18-digit numbers started
/// in 1999, when someone born before 1850 would have been over 149.
///
/// A trailing lower-case `x` is accepted and normalised to `X`, so the same
/// person always maps to the same stored key and audit hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IdNumber(String);

impl IdNumber {
    /// Earliest birth date accepted (see the type's docs).
    pub const EARLIEST_BIRTH: time::Date = time::macros::date!(1850 - 01 - 01);

    /// Validate `s` against `today` (the birth date must not be in the future).
    pub fn parse_at(s: &str, today: time::Date) -> Result<Self, IdError> {
        let b = eighteen_ascii(s)?;
        let mut sum = 0u32;
        for (i, &c) in b[..17].iter().enumerate() {
            if !c.is_ascii_digit() {
                return Err(IdError::Charset {
                    position: i + 1,
                    found: char::from(c),
                });
            }
            sum += u32::from(c - b'0') * ID_WEIGHTS[i];
        }
        let last = b[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') {
            return Err(IdError::Charset {
                position: 18,
                found: char::from(b[17]),
            });
        }
        let digits = |r: std::ops::Range<usize>| -> u32 {
            b[r].iter().fold(0, |a, &c| a * 10 + u32::from(c - b'0'))
        };
        let province = digits(0..2) as u8;
        if !province_ok(province) {
            return Err(IdError::Region(RegionProblem::UnknownProvince(province)));
        }
        if matches!(province, 71 | 81..=83) && digits(2..6) != 0 {
            return Err(IdError::Region(RegionProblem::NotUndivided(province)));
        }
        let not_a_date = IdError::BirthDate(BirthDateProblem::NotADate);
        let month = time::Month::try_from(digits(10..12) as u8).map_err(|_| not_a_date.clone())?;
        let birth =
            time::Date::from_calendar_date(digits(6..10) as i32, month, digits(12..14) as u8)
                .map_err(|_| not_a_date)?;
        if birth < Self::EARLIEST_BIRTH {
            return Err(IdError::BirthDate(BirthDateProblem::TooEarly));
        }
        if birth > today {
            return Err(IdError::BirthDate(BirthDateProblem::Future));
        }
        let expected = ID_CHECK[(sum % 11) as usize];
        if last != expected {
            return Err(IdError::CheckCharacter {
                expected: expected as char,
                found: b[17] as char,
            });
        }
        let mut canonical = s.to_owned();
        canonical.make_ascii_uppercase();
        Ok(IdNumber(canonical))
    }

    /// Validate against today's date in China Standard Time
    /// ([`IdNumber::today_at`] of the system clock): birth dates on the
    /// cards are Chinese calendar days.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_at(s, Self::today_at(time::OffsetDateTime::now_utc()))
    }

    /// The calendar date in China Standard Time at the instant `now`. A
    /// fixed UTC+8: China has observed no daylight saving time since 1991.
    pub fn today_at(now: time::OffsetDateTime) -> time::Date {
        now.to_offset(time::macros::offset!(+8)).date()
    }

    /// Compute the check character for a 17-digit prefix (dev tooling, tests).
    pub fn check_char(prefix: &str) -> Option<char> {
        let b = prefix.as_bytes();
        if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let sum: u32 = b
            .iter()
            .zip(ID_WEIGHTS)
            .map(|(&c, w)| u32::from(c - b'0') * w)
            .sum();
        Some(ID_CHECK[(sum % 11) as usize] as char)
    }

    /// The canonical (upper-case `X`) number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The two kinds of data subject the catalog knows.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// 法人和非法人组织, identified by a [`CreditCode`].
    LegalPerson,
    /// 自然人, identified by an [`IdNumber`].
    NaturalPerson,
}

impl SubjectType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectType::LegalPerson => "legal_person",
            SubjectType::NaturalPerson => "natural_person",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s {
            "legal_person" => Ok(SubjectType::LegalPerson),
            "natural_person" => Ok(SubjectType::NaturalPerson),
            _ => Err(IdError::SubjectType),
        }
    }
}

/// A validated data subject: its type and its identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SubjectId {
    /// A legal person.
    Legal(CreditCode),
    /// A natural person.
    Natural(IdNumber),
}

impl SubjectId {
    /// Validate a (type, id) pair from the wire, an ID number's birth date
    /// against `today` in China Standard Time: the gateway's clock
    /// (`App::today`), the one the rest of the request decides by.
    pub fn parse_at(kind: &str, id: &str, today: time::Date) -> Result<Self, IdError> {
        match SubjectType::parse(kind)? {
            SubjectType::LegalPerson => CreditCode::parse(id).map(SubjectId::Legal),
            SubjectType::NaturalPerson => IdNumber::parse_at(id, today).map(SubjectId::Natural),
        }
    }

    /// Validate a (type, id) pair against the system clock (tools, sample
    /// data; a request uses [`SubjectId::parse_at`] with the gateway's
    /// clock).
    pub fn parse(kind: &str, id: &str) -> Result<Self, IdError> {
        Self::parse_at(
            kind,
            id,
            IdNumber::today_at(time::OffsetDateTime::now_utc()),
        )
    }

    /// Read back a pair the gateway stored (validated when it was stored):
    /// every check again except that against today's date, which a pinned
    /// or earlier clock must not turn against a stored subject.
    pub fn parse_stored(kind: &str, id: &str) -> Result<Self, IdError> {
        Self::parse_at(kind, id, time::Date::MAX)
    }

    /// Validate an identifier whose type is not given (a consent token's
    /// `sub`): a resident ID number or a unified social credit code, in the
    /// canonical form the gateway compares `sub` against. An 18-digit string
    /// can be both; the ID number reading wins (the two check characters
    /// rarely agree, and a token's `sub` is compared as text either way).
    pub fn parse_untyped(id: &str) -> Result<Self, UntypedIdError> {
        let as_id_number = match IdNumber::parse(id) {
            Ok(n) => return Ok(SubjectId::Natural(n)),
            Err(e) => e,
        };
        CreditCode::parse(id)
            .map(SubjectId::Legal)
            .map_err(|as_credit_code| UntypedIdError {
                as_id_number,
                as_credit_code,
            })
    }

    /// The subject's type.
    pub fn kind(&self) -> SubjectType {
        match self {
            SubjectId::Legal(_) => SubjectType::LegalPerson,
            SubjectId::Natural(_) => SubjectType::NaturalPerson,
        }
    }

    /// The canonical identifier text.
    pub fn id(&self) -> &str {
        match self {
            SubjectId::Legal(c) => c.as_str(),
            SubjectId::Natural(n) => n.as_str(),
        }
    }
}

/// Why [`SubjectId::parse_untyped`] refused an identifier: both readings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "neither a resident ID number (GB 11643: {as_id_number}) \
     nor a unified social credit code (GB 32100: {as_credit_code})"
)]
pub struct UntypedIdError {
    /// Why it is not a valid 居民身份证号码.
    pub as_id_number: IdError,
    /// Why it is not a valid 统一社会信用代码.
    pub as_credit_code: IdError,
}

/// Error for vocabulary names (fields, items, purposes) that are not
/// well-formed snake_case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a snake_case name of 1-64 ASCII characters")]
pub struct NameError(pub String);

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

macro_rules! snake_name {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accept only snake_case ASCII, 1–64 characters.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                if is_snake(s) { Ok($name(s.to_owned())) } else { Err(NameError(s.to_owned())) }
            }
            /// The name as text.
            pub fn as_str(&self) -> &str { &self.0 }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(&self.0) }
        }
    };
}

snake_name!(
    /// A catalog field name, e.g. `enterprise_name`.
    FieldName
);
snake_name!(
    /// A catalog item id, e.g. `admin_penalty`.
    ItemId
);
snake_name!(
    /// A query purpose from the closed list in `policies/purposes.toml`.
    Purpose
);

#[cfg(test)]
mod tests;
