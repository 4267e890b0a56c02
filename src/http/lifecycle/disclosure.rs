//! The lifecycle parts of queries and submissions: views and their summary,
//! records withheld by the lifecycle rules.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::audit::items::ItemKind;
use crate::http::dto::BodyStr;
use crate::http::{ApiError, App, AuditDraft};
use crate::ids::SubjectId;
use crate::policy::lifecycle::{RecordStatus, ViewDef, format_date};
use crate::policy::{Permit, PurposeDef};
use crate::store::{SharedRecord, WithheldRecord};

/// Resolve `view` (if named) into `fields`, as far as
/// [`Policy::view_for`](crate::policy::Policy::view_for) allows. Naming both a view and fields is an error.
pub(in crate::http) fn expand_view<'a>(
    app: &'a App,
    view: Option<&str>,
    fields: &mut Vec<BodyStr<'_>>,
    subject: &SubjectId,
    purpose: &PurposeDef,
) -> Result<Option<&'a ViewDef>, ApiError> {
    let Some(name) = view else {
        return Ok(None);
    };
    let v = app
        .policy
        .view_for(name, subject.kind(), purpose.name.as_str())?;
    if !fields.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name either fields or a view, not both",
        ));
    }
    *fields = v
        .fields
        .iter()
        .map(|f| BodyStr(Cow::Owned(f.clone())))
        .collect();
    Ok(Some(v))
}

/// Log the records the lifecycle rules withheld from a query (never in the
/// response: a caller must not learn that an expired record exists): the
/// first ones individually, the rest counted per reason
/// ([`crate::audit::items`]).
pub(in crate::http) fn audit_withheld(draft: &mut AuditDraft, withheld: &[WithheldRecord]) {
    for w in withheld {
        draft.item(
            ItemKind::Record,
            w.record_id,
            "withheld",
            w.reason.as_str(),
            Some(&w.item),
        );
    }
}

/// Add `view` and the view's `summary` (from released data only).
pub(in crate::http) fn add_summary(
    app: &App,
    view: &ViewDef,
    permit: &Permit,
    records: &[SharedRecord],
    reply: &mut Value,
) {
    let fields = app.policy.fields();
    let released: Vec<&str> = permit
        .fields()
        .iter()
        .map(|(i, _)| fields[*i].name.as_str())
        .collect();
    let rows: Vec<(&str, RecordStatus, &Map<String, Value>)> = records
        .iter()
        .map(|r| (r.item.as_str(), r.status, &r.fields))
        .collect();
    let mut summary = view.summarise(&app.policy, &released, &rows);
    summary.insert("as_of".into(), json!(format_date(app.today())));
    reply["view"] = json!(view.id);
    reply["summary"] = Value::Object(summary);
}
