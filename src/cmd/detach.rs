//! `shmhub detach`: release a guest entry claimed for scripted use.

use serde_json::json;
use shmhub::PeerId;

use super::exit::Outcome;
use super::parse::parse_peer_id;
use super::segment::SegmentArgs;
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
    /// The entry to release (refused while a live process holds it).
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: PeerId,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// Runs `shmhub detach`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    args.segment.resolve()?.release(args.peer_id)?;
    if args.segment.json {
        print_line(json!({ "detached": args.peer_id }))?;
    }
    Ok(Outcome::Done)
}
