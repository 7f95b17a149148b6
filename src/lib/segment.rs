//! What the host and the guests share: the mapped segment and its
//! validated layout, from which they take views of entries, rings and
//! pools, and their sending and receiving ends.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::consumer::Consumer;
use crate::cut_off::CutOff;
use crate::error::{Error, Result};
use crate::header::{self, HeaderInfo};
use crate::layout::{Direction, HEADER_SIZE, SegmentLayout};
use crate::liveness::{self, HolderStatus};
use crate::locks::{ByteLock, LockFile, Role, lock_byte, lock_byte::End};
use crate::mmap::{MmapRegion, OwnerCheck};
use crate::party::{IntoPeerId, Party, PeerId, PeerState, QuarantineReason};
use crate::peer::{Peer, PeerEntry, StateWord};
use crate::pool::Pool;
use crate::producer::Producer;
use crate::region::{HeapRegion, Region, RegionError};
use crate::ring::RingView;
use crate::ring_end::RingEnd;
use crate::sys;
use crate::wait::Deadline;
use crate::zerocopy::Leases;

/// [`Segment::try_take`] could not take a lock: another open file holds it
/// (or the lock could not be asked about, which counts the same).
#[derive(Debug)]
pub(crate) struct HeldElsewhere;

/// The memory a host or guest owns; the mapping lives as long as it does.
#[derive(Debug)]
pub(crate) enum ShmBacking {
    /// Heap memory (one process; tests).
    Heap(HeapRegion),
    /// A shared file mapping.
    Mmap(MmapRegion),
    /// A region supplied by the caller (kept alive by its reference count).
    Region(Region),
}

impl ShmBacking {
    /// The view of the whole backing.
    pub fn region(&self) -> Region {
        match self {
            ShmBacking::Heap(h) => h.region(),
            ShmBacking::Mmap(m) => m.region(),
            ShmBacking::Region(r) => r.clone(),
        }
    }

    /// The file mapping, if this backing is one.
    pub fn mmap(&self) -> Option<&MmapRegion> {
        match self {
            ShmBacking::Mmap(m) => Some(m),
            _ => None,
        }
    }
}

/// A mapped, validated segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) backing: ShmBacking,
    pub(crate) region: Region,
    pub(crate) layout: SegmentLayout,
    /// Slots this process has lent out from this segment.
    pub(crate) leases: Arc<Leases>,
    /// The header's host-slot share per guest (0: the fair share).
    pub(crate) host_slots_per_guest: u32,
    /// The guests this process, as the host, has cut off.
    pub(crate) cut_off: CutOff,
    /// What this process, as a guest, found the host doing against the
    /// protocol (`shm.peer.quarantine`): once set, the guest stops.
    pub(crate) host_broke: std::sync::OnceLock<String>,
}

impl Segment {
    /// Validates the header of `backing` and wraps it.
    pub(crate) fn open(backing: ShmBacking) -> Result<Self> {
        let region = backing.region();
        let info = header::read(&region)?;
        if !region.is_writable() {
            return Err(Error::Region(RegionError::ReadOnly));
        }
        Ok(Segment {
            backing,
            leases: Arc::new(Leases::new(region.clone(), info.layout)),
            region,
            layout: info.layout,
            host_slots_per_guest: info.host_slots_per_guest,
            cut_off: CutOff::default(),
            host_broke: std::sync::OnceLock::new(),
        })
    }

    /// Maps the file at `path` read/write and validates it; refuses a file
    /// another user owns unless `owner` says to skip that check.
    pub(crate) fn open_path(path: &Path, owner: OwnerCheck) -> Result<Self> {
        let mmap = MmapRegion::attach_min(path, HEADER_SIZE)?;
        if owner == OwnerCheck::Required {
            mmap.check_owner()?;
        }
        Self::open(ShmBacking::Mmap(mmap))
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.backing.mmap().map(|m| m.path())
    }

    pub(crate) fn file(&self) -> Option<&File> {
        self.backing.mmap().map(|m| m.file())
    }

    /// The file roles are locked on, and its path for errors; `None` for
    /// a heap or caller-supplied region.
    pub(crate) fn lock_file(&self) -> LockFile<'_> {
        self.backing.mmap().map(|m| (m.segment_file(), m.path()))
    }

    /// The heartbeat interval in nanoseconds (0: heartbeats off).
    #[inline]
    pub(crate) fn heartbeat_interval_ns(&self) -> u64 {
        u64::from(self.layout.config.heartbeat_interval_ms) * 1_000_000
    }

    /// Once a departed guest's messages have all been read, its entry is
    /// free for the next guest. The state is read first: its acquire load
    /// shows everything the guest published before it left, so a ring
    /// found empty after it holds nothing more.
    pub(crate) fn finish_goodbye(&self, p: PeerId) -> Result<()> {
        let peer = self.peer(p);
        if peer.state()? == PeerState::Goodbye
            && !self.ring(p, Direction::GuestToHost).has_data()?
        {
            peer.transition(PeerState::Goodbye, PeerState::Empty)?;
        }
        Ok(())
    }

    /// Frees a Goodbye entry whose guest has left and whose messages have
    /// all been read, for a caller that is not receiving from it (a
    /// reservation, a reclaim): the receive that read the last message may
    /// have ended without looking again. Left as it is while another
    /// process holds the entry's host-to-guest receiving role (a reclaim
    /// under way holds it throughout) or while its guest-to-host ring, by
    /// its indices, still holds anything. Returns whether it freed it.
    pub(crate) fn finish_read_goodbye(&self, p: PeerId) -> Result<bool> {
        let peer = self.peer(p);
        let (state, epoch) = peer.state_and_epoch()?;
        if state != PeerState::Goodbye {
            return Ok(false);
        }
        let Ok(_receiving) = self.try_take(lock_byte::ring_end(p, End::HostToGuestConsumer)) else {
            return Ok(false);
        };
        if !self.ring(p, Direction::GuestToHost).state()?.is_empty() {
            return Ok(false);
        }
        peer.transition_at(epoch, PeerState::Goodbye, PeerState::Empty)
    }

    /// Takes `role`, one of guest `p`'s ring ends on the guest's side,
    /// waiting within `deadline` for a process that holds it, except a held
    /// guest: a live process other than this one that holds the guest's
    /// entry keeps its ends while it runs, so waiting for it would only end
    /// with the timeout ([`Error::HeldByGuest`], at once).
    pub(crate) fn take_guest_role(
        &self,
        role: &mut Role,
        p: PeerId,
        what: String,
        deadline: &mut Deadline,
    ) -> Result<()> {
        match role.ensure(self.lock_file(), &mut Deadline::no_wait(), String::new) {
            Err(Error::Busy { .. }) => {}
            done => return done,
        }
        if let Some(pid) = self.held_by_another_process(p) {
            return Err(Error::HeldByGuest { what, pid });
        }
        role.ensure(self.lock_file(), deadline, || what)
    }

    /// The pid of the live process other than this one that holds guest
    /// `p`'s entry (Attached, with its presence lock held), if any: a
    /// held guest, which keeps its ring ends while it runs.
    pub(crate) fn held_by_another_process(&self, p: PeerId) -> Option<u32> {
        let entry = self.peer(p).snapshot().ok()?;
        let elsewhere = entry.held && entry.pid != 0 && entry.pid != std::process::id();
        let lives = matches!(
            self.judge(&entry),
            HolderStatus::Alive | HolderStatus::Stale
        );
        (entry.state == PeerState::Attached && elsewhere && lives).then_some(entry.pid)
    }

    /// How `entry`'s holder is judged now (`shm.peer.liveness`), by this
    /// segment's file and heartbeat interval.
    pub(crate) fn judge(&self, entry: &PeerEntry) -> HolderStatus {
        self.judge_at(entry, sys::monotonic_ns())
    }

    /// [`Segment::judge`] at monotonic time `now_ns`.
    pub(crate) fn judge_at(&self, entry: &PeerEntry, now_ns: u64) -> HolderStatus {
        liveness::judge_peer(
            entry,
            self.file(),
            self.layout.config.heartbeat_interval_ms,
            now_ns,
        )
    }

    /// Guest `p`'s state and epoch as the host's ends see them
    /// (`shm.peer.quarantine`): [`Error::Quarantined`] for a guest this
    /// process cut off, or one whose entry says Quarantined (cut off here
    /// too from then on); a state no state cuts the guest off.
    #[inline(always)]
    pub(crate) fn guest_state(&self, p: PeerId) -> Result<(PeerState, u32)> {
        self.judged_state(p, || self.peer(p).state_and_epoch())
    }

    /// [`Segment::guest_state`] through the entry's word, checked once.
    #[inline(always)]
    pub(crate) fn guest_state_in(&self, word: &StateWord) -> Result<(PeerState, u32)> {
        self.judged_state(word.peer_id(), || word.state_and_epoch())
    }

    #[inline(always)]
    fn judged_state(
        &self,
        p: PeerId,
        read: impl FnOnce() -> Result<(PeerState, u32)>,
    ) -> Result<(PeerState, u32)> {
        if self.cut_off.contains(p) {
            return Err(self.quarantined(p));
        }
        match read() {
            Ok((PeerState::Quarantined, _)) => Err(self.found_quarantined(p)),
            Ok(found) => Ok(found),
            Err(e) => Err(self.cut_off_for(p, QuarantineReason::Entry, e)),
        }
    }

    /// The host cuts guest `p` off for `reason`, having found `finding`
    /// (`shm.peer.quarantine`): records it in this process, so that no
    /// receive looks at the guest's ring again, marks its entry
    /// Quarantined with the reason, and wakes whoever waits on its rings
    /// (the guest, to notice). Returns the error that reports it.
    ///
    /// shm[impl shm.peer.quarantine]
    #[cold]
    pub(crate) fn cut_off(&self, p: PeerId, reason: QuarantineReason, finding: &Error) -> Error {
        self.cut_off.insert(p);
        // The record in this process is what keeps the guest out; the mark
        // in the file only tells the others, so failing to write it (the
        // guest racing the swap) changes nothing here.
        let _ = self.peer(p).quarantine(reason);
        for direction in [Direction::GuestToHost, Direction::HostToGuest] {
            let _ = self.ring(p, direction).wake_all();
        }
        Error::Quarantined {
            peer_id: p,
            reason,
            detail: Some(finding.to_string()),
        }
    }

    /// Cuts guest `p` off if `e`, from a look at its own part of the
    /// segment (`reason` says which), is one the guest's own writes can
    /// cause (a bad state, index or descriptor); any other error goes back
    /// as it is.
    #[cold]
    pub(crate) fn cut_off_for(&self, p: PeerId, reason: QuarantineReason, e: Error) -> Error {
        match (&e, reason) {
            (Error::BadDescriptor { .. }, _) => self.cut_off(p, QuarantineReason::Descriptor, &e),
            (Error::Corrupt(_), reason) => self.cut_off(p, reason, &e),
            _ => e,
        }
    }

    /// A guest found the host breaking the protocol (`e`, a bad
    /// descriptor or index in the host-to-guest ring): it remembers, and
    /// stops from here on (`Segment::host_broke_check`). Returns `e`.
    #[cold]
    pub(crate) fn host_broke(&self, e: Error) -> Error {
        if matches!(e, Error::BadDescriptor { .. } | Error::Corrupt(_)) {
            let _ = self.host_broke.set(e.to_string());
        }
        e
    }

    /// Fails with [`Error::HostBroke`] once this guest has found the host
    /// breaking the protocol.
    #[inline(always)]
    pub(crate) fn host_broke_check(&self) -> Result<()> {
        match self.host_broke.get() {
            None => Ok(()),
            Some(finding) => Err(Error::HostBroke {
                finding: finding.clone(),
            }),
        }
    }

    /// For a guest whose entry is found marked Quarantined (by another
    /// host process before this one, or by the guest itself): this process
    /// cuts it off too, and the error says so.
    #[cold]
    pub(crate) fn found_quarantined(&self, p: PeerId) -> Error {
        self.cut_off.insert(p);
        self.quarantined(p)
    }

    /// The error for a guest found cut off: by this process (its own
    /// record), or by the mark in its entry.
    #[cold]
    pub(crate) fn quarantined(&self, p: PeerId) -> Error {
        let reason = self
            .peer(p)
            .quarantine_reason()
            .ok()
            .flatten()
            .unwrap_or(QuarantineReason::Entry);
        Error::Quarantined {
            peer_id: p,
            reason,
            detail: None,
        }
    }

    /// Checks that the segment file is still the one mapped, at full length.
    pub(crate) fn check_file(&self) -> Result<()> {
        match self.backing.mmap() {
            Some(m) => m.check_unchanged(),
            None => Ok(()),
        }
    }

    pub(crate) fn header(&self) -> Result<HeaderInfo> {
        header::read(&self.region)
    }

    pub(crate) fn host_goodbye(&self) -> Result<bool> {
        Ok(self
            .region
            .load_u32(header::field::HOST_GOODBYE, Ordering::Acquire)?
            != 0)
    }

    /// Checks that a caller-supplied guest id names a guest of this
    /// segment: [`Error::InvalidPeerId`] for 0 or a number above
    /// `max_guests`.
    #[inline]
    pub(crate) fn guest_id(&self, peer_id: impl IntoPeerId) -> Result<PeerId> {
        let id = peer_id.into_peer_id();
        id.filter(|&p| self.layout.is_guest(p))
            .ok_or(Error::InvalidPeerId {
                peer_id: id.map_or(0, PeerId::get),
                max_guests: self.layout.config.max_guests,
            })
    }

    #[inline]
    pub(crate) fn peer(&self, peer_id: PeerId) -> Peer<'_> {
        Peer::new(&self.region, &self.layout, peer_id)
    }

    pub(crate) fn ring(&self, peer_id: PeerId, direction: Direction) -> RingView<'_> {
        RingView::new(
            &self.region,
            self.layout.ring(peer_id, direction),
            self.layout.config.ring_capacity,
        )
    }

    pub(crate) fn pool(&self, owner: Party) -> Result<Pool> {
        Pool::open(&self.region, &self.layout, owner)
    }

    /// Guest `guest`'s ring in `direction`, opened for one of its ends.
    fn ring_end(&self, guest: PeerId, direction: Direction) -> Result<RingEnd> {
        let (region, leases) = (self.region.clone(), self.leases.clone());
        RingEnd::open(region, self.layout, guest, direction, leases)
    }

    /// The sending end of guest `guest`'s ring in `direction`.
    pub(crate) fn producer(&self, guest: PeerId, direction: Direction) -> Result<Producer> {
        let end = self.ring_end(guest, direction)?;
        Producer::new(end, self.host_slots_per_guest)
    }

    /// The receiving end of guest `guest`'s ring in `direction`.
    pub(crate) fn consumer(&self, guest: PeerId, direction: Direction) -> Result<Consumer> {
        Ok(Consumer::new(self.ring_end(guest, direction)?))
    }

    /// Drops whatever waits in guest `p`'s host-to-guest ring, freeing the
    /// slots its descriptors name, as the entry passes to a new guest: it
    /// was sent to an earlier guest of the entry, by a host send that found
    /// that guest attached just before it left. Skipped (0) while another
    /// process holds that ring's receiving role. Returns how many were
    /// dropped.
    ///
    /// The receiving role is taken only for the drain, on this segment's
    /// own open file: the caller must not hold it through that file
    /// already (releasing the drain's lock would release the caller's).
    pub(crate) fn drop_stale_to_guest(&self, p: PeerId) -> Result<usize> {
        let Ok(_receiving) = self.try_take(lock_byte::ring_end(p, End::HostToGuestConsumer)) else {
            return Ok(0);
        };
        self.drain_stale_to_guest(p)
    }

    /// Takes the lock on `byte` (a role or a presence) on this segment's
    /// own open file, without waiting: `Ok(Some)` with it, `Ok(None)` for a
    /// segment without a file (nothing to lock, nobody else to fear), or
    /// [`HeldElsewhere`].
    pub(crate) fn try_take(
        &self,
        byte: u64,
    ) -> std::result::Result<Option<ByteLock>, HeldElsewhere> {
        match self.backing.mmap() {
            None => Ok(None),
            Some(mmap) => match ByteLock::try_lock(mmap.segment_file(), byte) {
                Ok(Some(lock)) => Ok(Some(lock)),
                _ => Err(HeldElsewhere),
            },
        }
    }

    /// [`Segment::drop_stale_to_guest`] for a caller that holds the
    /// receiving role already (or a segment without a file).
    pub(crate) fn drain_stale_to_guest(&self, p: PeerId) -> Result<usize> {
        let end = self.consumer(p, Direction::HostToGuest)?;
        // A sequentially consistent look first, after a barrier on every
        // publisher: it pairs with a host's look at the entry right after
        // it published (see `ShmHost::sending`).
        if end.is_empty_after_move() {
            return Ok(0);
        }
        end.discard_all()
    }

    /// Frees every slot `party` holds in any of `pools`, except those lent
    /// out in this process (their owners free them when they drop).
    pub(crate) fn free_slots_held_by(
        &self,
        party: Party,
        pools: impl Iterator<Item = Party>,
    ) -> Result<()> {
        for pool in pools {
            let leases = &self.leases;
            self.pool(pool)?
                .free_held_by(party, &|slot| leases.contains(pool, slot));
        }
        Ok(())
    }

    /// Gives back everything guest `p` has in the pools once nobody acts
    /// as it (a reclaim, a freed quarantine): every slot of every pool
    /// the pools' own records say it holds, then every slot still
    /// allocated in its own pool (taken and never sent, or sent and read
    /// already), all but those lent out in this process; and its pool's
    /// waiter count, which a process that died asleep leaves set.
    pub(crate) fn free_guest_slots(&self, p: PeerId) -> Result<()> {
        let guest = Party::Guest(p);
        self.free_slots_held_by(guest, self.layout.parties())?;
        let leases = &self.leases;
        let pool = self.pool(guest)?;
        pool.free_all(&|slot| leases.contains(guest, slot));
        pool.clear_waiters();
        Ok(())
    }
}
