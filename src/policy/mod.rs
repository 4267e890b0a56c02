//! The policy engine: the only place that decides what a party may see.
//!
//! `policies/` is loaded once ([`load()`]), validated strictly, and compiled
//! into lookup tables ([`Policy`]). Evaluation is pure: no I/O, no async, no
//! clock — a decision is a function of (organisation, purpose, subject type,
//! requested field, consent) and nothing else. That is what makes it cheap
//! (well under a microsecond per field) and property-testable.
//!
//! # Precedence (deny wins)
//!
//! `prohibited` > `not_in_catalog` > `consent_required`/`consent_invalid` >
//! `not_authorised` > masked > returned.
//!
//! # Capability
//!
//! [`Policy::decide_query`] returns, next to the per-field decisions, a
//! [`Permit`]: the set of fields that may leave the gateway and how. Only this
//! module can construct one, and the store's read path requires one, so no
//! code path can return data without a decision having been made.

pub mod access;
pub mod lifecycle;
pub mod load;
pub mod mask;
pub mod measures;
pub mod prohibited;
pub mod submission;

use serde::Serialize;

use crate::ids::{FieldName, ItemId, OrgCode, Purpose, SubjectType};
pub use load::{LoadError, load, load_with_mask};
pub use mask::MaskKey;
pub use prohibited::Prohibited;

/// What a party is, per the organisation registry (never per certificate).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 行政机关: submits records, queries for administrative purposes.
    Department,
    /// 金融机构: 信易贷 queries, within consent.
    Bank,
    /// 信用服务机构.
    CreditAgency,
    /// Supervisory / audit office: reads the audit log only.
    Auditor,
    /// The public credit website acting for an identity-verified subject.
    Portal,
}

impl Role {
    /// All roles, in table order.
    pub const ALL: [Role; 5] = [
        Role::Department,
        Role::Bank,
        Role::CreditAgency,
        Role::Auditor,
        Role::Portal,
    ];

    /// Wire / policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Department => "department",
            Role::Bank => "bank",
            Role::CreditAgency => "credit_agency",
            Role::Auditor => "auditor",
            Role::Portal => "portal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A registered organisation.
#[derive(Clone, Debug)]
pub struct Organisation {
    /// Its unified social credit code (the certificate's identity).
    pub code: OrgCode,
    /// Display name, for reports.
    pub name: String,
    /// Roles granted by the registry.
    pub roles: Vec<Role>,
    /// Most distinct subjects it may query per hour on one gateway node
    /// (`None`: the configured default applies). See [`crate::audit::anomaly`].
    pub quota_distinct_subjects_per_hour: Option<u32>,
}

impl Organisation {
    /// Whether the registry grants `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Which kind of consent a classification demands before release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentNeed {
    /// No consent needed.
    None,
    /// A natural person's written consent after adverse-consequence notice.
    Personal,
    /// The enterprise's authorisation (企业授权).
    Enterprise,
}

/// A classification tag from the catalog.
#[derive(Clone, Debug)]
pub struct Classification {
    /// Tag used by catalog fields and grants.
    pub tag: String,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Consent required before any release.
    pub consent: ConsentNeed,
}

/// Declared value type of a field; submissions are checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// JSON string.
    String,
    /// JSON number that JSON carries exactly (see [`ValueType::accepts`]).
    Number,
    /// An exact decimal (amounts of money): a string such as `"1234.56"`,
    /// or a JSON integer. Stored as sent, never through a float.
    Decimal,
    /// `YYYY-MM-DD` string.
    Date,
    /// JSON boolean.
    Bool,
}

/// A catalog field.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// Field name (globally unique in the catalog).
    pub name: FieldName,
    /// Index of its item in [`Policy::items`].
    pub item: usize,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Index into the classification table.
    pub class: usize,
    /// Declared type.
    pub ty: ValueType,
    /// Consent category (income, deposits, …) for personal-consent fields.
    pub consent_category: Option<String>,
}

/// A catalog item: a group of fields recorded together about one subject.
#[derive(Clone, Debug)]
pub struct ItemDef {
    /// Item id.
    pub id: ItemId,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
    /// Which subjects it describes.
    pub subject: SubjectType,
    /// Whether this is negative (失信) information with a disclosure period.
    pub negative: bool,
    /// Indices of its fields.
    pub fields: Vec<usize>,
}

/// How a masked field is transformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaskKind {
    /// Keep the first and last characters, star the rest.
    Partial {
        /// Characters kept at the start.
        first: u8,
        /// Characters kept at the end.
        last: u8,
    },
    /// Keyed hash (HMAC-SHA-256, hex) — linkable, not reversible.
    Hash,
    /// Only the year of a date.
    YearOnly,
}

/// What a grant does with a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Release in clear.
    Return,
    /// Release masked.
    Mask(MaskKind),
    /// Withhold.
    Deny,
}

impl Action {
    /// Higher is more permissive; used to combine the grants of several roles.
    fn rank(self) -> u8 {
        match self {
            Action::Deny => 0,
            Action::Mask(_) => 1,
            Action::Return => 2,
        }
    }
}

/// The outcome for one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Value released in clear.
    Returned,
    /// Value released masked.
    Masked,
    /// Value withheld.
    Withheld,
}

/// Stable reason codes. Part of the public contract: never rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// A grant releases it.
    Authorised,
    /// A grant releases it masked (data minimisation, 脱敏).
    Minimised,
    /// No grant for this role, purpose and classification.
    NotAuthorised,
    /// Consent or enterprise authorisation is required and absent.
    ConsentRequired,
    /// A consent token was presented but does not hold.
    ConsentInvalid,
    /// The field falls in a prohibited category.
    Prohibited,
    /// Not in the catalog (for this subject type).
    NotInCatalog,
    /// Negative information past its disclosure period.
    Expired,
    /// Negative information after approved credit repair.
    Repaired,
    /// Withdrawn by its provider after an objection.
    Withdrawn,
    /// Replaced by a corrected version after an objection (the old version
    /// is kept, never shared).
    Superseded,
    /// Under objection: shared but flagged, and no punishment is based on it.
    Disputed,
}

/// Field reasons that make an answered request a *refusal* for the anomaly
/// counters and reports: the caller asked for what it may not have. The
/// lifecycle withholdings (`expired`, `repaired`, `withdrawn`,
/// `superseded`), `consent_required` (a view without the optional consent)
/// and `not_in_catalog` are ordinary answers and never count.
pub const REFUSAL_REASONS: [Reason; 3] = [
    Reason::NotAuthorised,
    Reason::ConsentInvalid,
    Reason::Prohibited,
];

/// Whether a field decision, as written in an audit entry (`decision`,
/// `reason`), is a refusal ([`REFUSAL_REASONS`], withheld or refused).
pub fn is_refused_field(decision: &str, reason: &str) -> bool {
    matches!(decision, "withheld" | "refused")
        && REFUSAL_REASONS.iter().any(|r| r.as_str() == reason)
}

/// Whether a finished request counts as a denied attempt: it failed (any
/// outcome but `ok`, errors included), or it was answered with a refused
/// field ([`is_refused_field`]).
pub fn is_denied_attempt<'a>(
    outcome: &str,
    mut fields: impl Iterator<Item = (&'a str, &'a str)>,
) -> bool {
    outcome != "ok" || fields.any(|(d, r)| is_refused_field(d, r))
}

impl Reason {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Authorised => "authorised",
            Reason::Minimised => "minimised",
            Reason::NotAuthorised => "not_authorised",
            Reason::ConsentRequired => "consent_required",
            Reason::ConsentInvalid => "consent_invalid",
            Reason::Prohibited => "prohibited",
            Reason::NotInCatalog => "not_in_catalog",
            Reason::Expired => "expired",
            Reason::Repaired => "repaired",
            Reason::Withdrawn => "withdrawn",
            Reason::Superseded => "superseded",
            Reason::Disputed => "disputed",
        }
    }
}

/// The decision for one requested field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecision<'a> {
    /// The name as requested (may be a non-catalog or prohibited name),
    /// borrowed from the request.
    pub field: &'a str,
    /// Returned, masked or withheld.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
    /// Sub-reason for `consent_invalid` (e.g. `expired`, `wrong_grantee`).
    pub detail: Option<&'static str>,
}

/// Consent presented with a query, as the consent layer established it.
/// The policy engine never parses tokens; it only reads this verdict.
#[derive(Clone, Debug, Default)]
pub enum ConsentInput {
    /// No token was presented.
    #[default]
    Absent,
    /// A token was presented and refused, with a stable sub-reason.
    Invalid(&'static str),
    /// A verified token bound to this caller, subject and purpose.
    Valid {
        /// Field names and consent categories the subject consented to.
        scope: Vec<String>,
        /// Whether it proves written consent after adverse-consequence notice.
        written: bool,
    },
}

impl ConsentInput {
    fn opens(
        &self,
        field: &FieldDef,
        need: ConsentNeed,
    ) -> Result<(), (Reason, Option<&'static str>)> {
        match self {
            ConsentInput::Absent => Err((Reason::ConsentRequired, None)),
            ConsentInput::Invalid(sub) => Err((Reason::ConsentInvalid, Some(sub))),
            ConsentInput::Valid { scope, written } => {
                let listed = scope.iter().any(|s| {
                    s == field.name.as_str()
                        || Some(s.as_str()) == field.consent_category.as_deref()
                });
                if !listed {
                    Err((Reason::ConsentInvalid, Some("out_of_scope")))
                } else if need == ConsentNeed::Personal && !written {
                    Err((Reason::ConsentInvalid, Some("not_written")))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Capability to read and release data: which fields, and how.
///
/// Constructed only by [`Policy::decide_query`]; required by the store's read
/// path. The private field makes forging one a compile error outside this
/// module.
#[derive(Debug)]
pub struct Permit {
    fields: Vec<(usize, Action)>,
    _sealed: (),
}

impl Permit {
    /// Field indices (into [`Policy::fields`]) with the action to apply.
    pub fn fields(&self) -> &[(usize, Action)] {
        &self.fields
    }

    /// Whether nothing may be released.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The permitted part of one stored record of `item`, masked as granted;
    /// `None` if nothing of that item is released.
    pub fn release(
        &self,
        policy: &Policy,
        item: &str,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let (ii, _) = policy.item(item)?;
        let mut out = serde_json::Map::new();
        let mut any = false;
        for &(fi, action) in &self.fields {
            let f = &policy.fields[fi];
            if f.item != ii {
                continue;
            }
            any = true;
            if let Some(v) = data.get(f.name.as_str()) {
                let v = match action {
                    Action::Return => v.clone(),
                    Action::Mask(kind) => mask::apply(kind, v, &policy.mask_key),
                    Action::Deny => continue,
                };
                out.insert(f.name.to_string(), v);
            }
        }
        any.then_some(out)
    }
}

/// The policy's lookup tables: built once from trusted files, then only
/// read, with client-supplied keys (field names, purposes) on every
/// request. Keys are never inserted from requests, so hash flooding cannot
/// degrade them, and a fast non-cryptographic hash is enough: SipHash, the
/// standard default, was about 4 % of a query's instructions
/// (`bench/RESULTS.md`).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A compiled policy: lookup tables built once at load time.
#[derive(Debug)]
pub struct Policy {
    /// Which roles may call which endpoint.
    access: access::Access,
    orgs: FastMap<OrgCode, Organisation>,
    purposes: Vec<PurposeDef>,
    purpose_index: FastMap<String, usize>,
    classes: Vec<Classification>,
    fields: Vec<FieldDef>,
    field_index: FastMap<String, usize>,
    items: Vec<ItemDef>,
    item_index: FastMap<String, usize>,
    /// `[role][purpose][class]` → class-level grant.
    class_grants: Vec<Option<Action>>,
    /// `(role, purpose, field)` → field-level override.
    field_grants: FastMap<(usize, usize, usize), Action>,
    prohibited: Prohibited,
    /// Key for the `hash` mask (with its id), so masked values are linkable
    /// only inside one deployment.
    mask_key: MaskKey,
    /// Disclosure periods, repair visibility, views, list-derived items.
    lifecycle: lifecycle::Rules,
    /// The joint reward-and-punishment measures list.
    measures: measures::Measures,
}

/// A purpose from the closed list.
#[derive(Clone, Debug)]
pub struct PurposeDef {
    /// Name used on the wire.
    pub name: Purpose,
    /// Chinese label.
    pub label_zh: String,
    /// English label.
    pub label_en: String,
}

impl Policy {
    /// Which roles may call which endpoint (`policies/access.toml`).
    pub fn access(&self) -> &access::Access {
        &self.access
    }

    /// Admit `org` to `endpoint` (the 403 `role_not_permitted` decision).
    pub fn admit(
        &self,
        org: &Organisation,
        endpoint: crate::endpoint::Endpoint,
    ) -> Result<(), access::NotPermitted> {
        self.access.admit(org, endpoint)
    }

    /// Look up a registered organisation.
    pub fn organisation(&self, code: &OrgCode) -> Option<&Organisation> {
        self.orgs.get(code)
    }

    /// All registered organisations, sorted by code.
    pub fn organisations(&self) -> Vec<&Organisation> {
        let mut v: Vec<_> = self.orgs.values().collect();
        v.sort_by(|a, b| a.code.cmp(&b.code));
        v
    }

    /// Resolve a purpose name against the closed list.
    pub fn purpose(&self, name: &str) -> Option<&PurposeDef> {
        self.purpose_index.get(name).map(|&i| &self.purposes[i])
    }

    /// All purposes.
    pub fn purposes(&self) -> &[PurposeDef] {
        &self.purposes
    }

    /// All catalog fields.
    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    /// A catalog field by exact name.
    pub fn field(&self, name: &str) -> Option<(usize, &FieldDef)> {
        self.field_index.get(name).map(|&i| (i, &self.fields[i]))
    }

    /// All catalog items.
    pub fn items(&self) -> &[ItemDef] {
        &self.items
    }

    /// A catalog item by id.
    pub fn item(&self, id: &str) -> Option<(usize, &ItemDef)> {
        self.item_index.get(id).map(|&i| (i, &self.items[i]))
    }

    /// The classification of a field.
    pub fn class_of(&self, field: &FieldDef) -> &Classification {
        &self.classes[field.class]
    }

    /// All classifications.
    pub fn classes(&self) -> &[Classification] {
        &self.classes
    }

    /// The prohibited-data matcher (floor plus policy additions).
    pub fn prohibited(&self) -> &Prohibited {
        &self.prohibited
    }

    /// Key for the `hash` mask.
    pub fn mask_key(&self) -> &MaskKey {
        &self.mask_key
    }

    fn grant(&self, roles: &[Role], purpose: usize, field: usize) -> Option<Action> {
        let np = self.purposes.len();
        let nc = self.classes.len();
        let class = self.fields[field].class;
        roles
            .iter()
            .filter_map(|r| {
                let ri = r.index();
                self.field_grants
                    .get(&(ri, purpose, field))
                    .copied()
                    .or(self.class_grants[(ri * np + purpose) * nc + class])
            })
            .max_by_key(|a| a.rank())
    }

    /// Decide one field. `purpose` must come from [`Policy::purpose`].
    pub fn decide_field<'a>(
        &self,
        org: &Organisation,
        purpose: &PurposeDef,
        subject: SubjectType,
        name: &'a str,
        consent: &ConsentInput,
    ) -> (FieldDecision<'a>, Option<(usize, Action)>) {
        let withheld = |reason, detail| FieldDecision {
            field: name,
            decision: Decision::Withheld,
            reason,
            detail,
        };
        let Some(&fi) = self.field_index.get(name) else {
            let reason = if self.prohibited.classify(name).is_some() {
                Reason::Prohibited
            } else {
                Reason::NotInCatalog
            };
            return (withheld(reason, None), None);
        };
        let field = &self.fields[fi];
        if self.items[field.item].subject != subject {
            return (withheld(Reason::NotInCatalog, None), None);
        }
        let need = self.classes[field.class].consent;
        if need != ConsentNeed::None
            && let Err((reason, detail)) = consent.opens(field, need)
        {
            return (withheld(reason, detail), None);
        }
        let pi = self.purpose_index[purpose.name.as_str()];
        match self.grant(&org.roles, pi, fi) {
            None | Some(Action::Deny) => (withheld(Reason::NotAuthorised, None), None),
            Some(a @ Action::Mask(_)) => (
                FieldDecision {
                    field: name,
                    decision: Decision::Masked,
                    reason: Reason::Minimised,
                    detail: None,
                },
                Some((fi, a)),
            ),
            Some(Action::Return) => (
                FieldDecision {
                    field: name,
                    decision: Decision::Returned,
                    reason: Reason::Authorised,
                    detail: None,
                },
                Some((fi, Action::Return)),
            ),
        }
    }

    /// Decide every requested field and mint the [`Permit`] for the ones
    /// that may be released. Duplicate requests of one field are decided once.
    pub fn decide_query<'a, S: AsRef<str>>(
        &self,
        org: &Organisation,
        purpose: &PurposeDef,
        subject: SubjectType,
        requested: &'a [S],
        consent: &ConsentInput,
    ) -> (Vec<FieldDecision<'a>>, Permit) {
        let mut decisions = Vec::with_capacity(requested.len());
        let mut fields = Vec::with_capacity(requested.len());
        for name in requested {
            let name = name.as_ref();
            if decisions
                .iter()
                .any(|d: &FieldDecision<'_>| d.field == name)
            {
                continue;
            }
            let (d, p) = self.decide_field(org, purpose, subject, name, consent);
            decisions.push(d);
            fields.extend(p);
        }
        (
            decisions,
            Permit {
                fields,
                _sealed: (),
            },
        )
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod testing;
