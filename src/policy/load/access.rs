//! `access.toml`: `[endpoints]` action name → roles.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

use super::{LoadError, Source, role};
use crate::endpoint::Endpoint;
use crate::policy::access::{Access, FLOOR};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    endpoints: Spanned<HashMap<Spanned<String>, Vec<Spanned<String>>>>,
}

pub(in crate::policy) fn load(src: &Source) -> Result<Access, LoadError> {
    let file: AccessFile = src.parse()?;
    let span = file.endpoints.span();
    let spanned = file.endpoints.into_inner();
    let mut entries: Vec<_> = spanned.into_iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut roles = HashMap::new();
    for (action, list) in entries {
        let Some(endpoint) = Endpoint::from_action(action.get_ref()) else {
            let known: Vec<&str> = Endpoint::ALL.iter().map(|e| e.action()).collect();
            return src.err(
                action.span(),
                format!(
                    "unknown endpoint '{}' (known: {})",
                    action.get_ref(),
                    known.join(", ")
                ),
            );
        };
        let mut rs = Vec::new();
        for r in &list {
            match role(r.get_ref()) {
                Some(x) if rs.contains(&x) => {
                    return src.err(r.span(), format!("role '{}' listed twice", r.get_ref()));
                }
                Some(x) => {
                    if let Some((_, _, why)) =
                        FLOOR.iter().find(|(e, fr, _)| *e == endpoint && *fr == x)
                    {
                        return src.err(
                            r.span(),
                            format!(
                                "role '{}' may not call {}: {why}",
                                r.get_ref(),
                                endpoint.action()
                            ),
                        );
                    }
                    rs.push(x);
                }
                None => {
                    return src.err(
                        r.span(),
                        format!(
                            "unknown role '{}' (known: department, bank, credit_agency, auditor, portal)",
                            r.get_ref()
                        ),
                    );
                }
            }
        }
        // Table order, so the matrix and error messages read the same way
        // whatever order the file lists roles in.
        rs.sort_by_key(|r| crate::policy::Role::ALL.iter().position(|x| x == r));
        roles.insert(endpoint, rs);
    }
    if let Some(missing) = Endpoint::ALL.iter().find(|e| !roles.contains_key(e)) {
        return src.err(
            span,
            format!(
                "endpoint '{}' is not listed; list every endpoint (an empty list means nobody)",
                missing.action()
            ),
        );
    }
    Ok(Access::new(roles))
}
