//! `shmhub attach`: claim a guest entry, optionally stay attached.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use shmhub::{Frame, ShmGuest};

use super::common::{Role, parse_peer_id, print_line, seg_err};
use super::held::{Receiver, Stopped, receive_until_stopped};
use super::output::MessagePrinter;
use super::{Outcome, segment_path, signals};

const EXAMPLES: &str = "\
Examples:
  shmhub attach demo                 # prints the claimed peer id, e.g. 1
  shmhub attach demo --peer-id 3     # take entry 3, reserved by the host
  shmhub attach demo --hold --json   # stay attached, print what the host sends";

/// Arguments of `shmhub attach`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Take this entry, which the host must have reserved.
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: Option<u8>,
    /// Stay attached until SIGINT, SIGTERM or SIGHUP (or the host leaves),
    /// printing what the host sends; then detach.
    #[arg(long)]
    pub hold: bool,
    /// Print JSON: {"peer_id":N,"epoch":E}, then one object per message.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub attach`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    signals::guard_sigbus(&path);
    if args.hold {
        signals::catch_termination();
    }
    let mut guest = match args.peer_id {
        Some(id) => ShmGuest::attach_path_with_id(&path, id),
        None => ShmGuest::attach_path(&path),
    }
    .map_err(|e| seg_err(&path, e))?;
    if args.hold {
        // Receive as this guest from the moment its id is printed.
        guest
            .take_receiving_role(Some(Duration::ZERO))
            .map_err(|e| seg_err(&path, e))?;
    }
    let (peer_id, epoch) = (guest.peer_id(), guest.epoch());
    // Leave the claim in place before printing, so that a closed standard
    // output cannot undo it.
    let guest = if args.hold {
        Some(guest)
    } else {
        guest.release_to_script().map_err(|e| seg_err(&path, e))?;
        None
    };
    if args.json {
        print_line(json!({ "peer_id": peer_id, "epoch": epoch }))?;
    } else {
        print_line(peer_id)?;
    }
    let Some(guest) = guest else {
        return Ok(Outcome::Done);
    };
    hold(guest, &path, args.json)
}

/// A held guest, as the receive loop sees it.
struct HeldGuest(ShmGuest);

impl Receiver for HeldGuest {
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Role, Frame)>> {
        Ok(self.0.recv_timeout(wait)?.map(|frame| (Role::Host, frame)))
    }

    fn check_file(&self) -> shmhub::Result<()> {
        self.0.check_file()
    }
}

/// Receives as the guest until stopped, then detaches. On an error (the
/// host died, the file changed) the guest is dropped, which detaches too.
fn hold(guest: ShmGuest, path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let mut printer = MessagePrinter::new(path, json, None)?;
    let me = Role::Guest(guest.peer_id());
    let mut held = HeldGuest(guest);
    match receive_until_stopped(&mut held, &mut printer, me, path, None)? {
        Stopped::HostLeft => {
            eprintln!("{}: the host has left; detaching", path.display())
        }
        Stopped::PeerLeft(peer) => bail!(
            "{}: peer {peer} is no longer this process's entry (reclaimed or released by another process)",
            path.display()
        ),
        Stopped::Signal(signal) => eprintln!(
            "{}: {} received; detaching",
            path.display(),
            signals::name(signal)
        ),
        Stopped::Idle(_) | Stopped::Asked(_) => {}
    }
    held.0.detach().map_err(|e| seg_err(path, e))?;
    Ok(Outcome::Done)
}
