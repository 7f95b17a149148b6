//! Every segment in a directory, judged at a glance (`shmhub ls`), and the
//! removal of those nobody can use any more (`shmhub gc`).
//!
//! Files are only ever opened read-only to be listed; a file that is not a
//! regular file (a FIFO, a device, a socket, a directory, a symbolic link)
//! is never opened at all, so nothing can block or change.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::inspect::{SegmentReport, inspect_path};
use crate::layout::HEADER_SIZE;
use crate::liveness::{HolderStatus, HostStatus};
use crate::mmap::FileOwner;
use crate::party::PeerState;
use crate::remove::{RemoveReport, remove_unused_segment};

/// How many guest entries of a segment are in each condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GuestCounts {
    /// Held by a running process.
    pub live: u32,
    /// Held by a process that is gone.
    pub dead: u32,
    /// Held by a process that runs but has stopped beating.
    pub stale: u32,
    /// Claimed for scripted use (no process).
    pub scripted: u32,
    /// Set aside by the host for a guest about to start.
    pub reserved: u32,
    /// Left by its guest with messages the host has not read yet; free
    /// again once they are read (`shm.peer.detach`).
    pub goodbye: u32,
    /// Cut off by the host for breaking the protocol, or evicted
    /// (`shm.peer.quarantine`), whatever its holder.
    pub quarantined: u32,
    /// Whose state word is none the protocol knows (`shm.peer.states`),
    /// whatever holds them: [`crate::admin::SegmentReport::bad_peers`].
    pub bad: u32,
}

/// One segment as `ls` shows it.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentSummary {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was created, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// Whether its host lives.
    pub host: HostStatus,
    /// The host's pid (0: none recorded).
    pub host_pid: u32,
    /// Its guest entries by condition.
    pub guests: GuestCounts,
    /// Messages queued in all its rings.
    pub queued: u64,
    /// Slots in use, over all pools.
    pub slots_used: u64,
    /// Slots in all pools.
    pub slots_total: u64,
    /// Who owns the file, and its mode.
    pub owner: Option<FileOwner>,
    /// How many of the `bad` entries have their presence lock held by a
    /// live process: in use, whatever their state word says.
    pub bad_in_use: u32,
}

impl SegmentSummary {
    /// Sums up an inspection.
    pub fn of(report: &SegmentReport) -> Self {
        let mut guests = GuestCounts::default();
        let mut queued = 0u64;
        for peer in &report.peers {
            match (peer.entry.state, peer.holder) {
                (PeerState::Reserved, _) => guests.reserved += 1,
                (PeerState::Goodbye, _) => guests.goodbye += 1,
                (PeerState::Quarantined, _) => guests.quarantined += 1,
                (_, HolderStatus::Alive) => guests.live += 1,
                (_, HolderStatus::Dead) => guests.dead += 1,
                (_, HolderStatus::Stale) => guests.stale += 1,
                (_, HolderStatus::Scripted) => guests.scripted += 1,
                (_, HolderStatus::NoProcess) => {}
            }
            for ring in [peer.to_host, peer.to_guest] {
                queued += u64::from(ring.len().unwrap_or(0));
            }
        }
        for bad in &report.bad_peers {
            guests.bad += 1;
            for ring in [bad.to_host, bad.to_guest] {
                queued += u64::from(ring.len().unwrap_or(0));
            }
        }
        SegmentSummary {
            path: report.path.clone(),
            size: report.header.layout.total_size,
            created_unix_ns: report.header.created_unix_ns,
            host: report.host,
            host_pid: report.header.host_pid,
            guests,
            queued,
            slots_used: report.pools.iter().map(|p| u64::from(p.usage.used)).sum(),
            slots_total: report.pools.iter().map(|p| u64::from(p.usage.slots)).sum(),
            owner: report.owner,
            bad_in_use: report
                .bad_peers
                .iter()
                .filter(|b| b.presence_locked)
                .count() as u32,
        }
    }

    /// Whether nobody can use the segment any more: its host is dead,
    /// absent or gone, no guest is live (or stale: alive but silent), and
    /// no entry whose state word is bad has a live process holding it.
    /// Such a segment is what `gc` removes.
    pub fn is_orphaned(&self) -> bool {
        self.host != HostStatus::Alive
            && self.guests.live == 0
            && self.guests.stale == 0
            && self.bad_in_use == 0
    }
}

/// The error of a creation that found `path` taken: what is there, judged
/// as `ls` and `gc` judge it, and how to remove it first. A stale segment
/// (nobody alive in it, as a crash leaves one) is the common case.
pub(crate) fn already_exists(path: &Path) -> Error {
    let rm = |force: &str| format!("`shmhub rm {force}{}`", path.display());
    let found = match crate::inspect::inspect_path(path) {
        Ok(report) => {
            let summary = SegmentSummary::of(&report);
            let host = match (summary.host, summary.host_pid) {
                (HostStatus::Alive, pid) => format!("its host, pid {pid}, is alive"),
                (HostStatus::Dead, pid) => format!("its host, pid {pid}, is dead"),
                (HostStatus::Gone, _) => "its host has left".to_string(),
                (HostStatus::NoProcess, _) => "it has no host process".to_string(),
            };
            let live = match summary.guests.live + summary.guests.stale {
                0 => String::new(),
                1 => ", 1 live guest".to_string(),
                n => format!(", {n} live guests"),
            };
            if summary.is_orphaned() {
                format!(
                    "a stale shmhub segment ({host} and no guest lives): remove it with {} \
                     (or `shmhub::admin::remove_unused_segment`), then create it again",
                    rm("")
                )
            } else {
                format!(
                    "a shmhub segment in use ({host}{live}): {} asks everyone \
                     to leave and removes it (or `shmhub::admin::remove_segment`)",
                    rm("")
                )
            }
        }
        Err(Error::NotReady) => "a shmhub segment that another process is creating, \
             or whose creation never finished"
            .to_string(),
        Err(Error::TooSmall { len, .. }) => format!("not a shmhub segment (a file of {len} bytes)"),
        Err(Error::NotASegment { .. }) => "not a shmhub segment".to_string(),
        Err(Error::NotAFile { .. }) => "not a regular file".to_string(),
        Err(Error::Symlink { .. }) => "a symbolic link".to_string(),
        Err(e @ (Error::CorruptHeader { .. } | Error::VersionMismatch { .. })) => {
            format!(
                "a damaged shmhub segment ({e}): {} removes it",
                rm("--force ")
            )
        }
        Err(Error::Io { cause, .. }) => format!("a file that cannot be read ({cause})"),
        Err(e) => format!("a file that cannot be read as a segment ({e})"),
    };
    Error::AlreadyExists {
        path: path.to_path_buf(),
        found,
    }
}

/// A file of the directory that is not listed, and why.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Unlisted {
    /// The file.
    pub path: PathBuf,
    /// Why it is not listed ("not a regular file", "not a shmhub
    /// segment", "segment is not ready", a permission error, ...).
    pub reason: String,
}

/// The segments of a directory, and the files that are not listed.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Listing {
    /// Every segment, by path.
    pub segments: Vec<SegmentSummary>,
    /// Every other entry, by path.
    pub unlisted: Vec<Unlisted>,
}

/// Lists the segments in `dir`, opening each regular file read-only and
/// changing nothing.
///
/// ```
/// use shmhub::{SegmentConfig, ShmHost};
/// use shmhub::admin::list_segments;
///
/// let dir = tempfile::tempdir()?;
/// let _host = ShmHost::create(dir.path().join("a.shm"), SegmentConfig::default())?;
/// std::fs::write(dir.path().join("notes.txt"), "not a segment")?;
/// let listing = list_segments(dir.path())?;
/// assert_eq!(listing.segments.len(), 1);
/// assert_eq!(listing.unlisted.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// [`Error::Io`] if the directory cannot be read; a file that cannot be
/// judged is skipped, not an error.
pub fn list_segments(dir: &Path) -> Result<Listing> {
    let io = |cause| Error::Io {
        path: dir.to_path_buf(),
        cause,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(io)?;
    paths.sort();
    let mut listing = Listing::default();
    for path in paths {
        let skip = |reason: String| Unlisted {
            path: path.clone(),
            reason,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Gone since the directory was read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                listing.unlisted.push(skip(e.to_string()));
                continue;
            }
        };
        let kind = meta.file_type();
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            listing.unlisted.push(skip(what.to_string()));
            continue;
        }
        if meta.len() < HEADER_SIZE {
            listing
                .unlisted
                .push(skip("smaller than a segment header".to_string()));
            continue;
        }
        // An entry that cannot be read hides only itself: the segment is
        // listed, that entry counted as bad (`GuestCounts::bad`).
        match inspect_path(&path) {
            Ok(report) => listing.segments.push(SegmentSummary::of(&report)),
            Err(Error::Removed { .. }) => {}
            Err(e) => listing.unlisted.push(skip(e.to_string())),
        }
    }
    Ok(listing)
}

/// What [`collect_garbage`] did with one orphaned segment.
#[derive(Debug)]
pub enum Collected {
    /// Removed (or, with a dry run, would be).
    Removed(RemoveReport),
    /// Kept: a live holder appeared, or it could not be removed.
    Kept {
        /// The segment.
        path: PathBuf,
        /// Why.
        error: Error,
    },
}

/// Removes the orphaned segments of `listing` (see
/// [`SegmentSummary::is_orphaned`]), each only if, looked at again, nobody
/// can use it ([`crate::admin::remove_unused_segment`]); with `dry_run`, removes
/// nothing and reports what it would remove.
pub fn collect_garbage(listing: &Listing, dry_run: bool) -> Vec<Collected> {
    listing
        .segments
        .iter()
        .filter(|s| s.is_orphaned())
        .map(|s| {
            if dry_run {
                return Collected::Removed(RemoveReport {
                    path: s.path.clone(),
                    removed_by_host: false,
                    abandoned: Vec::new(),
                    waited_ms: 0,
                });
            }
            match remove_unused_segment(&s.path) {
                Ok(report) => Collected::Removed(report),
                Err(error) => Collected::Kept {
                    path: s.path.clone(),
                    error,
                },
            }
        })
        .collect()
}
