//! Writes seed inputs for the cargo-fuzz targets: whole recorded reads of the demo
//! card and phone (in the scripted-card format of `fuzz/fuzz_targets/checks.rs`), the
//! TLV they carry, valid JSON-RPC requests and the PN532 frames libnfc sends. Seeds
//! start the fuzzer deep inside the decoders instead of at the first SELECT.
//! `scripts/fuzz` runs it; its output is also kept in `tests/data/fuzz/`.
//!
//! ```sh
//! cargo run --example fuzz_seeds -- fuzz/corpus [card.toml …]
//! ```

use std::path::{Path, PathBuf};

use vitale_bridge::card::{self, CardType, ReadContext};
use vitale_bridge::sim::card_model::{CardDescription, VirtualVitale};
use vitale_bridge::sim::phone::{PhoneDescription, VirtualPhone};
use vitale_bridge::sim::pn532::frame;
use vitale_bridge::sim::{SimChannel, VirtualCard};

#[path = "../fuzz/fuzz_targets/checks.rs"]
mod checks;

/// Passes APDUs to a virtual card and keeps every R-APDU it gave.
struct Recorder<C: VirtualCard> {
    card: C,
    responses: Vec<Vec<u8>>,
}

impl<C: VirtualCard> VirtualCard for Recorder<C> {
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }

    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        let r = self.card.process(capdu);
        self.responses.push(r.clone());
        r
    }
}

/// The R-APDUs of one complete read of `card`.
fn record<C: VirtualCard>(card: C, card_type: CardType, contactless: bool) -> Vec<Vec<u8>> {
    let ctx = ReadContext {
        reader: "seed:0".into(),
        apcv_aid: hex::decode(vitale_bridge::config::DEFAULT_APCV_AID).unwrap_or_default(),
        environment: None,
    };
    let mut channel = SimChannel::new(
        Recorder {
            card,
            responses: Vec::new(),
        },
        contactless,
    );
    if let Err(e) = card::read_identity(&mut channel, card_type, &ctx, &mut |_, _| {}) {
        eprintln!("warning: the recorded read failed ({e}); the seed is still useful");
    }
    std::mem::take(&mut channel.card_mut().responses)
}

fn script(responses: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in responses {
        checks::script_response(&mut out, r);
    }
    out
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    std::fs::write(d.join(format!("seed-{name}")), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fuzz/corpus"));

    let mut cards = vec![("demo-family".to_string(), VirtualVitale::demo_family())];
    for path in args {
        let path = PathBuf::from(path);
        let desc = CardDescription::from_file(&path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "card".into());
        cards.push((name, VirtualVitale::new(&desc)?));
    }
    for (name, card) in cards {
        let responses = record(card, CardType::Vitale2, false);
        write(&out, "vitale_read", &name, &script(&responses))?;
        for (i, r) in responses.iter().enumerate() {
            // The data part of each page: what the TLV decoder sees.
            if r.len() > 2 {
                write(&out, "tlv", &format!("{name}-{i}"), &r[..r.len() - 2])?;
            }
        }
    }

    let responses = record(VirtualPhone::demo(), CardType::Apcv, true);
    write(&out, "phone_read", "demo-phone", &script(&responses))?;
    write(
        &out,
        "tlv",
        "demo-phone-identity",
        &PhoneDescription::demo().identity_tlv(),
    )?;

    let requests = [
        r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":1,"client":"seed"}}"#,
        r#"{"jsonrpc":"2.0","id":"s","method":"subscribe","params":{"events":["identity.read"]}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"card.read","params":{"reader":"pcsc:Virtual PCD 00 00"}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"card.sign","params":{"reader":"nfc:0","challenge":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}"#,
        r#"{"jsonrpc":"2.0","method":"status"}"#,
        r#"[{"jsonrpc":"2.0","id":5,"method":"readers.list"}]"#,
    ];
    for (i, r) in requests.iter().enumerate() {
        write(&out, "rpc_parse", &i.to_string(), r.as_bytes())?;
    }

    // What libnfc sends a PN532 on open, poll and exchange (rig.md), plus an ACK.
    let commands: [&[u8]; 5] = [
        &[0x02],
        &[0x14, 0x01, 0x00, 0x00],
        &[0x4A, 0x01, 0x00],
        &[
            0x40, 0x01, 0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0, 0, 0, 0x03, 0x10, 0x10, 0x00,
        ],
        &[0x52, 0x01],
    ];
    let mut stream = vec![0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
    for (i, c) in commands.iter().enumerate() {
        let f = frame::encode(0xD4, c).ok_or("frame too long")?;
        write(&out, "pn532_frame", &i.to_string(), &f)?;
        stream.extend_from_slice(&f);
    }
    write(&out, "pn532_frame", "stream", &stream)?;
    println!("seeds written under {}", out.display());
    Ok(())
}
