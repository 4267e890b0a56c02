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
/// public error contract (it appears in `details.check` of a 400 response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Not exactly 18 characters.
    #[error("must be exactly 18 characters, got {0}")]
    Length(usize),
    /// A character outside the permitted alphabet at a 1-based position.
    #[error("character {position} is not allowed here")]
    Charset {
        /// 1-based position of the offending character.
        position: usize,
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
    /// GB 11643 positions 7–14 are not a real, past date.
    #[error("birth date is not a real date in the past")]
    BirthDate,
    /// The subject type is not one the gateway knows.
    #[error("unknown subject type")]
    SubjectType,
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
            IdError::BirthDate => "birth_date",
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
        let b = s.as_bytes();
        if s.chars().count() != 18 || b.len() != 18 {
            return Err(IdError::Length(s.chars().count()));
        }
        let mut sum = 0u32;
        for (i, &c) in b.iter().enumerate() {
            let v = uscc_value(c).ok_or(IdError::Charset { position: i + 1 })?;
            if (2..8).contains(&i) && !c.is_ascii_digit() {
                return Err(IdError::Charset { position: i + 1 });
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

/// 居民身份证号码 (resident identity card number), validated per GB 11643-1999.
///
/// A trailing lower-case `x` is accepted and normalised to `X`, so the same
/// person always maps to the same stored key and audit hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IdNumber(String);

impl IdNumber {
    /// Validate `s` against `today` (the birth date must not be in the future).
    pub fn parse_at(s: &str, today: time::Date) -> Result<Self, IdError> {
        let n = s.chars().count();
        if n != 18 || s.len() != 18 {
            return Err(IdError::Length(n));
        }
        let b = s.as_bytes();
        let mut sum = 0u32;
        for (i, &c) in b[..17].iter().enumerate() {
            if !c.is_ascii_digit() {
                return Err(IdError::Charset { position: i + 1 });
            }
            sum += u32::from(c - b'0') * ID_WEIGHTS[i];
        }
        let last = b[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') {
            return Err(IdError::Charset { position: 18 });
        }
        let digits = |r: std::ops::Range<usize>| -> u32 {
            b[r].iter().fold(0, |a, &c| a * 10 + u32::from(c - b'0'))
        };
        let year = digits(6..10) as i32;
        let month = time::Month::try_from(digits(10..12) as u8).map_err(|_| IdError::BirthDate)?;
        let birth = time::Date::from_calendar_date(year, month, digits(12..14) as u8)
            .map_err(|_| IdError::BirthDate)?;
        if year < 1900 || birth > today {
            return Err(IdError::BirthDate);
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

    /// Validate against the current UTC date.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_at(s, time::OffsetDateTime::now_utc().date())
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
    /// Validate a (type, id) pair from the wire.
    pub fn parse(kind: &str, id: &str) -> Result<Self, IdError> {
        match SubjectType::parse(kind)? {
            SubjectType::LegalPerson => CreditCode::parse(id).map(SubjectId::Legal),
            SubjectType::NaturalPerson => IdNumber::parse(id).map(SubjectId::Natural),
        }
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
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(
            IdNumber::parse_at("1101051949123100２X", today())
                .unwrap_err()
                .check(),
            "length"
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
        assert_eq!(check("11010518991231002"), Err("birth_date"));
        // Born today is fine.
        assert_eq!(check("11010520261123002"), Ok(()));
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
        // Full-width characters change the byte length.
        assert_eq!(
            CreditCode::parse("９1350100M000100Y43")
                .unwrap_err()
                .check(),
            "length"
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
            let _ = FieldName::parse(&s);
        }
    }
}
