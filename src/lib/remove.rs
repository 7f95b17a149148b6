//! Removing a segment: ask everyone to leave, wait, delete.
//!
//! shm[impl shm.file.remove]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::header;
use crate::layout::Direction;
use crate::layout::HEADER_SIZE;
use crate::liveness::{self, HolderStatus, HostStatus};
use crate::locks::{ByteLock, lock_byte};
use crate::mmap::MmapRegion;
use crate::party::PeerId;
use crate::peer::Peer;
use crate::ring::RingView;
use crate::sys;

/// How [`remove_segment`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct RemoveOptions {
    /// Remove a segment another user owns (see [`crate::OpenOptions`]):
    /// refused by default.
    pub allow_foreign_owner: bool,
    /// Delete even if live guests are still attached when the time is up,
    /// or if the header (past a valid magic) is damaged.
    pub force: bool,
    /// How long to wait for live guests and a live host to leave.
    pub timeout: Duration,
}

impl Default for RemoveOptions {
    /// Not forced, a 5 s wait, another user's segment refused.
    fn default() -> Self {
        RemoveOptions {
            allow_foreign_owner: false,
            force: false,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What [`remove_segment`] did.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RemoveReport {
    /// The file.
    pub path: PathBuf,
    /// Whether the file was deleted by the host that held it (as opposed
    /// to by this call).
    pub removed_by_host: bool,
    /// Live guests still attached when it was deleted (only with force).
    pub abandoned: Vec<PeerId>,
    /// How long it waited.
    pub waited_ms: u64,
}

/// Live holders of a segment: guests whose process runs, and the host if
/// its process runs. An entry whose state word is none the protocol knows
/// is judged by its presence lock alone, which no write to the file can
/// forge: held, it is a live guest; free, nobody is there to wait for.
fn live_holders(region: &crate::Region, file: &std::fs::File) -> Result<(Vec<PeerId>, bool)> {
    let h = header::read(region)?;
    let layout = h.layout;
    let now = sys::monotonic_ns();
    let mut guests = Vec::new();
    for p in layout.guests() {
        let live = match Peer::new(region, &layout, p).snapshot() {
            Ok(entry) => matches!(
                liveness::judge_peer(&entry, Some(file), layout.config.heartbeat_interval_ms, now),
                HolderStatus::Alive | HolderStatus::Stale
            ),
            Err(Error::Corrupt(_)) => {
                ByteLock::is_locked(file, lock_byte::guest_presence(p)).unwrap_or(true)
            }
            Err(e) => return Err(e),
        };
        if live {
            guests.push(p);
        }
    }
    let host_alive = ByteLock::is_locked(file, lock_byte::HOST_PRESENCE).unwrap_or(false)
        && liveness::judge_host(false, h.host_pid, h.host_start_time, Some(file))
            == HostStatus::Alive;
    Ok((guests, host_alive))
}

/// Removes the segment at `path`: sets the host goodbye flag, wakes every
/// sleeper, waits up to the timeout for live guests (and a live host) to
/// leave, then deletes the file. `on_wait` is called with the live guests
/// each time it waits.
///
/// ```
/// use shmhub::{SegmentConfig, ShmHost};
/// use shmhub::admin::{RemoveOptions, remove_segment};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("gone.shm");
/// ShmHost::create(&path, SegmentConfig::default())?.persist()?;
///
/// let options = RemoveOptions { timeout: Duration::from_secs(1), ..RemoveOptions::default() };
/// let report = remove_segment(&path, options, &mut |_| {})?;
/// assert!(!path.exists() && report.abandoned.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// Refuses, changing nothing: a symlink ([`Error::Symlink`]), a file that
/// is not a segment even with force ([`Error::NotASegment`],
/// [`Error::NotReady`], [`Error::TooSmall`], ...), a damaged header without
/// force ([`Error::CorruptHeader`]), and, without force, a segment whose
/// live guests or host did not leave in time ([`Error::StillAttached`], naming them).
pub fn remove_segment(
    path: &Path,
    options: RemoveOptions,
    on_wait: &mut dyn FnMut(&[PeerId]),
) -> Result<RemoveReport> {
    let mmap = MmapRegion::attach_min(path, HEADER_SIZE)?;
    if !options.allow_foreign_owner {
        mmap.check_owner()?;
    }
    let region = mmap.region();
    let start = Instant::now();
    let info = match header::read(&region) {
        Ok(info) => Some(info),
        Err(e @ (Error::NotASegment { .. } | Error::NotReady | Error::Region(_))) => return Err(e),
        Err(_) if options.force => None,
        Err(e) => return Err(e),
    };
    let mut report = RemoveReport {
        path: path.to_path_buf(),
        removed_by_host: false,
        abandoned: Vec::new(),
        waited_ms: 0,
    };
    if let Some(info) = info {
        // Read every peer entry before changing anything: a segment whose
        // peer table cannot be judged is refused untouched.
        live_holders(&region, mmap.file())?;
        let was_goodbye = info.host_goodbye;
        region.store_u32(header::field::HOST_GOODBYE, 1, Ordering::Release)?;
        wake_everyone(&region, &info.layout)?;
        let waited = wait_for_leavers(&region, &mmap, options, start, &mut report, on_wait);
        match waited {
            Ok(true) => {
                report.removed_by_host = true;
                report.waited_ms = start.elapsed().as_millis() as u64;
                return Ok(report);
            }
            Ok(false) => {}
            Err(e) => {
                // Refused: the segment is left as it was found.
                if !was_goodbye {
                    region.store_u32(header::field::HOST_GOODBYE, 0, Ordering::Release)?;
                }
                return Err(e);
            }
        }
    }
    match mmap.check_unchanged() {
        Ok(()) | Err(Error::Truncated { .. }) => {}
        // The host deleted it while we were looking.
        Err(Error::Removed { .. }) => {
            report.removed_by_host = true;
            report.waited_ms = start.elapsed().as_millis() as u64;
            return Ok(report);
        }
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.removed_by_host = true,
        Err(cause) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                cause,
            });
        }
    }
    report.waited_ms = start.elapsed().as_millis() as u64;
    Ok(report)
}

/// Removes the segment at `path` only if nobody can use it any more: no
/// live host and no live (or stale) guest. Unlike [`remove_segment`] it
/// asks nobody to leave: a segment with a live holder is refused before
/// anything in it is changed. For collecting the segments that crashes left
/// behind.
///
/// # Errors
///
/// [`Error::StillAttached`] (nothing changed) when a live holder is there;
/// the errors of [`remove_segment`] for what is not a segment.
pub fn remove_unused_segment(path: &Path) -> Result<RemoveReport> {
    let mmap = MmapRegion::attach_min(path, HEADER_SIZE)?;
    mmap.check_owner()?;
    let region = mmap.region();
    let info = header::read(&region)?;
    let refuse = |(peers, host): (Vec<PeerId>, bool)| -> Result<()> {
        if host || !peers.is_empty() {
            return Err(Error::StillAttached {
                waited: Duration::ZERO,
                host,
                peers,
            });
        }
        Ok(())
    };
    refuse(live_holders(&region, mmap.file())?)?;
    // A guest attaching at this very moment sees the host gone, and one
    // that attached between the look above and this flag is caught by the
    // look below; either way the file is deleted only with nobody in it.
    let was_goodbye = info.host_goodbye;
    region.store_u32(header::field::HOST_GOODBYE, 1, Ordering::Release)?;
    // A segment this call keeps is left as it found it: the flag goes
    // back if a holder came, or if the file cannot be deleted after all
    // (a sticky directory that lets only its owner delete it, say).
    let take_back = || {
        if !was_goodbye {
            region.store_u32(header::field::HOST_GOODBYE, 0, Ordering::Release)?;
        }
        Ok::<(), Error>(())
    };
    if let Err(e) = refuse(live_holders(&region, mmap.file())?) {
        take_back()?;
        return Err(e);
    }
    let removed_by_host = match std::fs::remove_file(path) {
        Ok(()) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(cause) => {
            take_back()?;
            return Err(Error::Io {
                path: path.to_path_buf(),
                cause,
            });
        }
    };
    Ok(RemoveReport {
        path: path.to_path_buf(),
        removed_by_host,
        abandoned: Vec::new(),
        waited_ms: 0,
    })
}

/// Waits until no live guest and no live host remain (or, with force, the
/// time is up). Returns true if the host deleted the file meanwhile.
fn wait_for_leavers(
    region: &crate::Region,
    mmap: &MmapRegion,
    options: RemoveOptions,
    start: Instant,
    report: &mut RemoveReport,
    on_wait: &mut dyn FnMut(&[PeerId]),
) -> Result<bool> {
    let deadline = start + options.timeout;
    loop {
        if matches!(
            mmap.check_unchanged(),
            Err(Error::Removed { .. } | Error::Replaced { .. })
        ) {
            return Ok(true);
        }
        let (guests, host_alive) = live_holders(region, mmap.file())?;
        if guests.is_empty() && !host_alive {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            if options.force {
                report.abandoned = guests;
                return Ok(false);
            }
            return Err(Error::StillAttached {
                waited: options.timeout,
                host: host_alive,
                peers: guests,
            });
        }
        on_wait(&guests);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wakes every sleeper (guests on their rings, the host on its doorbell) so
/// that it notices the goodbye flag. Nothing but the flag is written: a
/// wake does not need the word to change.
fn wake_everyone(region: &crate::Region, layout: &crate::SegmentLayout) -> Result<()> {
    for p in layout.guests() {
        for direction in [Direction::GuestToHost, Direction::HostToGuest] {
            RingView::new(
                region,
                layout.ring(p, direction),
                layout.config.ring_capacity,
            )
            .wake_all()?;
        }
    }
    sys::futex_wake_all(region.atomic_u32(header::field::HOST_DOORBELL)?);
    Ok(())
}
