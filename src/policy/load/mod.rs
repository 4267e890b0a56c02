//! Strict loading of `policies/`.
//!
//! Files (all TOML):
//!
//! | file | holds |
//! |---|---|
//! | `organisations.toml` | `[[organisation]]` code, name, roles, optional `quota_distinct_subjects_per_hour` |
//! | `purposes.toml` | `[[purpose]]` the closed list of query purposes |
//! | `catalog.toml` | `[[classification]]` tags; `[[item]]` with `[[item.field]]` |
//! | `grants.toml` | `[[grant]]` role × purpose × (class or field) → action |
//! | `prohibited.toml` | `[[category]]` additions to the compiled-in floor |
//! | `access.toml` | `[endpoints]` which roles may call which endpoint ([`super::access`], compiled by `load/access.rs`) |
//! | `measures.toml` | `[[matter]]` and `[[measure]]`: the joint reward-and-punishment list ([`super::measures`], compiled by `load/measures.rs`) |
//!
//! catalog.toml also holds the lifecycle rules ([`super::lifecycle`], compiled by
//! `load/lifecycle.rs`):
//! `[[tier]]` disclosure periods, `[repair]` visibility, `[[view]]` bundles,
//! and per negative item `default_tier`, `decision_date_field`,
//! `repaired_visible_to`; `derived_from = "lists"` marks the list-status item.
//!
//! Anything unexpected is a [`LoadError`] naming the file and line: unknown
//! keys, unknown roles, purposes, tags or subject types, duplicates, a catalog
//! field in a prohibited category, a natural-person field of a consent
//! category (income, deposits, …) that is not consent-classified, a grant that
//! would expose a prohibited field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::mask::MaskKey;
use super::prohibited::{self, Category};
use super::{
    Action, Classification, ConsentNeed, FastMap, FieldDef, ItemDef, MaskKind, Organisation,
    Policy, PurposeDef, Role, ValueType,
};
use crate::ids::{CreditCode, FieldName, ItemId, Purpose, SubjectType};

mod access;
mod lifecycle;
mod measures;

/// A policy file that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The offending file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, for the person editing the file.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file.display(), l, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// The six consent categories of 征信业管理条例 第十四条 with aliases used
/// to catch a natural-person field that tries to dodge consent.
pub const CONSENT_CATEGORIES: &[(&str, &str, &[&str])] = &[
    (
        "income",
        "收入",
        &["income", "salary", "wage", "wages", "收入", "工资"],
    ),
    ("deposits", "存款", &["deposit", "deposits", "存款"]),
    (
        "securities",
        "有价证券",
        &["securities", "stock_holding", "有价证券", "证券"],
    ),
    (
        "commercial_insurance",
        "商业保险",
        &["commercial_insurance", "商业保险"],
    ),
    (
        "real_estate",
        "不动产",
        &["real_estate", "property_ownership", "不动产", "房产"],
    ),
    (
        "tax_amount",
        "纳税数额",
        &["tax_amount", "tax_paid", "纳税", "纳税数额"],
    ),
];

pub(super) struct Source {
    pub(super) path: PathBuf,
    text: String,
}

impl Source {
    pub(super) fn read(dir: &Path, name: &str) -> Result<Self, LoadError> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError {
            file: path.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Source { path, text })
    }

    pub(super) fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, LoadError> {
        toml::from_str(&self.text).map_err(|e| LoadError {
            file: self.path.clone(),
            line: e.span().map(|s| self.line_of(s.start)),
            message: e.message().trim().to_owned(),
        })
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    pub(super) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, LoadError> {
        Err(LoadError {
            file: self.path.clone(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgFile {
    #[serde(default)]
    organisation: Vec<OrgToml>,
    /// Role → quota of distinct subjects per hour, for organisations that
    /// set none of their own.
    #[serde(default)]
    role_quota: std::collections::BTreeMap<String, Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgToml {
    code: Spanned<String>,
    name: String,
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    quota_distinct_subjects_per_hour: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeFile {
    #[serde(default)]
    purpose: Vec<PurposeToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeToml {
    name: Spanned<String>,
    label_zh: String,
    label_en: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    classification: Vec<ClassToml>,
    #[serde(default)]
    item: Vec<ItemToml>,
    #[serde(default)]
    tier: Vec<lifecycle::TierToml>,
    #[serde(default)]
    repair: Option<lifecycle::RepairToml>,
    #[serde(default)]
    view: Vec<lifecycle::ViewToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassToml {
    tag: Spanned<String>,
    label_zh: String,
    label_en: String,
    #[serde(default)]
    consent: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
    subject: Spanned<String>,
    #[serde(default)]
    negative: bool,
    #[serde(default)]
    default_tier: Option<Spanned<String>>,
    #[serde(default)]
    decision_date_field: Option<Spanned<String>>,
    #[serde(default)]
    repaired_visible_to: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    derived_from: Option<Spanned<String>>,
    #[serde(default)]
    field: Vec<FieldToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldToml {
    name: Spanned<String>,
    label_zh: String,
    label_en: String,
    class: Spanned<String>,
    #[serde(rename = "type", default)]
    ty: Option<Spanned<String>>,
    #[serde(default)]
    consent_category: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    #[serde(default)]
    grant: Vec<GrantToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantToml {
    role: Spanned<String>,
    purpose: Spanned<String>,
    #[serde(default)]
    class: Option<Spanned<String>>,
    #[serde(default)]
    field: Option<Spanned<String>>,
    action: Spanned<String>,
    #[serde(default)]
    mask: Option<Spanned<String>>,
    #[serde(default)]
    keep_first: Option<u8>,
    #[serde(default)]
    keep_last: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProhibitedFile {
    #[serde(default)]
    category: Vec<CategoryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
    #[serde(default)]
    aliases: Vec<String>,
}

fn role(s: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.as_str() == s)
}

/// Load and compile `dir`. `mask_key` keys the `hash` mask, as key id
/// `k1` (tools and tests; the gateway names its key: [`load_with_mask`]).
pub fn load(dir: &Path, mask_key: &[u8]) -> Result<Policy, LoadError> {
    load_with_mask(dir, MaskKey::new(credlog::entry::LEGACY_KEY_ID, mask_key))
}

/// Load and compile `dir`; `mask_key` keys the `hash` mask.
pub fn load_with_mask(dir: &Path, mask_key: MaskKey) -> Result<Policy, LoadError> {
    // Prohibited first: every other file is checked against it.
    let src = Source::read(dir, "prohibited.toml")?;
    let pf: ProhibitedFile = src.parse()?;
    let mut extra = Vec::new();
    for c in pf.category {
        if FieldName::parse(c.id.get_ref()).is_err() {
            return src.err(
                c.id.span(),
                format!("category id '{}' is not snake_case", c.id.get_ref()),
            );
        }
        extra.push(Category {
            id: c.id.into_inner(),
            label_zh: c.label_zh,
            label_en: c.label_en,
            aliases: c.aliases,
        });
    }
    let prohibited = prohibited::Prohibited::compile(extra);

    // Organisations.
    let src = Source::read(dir, "organisations.toml")?;
    let of: OrgFile = src.parse()?;
    let quota_of = |q: &Spanned<i64>| match u32::try_from(*q.get_ref()) {
        Ok(n) if n > 0 => Ok(n),
        _ => src.err(
            q.span(),
            "quota_distinct_subjects_per_hour must be between 1 and 4294967295",
        ),
    };
    let mut role_quota: HashMap<Role, u32> = HashMap::new();
    for (name, q) in &of.role_quota {
        let Some(r) = role(name) else {
            return src.err(
                q.span(),
                format!(
                    "role_quota: unknown role '{name}' (known: department, bank, credit_agency, auditor, portal)"
                ),
            );
        };
        role_quota.insert(r, quota_of(q)?);
    }
    let mut orgs = FastMap::default();
    for o in of.organisation {
        let code = CreditCode::parse(o.code.get_ref()).or_else(|e| {
            src.err(
                o.code.span(),
                format!("organisation code '{}': {e}", o.code.get_ref()),
            )
        })?;
        let mut roles = Vec::new();
        for r in &o.roles {
            match role(r.get_ref()) {
                Some(x) if !roles.contains(&x) => roles.push(x),
                Some(_) => {
                    return src.err(r.span(), format!("role '{}' listed twice", r.get_ref()));
                }
                None => {
                    return src.err(
                        r.span(),
                        format!(
                            "unknown role '{}' (known: department, bank, credit_agency, auditor, portal)",
                            r.get_ref()
                        ),
                    );
                }
            }
        }
        if roles.is_empty() {
            return src.err(o.code.span(), "organisation has no roles");
        }
        if orgs.contains_key(&code) {
            return src.err(
                o.code.span(),
                format!("organisation '{code}' declared twice"),
            );
        }
        // Its own quota, else the strictest of its roles' quotas.
        let quota = match &o.quota_distinct_subjects_per_hour {
            Some(q) => Some(quota_of(q)?),
            None => roles
                .iter()
                .filter_map(|r| role_quota.get(r).copied())
                .min(),
        };
        orgs.insert(
            code.clone(),
            Organisation {
                code,
                name: o.name,
                roles,
                quota_distinct_subjects_per_hour: quota,
            },
        );
    }

    // Purposes.
    let src = Source::read(dir, "purposes.toml")?;
    let pf: PurposeFile = src.parse()?;
    let mut purposes = Vec::new();
    let mut purpose_index = FastMap::default();
    for p in pf.purpose {
        let name =
            Purpose::parse(p.name.get_ref()).or_else(|e| src.err(p.name.span(), e.to_string()))?;
        if purpose_index
            .insert(name.as_str().to_owned(), purposes.len())
            .is_some()
        {
            return src.err(p.name.span(), format!("purpose '{name}' declared twice"));
        }
        purposes.push(PurposeDef {
            name,
            label_zh: p.label_zh,
            label_en: p.label_en,
        });
    }

    // Catalog.
    let src = Source::read(dir, "catalog.toml")?;
    let cf: CatalogFile = src.parse()?;
    let mut classes = Vec::new();
    let mut class_index = HashMap::new();
    for c in cf.classification {
        let consent = match c.consent.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("none") => ConsentNeed::None,
            Some("personal") => ConsentNeed::Personal,
            Some("enterprise") => ConsentNeed::Enterprise,
            Some(other) => {
                let span = c.consent.as_ref().map(|s| s.span()).unwrap_or(c.tag.span());
                return src.err(
                    span,
                    format!("unknown consent kind '{other}' (none, personal, enterprise)"),
                );
            }
        };
        if FieldName::parse(c.tag.get_ref()).is_err() {
            return src.err(
                c.tag.span(),
                format!("tag '{}' is not snake_case", c.tag.get_ref()),
            );
        }
        if let Some(cat) = prohibited.classify(c.tag.get_ref()) {
            return src.err(
                c.tag.span(),
                format!(
                    "classification '{}' names prohibited category '{}'",
                    c.tag.get_ref(),
                    cat.id
                ),
            );
        }
        if class_index
            .insert(c.tag.get_ref().clone(), classes.len())
            .is_some()
        {
            return src.err(
                c.tag.span(),
                format!("tag '{}' declared twice", c.tag.get_ref()),
            );
        }
        classes.push(Classification {
            tag: c.tag.into_inner(),
            label_zh: c.label_zh,
            label_en: c.label_en,
            consent,
        });
    }
    let mut items = Vec::new();
    let mut item_index = FastMap::default();
    let mut fields: Vec<FieldDef> = Vec::new();
    let mut field_index = FastMap::default();
    let mut item_lc = Vec::new();
    for it in cf.item {
        item_lc.push(lifecycle::ItemLcToml {
            id_span: it.id.span(),
            default_tier: it.default_tier,
            decision_date_field: it.decision_date_field,
            repaired_visible_to: it.repaired_visible_to,
            derived_from: it.derived_from,
        });
        let id =
            ItemId::parse(it.id.get_ref()).or_else(|e| src.err(it.id.span(), e.to_string()))?;
        let subject = SubjectType::parse(it.subject.get_ref()).or_else(|_| {
            src.err(
                it.subject.span(),
                format!(
                    "unknown subject type '{}' (legal_person, natural_person)",
                    it.subject.get_ref()
                ),
            )
        })?;
        if item_index
            .insert(id.as_str().to_owned(), items.len())
            .is_some()
        {
            return src.err(it.id.span(), format!("item '{id}' declared twice"));
        }
        let mut member = Vec::new();
        for f in it.field {
            // The prohibited floor first, on the raw name: an official must
            // read "prohibited", not a syntax complaint, for `ｆｉｎｇｅｒｐｒｉｎｔ`.
            let raw = f.name.get_ref();
            for label in [raw.as_str(), f.label_zh.as_str(), f.label_en.as_str()] {
                if let Some(cat) = prohibited.classify(label) {
                    return src.err(
                        f.name.span(),
                        format!(
                            "field '{raw}' ('{label}') falls in prohibited category '{}' ({}); it may never be catalogued",
                            cat.id, cat.label_zh
                        ),
                    );
                }
            }
            let name = FieldName::parse(raw).or_else(|e| src.err(f.name.span(), e.to_string()))?;
            let Some(&class) = class_index.get(f.class.get_ref()) else {
                return src.err(
                    f.class.span(),
                    format!("unknown classification tag '{}'", f.class.get_ref()),
                );
            };
            let ty = match f.ty.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("string") => ValueType::String,
                Some("number") => ValueType::Number,
                Some("decimal") => ValueType::Decimal,
                Some("date") => ValueType::Date,
                Some("bool") => ValueType::Bool,
                Some(other) => {
                    let span = f.ty.as_ref().map(|t| t.span()).unwrap_or(f.name.span());
                    return src.err(
                        span,
                        format!("unknown type '{other}' (string, number, decimal, date, bool)"),
                    );
                }
            };
            let need = classes[class].consent;
            let consent_category = match (&f.consent_category, need) {
                (Some(cc), ConsentNeed::Personal) => {
                    if !CONSENT_CATEGORIES
                        .iter()
                        .any(|(id, _, _)| id == cc.get_ref())
                    {
                        return src.err(
                            cc.span(),
                            format!("unknown consent category '{}'", cc.get_ref()),
                        );
                    }
                    Some(cc.get_ref().clone())
                }
                (None, ConsentNeed::Personal) => {
                    return src.err(
                        f.name.span(),
                        format!("field '{name}' needs a consent_category"),
                    );
                }
                (Some(cc), _) => {
                    return src.err(
                        cc.span(),
                        "consent_category is only meaningful on a personal-consent classification",
                    );
                }
                (None, _) => None,
            };
            if subject == SubjectType::NaturalPerson && need != ConsentNeed::Personal {
                let toks = prohibited::tokens(name.as_str()).concat();
                if let Some((cat, _, _)) = CONSENT_CATEGORIES.iter().find(|(_, _, aliases)| {
                    aliases
                        .iter()
                        .any(|a| toks.contains(&prohibited::tokens(a).concat()))
                }) {
                    return src.err(
                        f.class.span(),
                        format!(
                            "natural-person field '{name}' looks like consent category '{cat}' but its classification '{}' does not require personal consent",
                            f.class.get_ref()
                        ),
                    );
                }
            }
            if field_index
                .insert(name.as_str().to_owned(), fields.len())
                .is_some()
            {
                return src.err(f.name.span(), format!("field '{name}' declared twice"));
            }
            member.push(fields.len());
            fields.push(FieldDef {
                name,
                item: items.len(),
                label_zh: f.label_zh,
                label_en: f.label_en,
                class,
                ty,
                consent_category,
            });
        }
        if member.is_empty() {
            return src.err(it.id.span(), format!("item '{id}' has no fields"));
        }
        items.push(ItemDef {
            id,
            label_zh: it.label_zh,
            label_en: it.label_en,
            subject,
            negative: it.negative,
            fields: member,
        });
    }
    let lifecycle = lifecycle::compile(
        &src,
        lifecycle::LifecycleToml {
            tiers: cf.tier,
            repair: cf.repair,
            views: cf.view,
        },
        item_lc,
        &items,
        &fields,
        &purpose_index,
    )?;

    // Grants.
    let src = Source::read(dir, "grants.toml")?;
    let gf: GrantFile = src.parse()?;
    let (nr, np, nc) = (Role::ALL.len(), purposes.len(), classes.len());
    let mut class_grants = vec![None; nr * np * nc];
    let mut field_grants = FastMap::default();
    let mut seen = HashSet::new();
    for g in gf.grant {
        let Some(r) = role(g.role.get_ref()) else {
            return src.err(
                g.role.span(),
                format!("unknown role '{}'", g.role.get_ref()),
            );
        };
        let Some(&pi) = purpose_index.get(g.purpose.get_ref()) else {
            return src.err(
                g.purpose.span(),
                format!("unknown purpose '{}'", g.purpose.get_ref()),
            );
        };
        let action = match g.action.get_ref().as_str() {
            "return" => Action::Return,
            "deny" => Action::Deny,
            "mask" => {
                let kind = match g.mask.as_ref().map(|m| m.get_ref().as_str()) {
                    Some("partial") => MaskKind::Partial {
                        first: g.keep_first.unwrap_or(1),
                        last: g.keep_last.unwrap_or(1),
                    },
                    Some("hash") => MaskKind::Hash,
                    Some("year_only") => MaskKind::YearOnly,
                    _ => {
                        return src.err(
                            g.action.span(),
                            "action 'mask' needs mask = \"partial\" | \"hash\" | \"year_only\"",
                        );
                    }
                };
                Action::Mask(kind)
            }
            other => {
                return src.err(
                    g.action.span(),
                    format!("unknown action '{other}' (return, mask, deny)"),
                );
            }
        };
        if action != Action::Deny && r == Role::Auditor {
            return src.err(
                g.role.span(),
                "auditors never see credit data; only 'deny' grants are allowed for them",
            );
        }
        match (&g.class, &g.field) {
            (Some(c), None) => {
                let Some(&ci) = class_index.get(c.get_ref()) else {
                    return src.err(
                        c.span(),
                        format!("unknown classification tag '{}'", c.get_ref()),
                    );
                };
                if !seen.insert((r, pi, Some(ci), None)) {
                    return src.err(c.span(), "duplicate grant for this role, purpose and class");
                }
                class_grants[(r.index() * np + pi) * nc + ci] = Some(action);
            }
            (None, Some(f)) => {
                if let Some(cat) = prohibited.classify(f.get_ref()) {
                    return src.err(
                        f.span(),
                        format!(
                            "grant would expose '{}', which falls in prohibited category '{}' ({})",
                            f.get_ref(),
                            cat.id,
                            cat.label_zh
                        ),
                    );
                }
                let Some(&fi) = field_index.get(f.get_ref()) else {
                    return src.err(f.span(), format!("unknown field '{}'", f.get_ref()));
                };
                if !seen.insert((r, pi, None, Some(fi))) {
                    return src.err(f.span(), "duplicate grant for this role, purpose and field");
                }
                field_grants.insert((r.index(), pi, fi), action);
            }
            _ => {
                return src.err(
                    g.role.span(),
                    "a grant names exactly one of 'class' or 'field'",
                );
            }
        }
    }

    let measures = measures::load(&Source::read(dir, "measures.toml")?)?;

    let access = access::load(&Source::read(dir, "access.toml")?)?;

    Ok(Policy {
        access,
        orgs,
        purposes,
        purpose_index,
        classes,
        fields,
        field_index,
        items,
        item_index,
        class_grants,
        field_grants,
        prohibited,
        mask_key,
        lifecycle,
        measures,
    })
}
