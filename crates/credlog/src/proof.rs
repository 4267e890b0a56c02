//! Inclusion proofs as `c2sp.org/tlog-proof@v1` files: an offline-verifiable
//! proof that one entry is in the log, in the text format of C2SP
//! `tlog-proof` (conventionally stored as `*.tlog-proof`).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the entry's canonical bytes>
//! index <leaf index, decimal>
//! <base64 inclusion proof hash, from the leaf's sibling up>
//! …
//!
//! <the signed checkpoint note, verbatim>
//! ```
//!
//! The format's `extra` line carries opaque, unauthenticated data. credgate
//! puts the entry's canonical bytes there (the leaf data), so one file is
//! enough to check an entry; that data is accepted only because its leaf
//! hash, `SHA-256(0x00 || entry)`, is what the inclusion proof leads from to
//! the root of a checkpoint signed by a trusted key ([`TlogProof::verify`]).
//! An auditor may instead bring the entry from elsewhere (an export, an entry
//! bundle) and verify against that.
//!
//! Proof files come from outside, so [`TlogProof::parse`] is strict and
//! bounded: the exact header, canonical base64 and decimal, 32-byte hashes,
//! at most [`MAX_PROOF_HASHES`] of them, a structurally valid checkpoint note
//! whose tree holds the index, and nothing after the note's last signature
//! line. [`TlogProof::encode`] is its exact inverse.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{
    Checkpoint, CheckpointError, CheckpointVerifier, MAX_NOTE_LEN, MAX_SIGNATURES, parse_size,
    valid_key_name,
};
use crate::merkle::{self, Hash, ProofError};

/// First line of every proof file.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest accepted extra data, in bytes (decoded). Entries are at most
/// 65535 bytes (entry bundles length-prefix them with a `u16`).
pub const MAX_EXTRA_LEN: usize = 64 * 1024;
/// Most inclusion proof hashes: a tree of at most `u64::MAX` leaves is at
/// most 64 levels deep.
pub const MAX_PROOF_HASHES: usize = 64;
/// Largest accepted proof file, in bytes; bounds parsing work on untrusted input.
pub const MAX_PROOF_FILE_LEN: usize = 4 + MAX_EXTRA_LEN * 4 / 3 + 64 * 46 + 64 + MAX_NOTE_LEN;

const EXTRA_PREFIX: &str = "extra ";
const INDEX_PREFIX: &str = "index ";
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a proof file could not be parsed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofFileError {
    /// The file exceeds [`MAX_PROOF_FILE_LEN`].
    #[error("proof file is larger than {MAX_PROOF_FILE_LEN} bytes")]
    TooLarge,
    /// The file is not UTF-8 text.
    #[error("proof file is not UTF-8 text")]
    NotText,
    /// The first line is not [`HEADER`].
    #[error("not a {HEADER} file (wrong first line)")]
    WrongHeader,
    /// The `extra` line is empty, not canonical base64 or too large.
    #[error("the extra line is not canonical base64 of 1 to {MAX_EXTRA_LEN} bytes")]
    BadExtra,
    /// The `index` line is missing or not a canonical decimal.
    #[error("missing or malformed index line")]
    BadIndex,
    /// A proof line is not canonical base64 of a 32-byte hash.
    #[error("proof hash {0} is not canonical base64 of 32 bytes")]
    BadHash(usize),
    /// More than [`MAX_PROOF_HASHES`] proof lines.
    #[error("more than {MAX_PROOF_HASHES} proof hashes")]
    TooManyHashes,
    /// The file ends before the blank line and the checkpoint.
    #[error("missing blank line and checkpoint after the proof hashes")]
    MissingCheckpoint,
    /// The checkpoint note is malformed (trailing data included).
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
    /// The index is not below the checkpoint's tree size.
    #[error("index {index} is not in the checkpoint's tree of size {size}")]
    IndexOutOfRange {
        /// The proof's index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
}

/// Why a well-formed proof does not verify.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofVerifyError {
    /// The checkpoint is not signed by any trusted key, or a signature by one fails.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint's origin is not the name of the key that signed it.
    #[error("checkpoint origin {origin:?} is not the signing key's name {key:?}")]
    OriginMismatch {
        /// The checkpoint's origin.
        origin: String,
        /// The verifying key's name.
        key: String,
    },
    /// No entry given and the proof carries no extra data.
    #[error("the proof carries no entry (no extra line): give the entry")]
    NoEntry,
    /// The inclusion proof does not lead from the entry to the checkpoint's root.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

/// A parsed `c2sp.org/tlog-proof@v1` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data (credgate: the entry's canonical bytes); empty when absent.
    pub extra: Vec<u8>,
    /// Zero-based index of the entry (its `seq`).
    pub index: u64,
    /// RFC 6962 inclusion proof, from the leaf's sibling up to the root's child.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim (ends with a newline).
    pub checkpoint: String,
}

/// What a verified proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The checkpoint, signed by a trusted key.
    pub checkpoint: Checkpoint,
    /// Which of the trusted keys verified it.
    pub key: usize,
    /// The entry's index.
    pub index: u64,
    /// The entry proven to be at `index` (the caller's, or the extra data).
    pub entry: Vec<u8>,
}

impl fmt::Display for VerifiedProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "OK: entry {} is in the log {} at tree size {} (root {}, checkpoint signature verified)",
            self.index,
            self.checkpoint.origin,
            self.checkpoint.size,
            B64.encode(self.checkpoint.root)
        )?;
        writeln!(f, "{}", String::from_utf8_lossy(&self.entry))
    }
}

impl TlogProof {
    /// The file's bytes; [`TlogProof::parse`] reads them back exactly.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(
            HEADER.len() + self.extra.len() * 4 / 3 + 64 * self.proof.len() + self.checkpoint.len(),
        );
        out.push_str(HEADER);
        out.push('\n');
        if !self.extra.is_empty() {
            out.push_str(EXTRA_PREFIX);
            out.push_str(&B64.encode(&self.extra));
            out.push('\n');
        }
        out.push_str(INDEX_PREFIX);
        out.push_str(&self.index.to_string());
        out.push('\n');
        for h in &self.proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parse a proof file strictly (see the module documentation).
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofFileError> {
        if bytes.len() > MAX_PROOF_FILE_LEN {
            return Err(ProofFileError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ProofFileError::NotText)?;
        let rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(ProofFileError::WrongHeader)?;
        let (mut line, mut rest) = next_line(rest).ok_or(ProofFileError::BadIndex)?;
        let mut extra = Vec::new();
        if let Some(b64) = line.strip_prefix(EXTRA_PREFIX) {
            extra = B64
                .decode(b64)
                .ok()
                .filter(|e| !e.is_empty() && e.len() <= MAX_EXTRA_LEN)
                .ok_or(ProofFileError::BadExtra)?;
            (line, rest) = next_line(rest).ok_or(ProofFileError::BadIndex)?;
        }
        let index = line
            .strip_prefix(INDEX_PREFIX)
            .and_then(parse_size)
            .ok_or(ProofFileError::BadIndex)?;
        let mut proof = Vec::new();
        let checkpoint = loop {
            let (line, after) = next_line(rest).ok_or(ProofFileError::MissingCheckpoint)?;
            rest = after;
            if line.is_empty() {
                break rest;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(ProofFileError::TooManyHashes);
            }
            let h = B64
                .decode(line)
                .ok()
                .and_then(|v| Hash::try_from(v).ok())
                .ok_or(ProofFileError::BadHash(proof.len() + 1))?;
            proof.push(h);
        };
        let cp = check_note(checkpoint)?;
        if index >= cp.size {
            return Err(ProofFileError::IndexOutOfRange {
                index,
                size: cp.size,
            });
        }
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Verify the proof: the checkpoint is signed by one of `keys` (and its
    /// origin is that key's name), and the inclusion proof leads from the
    /// leaf hash of `entry` — or of the extra data when `entry` is `None` —
    /// at the proof's index to the checkpoint's root.
    pub fn verify(
        &self,
        keys: &[CheckpointVerifier],
        entry: Option<&[u8]>,
    ) -> Result<VerifiedProof, ProofVerifyError> {
        let (checkpoint, key) = CheckpointVerifier::verify_any(keys, &self.checkpoint)?;
        let name = keys.get(key).map(CheckpointVerifier::key_name);
        if name != Some(checkpoint.origin.as_str()) {
            return Err(ProofVerifyError::OriginMismatch {
                origin: checkpoint.origin,
                key: name.unwrap_or_default().to_owned(),
            });
        }
        let entry = match entry {
            Some(e) => e,
            None if !self.extra.is_empty() => &self.extra,
            None => return Err(ProofVerifyError::NoEntry),
        };
        merkle::verify_inclusion(
            &merkle::leaf_hash(entry),
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(VerifiedProof {
            checkpoint,
            key,
            index: self.index,
            entry: entry.to_vec(),
        })
    }
}

/// `credgate audit verify-proof`: read the proof file, the verifier keys
/// (each the key itself or a file of keys, as for `credgate audit verify`)
/// and optionally the entry file, and verify. The error is a sentence for
/// the command line naming the file and what is wrong.
pub fn verify_proof_file(
    proof: &std::path::Path,
    keys: &[String],
    entry: Option<&std::path::Path>,
) -> Result<VerifiedProof, String> {
    let keys = crate::verify::parse_verifier_keys(keys)?;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let bytes = read(proof)?;
    let parsed = TlogProof::parse(&bytes).map_err(|e| format!("{}: {e}", proof.display()))?;
    let entry = entry.map(read).transpose()?;
    parsed
        .verify(&keys, entry.as_deref())
        .map_err(|e| format!("{}: verification failed: {e}", proof.display()))
}

/// The text up to the next newline and what follows it; `None` without one.
fn next_line(s: &str) -> Option<(&str, &str)> {
    s.split_once('\n')
}

/// Structural checks on the embedded note, before any key is at hand: a
/// three-line checkpoint body, a blank line, then one or more signature lines
/// (`— <key name> <base64 of key id and signature>`), each ending with a
/// newline, and nothing else. Signatures are checked by [`TlogProof::verify`].
fn check_note(note: &str) -> Result<Checkpoint, ProofFileError> {
    let bad = ProofFileError::BadCheckpoint;
    if note.len() > MAX_NOTE_LEN {
        return Err(bad("note too large"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(bad("control character"));
    }
    let (body, sigs) = note
        .split_once("\n\n")
        .ok_or(bad("missing blank line before signatures"))?;
    let mut body = body.to_owned();
    body.push('\n');
    let cp = Checkpoint::parse(&body).map_err(|e| match e {
        CheckpointError::MalformedCheckpoint(why) => bad(why),
        _ => bad("invalid checkpoint body"),
    })?;
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or(bad("signature block must end with a newline"))?;
    for (count, line) in sigs.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(bad("too many signatures"));
        }
        let (name, sig) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|l| l.split_once(' '))
            .ok_or(bad(
                "signature line must be an em dash, a key name and a signature",
            ))?;
        let raw = B64
            .decode(sig)
            .map_err(|_| bad("signature is not canonical base64"))?;
        if !valid_key_name(name) || raw.len() < 5 {
            return Err(bad("malformed signature line"));
        }
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use proptest::prelude::*;

    /// A PKCS#8 v1 Ed25519 key from a fixed seed: signatures are deterministic,
    /// so the golden file below is stable.
    fn signer() -> CheckpointSigner {
        let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap();
        pkcs8.extend_from_slice(&[7u8; 32]);
        CheckpointSigner::from_pkcs8("example.com/credgate", &pkcs8).unwrap()
    }

    fn entries() -> Vec<Vec<u8>> {
        (0..5).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    /// The proof for `index` in the fixed tree of five entries.
    fn fixed(index: u64) -> TlogProof {
        let es = entries();
        let leaves: Vec<Hash> = es.iter().map(|e| merkle::leaf_hash(e)).collect();
        let cp = Checkpoint {
            origin: "example.com/credgate".into(),
            size: 5,
            root: merkle::root_of(&leaves),
        };
        TlogProof {
            extra: es[index as usize].clone(),
            index,
            proof: merkle::inclusion_proof(&leaves, index).unwrap(),
            checkpoint: signer().sign(&cp).unwrap(),
        }
    }

    const GOLDEN: &str = "c2sp.org/tlog-proof@v1\n\
        extra ZW50cnkgMg==\n\
        index 2\n\
        YcoROfaBWEHVuvLQ0tm9nf7pfImN1ve6DAqpQe5sAes=\n\
        WkdmL9ijF9lgSaP59HxV3GfKZgUbqjaD27GbL+CaB7A=\n\
        SFM123z+yWXxX/dF/GJcQdXqJkaTaTAWWCj3PdS2iFQ=\n\
        \n\
        example.com/credgate\n\
        5\n\
        fKo0Xb2JKmZFTWxlEuo8PqPw0+whvj/C4jdXBf049nI=\n\
        \n\
        \u{2014} example.com/credgate tBdg1Toanwdqaugny6vWPRZPfnWmpHLdx5bAGiiLVB72jOe/BVcLZDz9tWyCo6lpprocTWwQ6P5OGWD727oibUZA9gA=\n";

    #[test]
    fn golden_bytes_of_a_small_tree() {
        let p = fixed(2);
        let text = p.encode();
        assert_eq!(text, GOLDEN);
        assert_eq!(TlogProof::parse(GOLDEN.as_bytes()).unwrap(), p);
        let v = p.verify(&[signer().verifier()], None).unwrap();
        assert_eq!((v.index, v.checkpoint.size, v.key), (2, 5, 0));
        assert_eq!(v.entry, b"entry 2");
    }

    #[test]
    fn every_index_verifies_with_and_without_extra() {
        let keys = [signer().verifier()];
        for i in 0..5 {
            let mut p = fixed(i);
            let entry = p.extra.clone();
            p.verify(&keys, None).unwrap();
            p.extra.clear();
            let text = p.encode();
            assert!(!text.contains("extra"));
            let back = TlogProof::parse(text.as_bytes()).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.verify(&keys, None), Err(ProofVerifyError::NoEntry));
            back.verify(&keys, Some(&entry)).unwrap();
            assert!(matches!(
                back.verify(&keys, Some(b"entry 9")),
                Err(ProofVerifyError::Inclusion(ProofError::RootMismatch))
            ));
        }
    }

    #[test]
    fn verification_refuses_other_keys_entries_and_proofs() {
        let p = fixed(3);
        let keys = [signer().verifier()];
        let other = CheckpointSigner::from_pkcs8(
            "example.com/credgate",
            &CheckpointSigner::generate_pkcs8().unwrap(),
        )
        .unwrap()
        .verifier();
        assert!(matches!(
            p.verify(std::slice::from_ref(&other), None),
            Err(ProofVerifyError::Checkpoint(
                CheckpointError::NotSignedByKey
            ))
        ));
        // Rotation: a list with the right key among others verifies.
        assert_eq!(p.verify(&[other, keys[0].clone()], None).unwrap().key, 1);
        let mut q = p.clone();
        q.proof[0][0] ^= 1;
        assert!(matches!(
            q.verify(&keys, None),
            Err(ProofVerifyError::Inclusion(ProofError::RootMismatch))
        ));
        let mut q = p.clone();
        q.proof.pop();
        assert!(matches!(
            q.verify(&keys, None),
            Err(ProofVerifyError::Inclusion(
                ProofError::WrongProofLength { .. }
            ))
        ));
        let mut q = p.clone();
        q.index = 2;
        assert!(q.verify(&keys, None).is_err());
        // A key whose name is not the origin.
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        let s = CheckpointSigner::from_pkcs8("someone-else", &pkcs8).unwrap();
        let mut q = p.clone();
        q.checkpoint = s
            .sign(&Checkpoint {
                origin: "example.com/credgate".into(),
                size: 5,
                root: merkle::root_of(
                    &entries()
                        .iter()
                        .map(|e| merkle::leaf_hash(e))
                        .collect::<Vec<_>>(),
                ),
            })
            .unwrap();
        assert!(matches!(
            q.verify(&[s.verifier()], None),
            Err(ProofVerifyError::OriginMismatch { .. })
        ));
    }

    #[test]
    fn parsing_is_strict() {
        let good = fixed(2).encode();
        let cases: Vec<(String, ProofFileError)> = vec![
            (good.replacen("@v1", "@v2", 1), ProofFileError::WrongHeader),
            (format!("\n{good}"), ProofFileError::WrongHeader),
            (good.replacen("\n", "\r\n", 1), ProofFileError::WrongHeader),
            (
                good.replacen("ZW50cnkgMg==", "ZW50cnkgMg", 1),
                ProofFileError::BadExtra,
            ),
            (
                good.replacen("ZW50cnkgMg==", "ZW50cnkgMh==", 1),
                ProofFileError::BadExtra,
            ),
            (
                good.replacen("extra ZW50cnkgMg==", "extra ", 1),
                ProofFileError::BadExtra,
            ),
            (
                good.replacen("index 2", "index 02", 1),
                ProofFileError::BadIndex,
            ),
            (
                good.replacen("index 2", "index +2", 1),
                ProofFileError::BadIndex,
            ),
            (
                good.replacen("index 2", "index  2", 1),
                ProofFileError::BadIndex,
            ),
            (
                good.replacen("index 2", "Index 2", 1),
                ProofFileError::BadIndex,
            ),
            (good.replacen("index 2\n", "", 1), ProofFileError::BadIndex),
            (
                good.replacen("index 2", "index 5", 1),
                ProofFileError::IndexOutOfRange { index: 5, size: 5 },
            ),
            (
                format!("{good}\n"),
                ProofFileError::BadCheckpoint(
                    "signature line must be an em dash, a key name and a signature",
                ),
            ),
            (
                format!("{good}trailing"),
                ProofFileError::BadCheckpoint("signature block must end with a newline"),
            ),
            (
                good.trim_end().to_owned(),
                ProofFileError::BadCheckpoint("signature block must end with a newline"),
            ),
            (
                good.split("\n\n").next().unwrap().to_owned() + "\n",
                ProofFileError::MissingCheckpoint,
            ),
            (
                "c2sp.org/tlog-proof@v1\n".to_owned(),
                ProofFileError::BadIndex,
            ),
            ("".to_owned(), ProofFileError::WrongHeader),
        ];
        for (text, want) in cases {
            assert_eq!(TlogProof::parse(text.as_bytes()), Err(want), "{text:?}");
        }
        // A hash line that is not 32 bytes, or not base64.
        let first = B64.encode(fixed(2).proof[0]);
        for bad in ["AAAA", "!!!!", &first[1..]] {
            let text = good.replacen(&first, bad, 1);
            assert_eq!(
                TlogProof::parse(text.as_bytes()),
                Err(ProofFileError::BadHash(1))
            );
        }
        assert_eq!(
            TlogProof::parse(&[0xff, 0xfe]),
            Err(ProofFileError::NotText)
        );
        assert_eq!(
            TlogProof::parse(&vec![b'a'; MAX_PROOF_FILE_LEN + 1]),
            Err(ProofFileError::TooLarge)
        );
        let mut many = fixed(2);
        many.proof = vec![[0; 32]; MAX_PROOF_HASHES + 1];
        assert_eq!(
            TlogProof::parse(many.encode().as_bytes()),
            Err(ProofFileError::TooManyHashes)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(p) = TlogProof::parse(&bytes) {
                let text = p.encode();
                prop_assert_eq!(text.as_bytes(), &bytes[..]);
            }
        }

        #[test]
        fn any_flipped_byte_fails_parse_or_verify(pos in 0usize..2000, bit in 0u8..8) {
            let good = fixed(1).encode().into_bytes();
            let mut b = good.clone();
            let pos = pos % b.len();
            b[pos] ^= 1 << bit;
            let keys = [signer().verifier()];
            let ok = TlogProof::parse(&b).ok().and_then(|p| p.verify(&keys, None).ok());
            prop_assert!(ok.is_none(), "flip at {} verified", pos);
        }
    }
}
