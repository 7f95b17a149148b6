//! `shmhub reclaim`: reclaim the entries of guests whose process died.

use serde_json::json;
use shmhub::ShmHost;

use super::common::{print_line, seg_err};
use super::{Outcome, segment_path, signals};

const EXAMPLES: &str = "\
Examples:
  shmhub reclaim demo          # prints the reclaimed peer ids, one per line
  shmhub reclaim demo --json";

/// Arguments of `shmhub reclaim`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Print JSON: {"reclaimed":[ids]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub reclaim`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    signals::guard_sigbus(&path);
    let mut host = ShmHost::open(&path).map_err(|e| seg_err(&path, e))?;
    let reclaimed = host.reclaim_dead().map_err(|e| seg_err(&path, e))?;
    if args.json {
        print_line(json!({ "reclaimed": reclaimed }))?;
    } else {
        for p in reclaimed {
            print_line(p)?;
        }
    }
    Ok(Outcome::Done)
}
