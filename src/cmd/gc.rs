//! `shmhub gc`: remove the segments nobody can use any more.

use serde_json::json;
use shmhub::Collected;

use super::error::library_text;
use super::exit::Outcome;
use super::ls::{Dirs, list_all};
use super::text::{path_json, print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub gc --dry-run             # what would go
  shmhub gc                       # remove them
  shmhub gc /run/app --json";

/// Arguments of `shmhub gc`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Where to look.
    #[command(flatten)]
    pub dirs: Dirs,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document: {"removed":[paths],"kept":[{"path","reason"}]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub gc`: removes every segment whose host is dead, absent or
/// gone and whose guests are all dead or scripted, each only after looking
/// again that nobody uses it. Files that are not segments are never
/// touched.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let listing = list_all(&args.dirs)?;
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for outcome in shmhub::collect_garbage(&listing, args.dry_run) {
        match outcome {
            Collected::Removed(report) => removed.push(report.path),
            Collected::Kept { path, error } => kept.push((path, error)),
        }
    }
    if args.json {
        print_line(json!({
            "dry_run": args.dry_run,
            "removed": removed.iter().map(|path| path_json(path)).collect::<Vec<_>>(),
            "kept": kept
                .iter()
                .map(|(path, error)| json!({ "path": path_json(path), "reason": error.to_string() }))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for path in &removed {
            print_line(format_args!("{verb} {}", shown(&path)))?;
        }
        for (path, error) in &kept {
            eprintln!("kept {}: {}", shown(path), library_text(error));
        }
    }
    Ok(Outcome::Done)
}
