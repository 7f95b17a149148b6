//! The peer table: one 64-byte entry per possible guest.
//!
//! shm[impl shm.peer.table]

use std::sync::atomic::Ordering;

use crate::sync::atomic::AtomicU64;

use crate::error::{Error, Result};
use crate::layout::SegmentLayout;
use crate::party::{PeerId, PeerState, QuarantineReason};
use crate::region::{Region, Word};
use crate::{host_slots, sys};

/// Byte offsets inside a peer entry.
pub mod field {
    /// `u32`: [`crate::PeerState`].
    pub const STATE: u64 = 0;
    /// `u32`: number of attaches this entry has seen.
    pub const EPOCH: u64 = 4;
    /// `u32`: pid of the process holding the entry (0 = none).
    pub const PID: u64 = 8;
    /// `u32`: [`super::FLAG_HELD`] when a process holds the entry.
    pub const FLAGS: u64 = 12;
    /// `u64`: heartbeat, `CLOCK_MONOTONIC` ns (0 = never).
    pub const HEARTBEAT_NS: u64 = 16;
    /// `u64`: start time of the holding process (clock ticks since boot).
    pub const START_TIME: u64 = 24;
    /// `u64`: when the entry was last claimed, ns since the Unix epoch.
    pub const CLAIMED_UNIX_NS: u64 = 32;
    /// `u32`: why the host cut the guest off ([`crate::QuarantineReason`];
    /// 0 = never), written by the host before it moves the entry to
    /// Quarantined.
    pub const QUARANTINE: u64 = 40;
}

/// Entry flag: a running process holds the entry (and its pid is recorded).
/// Without it, an Attached entry was claimed for scripted use and belongs to
/// no process.
pub const FLAG_HELD: u32 = 1;
/// Entry flag: the holder also holds the entry's presence lock on the
/// segment file, so the lock (not the pid) tells whether it lives.
pub const FLAG_LOCKED: u32 = 2;

/// A snapshot of one peer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeerEntry {
    /// The guest's id (1-based).
    pub peer_id: PeerId,
    /// Its state.
    pub state: PeerState,
    /// How many times the entry has been claimed.
    pub epoch: u32,
    /// Pid of the holding process (0 = none).
    pub pid: u32,
    /// Whether a process holds the entry (false for scripted claims).
    pub held: bool,
    /// Whether the holder keeps the entry's presence lock.
    pub locked: bool,
    /// Last heartbeat (`CLOCK_MONOTONIC` ns; 0 = never).
    pub heartbeat_ns: u64,
    /// Start time of the holding process (clock ticks since boot).
    pub start_time: u64,
    /// When the entry was last claimed (ns since the Unix epoch).
    pub claimed_unix_ns: u64,
    /// How many of the host's slots the guest holds (counted in its
    /// host-to-guest ring, `shm.pool.share`).
    pub host_slots_held: u32,
    /// Why the host cut the guest off, for a Quarantined entry.
    pub quarantine: Option<QuarantineReason>,
}

/// The error for entry `peer_id` holding state `raw`, which is none the
/// protocol knows (`shm.peer.states`).
pub(crate) fn unknown_state(peer_id: PeerId, raw: u32) -> Error {
    Error::Corrupt(format!(
        "peer {peer_id} has unknown state {raw} (known: 0 empty, 1 reserved, 2 attached, 3 goodbye, 4 quarantined)"
    ))
}

/// A loaded state-and-epoch word taken apart: (state, epoch).
#[inline(always)]
pub(crate) fn split(pair: u64) -> (u32, u32) {
    (pair as u32, (pair >> 32) as u32)
}

/// The state-and-epoch word holding `state` at `epoch`.
#[inline(always)]
fn join(state: u32, epoch: u32) -> u64 {
    u64::from(state) | (u64::from(epoch) << 32)
}

/// Who holds an entry, as its holder record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// No process: an entry that is not Attached, or one claimed for
    /// scripted use, which belongs to no process.
    Nobody,
    /// A running process, judged alive by its pid (a segment with no file
    /// to lock).
    Process(u32),
    /// A running process that also keeps the entry's presence lock, which
    /// (not the pid) tells whether it lives.
    LockingProcess(u32),
}

impl Holder {
    /// This process, keeping the presence lock or not as `presence` says.
    pub(crate) fn this_process(presence: PresenceLock) -> Self {
        let pid = sys::current_pid();
        match presence {
            PresenceLock::Kept => Holder::LockingProcess(pid),
            PresenceLock::NotKept => Holder::Process(pid),
        }
    }
}

/// Whether a holder keeps its entry's presence lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresenceLock {
    /// It does: the lock tells whether it lives.
    Kept,
    /// It does not (a segment with no file to lock): its pid tells.
    NotKept,
}

/// A view of one peer entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer<'a> {
    region: &'a Region,
    base: u64,
    /// The guest's host-to-guest ring, where the host's slots it holds
    /// are counted.
    to_guest_ring: u64,
    peer_id: PeerId,
}

impl<'a> Peer<'a> {
    pub(crate) fn new(region: &'a Region, layout: &SegmentLayout, peer_id: PeerId) -> Self {
        Peer {
            region,
            base: layout.peer_entry(peer_id),
            to_guest_ring: layout.host_to_guest_ring(peer_id),
            peer_id,
        }
    }

    /// The entry's state and epoch as one word: the state in the low half,
    /// the epoch in the high half (`shm.peer.table`). Every look at either
    /// and every change of either is one access to this word, so that
    /// nobody sees a claimed entry with the epoch of the claim before.
    #[inline]
    fn pair(&self) -> Result<&'a AtomicU64> {
        Ok(self.region.atomic_u64(self.base + field::STATE)?)
    }

    /// The entry's state-and-epoch word, bounds-checked once, for an end
    /// that looks at it on every operation (the region must be writable).
    pub(crate) fn state_word(&self) -> Result<StateWord> {
        Ok(StateWord {
            word: Word::new(self.region, self.base + field::STATE)?,
            peer_id: self.peer_id,
        })
    }

    /// The stored state word, whatever it holds, and the epoch, loaded
    /// together (works on read-only regions).
    #[inline]
    pub(crate) fn raw_state_and_epoch(&self) -> Result<(u32, u32)> {
        Ok(split(
            self.region
                .load_u64(self.base + field::STATE, Ordering::Acquire)?,
        ))
    }

    /// The stored state word, whatever it holds (works on read-only
    /// regions).
    #[inline]
    pub(crate) fn raw_state(&self) -> Result<u32> {
        Ok(self.raw_state_and_epoch()?.0)
    }

    /// The current state; an unknown value is corruption.
    #[inline]
    pub(crate) fn state(&self) -> Result<PeerState> {
        Ok(self.state_and_epoch()?.0)
    }

    /// The current state and the epoch it holds at (one load); an unknown
    /// state is corruption.
    #[inline]
    pub(crate) fn state_and_epoch(&self) -> Result<(PeerState, u32)> {
        let (raw, epoch) = self.raw_state_and_epoch()?;
        parse_state(self.peer_id, raw, epoch)
    }

    /// Atomically moves the entry from `from` to `to`, at whatever epoch it
    /// holds; false if it was not `from`. Sequentially consistent on
    /// success: a departing guest's move, then its look at its ring, pairs
    /// with a sender's publication, then its look at the entry
    /// ([`Presence::check`]).
    pub(crate) fn transition(&self, from: PeerState, to: PeerState) -> Result<bool> {
        self.compare_and_move(from, None, to, |epoch| epoch)
    }

    /// [`Peer::transition`], only if the entry still holds at `epoch`.
    pub(crate) fn transition_at(&self, epoch: u32, from: PeerState, to: PeerState) -> Result<bool> {
        self.compare_and_move(from, Some(epoch), to, |epoch| epoch)
    }

    /// Claims the entry: moves it from `from` to Attached and bumps the
    /// epoch (wrapping) in the same compare-and-swap. Returns the new
    /// epoch, which identifies this claim, or `None` if the entry was not
    /// `from`.
    ///
    /// shm[impl shm.wrap]
    pub(crate) fn claim(&self, from: PeerState) -> Result<Option<u32>> {
        let mut claimed = None;
        let moved = self.compare_and_move(from, None, PeerState::Attached, |epoch| {
            let next = epoch.wrapping_add(1);
            claimed = Some(next);
            next
        })?;
        Ok(claimed.filter(|_| moved))
    }

    /// The one compare-and-swap behind every move: from `from` (at
    /// `at_epoch`, if given) to `to`, at the epoch `next_epoch` makes of
    /// the current one. The swap fails only if the word changed since it
    /// was read; the new value is then judged afresh.
    fn compare_and_move(
        &self,
        from: PeerState,
        at_epoch: Option<u32>,
        to: PeerState,
        mut next_epoch: impl FnMut(u32) -> u32,
    ) -> Result<bool> {
        let pair = self.pair()?;
        let mut current = pair.load(Ordering::Acquire);
        loop {
            let (state, epoch) = split(current);
            if state != from.to_u32() || at_epoch.is_some_and(|at| at != epoch) {
                return Ok(false);
            }
            let wanted = join(to.to_u32(), next_epoch(epoch));
            match pair.compare_exchange(current, wanted, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => return Ok(true),
                Err(found) => current = found,
            }
        }
    }

    /// Records the claim just made ([`Peer::claim`]): the holder and the
    /// time.
    ///
    /// shm[impl shm.peer.holder]
    pub(crate) fn record_claim(&self, holder: Holder) -> Result<()> {
        self.set_holder(holder)?;
        self.region.store_u64(
            self.base + field::CLAIMED_UNIX_NS,
            sys::unix_ns(),
            Ordering::Relaxed,
        )?;
        Ok(())
    }

    /// Records who holds the entry; clearing it ([`Holder::Nobody`]) also
    /// leaves a fresh heartbeat, and the claim time is never cleared.
    ///
    /// shm[impl shm.peer.holder]
    pub(crate) fn set_holder(&self, holder: Holder) -> Result<()> {
        let (pid, flags) = match holder {
            Holder::Nobody => (0, 0),
            Holder::Process(pid) => (pid, FLAG_HELD),
            Holder::LockingProcess(pid) => (pid, FLAG_HELD | FLAG_LOCKED),
        };
        let start = if pid == 0 {
            0
        } else {
            sys::process_start_time(pid)
        };
        self.region
            .store_u32(self.base + field::PID, pid, Ordering::Relaxed)?;
        self.region
            .store_u64(self.base + field::START_TIME, start, Ordering::Relaxed)?;
        self.region
            .store_u32(self.base + field::FLAGS, flags, Ordering::Release)?;
        self.beat()
    }

    /// Refreshes the heartbeat.
    pub(crate) fn beat(&self) -> Result<()> {
        self.region.store_u64(
            self.base + field::HEARTBEAT_NS,
            sys::monotonic_ns(),
            Ordering::Release,
        )?;
        Ok(())
    }

    /// Reads the whole entry (works on read-only regions).
    pub(crate) fn snapshot(&self) -> Result<PeerEntry> {
        let u32_at = |f| self.region.load_u32(self.base + f, Ordering::Acquire);
        let u64_at = |f| self.region.load_u64(self.base + f, Ordering::Acquire);
        // One load of the flags for both bits: another process may change
        // them between two loads.
        let flags = u32_at(field::FLAGS)?;
        let (state, epoch) = self.state_and_epoch()?;
        Ok(PeerEntry {
            peer_id: self.peer_id,
            state,
            epoch,
            pid: u32_at(field::PID)?,
            held: flags & FLAG_HELD != 0,
            locked: flags & FLAG_LOCKED != 0,
            heartbeat_ns: u64_at(field::HEARTBEAT_NS)?,
            start_time: u64_at(field::START_TIME)?,
            claimed_unix_ns: u64_at(field::CLAIMED_UNIX_NS)?,
            host_slots_held: host_slots::held(self.region, self.to_guest_ring)?,
            quarantine: match state {
                PeerState::Quarantined => self.quarantine_reason()?,
                _ => None,
            },
        })
    }

    /// Why the guest was cut off, as the entry's `quarantine` field says.
    pub(crate) fn quarantine_reason(&self) -> Result<Option<QuarantineReason>> {
        let raw = self
            .region
            .load_u32(self.base + field::QUARANTINE, Ordering::Acquire)?;
        Ok(QuarantineReason::from_u32(raw))
    }

    /// Marks the entry Quarantined for `reason`, whatever state it holds
    /// (even one the protocol does not know), keeping its epoch: the
    /// reason first, then the state word, compared and swapped from the
    /// value read. A guest writing its own state word at the same time
    /// can make every swap fail; after a few tries the mark is given up
    /// (the host's own record of the quarantine is what keeps the guest
    /// cut off). Whether the entry is now marked.
    ///
    /// shm[impl shm.peer.quarantine]
    pub(crate) fn quarantine(&self, reason: QuarantineReason) -> Result<bool> {
        self.region.store_u32(
            self.base + field::QUARANTINE,
            reason.to_u32(),
            Ordering::Release,
        )?;
        let pair = self.pair()?;
        let mut current = pair.load(Ordering::Acquire);
        for _ in 0..8 {
            let (state, epoch) = split(current);
            if state == PeerState::Quarantined.to_u32() {
                return Ok(true);
            }
            let wanted = join(PeerState::Quarantined.to_u32(), epoch);
            match pair.compare_exchange(current, wanted, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => return Ok(true),
                Err(found) => current = found,
            }
        }
        Ok(false)
    }

    /// Frees a Quarantined entry whose holder is gone, at the epoch it was
    /// judged: the reason cleared, then back to Empty. False if it moved.
    pub(crate) fn release_quarantined(&self, epoch: u32) -> Result<bool> {
        self.region
            .store_u32(self.base + field::QUARANTINE, 0, Ordering::Relaxed)?;
        self.transition_at(epoch, PeerState::Quarantined, PeerState::Empty)
    }
}

/// When a send asks whether its receiver is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publication {
    /// Just before it publishes: the entry must still hold the guest.
    Before,
    /// Just after: only that guest's departure, with nobody in the entry
    /// since, counts.
    After,
}

/// One entry's state-and-epoch word, checked to lie in the region when
/// made, so that the host's ends read it on every operation without a
/// bounds check; what it holds is the guest's to write, and is still
/// parsed every time.
#[derive(Debug, Clone)]
pub(crate) struct StateWord {
    word: Word<AtomicU64>,
    peer_id: PeerId,
}

impl StateWord {
    /// The state and epoch (one load); an unknown state is corruption.
    #[inline(always)]
    pub(crate) fn state_and_epoch(&self) -> Result<(PeerState, u32)> {
        let (raw, epoch) = split(self.word.get().load(Ordering::Acquire));
        parse_state(self.peer_id, raw, epoch)
    }

    /// The guest whose entry this is.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Whether the entry holds `state` now: one load, nothing parsed.
    #[inline(always)]
    pub(crate) fn holds(&self, state: PeerState) -> bool {
        split(self.word.get().load(Ordering::Acquire)).0 == state.to_u32()
    }

    /// The word itself, for a send's looks around its publication.
    #[inline(always)]
    pub(crate) fn atomic(&self) -> &AtomicU64 {
        self.word.get()
    }
}

/// A stored state read with its epoch; an unknown value is corruption.
#[inline(always)]
fn parse_state(peer_id: PeerId, raw: u32, epoch: u32) -> Result<(PeerState, u32)> {
    match PeerState::from_u32(raw) {
        Some(state) => Ok((state, epoch)),
        None => Err(unknown_state(peer_id, raw)),
    }
}

/// What a send to a guest found in the guest's entry, to look at again
/// just before and just after it publishes (`shm.send.placement`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presence<'a> {
    /// The entry's state-and-epoch word.
    word: &'a AtomicU64,
    peer_id: PeerId,
    /// The state the send found: Attached or Reserved.
    state: PeerState,
    /// The epoch it found.
    epoch: u32,
}

impl<'a> Presence<'a> {
    /// For a send that found the entry of `word` `state` at `epoch`.
    #[inline(always)]
    pub(crate) fn new(word: &'a StateWord, state: PeerState, epoch: u32) -> Self {
        Presence {
            word: word.atomic(),
            peer_id: word.peer_id,
            state,
            epoch,
        }
    }

    /// Fails with [`Error::PeerGone`] if the guest the send is for (the
    /// one it found, or, for a reservation, the guest that attaches to it,
    /// one epoch later) has left. Asked just before publishing, when the
    /// entry must still hold that guest, and just after, when only that
    /// guest's departure with nobody in the entry since
    /// counts: a guest that claimed the entry in between may already read
    /// what was published. The load is sequentially consistent, and so are
    /// a departing guest's move of its entry and its look at its ring right
    /// after (`ShmGuest::detach`), and a claiming guest's move and look
    /// (`Segment::drop_stale_to_guest`): either that guest drops what was
    /// published, or the sender sees the entry has moved. One load reads
    /// state and epoch together, so a claim (which moves both at once) is
    /// seen whole.
    #[inline(always)]
    pub(crate) fn check(&self, moment: Publication) -> Result<()> {
        let (now, now_epoch) = split(self.word.load(Ordering::SeqCst));
        let here = now == PeerState::Attached.to_u32() || now == PeerState::Reserved.to_u32();
        let ours = now_epoch == self.epoch
            || (self.state == PeerState::Reserved && now_epoch == self.epoch.wrapping_add(1));
        let present = match moment {
            Publication::Before => here && ours,
            Publication::After => here || !ours,
        };
        if present && (here || PeerState::from_u32(now).is_some()) {
            Ok(())
        } else {
            Err(not_there(self.peer_id, now))
        }
    }
}

/// Why [`Presence::check`] said no: the guest left, or its entry holds no
/// state at all.
#[cold]
fn not_there(peer_id: PeerId, state: u32) -> Error {
    match PeerState::from_u32(state) {
        Some(_) => Error::PeerGone { peer_id },
        None => unknown_state(peer_id, state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::id;
    use crate::{HeapRegion, SegmentConfig};

    // shm[verify shm.peer.states]
    #[test]
    fn states_round_trip_and_unknown_is_corrupt() {
        for s in [
            PeerState::Empty,
            PeerState::Reserved,
            PeerState::Attached,
            PeerState::Goodbye,
        ] {
            assert_eq!(PeerState::from_u32(s.to_u32()), Some(s));
        }
        let layout = SegmentConfig::default().layout().unwrap();
        let region = HeapRegion::new_zeroed(layout.total_size as usize)
            .unwrap()
            .region();
        let peer = Peer::new(&region, &layout, id(2));
        assert_eq!(peer.state().unwrap(), PeerState::Empty);
        region
            .store_u32(layout.peer_entry(id(2)), 77, Ordering::Relaxed)
            .unwrap();
        assert!(matches!(peer.state(), Err(Error::Corrupt(_))));
    }

    // shm[verify shm.peer.claim]
    // shm[verify shm.peer.states]
    #[test]
    fn claims_bump_the_epoch_and_transition_is_exclusive() {
        let layout = SegmentConfig::default().layout().unwrap();
        let region = HeapRegion::new_zeroed(layout.total_size as usize)
            .unwrap()
            .region();
        let peer = Peer::new(&region, &layout, id(1));
        assert_eq!(peer.claim(PeerState::Empty).unwrap(), Some(1));
        assert_eq!(peer.claim(PeerState::Empty).unwrap(), None);
        assert_eq!(peer.state_and_epoch().unwrap(), (PeerState::Attached, 1));
        peer.record_claim(Holder::LockingProcess(42)).unwrap();
        assert!(peer.snapshot().unwrap().locked);
        // Moves keep the epoch; a move at an epoch the entry no longer
        // holds is refused.
        assert!(
            !peer
                .transition_at(0, PeerState::Attached, PeerState::Goodbye)
                .unwrap()
        );
        assert!(
            peer.transition_at(1, PeerState::Attached, PeerState::Goodbye)
                .unwrap()
        );
        assert!(
            peer.transition(PeerState::Goodbye, PeerState::Reserved)
                .unwrap()
        );
        assert_eq!(peer.state_and_epoch().unwrap(), (PeerState::Reserved, 1));
        assert_eq!(peer.claim(PeerState::Reserved).unwrap(), Some(2));
        peer.record_claim(Holder::Nobody).unwrap();
        assert!(
            peer.transition(PeerState::Attached, PeerState::Empty)
                .unwrap()
        );
        let snap = peer.snapshot().unwrap();
        assert_eq!(
            (snap.state, snap.epoch, snap.pid, snap.held),
            (PeerState::Empty, 2, 0, false)
        );
    }
}
