//! `shmhub create`: make a segment, optionally stay as its host.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use shmhub::{CreateOptions, FileMode, Frame, RemoveOptions, SegmentConfig, ShmHost};

use super::common::{Role, human_bytes, parse_size_u32, print_line, seg_err};
use super::held::{Receiver, Stopped, receive_until_stopped};
use super::output::MessagePrinter;
use super::{Outcome, segment_path, signals};

const EXAMPLES: &str = "\
Examples:
  shmhub create demo
  shmhub create /dev/shm/app.shm --max-guests 4 --slot-size 1MiB --slots 16
  shmhub create demo --force --hold        # replace, then serve until Ctrl-C";

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
    /// File mode: 600 (owner only) or 660 (owner and group).
    #[arg(long, default_value = "600", value_parser = ["600", "660"])]
    pub mode: String,
    /// Replace an existing segment (never a file that is not one).
    #[arg(long)]
    pub force: bool,
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
    let path = segment_path(&args.segment)?;
    let config = SegmentConfig {
        max_guests: args.max_guests,
        ring_capacity: args.ring_size,
        slot_size: args.slot_size,
        slots_per_pool: args.slots,
        max_payload: args.max_payload.unwrap_or(args.slot_size),
        heartbeat_interval_ms: args.heartbeat_ms,
    };
    // Refuse a bad configuration before touching any file.
    let layout = config
        .layout()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mode = if args.mode == "660" {
        FileMode::OwnerAndGroup
    } else {
        FileMode::OwnerOnly
    };
    if args.force {
        replace_existing(&path)?;
    }
    if args.hold {
        signals::catch_termination();
        signals::guard_sigbus(&path);
    }
    let mut host = ShmHost::create_with(
        &path,
        config,
        CreateOptions {
            mode,
            ..CreateOptions::default()
        },
    )
    .map_err(|e| seg_err(&path, e))?;
    // Persist before printing: a closed standard output must not cost the
    // segment that was just made.
    let host = if args.hold {
        // Receive as the host from the moment the segment is announced.
        host.take_receiving_role(Some(Duration::ZERO))
            .map_err(|e| seg_err(&path, e))?;
        Some(host)
    } else {
        host.persist().map_err(|e| seg_err(&path, e))?;
        None
    };
    if args.json {
        let value = json!({
            "path": path,
            "total_size": layout.total_size,
            "mode": format!("0{}", args.mode),
            "config": config,
            "hold": args.hold,
        });
        print_line(value)?;
    } else {
        print_line(format_args!(
            "created {}: {}, {} guests, rings of {}, {} slots of {} per pool, max payload {}, heartbeat {}, mode 0{}",
            path.display(),
            human_bytes(layout.total_size),
            config.max_guests,
            config.ring_capacity,
            config.slots_per_pool,
            human_bytes(config.slot_size.into()),
            human_bytes(config.max_payload.into()),
            if config.heartbeat_interval_ms == 0 {
                "off".to_string()
            } else {
                format!("{} ms", config.heartbeat_interval_ms)
            },
            args.mode
        ))?;
    }
    match host {
        Some(host) => serve(host, &path, args.json),
        None => Ok(Outcome::Done),
    }
}

/// Removes an existing segment at `path` so that it can be created anew.
fn replace_existing(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!(
                "{}: is a symbolic link; refusing to replace it",
                path.display()
            )
        }
        Ok(_) => {
            let options = RemoveOptions {
                force: true,
                timeout: Duration::from_secs(2),
            };
            shmhub::remove_segment(path, options, &mut |_| {})
                .map_err(|e| seg_err(path, e))
                .with_context(|| "refusing to replace it")?;
            Ok(())
        }
    }
}

/// A held host, as the receive loop sees it: receives from any guest,
/// and between receives notices `rm`'s goodbye request, beats, and
/// reclaims dead guests.
struct HeldHost {
    host: ShmHost,
    last_housekeeping: Instant,
}

impl Receiver for HeldHost {
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Role, Frame)>> {
        Ok(self
            .host
            .recv_timeout(wait)?
            .map(|(peer, frame)| (Role::Guest(peer), frame)))
    }

    fn check_file(&self) -> shmhub::Result<()> {
        self.host.check_file()
    }

    fn tend(&mut self, path: &Path) -> anyhow::Result<Option<&'static str>> {
        if self
            .host
            .goodbye_requested()
            .map_err(|e| seg_err(path, e))?
        {
            return Ok(Some("asked to leave (rm); cleaning up"));
        }
        if self.last_housekeeping.elapsed() >= Duration::from_millis(500) {
            self.last_housekeeping = Instant::now();
            self.host.beat().map_err(|e| seg_err(path, e))?;
            let reclaimed = self.host.reclaim_dead().map_err(|e| seg_err(path, e))?;
            if !reclaimed.is_empty() {
                eprintln!("{}: reclaimed dead peer(s) {reclaimed:?}", path.display());
            }
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
    };
    match receive_until_stopped(&mut held, &mut printer, Role::Host, path, None)? {
        Stopped::Asked(reason) => eprintln!("{}: {reason}", path.display()),
        Stopped::Signal(signal) => eprintln!(
            "{}: {} received; cleaning up",
            path.display(),
            signals::name(signal)
        ),
        // A host receives from every guest: guests leaving does not end it.
        Stopped::HostLeft | Stopped::PeerLeft(_) | Stopped::Idle(_) => {}
    }
    drop(held);
    eprintln!("{}: goodbye; removed", path.display());
    Ok(Outcome::Done)
}
