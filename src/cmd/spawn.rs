//! `shmhub spawn`: run a real guest program under a segment, on an entry
//! reserved for it.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use shmhub::admin::SpawnTicket;
use shmhub::{HolderStatus, PeerId, PeerState, ShmHost};

use super::attach::with_room;
use super::error::OnSegment;
use super::exit::Outcome;
use super::parse::{parse_duration, parse_peer_id};
use super::segment::SegmentArgs;
use super::signals::{self, WAIT_SLICE};
use super::text::{path_json, print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub spawn demo -- ./plugin --verbose
  shmhub spawn demo --peer-id 3 -- ./plugin {segment} {peer}
  shmhub spawn demo --attach-timeout 30s -- python3 plugin.py";

/// Arguments of `shmhub spawn`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Reserve this entry (it must be empty) instead of the first empty one.
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: Option<PeerId>,
    /// How long the program has to attach before its reservation is given
    /// back (it keeps running).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub attach_timeout: Duration,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
    /// The program and its arguments; `{segment}` and `{peer}` in them are
    /// replaced by the segment's absolute path and the entry's id.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// What `--json` prints.
const JSON: &str = r#"Print JSON lines on stdout: {"event":"reserved",...} once the program runs, {"event":"exited",...} when it ends"#;

/// Runs `shmhub spawn`: reserves an entry, runs the program with
/// `SHMHUB_SEGMENT` and `SHMHUB_PEER_ID` in its environment (saying so on
/// stderr), waits for it and exits with its status (128 + N if signal N
/// ended it), whether or not it attached (a program that never did is
/// named on stderr). A reservation the program never claims is given
/// back; an entry whose program died while attached is reclaimed.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (segment, mut host) = args.segment.open_host()?;
    let path = segment.path.as_path();
    // On a full hub, as `attach`: dead holders and reservations are
    // reclaimed first, and the error says how to free each entry.
    let ticket = match args.peer_id {
        Some(id) => host.spawn_ticket_with_id(id).on_segment(path)?,
        None => with_room(&segment, || host.spawn_ticket())?,
    };
    let (peer, absolute) = (ticket.peer_id(), ticket.segment().to_path_buf());
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let child = Command::new(program)
        .args(rest.iter().map(|arg| fill_in(arg, &ticket)))
        .envs(ticket.env())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        // The ticket drops here: the reservation goes back.
        Err(e) => anyhow::bail!(
            "{}: cannot run {}: {e} (entry {peer} released)",
            shown(&path),
            shown(program)
        ),
    };
    signals::catch_termination();
    let pid = child.id();
    // The sign a script waits for: from here a send to the entry is taken
    // (a reserved entry queues what the host sends it). Written at once,
    // newline included, so that a reader of the pipe never sees half of it.
    let reserved = format!(
        "{}: peer {peer} reserved for {} (pid {pid}); it has {:?} to attach\n",
        shown(&path),
        shown(program),
        args.attach_timeout
    );
    eprint!("{reserved}");
    // The JSON lines `--json` prints: what happened, and to whom.
    let event = |name: &str| json!({ "event": name, "segment": path_json(&absolute), "peer_id": peer, "pid": pid });
    if args.segment.json {
        print_line(event("reserved"))?;
    }
    let ended = supervise(&mut child, ticket, &mut host, path, args.attach_timeout)?;
    let status = ended.status;
    if !ended.attached {
        eprintln!(
            "{}: {} (pid {pid}) ended ({status}) without attaching; entry {peer} released",
            shown(&path),
            shown(program)
        );
    }
    if args.segment.json {
        let mut exited = event("exited");
        exited["attached"] = json!(ended.attached);
        exited["exit_code"] = json!(status.code());
        exited["signal"] = json!(status.signal());
        exited["reclaimed"] = json!(ended.reclaimed);
        print_line(exited)?;
    }
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Done,
        (Some(code), _) => Outcome::Exit(code),
        (None, Some(signal)) => Outcome::Exit(128 + signal),
        (None, None) => Outcome::Exit(1),
    })
}

/// Replaces `{segment}` and `{peer}` in one argument.
fn fill_in(arg: &OsString, ticket: &SpawnTicket) -> OsString {
    match arg.to_str() {
        Some(text) if text.contains("{segment}") || text.contains("{peer}") => text
            .replace("{segment}", &ticket.segment().display().to_string())
            .replace("{peer}", &ticket.peer_id().to_string())
            .into(),
        _ => arg.clone(),
    }
}

/// How the program ended.
struct Ended {
    /// Its exit status.
    status: std::process::ExitStatus,
    /// Whether it ever claimed its entry.
    attached: bool,
    /// Whether its entry was reclaimed (it died attached).
    reclaimed: bool,
}

/// Waits for the child, passing termination signals on to it; gives the
/// reservation back if the child does not claim it in time, and reclaims
/// the entry if the child dies holding it.
fn supervise(
    child: &mut Child,
    ticket: SpawnTicket,
    host: &mut ShmHost,
    path: &Path,
    attach_timeout: Duration,
) -> anyhow::Result<Ended> {
    let peer = ticket.peer_id();
    let started = Instant::now();
    let mut ticket = Some(ticket);
    let mut attached = false;
    let mut forwarded = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Some(signal) = signals::received().filter(|_| !forwarded) {
            forwarded = true;
            // SAFETY: kill only sends a signal to the child we started and
            // have not reaped (try_wait above saw it running).
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        if let Some(t) = &ticket {
            if t.claimed().on_segment(path)? {
                attached = true;
                ticket = None;
            } else if started.elapsed() >= attach_timeout {
                eprintln!(
                    "{}: the program did not attach within {attach_timeout:?}; entry {peer} released",
                    shown(&path)
                );
                ticket = None;
            }
        }
        std::thread::sleep(WAIT_SLICE.min(Duration::from_millis(20)));
    };
    // A program that attached (and perhaps left) since the last look.
    if let Some(t) = &ticket {
        attached |= t.claimed().on_segment(path)?;
    }
    // Not attached: dropping the ticket gives the reservation back.
    drop(ticket);
    let mut reclaimed = false;
    let entry = host.status().peer(peer).on_segment(path)?;
    if entry.state == PeerState::Attached
        && host.status().holder_status(peer).on_segment(path)? == HolderStatus::Dead
    {
        let report = host.reclaim_dead_report().on_segment(path)?;
        if report.reclaimed.contains(&peer) {
            reclaimed = true;
            eprintln!(
                "{}: the program died attached; entry {peer} reclaimed",
                shown(&path)
            );
        }
    }
    Ok(Ended {
        status,
        attached,
        reclaimed,
    })
}
