//! Masking (脱敏): pure transformations applied to a value a grant releases
//! masked. Masking never fails: a value of an unexpected shape is replaced
//! entirely rather than leaked.

use ring::hmac;
use serde_json::Value;

use super::MaskKind;

/// The key of the `hash` mask and its id. A masked value names the key
/// (`k2:<hex>`), so a caller comparing masked values across answers can
/// tell a key rotation (another id) from a changed value (same id, another
/// hash). The policy gets the key from its caller: it reads no files.
#[derive(Clone)]
pub struct MaskKey {
    id: String,
    key: hmac::Key,
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskKey({}, ..)", self.id)
    }
}

impl MaskKey {
    /// The key `bytes` under id `id` (validated by the configuration).
    pub fn new(id: &str, bytes: &[u8]) -> Self {
        MaskKey {
            id: id.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// The key id masked values carry.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Apply `kind` to `value` with the deployment's mask key.
pub fn apply(kind: MaskKind, value: &Value, key: &MaskKey) -> Value {
    match kind {
        MaskKind::Partial { first, last } => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Value::String("***".into()),
            };
            Value::String(partial(&text, first as usize, last as usize))
        }
        MaskKind::Hash => {
            let canonical = value.to_string();
            let mac = hmac::sign(&key.key, canonical.as_bytes());
            Value::String(format!("{}:{}", key.id, hex::encode(mac.as_ref())))
        }
        MaskKind::YearOnly => match value {
            Value::String(s)
                if s.len() >= 4 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) =>
            {
                Value::String(s[..4].to_owned())
            }
            _ => Value::Null,
        },
    }
}

/// Keep `first` and `last` characters; every other character becomes `*`.
/// At least one character is always hidden: "keep 1 and 1" applied to the
/// two-character name 张三 gives 张*, never the whole name.
fn partial(s: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let (mut f, mut l) = (first, last);
    while f + l >= n && (f > 0 || l > 0) {
        if l > 0 {
            l -= 1;
        } else {
            f -= 1;
        }
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i < f || i >= n - l { c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(bytes: &[u8]) -> MaskKey {
        MaskKey::new("k1", bytes)
    }

    #[test]
    fn partial_masks() {
        let k = MaskKind::Partial { first: 1, last: 1 };
        assert_eq!(apply(k, &json!("张三丰"), &key(b"k")), json!("张*丰"));
        let k = MaskKind::Partial { first: 3, last: 4 };
        assert_eq!(
            apply(k, &json!("13812345678"), &key(b"k")),
            json!("138****5678")
        );
        assert_eq!(apply(k, &json!(""), &key(b"k")), json!(""));
        let k = MaskKind::Partial { first: 1, last: 1 };
        assert_eq!(apply(k, &json!("张三"), &key(b"k")), json!("张*"));
        assert_eq!(apply(k, &json!({"a": 1}), &key(b"k")), json!("***"));
    }

    #[test]
    fn hash_is_keyed_and_stable_and_names_its_key() {
        let a = apply(MaskKind::Hash, &json!("x"), &key(b"k1"));
        assert_eq!(a, apply(MaskKind::Hash, &json!("x"), &key(b"k1")));
        assert_ne!(a, apply(MaskKind::Hash, &json!("x"), &key(b"k2")));
        let text = a.as_str().unwrap();
        let (id, hex) = text.split_once(':').unwrap();
        assert_eq!((id, hex.len()), ("k1", 64));
        // A rotation: another id. The hex under k1 is what earlier
        // versions returned bare.
        let rotated = apply(MaskKind::Hash, &json!("x"), &MaskKey::new("k2", b"k2"));
        assert!(rotated.as_str().unwrap().starts_with("k2:"), "{rotated}");
        let bare = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k1"), b"\"x\"");
        assert_eq!(hex, hex::encode(bare.as_ref()));
    }

    #[test]
    fn year_only() {
        assert_eq!(
            apply(MaskKind::YearOnly, &json!("1985-04-03"), &key(b"")),
            json!("1985")
        );
        assert_eq!(
            apply(MaskKind::YearOnly, &json!(12), &key(b"")),
            Value::Null
        );
    }
}
