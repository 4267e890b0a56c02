//! Who may take which lifecycle step, and why a step is refused.
//!
//! Every step on the write path (file or answer an objection, apply for or
//! decide a repair, add or exit a list entry, report a check's feedback)
//! is decided by a `Policy` function that takes the facts the store read —
//! inside the step's transaction, under the subject lock — and returns
//! either a [`LifecycleRefusal`] or a permit that only `policy` can mint
//! (its fields are private). The store executes the permit and decides
//! nothing; the HTTP layer maps the refusal (`http/error.rs`).

use time::Date;

use super::repairs::RepairRefusal;
use super::state::RecordState;
use crate::ids::SubjectId;
use crate::policy::{Organisation, Policy, Role};

/// Why the policy refuses a lifecycle step.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleRefusal {
    /// The caller may not see or touch this record, objection, application,
    /// list entry or check: it is answered exactly like one that does not
    /// exist (no existence oracle).
    #[error("no such {}", .0.as_str())]
    NotVisible(Noun),
    /// The record is in a state that does not allow this step.
    #[error("the record is {}", .0.as_str())]
    RecordState(RecordState),
    /// An objection on the record is already open (its id).
    #[error("an objection on this record is already open")]
    ObjectionOpen(i64),
    /// The objection was already resolved (its status).
    #[error("the objection was already resolved")]
    ObjectionClosed(String),
    /// A repair application is already pending (its id).
    #[error("a repair application for this record is already pending")]
    RepairPending(i64),
    /// The application was already decided (its status).
    #[error("the application was already decided")]
    RepairClosed(String),
    /// The record cannot be repaired now.
    #[error("the record cannot be repaired now: {0:?}")]
    RepairIneligible(RepairRefusal),
    /// Red listing refused: the subject is on a black list (entry ids).
    #[error("the subject is on a black list and cannot be red-listed")]
    BlackListed(Vec<i64>),
    /// The issuer already has this subject on this list (entry id).
    #[error("the issuer already has this subject on this list")]
    AlreadyListed(i64),
    /// The entry was already exited.
    #[error("the entry was already exited")]
    AlreadyExited,
    /// A list entry's end is not after its start.
    #[error("effective_to must be after effective_from")]
    PeriodEndsBeforeStart,
    /// An exit dated after today: exits are recorded when they happen.
    #[error("an exit cannot be dated in the future")]
    ExitInFuture,
    /// The exit date is before the entry took effect (on this date).
    #[error("the exit date is before the entry took effect")]
    ExitBeforeEffective(Date),
    /// Feedback was already recorded.
    #[error("feedback for this check was already recorded")]
    FeedbackRecorded,
    /// A measure named in feedback is not a measure of the check (name,
    /// truncated).
    #[error("'{0}' is not a measure of this check")]
    UnknownMeasure(String),
    /// A measure is named twice in feedback (name, truncated).
    #[error("measure '{0}' is named twice")]
    MeasureNamedTwice(String),
    /// Feedback reports a measure as applied that does not apply.
    #[error("measure '{measure}' is {status} and must not be applied")]
    MeasureNotApplicable {
        /// Measure id (truncated).
        measure: String,
        /// Its status in the check.
        status: String,
    },
    /// Feedback leaves applicable measures unreported (their ids).
    #[error("report every applicable measure as applied or not_applied")]
    FeedbackIncomplete(Vec<String>),
}

/// What a [`LifecycleRefusal::NotVisible`] hides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noun {
    /// A record.
    Record,
    /// An objection.
    Objection,
    /// A repair application.
    Repair,
    /// A red, black or focus list entry (only its issuer exits it).
    ListEntry,
    /// An 应查必查 check (only the department that ran it reports feedback).
    Check,
}

impl Noun {
    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Noun::Record => "record",
            Noun::Objection => "objection",
            Noun::Repair => "repair application",
            Noun::ListEntry => "list entry",
            Noun::Check => "check",
        }
    }
}

/// Whom a stored objection or repair application is about.
#[derive(Clone, Copy, Debug)]
pub struct CaseSubject<'a> {
    /// Subject type, as stored.
    pub subject_type: &'a str,
    /// Subject id, as stored.
    pub subject_id: &'a str,
}

/// Permission to read one objection or repair application, from
/// [`Policy::case_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaseRead {
    _minted: (),
}

/// What the store knows about an objection or repair application when a
/// provider answers it.
#[derive(Clone, Copy, Debug)]
pub struct Case<'a> {
    /// Provider of the record concerned.
    pub provider: &'a str,
    /// Status of the objection or application (`open`, `pending`, …).
    pub status: &'a str,
}

/// How subjects are shown to a caller in lifecycle reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectView {
    /// The subject id in clear.
    Clear,
    /// Only the keyed hash, as in the audit log (auditors).
    Hashed,
}

/// Whose objections the overdue report covers, and how subjects are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverdueScope<'a> {
    /// Only records of this provider; `None`: every provider.
    pub provider: Option<&'a str>,
    /// How subjects are shown.
    pub subjects: SubjectView,
}

impl Policy {
    /// Whether `org` may read the objection or repair application (`noun`)
    /// about `stored`, asking for `asked`: only the portal, acting for the
    /// subject it names, and only if that is the subject the case is about.
    /// Anything else is [`LifecycleRefusal::NotVisible`], answered like an
    /// id that does not exist, so neither another subject's cases nor the
    /// existence of an id can be learnt.
    pub fn case_read(
        &self,
        org: &Organisation,
        noun: Noun,
        stored: CaseSubject<'_>,
        asked: &SubjectId,
    ) -> Result<CaseRead, LifecycleRefusal> {
        let own = stored.subject_type == asked.kind().as_str() && stored.subject_id == asked.id();
        if org.has_role(Role::Portal) && own {
            Ok(CaseRead { _minted: () })
        } else {
            Err(LifecycleRefusal::NotVisible(noun))
        }
    }

    /// Whether an open objection due on `due_on` is past its deadline on
    /// `today` (the provider had until the end of `due_on`).
    pub fn objection_overdue(&self, open: bool, due_on: Date, today: Date) -> bool {
        open && today > due_on
    }

    /// Whether `org` may read a record's history, and how the subject is
    /// shown: auditors see every record with the subject hashed; otherwise
    /// only the record's provider, in clear. Anyone else gets
    /// [`LifecycleRefusal::NotVisible`], answered like a record that does
    /// not exist.
    pub fn history_view(
        &self,
        org: &Organisation,
        provider: &str,
    ) -> Result<SubjectView, LifecycleRefusal> {
        if org.has_role(Role::Auditor) {
            Ok(SubjectView::Hashed)
        } else if org.code.as_str() == provider {
            Ok(SubjectView::Clear)
        } else {
            Err(LifecycleRefusal::NotVisible(Noun::Record))
        }
    }

    /// The overdue-objection report `org` gets: auditors oversee every
    /// provider and see subjects only hashed; a department sees the
    /// objections on its own records.
    pub fn overdue_scope<'o>(&self, org: &'o Organisation) -> OverdueScope<'o> {
        if org.has_role(Role::Auditor) {
            OverdueScope {
                provider: None,
                subjects: SubjectView::Hashed,
            }
        } else {
            OverdueScope {
                provider: Some(org.code.as_str()),
                subjects: SubjectView::Clear,
            }
        }
    }
}
