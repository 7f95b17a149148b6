//! `shmhub guest-echo` (hidden): a guest process that sends every message
//! it receives straight back, until the host leaves. `demo` and `bench`
//! spawn it as their second process.

use std::time::Duration;

use shmhub::{ShmGuest, WaitStrategy};

use super::common::{parse_peer_id, seg_err};
use super::{Outcome, segment_path, signals};

/// Arguments of `shmhub guest-echo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Segment path.
    pub segment: String,
    /// The reserved entry to take.
    #[arg(long, value_parser = parse_peer_id)]
    pub peer_id: u8,
    /// How to wait: spin, block or adaptive.
    #[arg(long, default_value = "adaptive", value_parser = parse_strategy)]
    pub wait: WaitStrategy,
}

/// Parses a wait strategy name.
pub fn parse_strategy(text: &str) -> Result<WaitStrategy, String> {
    text.parse()
}

/// Runs `shmhub guest-echo`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    signals::guard_sigbus(&path);
    let mut guest =
        ShmGuest::attach_path_with_id(&path, args.peer_id).map_err(|e| seg_err(&path, e))?;
    guest.set_wait_strategy(args.wait);
    loop {
        match guest.recv_timeout(Some(Duration::from_secs(1))) {
            Ok(Some(frame)) => guest
                .send_timeout(&frame, Some(Duration::from_secs(10)))
                .map_err(|e| seg_err(&path, e))?,
            Ok(None) => {}
            Err(shmhub::Error::HostGone) => return Ok(Outcome::Done),
            Err(e) => return Err(seg_err(&path, e)),
        }
    }
}
