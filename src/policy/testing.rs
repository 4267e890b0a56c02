//! Test helpers shared by the policy's unit tests.

use std::path::{Path, PathBuf};

use super::{LoadError, Organisation, Policy, load};
use crate::ids::CreditCode;

/// The sample policies in `policies/`.
pub(crate) fn sample() -> Policy {
    load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        b"k",
    )
    .unwrap()
}

/// The sample policies, loaded once per test binary (for property tests).
pub(crate) fn shared() -> &'static Policy {
    static P: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    P.get_or_init(sample)
}

/// A registered organisation of `p`.
pub(crate) fn org(p: &Policy, code: &str) -> Organisation {
    p.organisation(&CreditCode::parse(code).unwrap())
        .unwrap()
        .clone()
}

/// A copy of `policies/` with one file's text replaced, loaded.
pub(crate) fn load_patched(file: &str, from: &str, to: &str) -> Result<Policy, LoadError> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "credgate-lc-policy-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if e.file_name() == file {
            assert!(text.contains(from), "patch target not found: {from}");
            text = text.replacen(from, to, 1);
        }
        std::fs::write(dir.join(e.file_name()), text).unwrap();
    }
    let r = load(&dir, b"k");
    let _ = std::fs::remove_dir_all(&dir);
    r
}
