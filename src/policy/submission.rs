//! Write-path decisions on submitted data: whether a record (a submission or
//! an objection's correction) fits its catalog item — the item exists and
//! describes this subject type, it may be submitted at all, every field
//! belongs to it with its declared type, the lifecycle terms are valid —
//! and which of its fields need the person's collection consent.
//!
//! The consent itself (a verified token) is checked by the consent layer;
//! this module only says which fields need one.

use serde_json::{Map, Value};
use time::Date;

use super::lifecycle::{RecordTerms, TermsError, parse_date};
use super::{ConsentNeed, ItemDef, Policy, ValueType};
use crate::ids::{SubjectId, SubjectType};

/// Longest name of an unknown item or field repeated back to a client.
pub const SHOWN_NAME: usize = 64;

/// Most significant digits of a fractional JSON number: any decimal of at
/// most 15 significant digits survives the trip through an `f64` exactly.
const EXACT_FLOAT_DIGITS: usize = 15;
/// Most integer and fraction digits of a [`ValueType::Decimal`] (as
/// PostgreSQL `NUMERIC(38, 8)` would hold them).
const DECIMAL_INT_DIGITS: usize = 30;
const DECIMAL_FRACTION_DIGITS: usize = 8;

/// Whether a JSON number is carried exactly: an integer serde_json holds as
/// one (`i64`/`u64`), or a finite float of at most
/// [`EXACT_FLOAT_DIGITS`] significant digits. A larger integer such as
/// `123456789012345678901234567890` arrives as an `f64` with 17 digits and
/// is refused, never stored rounded.
fn exact_number(v: &Value) -> bool {
    let Some(n) = v.as_number() else {
        return false;
    };
    if n.is_i64() || n.is_u64() {
        return true;
    }
    let Some(f) = n.as_f64().filter(|f| f.is_finite()) else {
        return false;
    };
    // Shortest round-trip form, e.g. "1.2345678901234568e29".
    let s = format!("{f:e}");
    let mantissa = s.split('e').next().unwrap_or("");
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    digits <= EXACT_FLOAT_DIGITS
}

/// Whether `s` is an exact decimal: optional `-`, 1–30 integer digits
/// without leading zeros, optionally `.` and 1–8 fraction digits.
pub fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let int_ok = !int.is_empty()
        && int.len() <= DECIMAL_INT_DIGITS
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| {
        !f.is_empty() && f.len() <= DECIMAL_FRACTION_DIGITS && f.bytes().all(|b| b.is_ascii_digit())
    });
    int_ok && frac_ok
}

/// Text values hold no control characters but tab, newline and carriage
/// return (a NUL in particular is never stored).
fn clean_text(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

impl ValueType {
    /// Whether `v` is a value of this type. Strings hold no control
    /// characters but tab, newline and carriage return; numbers must be
    /// carried exactly (`exact_number`); decimals are strings matching
    /// [`is_decimal`] or JSON integers; dates are exactly `YYYY-MM-DD`
    /// ([`parse_date`]).
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            ValueType::String => v.as_str().is_some_and(clean_text),
            ValueType::Number => exact_number(v),
            ValueType::Decimal => match v {
                Value::String(s) => is_decimal(s),
                Value::Number(n) => n.is_i64() || n.is_u64(),
                _ => false,
            },
            ValueType::Bool => v.is_boolean(),
            // Strict, like decision dates: stored dates compare as text, so
            // no signs and no other widths.
            ValueType::Date => v.as_str().and_then(parse_date).is_some(),
        }
    }

    /// Lower-case name, as in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Number => "number",
            ValueType::Decimal => "decimal",
            ValueType::Bool => "bool",
            ValueType::Date => "date",
        }
    }

    /// What a value of this type must look like, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ValueType::String => "string without control characters",
            ValueType::Number => {
                "number carried exactly (an integer, or at most 15 significant digits)"
            }
            ValueType::Decimal => {
                "decimal: a string such as \"1234.56\" (at most 30 integer and 8 fraction digits) or an integer"
            }
            ValueType::Bool => "bool",
            ValueType::Date => "date (YYYY-MM-DD, year 0001 or later)",
        }
    }
}

/// One record as submitted (`POST /v1/records`).
#[derive(Clone, Copy, Debug)]
pub struct SubmittedRecord<'a> {
    /// Type of the (already validated) subject.
    pub subject: SubjectType,
    /// Catalog item id as sent.
    pub item: &'a str,
    /// Tier as sent.
    pub tier: Option<&'a str>,
    /// Decision date as sent.
    pub decision_date: Option<&'a str>,
    /// The record's fields.
    pub fields: &'a Map<String, Value>,
}

/// A record the policy accepts, pending its collection consent.
#[derive(Clone, Debug)]
pub struct AcceptedRecord<'p, 'a> {
    /// Its catalog item.
    pub item: &'p ItemDef,
    /// Tier and decision date; `Some` exactly for negative items.
    pub terms: Option<RecordTerms>,
    /// Fields that may be collected only with the person's written
    /// consent, in submission order.
    pub personal: Vec<&'a str>,
}

/// Why submitted data is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionRefusal {
    /// The item is not in the catalog (its name, truncated).
    #[error("item is not in the catalog")]
    UnknownItem(String),
    /// The item describes another subject type.
    #[error("item '{item}' describes a {}", .describes.as_str())]
    SubjectTypeMismatch {
        /// Item id.
        item: String,
        /// What it describes.
        describes: SubjectType,
    },
    /// The item is derived from the lists and never submitted.
    #[error("item '{0}' is derived from the red/black/focus lists")]
    NotSubmittable(String),
    /// Tier or decision date refused.
    #[error("lifecycle terms of item '{item}' refused: {error:?}")]
    Terms {
        /// Item id.
        item: String,
        /// What is wrong.
        error: TermsError,
    },
    /// The record has no fields.
    #[error("the record has no fields")]
    NoFields,
    /// A field that is not a field of the item (name truncated).
    #[error("'{field}' is not a field of item '{item}'")]
    UnknownField {
        /// Field name, at most [`SHOWN_NAME`] characters.
        field: String,
        /// Item id.
        item: String,
    },
    /// A value of the wrong type.
    #[error("field '{field}' must be a {}", .expected.as_str())]
    InvalidValue {
        /// Field name.
        field: String,
        /// Declared type.
        expected: ValueType,
    },
    /// A consent-classified field where no collection consent can be given
    /// (a correction).
    #[error("'{0}' may be collected only with the person's written consent")]
    ConsentRequired(String),
    /// A record of a batch is about another subject than the batch's first
    /// record ([`Policy::check_batch_subject`]).
    #[error("a batch holds the records of one subject")]
    MixedSubjects,
}

/// `name` cut to [`SHOWN_NAME`] characters.
pub fn shown(name: &str) -> String {
    name.chars().take(SHOWN_NAME).collect()
}

impl Policy {
    /// Whether a record about `this` may join a batch whose first record is
    /// about `first`: only the same subject. A submission's audit entry
    /// names one subject (as a keyed hash), which is what the subject's
    /// access history and an auditor's search by subject find; a batch
    /// about several subjects would be recorded about none of them, so it
    /// is refused (before anything is stored) and a department submits one
    /// batch per subject.
    pub fn check_batch_subject(
        &self,
        first: &SubjectId,
        this: &SubjectId,
    ) -> Result<(), SubmissionRefusal> {
        if first == this {
            Ok(())
        } else {
            Err(SubmissionRefusal::MixedSubjects)
        }
    }

    /// Decide on one submitted record, in this order: the item exists,
    /// describes the subject's type and is not list-derived; the lifecycle
    /// terms are valid for it on `today`; the record has fields, each a
    /// field of the item with its declared type. Consent-classified fields
    /// are returned in [`AcceptedRecord::personal`]: they need a collection
    /// consent, which the consent layer verifies.
    pub fn check_submission<'p, 'a>(
        &'p self,
        r: &SubmittedRecord<'a>,
        today: Date,
    ) -> Result<AcceptedRecord<'p, 'a>, SubmissionRefusal> {
        let Some((_, item)) = self.item(r.item) else {
            return Err(SubmissionRefusal::UnknownItem(shown(r.item)));
        };
        if item.subject != r.subject {
            return Err(SubmissionRefusal::SubjectTypeMismatch {
                item: item.id.to_string(),
                describes: item.subject,
            });
        }
        if self.list_item_fields(item.id.as_str()).is_some() {
            return Err(SubmissionRefusal::NotSubmittable(item.id.to_string()));
        }
        let terms = self
            .check_terms(item.id.as_str(), r.tier, r.decision_date, r.fields, today)
            .map_err(|error| SubmissionRefusal::Terms {
                item: item.id.to_string(),
                error,
            })?;
        if r.fields.is_empty() {
            return Err(SubmissionRefusal::NoFields);
        }
        let personal = self.check_fields(item, r.fields, true)?;
        Ok(AcceptedRecord {
            item,
            terms,
            personal,
        })
    }

    /// Decide on the corrected version of a record of `item` (an objection
    /// answered `corrected`): fields as for a submission, but no
    /// consent-classified field (a correction carries no consent), and terms
    /// only if given (`None`: the old record's are kept).
    pub fn check_correction(
        &self,
        item: &str,
        fields: &Map<String, Value>,
        tier: Option<&str>,
        decision_date: Option<&str>,
        today: Date,
    ) -> Result<Option<RecordTerms>, SubmissionRefusal> {
        if fields.is_empty() {
            return Err(SubmissionRefusal::NoFields);
        }
        let Some((_, def)) = self.item(item) else {
            // A stored record whose item has left the catalog: none of its
            // fields is a catalog field any more.
            let first = fields.keys().next().map(String::as_str).unwrap_or_default();
            return Err(SubmissionRefusal::UnknownField {
                field: shown(first),
                item: item.to_owned(),
            });
        };
        self.check_fields(def, fields, false)?;
        if tier.is_none() && decision_date.is_none() {
            return Ok(None);
        }
        self.check_terms(item, tier, decision_date, fields, today)
            .map_err(|error| SubmissionRefusal::Terms {
                item: item.to_owned(),
                error,
            })
    }

    /// Every field of `data` is a field of `item` with its declared type;
    /// consent-classified ones are returned, or refused unless
    /// `consent_possible`. The first offending field, in order, decides.
    fn check_fields<'a>(
        &self,
        item: &ItemDef,
        data: &'a Map<String, Value>,
        consent_possible: bool,
    ) -> Result<Vec<&'a str>, SubmissionRefusal> {
        let mut personal = Vec::new();
        for (name, value) in data {
            let def = self
                .field(name)
                .filter(|(_, f)| self.items[f.item].id == item.id);
            let Some((_, def)) = def else {
                return Err(SubmissionRefusal::UnknownField {
                    field: shown(name),
                    item: item.id.to_string(),
                });
            };
            if !def.ty.accepts(value) {
                return Err(SubmissionRefusal::InvalidValue {
                    field: name.clone(),
                    expected: def.ty,
                });
            }
            if self.class_of(def).consent == ConsentNeed::Personal {
                if !consent_possible {
                    return Err(SubmissionRefusal::ConsentRequired(name.clone()));
                }
                personal.push(name.as_str());
            }
        }
        Ok(personal)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::date;

    use super::*;
    use crate::policy::testing::shared;

    const TODAY: Date = date!(2026 - 11 - 23);

    fn value(kind: usize) -> Value {
        match kind {
            0 => json!("text"),
            1 => json!(12.5),
            2 => json!(true),
            3 => json!("2026-05-12"),
            4 => json!("2026-02-30"),
            _ => Value::Null,
        }
    }

    fn record(fields: &[(&str, Value)]) -> Map<String, Value> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn a_batch_holds_one_subject() {
        let p = shared();
        let a = SubjectId::parse("legal_person", "91370300MA3CXQ001R").unwrap();
        let same = SubjectId::parse("legal_person", "91370300MA3CXQ001R").unwrap();
        let b = SubjectId::parse("legal_person", "91370300MA3DFR002A").unwrap();
        let person = SubjectId::parse("natural_person", "370303198503150015").unwrap();
        assert_eq!(p.check_batch_subject(&a, &same), Ok(()));
        for other in [&b, &person] {
            assert_eq!(
                p.check_batch_subject(&a, other),
                Err(SubmissionRefusal::MixedSubjects)
            );
        }
    }

    #[test]
    fn date_values_are_strict() {
        for ok in ["2026-01-01", "2028-02-29"] {
            assert!(ValueType::Date.accepts(&json!(ok)), "{ok}");
        }
        for bad in [
            "+2026-01-01",
            "-0001-01-01",
            "0000-01-01",
            "2026-1-1",
            "2026-02-30",
            "20260101",
        ] {
            assert!(!ValueType::Date.accepts(&json!(bad)), "{bad}");
        }
        assert!(!ValueType::Date.accepts(&json!(20260101)));
    }

    /// Values never change on the way in: no NUL in text, no number that
    /// would be rounded, decimals exactly as sent.
    #[test]
    fn text_numbers_and_decimals_are_exact() {
        use ValueType::{Decimal, Number, String as Text};
        assert!(Text.accepts(&json!("罚款\n第二行\t")));
        for bad in ["a\u{0}b", "\u{0}", "x\u{1b}[31m", "\u{7f}"] {
            assert!(!Text.accepts(&json!(bad)), "{bad:?}");
        }
        let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
        assert!(!Number.accepts(&big), "{big}");
        assert!(!Decimal.accepts(&big));
        let long_fraction: Value = serde_json::from_str("0.12345678901234567").unwrap();
        assert!(!Number.accepts(&long_fraction));
        for ok in [
            "0",
            "-5",
            "18446744073709551615",
            "12.5",
            "1e20",
            "0.000001",
        ] {
            let v: Value = serde_json::from_str(ok).unwrap();
            assert!(Number.accepts(&v), "{ok}");
        }
        for ok in [
            "123456789012345678901234567890",
            "0",
            "-0.5",
            "1234.56",
            "1.12345678",
        ] {
            assert!(Decimal.accepts(&json!(ok)), "{ok}");
        }
        assert!(Decimal.accepts(&json!(1200)));
        assert!(!Decimal.accepts(&json!(12.5)), "a float is not exact");
        for bad in [
            "",
            "-",
            "01",
            "1.",
            ".5",
            "1.123456789",
            "1e3",
            "+1",
            " 1",
            "1,000",
            "١٢",
        ] {
            assert!(!Decimal.accepts(&json!(bad)), "{bad:?}");
        }
        assert!(!Decimal.accepts(&json!("1".repeat(31))));
    }

    #[test]
    fn consent_classified_fields_need_consent_and_corrections_cannot_carry_them() {
        let p = shared();
        let fields = record(&[("monthly_income", json!(9000))]);
        let r = SubmittedRecord {
            subject: SubjectType::NaturalPerson,
            item: "person_income",
            tier: None,
            decision_date: None,
            fields: &fields,
        };
        let ok = p.check_submission(&r, TODAY).unwrap();
        assert_eq!(ok.personal, ["monthly_income"]);
        assert_eq!(ok.item.id.as_str(), "person_income");
        assert_eq!(
            p.check_correction("person_income", &fields, None, None, TODAY),
            Err(SubmissionRefusal::ConsentRequired("monthly_income".into()))
        );
        let long = "x".repeat(300);
        let odd = record(&[(long.as_str(), json!(1))]);
        assert_eq!(
            p.check_submission(&SubmittedRecord { fields: &odd, ..r }, TODAY)
                .map(|a| a.personal),
            Err(SubmissionRefusal::UnknownField {
                field: "x".repeat(SHOWN_NAME),
                item: "person_income".into()
            })
        );
        assert_eq!(
            p.check_submission(
                &SubmittedRecord {
                    item: "list_status",
                    subject: SubjectType::LegalPerson,
                    ..r
                },
                TODAY
            )
            .map(|a| a.personal),
            Err(SubmissionRefusal::NotSubmittable("list_status".into()))
        );
    }

    proptest! {
        /// Whatever is submitted, the decision follows the rules in their
        /// order, an accepted record has only fields of its item with their
        /// declared types, and exactly its consent-classified fields are
        /// the ones that need a consent.
        #[test]
        fn submissions_are_decided_by_the_catalog(
            item_i in 0usize..40,
            natural in any::<bool>(),
            picks in proptest::collection::vec((0usize..80, 0usize..6), 0..6),
            terms in 0usize..4,
        ) {
            let p = shared();
            let items = p.items();
            let item = items.get(item_i).map(|i| i.id.to_string()).unwrap_or_else(|| format!("no_item_{item_i}"));
            let subject = if natural { SubjectType::NaturalPerson } else { SubjectType::LegalPerson };
            let names: Vec<String> = p.fields().iter().map(|f| f.name.to_string()).collect();
            let fields: Map<String, Value> = picks
                .iter()
                .map(|(f, v)| (names.get(*f).cloned().unwrap_or_else(|| format!("stray_{f}")), value(*v)))
                .collect();
            let (tier, date) = [(None, None), (Some("general"), Some("2026-05-12")), (Some("grave"), Some("2026-05-12")), (Some("minor"), None)][terms];
            let r = SubmittedRecord { subject, item: &item, tier, decision_date: date, fields: &fields };
            let got = p.check_submission(&r, TODAY);
            let def = p.item(&item).map(|(_, d)| d);
            let expected_err = match def {
                None => Some(SubmissionRefusal::UnknownItem(item.clone())),
                Some(d) if d.subject != subject => Some(SubmissionRefusal::SubjectTypeMismatch {
                    item: item.clone(),
                    describes: d.subject,
                }),
                Some(_) if p.list_item_fields(&item).is_some() => Some(SubmissionRefusal::NotSubmittable(item.clone())),
                Some(_) => p.check_terms(&item, tier, date, &fields, TODAY).err().map(|error| SubmissionRefusal::Terms { item: item.clone(), error }),
            };
            if let Some(e) = expected_err {
                prop_assert_eq!(got.map(|a| a.personal), Err(e));
                return Ok(());
            }
            let of_item = |name: &str| p.field(name).filter(|(_, f)| p.items()[f.item].id.as_str() == item).map(|(_, f)| f);
            match got {
                Ok(a) => {
                    prop_assert!(!fields.is_empty());
                    for (name, v) in &fields {
                        let f = of_item(name);
                        prop_assert!(f.is_some_and(|f| f.ty.accepts(v)), "{name} = {v}");
                    }
                    let personal: Vec<&str> = fields
                        .keys()
                        .filter(|n| of_item(n).is_some_and(|f| p.class_of(f).consent == ConsentNeed::Personal))
                        .map(String::as_str)
                        .collect();
                    prop_assert_eq!(a.personal, personal);
                    prop_assert_eq!(a.terms, p.check_terms(&item, tier, date, &fields, TODAY).unwrap());
                }
                Err(SubmissionRefusal::NoFields) => prop_assert!(fields.is_empty()),
                Err(SubmissionRefusal::UnknownField { field, .. }) => {
                    let first_bad = fields.iter().find(|(n, v)| !of_item(n).is_some_and(|f| f.ty.accepts(v))).unwrap();
                    prop_assert!(of_item(first_bad.0).is_none());
                    prop_assert_eq!(field, shown(first_bad.0));
                }
                Err(SubmissionRefusal::InvalidValue { field, expected }) => {
                    let first_bad = fields.iter().find(|(n, v)| !of_item(n).is_some_and(|f| f.ty.accepts(v))).unwrap();
                    prop_assert_eq!(&field, first_bad.0);
                    prop_assert_eq!(Some(expected), of_item(first_bad.0).map(|f| f.ty));
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
