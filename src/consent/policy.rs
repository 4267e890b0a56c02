//! Strict loading of `policies/consent.toml` (and the optional additional
//! issuers file named by the configuration; see the [module docs](super)).
//!
//! ```toml
//! leeway_secs = 30                 # clock-skew allowance, at most 30
//! max_lifetime_secs = 15552000     # longest exp - min(iat, nbf) accepted
//!
//! [[issuer]]
//! iss = "https://credit.example.gov.cn/consent"
//! kid = "consent-2026-01"
//! alg = "EdDSA"                    # or "ES256"; exactly one per key
//! public_key = "base64…"           # Ed25519: 32 raw bytes; ES256: 65-byte SEC1 point
//! name = "optional label"
//! ```
//!
//! Unknown keys, an unknown `alg`, a key of the wrong size for its `alg`, a
//! duplicate `kid` (also across the two files), a third key for one issuer,
//! leeway above 30 s or a zero lifetime are load errors naming the file and
//! line. The audience is not set here: it is this gateway's
//! `server.gateway_id`.
//!
//! # Rotating an issuer's key: two keys, by `kid`, during an overlap
//!
//! An issuer may have at most [`MAX_KEYS_PER_ISSUER`] keys pinned at once:
//! the one it signs new tokens with and the one before it, whose tokens are
//! still valid. A token names its key by `kid`, and only that key can
//! verify it. Once the last token signed with the old key has expired (at
//! most `max_lifetime_secs` after the issuer switched), the old block is
//! removed and its tokens are refused (`unknown_issuer`: the kid is not
//! pinned). A third key means a retired one was never removed, so it is
//! refused at load.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use toml::Spanned;

use super::token::{
    ConfigError, ConsentVerifier, IssuerKey, KeyAlg, MAX_LEEWAY_SECS, VerifierConfig,
};
use crate::policy::LoadError;

/// File name inside the policy directory.
pub const FILE: &str = "consent.toml";

/// Keys one issuer may have pinned at once: the current and the previous one.
pub const MAX_KEYS_PER_ISSUER: usize = 2;

/// The loaded consent policy: the verifier plus what was pinned where, so
/// startup can report keys pinned outside `policies/`.
#[derive(Debug)]
pub struct ConsentPolicy {
    /// Verifier for every request.
    pub verifier: ConsentVerifier,
    /// Pinned keys in load order.
    pub keys: Vec<PinnedInfo>,
}

/// Where one key came from (for logs and `policy check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedInfo {
    /// Issuer.
    pub iss: String,
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: KeyAlg,
    /// File it was pinned in.
    pub file: PathBuf,
    /// True if pinned in the additional issuers file rather than `policies/`.
    pub extra: bool,
    /// Optional human label from the file.
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MainFile {
    leeway_secs: Spanned<u64>,
    max_lifetime_secs: Spanned<u64>,
    #[serde(default)]
    issuer: Vec<IssuerToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraFile {
    #[serde(default)]
    issuer: Vec<IssuerToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerToml {
    iss: Spanned<String>,
    kid: Spanned<String>,
    alg: Spanned<String>,
    public_key: Spanned<String>,
    #[serde(default)]
    name: Option<String>,
}

struct Src {
    path: PathBuf,
    text: String,
}

impl Src {
    fn read(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Ok(Src {
            path: path.to_owned(),
            text,
        })
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T, LoadError> {
        toml::from_str(&self.text).map_err(|e| LoadError {
            file: self.path.clone(),
            line: e.span().map(|s| self.line_of(s.start)),
            message: e.message().trim().to_owned(),
        })
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.path.clone(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        }
    }
}

fn issuers(
    src: &Src,
    list: Vec<IssuerToml>,
    extra: bool,
    keys: &mut Vec<IssuerKey>,
    info: &mut Vec<PinnedInfo>,
) -> Result<(), LoadError> {
    for i in list {
        if i.iss.get_ref().trim().is_empty() || i.iss.get_ref().trim() != i.iss.get_ref() {
            return Err(src.err(
                i.iss.span(),
                "iss must be non-empty without surrounding spaces",
            ));
        }
        let kid_ok = !i.kid.get_ref().is_empty()
            && i.kid.get_ref().len() <= 128
            && i.kid.get_ref().bytes().all(|b| b.is_ascii_graphic());
        if !kid_ok {
            return Err(src.err(
                i.kid.span(),
                "kid must be 1-128 printable ASCII characters without spaces",
            ));
        }
        if info.iter().any(|k| &k.kid == i.kid.get_ref()) {
            return Err(src.err(
                i.kid.span(),
                format!(
                    "kid '{}' is pinned twice; a kid must select exactly one key",
                    i.kid.get_ref()
                ),
            ));
        }
        let same = info.iter().filter(|k| &k.iss == i.iss.get_ref()).count();
        if same >= MAX_KEYS_PER_ISSUER {
            return Err(src.err(
                i.kid.span(),
                format!(
                    "issuer '{}' already has {same} keys pinned; during a rotation an issuer has at most {MAX_KEYS_PER_ISSUER} (the current and the previous one): remove the retired key",
                    i.iss.get_ref()
                ),
            ));
        }
        let alg = match i.alg.get_ref().as_str() {
            "EdDSA" => KeyAlg::EdDSA,
            "ES256" => KeyAlg::ES256,
            other => {
                return Err(src.err(
                    i.alg.span(),
                    format!("unsupported alg '{other}' (EdDSA or ES256)"),
                ));
            }
        };
        let Ok(public_key) = STANDARD.decode(i.public_key.get_ref().trim()) else {
            return Err(src.err(i.public_key.span(), "public_key is not valid base64"));
        };
        let size_ok = match alg {
            KeyAlg::EdDSA => public_key.len() == 32,
            KeyAlg::ES256 => public_key.len() == 65 && public_key[0] == 0x04,
        };
        if !size_ok {
            return Err(src.err(
                i.public_key.span(),
                match alg {
                    KeyAlg::EdDSA => "an EdDSA public_key is 32 raw Ed25519 bytes",
                    KeyAlg::ES256 => "an ES256 public_key is the 65-byte uncompressed P-256 point",
                },
            ));
        }
        info.push(PinnedInfo {
            iss: i.iss.get_ref().clone(),
            kid: i.kid.get_ref().clone(),
            alg,
            file: src.path.clone(),
            extra,
            name: i.name,
        });
        keys.push(IssuerKey {
            issuer: i.iss.into_inner(),
            kid: i.kid.into_inner(),
            alg,
            public_key,
        });
    }
    Ok(())
}

/// Load `dir/consent.toml` plus the optional additional issuers file and
/// build the verifier for tokens addressed to `audience`.
pub fn load(dir: &Path, extra: Option<&Path>, audience: &str) -> Result<ConsentPolicy, LoadError> {
    let main = Src::read(&dir.join(FILE))?;
    let mf: MainFile = main.parse()?;
    if *mf.leeway_secs.get_ref() > MAX_LEEWAY_SECS {
        return Err(main.err(
            mf.leeway_secs.span(),
            format!("leeway_secs may be at most {MAX_LEEWAY_SECS}"),
        ));
    }
    if *mf.max_lifetime_secs.get_ref() == 0 {
        return Err(main.err(
            mf.max_lifetime_secs.span(),
            "max_lifetime_secs must be greater than zero",
        ));
    }
    let mut keys = Vec::new();
    let mut info = Vec::new();
    issuers(&main, mf.issuer, false, &mut keys, &mut info)?;
    if let Some(path) = extra {
        let src = Src::read(path)?;
        let ef: ExtraFile = src.parse()?;
        issuers(&src, ef.issuer, true, &mut keys, &mut info)?;
    }
    let cfg = VerifierConfig {
        audience: audience.to_owned(),
        leeway_secs: *mf.leeway_secs.get_ref(),
        max_lifetime_secs: *mf.max_lifetime_secs.get_ref(),
    };
    let verifier = ConsentVerifier::new(cfg, keys).map_err(|e| LoadError {
        file: main.path.clone(),
        line: None,
        message: match e {
            ConfigError::NoKeys => "no consent issuer is pinned ([[issuer]])".into(),
            ConfigError::EmptyAudience => "the gateway id (consent audience) is empty".into(),
            other => other.to_string(),
        },
    })?;
    Ok(ConsentPolicy {
        verifier,
        keys: info,
    })
}

/// One `[[issuer]]` block pinning `public_key`, as `consent keygen` prints it
/// and the dev issuer file contains.
pub fn issuer_block(iss: &str, kid: &str, alg: KeyAlg, public_key: &[u8]) -> String {
    format!(
        "[[issuer]]\niss = {}\nkid = {}\nalg = \"{}\"\npublic_key = \"{}\"\n",
        toml_str(iss),
        toml_str(kid),
        alg.jose_name(),
        STANDARD.encode(public_key)
    )
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::token::{ed25519_public_from_pkcs8, generate_ed25519_pkcs8};

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str, main: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("credgate-cp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(FILE), main).unwrap();
        Dir(d)
    }

    fn key_b64() -> String {
        let pk = ed25519_public_from_pkcs8(&generate_ed25519_pkcs8().unwrap()).unwrap();
        STANDARD.encode(pk)
    }

    fn err(tag: &str, main: &str) -> LoadError {
        let d = dir(tag, main);
        load(&d.0, None, "gw").unwrap_err()
    }

    #[test]
    fn committed_policy_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let p = load(&dir, None, "credgate-dev").unwrap();
        assert!(!p.keys.is_empty());
        assert!(p.keys.iter().all(|k| !k.extra));
    }

    #[test]
    fn errors_name_file_and_line() {
        let k = key_b64();
        let head = "leeway_secs = 30\nmax_lifetime_secs = 3600\n";
        let e = err(
            "lw",
            &format!(
                "leeway_secs = 31\nmax_lifetime_secs = 3600\n[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"EdDSA\"\npublic_key = \"{k}\"\n"
            ),
        );
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.file.ends_with(FILE));
        let e = err(
            "unk",
            &format!(
                "{head}[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"EdDSA\"\npublic_key = \"{k}\"\ncolour = 1\n"
            ),
        );
        assert_eq!(e.line, Some(8), "{e}");
        let e = err(
            "alg",
            &format!(
                "{head}[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"HS256\"\npublic_key = \"{k}\"\n"
            ),
        );
        assert_eq!(e.line, Some(6), "{e}");
        let e = err(
            "size",
            &format!(
                "{head}[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"ES256\"\npublic_key = \"{k}\"\n"
            ),
        );
        assert_eq!(e.line, Some(7), "{e}");
        let e = err(
            "b64",
            &format!(
                "{head}[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"EdDSA\"\npublic_key = \"!!\"\n"
            ),
        );
        assert_eq!(e.line, Some(7), "{e}");
        let block = format!(
            "[[issuer]]\niss = \"I\"\nkid = \"k\"\nalg = \"EdDSA\"\npublic_key = \"{k}\"\n"
        );
        let e = err("dup", &format!("{head}{block}{block}"));
        assert_eq!(e.line, Some(10), "{e}");
        let e = err("none", head);
        assert!(e.message.contains("no consent issuer"), "{e}");
    }

    #[test]
    fn an_issuer_rotates_with_two_keys_and_a_removed_key_no_longer_verifies() {
        use crate::consent::token::{ConsentClaims, issue};
        let (old, new) = (
            generate_ed25519_pkcs8().unwrap(),
            generate_ed25519_pkcs8().unwrap(),
        );
        let block = |kid: &str, pkcs8: &[u8]| {
            issuer_block(
                "I",
                kid,
                KeyAlg::EdDSA,
                &ed25519_public_from_pkcs8(pkcs8).unwrap(),
            )
        };
        let head = "leeway_secs = 30\nmax_lifetime_secs = 3600\n";
        let now = crate::consent::now_unix();
        let token = |kid: &str, pkcs8: &[u8]| {
            let claims = ConsentClaims {
                iss: "I".into(),
                sub: "91370300MA3CXQ001R".into(),
                aud: "gw".into(),
                grantee: "91370300164100001A".into(),
                purpose: "financing".into(),
                scope: vec!["enterprise_tax".into()],
                iat: now - 10,
                nbf: now - 10,
                exp: now + 600,
                jti: format!("j-{kid}"),
                max_uses: None,
                written: None,
                notice: None,
            };
            issue(kid, KeyAlg::EdDSA, pkcs8, &claims).unwrap()
        };
        let (t_old, t_new) = (token("k-2026", &old), token("k-2027", &new));
        // Overlap: both keys pinned, tokens under either verify.
        let d = dir(
            "rot",
            &format!("{head}{}{}", block("k-2026", &old), block("k-2027", &new)),
        );
        let p = load(&d.0, None, "gw").unwrap();
        for t in [&t_old, &t_new] {
            let c = p.verifier.verify(t, now).unwrap();
            assert_eq!(c.iss, "I");
        }
        // The old key removed: its tokens are refused, the new ones verify.
        std::fs::write(d.0.join(FILE), format!("{head}{}", block("k-2027", &new))).unwrap();
        let p = load(&d.0, None, "gw").unwrap();
        assert!(p.verifier.verify(&t_new, now).is_ok());
        let e = p.verifier.verify(&t_old, now).unwrap_err();
        assert_eq!(e.sub_reason(), "unknown_issuer", "{e}");
        // A token claiming the new kid but signed with the old key fails too.
        let forged = token("k-2027", &old);
        assert!(p.verifier.verify(&forged, now).is_err());
        // A third key for the same issuer is refused at load, on its line.
        let third = generate_ed25519_pkcs8().unwrap();
        let text = format!(
            "{head}{}{}{}",
            block("k-2026", &old),
            block("k-2027", &new),
            block("k-2028", &third)
        );
        let e = err("three", &text);
        assert_eq!(e.line, Some(15), "{e}");
        assert!(e.message.contains("at most 2"), "{e}");
    }

    #[test]
    fn extra_file_adds_keys_but_not_duplicates() {
        let k = key_b64();
        let d = dir(
            "extra",
            &format!(
                "leeway_secs = 5\nmax_lifetime_secs = 60\n{}",
                issuer_block("I", "k1", KeyAlg::EdDSA, &STANDARD.decode(&k).unwrap())
            ),
        );
        let extra = d.0.join("extra.toml");
        std::fs::write(
            &extra,
            issuer_block(
                "D",
                "k2",
                KeyAlg::EdDSA,
                &STANDARD.decode(key_b64()).unwrap(),
            ),
        )
        .unwrap();
        let p = load(&d.0, Some(&extra), "gw").unwrap();
        assert_eq!(p.keys.len(), 2);
        assert!(p.keys[1].extra);
        std::fs::write(
            &extra,
            issuer_block(
                "D",
                "k1",
                KeyAlg::EdDSA,
                &STANDARD.decode(key_b64()).unwrap(),
            ),
        )
        .unwrap();
        let e = load(&d.0, Some(&extra), "gw").unwrap_err();
        assert_eq!((e.file.clone(), e.line), (extra.clone(), Some(3)), "{e}");
        // The extra file may not change verification policy.
        std::fs::write(&extra, "leeway_secs = 30\n").unwrap();
        let e = load(&d.0, Some(&extra), "gw").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
