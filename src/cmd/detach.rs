//! `shmhub detach`: release a guest entry claimed for scripted use.

use serde_json::json;

use super::error::seg_err;
use super::exit::Outcome;
use super::parse::parse_peer_id;
use super::segment::{Trust, segment_path};
use super::signals;
use super::text::print_line;

const EXAMPLES: &str = "\
Examples:
  id=$(shmhub attach demo)
  shmhub send demo --as \"$id\" hello
  shmhub detach demo --peer-id \"$id\"";

/// Arguments of `shmhub detach`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// The entry to release (refused while a live process holds it).
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: u8,
    /// Whom to trust.
    #[command(flatten)]
    pub trust: Trust,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub detach`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    signals::guard_sigbus(&path);
    args.trust
        .opener()
        .release(&path, args.peer_id)
        .map_err(|e| seg_err(&path, e))?;
    if args.json {
        print_line(json!({ "detached": args.peer_id }))?;
    }
    Ok(Outcome::Done)
}
