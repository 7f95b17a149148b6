//! Telling a live holder from a dead one.
//!
//! A process that holds a role on a file-backed segment keeps an advisory
//! lock for it; the kernel drops the lock when the process dies, however it
//! dies, so the lock is the authority. Where there is no lock (heap
//! segments), the recorded pid and its start time are checked instead.
//!
//! shm[impl shm.peer.liveness]

use std::fs::File;

use crate::locks::{ByteLock, lock_byte};
use crate::party::PeerState;
use crate::peer::PeerEntry;
use crate::sys::{self, Liveness};

/// Who holds a peer entry, and whether they still live.
///
/// It prints ([`Display`](std::fmt::Display)) as `no process`, `scripted`,
/// `alive`, `dead` or `stale`, and serializes as the same words in snake
/// case (`no_process`, `scripted`, ...), so that a table and a JSON
/// document say the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HolderStatus {
    /// Nobody holds the entry (empty, reserved or left): `no process`.
    NoProcess,
    /// Claimed for scripted use: it belongs to no process and is never
    /// reclaimed as dead, only released explicitly. Prints as `scripted`.
    Scripted,
    /// The holding process runs (and beats, when heartbeats are on).
    Alive,
    /// The holding process is gone.
    Dead,
    /// The holding process exists but its heartbeat is older than three
    /// intervals (at least one second).
    Stale,
}

impl std::fmt::Display for HolderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HolderStatus::NoProcess => "no process",
            HolderStatus::Scripted => "scripted",
            HolderStatus::Alive => "alive",
            HolderStatus::Dead => "dead",
            HolderStatus::Stale => "stale",
        })
    }
}

/// How old a heartbeat may be before its holder counts as stale.
pub fn stale_after_ns(heartbeat_interval_ms: u32) -> u64 {
    (u64::from(heartbeat_interval_ms) * 3).max(1000) * 1_000_000
}

fn lock_says_alive(file: Option<&File>, byte: u64) -> Option<bool> {
    file.and_then(|f| ByteLock::is_locked(f, byte).ok())
}

/// Judges the holder of `entry`. `file` is the segment file, if any (it
/// may be opened read-only); `now_ns` is `CLOCK_MONOTONIC`.
pub fn judge_peer(
    entry: &PeerEntry,
    file: Option<&File>,
    heartbeat_interval_ms: u32,
    now_ns: u64,
) -> HolderStatus {
    // A quarantined entry keeps the record of the holder it had: it is
    // freed once that holder is gone.
    if !matches!(entry.state, PeerState::Attached | PeerState::Quarantined) {
        return HolderStatus::NoProcess;
    }
    // A quarantined guest may have written its own holder record (a dead
    // pid, no flags) to look gone and have its entry freed under it: its
    // presence lock, which no write to the file can forge, is asked
    // whatever the flags say, and a live pid counts too.
    if entry.state == PeerState::Quarantined
        && (lock_says_alive(file, lock_byte::guest_presence(entry.peer_id)) == Some(true)
            || entry.pid != 0
                && sys::process_liveness(entry.pid, entry.start_time) == Liveness::Alive)
    {
        return HolderStatus::Alive;
    }
    if !entry.held {
        return HolderStatus::Scripted;
    }
    let by_lock = if entry.locked {
        lock_says_alive(file, lock_byte::guest_presence(entry.peer_id))
    } else {
        None
    };
    let alive = by_lock
        .unwrap_or_else(|| sys::process_liveness(entry.pid, entry.start_time) == Liveness::Alive);
    if !alive {
        return HolderStatus::Dead;
    }
    if heartbeat_interval_ms > 0
        && now_ns.saturating_sub(entry.heartbeat_ns) > stale_after_ns(heartbeat_interval_ms)
    {
        return HolderStatus::Stale;
    }
    HolderStatus::Alive
}

/// Whether the segment's host process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HostStatus {
    /// No host process is recorded (made by a command that exited, for
    /// scripted use).
    NoProcess,
    /// The host process runs.
    Alive,
    /// The recorded host process is gone without saying goodbye.
    Dead,
    /// The host has said goodbye.
    Gone,
}

impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HostStatus::NoProcess => "no process",
            HostStatus::Alive => "alive",
            HostStatus::Dead => "dead",
            HostStatus::Gone => "gone (goodbye)",
        })
    }
}

/// Judges the host from its header fields.
pub fn judge_host(goodbye: bool, pid: u32, start_time: u64, file: Option<&File>) -> HostStatus {
    if goodbye {
        return HostStatus::Gone;
    }
    if pid == 0 {
        return HostStatus::NoProcess;
    }
    let alive = lock_says_alive(file, lock_byte::HOST_PRESENCE)
        .unwrap_or_else(|| sys::process_liveness(pid, start_time) == Liveness::Alive);
    if alive {
        HostStatus::Alive
    } else {
        HostStatus::Dead
    }
}
