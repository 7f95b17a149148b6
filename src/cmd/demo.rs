//! `shmhub demo`: the whole system end to end on a temporary segment, with
//! nothing set up beforehand.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use shmhub::{Frame, MsgDesc, PeerId, PeerState, SegmentConfig, ShmHost, msg_type};

use super::child::this_binary;
use super::error::OnSegment;
use super::exit::Outcome;
use super::inspect;
use super::segment::{create_owned, new_segment_path};
use super::text::{counted, human_bytes, path_json, print_line, shown};

/// Arguments of `shmhub demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  shmhub demo")]
pub struct Args {
    /// Segment to use (default: a fresh name under /dev/shm, removed at the end).
    #[arg(long, value_name = "SEGMENT")]
    pub segment: Option<String>,
    /// Print one JSON document at the end instead of the numbered steps.
    #[arg(long)]
    pub json: bool,
}

/// Where the numbered steps go: printed as they happen, or kept (`--json`)
/// for one document at the end.
struct Steps {
    json: bool,
    /// The document `--json` prints, filled in step by step.
    report: serde_json::Map<String, serde_json::Value>,
}

impl Steps {
    /// Prints a step's line, unless the steps go into JSON.
    fn say(&self, line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
        if self.json { Ok(()) } else { print_line(line) }
    }

    /// Records `value` under `key` in the JSON document.
    fn record(&mut self, key: &str, value: serde_json::Value) {
        self.report.insert(key.to_string(), value);
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `shmhub demo`: each step prints a numbered line (with `--json`,
/// one document at the end says what each step did).
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let name = args
        .segment
        .unwrap_or_else(|| format!("shmhub-demo-{}", std::process::id()));
    let path = new_segment_path(&name)?;
    let config = SegmentConfig {
        max_guests: 4,
        ..SegmentConfig::default()
    };
    let mut steps = Steps {
        json: args.json,
        report: serde_json::Map::new(),
    };
    // A file system without room for the demo fails here, before the
    // guest process starts, instead of faulting later.
    let mut host = create_owned(&path, config)?;
    let total_size = host.layout().total_size;
    steps.say(format_args!(
        "1. created {} ({}) as host, pid {}",
        shown(&path),
        human_bytes(total_size),
        std::process::id()
    ))?;
    steps.record("path", path_json(&path));
    steps.record("total_size", json!(total_size));
    steps.record("host_pid", json!(std::process::id()));
    let (peer, child) = start_guest(&mut host, &path, &mut steps)?;
    echo_both_ways(&mut host, peer, &path, &mut steps)?;
    steps.say(format_args!("5. inspect while both are attached:"))?;
    let report = shmhub::admin::inspect_path(&path).on_segment(&path)?;
    if args.json {
        steps.record("inspect", inspect::json::to_json(&report)?);
    } else {
        inspect::tables::print_tables(&report, false, super::clock::Zone::Local)?;
    }
    say_goodbye(host, child, &path, &mut steps)?;
    if args.json {
        print_line(serde_json::Value::Object(steps.report))?;
    }
    Ok(Outcome::Done)
}

/// Reserves an entry and starts a guest process (`guest-echo`) on it;
/// returns once it has attached.
fn start_guest(
    host: &mut ShmHost,
    path: &Path,
    steps: &mut Steps,
) -> anyhow::Result<(PeerId, KillOnDrop)> {
    let peer = host.reserve_peer().on_segment(path)?;
    let child = this_binary("guest-echo")?
        .arg(path)
        .arg("--peer-id")
        .arg(peer.to_string())
        .spawn()
        .context("starting the guest process")?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.status().peer(peer).on_segment(path)?.state != PeerState::Attached {
        if let Some(status) = child.0.try_wait()? {
            bail!("the guest process exited early ({status})");
        }
        if Instant::now() > deadline {
            bail!("the guest process did not attach within 10s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    steps.say(format_args!(
        "2. guest process pid {} attached as peer {peer} (reserved entry)",
        child.0.id()
    ))?;
    steps.record("guest", json!({ "pid": child.0.id(), "peer_id": peer }));
    Ok((peer, child))
}

/// Sends the guest a message that fits in a descriptor and one that needs
/// a slot, and checks that each comes back whole.
fn echo_both_ways(
    host: &mut ShmHost,
    peer: PeerId,
    path: &Path,
    steps: &mut Steps,
) -> anyhow::Result<()> {
    let inline = b"hello from the host".to_vec();
    let slot: Vec<u8> = (0..48 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut round_trips = Vec::new();
    for (i, payload) in [inline, slot].into_iter().enumerate() {
        let frame = Frame::new(MsgDesc::new(msg_type::REQUEST, i as u64), payload);
        let started = Instant::now();
        host.send_timeout(peer, &frame, Some(Duration::from_secs(5)))
            .on_segment(path)?;
        let echoed = host
            .recv_from_timeout(peer, Some(Duration::from_secs(5)))
            .on_segment(path)?
            .context("the guest did not answer within 5s")?;
        let elapsed = started.elapsed();
        if echoed.payload() != frame.payload() || echoed.desc.id != frame.desc.id {
            bail!("the echo of message {i} differs from what was sent");
        }
        let inline = frame.fits_inline();
        steps.say(format_args!(
            "{}. {} host -> guest -> host ({}), intact, round trip {elapsed:?}",
            3 + i,
            counted(frame.payload().len() as u64, "byte", "bytes"),
            if inline {
                "inline in the descriptor"
            } else {
                "through a slot of each side's pool"
            },
        ))?;
        round_trips.push(json!({
            "len": frame.payload().len(),
            "placement": if inline { "inline" } else { "slot" },
            "intact": true,
            "round_trip_ns": u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        }));
    }
    steps.record("round_trips", json!(round_trips));
    Ok(())
}

/// Drops the host, which says goodbye and deletes the file, then checks
/// that the guest left cleanly and the file is gone.
fn say_goodbye(
    host: ShmHost,
    mut child: KillOnDrop,
    path: &Path,
    steps: &mut Steps,
) -> anyhow::Result<()> {
    drop(host);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!("the guest did not leave within 10s of the host's goodbye");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        bail!("the guest process failed ({status})");
    }
    if path.exists() {
        bail!("{}: still exists after the host left", shown(&path));
    }
    steps.record("guest_exit_code", json!(status.code()));
    steps.record("removed", json!(true));
    steps.say(format_args!(
        "6. host said goodbye; the guest left ({status}); {} removed",
        shown(&path)
    ))
}
