//! `shmhub ls`: every segment on the machine (or in the directories
//! given), with host and guest liveness, messages queued and slots in use.

use std::path::PathBuf;

use comfy_table::{Cell, CellAlignment};
use serde_json::json;
use shmhub::HostStatus;
use shmhub::admin::{Listing, SegmentSummary};

use super::clock::{age_secs, human_age};
use super::exit::Outcome;
use super::table;
use super::text::{human_bytes, naming, owner_json, owner_text, path_json, print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub ls                       # segments in /dev/shm (or $SHMHUB_SHM_DIR)
  shmhub ls --dead                # only those whose host is dead or absent
  shmhub ls /run/app --json | jq -r '.segments[].path'";

/// Arguments of `shmhub ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Only segments whose host is dead or absent.
    #[arg(long)]
    pub dead: bool,
    /// Name every file that was not listed, and why.
    #[arg(long)]
    pub verbose: bool,
    /// Where to look, and `--json`.
    #[command(flatten)]
    pub listing: ListingArgs,
}

/// What `ls` and `gc` end their arguments with: the directories they look
/// in, and `--json`.
///
/// A command flattens it after its own options, so that `--json` is
/// listed after them in `--help`, as it always was. A command whose JSON
/// has a shape worth naming names it in `--json`'s help (with `mut_arg`).
#[derive(Debug, clap::Args)]
pub struct ListingArgs {
    /// Directories to look in (default: the segment directory,
    /// $SHMHUB_SHM_DIR or /dev/shm).
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

impl ListingArgs {
    /// The directories given, or the segment directory.
    fn resolved(&self) -> Vec<PathBuf> {
        if self.dirs.is_empty() {
            vec![shmhub::admin::shm_dir()]
        } else {
            self.dirs.clone()
        }
    }
}

/// Lists every directory `args` names into one listing.
pub fn list_all(args: &ListingArgs) -> anyhow::Result<Listing> {
    let mut all = Listing::default();
    for dir in args.resolved() {
        let listing = shmhub::admin::list_segments(&dir)?;
        all.segments.extend(listing.segments);
        all.unlisted.extend(listing.unlisted);
    }
    Ok(all)
}

/// Runs `shmhub ls`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut listing = list_all(&args.listing)?;
    if args.dead {
        listing
            .segments
            .retain(|s| matches!(s.host, HostStatus::Dead | HostStatus::NoProcess));
    }
    if args.listing.json {
        print_line(json!({
            "segments": listing.segments.iter().map(summary_json).collect::<Vec<_>>(),
            "unlisted": listing.unlisted.iter().map(|u| json!({
                "path": path_json(&u.path),
                "reason": u.reason,
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(Outcome::Done);
    }
    if !listing.segments.is_empty() {
        print_table(&listing.segments)?;
    } else {
        eprintln!("no segments");
    }
    if !listing.unlisted.is_empty() {
        if args.verbose {
            for u in &listing.unlisted {
                eprintln!(
                    "not listed: {}: {}",
                    shown(&u.path),
                    naming(&u.reason, &u.path)
                );
            }
        } else {
            eprintln!(
                "{} other file(s) not listed (not segments, not readable, or not ready); --verbose names them",
                listing.unlisted.len()
            );
        }
    }
    Ok(Outcome::Done)
}

/// One segment as JSON.
fn summary_json(s: &SegmentSummary) -> serde_json::Value {
    json!({
        "path": path_json(&s.path),
        "size": s.size,
        "age_s": age_secs(s.created_unix_ns),
        "host": s.host,
        "host_pid": s.host_pid,
        "guests": s.guests,
        "queued": s.queued,
        "slots_used": s.slots_used,
        "slots_total": s.slots_total,
        "owner": s.owner.as_ref().map(owner_json),
        "orphaned": s.is_orphaned(),
    })
}

/// The host column: `alive (pid 42)`, `dead (pid 42)`, `none`, `goodbye`.
fn host_text(s: &SegmentSummary) -> String {
    match s.host {
        HostStatus::Alive => format!("alive (pid {})", s.host_pid),
        HostStatus::Dead => format!("dead (pid {})", s.host_pid),
        HostStatus::NoProcess => "none".to_string(),
        HostStatus::Gone => "goodbye".to_string(),
    }
}

/// The guests column: the non-zero counts, `2 live, 1 dead`, or `-`.
fn guests_text(s: &SegmentSummary) -> String {
    let g = &s.guests;
    let parts: Vec<String> = [
        (g.live, "live"),
        (g.dead, "dead"),
        (g.stale, "stale"),
        (g.scripted, "scripted"),
        (g.reserved, "reserved"),
        (g.goodbye, "goodbye"),
        (g.quarantined, "quarantined"),
        (g.bad, "bad"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

fn print_table(segments: &[SegmentSummary]) -> anyhow::Result<()> {
    let columns = [
        "segment", "owner", "size", "age", "host", "guests", "queued", "slots",
    ];
    table::print_stacking(table::of(columns, segments.iter().map(summary_row)))
}

/// One segment as table cells, numbers aligned right.
fn summary_row(s: &SegmentSummary) -> Vec<Cell> {
    vec![
        Cell::new(shown(&s.path)),
        Cell::new(s.owner.as_ref().map(owner_text).unwrap_or_default()),
        Cell::new(human_bytes(s.size)).set_alignment(CellAlignment::Right),
        Cell::new(human_age(age_secs(s.created_unix_ns))).set_alignment(CellAlignment::Right),
        Cell::new(host_text(s)),
        Cell::new(guests_text(s)),
        Cell::new(s.queued).set_alignment(CellAlignment::Right),
        Cell::new(format!("{}/{}", s.slots_used, s.slots_total))
            .set_alignment(CellAlignment::Right),
    ]
}
