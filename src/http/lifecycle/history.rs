//! `GET /v1/records/{id}/history`. A record the caller may not see is the
//! same 404 `record_not_found` as one that does not exist.

use serde_json::json;

use super::input::{record_field, stored_subject};
use crate::http::error::not_found;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::policy::Organisation;
use crate::policy::lifecycle::{Noun, SubjectView};

pub(in crate::http) async fn history(
    app: &App,
    org: &Organisation,
    id: i64,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let h = app
        .store
        .record_history(id, &app.policy, app.today())
        .await?
        .ok_or_else(|| not_found(Noun::Record))?;
    let subject = stored_subject(&h.subject_type, &h.subject_id);
    draft.subject = subject.clone();
    let view = app.policy.history_view(org, &h.provided_by)?;
    draft.field_on(record_field(id), "history", h.state.as_str(), &h.item);
    let mut body = serde_json::to_value(&h).map_err(|_| ApiError::internal())?;
    if view == SubjectView::Hashed
        && let Some(obj) = body.as_object_mut()
    {
        // Auditors never see clear subject ids: the keyed hash, as in the log.
        obj.remove("subject_id");
        obj.insert(
            "subject_hash".into(),
            json!(subject.map(|s| app.hasher.hash(&s))),
        );
    }
    Ok(Reply::ok(body))
}
