//! Consent token verification never panics and never accepts a token that
//! was not signed by the pinned key.
#![no_main]
use credgate::consent::token::{ConsentVerifier, IssuerKey, KeyAlg, VerifierConfig, ed25519_public_from_pkcs8, generate_ed25519_pkcs8};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &str| {
    static V: OnceLock<ConsentVerifier> = OnceLock::new();
    let v = V.get_or_init(|| {
        let pkcs8 = generate_ed25519_pkcs8().unwrap();
        let key = IssuerKey {
            issuer: "fuzz-issuer".into(),
            kid: "k1".into(),
            alg: KeyAlg::EdDSA,
            public_key: ed25519_public_from_pkcs8(&pkcs8).unwrap(),
        };
        let cfg = VerifierConfig { audience: "credgate".into(), leeway_secs: 30, max_lifetime_secs: 86_400 };
        ConsentVerifier::new(cfg, vec![key]).unwrap()
    });
    assert!(v.verify(data, 1_800_000_000).is_err());
});
