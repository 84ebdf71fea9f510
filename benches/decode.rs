//! Decode time of a family Carte Vitale: the pure decoders on the card's files, and
//! a whole read (both SELECTs, paging, T=0) against the in-process virtual card.
//!
//! `cargo bench --bench decode`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use vitale_bridge::card::vitale::{self, ReadPath, decode};
use vitale_bridge::codec::tlv;

#[path = "../tests/vitale_support/mod.rs"]
mod vitale_support;
use vitale_support::*;

fn bench(c: &mut Criterion) {
    let people = family();
    let names = names_file(&people, 25);
    let nirs = nirs_file(&people);
    let full = full_file(&people, 25);
    let ctx = ctx();

    c.bench_function("tlv::decode family identity file", |b| {
        b.iter(|| tlv::decode(black_box(&full)).map(|n| n.len()))
    });

    c.bench_function("decode family (direct files -> beneficiaries)", |b| {
        b.iter(|| {
            let files = vec![
                decode::records(black_box(&names)).expect("names"),
                decode::records(black_box(&nirs)).expect("nirs"),
            ];
            let people = decode::merge(files).expect("merge");
            people
                .iter()
                .zip(0u32..)
                .map(|(r, i)| r.to_beneficiary(i))
                .collect::<Vec<_>>()
        })
    });

    for (label, paths) in [
        ("read family card, direct path", [ReadPath::Direct]),
        ("read family card, pointer map", [ReadPath::PointerMap]),
    ] {
        c.bench_function(label, |b| {
            b.iter_batched(
                || channel(vitale_card(&people, Paths::Both, 25)),
                |mut ch| vitale::read_with(&mut ch, &ctx, &paths, &mut |_, _| {}).expect("reads"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
