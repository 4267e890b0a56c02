//! Lifecycle decisions for credit information: disclosure periods (公示期),
//! credit repair (信用修复), objections (异议) and red/black/focus list status.
//!
//! Everything here is pure, like the rest of `policy`: "today" is an
//! argument, never read from a clock, so every period boundary can be tested
//! exactly and the decision stays sub-microsecond.
//!
//! # Disclosure periods (SPEC §2.8, 国办发〔2025〕22号)
//!
//! A negative record carries a severity [`Tier`] and a decision date. The
//! catalog gives each tier a disclosure period in whole months, within the
//! legal bounds of [`Tier::legal_bounds`]. The record is shared while
//! `today < decision_date + period` (calendar months, the day clamped to the
//! end of a shorter month) and expires *on* that date. A period of 0 months
//! (allowed for minor information) means "not shown at all".
//!
//! # Record states
//!
//! [`Policy::record_state`] folds what the store knows about a record
//! (withdrawn, superseded by a corrected version, repaired, disputed) and the
//! disclosure period into one [`RecordState`]; [`Policy::sharing`] then
//! decides, per caller, whether it is shared and with which status. Precedence:
//! withdrawn > superseded > expired > repaired > disputed > active.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Date, Month};
use toml::Spanned;

use super::load::{LoadError, Source};
use super::{FieldDef, ItemDef, Organisation, Policy, Reason, Role, ValueType};
use crate::ids::{FieldName, SubjectType};

/// Days a providing department has to answer an objection
/// (征信业管理条例 第二十五条: 自收到异议之日起20日内).
pub const OBJECTION_ANSWER_DAYS: i64 = 20;

/// Severity tier of negative information.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// 轻微失信信息.
    Minor,
    /// 一般失信信息.
    General,
    /// 严重失信信息.
    Serious,
}

impl Tier {
    /// All tiers, mildest first.
    pub const ALL: [Tier; 3] = [Tier::Minor, Tier::General, Tier::Serious];

    /// Wire / policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Minor => "minor",
            Tier::General => "general",
            Tier::Serious => "serious",
        }
    }

    /// Parse the wire name (exact, lower case).
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Inclusive bounds, in months, that the law puts on the disclosure
    /// period: minor at most 3 (may be 0: not shown), general 3–12,
    /// serious 12–36. The catalog may choose within them, never outside.
    pub fn legal_bounds(self) -> (u32, u32) {
        match self {
            Tier::Minor => (0, 3),
            Tier::General => (3, 12),
            Tier::Serious => (12, 36),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The catalog's rule for one tier.
#[derive(Clone, Debug)]
pub struct TierRule {
    /// Which tier.
    pub tier: Tier,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Months from the decision date during which the record is shared.
    pub disclosure_months: u32,
    /// Months from the decision date before a repair may be applied for:
    /// the minimum disclosure the law demands before repair.
    pub repair_after_months: u32,
}

/// Lifecycle rules of one negative catalog item.
#[derive(Clone, Debug)]
pub struct ItemRules {
    /// Tier assumed for records stored without one (records that predate
    /// lifecycle tracking, or bulk-loaded sample data).
    pub default_tier: Tier,
    /// A date field of the item that holds the decision date; used for
    /// records stored without an explicit one, and checked for consistency
    /// on submission.
    pub decision_date_field: Option<String>,
    /// Roles that still see a record after an approved repair (flagged
    /// `repaired`); everyone else has it withheld with reason `repaired`.
    pub repaired_visible_to: Vec<Role>,
}

/// Which list a list entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// 守信激励名单.
    Red,
    /// 严重失信主体名单.
    Black,
    /// 重点关注名单.
    Focus,
}

impl ListKind {
    /// All lists.
    pub const ALL: [ListKind; 3] = [ListKind::Red, ListKind::Black, ListKind::Focus];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Red => "red",
            ListKind::Black => "black",
            ListKind::Focus => "focus",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A named bundle of catalog items (e.g. the 信易贷 financing profile), so a
/// caller can ask for a standard view instead of listing fields; the fields
/// still go through the ordinary per-field decision.
#[derive(Clone, Debug)]
pub struct ViewDef {
    /// View id used on the wire.
    pub id: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Subject type it applies to.
    pub subject: SubjectType,
    /// The one purpose it may be used for.
    pub purpose: String,
    /// Item ids, in display order.
    pub items: Vec<String>,
    /// Every field of those items, in catalog order.
    pub fields: Vec<String>,
    /// The at-a-glance summary computed from what was released.
    pub summary: Vec<SummaryDef>,
}

/// One key of a view's summary block.
#[derive(Clone, Debug)]
pub struct SummaryDef {
    /// Key in the `summary` object.
    pub key: String,
    /// How it is computed.
    pub rule: SummaryRule,
}

/// How a summary key is computed from the shared records. Every rule yields
/// `null` when nothing it looks at was released to the caller, so a summary
/// never reveals more than the records next to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SummaryRule {
    /// Number of shared, unrepaired records of the item.
    Count(String),
    /// Whether there is a shared, unrepaired record of the item.
    Any(String),
    /// Whether a shared, unrepaired record of the item has a released
    /// number above zero (or no released number at all).
    AnyPositive(String),
    /// The released boolean field (of a list-derived item).
    Flag(String),
    /// Number of shared records flagged `disputed`.
    Disputed,
}

impl ViewDef {
    /// Compute the summary block. `released` names the fields the caller's
    /// permit releases; `records` are the shared records as
    /// (item, status, released fields).
    pub fn summarise(
        &self,
        policy: &Policy,
        released: &[&str],
        records: &[(&str, RecordStatus, &Map<String, Value>)],
    ) -> Map<String, Value> {
        let touched = |item: &str| {
            released.iter().any(|f| {
                policy
                    .field(f)
                    .is_some_and(|(_, d)| policy.items[d.item].id.as_str() == item)
            })
        };
        let live = |item: &str| -> Vec<&Map<String, Value>> {
            records
                .iter()
                .filter(|(i, st, _)| *i == item && *st != RecordStatus::Repaired)
                .map(|(_, _, f)| *f)
                .collect()
        };
        let mut out = Map::new();
        for s in &self.summary {
            let v = match &s.rule {
                SummaryRule::Count(item) if touched(item) => Value::from(live(item).len()),
                SummaryRule::Any(item) if touched(item) => Value::Bool(!live(item).is_empty()),
                SummaryRule::AnyPositive(item) if touched(item) => {
                    Value::Bool(live(item).iter().any(|f| {
                        let nums: Vec<f64> = f.values().filter_map(Value::as_f64).collect();
                        nums.is_empty() || nums.iter().any(|n| *n > 0.0)
                    }))
                }
                SummaryRule::Flag(field) if released.contains(&field.as_str()) => records
                    .iter()
                    .find_map(|(_, _, f)| f.get(field).cloned())
                    .unwrap_or(Value::Bool(false)),
                SummaryRule::Disputed if !released.is_empty() => Value::from(
                    records
                        .iter()
                        .filter(|(_, st, _)| *st == RecordStatus::Disputed)
                        .count(),
                ),
                _ => Value::Null,
            };
            out.insert(s.key.clone(), v);
        }
        out
    }
}

/// Compiled lifecycle rules (part of [`Policy`]).
#[derive(Clone, Debug, Default)]
pub struct Rules {
    tiers: Vec<TierRule>,
    /// By item index; `Some` exactly for negative items.
    items: Vec<Option<ItemRules>>,
    /// Items derived from the list tables: item index and field → list.
    list_items: Vec<(usize, Vec<(String, ListKind)>)>,
    views: Vec<ViewDef>,
}

/// Tier and decision date as submitted with a negative record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTerms {
    /// Severity tier.
    pub tier: Tier,
    /// Date of the decision the record reports.
    pub decision_date: Date,
}

/// The effective disclosure terms of a negative record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Terms {
    /// Severity tier.
    pub tier: Tier,
    /// Decision date the period counts from.
    #[serde(with = "date_format")]
    pub decision_date: Date,
    /// First day on which the record is no longer shared.
    #[serde(with = "date_format")]
    pub disclosed_until: Date,
    /// False when tier or date were not recorded and the catalog defaults
    /// were applied (records predating lifecycle tracking).
    pub recorded: bool,
}

/// What the store holds about a record's provider-side state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredState {
    /// Current.
    Active,
    /// Withdrawn by its provider after an objection.
    Withdrawn,
    /// Replaced by a corrected version after an objection.
    Superseded,
}

impl StoredState {
    /// Parse the stored text; unknown text is treated as withdrawn, so a
    /// corrupt row is never shared.
    pub fn from_db(s: &str) -> StoredState {
        match s {
            "active" => StoredState::Active,
            "superseded" => StoredState::Superseded,
            _ => StoredState::Withdrawn,
        }
    }
}

/// Everything the lifecycle decision needs to know about one record.
#[derive(Clone, Copy, Debug)]
pub struct RecordFacts<'a> {
    /// Catalog item id.
    pub item: &'a str,
    /// Stored fields (only read for the catalog's decision-date field).
    pub data: &'a Map<String, Value>,
    /// Recorded tier, if any.
    pub tier: Option<Tier>,
    /// Recorded decision date, if any.
    pub decision_date: Option<Date>,
    /// Date the gateway stored it (last-resort start of the period).
    pub recorded_on: Date,
    /// Provider-side state.
    pub stored: StoredState,
    /// An approved repair exists.
    pub repaired: bool,
    /// An objection is open.
    pub disputed: bool,
}

/// A record's state, independent of who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Shared normally.
    Active,
    /// An objection is open: shared, flagged, excluded from punishment.
    Disputed,
    /// Repaired: hidden from most, never triggers checks.
    Repaired,
    /// Past its disclosure period.
    Expired,
    /// Withdrawn by its provider.
    Withdrawn,
    /// Replaced by a corrected version.
    Superseded,
}

impl RecordState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Active => "active",
            RecordState::Disputed => "disputed",
            RecordState::Repaired => "repaired",
            RecordState::Expired => "expired",
            RecordState::Withdrawn => "withdrawn",
            RecordState::Superseded => "superseded",
        }
    }
}

/// Status shown next to a shared record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Nothing to flag.
    Normal,
    /// Under objection (异议处理中).
    Disputed,
    /// Repaired (信用已修复), shown only to roles the catalog names.
    Repaired,
}

/// Whether one record is shared with one caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Shared, with this status.
    Shared(RecordStatus),
    /// Not shared, for this reason.
    Withheld(Reason),
}

/// Why a repair application cannot be accepted now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairRefusal {
    /// Not negative information: there is nothing to repair.
    NotNegative,
    /// The minimum disclosure period has not passed; applications open on
    /// this date.
    TooEarly(Date),
    /// Already past its disclosure period: it is no longer shared anyway.
    Expired,
}

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
/// dates compare correctly as text (no signs, no five-digit years).
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
    Date::parse(s, DATE).ok()
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

impl Policy {
    /// The catalog's rule for `tier`.
    pub fn tier_rule(&self, tier: Tier) -> &TierRule {
        &self.lifecycle.tiers[tier.index()]
    }

    /// Lifecycle rules of a negative item; `None` for any other item.
    pub fn item_rules(&self, item: &str) -> Option<&ItemRules> {
        let (i, _) = self.item(item)?;
        self.lifecycle.items.get(i)?.as_ref()
    }

    /// Whether `item` is derived from the list tables (never submitted).
    pub fn list_item_fields(&self, item: &str) -> Option<&[(String, ListKind)]> {
        let (i, _) = self.item(item)?;
        self.lifecycle
            .list_items
            .iter()
            .find(|(ii, _)| *ii == i)
            .map(|(_, f)| f.as_slice())
    }

    /// Items derived from the list tables for subjects of `subject` type.
    pub fn list_items_for(&self, subject: SubjectType) -> Vec<&str> {
        self.lifecycle
            .list_items
            .iter()
            .filter(|(i, _)| self.items[*i].subject == subject)
            .map(|(i, _)| self.items[*i].id.as_str())
            .collect()
    }

    /// A view by id.
    pub fn view(&self, id: &str) -> Option<&ViewDef> {
        self.lifecycle.views.iter().find(|v| v.id == id)
    }

    /// All views.
    pub fn views(&self) -> &[ViewDef] {
        &self.lifecycle.views
    }

    /// First day on which a record of `tier` decided on `decision_date` is
    /// no longer shared.
    pub fn disclosure_end(&self, tier: Tier, decision_date: Date) -> Date {
        add_months(decision_date, self.tier_rule(tier).disclosure_months)
    }

    /// Whether a record of `tier` decided on `decision_date` is still within
    /// its disclosure period on `today`.
    pub fn is_disclosed(&self, tier: Tier, decision_date: Date, today: Date) -> bool {
        today < self.disclosure_end(tier, decision_date)
    }

    /// Effective terms of a record: recorded tier and date, else the
    /// catalog's default tier and the item's decision-date field, else the
    /// date it was stored. `None` for items that are not negative.
    pub fn terms(&self, facts: &RecordFacts<'_>) -> Option<Terms> {
        let rules = self.item_rules(facts.item)?;
        let tier = facts.tier.unwrap_or(rules.default_tier);
        let decision_date = facts
            .decision_date
            .or_else(|| {
                let f = rules.decision_date_field.as_deref()?;
                parse_date(facts.data.get(f)?.as_str()?)
            })
            .unwrap_or(facts.recorded_on);
        Some(Terms {
            tier,
            decision_date,
            disclosed_until: self.disclosure_end(tier, decision_date),
            recorded: facts.tier.is_some() && facts.decision_date.is_some(),
        })
    }

    /// The record's state on `today`, independent of the caller.
    pub fn record_state(&self, facts: &RecordFacts<'_>, today: Date) -> RecordState {
        match facts.stored {
            StoredState::Withdrawn => return RecordState::Withdrawn,
            StoredState::Superseded => return RecordState::Superseded,
            StoredState::Active => {}
        }
        let terms = self.terms(facts);
        if let Some(t) = terms {
            if today >= t.disclosed_until {
                return RecordState::Expired;
            }
            if facts.repaired {
                return RecordState::Repaired;
            }
        }
        if facts.disputed {
            RecordState::Disputed
        } else {
            RecordState::Active
        }
    }

    /// Whether a record of `item` in `state` is shared with `org`, and how.
    /// Expired, withdrawn and superseded records are shared with nobody;
    /// a repaired one only with the roles the catalog names (never credit
    /// agencies: the loader refuses that).
    pub fn sharing(&self, org: &Organisation, item: &str, state: RecordState) -> Sharing {
        match state {
            RecordState::Active => Sharing::Shared(RecordStatus::Normal),
            RecordState::Disputed => Sharing::Shared(RecordStatus::Disputed),
            RecordState::Repaired => {
                let visible = self
                    .item_rules(item)
                    .is_some_and(|r| org.roles.iter().any(|x| r.repaired_visible_to.contains(x)));
                if visible {
                    Sharing::Shared(RecordStatus::Repaired)
                } else {
                    Sharing::Withheld(Reason::Repaired)
                }
            }
            RecordState::Expired => Sharing::Withheld(Reason::Expired),
            RecordState::Withdrawn => Sharing::Withheld(Reason::Withdrawn),
            RecordState::Superseded => Sharing::Withheld(Reason::Superseded),
        }
    }

    /// Whether a repair of the record may be applied for on `today`: it must
    /// be negative, still disclosed, and past the tier's minimum disclosure.
    pub fn repair_eligibility(
        &self,
        facts: &RecordFacts<'_>,
        today: Date,
    ) -> Result<Terms, RepairRefusal> {
        let terms = self.terms(facts).ok_or(RepairRefusal::NotNegative)?;
        if today >= terms.disclosed_until {
            return Err(RepairRefusal::Expired);
        }
        let opens = add_months(
            terms.decision_date,
            self.tier_rule(terms.tier).repair_after_months,
        );
        if today < opens {
            return Err(RepairRefusal::TooEarly(opens));
        }
        Ok(terms)
    }

    /// Last day for the provider to answer an objection filed on `filed_on`.
    pub fn objection_due(filed_on: Date) -> Date {
        filed_on
            .checked_add(time::Duration::days(OBJECTION_ANSWER_DAYS))
            .unwrap_or(Date::MAX)
    }

    /// Validate a submission's tier and decision date against the catalog
    /// and `today`: required on negative items, refused elsewhere, the date
    /// real, not in the future, and equal to the item's decision-date field
    /// when the record carries it.
    pub fn check_terms(
        &self,
        item: &str,
        tier: Option<&str>,
        decision_date: Option<&str>,
        data: &Map<String, Value>,
        today: Date,
    ) -> Result<Option<RecordTerms>, TermsError> {
        let Some(rules) = self.item_rules(item) else {
            return if tier.is_some() || decision_date.is_some() {
                Err(TermsError::NotNegative)
            } else {
                Ok(None)
            };
        };
        let (Some(tier), Some(date)) = (tier, decision_date) else {
            return Err(TermsError::Missing);
        };
        let tier = Tier::parse(tier).ok_or(TermsError::UnknownTier)?;
        let date = parse_date(date).ok_or(TermsError::BadDate)?;
        if date > today {
            return Err(TermsError::FutureDate);
        }
        if let Some(f) = rules.decision_date_field.as_deref()
            && let Some(v) = data.get(f)
            && v.as_str().and_then(parse_date) != Some(date)
        {
            return Err(TermsError::Mismatch(f.to_owned()));
        }
        Ok(Some(RecordTerms {
            tier,
            decision_date: date,
        }))
    }
}

/// Why a submission's lifecycle terms are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermsError {
    /// Negative item without tier or decision date.
    Missing,
    /// Tier or decision date on an item that is not negative.
    NotNegative,
    /// Tier not one of minor, general, serious.
    UnknownTier,
    /// Decision date is not a real `YYYY-MM-DD` date.
    BadDate,
    /// Decision date after today.
    FutureDate,
    /// Decision date differs from the item's own date field (named).
    Mismatch(String),
}

// ------------------------------------------------------------------ loading

/// `[[tier]]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TierToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
    disclosure_months: Spanned<u32>,
    repair_after_months: Spanned<u32>,
}

/// `[repair]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RepairToml {
    visible_to: Vec<Spanned<String>>,
}

/// `[[view]]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ViewToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
    subject: Spanned<String>,
    purpose: Spanned<String>,
    items: Vec<Spanned<String>>,
    #[serde(default)]
    summary: Vec<SummaryToml>,
}

/// `[[view.summary]]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SummaryToml {
    key: Spanned<String>,
    rule: Spanned<String>,
    #[serde(default)]
    item: Option<Spanned<String>>,
    #[serde(default)]
    field: Option<Spanned<String>>,
}

/// Lifecycle keys of one `[[item]]`, with the span of its id.
pub(super) struct ItemLcToml {
    pub(super) id_span: std::ops::Range<usize>,
    pub(super) default_tier: Option<Spanned<String>>,
    pub(super) decision_date_field: Option<Spanned<String>>,
    pub(super) repaired_visible_to: Option<Vec<Spanned<String>>>,
    pub(super) derived_from: Option<Spanned<String>>,
}

fn roles_of(src: &Source, list: &[Spanned<String>], what: &str) -> Result<Vec<Role>, LoadError> {
    let mut out = Vec::new();
    for r in list {
        let Some(role) = Role::ALL.into_iter().find(|x| x.as_str() == r.get_ref()) else {
            return src.err(r.span(), format!("unknown role '{}'", r.get_ref()));
        };
        match role {
            Role::CreditAgency => {
                return src.err(
                    r.span(),
                    format!("{what}: credit agencies never see repaired negative information (SPEC §2.8)"),
                );
            }
            Role::Auditor => {
                return src.err(r.span(), format!("{what}: auditors never see credit data"));
            }
            _ => {}
        }
        if out.contains(&role) {
            return src.err(r.span(), format!("role '{}' listed twice", r.get_ref()));
        }
        out.push(role);
    }
    Ok(out)
}

/// The top-level lifecycle tables of catalog.toml.
pub(super) struct LifecycleToml {
    pub(super) tiers: Vec<TierToml>,
    pub(super) repair: Option<RepairToml>,
    pub(super) views: Vec<ViewToml>,
}

/// Compile the lifecycle parts of catalog.toml.
pub(super) fn compile(
    src: &Source,
    toml: LifecycleToml,
    item_lc: Vec<ItemLcToml>,
    items: &[ItemDef],
    fields: &[FieldDef],
    purposes: &HashMap<String, usize>,
) -> Result<Rules, LoadError> {
    let LifecycleToml {
        tiers,
        repair,
        views,
    } = toml;
    let mut tier_rules: Vec<Option<TierRule>> = vec![None; 3];
    for t in tiers {
        let Some(tier) = Tier::parse(t.id.get_ref()) else {
            return src.err(
                t.id.span(),
                format!(
                    "unknown tier '{}' (minor, general, serious)",
                    t.id.get_ref()
                ),
            );
        };
        if tier_rules[tier.index()].is_some() {
            return src.err(
                t.id.span(),
                format!("tier '{}' declared twice", tier.as_str()),
            );
        }
        let (lo, hi) = tier.legal_bounds();
        let months = *t.disclosure_months.get_ref();
        if !(lo..=hi).contains(&months) {
            return src.err(
                t.disclosure_months.span(),
                format!(
                    "disclosure_months for '{}' must be within {lo}..={hi} (国办发〔2025〕22号)",
                    tier.as_str()
                ),
            );
        }
        let repair_after = *t.repair_after_months.get_ref();
        if !(lo..=months).contains(&repair_after) {
            return src.err(
                t.repair_after_months.span(),
                format!(
                    "repair_after_months for '{}' must be within {lo}..={months} (the legal minimum up to the disclosure period)",
                    tier.as_str()
                ),
            );
        }
        tier_rules[tier.index()] = Some(TierRule {
            tier,
            label_zh: t.label_zh,
            label_en: t.label_en,
            disclosure_months: months,
            repair_after_months: repair_after,
        });
    }
    let default_visible = match &repair {
        Some(r) => roles_of(src, &r.visible_to, "[repair] visible_to")?,
        None => Vec::new(),
    };
    let any_negative = items.iter().any(|i| i.negative);
    let tiers: Vec<TierRule> = if tier_rules.iter().all(Option::is_some) {
        tier_rules.into_iter().flatten().collect()
    } else if any_negative || tier_rules.iter().any(Option::is_some) {
        let missing: Vec<&str> = Tier::ALL
            .into_iter()
            .filter(|t| tier_rules[t.index()].is_none())
            .map(Tier::as_str)
            .collect();
        return Err(LoadError {
            file: src.path.clone(),
            line: None,
            message: format!(
                "negative items need a [[tier]] table for each of minor, general and serious; missing: {}",
                missing.join(", ")
            ),
        });
    } else {
        // No negative items and no tiers: a catalog without lifecycle.
        Tier::ALL
            .into_iter()
            .map(|tier| TierRule {
                tier,
                label_zh: String::new(),
                label_en: String::new(),
                disclosure_months: tier.legal_bounds().1,
                repair_after_months: tier.legal_bounds().0,
            })
            .collect()
    };

    let mut item_rules = Vec::with_capacity(items.len());
    let mut list_items = Vec::new();
    for (ii, (item, lc)) in items.iter().zip(item_lc).enumerate() {
        if let Some(d) = &lc.derived_from {
            if d.get_ref() != "lists" {
                return src.err(
                    d.span(),
                    format!("unknown derived_from '{}' (lists)", d.get_ref()),
                );
            }
            if item.negative || lc.default_tier.is_some() || lc.decision_date_field.is_some() {
                return src.err(
                    d.span(),
                    "an item derived from the lists cannot be negative or carry tier rules",
                );
            }
            let mut map = Vec::new();
            for &fi in &item.fields {
                let f = &fields[fi];
                let kind = ListKind::ALL
                    .into_iter()
                    .find(|k| f.name.as_str().ends_with(&format!("{}_listed", k.as_str())));
                let Some(kind) = kind else {
                    return src.err(
                        d.span(),
                        format!(
                            "field '{}' of a list-derived item must end in red_listed, black_listed or focus_listed",
                            f.name
                        ),
                    );
                };
                if f.ty != ValueType::Bool {
                    return src.err(
                        d.span(),
                        format!("list field '{}' must be of type bool", f.name),
                    );
                }
                if map.iter().any(|(_, k)| *k == kind) {
                    return src.err(
                        d.span(),
                        format!(
                            "two fields of item '{}' report the {} list",
                            item.id,
                            kind.as_str()
                        ),
                    );
                }
                map.push((f.name.to_string(), kind));
            }
            list_items.push((ii, map));
        }
        if !item.negative {
            let stray = lc
                .default_tier
                .as_ref()
                .map(|s| s.span())
                .or(lc.decision_date_field.as_ref().map(|s| s.span()))
                .or(lc
                    .repaired_visible_to
                    .as_ref()
                    .and_then(|v| v.first())
                    .map(|s| s.span()));
            if let Some(span) = stray {
                return src.err(
                    span,
                    format!("item '{}' is not negative; tier and repair rules apply only to negative items", item.id),
                );
            }
            item_rules.push(None);
            continue;
        }
        let Some(dt) = &lc.default_tier else {
            return src.err(
                lc.id_span.clone(),
                format!(
                    "negative item '{}' needs a default_tier (minor, general, serious)",
                    item.id
                ),
            );
        };
        let Some(default_tier) = Tier::parse(dt.get_ref()) else {
            return src.err(
                dt.span(),
                format!("unknown tier '{}' (minor, general, serious)", dt.get_ref()),
            );
        };
        let decision_date_field = match &lc.decision_date_field {
            None => None,
            Some(f) => {
                let ok = item.fields.iter().any(|&fi| {
                    fields[fi].name.as_str() == f.get_ref() && fields[fi].ty == ValueType::Date
                });
                if !ok {
                    return src.err(
                        f.span(),
                        format!(
                            "decision_date_field '{}' is not a date field of item '{}'",
                            f.get_ref(),
                            item.id
                        ),
                    );
                }
                Some(f.get_ref().clone())
            }
        };
        let repaired_visible_to = match &lc.repaired_visible_to {
            Some(v) => roles_of(src, v, "repaired_visible_to")?,
            None => default_visible.clone(),
        };
        item_rules.push(Some(ItemRules {
            default_tier,
            decision_date_field,
            repaired_visible_to,
        }));
    }

    let mut view_defs: Vec<ViewDef> = Vec::new();
    for v in views {
        if FieldName::parse(v.id.get_ref()).is_err() {
            return src.err(
                v.id.span(),
                format!("view id '{}' is not snake_case", v.id.get_ref()),
            );
        }
        if view_defs.iter().any(|x| &x.id == v.id.get_ref()) {
            return src.err(
                v.id.span(),
                format!("view '{}' declared twice", v.id.get_ref()),
            );
        }
        let subject = SubjectType::parse(v.subject.get_ref()).or_else(|_| {
            src.err(
                v.subject.span(),
                format!(
                    "unknown subject type '{}' (legal_person, natural_person)",
                    v.subject.get_ref()
                ),
            )
        })?;
        if !purposes.contains_key(v.purpose.get_ref()) {
            return src.err(
                v.purpose.span(),
                format!("unknown purpose '{}'", v.purpose.get_ref()),
            );
        }
        if v.items.is_empty() {
            return src.err(v.id.span(), "a view names at least one item");
        }
        let mut view_items = Vec::new();
        let mut view_fields = Vec::new();
        for it in &v.items {
            let Some(item) = items.iter().find(|i| i.id.as_str() == it.get_ref()) else {
                return src.err(it.span(), format!("unknown item '{}'", it.get_ref()));
            };
            if item.subject != subject {
                return src.err(
                    it.span(),
                    format!(
                        "item '{}' describes a {}, not a {}",
                        item.id,
                        item.subject.as_str(),
                        subject.as_str()
                    ),
                );
            }
            if view_items.contains(it.get_ref()) {
                return src.err(it.span(), format!("item '{}' listed twice", it.get_ref()));
            }
            view_items.push(it.get_ref().clone());
            view_fields.extend(item.fields.iter().map(|&fi| fields[fi].name.to_string()));
        }
        let mut summary: Vec<SummaryDef> = Vec::new();
        for sm in v.summary {
            if FieldName::parse(sm.key.get_ref()).is_err()
                || summary.iter().any(|x| &x.key == sm.key.get_ref())
            {
                return src.err(
                    sm.key.span(),
                    format!(
                        "summary key '{}' is not snake_case or is declared twice",
                        sm.key.get_ref()
                    ),
                );
            }
            let item = |req: bool| -> Result<Option<String>, LoadError> {
                match (&sm.item, req) {
                    (Some(i), true) if view_items.contains(i.get_ref()) => {
                        Ok(Some(i.get_ref().clone()))
                    }
                    (Some(i), true) => src.err(
                        i.span(),
                        format!("summary item '{}' is not an item of this view", i.get_ref()),
                    ),
                    (None, true) => src.err(
                        sm.rule.span(),
                        format!("summary rule '{}' needs an item", sm.rule.get_ref()),
                    ),
                    (Some(i), false) => src.err(
                        i.span(),
                        format!("summary rule '{}' takes no item", sm.rule.get_ref()),
                    ),
                    (None, false) => Ok(None),
                }
            };
            let rule = match sm.rule.get_ref().as_str() {
                r @ ("count" | "any" | "any_positive") => {
                    if let Some(f) = &sm.field {
                        return src.err(f.span(), format!("summary rule '{r}' takes no field"));
                    }
                    let i = item(true)?.unwrap_or_default();
                    match r {
                        "count" => SummaryRule::Count(i),
                        "any" => SummaryRule::Any(i),
                        _ => SummaryRule::AnyPositive(i),
                    }
                }
                "flag" => {
                    item(false)?;
                    let Some(f) = &sm.field else {
                        return src.err(sm.rule.span(), "summary rule 'flag' needs a field");
                    };
                    let ok = fields.iter().any(|d| {
                        d.name.as_str() == f.get_ref()
                            && d.ty == ValueType::Bool
                            && view_items.iter().any(|i| i == items[d.item].id.as_str())
                    });
                    if !ok {
                        return src.err(
                            f.span(),
                            format!(
                                "summary field '{}' is not a bool field of this view",
                                f.get_ref()
                            ),
                        );
                    }
                    SummaryRule::Flag(f.get_ref().clone())
                }
                "disputed" => {
                    item(false)?;
                    if let Some(f) = &sm.field {
                        return src.err(f.span(), "summary rule 'disputed' takes no field");
                    }
                    SummaryRule::Disputed
                }
                other => {
                    return src.err(
                        sm.rule.span(),
                        format!("unknown summary rule '{other}' (count, any, any_positive, flag, disputed)"),
                    );
                }
            };
            summary.push(SummaryDef {
                key: sm.key.into_inner(),
                rule,
            });
        }
        view_defs.push(ViewDef {
            summary,
            id: v.id.into_inner(),
            label_zh: v.label_zh,
            label_en: v.label_en,
            subject,
            purpose: v.purpose.into_inner(),
            items: view_items,
            fields: view_fields,
        });
    }

    Ok(Rules {
        tiers,
        items: item_rules,
        list_items,
        views: view_defs,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;
    use time::macros::date;

    use super::*;
    use crate::ids::CreditCode;
    use crate::policy::load;

    fn sample() -> Policy {
        load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            b"k",
        )
        .unwrap()
    }

    fn org(p: &Policy, code: &str) -> Organisation {
        p.organisation(&CreditCode::parse(code).unwrap())
            .unwrap()
            .clone()
    }

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

    /// A copy of `policies/` with one file's text replaced, loaded.
    pub(crate) fn load_patched(file: &str, from: &str, to: &str) -> Result<Policy, LoadError> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "credgate-lc-policy-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let e = e.unwrap();
            let mut text = std::fs::read_to_string(e.path()).unwrap();
            if e.file_name() == file {
                assert!(text.contains(from), "patch target not found: {from}");
                text = text.replacen(from, to, 1);
            }
            std::fs::write(dir.join(e.file_name()), text).unwrap();
        }
        let r = load(&dir, b"k");
        let _ = std::fs::remove_dir_all(&dir);
        r
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
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
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
        assert!(p.item_rules("list_status").is_none());
    }

    #[test]
    fn summary_is_null_for_what_was_not_released() {
        let p = sample();
        let v = p.view("financing_profile").unwrap();
        let pen: Map<String, Value> = serde_json::from_str(r#"{"penalty_content": "x"}"#).unwrap();
        let arr: Map<String, Value> = serde_json::from_str(
            r#"{"tax_arrears_amount": 0, "social_insurance_arrears_amount": 0}"#,
        )
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

    #[test]
    fn loader_refuses_bad_lifecycle_rules() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "catalog.toml",
                "disclosure_months = 12\n",
                "disclosure_months = 13\n",
                "within 3..=12",
            ),
            (
                "catalog.toml",
                "disclosure_months = 36",
                "disclosure_months = 11",
                "within 12..=36",
            ),
            (
                "catalog.toml",
                "repair_after_months = 12",
                "repair_after_months = 6",
                "repair_after_months",
            ),
            (
                "catalog.toml",
                "visible_to = [\"department\", \"portal\"]",
                "visible_to = [\"credit_agency\"]",
                "credit agencies never see",
            ),
            (
                "catalog.toml",
                "visible_to = [\"department\", \"portal\"]",
                "visible_to = [\"auditor\"]",
                "auditors never see",
            ),
            (
                "catalog.toml",
                "default_tier = \"general\"\n",
                "",
                "needs a default_tier",
            ),
            (
                "catalog.toml",
                "default_tier = \"general\"\n",
                "default_tier = \"grave\"\n",
                "unknown tier",
            ),
            (
                "catalog.toml",
                "decision_date_field = \"penalty_date\"",
                "decision_date_field = \"penalty_content\"",
                "not a date field",
            ),
            (
                "catalog.toml",
                "subject = \"legal_person\"\n\n[[item.field]]\nname = \"enterprise_name\"",
                "subject = \"legal_person\"\ndefault_tier = \"minor\"\n\n[[item.field]]\nname = \"enterprise_name\"",
                "not negative",
            ),
            (
                "catalog.toml",
                "id = \"serious\"",
                "id = \"grave\"",
                "unknown tier",
            ),
            (
                "catalog.toml",
                "subject = \"legal_person\"\nderived_from = \"lists\"",
                "subject = \"legal_person\"\nderived_from = \"rumours\"",
                "unknown derived_from",
            ),
            (
                "catalog.toml",
                "items = [\"registration\"",
                "items = [\"person_basic\"",
                "describes a natural_person",
            ),
            (
                "catalog.toml",
                "purpose = \"financing\"",
                "purpose = \"gossip\"",
                "unknown purpose",
            ),
            (
                "catalog.toml",
                "disclosure_months = 3\n",
                "disclosure_months = 3\nshown = true\n",
                "unknown field",
            ),
            (
                "catalog.toml",
                "rule = \"count\"",
                "rule = \"average\"",
                "unknown summary rule",
            ),
            (
                "catalog.toml",
                "item = \"admin_penalty\"",
                "item = \"person_basic\"",
                "not an item of this view",
            ),
            (
                "catalog.toml",
                "field = \"black_listed\"",
                "field = \"enterprise_name\"",
                "not a bool field",
            ),
        ];
        for (file, from, to, needle) in cases {
            let Err(e) = load_patched(file, from, to) else {
                panic!("{needle}: loaded");
            };
            assert!(e.message.contains(needle), "{needle}: {e}");
            assert!(
                e.line.is_some() || needle.contains("missing"),
                "{needle}: no line in {e}"
            );
        }
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
}
