//! Compiling the lifecycle tables of catalog.toml (`[[tier]]`, `[repair]`,
//! `[[view]]` and the lifecycle keys of `[[item]]`) into
//! [`Rules`].

use serde::Deserialize;
use toml::Spanned;

use super::{LoadError, Source};
use crate::ids::{FieldName, SubjectType};
use crate::policy::lifecycle::{
    ItemRules, ListKind, Rules, SummaryDef, SummaryRule, Tier, TierRule, ViewDef,
};
use crate::policy::{FieldDef, ItemDef, Role, ValueType};

/// `[[tier]]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct TierToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
    disclosure_months: Spanned<u32>,
    repair_after_months: Spanned<u32>,
}

/// `[repair]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct RepairToml {
    visible_to: Vec<Spanned<String>>,
}

/// `[[view]]` in catalog.toml.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::policy) struct ViewToml {
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
pub(in crate::policy) struct SummaryToml {
    key: Spanned<String>,
    rule: Spanned<String>,
    #[serde(default)]
    item: Option<Spanned<String>>,
    #[serde(default)]
    field: Option<Spanned<String>>,
}

/// Lifecycle keys of one `[[item]]`, with the span of its id.
pub(in crate::policy) struct ItemLcToml {
    pub(in crate::policy) id_span: std::ops::Range<usize>,
    pub(in crate::policy) default_tier: Option<Spanned<String>>,
    pub(in crate::policy) decision_date_field: Option<Spanned<String>>,
    pub(in crate::policy) repaired_visible_to: Option<Vec<Spanned<String>>>,
    pub(in crate::policy) derived_from: Option<Spanned<String>>,
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
                    format!("{what}: credit agencies never see repaired negative information (docs/compliance.md, rule 8)"),
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
pub(in crate::policy) struct LifecycleToml {
    pub(in crate::policy) tiers: Vec<TierToml>,
    pub(in crate::policy) repair: Option<RepairToml>,
    pub(in crate::policy) views: Vec<ViewToml>,
}

/// Compile the lifecycle parts of catalog.toml.
pub(in crate::policy) fn compile(
    src: &Source,
    toml: LifecycleToml,
    item_lc: Vec<ItemLcToml>,
    items: &[ItemDef],
    fields: &[FieldDef],
    purposes: &crate::policy::FastMap<String, usize>,
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
mod tests {
    use crate::policy::testing::load_patched;

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
}
