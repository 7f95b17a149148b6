//! `shmhub create`: make a segment, optionally stay as its host.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::json;
use shmhub::admin::{RemoveOptions, SkipReason};
use shmhub::{
    CreateOptions, FileMode, Frame, HolderStatus, LayoutError, PeerId, QuarantineReason,
    SegmentConfig, SegmentLayout, ShmHost, sys,
};

use super::clock::heartbeat_interval;
use super::error::{OnSegment, UsageError, seg_err};
use super::exit::Outcome;
use super::held::{CutOffNotices, Receiver, Stopped, receive_until_stopped};
use super::output::MessagePrinter;
use super::parse::parse_size_u32;
use super::segment::{Maker, Segment, already_exists, directory_of, existing};
use super::signals;
use super::text::{counted, human_bytes, mode_text, print_line, shown};
use shmhub::Party;

const EXAMPLES: &str = "\
Examples:
  shmhub create demo
  shmhub create /dev/shm/app.shm --max-guests 4 --slot-size 1MiB --slots 16
  shmhub create demo --force --hold        # replace, then serve until Ctrl-C
  shmhub create big --slot-size 1MiB --preallocate   # reserve every page now";

/// Arguments of `shmhub create`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// How many guests can attach at once (1..=255).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_guests: u32,
    /// Descriptors per ring (a power of two, 2..=65536).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub ring_size: u32,
    /// Bytes per payload slot (a multiple of 64): 4096, 64KiB, 1MiB.
    #[arg(long, default_value = "64KiB", value_parser = parse_size_u32, value_name = "SIZE")]
    pub slot_size: u32,
    /// Slots in each pool (the host's and each guest's).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub slots: u32,
    /// Largest payload (default: the slot size).
    #[arg(long, value_parser = parse_size_u32, value_name = "SIZE")]
    pub max_payload: Option<u32>,
    /// Heartbeat interval of held guests in milliseconds (0: off).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub heartbeat_ms: u32,
    /// How many of the host's slots one guest may hold at once (default:
    /// the fair share, the host's pool divided among the guests in use).
    #[arg(long, value_name = "N")]
    pub host_slots_per_guest: Option<u32>,
    /// File mode: 600 (owner only) or 660 (owner and group).
    #[arg(long, default_value = "600", value_parser = ["600", "660"])]
    pub mode: String,
    /// Replace an existing segment (never a file that is not one).
    #[arg(long)]
    pub force: bool,
    /// Create the segment even if it is larger than the free space of its
    /// file system (its pages are allocated as they are first touched; one
    /// touched when the space has run out cannot be, and the command
    /// touching it fails).
    #[arg(long, conflicts_with = "preallocate")]
    pub sparse: bool,
    /// Reserve every page of the segment now (fallocate), so that no later
    /// write can fail for want of space; fails if it does not fit.
    #[arg(long)]
    pub preallocate: bool,
    /// Stay running as the host until SIGINT, SIGTERM or SIGHUP (or `rm`):
    /// print what guests send, reclaim dead guests, then say goodbye and
    /// delete the file.
    #[arg(long)]
    pub hold: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub create`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    // A file already there is looked at (and, with --force, mapped to ask
    // its users to leave): a fault on it names it.
    let path = Segment::resolve(&args.segment)?.path;
    let (config, layout, options) = requested(&args)?;
    let replaced = make_room(&args, &path, layout.total_size)?;
    if args.hold {
        signals::catch_termination();
    }
    let mut host = create_host(&path, config, options, replaced, args.hold)?;
    // Persist before printing: a closed standard output must not cost the
    // segment that was just made.
    let host = if args.hold {
        // Receive as the host from the moment the segment is announced,
        // serving whoever attaches, for as long as it is held.
        host.any_receiver().wait_for_guests(true);
        host.any_receiver()
            .take_roles(Duration::ZERO)
            .on_segment(&path)?;
        Some(host)
    } else {
        host.persist().on_segment(&path)?;
        None
    };
    announce(&args, &path, &config, options.mode, layout.total_size)?;
    match host {
        Some(host) => serve(host, &path, args.json),
        None => Ok(Outcome::Done),
    }
}

/// The segment the flags ask for and how to create it, refused (exit 2)
/// before any file is touched if it cannot be laid out.
fn requested(args: &Args) -> anyhow::Result<(SegmentConfig, SegmentLayout, CreateOptions)> {
    let config = SegmentConfig {
        max_guests: args.max_guests,
        ring_capacity: args.ring_size,
        slot_size: args.slot_size,
        slots_per_pool: args.slots,
        max_payload: args.max_payload.unwrap_or(args.slot_size),
        heartbeat_interval_ms: args.heartbeat_ms,
    };
    let layout = config
        .layout()
        .map_err(|e| invalid_config(&config, args.max_payload.is_some(), e))?;
    let share = args.host_slots_per_guest.unwrap_or(0);
    if args.host_slots_per_guest.is_some() && !(1..=config.slots_per_pool).contains(&share) {
        crate::usage!(
            "--host-slots-per-guest {share}: must be from 1 to the {} slots of a pool",
            config.slots_per_pool
        );
    }
    let mode = if args.mode == "660" {
        FileMode::OwnerAndGroup
    } else {
        FileMode::OwnerOnly
    };
    let options = CreateOptions {
        mode,
        preallocate: args.preallocate,
        host_slots_per_guest: share,
    };
    Ok((config, layout, options))
}

/// Makes sure a segment of `size` bytes can be created at `path`:
/// nothing in the way, or a segment `--force` removes (returns whether it
/// did), and room for it on the file system unless `--sparse` or
/// `--preallocate` (which finds out itself).
fn make_room(args: &Args, path: &Path, size: u64) -> anyhow::Result<bool> {
    // What is in the way is said first (a file --force would not replace
    // either), then whether the segment fits.
    if std::fs::symlink_metadata(path).is_ok() && !(args.force && existing(path).rm.is_some()) {
        return Err(already_exists(path, Maker::Create));
    }
    if !args.sparse && !args.preallocate {
        check_free_space(path, size, args.force)?;
    }
    Ok(args.force && replace_existing(path)?)
}

/// Creates the segment; a SIGBUS on it then names it, and a `hold`ing
/// host's deletes it, as the host does when it ends. `replaced`: an error
/// says the segment `--force` replaced is gone.
fn create_host(
    path: &Path,
    config: SegmentConfig,
    options: CreateOptions,
    replaced: bool,
    hold: bool,
) -> anyhow::Result<ShmHost> {
    // Now the new file, which does not exist yet.
    signals::guard_sigbus(path);
    let host = ShmHost::create_with(path, config, options).map_err(|e| {
        let after = if replaced {
            " (the segment --force replaced was removed)"
        } else {
            ""
        };
        match e {
            shmhub::Error::AlreadyExists { .. } => {
                anyhow!("{}{after}", already_exists(path, Maker::Create))
            }
            shmhub::Error::NoSpace { needed, .. } => {
                anyhow!("{}{after}", no_space(path, needed, options.preallocate))
            }
            e => seg_err(path, e).followed_by(after).into(),
        }
    })?;
    if hold {
        signals::guard_sigbus_owned(path);
    } else {
        signals::guard_sigbus(path);
    }
    Ok(host)
}

/// Says what was created: one line, or one JSON object.
fn announce(
    args: &Args,
    path: &Path,
    config: &SegmentConfig,
    mode: FileMode,
    total_size: u64,
) -> anyhow::Result<()> {
    if args.json {
        return print_line(json!({
            "path": path,
            "total_size": total_size,
            "mode": mode_text(mode.bits()),
            "config": config,
            "hold": args.hold,
        }));
    }
    print_line(format_args!(
        "created {}: {}, {}, rings of {}, {} of {} per pool, max payload {}, heartbeat {}, mode {}",
        shown(&path),
        human_bytes(total_size),
        counted(config.max_guests, "guest", "guests"),
        config.ring_capacity,
        counted(config.slots_per_pool, "slot", "slots"),
        human_bytes(config.slot_size.into()),
        human_bytes(config.max_payload.into()),
        heartbeat_interval(config.heartbeat_interval_ms),
        mode_text(mode.bits())
    ))
}

/// A configuration the library cannot lay out, as a usage error (exit 2)
/// naming the flag and its value as given, sizes in binary units.
/// `payload_given`: whether `--max-payload` was (else it is the slot size).
fn invalid_config(config: &SegmentConfig, payload_given: bool, e: LayoutError) -> anyhow::Error {
    let message = match e.field {
        "max_guests" => format!(
            "--max-guests {}: must be from 1 to {}",
            e.value,
            shmhub::format::MAX_GUESTS
        ),
        "ring_capacity" => format!(
            "--ring-size {}: must be a power of two from 2 to {}",
            e.value,
            shmhub::format::MAX_RING_CAPACITY
        ),
        "slot_size" => format!(
            "--slot-size {}: must be a multiple of {} bytes from {} B to {}",
            size_value(e.value),
            shmhub::format::MIN_SLOT_SIZE,
            shmhub::format::MIN_SLOT_SIZE,
            human_bytes(shmhub::format::MAX_SLOT_SIZE.into())
        ),
        "slots_per_pool" => format!(
            "--slots {}: must be from 1 to {}",
            e.value,
            shmhub::format::MAX_SLOTS_PER_POOL
        ),
        "max_payload" if payload_given => format!(
            "--max-payload {}: must be from 1 byte to the slot size ({})",
            size_value(e.value),
            human_bytes(config.slot_size.into())
        ),
        "heartbeat_interval_ms" => format!("--heartbeat-ms {}: {}", e.value, e.reason),
        "total_size" => {
            // The pools are nearly all of it: max-guests + 1 of them, each
            // slots x slot-size bytes (every factor was checked above, so
            // this cannot overflow). The layout's own total may have.
            let pools = (u64::from(config.max_guests) + 1)
                * u64::from(config.slots_per_pool)
                * u64::from(config.slot_size);
            let size = if e.value == u64::MAX {
                format!("more than {}", human_bytes(pools))
            } else {
                human_bytes(e.value)
            };
            format!(
                "--max-guests {}, --slots {} and --slot-size {}: the segment would be {size} \
                 (max-guests + 1 pools of slots x slot-size), over the {} limit",
                config.max_guests,
                config.slots_per_pool,
                size_value(config.slot_size.into()),
                human_bytes(shmhub::format::MAX_TOTAL_SIZE)
            )
        }
        field => format!("{field} = {}: {}", e.value, e.reason),
    };
    anyhow::Error::new(UsageError(message))
}

/// A size flag's value: as a plain number below 1 KiB (as it was most
/// likely typed), else in binary units, with the exact bytes when the
/// units round it.
fn size_value(bytes: u64) -> String {
    if bytes < 1024 {
        return bytes.to_string();
    }
    let unit = 1u64 << (10 * (bytes.ilog2() / 10));
    if bytes % unit == 0 {
        human_bytes(bytes)
    } else {
        format!("{} ({bytes} bytes)", human_bytes(bytes))
    }
}

/// Refuses a segment larger than the free space of the file system it
/// would live on (see [`short_of_space`]). A segment that `--force`
/// replaces gives its own space back first.
fn check_free_space(path: &Path, size: u64, replacing: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut reclaimable = 0;
    if replacing {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_file() {
                reclaimable = meta.blocks().saturating_mul(512);
            }
        }
    }
    if let Some(free) = short_of_space(path, size, reclaimable) {
        bail!(
            "{}: the segment would be {}, more than the {} free on its file system; \
             a command touching a page beyond the free space would fail: make it smaller \
             (--max-guests, --slots, --slot-size), free some space, or create it anyway with --sparse",
            shown(&path),
            human_bytes(size),
            human_bytes(free),
        );
    }
    Ok(())
}

/// The free space of the file system a segment of `size` bytes would be
/// created on at `path`, if the segment is larger than that (counting
/// `reclaimable` bytes that creating it frees first); `None` if it fits or
/// the free space cannot be told. A sparse segment larger than its free
/// space cannot have all its pages: the first one touched after the space
/// has run out faults (SIGBUS) in whichever process touches it.
fn short_of_space(path: &Path, size: u64, reclaimable: u64) -> Option<u64> {
    let free = shmhub::sys::available_space(&directory_of(path))
        .ok()?
        .saturating_add(reclaimable);
    (size > free).then_some(free)
}

/// The file system had too little space for what creation reserves (the
/// whole segment with `--preallocate`, else its first page); the library
/// removed the file again.
fn no_space(path: &Path, needed: u64, preallocate: bool) -> anyhow::Error {
    let free = sys::available_space(&directory_of(path))
        .map(|free| format!("{} free", human_bytes(free)))
        .unwrap_or_else(|_| "free space unknown".to_string());
    let what = if preallocate {
        "--preallocate reserves all of it"
    } else {
        "its first page"
    };
    anyhow!(
        "{}: no space left on the file system for {} ({what}; {free}); nothing was created",
        shown(&path),
        human_bytes(needed)
    )
}

/// Removes an existing segment at `path` so that it can be created anew;
/// returns whether there was one.
fn replace_existing(path: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("{}", shown(&path))),
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!(
                "{}: is a symbolic link; refusing to replace it",
                shown(&path)
            )
        }
        Ok(_) => {
            let options = RemoveOptions {
                allow_foreign_owner: false,
                force: true,
                timeout: Duration::from_secs(2),
            };
            shmhub::admin::remove_segment(path, options, &mut |_| {})
                .on_segment(path)
                .with_context(|| "refusing to replace it")?;
            Ok(true)
        }
    }
}

/// A held host, as the receive loop sees it: receives from any guest,
/// and between receives notices `rm`'s goodbye request, beats, and
/// reclaims dead guests. A guest cut off (`shm.peer.quarantine`), found
/// by a receive or a reclaim, is reported once and the others served on.
struct HeldHost {
    host: ShmHost,
    last_housekeeping: Instant,
    /// Live guests named in the last "waiting for ... to leave" line.
    waiting_for: Vec<PeerId>,
    cut_off: CutOffNotices,
}

impl HeldHost {
    /// Guests whose holding process still runs (stale ones too: alive but
    /// silent), which `rm` waits for as well; an entry whose state word is
    /// bad is judged as `rm` judges it, by its presence lock alone.
    fn live_guests(&self) -> shmhub::Result<Vec<PeerId>> {
        let table = self.host.status().peer_table()?;
        let mut live: Vec<PeerId> = table
            .bad_peers
            .iter()
            .filter(|bad| bad.presence_locked)
            .map(|bad| bad.peer_id)
            .collect();
        for entry in table.peers {
            // An entry gone bad since the look above counts as live until
            // the next look judges it.
            let live_now = match self.host.status().holder_status(entry.peer_id) {
                Ok(status) => matches!(status, HolderStatus::Alive | HolderStatus::Stale),
                Err(e) if e.kind() == shmhub::ErrorKind::Corrupt => true,
                Err(e) => return Err(e),
            };
            if live_now {
                live.push(entry.peer_id);
            }
        }
        live.sort();
        Ok(live)
    }

    /// Reclaims dead guests, and frees the entries of guests cut off
    /// whose process is gone; reports a guest found cut off (by this
    /// reclaim, or by another process: `shmhub evict`) that no receive
    /// has reported yet.
    fn reclaim(&mut self, path: &Path) -> anyhow::Result<()> {
        let report = self.host.reclaim_dead_report().on_segment(path)?;
        for &p in &report.reclaimed {
            self.cut_off.forget(p);
        }
        if !report.reclaimed.is_empty() {
            eprintln!(
                "{}: reclaimed dead peer(s) {:?}",
                shown(&path),
                report.reclaimed
            );
        }
        for skipped in report.skipped {
            if skipped.reason == SkipReason::Quarantined {
                let reason = self
                    .host
                    .status()
                    .peer(skipped.peer)
                    .ok()
                    .and_then(|e| e.quarantine);
                let e = shmhub::Error::Quarantined {
                    peer_id: skipped.peer,
                    reason: reason.unwrap_or(QuarantineReason::Entry),
                    detail: None,
                };
                self.cut_off.report(skipped.peer, &e);
            }
        }
        Ok(())
    }
}

impl Receiver for HeldHost {
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Party, Frame)>> {
        let host = &mut self.host;
        let received = self
            .cut_off
            .serving_the_others(|| host.recv_timeout(wait))?;
        Ok(received.map(|(peer, frame)| (Party::Guest(peer), frame)))
    }

    fn check_file(&self) -> shmhub::Result<()> {
        self.host.check_file()
    }

    /// `rm` asks the host to leave by setting the goodbye flag. The host
    /// leaves (deleting its file) once no live guest remains, the same rule
    /// `rm` applies without a host: while one stays, it serves on, and if
    /// `rm` gives up and takes the request back, it simply goes on.
    fn tend(&mut self, path: &Path) -> anyhow::Result<Option<&'static str>> {
        if self.host.status().goodbye_requested().on_segment(path)? {
            if matches!(self.host.check_file(), Err(shmhub::Error::Removed { .. })) {
                return Ok(Some("removed by rm --force; leaving"));
            }
            let live = self.live_guests().on_segment(path)?;
            if live.is_empty() {
                return Ok(Some("asked to leave (rm); cleaning up"));
            }
            if live != self.waiting_for {
                eprintln!(
                    "{}: asked to leave (rm); waiting for live peer(s) {live:?} to leave first",
                    shown(&path)
                );
                self.waiting_for = live;
            }
        } else if !self.waiting_for.is_empty() {
            eprintln!("{}: rm gave up; serving on", shown(&path));
            self.waiting_for.clear();
        }
        if self.last_housekeeping.elapsed() >= Duration::from_millis(500) {
            self.last_housekeeping = Instant::now();
            self.host.beat().on_segment(path)?;
            self.reclaim(path)?;
        }
        Ok(None)
    }
}

/// Acts as the host until told to stop; the host's drop says goodbye and
/// deletes the file.
fn serve(host: ShmHost, path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let mut printer = MessagePrinter::new(path, json, None)?;
    let mut held = HeldHost {
        host,
        last_housekeeping: Instant::now(),
        waiting_for: Vec::new(),
        cut_off: CutOffNotices::new(path),
    };
    match receive_until_stopped(&mut held, &mut printer, Party::Host, path, None)? {
        Stopped::Asked(reason) => eprintln!("{}: {reason}", shown(&path)),
        Stopped::Signal(signal) => eprintln!(
            "{}: {} received; cleaning up",
            shown(&path),
            signals::name(signal)
        ),
        // A host receives from every guest: guests leaving does not end it.
        Stopped::HostLeft
        | Stopped::PeerLeft(_)
        | Stopped::Idle(_)
        | Stopped::ReaderGone
        | Stopped::Removed => {}
    }
    drop(held);
    eprintln!("{}: goodbye; removed", shown(&path));
    Ok(Outcome::Done)
}
