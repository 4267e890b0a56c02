//! Consent token verification cost (`cargo bench --bench consent`): the
//! per-request CPU price of a consent-bearing query before any database work.

use std::hint::black_box;

use credgate::consent::token::{
    self, ConsentClaims, ConsentVerifier, IssuerKey, KeyAlg, VerifierConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};

const NOW: u64 = 1_780_000_000;

fn claims(iss: &str) -> ConsentClaims {
    ConsentClaims {
        iss: iss.into(),
        sub: "370303198503150015".into(),
        aud: "credgate-bench".into(),
        grantee: "91370300164100001A".into(),
        purpose: "financing".into(),
        scope: vec!["income".into(), "real_estate".into()],
        iat: NOW - 60,
        nbf: NOW - 60,
        exp: NOW + 3600,
        jti: "bench-0001".into(),
        max_uses: Some(5),
        written: Some(true),
        notice: Some("ab".repeat(32)),
    }
}

fn bench(c: &mut Criterion) {
    let ed = token::generate_ed25519_pkcs8().unwrap();
    let es = token::generate_es256_pkcs8().unwrap();
    let verifier = ConsentVerifier::new(
        VerifierConfig {
            audience: "credgate-bench".into(),
            leeway_secs: 30,
            max_lifetime_secs: 15_552_000,
        },
        vec![
            IssuerKey {
                issuer: "ISSUER-ED".into(),
                kid: "ed-1".into(),
                alg: KeyAlg::EdDSA,
                public_key: token::ed25519_public_from_pkcs8(&ed).unwrap(),
            },
            IssuerKey {
                issuer: "ISSUER-ES".into(),
                kid: "es-1".into(),
                alg: KeyAlg::ES256,
                public_key: token::es256_public_from_pkcs8(&es).unwrap(),
            },
        ],
    )
    .unwrap();
    let ed_token = token::issue("ed-1", KeyAlg::EdDSA, &ed, &claims("ISSUER-ED")).unwrap();
    let es_token = token::issue("es-1", KeyAlg::ES256, &es, &claims("ISSUER-ES")).unwrap();
    assert!(verifier.verify(&ed_token, NOW).is_ok());
    assert!(verifier.verify(&es_token, NOW).is_ok());
    let (input, _) = ed_token.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", "A".repeat(86));

    let mut g = c.benchmark_group("consent_verify");
    g.bench_function("eddsa_valid", |b| {
        b.iter(|| verifier.verify(black_box(&ed_token), NOW).unwrap())
    });
    g.bench_function("es256_valid", |b| {
        b.iter(|| verifier.verify(black_box(&es_token), NOW).unwrap())
    });
    g.bench_function("eddsa_forged_signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged), NOW).unwrap_err())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
