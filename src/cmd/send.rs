//! `shmhub send`: send messages as the host or as a guest.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use shmhub::{ErrorKind, Frame, MsgDesc, PeerId, PeerState, ShmHost};

use super::error::{Interrupted, OnSegment, error_line, seg_err, seg_err_timed};
use super::exit::Outcome;
use super::parse::{parse_duration, parse_msg_type, role_value};
use super::segment::{Acting, Segment, SegmentArgs, SidesArgs, dead_holder, send_words};
use super::signals::{self, WAIT_SLICE};
use super::text::{counted, print_line, progress_bar, shown};
use shmhub::Party;

const EXAMPLES: &str = "\
Examples:
  shmhub send demo --as host --to 1 hello
  shmhub send demo --as 1 --file photo.jpg
  echo hi | shmhub send demo --as 2 -
  shmhub send demo --as host --to 1 --count 10000 --msg-type request ping";

/// Arguments of `shmhub send`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_args(send_words), mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Who sends (`--as`), and to whom (`--to`).
    #[command(flatten)]
    pub sides: SidesArgs,
    /// Read the payload from a file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Message type: a number or data, request, response, error, ping, pong.
    #[arg(long, default_value = "data", value_parser = parse_msg_type, value_name = "TYPE")]
    pub msg_type: u16,
    /// Message id (with --count, ids count up from it).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub id: u64,
    /// Method id.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub method: u32,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub count: u64,
    /// How long to wait for room in a full ring or a free slot (then exit 3).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
    // Positional after SEGMENT, so declared after it.
    /// The payload; `-` reads standard input.
    #[arg(value_name = "MESSAGE", conflicts_with = "file")]
    pub message: Option<String>,
}

/// What `--json` prints.
const JSON: &str = "Print a JSON summary";

/// What `send` sends through: the side it acts as, and whom it sends to.
struct Outbox {
    acting: Acting,
    to: Party,
}

impl Outbox {
    fn max_payload(&self) -> u32 {
        self.acting.layout().config.max_payload
    }

    /// Sends `frame`, waiting up to `timeout` in slices so that a signal is
    /// noticed between them. A sending role another process holds is waited
    /// out like a full ring. `Ok(false)`: a termination signal arrived and
    /// nothing was sent.
    fn send_within(&mut self, frame: &Frame, timeout: Duration) -> shmhub::Result<bool> {
        let start = Instant::now();
        loop {
            if signals::terminate_requested() {
                return Ok(false);
            }
            let left = timeout.saturating_sub(start.elapsed());
            let sent = self
                .acting
                .sender(self.to)
                .and_then(|sender| sender.send(frame.desc, frame.payload(), left.min(WAIT_SLICE)));
            match sent {
                Ok(()) => return Ok(true),
                // Between slices, the file is looked at too: a segment
                // removed (or replaced) while this waits for room is the
                // answer, not a full ring at the end of the timeout.
                Err(e) if waitable(&e) && left > WAIT_SLICE => self.acting.check_file()?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a failed send may succeed if tried again within the timeout.
fn waitable(e: &shmhub::Error) -> bool {
    e.is_retryable() || matches!(e, shmhub::Error::Busy { .. })
}

/// Reads the payload, never more than `max + 1` bytes: a larger one is
/// refused without being read whole (a regular file by its size), so that
/// `--file /dev/zero` or `yes | shmhub send ... -` ends at once, in bounded
/// memory.
fn read_payload(args: &Args, max: u32, segment: &Path) -> anyhow::Result<Vec<u8>> {
    let too_large = |len: String| {
        anyhow::anyhow!(
            "{}: payload of {len} exceeds the max payload of {max} bytes",
            shown(&segment),
        )
    };
    let limit = u64::from(max) + 1;
    let mut buf = Vec::new();
    if let Some(file) = &args.file {
        let opened = File::open(file).with_context(|| format!("{}: cannot read", shown(&file)))?;
        let meta = opened
            .metadata()
            .with_context(|| format!("{}: cannot read", shown(&file)))?;
        if meta.is_dir() {
            bail!("{}: cannot read: is a directory", shown(&file));
        }
        if meta.is_file() && meta.len() > u64::from(max) {
            return Err(too_large(format!("{} bytes", meta.len())));
        }
        opened
            .take(limit)
            .read_to_end(&mut buf)
            .with_context(|| format!("{}: cannot read", shown(&file)))?;
    } else {
        match args.message.as_deref() {
            Some("-") => {
                std::io::stdin()
                    .lock()
                    .take(limit)
                    .read_to_end(&mut buf)
                    .context("reading standard input")?;
            }
            Some(text) => buf = text.as_bytes().to_vec(),
            None => {
                crate::usage!("no payload: give MESSAGE, --file PATH, or - for standard input")
            }
        }
    }
    if buf.len() > max as usize {
        return Err(too_large(format!("more than {max} bytes")));
    }
    Ok(buf)
}

/// Runs `shmhub send`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = args.segment.resolve()?;
    let path = segment.path.as_path();
    check_counts(&args)?;
    let mut outbox = open_outbox(&args, &segment)?;
    // Refuse an oversized payload before anything is written.
    let payload = read_payload(&args, outbox.max_payload(), path)?;
    if let (Acting::Host(host), Party::Guest(to)) = (&outbox.acting, outbox.to) {
        refuse_dead_guest(host, to, path)?;
    }
    signals::catch_termination();
    let mut frame = Frame::new(
        MsgDesc {
            msg_type: args.msg_type,
            method_id: args.method,
            ..MsgDesc::default()
        },
        payload,
    );
    let sent = send_all(&mut outbox, &mut frame, &args, path);
    if args.segment.json {
        let mut summary = json!({
            "from": role_value(args.sides.role),
            "to": role_value(outbox.to),
            "sent": args.count,
            "len": frame.payload().len(),
            "placement": if frame.fits_inline() { "inline" } else { "slot" },
        });
        if let Err(failed) = &sent {
            // A script reads how far the run got and why it stopped, as
            // the error line on stderr says it.
            summary["sent"] = json!(failed.sent);
            summary["count"] = json!(args.count);
            summary["error"] = json!(error_line(&failed.error));
            // The send's error is the one to report, whatever became of
            // this line.
            let _ = print_line(summary);
        } else {
            print_line(summary)?;
        }
    }
    sent.map_err(|failed| failed.error)?;
    Ok(Outcome::Done)
}

/// A `--count` run that stopped before the end: how many it sent, and why.
struct Failed {
    sent: u64,
    error: anyhow::Error,
}

/// Refuses a `--count` of 0, and ids that would run past the largest.
fn check_counts(args: &Args) -> anyhow::Result<()> {
    if args.count == 0 {
        crate::usage!("--count must be at least 1");
    }
    if args.id.checked_add(args.count - 1).is_none() {
        crate::usage!(
            "--id {} with --count {} would run past the largest message id {}",
            args.id,
            args.count,
            u64::MAX
        );
    }
    Ok(())
}

/// Opens the segment as the side `--as` names, to send to the host or to
/// the guest `--to` names.
fn open_outbox(args: &Args, segment: &Segment) -> anyhow::Result<Outbox> {
    let to = match (args.sides.role, args.sides.guest) {
        (Party::Host, Some(to)) => Party::Guest(to),
        (Party::Host, None) => crate::usage!("--as host needs --to N (the guest to send to)"),
        (Party::Guest(_), Some(_)) => {
            crate::usage!("--to goes with --as host; a guest always sends to the host")
        }
        (Party::Guest(_), None) => Party::Host,
    };
    Ok(Outbox {
        acting: segment.act_as(args.sides.role)?,
        to,
    })
}

/// Sends `frame` `--count` times, its id counting up from `--id`, with a
/// progress bar when there is more than one. An error, or a termination
/// signal, says how many were sent.
fn send_all(
    outbox: &mut Outbox,
    frame: &mut Frame,
    args: &Args,
    path: &Path,
) -> Result<(), Failed> {
    let bar = (args.count > 1).then(|| progress_bar(args.count, "sending"));
    let of_count = |sent: u64| {
        format!(
            "sent {sent} of {}",
            counted(args.count, "message", "messages")
        )
    };
    for sent in 0..args.count {
        frame.desc.id = args.id + sent;
        let outcome = outbox.send_within(frame, args.timeout);
        if !matches!(outcome, Ok(true)) {
            // The bar goes before any message, so the error has its own line.
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
        }
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                let signal = signals::received().unwrap_or(libc::SIGINT);
                let error = anyhow::Error::new(Interrupted(signal)).context(format!(
                    "{}: {}",
                    shown(&path),
                    of_count(sent)
                ));
                return Err(Failed { sent, error });
            }
            Err(e) => {
                let err = seg_err_timed(path, e);
                let error = if args.count > 1 {
                    // The path and cause first, then how far a --count run
                    // got, none sent included.
                    err.followed_by(format_args!(" ({})", of_count(sent)))
                } else {
                    err
                }
                .into();
                return Err(Failed { sent, error });
            }
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

/// Refuses to send to a guest whose holding process is dead: nobody would
/// ever read the message, and its slot would stay taken until a reclaim.
/// A guest cut off, or one whose entry cannot be read (its own doing),
/// is left to the library's send, which cuts it off and says so with
/// its own error (`shm.peer.quarantine`), dead or alive.
fn refuse_dead_guest(host: &ShmHost, to: PeerId, path: &Path) -> anyhow::Result<()> {
    match host.status().peer(to) {
        Ok(entry) if entry.state == PeerState::Quarantined => return Ok(()),
        Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(()),
        _ => {}
    }
    // Said as a receive from it says it: one crash, one message.
    if let Some(pid) = dead_holder(host, to).on_segment(path)? {
        return Err(seg_err(path, shmhub::Error::PeerDied { peer_id: to, pid }).into());
    }
    Ok(())
}
