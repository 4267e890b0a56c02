//! Which roles may call which endpoint: `policies/access.toml`, compiled.
//!
//! The endpoint table ([`crate::endpoint`]) says what exists; this says who
//! may use it. Loading checks that every endpoint is listed exactly once,
//! that every role is known, and the floors that no file can lower (the
//! auditor never touches credit data; only departments submit records).

use std::collections::HashMap;

use super::{Organisation, Role};
use crate::endpoint::Endpoint;

/// The compiled access table.
#[derive(Debug, Clone, Default)]
pub struct Access {
    roles: HashMap<Endpoint, Vec<Role>>,
}

/// A registered organisation none of whose roles may call the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint} is for {}", allowed_list(.allowed))]
pub struct NotPermitted {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The roles that may call it.
    pub allowed: Vec<Role>,
}

fn allowed_list(roles: &[Role]) -> String {
    if roles.is_empty() {
        return "no role".into();
    }
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `(endpoint, role)` pairs no policy may grant.
pub(super) const FLOOR: &[(Endpoint, Role, &str)] = &[
    (
        Endpoint::Query,
        Role::Auditor,
        "the auditor reads the audit log, never credit data",
    ),
    (
        Endpoint::SubmitRecords,
        Role::Auditor,
        "the auditor reads the audit log, never credit data",
    ),
    (
        Endpoint::SubmitRecords,
        Role::Bank,
        "only departments submit records",
    ),
    (
        Endpoint::SubmitRecords,
        Role::CreditAgency,
        "only departments submit records",
    ),
    (
        Endpoint::SubmitRecords,
        Role::Portal,
        "only departments submit records",
    ),
];

impl Access {
    pub(super) fn new(roles: HashMap<Endpoint, Vec<Role>>) -> Self {
        Access { roles }
    }

    /// The roles that may call `endpoint`, in table order.
    pub fn roles(&self, endpoint: Endpoint) -> &[Role] {
        self.roles.get(&endpoint).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Admit `org` to `endpoint`, or say who may call it.
    pub fn admit(&self, org: &Organisation, endpoint: Endpoint) -> Result<(), NotPermitted> {
        let allowed = self.roles(endpoint);
        if allowed.iter().any(|r| org.has_role(*r)) {
            Ok(())
        } else {
            Err(NotPermitted {
                endpoint,
                allowed: allowed.to_vec(),
            })
        }
    }

    /// The role × endpoint matrix as text: one line per endpoint, `x` where
    /// the role may call it (shown by `credgate policy explain --access`,
    /// pinned by a golden file).
    pub fn matrix(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("{:<26}", "endpoint");
        for r in Role::ALL {
            let _ = write!(out, " {:<13}", r.as_str());
        }
        out = out.trim_end().to_owned();
        out.push('\n');
        for e in Endpoint::ALL {
            let spec = e.spec();
            let mut line = format!("{:<26}", e.action());
            for r in Role::ALL {
                let mark = if self.roles(*e).contains(&r) {
                    "x"
                } else {
                    "."
                };
                let _ = write!(line, " {mark:<13}");
            }
            let _ = writeln!(
                out,
                "{}  {} {}",
                line.trim_end(),
                spec.method.as_str(),
                spec.pattern
            );
        }
        out
    }
}
