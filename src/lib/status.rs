//! What a segment says about itself, read without changing anything: its
//! header, its host's goodbye and liveness, its peer entries and their
//! holders. Both handles lend this view ([`crate::ShmHost::status`],
//! [`crate::ShmGuest::status`]), so that they keep to their life cycle
//! and their ends.

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::header::HeaderInfo;
use crate::inspect::PeerTable;
use crate::liveness::{self, HolderStatus, HostStatus};
use crate::party::IntoPeerId;
use crate::peer::PeerEntry;
use crate::segment::Segment;

/// The status of a segment as a host or guest sees it: its header, the
/// host's goodbye and liveness, and the peer entries with their holders.
/// Each call reads the segment afresh, and none changes it.
///
/// [`crate::ShmHost::status`] and [`crate::ShmGuest::status`] lend one,
/// for as long as the handle is borrowed.
///
/// ```
/// use shmhub::{HostStatus, PeerState, SegmentConfig, ShmGuest, ShmHost};
///
/// let host = ShmHost::create_heap(SegmentConfig::default())?;
/// let guest = ShmGuest::attach(host.region())?;
/// let status = host.status();
/// assert!(!status.goodbye_requested()?);
/// assert_eq!(status.peer(guest.peer_id())?.state, PeerState::Attached);
/// assert_eq!(guest.status().host_status()?, HostStatus::Alive);
/// # Ok::<(), shmhub::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SegmentStatus<'a> {
    seg: &'a Segment,
}

impl<'a> SegmentStatus<'a> {
    /// The status of `seg`.
    pub(crate) fn new(seg: &'a Segment) -> Self {
        SegmentStatus { seg }
    }

    /// The header as it is now.
    pub fn header(&self) -> Result<HeaderInfo> {
        self.seg.header()
    }

    /// Whether the goodbye flag is set: another process (such as `rm`) has
    /// asked the host to leave. One load, unlike [`SegmentStatus::header`].
    pub fn goodbye_requested(&self) -> Result<bool> {
        self.seg.host_goodbye()
    }

    /// Whether the host is there, gone, or dead.
    pub fn host_status(&self) -> Result<HostStatus> {
        let h = self.seg.header()?;
        Ok(liveness::judge_host(
            h.host_goodbye,
            h.host_pid,
            h.host_start_time,
            self.seg.file(),
        ))
    }

    /// A snapshot of every peer entry that can be read, in peer order. An
    /// entry whose state word is none the protocol knows (a guest's stray
    /// or hostile write, `shm.peer.states`) is left out rather than
    /// failing the whole look: [`SegmentStatus::peer_table`] lists it
    /// apart.
    ///
    /// # Errors
    ///
    /// [`Error::Region`] if the peer table lies outside the mapping (a
    /// segment that shrank under it).
    pub fn peers(&self) -> Result<Vec<PeerEntry>> {
        Ok(self.peer_table()?.peers)
    }

    /// Every peer entry, split as [`crate::admin::SegmentReport`] splits
    /// them: those that can be read, and those whose state word is none
    /// the protocol knows, each with its stored word, whether a process
    /// holds its presence lock, and its rings' indices. Nothing is
    /// changed: a bad entry is cut off only by a receive or a reclaim
    /// that meets it (`shm.peer.quarantine`).
    ///
    /// ```
    /// use shmhub::{SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let guest = ShmGuest::attach(host.region())?;
    /// let entry = host.layout().peer_entry(guest.peer_id());
    /// // A stray write of a state the protocol does not know.
    /// host.region().store_u32(entry, 77, std::sync::atomic::Ordering::Release)?;
    /// let table = host.status().peer_table()?;
    /// assert_eq!(table.bad_peers[0].peer_id, guest.peer_id());
    /// assert_eq!(table.bad_peers[0].raw_state, 77);
    /// assert!(table.peers.iter().all(|p| p.peer_id != guest.peer_id()));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SegmentStatus::peers`].
    pub fn peer_table(&self) -> Result<PeerTable> {
        PeerTable::read(&self.seg.region, &self.seg.layout, self.seg.file())
    }

    /// A snapshot of guest `peer_id`'s entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`] for an id the segment has no entry for, or
    /// a corrupt-segment error for an entry that cannot be read.
    pub fn peer(&self, peer_id: impl IntoPeerId) -> Result<PeerEntry> {
        let p = self.seg.guest_id(peer_id)?;
        self.seg.peer(p).snapshot()
    }

    /// Whether the holder of guest `peer_id`'s entry lives, judged as
    /// [`crate::ShmHost::reclaim_dead`] judges it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`], or a corrupt-segment error for an entry
    /// that cannot be read.
    pub fn holder_status(&self, peer_id: impl IntoPeerId) -> Result<HolderStatus> {
        let p = self.seg.guest_id(peer_id)?;
        Ok(self.seg.judge(&self.seg.peer(p).snapshot()?))
    }
}
