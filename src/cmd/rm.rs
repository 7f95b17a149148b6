//! `shmhub rm`: ask everyone to leave, then delete the segment file.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shmhub::admin::RemoveOptions;

use super::error::{SegmentError, seg_err};
use super::exit::Outcome;
use super::parse::parse_duration;
use super::segment::SegmentArgs;
use super::text::{print_line, shown, spinner};

const EXAMPLES: &str = "\
Examples:
  shmhub rm demo
  shmhub rm demo --timeout 30s     # give live guests longer to leave
  shmhub rm demo --force           # delete even if live guests stay";

/// Arguments of `shmhub rm`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Delete even if live guests are still attached after the timeout, or
    /// the header is damaged (a file that is not a segment is never deleted).
    #[arg(long)]
    pub force: bool,
    /// How long to wait for live guests and a live host to leave.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// The segment, whom to trust, and `--json`.
    #[command(flatten)]
    pub segment: SegmentArgs,
}

/// What `--json` prints.
const JSON: &str = "Print a JSON summary";

/// The error of a refused `rm`, with what the user can do about it.
fn explain_refusal(path: &Path, e: shmhub::Error) -> SegmentError {
    use shmhub::Error as E;
    let hint = match &e {
        E::StillAttached { .. } => "; --force deletes it anyway",
        E::CorruptHeader { .. } => "; --force deletes a damaged segment",
        E::NotASegment { .. } | E::NotReady | E::TooSmall { .. } | E::NotAFile { .. } => {
            "; shmhub never deletes a file that is not a segment (use rm(1) if you mean to)"
        }
        _ => "",
    };
    seg_err(path, e).followed_by(hint)
}

/// Runs `shmhub rm`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = args.segment.resolve()?;
    let path = segment.path.as_path();
    let options = RemoveOptions {
        allow_foreign_owner: segment.opener().allows_foreign_owner(),
        force: args.force,
        timeout: args.timeout,
    };
    let mut bar = None;
    let report = shmhub::admin::remove_segment(path, options, &mut |live| {
        let bar = bar.get_or_insert_with(|| spinner("waiting for guests to leave"));
        bar.set_message(format!(
            "waiting for {} live guest(s) to leave: {live:?}",
            live.len()
        ));
    })
    .map_err(|e| explain_refusal(path, e));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if args.segment.json {
        print_line(json!(report))?;
    } else if !report.abandoned.is_empty() {
        eprintln!(
            "{}: removed; live guest(s) {:?} were still attached (--force)",
            shown(&path),
            report.abandoned
        );
    }
    Ok(Outcome::Done)
}
