//! `shmhub guest-echo`: a guest process that sends every message it
//! receives straight back, until the host leaves: the other end a shell
//! script talks to (`shmhub spawn SEGMENT -- shmhub guest-echo`). `demo`
//! and `bench` spawn it as their second process too. Without a segment it
//! attaches from the environment `shmhub spawn` gives it.

use std::path::Path;
use std::time::Duration;

use shmhub::{PeerId, ShmGuest, WaitStrategy};

use super::error::{OnSegment, seg_err};
use super::exit::Outcome;
use super::parse::{parse_peer_id, parse_strategy};
use super::segment::Segment;
use super::signals;

const EXAMPLES: &str = "\
Examples:
  shmhub spawn demo -- shmhub guest-echo &     # an echo guest on a reserved entry
  shmhub send demo --as host --to 1 ping
  shmhub recv demo --as host --from 1          # prints ping";

/// Arguments of `shmhub guest-echo`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The segment, a name or a path (default: $SHMHUB_SEGMENT, with
    /// $SHMHUB_PEER_ID, as `spawn` sets them).
    #[arg(requires = "peer_id")]
    pub segment: Option<String>,
    /// The reserved entry to take.
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: Option<PeerId>,
    /// How to wait: spin, block or adaptive.
    #[arg(long, default_value = "adaptive", value_parser = parse_strategy)]
    pub wait: WaitStrategy,
}

/// Runs `shmhub guest-echo`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (mut guest, path) = match (&args.segment, args.peer_id) {
        (Some(segment), Some(peer_id)) => {
            let path = Segment::resolve(segment)?.path;
            let guest = ShmGuest::attach_path_with_id(&path, peer_id).on_segment(&path)?;
            (guest, path)
        }
        _ => {
            let guest = ShmGuest::attach_from_env()?;
            let path = guest.path().map(Path::to_path_buf).unwrap_or_default();
            signals::guard_sigbus(&path);
            (guest, path)
        }
    };
    guest.set_wait_strategy(args.wait);
    loop {
        match guest.recv_timeout(Some(Duration::from_secs(1))) {
            Ok(Some(frame)) => guest
                .send_timeout(&frame, Some(Duration::from_secs(10)))
                .on_segment(&path)?,
            Ok(None) => {}
            Err(shmhub::Error::HostGone) => return Ok(Outcome::Done),
            Err(e) => return Err(seg_err(&path, e).into()),
        }
    }
}
