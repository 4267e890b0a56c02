//! The prohibited-data floor (征信业管理条例 第十四条; 个人信息保护法 第二十八条).
//!
//! Religion, genes, fingerprints, blood type, disease and medical history,
//! and biometrics are never collected, stored, returned or logged. The floor is
//! compiled into the binary: `policies/prohibited.toml` may add categories or
//! aliases, never remove one.
//!
//! Matching works on a *normalised* form of a name so that obvious variants
//! cannot smuggle a category past the gate:
//!
//! * full-width ASCII (`ｆｉｎｇｅｒｐｒｉｎｔ`) folds to ASCII, the ideographic
//!   space to a separator;
//! * case is folded and camelCase is split (`BloodType` → `blood type`);
//! * `_`, `-`, `.`, spaces and other punctuation are separators.
//!
//! An ASCII alias matches when its compacted form equals a run of adjacent
//! tokens of the name (`user_blood_type`, `bloodType` and `bloodtype` all hit
//! `blood_type`), or — for aliases of six letters or more — when it occurs
//! inside a token (`religionstatus`). A CJK alias matches as a substring
//! (`宗教信仰情况`). Short English words are not substring-matched, so
//! `general` never trips `gene`.

/// One prohibited category with the aliases that identify it.
#[derive(Clone, Debug)]
pub struct Category {
    /// Stable id, e.g. `blood_type`; appears in error details.
    pub id: String,
    /// Chinese label for humans.
    pub label_zh: String,
    /// English label for humans.
    pub label_en: String,
    /// Aliases as written in policy (normalised at compile time).
    pub aliases: Vec<String>,
}

/// The floor every deployment enforces, whatever its policy files say.
pub fn floor() -> Vec<Category> {
    let c = |id: &str, zh: &str, en: &str, aliases: &[&str]| Category {
        id: id.into(),
        label_zh: zh.into(),
        label_en: en.into(),
        aliases: aliases.iter().map(|s| (*s).to_owned()).collect(),
    };
    vec![
        c(
            "religion",
            "宗教信仰",
            "religious belief",
            &[
                "宗教",
                "信仰",
                "religion",
                "religious",
                "religious_belief",
                "faith",
            ],
        ),
        c(
            "genetic",
            "基因",
            "genetic data",
            &[
                "基因", "遗传", "gene", "genes", "genetic", "dna", "genome", "genotype",
            ],
        ),
        c(
            "fingerprint",
            "指纹",
            "fingerprint",
            &["指纹", "fingerprint", "fingerprints", "finger_print"],
        ),
        c(
            "blood_type",
            "血型",
            "blood type",
            &["血型", "blood_type", "blood_group", "abo_type"],
        ),
        c(
            "disease",
            "疾病和病史",
            "disease and medical history",
            &[
                "疾病",
                "病史",
                "病历",
                "病情",
                "disease",
                "illness",
                "medical_history",
                "medical_record",
                "diagnosis",
                "health_condition",
            ],
        ),
        c(
            "biometric",
            "生物识别",
            "biometrics",
            &[
                "生物识别",
                "人脸",
                "面部",
                "虹膜",
                "声纹",
                "掌纹",
                "步态",
                "biometric",
                "biometrics",
                "face_image",
                "face_photo",
                "facial",
                "face_template",
                "iris",
                "voiceprint",
                "palmprint",
                "retina",
                "gait",
            ],
        ),
    ]
}

/// Split a name into normalised lower-case tokens (see the module docs).
pub fn tokens(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        let ch = fold_width(ch);
        if ch.is_ascii_alphanumeric() {
            if ch.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
            cur.push(ch.to_ascii_lowercase());
        } else if ch.is_alphanumeric() {
            // CJK and other scripts: kept in the token stream as-is.
            prev_lower = false;
            cur.extend(ch.to_lowercase());
        } else {
            prev_lower = false;
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The tokens of `name` concatenated, with the byte offsets where each token
/// starts and (last) ends: token runs are slices `joined[b[i]..b[j]]`.
fn normalise(name: &str) -> (String, Vec<usize>) {
    let toks = tokens(name);
    let mut joined = String::with_capacity(name.len());
    let mut bounds = Vec::with_capacity(toks.len() + 1);
    for t in &toks {
        bounds.push(joined.len());
        joined.push_str(t);
    }
    bounds.push(joined.len());
    (joined, bounds)
}

/// Full-width ASCII (U+FF01–U+FF5E) to ASCII; the ideographic space to space.
fn fold_width(ch: char) -> char {
    match ch as u32 {
        0xFF01..=0xFF5E => char::from_u32(ch as u32 - 0xFEE0).unwrap_or(ch),
        0x3000 => ' ',
        _ => ch,
    }
}

/// Compiled matcher over the floor plus policy additions.
///
/// Hot path (every non-catalog name in a query goes through it): the name is
/// normalised once into a compact lower-case string plus token boundaries;
/// token runs are looked up in a hash map (no allocation per run), and the
/// substring pass probes a 64 Ki-bit bigram filter before touching the
/// trigram index, so a clean name costs a few hundred nanoseconds.
#[derive(Clone, Debug)]
pub struct Prohibited {
    categories: Vec<Category>,
    /// Compacted alias → category, for whole token runs.
    exact: super::FastMap<String, usize>,
    /// Substring-eligible aliases (CJK, or ASCII of six letters or more).
    substr: Vec<(Vec<u8>, usize)>,
    /// First three bytes of a substring alias → indices into `substr`.
    trigrams: super::FastMap<[u8; 3], Vec<usize>>,
    /// Bit per first-two-bytes of a substring alias: a cheap pre-filter.
    bigrams: Box<[u64; 1024]>,
}

impl Prohibited {
    /// Compile the floor merged with `extra` (same id → aliases added).
    pub fn compile(extra: Vec<Category>) -> Self {
        let mut categories = floor();
        for e in extra {
            match categories.iter_mut().find(|c| c.id == e.id) {
                Some(c) => c.aliases.extend(e.aliases),
                None => categories.push(e),
            }
        }
        let mut exact = super::FastMap::default();
        let mut substr = Vec::new();
        let mut trigrams: super::FastMap<[u8; 3], Vec<usize>> = super::FastMap::default();
        let mut bigrams = Box::new([0u64; 1024]);
        for (i, c) in categories.iter().enumerate() {
            let mut all = c.aliases.clone();
            all.push(c.id.clone());
            all.push(c.label_zh.clone());
            for a in all {
                let compact: String = tokens(&a).concat();
                if compact.is_empty() {
                    continue;
                }
                exact.entry(compact.clone()).or_insert(i);
                let eligible = !compact.is_ascii() || compact.len() >= 6;
                if eligible && compact.len() >= 3 {
                    let b = compact.as_bytes();
                    let bg = usize::from(b[0]) << 8 | usize::from(b[1]);
                    bigrams[bg / 64] |= 1 << (bg % 64);
                    trigrams
                        .entry([b[0], b[1], b[2]])
                        .or_default()
                        .push(substr.len());
                    substr.push((compact.into_bytes(), i));
                }
            }
        }
        Prohibited {
            categories,
            exact,
            substr,
            trigrams,
            bigrams,
        }
    }

    /// All categories in force.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The category `name` falls in, if any.
    pub fn classify(&self, name: &str) -> Option<&Category> {
        let (joined, bounds) = normalise(name);
        // Every run of adjacent tokens against the exact table.
        for (si, &start) in bounds.iter().enumerate() {
            for &end in &bounds[si + 1..] {
                if end - start > 64 {
                    break;
                }
                if let Some(&i) = self.exact.get(&joined[start..end]) {
                    return Some(&self.categories[i]);
                }
            }
        }
        // Substrings, filtered by bigram then trigram.
        let b = joined.as_bytes();
        for pos in 0..b.len().saturating_sub(2) {
            let bg = usize::from(b[pos]) << 8 | usize::from(b[pos + 1]);
            if self.bigrams[bg / 64] & (1 << (bg % 64)) == 0 {
                continue;
            }
            if let Some(cands) = self.trigrams.get(&[b[pos], b[pos + 1], b[pos + 2]]) {
                for &ci in cands {
                    let (alias, cat) = &self.substr[ci];
                    if b[pos..].starts_with(alias) {
                        return Some(&self.categories[*cat]);
                    }
                }
            }
        }
        None
    }

    /// Walk a JSON value and report the first object key (with its path) that
    /// falls in a prohibited category. Keys nested at any depth, inside
    /// objects or arrays, are inspected.
    pub fn scan_json<'a>(
        &'a self,
        value: &serde_json::Value,
        path: &mut String,
    ) -> Option<(String, &'a Category)> {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    if let Some(c) = self.classify(k) {
                        return Some((path.clone(), c));
                    }
                    if let Some(hit) = self.scan_json(v, path) {
                        return Some(hit);
                    }
                    path.truncate(len);
                }
                None
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    if let Some(hit) = self.scan_json(v, path) {
                        return Some(hit);
                    }
                    path.truncate(len);
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> Prohibited {
        Prohibited::compile(Vec::new())
    }

    #[test]
    fn variants_are_caught() {
        let p = p();
        for (name, cat) in [
            ("宗教信仰", "religion"),
            ("religion", "religion"),
            ("Religion", "religion"),
            ("Blood_Type", "blood_type"),
            ("bloodType", "blood_type"),
            ("blood-type", "blood_type"),
            ("bloodtype", "blood_type"),
            ("ｆｉｎｇｅｒｐｒｉｎｔ", "fingerprint"),
            ("ＦＩＮＧＥＲ＿ＰＲＩＮＴ", "fingerprint"),
            ("user_fingerprint_hash", "fingerprint"),
            ("血型", "blood_type"),
            ("既往病史", "disease"),
            ("DNA", "genetic"),
            ("faceImage", "biometric"),
            ("人脸照片", "biometric"),
            ("religionstatus", "religion"),
            ("medicalHistory", "disease"),
        ] {
            assert_eq!(p.classify(name).map(|c| c.id.as_str()), Some(cat), "{name}");
        }
    }

    #[test]
    fn ordinary_names_pass() {
        let p = p();
        for name in [
            "general",
            "enterprise_name",
            "registered_capital",
            "face_value",
            "surface_area",
            "legal_representative",
            "penalty_decision_no",
            "monthly_income",
            "interface_code",
            "generation",
        ] {
            assert!(p.classify(name).is_none(), "{name} flagged");
        }
    }

    #[test]
    fn policy_can_add_not_remove() {
        let p = Prohibited::compile(vec![Category {
            id: "sexual_orientation".into(),
            label_zh: "性取向".into(),
            label_en: "sexual orientation".into(),
            aliases: vec!["sexual_orientation".into()],
        }]);
        assert!(p.classify("sexualOrientation").is_some());
        assert!(p.classify("religion").is_some());
    }

    #[test]
    fn nested_keys_are_found() {
        let p = p();
        let v: serde_json::Value = serde_json::json!({
            "name": "x",
            "contacts": [{"phone": "1"}, {"details": {"Blood_Type": "A"}}]
        });
        let (path, c) = p.scan_json(&v, &mut String::new()).unwrap();
        assert_eq!(path, "contacts[1].details.Blood_Type");
        assert_eq!(c.id, "blood_type");
    }

    proptest! {
        #[test]
        fn any_separator_or_case_is_caught(sep in "[-_. ]{0,2}", upper in any::<bool>(), pre in "[a-z]{0,5}") {
            let mut n = format!("{pre}{sep}blood{sep}type");
            if upper { n = n.to_uppercase(); }
            prop_assert!(p().classify(&n).is_some(), "{}", n);
        }

        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = p().classify(&s);
        }
    }
}
