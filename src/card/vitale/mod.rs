//! Carte Vitale 2 reader: both public read paths of cards.md §1.
//!
//! 1. **Direct**: `SELECT MF` → `READ BINARY` SFI 2 (`65{80 81 82}` per beneficiary),
//!    then `SELECT VITALE` → `READ BINARY` SFI 2 (`65{93}`, NIRs matched by order).
//! 2. **Pointer map**: `SELECT VITALE` → `SELECT EF 2001` → page-read the map
//!    `E0{A0{82…} 80…}` → select each listed application and EF, page-read it,
//!    decode its `65` templates. Files that refuse to be read (protected data) are
//!    skipped.
//!
//! The direct path goes first: its files are fixed, so it follows no card-supplied
//! AID or EF id, and a typical card answers it in four commands (plus T=0 resends)
//! where the map costs two more per listed file. The pointer map is the fallback for
//! cards that refuse SFI reads or whose direct files are absent. When the direct
//! path finds names but not the NIR file, the map is tried for a complete answer
//! before settling for names without NIRs. Both paths feed one merge
//! ([`decode::merge`]), so a card that answers both gives the same identity.
//!
//! A transport failure (the card pulled out) ends the read at once with that error:
//! never a partial identity.

pub mod decode;
pub mod files;

use super::detect::VITALE_AID;
use super::{CardChannel, CardError, CardType, Environment, Identity, ReadContext, Source};
use crate::codec::apdu;
use decode::Record;
use files::{FileRead, read_pages, select};

/// The profile name of the public read paths (product.md §4.3).
pub const PROFILE: &str = "vitale2-public";

/// Progress steps reported by [`read`].
pub const STEPS: u32 = 4;

/// One of the two public read paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// SFI 2 in the MF, then SFI 2 in VITALE.
    Direct,
    /// EF `2001` in VITALE and the files it lists.
    PointerMap,
}

/// Short-EF id of the identity files on the direct path.
const DIRECT_SFI: u8 = 2;
/// The pointer map EF.
const EF_MAP: u16 = 0x2001;

/// Reads a Carte Vitale 2 (direct SFI path first, then the pointer map).
pub fn read(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    read_with(
        channel,
        ctx,
        &[ReadPath::Direct, ReadPath::PointerMap],
        progress,
    )
}

/// Reads with the given paths, in order; the first complete answer wins.
///
/// A path that finds beneficiaries without any NIR is kept as a fallback while the
/// next paths are tried. When no path finds anyone, the first path's error is
/// returned.
pub fn read_with(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    paths: &[ReadPath],
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    let mut progress = Progress::new(progress);
    progress.step(1);
    let mut fallback: Option<Vec<Record>> = None;
    let mut first_error: Option<CardError> = None;
    for path in paths {
        let outcome = match path {
            ReadPath::Direct => direct(channel, &mut progress),
            ReadPath::PointerMap => pointer_map(channel, &mut progress),
        };
        match outcome {
            Ok(people) if people.is_empty() => {
                tracing::debug!(?path, "path found no beneficiary");
                first_error
                    .get_or_insert(CardError::Malformed("no beneficiary on the card".into()));
            }
            Ok(people) if people.iter().any(Record::has_nir) => {
                tracing::debug!(?path, beneficiaries = people.len(), "Vitale read");
                return Ok(finish(people, ctx, &mut progress));
            }
            Ok(people) => {
                tracing::debug!(?path, "path found beneficiaries but no NIR");
                fallback.get_or_insert(people);
            }
            Err(e @ CardError::Channel(_)) => return Err(e),
            Err(e) => {
                tracing::debug!(?path, error = %e, "path failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match (fallback, first_error) {
        (Some(people), _) => Ok(finish(people, ctx, &mut progress)),
        (None, Some(e)) => Err(e),
        (None, None) => Err(CardError::Unsupported("no read path requested".into())),
    }
}

/// Builds the identity and reports the last step.
fn finish(people: Vec<Record>, ctx: &ReadContext, progress: &mut Progress<'_>) -> Identity {
    let beneficiaries = people
        .iter()
        .zip(0u32..)
        .map(|(r, i)| r.to_beneficiary(i))
        .collect();
    progress.step(STEPS);
    Identity {
        source: Source::VitaleCard,
        profile: PROFILE.into(),
        reader: ctx.reader.clone(),
        card_type: CardType::Vitale2,
        environment: Environment::Unknown,
        beneficiaries,
        apcv: None,
    }
}

/// The direct path. Names are required; a missing NIR file gives names alone.
fn direct(
    channel: &mut dyn CardChannel,
    progress: &mut Progress<'_>,
) -> Result<Vec<Record>, CardError> {
    expect_success(channel, &apdu::select_mf(), "SELECT MF")?;
    let names = match read_pages(channel, &apdu::read_binary_sfi(DIRECT_SFI))? {
        FileRead::Data(d) => decode::records(&d)?,
        FileRead::Refused(sw) => {
            return Err(CardError::Status {
                command: "READ BINARY MF/SFI 2",
                sw,
            });
        }
    };
    progress.step(2);
    let nirs = if select(channel, &select_vitale()?)?.is_success() {
        match read_pages(channel, &apdu::read_binary_sfi(DIRECT_SFI))? {
            FileRead::Data(d) => decode::records(&d)?,
            FileRead::Refused(sw) => {
                tracing::debug!(sw = format_args!("{sw:04X}"), "VITALE/SFI 2 refused");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    progress.step(3);
    decode::merge(vec![names, nirs])
}

/// The pointer-map path.
fn pointer_map(
    channel: &mut dyn CardChannel,
    progress: &mut Progress<'_>,
) -> Result<Vec<Record>, CardError> {
    let vitale = select_vitale()?;
    expect_success(channel, &vitale, "SELECT VITALE")?;
    expect_success(channel, &apdu::select_ef(EF_MAP), "SELECT EF 2001")?;
    let entries = match read_pages(channel, &read_current())? {
        FileRead::Data(d) => decode::pointer_map(&d)?,
        FileRead::Refused(sw) => {
            return Err(CardError::Status {
                command: "READ BINARY EF 2001",
                sw,
            });
        }
    };
    progress.step(2);
    let mut files = Vec::new();
    let mut first_problem: Option<CardError> = None;
    let mut current_app: Option<&[u8]> = None;
    for entry in &entries {
        if current_app != Some(entry.aid.as_slice()) {
            let capdu = apdu::select_aid(&entry.aid)
                .map_err(|e| CardError::Malformed(format!("pointer map AID: {e}")))?;
            let sw = select(channel, &capdu)?;
            if !sw.is_success() {
                tracing::debug!(file = %entry.name, %sw, "application refused, skipped");
                current_app = None;
                continue;
            }
            current_app = Some(entry.aid.as_slice());
        }
        let sw = select(channel, &apdu::select_ef(entry.fid))?;
        if !sw.is_success() {
            tracing::debug!(file = %entry.name, fid = format_args!("{:04X}", entry.fid), %sw, "EF not selectable, skipped");
            continue;
        }
        match read_pages(channel, &read_current())? {
            FileRead::Data(d) => match decode::records(&d) {
                Ok(recs) => files.push(recs),
                Err(e) => {
                    tracing::debug!(file = %entry.name, error = %e, "EF undecodable, skipped");
                    first_problem.get_or_insert(e);
                }
            },
            FileRead::Refused(sw) => {
                tracing::debug!(file = %entry.name, sw = format_args!("{sw:04X}"), "EF protected, skipped");
                first_problem.get_or_insert(CardError::Status {
                    command: "READ BINARY (pointer map EF)",
                    sw,
                });
            }
        }
    }
    progress.step(3);
    let people = decode::merge(files)?;
    match first_problem {
        // Nothing readable named anyone: say why rather than "empty card".
        Some(e) if people.is_empty() => Err(e),
        _ => Ok(people),
    }
}

/// `SELECT VITALE`.
fn select_vitale() -> Result<Vec<u8>, CardError> {
    apdu::select_aid(&VITALE_AID).map_err(|e| CardError::Malformed(format!("SELECT: {e}")))
}

/// READ BINARY of the current EF from offset 0.
fn read_current() -> Vec<u8> {
    apdu::read_binary_current()
}

/// Sends a command that must succeed.
fn expect_success(
    channel: &mut dyn CardChannel,
    capdu: &[u8],
    command: &'static str,
) -> Result<(), CardError> {
    let sw = select(channel, capdu)?;
    if sw.is_success() {
        Ok(())
    } else {
        Err(CardError::Status {
            command,
            sw: sw.to_u16(),
        })
    }
}

/// Reports progress forward only, whatever path retries happen.
struct Progress<'a> {
    report: &'a mut dyn FnMut(u32, u32),
    last: u32,
}

impl<'a> Progress<'a> {
    fn new(report: &'a mut dyn FnMut(u32, u32)) -> Self {
        Self { report, last: 0 }
    }

    fn step(&mut self, step: u32) {
        if step > self.last {
            self.last = step;
            (self.report)(step, STEPS);
        }
    }
}
