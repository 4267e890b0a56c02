//! `c2sp.org/tlog-proof@v1` files arrive from outside (auditors pass them
//! around): parsing never panics, what parses re-encodes to exactly the same
//! bytes, and nothing verifies against a key no input could have signed with.
#![no_main]
use credlog::checkpoint::{CheckpointSigner, CheckpointVerifier};
use credlog::proof::TlogProof;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static V: OnceLock<CheckpointVerifier> = OnceLock::new();
    let v = V.get_or_init(|| {
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        CheckpointSigner::from_pkcs8("fuzz.example/log", &pkcs8).unwrap().verifier()
    });
    if let Ok(p) = TlogProof::parse(data) {
        assert_eq!(p.encode().as_bytes(), data);
        assert!(p.verify(std::slice::from_ref(v), None).is_err());
    }
});
