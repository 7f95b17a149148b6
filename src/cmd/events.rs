//! `shmhub events`: a stream of what happens to a segment (guests
//! attaching, leaving, dying, entries reserved and reclaimed, the host
//! leaving or dying, the file removed), one line per event.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use shmhub::admin::{Event, FileIdentity, SegmentReport, Snapshot};

use super::clock::{self, Zone};
use super::error::{OnSegment, SegmentError};
use super::exit::Outcome;
use super::parse::parse_duration;
use super::segment::Segment;
use super::signals;
use super::text::{describe, print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub events demo                        # until Ctrl-C
  shmhub events demo --utc                  # times in UTC, not local
  shmhub events demo --json | jq -c 'select(.event == \"holder_died\")'
  shmhub events demo --count 1 --timeout 30s   # wait for the next event (exit 3 if none)";

/// Arguments of `shmhub events`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// How often to look at the segment (a process that ends is seen at
    /// once, on Linux).
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DUR")]
    pub interval: Duration,
    /// Stop after this many events (exit 0).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop when this long passes without an event (exit 3).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Option<Duration>,
    /// Print one JSON object per event.
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC, not in the local time zone (JSON always has UTC).
    #[arg(long)]
    pub utc: bool,
}

/// Runs `shmhub events`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = Segment::resolve(&args.segment)?;
    let path = segment.path.as_path();
    if args.count == Some(0) {
        crate::usage!("--count must be at least 1");
    }
    if args.interval.is_zero() {
        crate::usage!("--interval must be more than 0");
    }
    signals::catch_termination();
    // An entry whose state word is bad hides only itself: it is told as
    // an event of its own (`bad_state`), and the rest followed as ever.
    let first = shmhub::admin::inspect_path(path).on_segment(path)?;
    let identity = identity_of(path);
    let mut before = Snapshot::of(&first);
    let mut deaths = Deaths::new();
    deaths.watch(&first);
    // What the first look saw is where the stream starts, never told: a
    // script that runs this in the background waits for this line before
    // it acts, or its first changes could fall before that look.
    eprintln!("{}: watching for events from now on", shown(&path));
    let mut told = 0u64;
    let mut last_event = Instant::now();
    loop {
        if deaths.wait_unless_signalled(args.interval) {
            // A signal is the way to end a stream: not an error.
            return Ok(Outcome::Done);
        }
        let after = match look_again(path, identity) {
            Some(report) => {
                let report = report?;
                deaths.watch(&report);
                Snapshot::of(&report)
            }
            None => {
                tell(path, Event::Removed, &args)?;
                return Ok(Outcome::Done);
            }
        };
        for event in shmhub::admin::changes(&before, &after) {
            tell(path, event, &args)?;
            told += 1;
            last_event = Instant::now();
            if args.count == Some(told) {
                return Ok(Outcome::Done);
            }
        }
        before = after;
        if args.timeout.is_some_and(|t| last_event.elapsed() >= t) {
            return Ok(Outcome::TimedOut);
        }
    }
}

/// The processes of the segment (its host's, its guests'), for a look
/// the moment one ends rather than at the next interval. Where there are
/// no pidfds (off Linux, the portable build), the looks alone.
struct Deaths {
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    watch: Option<shmhub::admin::ProcessWatch>,
}

impl Deaths {
    fn new() -> Self {
        Deaths {
            // Without a watch (no epoll descriptor to be had), the looks
            // still see every death, one interval later.
            #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
            watch: shmhub::admin::ProcessWatch::new().ok(),
        }
    }

    /// Watches the processes `report` names.
    fn watch(&mut self, report: &SegmentReport) {
        #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
        if let Some(watch) = &mut self.watch {
            let h = &report.header;
            let host = (!h.host_goodbye).then_some((h.host_pid, h.host_start_time));
            let guests = report
                .peers
                .iter()
                .filter(|p| p.entry.held)
                .map(|p| (p.entry.pid, p.entry.start_time));
            watch.watch(host.into_iter().chain(guests));
        }
        #[cfg(not(all(target_os = "linux", not(shmhub_portable), not(loom))))]
        let _ = report;
    }

    /// Waits `interval`, less if a watched process ends; true if a
    /// termination signal came.
    fn wait_unless_signalled(&mut self, interval: Duration) -> bool {
        #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
        if let Some(watch) = &mut self.watch {
            let start = Instant::now();
            while !signals::terminate_requested() {
                let left = interval.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return false;
                }
                match watch.wait(left.min(signals::WAIT_SLICE)) {
                    Ok(false) => {}
                    Ok(true) => return false,
                    // The watch broke: the looks alone from here on.
                    Err(_) => {
                        self.watch = None;
                        return signals::sleep_unless_signalled(left);
                    }
                }
            }
            return true;
        }
        signals::sleep_unless_signalled(interval)
    }
}

fn identity_of(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Inspects the segment again; `None` once the file at the path is gone
/// or is another file.
fn look_again(
    path: &Path,
    identity: Option<FileIdentity>,
) -> Option<Result<shmhub::admin::SegmentReport, SegmentError>> {
    if identity_of(path) != identity {
        return None;
    }
    match shmhub::admin::inspect_path(path) {
        Err(shmhub::Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
            None
        }
        other => Some(other.on_segment(path)),
    }
}

/// Prints one event, with the time it was seen: RFC 3339 in the zone
/// chosen, always UTC in JSON.
fn tell(path: &Path, event: Event, args: &Args) -> anyhow::Result<()> {
    let now = clock::now_ns();
    if args.json {
        let mut value = json!(event);
        value["time"] = json!(clock::utc(now));
        value["time_unix_ms"] = json!(now / 1_000_000);
        value["segment"] = json!(path);
        return print_line(value);
    }
    let zone = Zone::chosen(args.utc);
    print_line(format_args!(
        "{} {}",
        clock::rfc3339(now, zone),
        describe(event)
    ))
}
