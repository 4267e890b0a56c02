//! Red/black/focus lists (红黑名单) and the catalog items derived from them.

use serde::{Deserialize, Serialize};

use crate::ids::SubjectType;
use crate::policy::Policy;

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
    /// Whether `item` is derived from the list tables (never submitted).
    pub fn list_item_fields(&self, item: &str) -> Option<&[(String, ListKind)]> {
        let (i, _) = self.item(item)?;
        self.lifecycle
            .list_items
            .iter()
            .find(|(ii, _)| *ii == i)
            .map(|(_, f)| f.as_slice())
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
