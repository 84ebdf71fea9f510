//! `vitale-bridge readers` and `vitale-bridge read`.
//!
//! `read` runs the same hub and backends as the daemon, in-process and without a
//! server, and waits for the first identity outcome. The identity goes to stdout:
//! that is the command's purpose, the user asked for it at their own terminal.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::term::Progress;
use super::{EXIT_FAILURE, runtime};
use crate::bus::Hub;
use crate::config::Config;
use crate::daemon::{self, Mode};
use crate::transport;

/// Options of `vitale-bridge read`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// Reader id (`pcsc:<name>`, `nfc:<connstring>`, `sim:0`); default: the first
    /// reader where a card or phone is read.
    #[arg(long, value_name = "R")]
    pub reader: Option<String>,
    /// Print the identity as JSON (the protocol's Identity object).
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
    /// Read from the simulated demo readers instead of hardware.
    #[arg(long)]
    pub demo: bool,
}

/// `vitale-bridge readers`.
pub fn readers(cfg: &Config) -> ExitCode {
    let mut failures = 0;
    let mut sources = 0;
    if cfg.pcsc.enabled {
        sources += 1;
        match transport::pcsc::list_readers() {
            Ok(names) if names.is_empty() => println!("PC/SC: no readers"),
            Ok(names) => {
                println!("PC/SC readers:");
                for n in names {
                    println!("  pcsc:{n}");
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("PC/SC: {e} (run `vitale-bridge doctor` for help)");
            }
        }
    }
    if cfg.nfc.enabled {
        sources += 1;
        // Configured devices are listed as such: libnfc's scan cannot find serial ones.
        for d in &cfg.nfc.devices {
            println!("NFC device (configured): nfc:{d}");
        }
        match transport::nfc::list_devices() {
            Ok(devs) if devs.is_empty() && cfg.nfc.devices.is_empty() => {
                println!("NFC: no USB devices found")
            }
            Ok(devs) => {
                for d in devs {
                    println!("NFC device: nfc:{d}");
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("NFC: {e} (run `vitale-bridge doctor` for help)");
            }
        }
    }
    if sources > 0 && failures == sources {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// `vitale-bridge read`.
pub fn run(cfg: &Config, args: &ReadArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vitale-bridge: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mode = if args.demo { Mode::Demo } else { Mode::Run };
    let outcome = rt.block_on(read_once(cfg, args, mode));
    rt.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(identity) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&identity).unwrap_or_default()
                );
            } else {
                print!("{}", summary(&identity));
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("vitale-bridge: {msg}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Starts the backends, waits for the first identity outcome, stops the backends.
async fn read_once(cfg: &Config, args: &ReadArgs, mode: Mode) -> Result<Value, String> {
    daemon::harden_process();
    let hub = Hub::new(daemon::initial_pcsc_status(cfg, mode));
    // Subscribe before any backend starts, so no event can be missed.
    let sub = hub.subscribe(4096, false);
    let backends = {
        let (hub, cfg) = (hub.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || daemon::start_backends(&hub, &cfg, mode))
            .await
            .map_err(|e| format!("cannot start the backends: {e}"))?
    };
    let waiting = match &args.reader {
        Some(r) => format!("waiting for a card or phone in {r}…"),
        None => "waiting for a card or phone in any reader…".to_string(),
    };
    let mut progress = Progress::new();
    progress.message(&waiting);
    let interrupted = daemon::shutdown_signal().map_err(|e| e.to_string())?;
    let result = tokio::select! {
        r = wait_identity(sub, args.reader.as_deref(), &mut progress) => r,
        _ = tokio::time::sleep(Duration::from_secs(args.timeout)) => {
            Err(format!("no card or phone read within {} s", args.timeout))
        }
        _ = interrupted => Err("interrupted".to_string()),
    };
    progress.finish();
    let _ = tokio::task::spawn_blocking(move || daemon::stop_backends(backends)).await;
    result
}

/// Follows the event stream until `reader` (or any reader) yields an identity or an
/// error, reporting progress on the way.
async fn wait_identity(
    mut sub: crate::bus::Subscription,
    reader: Option<&str>,
    progress: &mut Progress,
) -> Result<Value, String> {
    while let Some(n) = sub.rx.recv().await {
        let Ok(msg) = serde_json::from_str::<Value>(&n.json) else {
            continue;
        };
        let ev = &msg["params"];
        let id = ev["reader"].as_str().unwrap_or_default();
        if reader.is_some_and(|r| r != id) {
            continue;
        }
        let data = &ev["data"];
        match ev["type"].as_str().unwrap_or_default() {
            "reader.added" => progress.message(&format!(
                "reader {id}: {}",
                data["name"].as_str().unwrap_or_default()
            )),
            "reader.removed" if reader.is_some() => {
                return Err(format!("reader {id} went away"));
            }
            "card.inserted" => progress.message(&format!(
                "{id}: {} inserted (ATR {})",
                data["cardType"].as_str().unwrap_or("card"),
                data["atr"].as_str().unwrap_or_default()
            )),
            "card.reading" => progress.step(
                id,
                data["step"].as_u64().unwrap_or(0) as u32,
                data["total"].as_u64().unwrap_or(0) as u32,
            ),
            "identity.read" => return Ok(data.clone()),
            "identity.error" => {
                return Err(format!(
                    "{id}: {} ({})",
                    data["message"].as_str().unwrap_or("read failed"),
                    data["reason"].as_str().unwrap_or("INTERNAL")
                ));
            }
            "service.changed" => progress.message(&format!(
                "{} is {} {}",
                data["service"].as_str().unwrap_or_default(),
                data["state"].as_str().unwrap_or_default(),
                data["detail"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
    }
    Err("the event stream ended".to_string())
}

/// A human summary of an Identity object.
fn summary(identity: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut out = format!(
        "{} via {} ({}, profile {}, environment {})\n",
        s(&identity["cardType"]),
        s(&identity["reader"]),
        s(&identity["source"]),
        s(&identity["profile"]),
        s(&identity["environment"]),
    );
    let empty = Vec::new();
    for b in identity["beneficiaries"].as_array().unwrap_or(&empty) {
        let birth = match b["birthDate"].as_str() {
            Some(d) => d.to_string(),
            None => format!("{} (lunar)", s(&b["birthDateRaw"])),
        };
        let nir = match (b["nir"].as_str(), b["nirKeyValid"].as_bool()) {
            (Some(n), Some(true)) => n.to_string(),
            (Some(n), _) => format!("{n} (key does not check)"),
            (None, _) => "none".to_string(),
        };
        out.push_str(&format!(
            "  #{} {} {}, born {birth}, NIR {nir}\n",
            b["index"],
            s(&b["surname"]),
            s(&b["givenName"]),
        ));
        if let Some(ins) = b["ins"].as_object() {
            out.push_str(&format!(
                "     INS {} ({})\n",
                ins.get("matricule").and_then(Value::as_str).unwrap_or("?"),
                ins.get("oid").and_then(Value::as_str).unwrap_or("?")
            ));
        }
    }
    if let Some(apcv) = identity["apcv"].as_object() {
        out.push_str(&format!(
            "  ApCV context expires {}\n",
            apcv.get("expires").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_shows_each_beneficiary() {
        let id = json!({
            "source":"vitale-card","profile":"vitale2-public","reader":"sim:0",
            "cardType":"vitale2","environment":"unknown",
            "beneficiaries":[
                {"index":0,"surname":"MARTIN","givenName":"Élodie","birthDate":"1985-03-12",
                 "birthDateRaw":"19850312","birthDateLunar":false,"nir":"285037512345678",
                 "nirKeyValid":true,"ins":null},
                {"index":1,"surname":"MARTIN","givenName":"Léo","birthDate":null,
                 "birthDateRaw":"20150000","birthDateLunar":true,"nir":null,
                 "nirKeyValid":null,"ins":null}
            ]
        });
        let text = summary(&id);
        assert!(text.contains("#0 MARTIN Élodie, born 1985-03-12, NIR 285037512345678"));
        assert!(text.contains("#1 MARTIN Léo, born 20150000 (lunar), NIR none"));
    }
}
