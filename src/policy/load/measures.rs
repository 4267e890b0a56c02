//! Loading `measures.toml` into [`Measures`].

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::{LoadError, Source};
use crate::ids::FieldName;
use crate::policy::lifecycle::ListKind;
use crate::policy::measures::{Matter, Measure, MeasureKind, Measures};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasuresFile {
    #[serde(default)]
    matter: Vec<MatterToml>,
    #[serde(default)]
    measure: Vec<MeasureToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatterToml {
    id: Spanned<String>,
    label_zh: String,
    label_en: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureToml {
    id: Spanned<String>,
    list: Spanned<String>,
    kind: Spanned<String>,
    matters: Vec<Spanned<String>>,
    text_zh: Spanned<String>,
    text_en: Spanned<String>,
    basis: Spanned<String>,
}

/// Load `measures.toml` strictly: unknown keys, lists, kinds or matters,
/// duplicates, empty texts and list/kind mismatches are errors.
pub(in crate::policy) fn load(src: &Source) -> Result<Measures, LoadError> {
    let f: MeasuresFile = src.parse()?;
    let mut matters = Vec::new();
    let mut matter_index = HashMap::new();
    for m in f.matter {
        if FieldName::parse(m.id.get_ref()).is_err() {
            return src.err(
                m.id.span(),
                format!("matter id '{}' is not snake_case", m.id.get_ref()),
            );
        }
        if matter_index
            .insert(m.id.get_ref().clone(), matters.len())
            .is_some()
        {
            return src.err(
                m.id.span(),
                format!("matter '{}' declared twice", m.id.get_ref()),
            );
        }
        if m.label_zh.trim().is_empty() || m.label_en.trim().is_empty() {
            return src.err(m.id.span(), "a matter needs both labels");
        }
        matters.push(Matter {
            id: m.id.into_inner(),
            label_zh: m.label_zh,
            label_en: m.label_en,
        });
    }
    let mut measures: Vec<Measure> = Vec::new();
    for m in f.measure {
        if FieldName::parse(m.id.get_ref()).is_err() {
            return src.err(
                m.id.span(),
                format!("measure id '{}' is not snake_case", m.id.get_ref()),
            );
        }
        if measures.iter().any(|x| &x.id == m.id.get_ref()) {
            return src.err(
                m.id.span(),
                format!("measure '{}' declared twice", m.id.get_ref()),
            );
        }
        let Some(list) = ListKind::parse(m.list.get_ref()) else {
            return src.err(
                m.list.span(),
                format!("unknown list '{}' (red, black, focus)", m.list.get_ref()),
            );
        };
        let kind = match m.kind.get_ref().as_str() {
            "incentive" => MeasureKind::Incentive,
            "punishment" => MeasureKind::Punishment,
            "supervision" => MeasureKind::Supervision,
            other => {
                return src.err(
                    m.kind.span(),
                    format!("unknown kind '{other}' (incentive, punishment, supervision)"),
                );
            }
        };
        let coherent = match list {
            ListKind::Red => kind == MeasureKind::Incentive,
            ListKind::Black | ListKind::Focus => kind != MeasureKind::Incentive,
        };
        if !coherent {
            return src.err(
                m.kind.span(),
                format!(
                    "a {} list measure cannot be of kind '{}' (red: incentive; black, focus: punishment or supervision)",
                    list.as_str(),
                    m.kind.get_ref()
                ),
            );
        }
        if m.matters.is_empty() {
            return src.err(m.id.span(), "a measure names at least one matter");
        }
        let mut idx = Vec::new();
        for mt in &m.matters {
            let Some(&i) = matter_index.get(mt.get_ref()) else {
                return src.err(mt.span(), format!("unknown matter '{}'", mt.get_ref()));
            };
            if idx.contains(&i) {
                return src.err(mt.span(), format!("matter '{}' listed twice", mt.get_ref()));
            }
            idx.push(i);
        }
        for t in [&m.text_zh, &m.text_en, &m.basis] {
            if t.get_ref().trim().is_empty() {
                return src.err(t.span(), "measure texts and basis must not be empty");
            }
        }
        measures.push(Measure {
            id: m.id.into_inner(),
            list,
            kind,
            matters: idx,
            text_zh: m.text_zh.into_inner(),
            text_en: m.text_en.into_inner(),
            basis: m.basis.into_inner(),
        });
    }
    Ok(Measures {
        matters,
        matter_index,
        measures,
    })
}

#[cfg(test)]
mod tests {
    use crate::policy::testing::load_patched;

    #[test]
    fn loader_refuses_bad_measures() {
        let cases: &[(&str, &str, &str)] = &[
            ("list = \"black\"", "list = \"grey\"", "unknown list"),
            (
                "kind = \"punishment\"",
                "kind = \"incentive\"",
                "cannot be of kind",
            ),
            (
                "kind = \"punishment\"",
                "kind = \"reprimand\"",
                "unknown kind",
            ),
            (
                "matters = [\"government_procurement\"",
                "matters = [\"moon_landing\"",
                "unknown matter",
            ),
            (
                "id = \"government_procurement\"",
                "id = \"Government Procurement\"",
                "not snake_case",
            ),
            (
                "basis = \"",
                "colour = \"red\"\nbasis = \"",
                "unknown field",
            ),
        ];
        for (from, to, needle) in cases {
            let Err(e) = load_patched("measures.toml", from, to) else {
                panic!("{needle}: loaded");
            };
            assert!(e.message.contains(needle), "{needle}: {e}");
            assert!(e.line.is_some(), "{needle}: no line in {e}");
        }
    }
}
