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

use std::borrow::Cow;
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
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("{DUP}{key}")));
            }
            seen.push(key);
            map.next_value_seed(Node { depth })?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the body unless it holds escapes (a
/// `Cow<str>` deserialised the usual way is always owned: one allocation
/// per key of every body).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
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

/// The path of the value a schema error on the strict JSON `bytes` is
/// about ([`path_at`] at the error's position; serde_json reports its
/// syntax-category errors on a strict body — a non-string where an enum is
/// expected — one byte past the value's first byte).
pub fn path_of_error(bytes: &[u8], e: &serde_json::Error) -> Option<String> {
    let column = match e.classify() {
        serde_json::error::Category::Syntax => e.column().saturating_sub(1),
        _ => e.column(),
    };
    path_at(bytes, e.line(), column)
}

/// The path (`records[0].fields.x`, `subject.type`) of the value at
/// `line`/`column` of `bytes` as serde_json reports them (1-based line,
/// bytes into it): what a schema error on a strict JSON body points at.
/// `None` when the position is outside the body or at its top level.
pub fn path_at(bytes: &[u8], line: usize, column: usize) -> Option<String> {
    enum Seg {
        Key(Option<String>),
        Index(usize),
    }
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)?
            .0
            + 1
    };
    let end = line_start.checked_add(column)?.min(bytes.len());
    let mut stack: Vec<Seg> = Vec::new();
    let mut i = 0;
    while i < end {
        match bytes[i] {
            b'{' => stack.push(Seg::Key(None)),
            b'[' => stack.push(Seg::Index(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Seg::Index(n)) => *n += 1,
                Some(Seg::Key(k)) => *k = None,
                None => {}
            },
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if let Some(Seg::Key(k @ None)) = stack.last_mut() {
                    let raw = bytes.get(start..=i.min(bytes.len() - 1))?;
                    *k = Some(serde_json::from_slice::<String>(raw).ok()?);
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for seg in &stack {
        match seg {
            Seg::Key(Some(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Seg::Index(n) => path.push_str(&format!("[{n}]")),
            Seg::Key(None) => {}
        }
    }
    (!path.is_empty()).then(|| path.chars().take(128).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of the error serde_json reports for `body` read as `T`.
    fn path_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> Option<String> {
        let e = serde_json::from_str::<T>(body).unwrap_err();
        path_of_error(body.as_bytes(), &e)
    }

    #[test]
    fn schema_errors_point_at_their_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            #[serde(rename = "type")]
            kind: Kind,
            n: u32,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            Legal,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            subject: Inner,
            list: Vec<Inner>,
        }
        let ok = r#"{"type": "legal", "n": 1}"#;
        for (body, path) in [
            (
                r#"{"subject": {"type": "alien", "n": 1}, "list": []}"#.to_string(),
                "subject.type",
            ),
            (
                r#"{"subject": {"type": 5, "n": 1}, "list": []}"#.to_string(),
                "subject.type",
            ),
            (
                format!(r#"{{"subject": {ok}, "list": [{ok}, {{"type": "legal", "n": "1"}}]}}"#),
                "list[1].n",
            ),
            (
                format!("{{\"subject\": {ok},\n \"list\": [{ok},\n {{\"type\": [], \"n\": 1}}]}}"),
                "list[1].type",
            ),
            (
                r#"{"subject": {"type": "legal", "n": 1, "x\"y": 2}, "list": []}"#.to_string(),
                "subject.x\"y",
            ),
            (
                r#"{"subject": {"type": "legal"}, "list": []}"#.to_string(),
                "subject",
            ),
        ] {
            assert_eq!(path_of::<Outer>(&body).as_deref(), Some(path), "{body}");
        }
        assert_eq!(path_of::<Outer>(r#"{"list": []}"#), None);
    }

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
            (r#"{"religi\u006fn":1,"religion":2}"#, "religion"),
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
