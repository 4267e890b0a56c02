//! Red/black/focus lists (红黑名单): who may add and exit entries, the
//! black-excludes-red rule, and the catalog items derived from the lists.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Date;

use super::state::RecordState;
use super::steps::{LifecycleRefusal, Noun};
use crate::ids::SubjectType;
use crate::policy::{Organisation, Policy, Reason};

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

impl Policy {
    /// Whether a list entry in force has lapsed with its basis: `basis` is
    /// the state of its basis record's latest version (following
    /// corrections), `None` for an entry without a basis record. An entry
    /// whose basis is repaired, expired, withdrawn or superseded (with no
    /// corrected version) no longer counts — not for 应查必查 checks, not
    /// for the list-derived catalog items — so the two always agree. A
    /// disputed basis still counts (checks suspend punishment instead).
    pub fn basis_lapse(basis: Option<RecordState>) -> Option<Reason> {
        match basis? {
            RecordState::Repaired => Some(Reason::Repaired),
            RecordState::Expired => Some(Reason::Expired),
            RecordState::Withdrawn => Some(Reason::Withdrawn),
            RecordState::Superseded => Some(Reason::Superseded),
            RecordState::Active | RecordState::Disputed => None,
        }
    }

    /// Whether a step that takes the basis record of list entries from state
    /// `before` to `after` (an approved repair, a withdrawal) exits those
    /// entries now, and why: only if the basis still counted before the
    /// step. An entry whose basis had already lapsed — expired, above all —
    /// lapsed then, at read time ([`Policy::basis_lapse`]); no exit is
    /// written for it later, dated on the day of an unrelated step.
    pub fn basis_change_lapse(before: RecordState, after: RecordState) -> Option<Reason> {
        if Self::basis_lapse(Some(before)).is_some() {
            return None;
        }
        Self::basis_lapse(Some(after))
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

    /// The fields of the list-derived `item` when the subject has entries
    /// in force on the lists `in_force`; `None` if `item` is not
    /// list-derived.
    pub fn list_item_values(
        &self,
        item: &str,
        in_force: &[ListKind],
    ) -> Option<Map<String, Value>> {
        let fields = self.list_item_fields(item)?;
        Some(
            fields
                .iter()
                .map(|(name, kind)| (name.clone(), Value::Bool(in_force.contains(kind))))
                .collect(),
        )
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
}

/// A list entry of the subject as the store holds it (not yet exited, or
/// exited: see `exited`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntryFacts<'a> {
    /// Entry id.
    pub id: i64,
    /// Which list.
    pub list: ListKind,
    /// Issuing department.
    pub issuer: &'a str,
    /// First day in force.
    pub effective_from: Date,
    /// First day no longer in force, if planned.
    pub effective_to: Option<Date>,
    /// Exited (移出) already.
    pub exited: bool,
}

impl ListEntryFacts<'_> {
    /// Not exited and not past its end on `today`: in force, or scheduled
    /// to take effect.
    pub fn current(&self, today: Date) -> bool {
        !self.exited && self.effective_to.is_none_or(|to| to > today)
    }

    /// Current and already in effect on `today`: the entry counts for
    /// checks and for the list-derived catalog items.
    pub fn in_force(&self, today: Date) -> bool {
        self.current(today) && self.effective_from <= today
    }
}

/// Permission to add one list entry, from [`Policy::list_addition`]: the
/// red entries to exit in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListAddition {
    exit_red: Vec<i64>,
}

impl ListAddition {
    /// Red entries to exit (reason `black_listed`), in id order.
    pub fn exit_red(&self) -> &[i64] {
        &self.exit_red
    }
}

/// Permission for the issuer to exit one entry, from [`Policy::list_exit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListExit {
    _minted: (),
}

impl Policy {
    /// Whether an entry effective from `from` until `to` (open-ended
    /// without) may be recorded: an end, if any, after the start.
    pub fn list_period(&self, from: Date, to: Option<Date>) -> Result<(), LifecycleRefusal> {
        if to.is_some_and(|t| t <= from) {
            Err(LifecycleRefusal::PeriodEndsBeforeStart)
        } else {
            Ok(())
        }
    }

    /// Whether an exit dated `on` may be recorded on `today`: an exit is
    /// recorded when it happens (or after), never in advance.
    pub fn exit_date(&self, on: Date, today: Date) -> Result<(), LifecycleRefusal> {
        if on > today {
            Err(LifecycleRefusal::ExitInFuture)
        } else {
            Ok(())
        }
    }

    /// Whether a record in `state` (on the day of the listing) may be the
    /// basis of a new list entry: only one that still counts — active, or
    /// disputed (checks then suspend punishment). An entry based on a record
    /// that is already expired, repaired, withdrawn or superseded would
    /// never count ([`Policy::basis_lapse`]); it is refused with the
    /// record's state instead of being written.
    pub fn list_basis(&self, state: RecordState) -> Result<(), LifecycleRefusal> {
        match Self::basis_lapse(Some(state)) {
            None => Ok(()),
            Some(_) => Err(LifecycleRefusal::RecordState(state)),
        }
    }

    /// Whether `issuer` may put the subject on `list` on `today`, given all
    /// the subject's entries (docs/compliance.md, rule 9): a current black entry (in force
    /// or scheduled) blocks a red listing; a black listing exits every
    /// current red entry, whoever issued it; an issuer lists a subject on
    /// one list at most once at a time.
    pub fn list_addition(
        &self,
        list: ListKind,
        issuer: &str,
        entries: &[ListEntryFacts<'_>],
        today: Date,
    ) -> Result<ListAddition, LifecycleRefusal> {
        let current = |kind: ListKind| {
            let mut ids: Vec<i64> = entries
                .iter()
                .filter(|e| e.list == kind && e.current(today))
                .map(|e| e.id)
                .collect();
            ids.sort_unstable();
            ids
        };
        if list == ListKind::Red {
            let black = current(ListKind::Black);
            if !black.is_empty() {
                return Err(LifecycleRefusal::BlackListed(black));
            }
        }
        if let Some(dup) = entries
            .iter()
            .filter(|e| e.list == list && e.issuer == issuer && e.current(today))
            .map(|e| e.id)
            .min()
        {
            return Err(LifecycleRefusal::AlreadyListed(dup));
        }
        let exit_red = if list == ListKind::Black {
            current(ListKind::Red)
        } else {
            Vec::new()
        };
        Ok(ListAddition { exit_red })
    }

    /// Whether `org` may exit `entry` on `on`: only its issuer (to anyone
    /// else the entry is [`LifecycleRefusal::NotVisible`], answered like a
    /// missing id), only once, not before it took effect.
    pub fn list_exit(
        &self,
        org: &Organisation,
        entry: &ListEntryFacts<'_>,
        on: Date,
    ) -> Result<ListExit, LifecycleRefusal> {
        if entry.issuer != org.code.as_str() {
            return Err(LifecycleRefusal::NotVisible(Noun::ListEntry));
        }
        if entry.exited {
            return Err(LifecycleRefusal::AlreadyExited);
        }
        if on < entry.effective_from {
            return Err(LifecycleRefusal::ExitBeforeEffective(entry.effective_from));
        }
        Ok(ListExit { _minted: () })
    }
}
