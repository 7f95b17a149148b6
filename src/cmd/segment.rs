//! The segment a command works on: its path, whom to trust with it, what
//! is already at a path where one is to be created, and the errors of the
//! read-only views (`inspect`, `peek`, `events`) of a damaged one.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use shmhub::BadPeer;

use super::error::{SegmentError, seg_err};

/// A resolved SEGMENT argument.
pub fn segment_path(arg: &str) -> anyhow::Result<PathBuf> {
    Ok(shmhub::resolve_segment(arg)?)
}

/// The flag that says whom a command trusts, shared by every command that
/// opens a segment to use it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Trust {
    /// Open the segment even if another user owns it (not root, nor a
    /// 0660 file of one of your groups): for someone who really means it.
    #[arg(long)]
    pub allow_foreign_owner: bool,
}

impl Trust {
    /// How to open the segment.
    pub fn opener(&self) -> shmhub::OpenOptions {
        shmhub::OpenOptions::new().allow_foreign_owner(self.allow_foreign_owner)
    }
}

/// What is already at a path where a segment was to be created.
pub struct Existing {
    /// In words, following "PATH: already exists": `: a segment whose
    /// host (pid 7) is alive`, ` and is not a regular file`, ...
    pub what: String,
    /// The `shmhub rm` that removes it, if it is a segment (one that
    /// `create --force` replaces); `None`: shmhub never deletes it.
    pub rm: Option<&'static str>,
}

/// Looks at what is at `path` (read-only, never blocking): a segment, and
/// whether its host lives; a damaged segment; or something that is not a
/// segment at all.
pub fn existing(path: &Path) -> Existing {
    use shmhub::{Error as E, HostStatus};
    let report = shmhub::inspect_path(path).and_then(shmhub::SegmentReport::require_all_entries);
    let (what, rm) = match report {
        Ok(report) => {
            let pid = report.header.host_pid;
            let host = match report.host {
                HostStatus::Alive => format!("whose host (pid {pid}) is alive"),
                HostStatus::Dead => format!("whose host (pid {pid}) is dead"),
                HostStatus::Gone => "whose host has left (goodbye)".to_string(),
                HostStatus::NoProcess => "with no host process (a plain create)".to_string(),
            };
            (format!(": a segment {host}"), Some("rm"))
        }
        Err(e @ (E::CorruptHeader { .. } | E::Corrupt(_) | E::VersionMismatch { .. })) => {
            (format!(": a damaged segment ({e})"), Some("rm --force"))
        }
        Err(E::Symlink { .. }) => (" and is a symbolic link".to_string(), None),
        Err(E::NotAFile { .. }) => (" and is not a regular file".to_string(), None),
        Err(E::TooSmall { len, .. }) => (
            format!(" and is not a shmhub segment (a file of {len} bytes)"),
            None,
        ),
        Err(e @ (E::NotASegment { .. } | E::NotReady)) => {
            (format!(" and is not a shmhub segment ({e})"), None)
        }
        Err(E::Io { cause, .. }) => (format!(" ({cause})"), None),
        Err(e) => (format!(" ({e})"), None),
    };
    Existing { what, rm }
}

/// The error for a path that a new segment cannot be created at because
/// something is already there: what that is (see [`existing`]), then what
/// to do: for `create`, `--force` and `rm` where they apply; for the
/// commands that make a segment of their own, another name.
pub fn already_exists(path: &Path, create: bool) -> anyhow::Error {
    let shown = path.display();
    let Existing { what, rm } = existing(path);
    let advice = match (create, rm) {
        (true, Some(rm)) => format!(
            "--force replaces it (asking its host and guests to leave), `shmhub {rm} {shown}` removes it"
        ),
        (true, None) => "it is never replaced, not even with --force".to_string(),
        (false, _) => "choose another --segment".to_string(),
    };
    anyhow!("{shown}: already exists{what}; {advice}")
}

/// Inspects the segment, requiring every entry to be readable: looks are
/// compared entry by entry, so an entry missing from one would shift the
/// comparison.
pub fn inspect_every_entry(path: &Path) -> shmhub::Result<shmhub::SegmentReport> {
    shmhub::inspect_path(path).and_then(shmhub::SegmentReport::require_all_entries)
}

/// Like [`seg_err`], for a read-only view refused by a damaged segment:
/// says that `inspect --raw` still shows it.
pub fn view_err(path: &Path, e: shmhub::Error) -> SegmentError {
    use shmhub::Error as E;
    let damaged = matches!(
        e,
        E::CorruptHeader { .. } | E::Corrupt(_) | E::VersionMismatch { .. }
    );
    let e = seg_err(path, e);
    if damaged {
        e.followed_by(format_args!(
            "; `shmhub inspect {} --raw` shows it field by field",
            path.display()
        ))
    } else {
        e
    }
}

/// The error that ends a look at a segment with entries that could not be
/// read, after what could be read was printed: exit 1.
pub fn bad_entries(path: &Path, bad: &[BadPeer]) -> anyhow::Result<()> {
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let others = match bad.len() {
        1 => String::new(),
        n => format!(" and {} other entries", n - 1),
    };
    Err(anyhow::anyhow!(
        "{}: corrupt segment: {}{others}; the entries that could be read are shown, \
         `shmhub inspect {} --raw` shows every field",
        path.display(),
        first.reason,
        path.display()
    ))
}
