//! `shmhub inspect`: a read-only dump of a segment. Without a flag, the
//! header, peers, rings and pools as tables (`tables`) or JSON (`json`);
//! `--slots`, `--raw` and `--watch` each have a file of their own.

pub mod json;
pub mod raw;
pub mod slots;
pub mod tables;
pub mod watch;

use super::clock::Zone;
use super::exit::Outcome;
use super::parse::parse_duration;
use super::segment::{Segment, bad_entries};
use super::text::print_line;
use json::to_json;
use tables::print_tables;

const EXAMPLES: &str = "\
Examples:
  shmhub inspect demo
  shmhub inspect demo --all                 # include empty peer entries
  shmhub inspect demo --watch --interval 500ms
  shmhub inspect demo --slots               # who holds each slot; leaked ones flagged
  shmhub inspect demo --raw                 # every field, even of a damaged file
  shmhub inspect /dev/shm/app.shm --json | jq '.peers[] | select(.state == \"attached\")'";

/// Arguments of `shmhub inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Show empty peer entries and unused pools too.
    #[arg(long)]
    pub all: bool,
    /// Print one JSON document (always includes every entry); with
    /// --watch, one per interval.
    #[arg(long)]
    pub json: bool,
    /// Keep watching: redraw every interval with messages per second on
    /// each ring and holder changes, until SIGINT, SIGTERM or SIGHUP.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch looks (default 1s).
    #[arg(long, value_parser = parse_duration, value_name = "DUR", requires = "watch")]
    pub interval: Option<std::time::Duration>,
    /// List every allocated slot of every pool: generation, holder, the
    /// queued message naming it, and `leaked?` where nothing will free it.
    #[arg(long, conflicts_with_all = ["all", "watch", "raw"])]
    pub slots: bool,
    /// Dump every header field, peer entry, ring control word and pool
    /// word with its offset, raw and decoded value and `ok` or `invalid`;
    /// works on damaged and truncated files (exit 1 if anything is wrong).
    #[arg(long, conflicts_with_all = ["all", "watch"])]
    pub raw: bool,
    /// Show times in UTC, not in the local time zone (JSON always has UTC).
    #[arg(long)]
    pub utc: bool,
}

/// Runs `shmhub inspect`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = Segment::resolve(&args.segment)?;
    let zone = Zone::chosen(args.utc);
    if args.watch {
        let interval = args.interval.unwrap_or(std::time::Duration::from_secs(1));
        return watch::run(&segment.path, interval, args.all, args.json, zone);
    }
    if args.raw {
        return raw::run(&segment, args.json);
    }
    if args.slots {
        return slots::run(&segment, args.json);
    }
    let report = segment.inspect()?;
    if args.json {
        print_line(to_json(&report)?)?;
    } else {
        print_tables(&report, args.all, zone)?;
    }
    bad_entries(&segment.path, &report.bad_peers)?;
    Ok(Outcome::Done)
}
