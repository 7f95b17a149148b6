//! `shmhub recv`: receive messages as the host or as a guest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmhub::{ErrorKind, Frame, HostStatus, PeerEntry, PeerId, PeerState};

use super::error::{Interrupted, OnSegment, seg_err, seg_err_timed};
use super::exit::Outcome;
use super::held::{self, CutOffNotices, Stopped};
use super::output::{MessagePrinter, Reader};
use super::parse::parse_duration;
use super::segment::{Acting, SegmentArgs, SidesArgs, dead_holder, recv_words};
use super::signals::{self, WAIT_SLICE};
use super::text::{counted, shown};
use shmhub::Party;

/// How long `recv` waits for each message unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const EXAMPLES: &str = "\
Examples:
  shmhub recv demo --as 1                        # one message for guest 1
  shmhub recv demo --as host --from 2 --count 10
  shmhub recv demo --as host --follow --json     # every message, until Ctrl-C
  shmhub recv demo --as 1 --timeout 0            # only what is already queued";

/// Arguments of `shmhub recv`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_args(recv_words), mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Who receives (`--as`), and from whom (`--from`).
    #[command(flatten)]
    pub sides: SidesArgs,
    /// How many messages to receive (exit 3 if fewer arrive in time).
    #[arg(long, default_value_t = 1, value_name = "K", conflicts_with = "follow")]
    pub count: u64,
    /// How long to wait for each message (default 5s); 0 takes only what
    /// is queued. With --follow: the longest gap allowed between two
    /// messages (default: no limit); a longer silence ends with exit 3.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Option<Duration>,
    /// Keep receiving until SIGINT, SIGTERM or SIGHUP (or the host leaves).
    #[arg(long)]
    pub follow: bool,
    /// Write the payload bytes to this file instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// What `--json` prints.
const JSON: &str = "Print one JSON object per message";

/// What `recv` receives through: the side it acts as, and, for the host,
/// the guest it receives from (`None`: any guest, past those cut off).
struct Inbox {
    acting: Acting,
    from: Option<PeerId>,
    cut_off: CutOffNotices,
}

impl Inbox {
    /// The next message and who sent it; `None` if none came in `timeout`.
    fn next(&mut self, timeout: Duration) -> shmhub::Result<Option<(Party, Frame)>> {
        let got = match (&mut self.acting, self.from) {
            (Acting::Host(host), Some(from)) => host
                .receiver(from)?
                .recv(timeout)?
                .map(|m| (Party::Guest(from), m)),
            // The command waits its whole timeout for messages, from
            // whichever guests come and go meanwhile.
            (Acting::Host(host), None) => {
                let inbox = host.any_receiver();
                inbox.wait_for_guests(true);
                self.cut_off
                    .serving_the_others(|| inbox.recv(timeout))?
                    .map(|(from, m)| (Party::Guest(from), m))
            }
            (Acting::Guest(guest), _) => guest.receiver().recv(timeout)?.map(|m| (Party::Host, m)),
        };
        Ok(got.map(|(from, message)| (from, message.into_frame())))
    }
}

impl Inbox {
    /// Fails as a longer wait would have, with [`shmhub::Error::PeerDied`]
    /// or [`shmhub::Error::HostDied`], when the one side received from is
    /// known dead: a receive whose time ran out before the library judged
    /// the sender (`--timeout 0` looks once, without waiting) must not
    /// pass a crash off as nothing sent yet. A receive from any guest
    /// waits for whichever guests come: one dead guest is not the answer.
    fn sender_alive(&self) -> shmhub::Result<()> {
        match (&self.acting, self.from) {
            (Acting::Host(host), Some(from)) => match dead_holder(host, from)? {
                Some(pid) => Err(shmhub::Error::PeerDied { peer_id: from, pid }),
                None => Ok(()),
            },
            (Acting::Host(_), None) => Ok(()),
            (Acting::Guest(guest), _) => match guest.status().host_status()? {
                HostStatus::Dead => Err(shmhub::Error::HostDied {
                    pid: guest.status().header()?.host_pid,
                }),
                _ => Ok(()),
            },
        }
    }
}

impl held::Receiver for Inbox {
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Party, Frame)>> {
        Inbox::next(self, wait)
    }

    fn check_file(&self) -> shmhub::Result<()> {
        self.acting.check_file()
    }

    fn follows(&self) -> bool {
        true
    }
}

/// Runs `shmhub recv`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = args.segment.resolve()?;
    let path = segment.path.as_path();
    if args.count == 0 {
        crate::usage!("--count must be at least 1");
    }
    if let (Party::Guest(_), Some(_)) = (args.sides.role, args.sides.guest) {
        crate::usage!("--from goes with --as host; a guest receives from the host")
    }
    let mut receiver = Inbox {
        acting: segment.act_as(args.sides.role)?,
        from: args.sides.guest,
        cut_off: CutOffNotices::new(path),
    };
    if let (Acting::Host(host), Some(from)) = (&receiver.acting, args.sides.guest) {
        // The same answer whatever the timeout, and the same as `send --to`.
        // An entry that cannot be read is the guest's doing, not the
        // segment's: the receive from it cuts it off and says so
        // (`shm.peer.quarantine`). A bad entry of another guest is none
        // of this receive's business, nor of one from any guest, which
        // cuts that guest off and serves the others.
        match host.status().peer(from) {
            Ok(entry) => refuse_empty_entry(entry, from).on_segment(path)?,
            Err(e) if e.kind() == ErrorKind::Corrupt => {}
            Err(e) => return Err(seg_err(path, e).into()),
        }
    }
    let mut printer = MessagePrinter::new(path, args.segment.json, args.output.as_deref())?;
    if args.follow {
        signals::catch_termination();
        return follow(
            &mut receiver,
            &mut printer,
            args.sides.role,
            path,
            args.timeout,
        );
    }
    signals::catch_termination();
    receive_count(&mut receiver, &mut printer, &args, path)
}

/// Receives and prints `--count` messages, each within `--timeout`.
fn receive_count(
    receiver: &mut Inbox,
    printer: &mut MessagePrinter,
    args: &Args,
    path: &Path,
) -> anyhow::Result<Outcome> {
    let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let interrupted = |signal, received| {
        anyhow::Error::new(Interrupted(signal)).context(format!(
            "{}: received {received} of {}",
            shown(&path),
            counted(args.count, "message", "messages")
        ))
    };
    let mut received = 0;
    while received < args.count {
        match printer.reader(WAIT_SLICE) {
            // Nobody reads what would be printed: stop before taking a
            // message that would only be lost.
            Reader::Gone => return Ok(Outcome::Done),
            Reader::Behind => match signals::received() {
                Some(signal) => return Err(interrupted(signal, received)),
                None => continue,
            },
            Reader::CaughtUp => {}
        }
        match next_within(receiver, timeout) {
            Ok(Some((from, frame))) => {
                printer.print(from, args.sides.role, &frame)?;
                received += 1;
            }
            Ok(None) => {
                if let Some(signal) = signals::received() {
                    return Err(interrupted(signal, received));
                }
                break;
            }
            Err(
                shmhub::Error::HostGone
                | shmhub::Error::PeerGone { .. }
                | shmhub::Error::PeerDied { .. },
            ) if received > 0 => break,
            Err(e) => return Err(seg_err_timed(path, e).into()),
        }
    }
    Ok(if received == args.count {
        Outcome::Done
    } else {
        Outcome::TimedOut
    })
}

/// Refuses to receive from an Empty entry (nothing can come from it).
fn refuse_empty_entry(entry: PeerEntry, from: PeerId) -> shmhub::Result<()> {
    if entry.state == PeerState::Empty {
        return Err(shmhub::Error::PeerState {
            peer_id: from,
            state: entry.state,
            expected: "attached or reserved",
        });
    }
    Ok(())
}

/// The next message within `timeout`, waiting in slices so that a
/// termination signal is noticed; `None` when the time ran out or a signal
/// arrived. A role still busy when the time is up is [`shmhub::Error::Busy`].
fn next_within(receiver: &mut Inbox, timeout: Duration) -> shmhub::Result<Option<(Party, Frame)>> {
    let start = Instant::now();
    loop {
        if signals::terminate_requested() {
            return Ok(None);
        }
        let left = timeout.saturating_sub(start.elapsed());
        match receiver.next(left.min(WAIT_SLICE)) {
            Ok(Some(message)) => return Ok(Some(message)),
            Ok(None) if left <= WAIT_SLICE => return receiver.sender_alive().map(|()| None),
            // Between slices, the file is looked at too: a segment removed
            // (or replaced) while this waits is the answer, not nothing
            // received at the end of the timeout.
            Ok(None) => receiver.acting.check_file()?,
            // A receiving role another process holds is waited out too.
            Err(shmhub::Error::Busy { .. }) if left > WAIT_SLICE => receiver.acting.check_file()?,
            Err(e) => return Err(e),
        }
    }
}

/// How guest `peer` went, in words: `peer 2 has left`, or, when its
/// process was killed without detaching, `peer 2 died (pid 4242) without
/// detaching; ...`, so that a crash does not read as a departure.
fn departure(acting: &Acting, peer: PeerId, path: &Path) -> String {
    match acting {
        Acting::Host(host) => match dead_holder(host, peer) {
            Ok(Some(pid)) => format!(
                "peer {peer} died (pid {pid}) without detaching; `shmhub reclaim {}` frees its entry",
                shown(&path)
            ),
            _ => format!("peer {peer} has left"),
        },
        Acting::Guest(_) => format!("peer {peer} has left"),
    }
}

fn follow(
    receiver: &mut Inbox,
    printer: &mut MessagePrinter,
    me: Party,
    path: &Path,
    idle_limit: Option<Duration>,
) -> anyhow::Result<Outcome> {
    Ok(
        match held::receive_until_stopped(receiver, printer, me, path, idle_limit)? {
            Stopped::HostLeft => {
                eprintln!("{}: the host has left", shown(&path));
                Outcome::Done
            }
            Stopped::PeerLeft(peer) => {
                eprintln!(
                    "{}: {}",
                    shown(&path),
                    departure(&receiver.acting, peer, path)
                );
                Outcome::Done
            }
            Stopped::Removed => {
                eprintln!("{}: the segment was removed", shown(&path));
                Outcome::Done
            }
            Stopped::Idle(_) => Outcome::TimedOut,
            Stopped::Signal(_) | Stopped::Asked(_) | Stopped::ReaderGone => Outcome::Done,
        },
    )
}
