//! C2SP signed checkpoints (`c2sp.org/tlog-checkpoint` over `c2sp.org/signed-note`)
//! with Ed25519 keys, so auditors can check the log head with standard tooling
//! (e.g. `golang.org/x/mod/sumdb/note`).
//!
//! A signed checkpoint looks like:
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 root hash>
//!
//! — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>
//! ```
//!
//! Notes arrive from auditors' export files, so [`CheckpointVerifier`] parses
//! strictly: bounded sizes, exact line format, canonical base64 and decimal,
//! and no extension lines (this log never emits them and [`Checkpoint`] could
//! not carry them). Signature lines from other keys (witnesses, rotated keys)
//! are skipped as the spec requires, but one by the configured key must verify
//! and every line claiming to be by that key must verify.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::merkle::Hash;

/// Largest signed note accepted, in bytes; bounds parsing work on untrusted input.
///
/// Generous enough for the spec's minimum of 16 signatures even if some are
/// post-quantum cosignatures.
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines accepted in one note (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// Longest accepted checkpoint origin, in bytes.
pub const MAX_ORIGIN_LEN: usize = 1024;
/// Longest accepted key name, in bytes.
pub const MAX_KEY_NAME_LEN: usize = 1024;

/// Signature type byte for Ed25519 in signed-note key ids and verifier keys.
const ALG_ED25519: u8 = 0x01;
/// Em dash (U+2014) and space: the start of every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key could not be loaded or a checkpoint could not be signed or verified.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Key name empty, too long, or containing whitespace, control characters or '+'.
    #[error("invalid key name")]
    InvalidKeyName,
    /// The PKCS#8 document is not an Ed25519 private key ring accepts.
    #[error("invalid Ed25519 PKCS#8 private key")]
    InvalidPrivateKey,
    /// The system random number generator failed while generating a key.
    #[error("random number generator failure")]
    Rng,
    /// Verifier key text is not `<name>+<8 hex>+<base64 key>`.
    #[error("malformed verifier key")]
    MalformedVerifierKey,
    /// Verifier key is for a signature type other than Ed25519 (0x01).
    #[error("unsupported verifier key algorithm")]
    UnsupportedAlgorithm,
    /// The key id in the verifier key does not match its name and public key.
    #[error("verifier key id does not match the key")]
    KeyIdMismatch,
    /// Origin empty, too long or containing control characters (e.g. newline).
    #[error("invalid checkpoint origin")]
    InvalidOrigin,
    /// The note exceeds [`MAX_NOTE_LEN`].
    #[error("note is larger than {MAX_NOTE_LEN} bytes")]
    TooLarge,
    /// The note is not a well-formed signed note.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// The signed text is not a well-formed checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A signature line by the configured key does not verify.
    #[error("invalid signature by the configured key")]
    BadSignature,
    /// No signature line by the configured key (name and key id) is present.
    #[error("note is not signed by the configured key")]
    NotSignedByKey,
    /// A co-signing key is the signer's own, is listed twice, signs under
    /// another name, or there are more than [`MAX_COSIGNERS`].
    #[error(
        "co-signing keys must be distinct from each other and from the signing key, sign under its name, and number at most {MAX_COSIGNERS}"
    )]
    BadCosigners,
}

/// Most keys [`CheckpointSigner::with_cosigners`] adds.
pub const MAX_COSIGNERS: usize = 4;

/// A log tree head: the tree of `size` leaves under `origin` has Merkle root `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, conventionally a schema-less URL such as `example.com/log`.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle Tree Hash of those leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text that gets signed: origin, size and base64 root, each
    /// followed by a newline.
    ///
    /// Does not validate the origin; [`CheckpointSigner::sign`] does.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Strict inverse of [`Checkpoint::body`]. Only called on verified text.
    pub(crate) fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::MalformedCheckpoint;
        let text = text
            .strip_suffix('\n')
            .ok_or(bad("missing final newline"))?;
        let mut lines = text.split('\n');
        let origin = lines.next().ok_or(bad("missing origin"))?;
        let size = lines.next().ok_or(bad("missing tree size"))?;
        let root = lines.next().ok_or(bad("missing root hash"))?;
        if lines.next().is_some() {
            return Err(bad("extension lines are not supported"));
        }
        check_origin(origin).map_err(|_| bad("invalid origin"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size: parse_size(size).ok_or(bad("invalid tree size"))?,
            root: B64
                .decode(root)
                .ok()
                .and_then(|raw| Hash::try_from(raw).ok())
                .ok_or(bad("root hash is not 32 bytes of canonical base64"))?,
        })
    }
}

/// Canonical decimal only: ASCII digits, no sign, no leading zeros, fits u64.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Origin must survive the one-line note format: non-empty, bounded, no control characters.
fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty() || origin.len() > MAX_ORIGIN_LEN || origin.chars().any(char::is_control) {
        Err(CheckpointError::InvalidOrigin)
    } else {
        Ok(())
    }
}

/// signed-note key name rules (non-empty, no spaces, no '+'), plus no control
/// characters and a length cap.
pub(crate) fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// signed-note key id: first 4 bytes of SHA-256(name || '\n' || 0x01 || public key).
fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public_key);
    let d = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&d.as_ref()[..4]);
    id
}

/// Signs checkpoints as a signed note with one Ed25519 key.
///
/// Holds the private key; its `Debug` output shows only the name and key id.
pub struct CheckpointSigner {
    /// signed-note key name.
    name: String,
    /// Precomputed signed-note key id (big-endian bytes).
    key_id: [u8; 4],
    /// Raw Ed25519 public key, for the verifier key.
    public_key: [u8; 32],
    /// The private key.
    key_pair: Ed25519KeyPair,
    /// Keys that add their signature line after this one's
    /// ([`CheckpointSigner::with_cosigners`]).
    cosigners: Vec<Self>,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.name)
            .field(
                "key_id",
                &format_args!("{:08x}", u32::from_be_bytes(self.key_id)),
            )
            .field("cosigners", &self.cosigners)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Load the signing key from an Ed25519 PKCS#8 document (v2 as produced by
    /// [`CheckpointSigner::generate_pkcs8`], or v1 as produced by
    /// `openssl genpkey -algorithm ed25519`).
    ///
    /// `name` is the signed-note key name; by convention it equals the
    /// checkpoint origin so auditors can tell which log signed.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName);
        }
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| CheckpointError::InvalidPrivateKey)?;
        Self::from_key_pair(name, key_pair)
    }

    /// Common constructor once the key pair is loaded; derives the key id.
    fn from_key_pair(name: &str, key_pair: Ed25519KeyPair) -> Result<Self, CheckpointError> {
        let public_key: [u8; 32] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CheckpointError::InvalidPrivateKey)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            public_key,
            key_pair,
            cosigners: Vec::new(),
        })
    }

    /// Also sign every note with `cosigners`, one more signature line each
    /// after this signer's: while a checkpoint key is rotated, auditors who
    /// still pin the previous verifier key keep verifying new checkpoints
    /// (signed-note verifiers ignore lines by keys they do not know). They
    /// must sign under this signer's name, with keys distinct from it and
    /// from each other, at most [`MAX_COSIGNERS`].
    pub fn with_cosigners(mut self, cosigners: Vec<Self>) -> Result<Self, CheckpointError> {
        let mut ids = vec![self.key_id];
        for c in &cosigners {
            if c.name != self.name || ids.contains(&c.key_id) || !c.cosigners.is_empty() {
                return Err(CheckpointError::BadCosigners);
            }
            ids.push(c.key_id);
        }
        if cosigners.len() > MAX_COSIGNERS {
            return Err(CheckpointError::BadCosigners);
        }
        self.cosigners = cosigners;
        Ok(self)
    }

    /// Verifier keys of the co-signers, in order.
    pub fn cosigner_verifier_keys(&self) -> Vec<String> {
        self.cosigners.iter().map(|c| c.verifier_key()).collect()
    }

    /// Generate a fresh Ed25519 key as a PKCS#8 v2 document, to be stored
    /// securely and later passed to [`CheckpointSigner::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Vec<u8>, CheckpointError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CheckpointError::Rng)?;
        Ok(doc.as_ref().to_vec())
    }

    /// The signed-note key name this signer signs as.
    pub fn key_name(&self) -> &str {
        &self.name
    }

    /// Sign `cp`, returning the complete signed note (body, blank line, one
    /// signature line, then one per co-signer).
    ///
    /// Fails only if the origin could not round-trip through the note format
    /// (empty, too long, or containing a newline or other control character).
    pub fn sign(&self, cp: &Checkpoint) -> Result<String, CheckpointError> {
        check_origin(&cp.origin)?;
        Ok(self.sign_text(&cp.body()))
    }

    /// Sign arbitrary note text that ends in a newline.
    fn sign_text(&self, text: &str) -> String {
        let mut note = format!("{text}\n");
        for signer in std::iter::once(self).chain(&self.cosigners) {
            note += &signer.signature_line(text);
        }
        note
    }

    /// This key's signature line over `text`, with its newline.
    fn signature_line(&self, text: &str) -> String {
        let sig = self.key_pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(4 + sig.as_ref().len());
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(sig.as_ref());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }

    /// The public verifier key, `<name>+<8 hex key id>+<base64(0x01 || public key)>`,
    /// in the format `golang.org/x/mod/sumdb/note` and other tlog tools accept.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(&self.public_key);
        format!(
            "{}+{:08x}+{}",
            self.name,
            u32::from_be_bytes(self.key_id),
            B64.encode(key)
        )
    }

    /// A verifier for this signer's own notes, e.g. to self-check before publishing.
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.public_key,
        }
    }
}

/// Verifies signed checkpoints against one trusted Ed25519 verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointVerifier {
    /// Expected signed-note key name.
    name: String,
    /// Expected key id (big-endian bytes), checked against the key at parse time.
    key_id: [u8; 4],
    /// Raw Ed25519 public key.
    public_key: [u8; 32],
}

impl CheckpointVerifier {
    /// Parse a verifier key `<name>+<8 lowercase hex key id>+<base64(0x01 || 32-byte key)>`.
    ///
    /// The key id is recomputed and must match, which catches keys that were
    /// truncated or edited when copied into configuration.
    pub fn from_verifier_key(vkey: &str) -> Result<Self, CheckpointError> {
        let malformed = CheckpointError::MalformedVerifierKey;
        // Key names cannot contain '+', so the first two '+' are the separators
        // (base64 itself may contain '+').
        let (name, rest) = vkey.split_once('+').ok_or(malformed.clone())?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(malformed.clone())?;
        if !valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName);
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(malformed);
        }
        let id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| malformed.clone())?
            .to_be_bytes();
        let key = B64.decode(key_b64).map_err(|_| malformed.clone())?;
        let (&alg, public_key) = key.split_first().ok_or(malformed.clone())?;
        if alg != ALG_ED25519 {
            return Err(CheckpointError::UnsupportedAlgorithm);
        }
        let public_key: [u8; 32] = public_key.try_into().map_err(|_| malformed)?;
        if key_id(name, &public_key) != id {
            return Err(CheckpointError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: id,
            public_key,
        })
    }

    /// The signed-note key name this verifier expects.
    pub fn key_name(&self) -> &str {
        &self.name
    }

    /// The key id, as the 8 lowercase hex digits of the verifier key.
    pub fn key_id_hex(&self) -> String {
        self.key_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Verify `note` against a verifier list (a log whose signing key was
    /// rotated: the old key for checkpoints before the rotation, the new one
    /// after). The note is accepted when some key in `keys` signed it; a
    /// signature line by a listed key that does not verify rejects the note
    /// whatever the other keys say. Returns the checkpoint and the index of
    /// the key that verified it.
    pub fn verify_any(keys: &[Self], note: &str) -> Result<(Checkpoint, usize), CheckpointError> {
        let mut found = None;
        for (i, k) in keys.iter().enumerate() {
            match k.verify_note(note) {
                Ok(text) => {
                    if found.is_none() {
                        found = Some((text, i));
                    }
                }
                Err(CheckpointError::NotSignedByKey) => {}
                Err(e) => return Err(e),
            }
        }
        let (text, i) = found.ok_or(CheckpointError::NotSignedByKey)?;
        Ok((Checkpoint::parse(text)?, i))
    }

    /// Verify a signed checkpoint and return its contents.
    ///
    /// The caller must still check that `origin` is the expected log and that
    /// the checkpoint is consistent with previously seen ones.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse(self.verify_note(note)?)
    }

    /// Verify a generic signed note and return its signed text (including its
    /// final newline), without interpreting it as a checkpoint.
    ///
    /// Follows signed-note: the text is separated from the signature lines by
    /// the last blank line; signatures by other keys are ignored; any line by
    /// this key (same name and key id) that fails to verify rejects the note.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let malformed = CheckpointError::MalformedNote;
        if note.len() > MAX_NOTE_LEN {
            return Err(CheckpointError::TooLarge);
        }
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("control character"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(malformed("missing blank line before signatures"))?;
        // Both bytes at `split` are ASCII newlines, so these are char boundaries.
        let (text, sigs) = note
            .split_at_checked(split + 1)
            .ok_or(malformed("missing signatures"))?;
        let sigs = sigs
            .strip_prefix('\n')
            .and_then(|s| s.strip_suffix('\n'))
            .ok_or(malformed("signature block must end with a newline"))?;

        let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        let mut verified = false;
        for (count, line) in sigs.split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(malformed("signature line must start with an em dash"))?;
            let (name, sig_b64) = rest
                .split_once(' ')
                .ok_or(malformed("signature line has no signature"))?;
            if !valid_key_name(name) {
                return Err(malformed("invalid key name in signature line"));
            }
            let raw = B64
                .decode(sig_b64)
                .map_err(|_| malformed("signature is not canonical base64"))?;
            let (id, sig) = raw
                .split_at_checked(4)
                .filter(|(_, sig)| !sig.is_empty())
                .ok_or(malformed("signature too short"))?;
            if name == self.name && id == self.key_id {
                key.verify(text.as_bytes(), sig)
                    .map_err(|_| CheckpointError::BadSignature)?;
                verified = true;
            }
        }
        if verified {
            Ok(text)
        } else {
            Err(CheckpointError::NotSignedByKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Published vectors from golang.org/x/mod, sumdb/note/note_test.go
    // (TestNewVerifier, TestSign, TestOpen).
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn peter_signer() -> CheckpointSigner {
        let raw = B64.decode(PETER_SKEY_B64).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        let kp = Ed25519KeyPair::from_seed_unchecked(&raw[1..]).unwrap();
        CheckpointSigner::from_key_pair("PeterNeumann", kp).unwrap()
    }

    fn test_signer(name: &str) -> CheckpointSigner {
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        CheckpointSigner::from_pkcs8(name, &pkcs8).unwrap()
    }

    /// A rotation: the new key signs first and the previous one co-signs;
    /// a verifier pinned to either key accepts the note, `verify_any` names
    /// the first listed key that signed, and the co-signers are checked.
    #[test]
    fn cosigners_add_their_lines_and_either_key_verifies() {
        let old = test_signer("example.org/log");
        let old_vkey = old.verifier_key();
        let new = test_signer("example.org/log")
            .with_cosigners(vec![old])
            .unwrap();
        assert_eq!(
            new.cosigner_verifier_keys(),
            std::slice::from_ref(&old_vkey)
        );
        let note = new.sign(&sample()).unwrap();
        assert_eq!(note.matches(SIG_PREFIX).count(), 2, "{note}");
        let by_old = CheckpointVerifier::from_verifier_key(&old_vkey).unwrap();
        let by_new = CheckpointVerifier::from_verifier_key(&new.verifier_key()).unwrap();
        assert_eq!(by_old.verify(&note).unwrap(), sample());
        assert_eq!(by_new.verify(&note).unwrap(), sample());
        assert_eq!(
            CheckpointVerifier::verify_any(&[by_old.clone(), by_new.clone()], &note)
                .unwrap()
                .1,
            0
        );
        // A key twice, another name, too many; the signer's own key.
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        let same = || CheckpointSigner::from_pkcs8("example.org/log", &pkcs8).unwrap();
        for bad in [
            vec![same(), same()],
            vec![test_signer("example.org/log"), test_signer("other.org/log")],
            (0..=MAX_COSIGNERS)
                .map(|_| test_signer("example.org/log"))
                .collect(),
        ] {
            assert!(matches!(
                test_signer("example.org/log").with_cosigners(bad),
                Err(CheckpointError::BadCosigners)
            ));
        }
        assert!(matches!(
            same().with_cosigners(vec![same()]),
            Err(CheckpointError::BadCosigners)
        ));
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "credgate.example/audit".to_owned(),
            size: 20852163,
            root: crate::merkle::leaf_hash(b"sample"),
        }
    }

    #[test]
    fn sumdb_note_vectors() {
        let peter = CheckpointVerifier::from_verifier_key(PETER_VKEY).unwrap();
        let enoch = CheckpointVerifier::from_verifier_key(ENOCH_VKEY).unwrap();
        let note = format!("{TEXT}\n{PETER_SIG}");
        assert_eq!(peter.verify_note(&note), Ok(TEXT));
        assert_eq!(
            enoch.verify_note(&note),
            Err(CheckpointError::NotSignedByKey)
        );
        // Unknown signature lines are skipped, in either order.
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        assert_eq!(peter.verify_note(&both), Ok(TEXT));
        assert_eq!(enoch.verify_note(&both), Ok(TEXT));
        // Valid note, but not a checkpoint.
        assert!(matches!(
            peter.verify(&note),
            Err(CheckpointError::MalformedCheckpoint(_))
        ));
        // Signing with the published private key reproduces the published note
        // byte for byte (Ed25519 is deterministic) and verifier key.
        let signer = peter_signer();
        assert_eq!(signer.sign_text(TEXT), note);
        assert_eq!(signer.verifier_key(), PETER_VKEY);
        assert_eq!(signer.verifier(), peter);

        // Bad messages from TestOpen.
        let corrupt = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert!(peter.verify_note(&corrupt).is_err());
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1)),
        ];
        for msg in bad {
            assert!(peter.verify_note(&msg).is_err(), "{msg:?}");
        }
    }

    #[test]
    fn verifier_key_manglings_rejected() {
        // As in TestNewVerifier: every proper substring and every single-byte
        // increment of the key must be rejected.
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i != 0 || j != b.len() {
                    let k = std::str::from_utf8(&b[i..j]).unwrap();
                    assert!(CheckpointVerifier::from_verifier_key(k).is_err(), "{k}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let k = String::from_utf8(m).unwrap();
            assert!(CheckpointVerifier::from_verifier_key(&k).is_err(), "{k}");
        }
        // Wrong-length key with adjusted hash; unknown algorithm with adjusted hash.
        assert!(
            CheckpointVerifier::from_verifier_key(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            )
            .is_err()
        );
        assert_eq!(
            CheckpointVerifier::from_verifier_key(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(CheckpointError::UnsupportedAlgorithm)
        );
        assert_eq!(
            CheckpointVerifier::from_verifier_key(
                "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(CheckpointError::MalformedVerifierKey)
        );
    }

    #[test]
    fn round_trip() {
        let signer = test_signer("credgate.example/audit");
        let verifier = CheckpointVerifier::from_verifier_key(&signer.verifier_key()).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert_eq!(verifier.key_name(), signer.key_name());
        for cp in [
            sample(),
            Checkpoint {
                size: 0,
                root: crate::merkle::EMPTY_ROOT,
                ..sample()
            },
            Checkpoint {
                size: u64::MAX,
                origin: "ünïcode origin with spaces+plus".to_owned(),
                ..sample()
            },
        ] {
            let note = signer.sign(&cp).unwrap();
            assert!(note.starts_with(&format!(
                "{}\n{SIG_PREFIX}{} ",
                cp.body(),
                signer.key_name()
            )));
            assert_eq!(verifier.verify(&note), Ok(cp));
        }
        assert!(format!("{signer:?}").contains("credgate.example/audit"));
    }

    #[test]
    fn c2sp_example_body_parses() {
        // Example from C2SP tlog-checkpoint.md (its key is not published, so only the body).
        let cp = Checkpoint::parse(
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        )
        .unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(
            cp.body(),
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let signer = test_signer("credgate.example/audit");
        let verifier = signer.verifier();
        let cp = sample();
        let note = signer.sign(&cp).unwrap();
        let root_b64 = B64.encode(cp.root);
        let other_root = B64.encode(crate::merkle::leaf_hash(b"other"));
        let tampered = [
            note.replace("20852163", "20852164"),
            note.replace(&root_b64, &other_root),
            note.replace("credgate.example/audit\n", "credgate.example/audi7\n"),
        ];
        for t in tampered {
            assert_ne!(t, note);
            assert_eq!(verifier.verify(&t), Err(CheckpointError::BadSignature));
        }
        // Flip one signature bit (re-encoded canonically).
        let (head, line) = note.rsplit_once(' ').unwrap();
        let mut raw = B64.decode(line.trim_end()).unwrap();
        raw[10] ^= 1;
        let flipped = format!("{head} {}\n", B64.encode(&raw));
        assert_eq!(
            verifier.verify(&flipped),
            Err(CheckpointError::BadSignature)
        );
        // Key id changed: the line is no longer by this key.
        raw[10] ^= 1;
        raw[0] ^= 1;
        let other_id = format!("{head} {}\n", B64.encode(&raw));
        assert_eq!(
            verifier.verify(&other_id),
            Err(CheckpointError::NotSignedByKey)
        );
        // A second, bad line by the same key rejects the note.
        let doubled = format!("{note}{}", flipped.rsplit_once("\n\n").unwrap().1);
        assert_eq!(
            verifier.verify(&doubled),
            Err(CheckpointError::BadSignature)
        );
        // Wrong key, same name.
        let impostor = test_signer("credgate.example/audit");
        assert_eq!(
            verifier.verify(&impostor.sign(&cp).unwrap()),
            Err(CheckpointError::NotSignedByKey)
        );
        // Cosigned by an unknown witness: still fine.
        let witness = test_signer("witness.example");
        let cosig = witness.sign(&cp).unwrap();
        let with_witness = format!("{note}{}", cosig.rsplit_once("\n\n").unwrap().1);
        assert_eq!(verifier.verify(&with_witness), Ok(cp));
    }

    #[test]
    fn malformed_bodies_rejected_even_when_signed() {
        let signer = test_signer("log");
        let verifier = signer.verifier();
        let root = B64.encode([7u8; 32]);
        let bodies = [
            format!("o\n1\n{root}\next\n"),
            format!("o\n1\n{root}\n\n"),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n1\n{}\n", B64.encode([7u8; 31])),
            format!("o\n1\n{}\n", B64.encode([7u8; 33])),
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd=\n".to_owned(),
            format!("o\n1\n {root}\n"),
            "o\n1\n".to_owned(),
            format!("o\u{7f}\n1\n{root}\n"),
        ];
        for body in bodies {
            let note = signer.sign_text(&body);
            assert!(verifier.verify_note(&note).is_ok() || body.starts_with('\n'));
            assert!(
                matches!(
                    verifier.verify(&note),
                    Err(CheckpointError::MalformedCheckpoint(_) | CheckpointError::MalformedNote(_))
                ),
                "{body:?}"
            );
        }
        assert_eq!(
            verifier.verify(&signer.sign_text(&format!("o\n18446744073709551615\n{root}\n"))),
            Ok(Checkpoint {
                origin: "o".to_owned(),
                size: u64::MAX,
                root: [7u8; 32]
            })
        );
    }

    #[test]
    fn malformed_notes_and_keys_rejected() {
        let signer = test_signer("log");
        let verifier = signer.verifier();
        let note = signer.sign(&sample()).unwrap();
        let bad = [
            String::new(),
            "\n\n".to_owned(),
            note.replace('\n', "\r\n"),
            format!("{note}trailing"),
            format!("{note}\n"),
            format!("{note} "),
            note.trim_end().to_owned(),
            note.replace("\u{2014} ", "- "),
            note.replace("\u{2014} log ", "\u{2014} log  "),
            note.replace("\n\n", "\n"),
            format!("{note}{}", "x".repeat(MAX_NOTE_LEN)),
            note.replacen('\n', "\t\n", 1),
        ];
        for n in bad {
            assert!(verifier.verify(&n).is_err(), "{n:?}");
        }
        assert_eq!(
            signer.sign(&Checkpoint {
                origin: "a\nb".to_owned(),
                ..sample()
            }),
            Err(CheckpointError::InvalidOrigin)
        );
        assert_eq!(
            signer.sign(&Checkpoint {
                origin: String::new(),
                ..sample()
            }),
            Err(CheckpointError::InvalidOrigin)
        );
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        for name in ["", "a b", "a+b", "a\nb", "tab\tname", "nb\u{a0}sp"] {
            assert_eq!(
                CheckpointSigner::from_pkcs8(name, &pkcs8).map(|_| ()),
                Err(CheckpointError::InvalidKeyName)
            );
        }
        assert_eq!(
            CheckpointSigner::from_pkcs8("log", b"not a key").map(|_| ()),
            Err(CheckpointError::InvalidPrivateKey)
        );
    }

    /// Arbitrary printable text (proptest regex).
    const ANY_TEXT: &str = "\\PC*";
    /// Plausible-looking but bogus signature lines (proptest regex).
    const SIG_LINES: &str = "(\u{2014} [a-z+ ]{0,8} [A-Za-z0-9+/=]{0,100}\n){0,3}";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_text_never_verifies(s in ANY_TEXT, t in SIG_LINES) {
            let verifier = CheckpointVerifier::from_verifier_key(PETER_VKEY).unwrap();
            prop_assert!(verifier.verify(&s).is_err());
            let with_sigs = format!("{s}\n\n{t}");
            prop_assert!(verifier.verify(&with_sigs).is_err());
            let _ = CheckpointVerifier::from_verifier_key(&s);
        }

        #[test]
        fn any_byte_change_is_rejected(pos: usize, delta in 1u8..=255) {
            let signer = peter_signer();
            let note = signer.sign(&sample()).unwrap();
            let mut bytes = note.clone().into_bytes();
            let i = pos % bytes.len();
            bytes[i] = bytes[i].wrapping_add(delta);
            if let Ok(mutated) = String::from_utf8(bytes) {
                prop_assert!(signer.verifier().verify(&mutated).is_err());
            }
        }
    }
}
