//! `shmhub evict`: cut a guest off on purpose, and free its entry once its
//! process is gone.

use serde_json::json;
use shmhub::PeerId;

use super::error::OnSegment;
use super::exit::Outcome;
use super::parse::parse_peer_id;
use super::segment::SegmentArgs;
use super::text::{print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub evict demo --peer-id 3          # cut peer 3 off; its entry is freed
                                         # now if its process is gone, else by
                                         # `shmhub reclaim demo` once it is
  shmhub evict demo --peer-id 3 --json   # {\"evicted\":3,\"freed\":false}";

/// Arguments of `shmhub evict`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// The guest to cut off (an attached, leaving or quarantined entry).
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer_id: PeerId,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// What `--json` prints.
const JSON: &str = r#"Print JSON: {"evicted":N,"freed":bool}"#;

/// Runs `shmhub evict`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let (segment, mut host) = args.segment.open_host()?;
    let path = &segment.path;
    let freed = host.evict(args.peer_id).on_segment(path)?;
    if args.segment.json {
        print_line(json!({ "evicted": args.peer_id, "freed": freed }))?;
    } else if !freed {
        eprintln!(
            "{}: peer {} is cut off; its entry is freed once its process is gone (`shmhub reclaim`)",
            shown(&path),
            args.peer_id
        );
    }
    Ok(Outcome::Done)
}
