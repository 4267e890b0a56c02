//! Strict JSON: the checks serde's derives do not make, applied to every
//! request body before any DTO is parsed.
//!
//! * **Duplicate keys** at any depth are refused. serde_json keeps the last
//!   of two equal keys in a `Map` (and a derive refuses them only for its own
//!   struct fields), so `{"records":[{…religion…}],"records":[]}` would
//!   otherwise be read as the harmless second array after the prohibited-key
//!   scan saw only one of them.
//! * **Nesting** deeper than [`MAX_DEPTH`] is refused (serde_json's own limit
//!   is 128; no credgate body needs more than a handful of levels).
//! * Invalid UTF-8, syntax errors and trailing data are refused.
//!
//! One pass over the bytes, no tree built: keys are compared per object in a
//! small vector (objects in credgate bodies have a few keys).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 32;

/// Why a body is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// Two equal keys in one object.
    #[error("duplicate key {key:?} in one JSON object")]
    DuplicateKey {
        /// The key (truncated to 64 characters).
        key: String,
    },
    /// Too deeply nested.
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not JSON at all.
    #[error("request body is not valid JSON (line {line}, column {column})")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

const DUP: &str = "\u{0}dup:";
const DEEP: &str = "\u{0}deep";

/// Check `bytes` (see module docs).
pub fn check(bytes: &[u8]) -> Result<(), StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let run = Node { depth: 0 }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    run.map_err(|e| {
        let msg = e.to_string();
        if let Some(rest) = msg.strip_prefix(DUP) {
            // serde_json appends " at line L column C".
            let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
            StrictJsonError::DuplicateKey {
                key: key.chars().take(64).collect(),
            }
        } else if msg.starts_with(DEEP) {
            StrictJsonError::TooDeep
        } else {
            StrictJsonError::Syntax {
                line: e.line(),
                column: e.column(),
            }
        }
    })
}

struct Node {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter::<A::Error>()?;
        while seq.next_element_seed(Node { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter::<A::Error>()?;
        let mut seen: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if seen.iter().any(|k| *k == key) {
                return Err(de::Error::custom(format_args!("{DUP}{key}")));
            }
            seen.push(key.into_owned());
            map.next_value_seed(Node { depth })?;
        }
        Ok(())
    }
}

impl Node {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(DEEP))
        } else {
            Ok(self.depth + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_bodies() {
        check(br#"{"a":1,"b":[{"a":2},{"a":3}],"c":{"d":null,"e":"x\"y"}}"#).unwrap();
        check(b"[]").unwrap();
        check(b" 12 ").unwrap();
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        for (body, key) in [
            (r#"{"records":[],"records":[]}"#, "records"),
            (r#"{"a":{"x":1,"y":2,"x":3}}"#, "x"),
            (r#"[{"k":1},{"k":1,"k":2}]"#, "k"),
            // An escaped spelling is the same key once decoded.
            (r#"{"religion":1,"religi\u006fn":2}"#, "religion"),
        ] {
            assert_eq!(
                check(body.as_bytes()),
                Err(StrictJsonError::DuplicateKey { key: key.into() }),
                "{body}"
            );
        }
    }

    #[test]
    fn refuses_depth_syntax_and_trailing_data() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(check(deep.as_bytes()), Err(StrictJsonError::TooDeep));
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        check(ok.as_bytes()).unwrap();
        assert!(matches!(check(b"{"), Err(StrictJsonError::Syntax { .. })));
        assert!(matches!(
            check(b"{} {}"),
            Err(StrictJsonError::Syntax { .. })
        ));
        assert!(matches!(
            check(b"{\"a\":\"\xff\"}"),
            Err(StrictJsonError::Syntax { .. })
        ));
    }
}
