//! A read-only look at a segment: header, peers, rings and pools.
//!
//! The file is opened and mapped read-only, so nothing here can change it,
//! and it works on a segment other processes are using.
//!
//! shm[impl shm.inspect.read-only]

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::header::{self, HeaderInfo};
use crate::layout::{Direction, HEADER_SIZE, SegmentLayout};
use crate::liveness::{self, HolderStatus, HostStatus};
use crate::locks::{ByteLock, lock_byte};
use crate::mmap::{FileOwner, MmapRegion};
use crate::party::{IntoPeerId, PeerId, PeerState};
use crate::peer::{self, Peer, PeerEntry};
use crate::pool::{Pool, PoolUsage};
use crate::region::{Reading, Region};
use crate::ring::{RingState, RingView};
use crate::share::host_share;
use crate::sys;

/// One peer entry with its liveness and ring fill.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeerReport {
    /// The entry as stored.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub entry: PeerEntry,
    /// Whether its holder lives.
    pub holder: HolderStatus,
    /// Age of the holder's last heartbeat in milliseconds; `None` when
    /// heartbeats are off, when no process holds the entry (empty, reserved,
    /// left, or a scripted claim) or when it never beat.
    pub heartbeat_age_ms: Option<u64>,
    /// The guest-to-host ring.
    pub to_host: RingState,
    /// The host-to-guest ring.
    pub to_guest: RingState,
}

/// One slot pool's usage.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PoolReport {
    /// Whose pool: 0 for the host's, `N` for guest `N`'s.
    pub owner: u8,
    /// The same owner in words: "host" or "peer N" ([`crate::admin::party_name`]).
    pub owner_name: String,
    /// Bytes per slot.
    pub slot_size: u32,
    /// Counts of used and free slots.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub usage: PoolUsage,
}

/// A peer entry that cannot be read as one: its state is none the
/// protocol knows (`shm.peer.states`). Its rings are still read.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BadPeer {
    /// The guest the entry belongs to.
    pub peer_id: PeerId,
    /// The state word as stored.
    pub raw_state: u32,
    /// What is wrong with it.
    pub reason: String,
    /// Whether a process holds the entry's presence lock
    /// (`shm.peer.liveness`), the one sign of a holder that no write to
    /// the file can forge: such an entry counts as in use (`ls`, `gc`,
    /// `rm`). False for a segment with no file to lock; true when the
    /// lock cannot be tested.
    pub presence_locked: bool,
    /// The guest-to-host ring.
    pub to_host: RingState,
    /// The host-to-guest ring.
    pub to_guest: RingState,
}

impl BadPeer {
    /// Entry `p` of the segment in `region`, whose snapshot failed with
    /// `reason`: its stored state word, whether its presence lock is held
    /// (on `file`, if any) and its rings' indices, which are read as they
    /// are whatever the entry holds.
    pub(crate) fn read(
        region: &Region,
        layout: &SegmentLayout,
        file: Option<&std::fs::File>,
        p: PeerId,
        reason: String,
    ) -> Result<Self> {
        let ring = |direction| ring_state(region, layout, p, direction);
        Ok(BadPeer {
            peer_id: p,
            raw_state: Peer::new(region, layout, p).raw_state()?,
            reason,
            // A lock that cannot be tested counts as held: the entry is
            // then kept as in use rather than deleted under its holder.
            presence_locked: file.is_some_and(|f| {
                ByteLock::is_locked(f, lock_byte::guest_presence(p)).unwrap_or(true)
            }),
            to_host: ring(Direction::GuestToHost)?,
            to_guest: ring(Direction::HostToGuest)?,
        })
    }
}

/// Every peer entry of a segment, as
/// [`crate::admin::SegmentStatus::peer_table`] reads them: a guest that
/// writes garbage into its own state word hides only its own entry, never
/// the others.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeerTable {
    /// Every entry that could be read, in peer order.
    pub peers: Vec<PeerEntry>,
    /// The entries whose state word is none the protocol knows
    /// (`shm.peer.states`), in peer order; empty for a sound table.
    pub bad_peers: Vec<BadPeer>,
}

impl PeerTable {
    /// Every entry of the segment in `region`, read one by one; `file`
    /// (if any) is used to test the presence locks of bad entries.
    pub(crate) fn read(
        region: &Region,
        layout: &SegmentLayout,
        file: Option<&std::fs::File>,
    ) -> Result<Self> {
        let mut table = PeerTable::default();
        for p in layout.guests() {
            match Peer::new(region, layout, p).snapshot() {
                Ok(entry) => table.peers.push(entry),
                Err(Error::Corrupt(reason)) => table
                    .bad_peers
                    .push(BadPeer::read(region, layout, file, p, reason)?),
                Err(e) => return Err(e),
            }
        }
        Ok(table)
    }
}

/// Everything `inspect` shows.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentReport {
    /// The file.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::path::serialize_lossy")
    )]
    pub path: PathBuf,
    /// The header.
    pub header: HeaderInfo,
    /// Whether the host process lives.
    pub host: HostStatus,
    /// Every peer entry that could be read, in peer order: all of them
    /// unless `bad_peers` lists some ([`SegmentReport::peer`] finds one by
    /// id).
    pub peers: Vec<PeerReport>,
    /// The entries that could not be read (an unknown state), in peer
    /// order; empty for a sound segment.
    pub bad_peers: Vec<BadPeer>,
    /// Every pool (host first).
    pub pools: Vec<PoolReport>,
    /// Who owns the file and its mode (`None` for a region with no file).
    pub owner: Option<FileOwner>,
    /// How many of the host's slots one guest may hold now: the header's
    /// fixed share, or the fair share among the entries in use (each
    /// entry's `host_slots_held` says how many it holds); `None` when the
    /// fair share cannot be worked out (an entry that cannot be read).
    pub host_slot_share: Option<u32>,
}

impl SegmentReport {
    /// The entry of guest `peer_id`, unless it is missing from `peers`
    /// (out of range, or listed in `bad_peers`).
    pub fn peer(&self, peer_id: impl IntoPeerId) -> Option<&PeerReport> {
        let peer_id = peer_id.into_peer_id()?;
        self.peers.iter().find(|p| p.entry.peer_id == peer_id)
    }

    /// The report, if every entry could be read; else an error naming the
    /// first that could not. For callers that need every entry (one
    /// missing from `peers` would shift what they compare):
    /// `inspect_path(path).and_then(SegmentReport::require_all_entries)`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`](crate::Error::Corrupt), naming the entry and its
    /// state.
    pub fn require_all_entries(self) -> Result<Self> {
        match self.bad_peers.first() {
            Some(bad) => Err(peer::unknown_state(bad.peer_id, bad.raw_state)),
            None => Ok(self),
        }
    }
}

/// Opens `path` read-only and reports on it: header, every peer entry with
/// its holder's liveness and ring fill, every pool's usage. The file is
/// opened and mapped read-only, so nothing in it can change.
///
/// ```
/// use shmhub::{HolderStatus, SegmentConfig, ShmGuest, ShmHost};
/// use shmhub::admin::inspect_path;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("look.shm");
/// let host = ShmHost::create(&path, SegmentConfig::default())?;
/// let guest = ShmGuest::attach_path(&path)?;
///
/// let report = inspect_path(&path)?;
/// let entry = report.peer(guest.peer_id()).expect("an entry per guest");
/// assert_eq!(entry.holder, HolderStatus::Alive);
/// assert_eq!(report.pools[0].usage.used, 0);
/// # drop((guest, host));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// A file that is not a valid segment is an error naming what is wrong:
/// [`Error::NotASegment`](crate::Error::NotASegment),
/// [`Error::NotReady`](crate::Error::NotReady),
/// [`Error::VersionMismatch`](crate::Error::VersionMismatch),
/// [`Error::CorruptHeader`](crate::Error::CorruptHeader) (naming the field);
/// an entry with an unknown state is not an error but is reported in
/// [`SegmentReport::bad_peers`] ([`SegmentReport::require_all_entries`]
/// makes it one);
/// [`Error::Io`](crate::Error::Io), [`Error::NotAFile`](crate::Error::NotAFile),
/// [`Error::TooSmall`](crate::Error::TooSmall) or
/// [`Error::Symlink`](crate::Error::Symlink) for what is at the path.
pub fn inspect_path(path: &Path) -> Result<SegmentReport> {
    let mmap = MmapRegion::open_read_only(path, HEADER_SIZE)?;
    let report = inspect_region(&mmap.region(), Some(mmap.file()))?;
    Ok(SegmentReport {
        path: path.to_path_buf(),
        owner: Some(mmap.owner()),
        ..report
    })
}

/// Reports on a segment in `region`; `file` (if any) is used to test the
/// liveness locks.
pub fn inspect_region(region: &Region, file: Option<&std::fs::File>) -> Result<SegmentReport> {
    let header = header::read(region)?;
    let layout = header.layout;
    let now = sys::monotonic_ns();
    let host = liveness::judge_host(
        header.host_goodbye,
        header.host_pid,
        header.host_start_time,
        file,
    );
    let table = PeerTable::read(region, &layout, file)?;
    let bad_peers = table.bad_peers;
    let mut peers = Vec::with_capacity(table.peers.len());
    for entry in table.peers {
        let ring = |direction| ring_state(region, &layout, entry.peer_id, direction);
        peers.push(PeerReport {
            holder: liveness::judge_peer(&entry, file, layout.config.heartbeat_interval_ms, now),
            heartbeat_age_ms: (layout.config.heartbeat_interval_ms != 0
                && entry.state == PeerState::Attached
                && entry.held
                && entry.heartbeat_ns != 0)
                .then(|| now.saturating_sub(entry.heartbeat_ns) / 1_000_000),
            to_host: ring(Direction::GuestToHost)?,
            to_guest: ring(Direction::HostToGuest)?,
            entry,
        });
    }
    let mut pools = Vec::new();
    for owner in layout.parties() {
        pools.push(PoolReport {
            owner: owner.number(),
            owner_name: owner.to_string(),
            slot_size: layout.config.slot_size,
            usage: Pool::<Reading>::open(region, &layout, owner)?.usage(),
        });
    }
    // A bad entry makes the fair share unknowable; the fixed one stands.
    let host_slot_share = host_share(region, &layout, header.host_slots_per_guest).ok();
    Ok(SegmentReport {
        path: PathBuf::new(),
        header,
        host,
        peers,
        bad_peers,
        pools,
        owner: None,
        host_slot_share,
    })
}
/// The indices of guest `p`'s ring that carries messages `direction`.
fn ring_state(
    region: &Region,
    layout: &SegmentLayout,
    p: PeerId,
    direction: Direction,
) -> Result<RingState> {
    RingView::new(
        region,
        layout.ring(p, direction),
        layout.config.ring_capacity,
    )
    .state()
}
