//! Replays every input kept under `tests/data/fuzz/<target>/` through the same check
//! the cargo-fuzz target runs (`fuzz/fuzz_targets/checks.rs`): the seeds (whole
//! recorded reads, valid requests and frames) and each minimised input a fuzz run
//! found (`crash-*`, `timeout-*`, kept after the fix). See docs/fuzzing.md.

use std::path::{Path, PathBuf};

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_target_check() {
    for (target, check) in checks::TARGETS {
        let files = inputs(target);
        assert!(
            !files.is_empty(),
            "tests/data/fuzz/{target} has no inputs: run scripts/fuzz --seeds"
        );
        for file in files {
            let data = std::fs::read(&file).expect("read input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails its check again",
                file.display()
            );
        }
    }
}

#[test]
fn recorded_reads_decode_to_an_identity() {
    // The seeds are whole reads: replayed, they must still give an identity. This keeps
    // the scripted-card format and the seeds in step with the card code.
    use vitale_bridge::card::{self, CardType, ReadContext};
    use vitale_bridge::sim::SimChannel;
    let ctx = ReadContext {
        reader: "replay:0".into(),
        apcv_aid: hex::decode(vitale_bridge::config::DEFAULT_APCV_AID).expect("aid"),
        environment: None,
    };
    for (target, card_type, contactless) in [
        ("vitale_read", CardType::Vitale2, false),
        ("phone_read", CardType::Apcv, true),
    ] {
        let seeds: Vec<PathBuf> = inputs(target)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            })
            .collect();
        assert!(!seeds.is_empty(), "no recorded {target} seed");
        for seed in seeds {
            let data = std::fs::read(&seed).expect("read seed");
            let mut channel = SimChannel::new(checks::Scripted::new(&data), contactless);
            let read = card::read_identity(&mut channel, card_type, &ctx, &mut |_, _| {});
            // Recordings of the hostile test cards must still be refused.
            let hostile = seed.to_string_lossy().contains("hostile");
            match read {
                Ok(identity) if !hostile => {
                    assert!(!identity.beneficiaries.is_empty(), "{}", seed.display())
                }
                Err(_) if hostile => {}
                other => panic!("{}: {other:?}", seed.display()),
            }
        }
    }
}
