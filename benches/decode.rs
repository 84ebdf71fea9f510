//! Decode time of the demo family Carte Vitale (`CardDescription::demo_family()`):
//! the pure decoders on the card's own files, and whole reads (SELECTs, paging, T=0
//! `6CXX` resends) against the in-process `VirtualVitale`.
//!
//! `cargo bench --bench decode`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vitale_bridge::card::vitale::{self, ReadPath, decode};
use vitale_bridge::card::{self, ReadContext};
use vitale_bridge::codec::tlv;
use vitale_bridge::sim::SimChannel;
use vitale_bridge::sim::card_model::layout::{Df, EF_IDENTITY, Layout};
use vitale_bridge::sim::card_model::{CardDescription, VirtualVitale};

fn bench(c: &mut Criterion) {
    let desc = CardDescription::demo_family();
    let layout = Layout::build(&desc);
    let file = |i: Option<usize>| layout.efs[i.expect("file in the demo layout")].data.clone();
    let names = file(layout.by_sfi(Df::Mf, 2));
    let nirs = file(layout.by_sfi(Df::Vitale, 2));
    let identity = file(layout.by_fid(Df::Vitale, EF_IDENTITY));
    let ctx = ReadContext {
        reader: "sim:bench".into(),
        apcv_aid: Vec::new(),
        environment: None,
    };

    c.bench_function("tlv::decode demo family identity EF", |b| {
        b.iter(|| tlv::decode(black_box(&identity)).map(|n| n.len()))
    });

    c.bench_function("decode demo family (direct files -> beneficiaries)", |b| {
        b.iter(|| {
            let files = vec![
                decode::records(black_box(&names)).expect("names"),
                decode::records(black_box(&nirs)).expect("nirs"),
            ];
            decode::merge(files)
                .expect("merge")
                .iter()
                .zip(0u32..)
                .map(|(r, i)| r.to_beneficiary(i))
                .collect::<Vec<_>>()
        })
    });

    let new_channel = || SimChannel::new(VirtualVitale::demo_family(), false);
    for (label, paths) in [
        ("read demo family card, direct path", ReadPath::Direct),
        ("read demo family card, pointer map", ReadPath::PointerMap),
    ] {
        c.bench_function(label, |b| {
            b.iter_batched(
                new_channel,
                |mut ch| vitale::read_with(&mut ch, &ctx, &[paths], &mut |_, _| {}).expect("reads"),
                BatchSize::SmallInput,
            )
        });
    }
    c.bench_function("detect + read demo family card", |b| {
        b.iter_batched(
            new_channel,
            |mut ch| {
                let t = card::detect(&mut ch, &ctx).expect("detects");
                card::read_identity(&mut ch, t, &ctx, &mut |_, _| {}).expect("reads")
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
