//! `shmhub gc`: remove the segments nobody can use any more.

use std::path::Path;

use serde_json::json;
use shmhub::MmapRegion;
use shmhub::admin::{Collected, Listing, RemoveReport, collect_garbage, inspect_region};
use shmhub::format::HEADER_SIZE;

use super::error::library_text;
use super::exit::Outcome;
use super::ls::{ListingArgs, list_all};
use super::segment::directory_of;
use super::text::{mode_text, naming, path_json, print_line, shown, user_text};

const EXAMPLES: &str = "\
Examples:
  shmhub gc --dry-run             # what would go
  shmhub gc                       # remove them
  shmhub gc /run/app --json";

/// Arguments of `shmhub gc`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, mut_arg("json", |json| json.help(JSON)))]
pub struct Args {
    /// Say what would be removed and what kept, and why; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to look, and `--json`.
    #[command(flatten)]
    pub listing: ListingArgs,
}

/// What `--json` prints.
const JSON: &str = r#"Print one JSON document: {"removed":[paths],"kept":[{"path","reason"}]}"#;

/// Runs `shmhub gc`: removes every segment whose host is dead, absent or
/// gone and whose guests are all dead or scripted, each only after looking
/// again that nobody uses it. Files that are not segments are never
/// touched.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let listing = list_all(&args.listing)?;
    let collected = if args.dry_run {
        dry_run(&listing)
    } else {
        collect_garbage(&listing, false)
    };
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for outcome in collected {
        match outcome {
            Collected::Removed(report) => removed.push(report.path),
            Collected::Kept { path, error } => kept.push((path, error)),
        }
    }
    if args.listing.json {
        print_line(json!({
            "dry_run": args.dry_run,
            "removed": removed.iter().map(|path| path_json(path)).collect::<Vec<_>>(),
            "kept": kept
                .iter()
                .map(|(path, error)| json!({ "path": path_json(path), "reason": kept_reason(path, error) }))
                .collect::<Vec<_>>(),
        }))?;
    } else {
        let (verb, keep) = if args.dry_run {
            ("would remove", "would keep")
        } else {
            ("removed", "kept")
        };
        for path in &removed {
            print_line(format_args!("{verb} {}", shown(path)))?;
        }
        for (path, error) in &kept {
            eprintln!("{keep} {}: {}", shown(path), kept_reason(path, error));
        }
    }
    Ok(Outcome::Done)
}

/// Why `gc` kept the segment at `path`, in words that follow its path
/// (never repeating it): the error its removal gave, with the owner of
/// another user's segment named as the system's user database names it.
fn kept_reason(path: &Path, error: &shmhub::Error) -> String {
    if let shmhub::Error::ForeignOwner { uid, mode, .. } = error {
        return format!(
            "owned by user {} (mode {}), not by this user: gc never removes another user's segment",
            user_text(*uid),
            mode_text(*mode)
        );
    }
    let message = error.to_string();
    match message.strip_prefix(&format!("{}: ", path.display())) {
        Some(cause) => naming(cause, path),
        None => library_text(error),
    }
}

/// What `gc` would do with each orphaned segment of `listing`, changing
/// nothing: each is reported removed only if the removal would pass every
/// check it makes before it changes anything, else kept with the error the
/// removal would give.
fn dry_run(listing: &Listing) -> Vec<Collected> {
    listing
        .segments
        .iter()
        .filter(|s| s.is_orphaned())
        .map(|s| match removable(&s.path) {
            Ok(()) => Collected::Removed(RemoveReport {
                path: s.path.clone(),
                removed_by_host: false,
                abandoned: Vec::new(),
                waited_ms: 0,
            }),
            Err(error) => Collected::Kept {
                path: s.path.clone(),
                error,
            },
        })
        .collect()
}

/// Whether `admin::remove_unused_segment` would remove the orphaned
/// segment at `path`, by its checks, in its order, without changing
/// anything: the file opened for writing and mapped, its owner trusted,
/// its header and peer table read (the listing already found no live
/// holder), and the directory letting this process delete the file.
fn removable(path: &Path) -> shmhub::Result<()> {
    let mmap = MmapRegion::attach_min(path, HEADER_SIZE)?;
    mmap.check_owner()?;
    inspect_region(&mmap.region(), Some(mmap.file()))?;
    may_delete(path).map_err(|cause| shmhub::Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Whether this process may delete the file at `path`, by the rules
/// `unlink(2)` applies: write and search permission on its directory
/// (asked of the kernel, which knows about read-only file systems too),
/// and, in a sticky directory such as /dev/shm, owning the file or the
/// directory, or being root. The error is the one `unlink` would give.
fn may_delete(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let dir = directory_of(path);
    let dir_c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: faccessat only reads the NUL-terminated path, which lives
    // for the call.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            dir_c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let dir_meta = std::fs::metadata(&dir)?;
    let me = shmhub::sys::effective_uid();
    let sticky = dir_meta.mode() & 0o1000 != 0; // S_ISVTX
    if sticky && me != 0 && me != dir_meta.uid() && me != std::fs::symlink_metadata(path)?.uid() {
        return Err(std::io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}
