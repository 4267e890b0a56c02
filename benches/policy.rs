//! Policy decision cost per field (target: ≤ 1 µs per field).
//!
//! `cargo bench --bench policy`

use std::hint::black_box;
use std::path::Path;

use credgate::ids::{CreditCode, SubjectType};
use credgate::policy::{self, ConsentInput};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let p = policy::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        b"bench",
    )
    .unwrap();
    let bank = p
        .organisation(&CreditCode::parse("91370300164100001A").unwrap())
        .unwrap()
        .clone();
    let fin = p.purpose("financing").unwrap().clone();
    let fields: Vec<String> = [
        "enterprise_name",
        "legal_representative",
        "registered_capital",
        "penalty_content",
        "penalty_date",
        "debtor_case_no",
        "tax_paid_annual",
        "abnormal_reason",
        "Blood_Type",
        "no_such_field",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decide_field/catalog_hit", |b| {
        b.iter(|| {
            p.decide_field(
                &bank,
                &fin,
                SubjectType::LegalPerson,
                black_box("penalty_content"),
                &ConsentInput::Absent,
            )
        })
    });
    g.bench_function("decide_field/not_in_catalog", |b| {
        b.iter(|| {
            p.decide_field(
                &bank,
                &fin,
                SubjectType::LegalPerson,
                black_box("favourite_colour"),
                &ConsentInput::Absent,
            )
        })
    });
    g.bench_function("decide_field/prohibited_fullwidth", |b| {
        b.iter(|| {
            p.decide_field(
                &bank,
                &fin,
                SubjectType::LegalPerson,
                black_box("ｆｉｎｇｅｒｐｒｉｎｔ"),
                &ConsentInput::Absent,
            )
        })
    });
    g.throughput(Throughput::Elements(fields.len() as u64));
    g.bench_function("decide_query/10_fields", |b| {
        b.iter(|| {
            p.decide_query(
                &bank,
                &fin,
                SubjectType::LegalPerson,
                black_box(&fields),
                &ConsentInput::Absent,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
