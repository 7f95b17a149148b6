//! `shmhub attach`: claim a guest entry, optionally stay attached.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use shmhub::admin::{ReclaimReport, SegmentReport, SkipReason};
use shmhub::{Frame, HolderStatus, PeerId, PeerState, ShmGuest};

use super::error::{OnSegment, seg_err};
use super::exit::Outcome;
use super::held::{Receiver, Stopped, receive_until_stopped};
use super::output::MessagePrinter;
use super::parse::parse_peer_id;
use super::reclaim::{scripted_hint, shell_word};
use super::segment::{Segment, SegmentArgs};
use super::signals;
use super::text::{print_line, shown};
use shmhub::Party;

const EXAMPLES: &str = "\
Examples:
  shmhub attach demo                 # prints the claimed peer id, e.g. 1
  shmhub attach demo --peer-id 3     # take entry 3, reserved by the host
  shmhub attach demo --hold --json   # stay attached, print what the host sends";

/// Arguments of `shmhub attach`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Take this entry, which the host must have reserved.
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: Option<PeerId>,
    /// Stay attached until SIGINT, SIGTERM or SIGHUP (or the host leaves),
    /// printing what the host sends; then detach.
    #[arg(long)]
    pub hold: bool,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// What `--json` prints.
const JSON: &str = r#"Print JSON: {"peer_id":N,"epoch":E}, then one object per message"#;

/// Runs `shmhub attach`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = args.segment.resolve()?;
    let path = segment.path.as_path();
    if args.hold {
        signals::catch_termination();
    }
    let mut guest = match args.peer_id {
        Some(id) => segment.attach_with_id(id)?,
        None => attach_any(&segment)?,
    };
    if args.hold {
        // Receive as this guest from the moment its id is printed.
        guest
            .receiver()
            .take_role(Duration::ZERO)
            .on_segment(path)?;
    }
    let (peer_id, epoch) = (guest.peer_id(), guest.epoch());
    // Leave the claim in place before printing, so that a closed standard
    // output cannot undo it.
    let guest = if args.hold {
        Some(guest)
    } else {
        guest.release_to_script().on_segment(path)?;
        None
    };
    if args.segment.json {
        print_line(json!({ "peer_id": peer_id, "epoch": epoch }))?;
    } else {
        print_line(peer_id)?;
    }
    let Some(guest) = guest else {
        return Ok(Outcome::Done);
    };
    hold(guest, path, args.segment.json)
}

/// How many times `attach` goes round when the hub looked full but an
/// entry came free before it could be named: other processes claiming and
/// freeing entries at the same moment (racing attaches reclaiming the same
/// dead entries).
const FULL_HUB_TRIES: usize = 50;

/// Claims any free entry, making room as [`with_room`] says.
fn attach_any(segment: &Segment) -> anyhow::Result<ShmGuest> {
    let (path, opener) = (segment.path.as_path(), segment.opener());
    with_room(segment, || opener.attach(path))
}

/// Takes any free entry with `take` (an attach, or `spawn`'s
/// reservation). On a full hub, first reclaims the entries whose holder
/// died and the reservations whose reserver died, as `shmhub reclaim`
/// would (saying so on stderr); if none can be, the error names every
/// entry's holder and how to free each kind of entry. The names come from
/// one look at the peer table in which every entry is taken: a look that
/// finds one free (another process freed it meanwhile) tries to take it
/// instead, so the error never names fewer entries than the hub has.
pub fn with_room<T>(
    segment: &Segment,
    mut take: impl FnMut() -> shmhub::Result<T>,
) -> anyhow::Result<T> {
    let path = segment.path.as_path();
    let mut reclaim: Option<ReclaimReport> = None;
    let mut tries = 0;
    loop {
        let full = match take() {
            Err(e @ shmhub::Error::HubFull { .. }) => e,
            other => return Ok(other.on_segment(path)?),
        };
        tries += 1;
        if reclaim.is_none() {
            let report = reclaim_for_room(segment)?;
            let reclaimed = !report.reclaimed.is_empty();
            reclaim = Some(report);
            if reclaimed {
                continue;
            }
        }
        let now = shmhub::admin::inspect_path(path).on_segment(path)?;
        let taken = now.peers.iter().all(|p| p.entry.state != PeerState::Empty);
        if taken || tries >= FULL_HUB_TRIES {
            return Err(hub_full(segment, full, &now, reclaim.as_ref()));
        }
    }
}

/// Reclaims the entries whose holder died, as `shmhub reclaim` would,
/// saying so on stderr; the host's role locks taken for it are let go
/// before it returns.
fn reclaim_for_room(segment: &Segment) -> anyhow::Result<ReclaimReport> {
    let path = segment.path.as_path();
    let before = shmhub::admin::inspect_path(path).on_segment(path)?;
    let report = segment
        .open_host()?
        .reclaim_dead_report()
        .on_segment(path)?;
    for &p in &report.reclaimed {
        eprintln!(
            "{}: the hub was full; reclaimed peer {p} ({})",
            shown(&path),
            holder_of(&before, p, None)
        );
    }
    Ok(report)
}

/// The hub-full error: every entry of the look `now` with its holder, and
/// how to free each kind of entry it found.
fn hub_full(
    segment: &Segment,
    full: shmhub::Error,
    now: &SegmentReport,
    reclaim: Option<&ReclaimReport>,
) -> anyhow::Error {
    let mut holders: Vec<(PeerId, String)> = now
        .peers
        .iter()
        .map(|p| (p.entry.peer_id, holder_of(now, p.entry.peer_id, reclaim)))
        .chain(now.bad_peers.iter().map(|b| {
            let word = format!("a bad state word {}", b.raw_state);
            (b.peer_id, word)
        }))
        .collect();
    holders.sort_by_key(|(id, _)| *id);
    let holders: Vec<String> = holders
        .into_iter()
        .map(|(id, holder)| format!("peer {id} ({holder})"))
        .collect();
    let hints: String = freeing_hints(&segment.name, now)
        .iter()
        .map(|h| format!("; {h}"))
        .collect();
    let who_holds_what = format!(": {}{hints}", holders.join(", "));
    seg_err(&segment.path, full)
        .followed_by(who_holds_what)
        .into()
}

/// How to free each kind of entry in `now`, a look at a full hub after
/// its dead holders were reclaimed, for the kinds it holds: a scripted
/// claim (`detach`), a guest that left with messages unread (the host
/// reads them), a live or silent guest (its process ends), a reservation
/// (its program comes and goes, or its reserver ends) and a guest cut off
/// (its process ends).
fn freeing_hints(segment: &str, now: &SegmentReport) -> Vec<String> {
    let ids = |kind: &dyn Fn(PeerState, HolderStatus) -> bool| -> Vec<PeerId> {
        now.peers
            .iter()
            .filter(|p| kind(p.entry.state, p.holder))
            .map(|p| p.entry.peer_id)
            .collect()
    };
    let any = |kind: &dyn Fn(PeerState, HolderStatus) -> bool, hint: &str| {
        (!ids(kind).is_empty()).then(|| hint.to_string())
    };
    let recv = format!("shmhub recv {} --as host --from", shell_word(segment));
    let leaving = match ids(&|s, _| s == PeerState::Goodbye).as_slice() {
        [] => None,
        [one] => Some(format!(
            "`{recv} {one}` reads what its guest left, which frees it"
        )),
        many => Some(format!(
            "`{recv} N` (N = {}) reads what a guest left, which frees its entry",
            joined(many)
        )),
    };
    let scripted = ids(&|s, h| s == PeerState::Attached && h == HolderStatus::Scripted);
    let held =
        |s, h| s == PeerState::Attached && matches!(h, HolderStatus::Alive | HolderStatus::Stale);
    [
        scripted_hint(segment, &scripted),
        leaving,
        any(
            &held,
            "a held guest's entry is freed when its process detaches or ends",
        ),
        any(
            &|s, _| s == PeerState::Reserved,
            "a reserved entry is freed when its program attaches and leaves, \
             or when the process that reserved it ends",
        ),
        any(
            &|s, _| s == PeerState::Quarantined,
            "a guest cut off is freed once its process is gone (`shmhub reclaim`)",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `ids` as a comma-separated list.
fn joined(ids: &[PeerId]) -> String {
    let ids: Vec<String> = ids.iter().map(PeerId::to_string).collect();
    ids.join(", ")
}

/// Who holds entry `id` in words: `scripted`, `pid N, alive`, `reserved`,
/// ... With a reclaim `report`, an entry it left alone for a reason other
/// than being scripted or alive says that reason instead.
fn holder_of(r: &SegmentReport, id: PeerId, report: Option<&ReclaimReport>) -> String {
    let Some(p) = r.peers.iter().find(|p| p.entry.peer_id == id) else {
        return "gone".into();
    };
    let skipped = report
        .and_then(|rep| rep.skipped.iter().find(|s| s.peer == id))
        .filter(|s| !matches!(s.reason, SkipReason::Alive | SkipReason::Scripted));
    let status = match (skipped, p.entry.state) {
        (Some(s), PeerState::Attached) => s.to_string(),
        (None, PeerState::Attached) => p.holder.to_string(),
        (_, state) => state.to_string(),
    };
    if p.entry.held && p.entry.pid != 0 {
        format!("pid {}, {status}", p.entry.pid)
    } else {
        status
    }
}

/// A held guest, as the receive loop sees it.
struct HeldGuest(ShmGuest);

impl Receiver for HeldGuest {
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Party, Frame)>> {
        Ok(self.0.recv_timeout(wait)?.map(|frame| (Party::Host, frame)))
    }

    fn check_file(&self) -> shmhub::Result<()> {
        self.0.check_file()
    }
}

/// Receives as the guest until stopped, then detaches. On an error (the
/// host died, the file changed) the guest is dropped, which detaches too.
fn hold(guest: ShmGuest, path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let mut printer = MessagePrinter::new(path, json, None)?;
    let me = Party::Guest(guest.peer_id());
    let mut held = HeldGuest(guest);
    match receive_until_stopped(&mut held, &mut printer, me, path, None)? {
        Stopped::HostLeft => {
            eprintln!("{}: the host has left; detaching", shown(&path))
        }
        Stopped::PeerLeft(peer) => bail!(
            "{}: peer {peer} is no longer this process's entry (reclaimed or released by another process)",
            shown(&path)
        ),
        Stopped::Signal(signal) => eprintln!(
            "{}: {} received; detaching",
            shown(&path),
            signals::name(signal)
        ),
        Stopped::Idle(_) | Stopped::Asked(_) | Stopped::ReaderGone | Stopped::Removed => {}
    }
    held.0.detach().on_segment(path)?;
    Ok(Outcome::Done)
}
