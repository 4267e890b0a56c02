//! Masking (脱敏): pure transformations applied to a value a grant releases
//! masked. Masking never fails: a value of an unexpected shape is replaced
//! entirely rather than leaked.

use ring::hmac;
use serde_json::Value;

use super::MaskKind;

/// Apply `kind` to `value` with the deployment's mask key.
pub fn apply(kind: MaskKind, value: &Value, key: &[u8]) -> Value {
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
            let key = hmac::Key::new(hmac::HMAC_SHA256, key);
            let canonical = value.to_string();
            Value::String(hex::encode(hmac::sign(&key, canonical.as_bytes()).as_ref()))
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

    #[test]
    fn partial_masks() {
        let k = MaskKind::Partial { first: 1, last: 1 };
        assert_eq!(apply(k, &json!("张三丰"), b"k"), json!("张*丰"));
        let k = MaskKind::Partial { first: 3, last: 4 };
        assert_eq!(apply(k, &json!("13812345678"), b"k"), json!("138****5678"));
        assert_eq!(apply(k, &json!(""), b"k"), json!(""));
        let k = MaskKind::Partial { first: 1, last: 1 };
        assert_eq!(apply(k, &json!("张三"), b"k"), json!("张*"));
        assert_eq!(apply(k, &json!({"a": 1}), b"k"), json!("***"));
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let a = apply(MaskKind::Hash, &json!("x"), b"k1");
        assert_eq!(a, apply(MaskKind::Hash, &json!("x"), b"k1"));
        assert_ne!(a, apply(MaskKind::Hash, &json!("x"), b"k2"));
    }

    #[test]
    fn year_only() {
        assert_eq!(
            apply(MaskKind::YearOnly, &json!("1985-04-03"), b""),
            json!("1985")
        );
        assert_eq!(apply(MaskKind::YearOnly, &json!(12), b""), Value::Null);
    }
}
