//! [`AuditDraft`]: the audit entry of one request while it is handled —
//! the handler fills in the subject, purpose and field decisions as it
//! learns them, and [`super::App::handle`] turns it into the entry.

use crate::audit::AuditEntry;
use crate::audit::AuditField;
use crate::audit::items::ItemKind;
use crate::ids::SubjectId;

use super::consent;

/// The audit entry under construction while a request is handled.
#[derive(Debug, Default)]
pub struct AuditDraft {
    pub(super) request_id: String,
    pub(super) action: &'static str,
    pub(super) subject: Option<SubjectId>,
    pub(super) purpose: Option<String>,
    pub(super) consent: Option<String>,
    pub(super) fields: Vec<AuditField>,
    /// Bulk fields, one per record or list entry ([`AuditDraft::item`]):
    /// after `fields` in the entry, bounded there
    /// ([`crate::audit::items::append_bounded`]).
    pub(super) items: Vec<(ItemKind, AuditField)>,
    pub(super) records: u32,
    /// The caller's organisation code and certificate fingerprint.
    pub(super) org: Option<String>,
    pub(super) cert_fp: Option<String>,
    /// The entry already written with the request's change
    /// ([`App::intend`](super::App::intend)); appended as is if the handler succeeds.
    pub(super) pending: Option<AuditEntry>,
    /// An outbox row was written for this request (final or provisional
    /// intent), with the log's size then (a lower bound of the entry's
    /// sequence number); the row is cleared once the entry is in the log.
    pub(super) outbox: Option<u64>,
    /// Consent uses the request spent that count only if it is answered
    /// with the data: given back if its entry cannot be made durable or the
    /// handler fails ([`App::handle`](super::App::handle)). Never part of the entry.
    pub(super) spent: Vec<consent::Spent>,
}

impl AuditDraft {
    /// What the entry would say now (without the outbox bookkeeping).
    pub(super) fn snapshot(&self) -> AuditDraft {
        AuditDraft {
            request_id: self.request_id.clone(),
            action: self.action,
            subject: self.subject.clone(),
            purpose: self.purpose.clone(),
            consent: self.consent.clone(),
            fields: self.fields.clone(),
            items: self.items.clone(),
            records: self.records,
            org: self.org.clone(),
            cert_fp: self.cert_fp.clone(),
            pending: None,
            outbox: None,
            spent: Vec::new(),
        }
    }

    pub(super) fn field(
        &mut self,
        field: String,
        decision: &'static str,
        reason: &'static str,
        detail: Option<&'static str>,
    ) {
        self.fields.push(AuditField {
            field,
            decision: decision.into(),
            reason: reason.into(),
            detail: detail.map(Into::into),
        });
    }

    /// [`AuditDraft::field`] about a stored record: the detail is the
    /// record's catalog item.
    pub(super) fn field_on(
        &mut self,
        field: String,
        decision: &'static str,
        reason: impl Into<std::borrow::Cow<'static, str>>,
        item: &str,
    ) {
        self.fields.push(AuditField {
            field,
            decision: decision.into(),
            reason: reason.into(),
            detail: Some(item.to_owned().into()),
        });
    }

    /// A field about one of many records or list entries (every record a
    /// query withheld, every list entry exited with a change): `record:<id>`
    /// or `list_entry:<id>`. The entry lists the first
    /// [`MAX_LISTED_ITEMS`](crate::audit::items::MAX_LISTED_ITEMS)
    /// individually, after every [`AuditDraft::field`], and counts the rest
    /// (see [`crate::audit::items`]).
    pub(super) fn item(
        &mut self,
        kind: ItemKind,
        id: i64,
        decision: &'static str,
        reason: &'static str,
        detail: Option<&str>,
    ) {
        self.items.push((
            kind,
            AuditField {
                field: kind.field(id),
                decision: decision.into(),
                reason: reason.into(),
                detail: detail.map(|d| d.to_owned().into()),
            },
        ));
    }
}
