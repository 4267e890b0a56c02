//! Signed-note parsing of untrusted checkpoints (they arrive in auditors'
//! export files): never panics, never verifies a forgery.
#![no_main]
use credgate::audit::checkpoint::{CheckpointSigner, CheckpointVerifier};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &str| {
    static V: OnceLock<CheckpointVerifier> = OnceLock::new();
    let v = V.get_or_init(|| {
        let pkcs8 = CheckpointSigner::generate_pkcs8().unwrap();
        CheckpointSigner::from_pkcs8("fuzz.example/log", &pkcs8).unwrap().verifier()
    });
    assert!(v.verify(data).is_err());
});
