//! What an end checks about the other side while it sends or receives:
//! a guest's ends watch the host (there, not dead) and their own entry
//! (still their claim); the host's ends watch one guest's entry (still
//! the guest the operation began with, and its holder alive). Each check
//! runs between naps of a wait, so a wait ends once the other side is
//! gone, with that as the operation's result.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::Direction;
use crate::liveness::{self, HolderStatus, HostStatus};
use crate::party::{Party, PeerId, PeerState};
use crate::peer::{Presence, StateWord};
use crate::segment::Segment;
use crate::sys;

/// How often a waiting end judges whether the other side's process lives
/// (a look at locks or `/proc`, dearer than a look at shared memory).
const LIVENESS_EVERY_NS: u64 = 100_000_000;

/// Which way an operation moves messages, for what counts as the other
/// side being gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moving {
    /// Sending to the other side: gone as soon as it left.
    Sending,
    /// Receiving from it: gone once it left and nothing it sent is left.
    Receiving,
}

/// Something an end keeps alive for as long as it lives: a split guest's
/// hold on its entry, which detaches when the last end lets go.
#[derive(Clone)]
pub(crate) struct KeepAlive {
    _held: Arc<dyn Send + Sync>,
}

impl KeepAlive {
    pub(crate) fn new(held: Arc<dyn Send + Sync>) -> Self {
        KeepAlive { _held: held }
    }
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

/// The other side an end watches.
#[derive(Debug)]
pub(crate) enum OtherSide {
    /// A guest's end: the host.
    Host(HostWatch),
    /// One of the host's ends: a guest's entry.
    Guest(GuestWatch),
}

impl OtherSide {
    /// Who the other side is.
    pub(crate) fn party(&self) -> Party {
        match self {
            OtherSide::Host(_) => Party::Host,
            OtherSide::Guest(watch) => Party::Guest(watch.peer_id()),
        }
    }
}

/// What a guest's end watches: the host, and the guest's own entry. It
/// also keeps the guest's heartbeat while it works and waits.
#[derive(Debug)]
pub(crate) struct HostWatch {
    peer_id: PeerId,
    epoch: u32,
    /// When this end last beat and last judged the host
    /// (`CLOCK_MONOTONIC` ns): kept across calls, so that a guest that
    /// waits in short calls still beats and still notices a dead host.
    last_beat_ns: u64,
    last_host_check_ns: u64,
    /// The host's pid, once a look found its process dead: every later
    /// send fails at once, as every receive does.
    host_died: Option<u32>,
}

impl HostWatch {
    /// The watch of guest `peer_id`'s ends, for its claim at `epoch`.
    pub(crate) fn new(peer_id: PeerId, epoch: u32) -> Self {
        HostWatch {
            peer_id,
            epoch,
            last_beat_ns: sys::monotonic_ns(),
            last_host_check_ns: 0,
            host_died: None,
        }
    }

    /// The guest whose ends these are.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Before an operation: the entry is still this guest's, and, with
    /// heartbeats on, a beat if one is due (a guest busy sending and
    /// receiving, that never waits, still beats).
    #[inline(always)]
    pub(crate) fn before(&mut self, seg: &Segment) -> Result<()> {
        seg.host_broke_check()?;
        check_still_mine(seg, self.peer_id, self.epoch)?;
        let interval_ns = seg.heartbeat_interval_ns();
        if interval_ns > 0 {
            self.beat_if_due(seg, sys::monotonic_ns(), interval_ns)?;
        }
        Ok(())
    }

    /// Before a send: as [`HostWatch::before`], and the host has not said
    /// goodbye and is not known dead (nobody would read what is sent). An
    /// end's first send judges the host's process, so that a send into a
    /// segment whose host was killed fails as a receive would, rather than
    /// filling the ring for nobody; after that it is judged while a send
    /// waits.
    #[inline(always)]
    pub(crate) fn before_sending(&mut self, seg: &Segment) -> Result<()> {
        seg.host_broke_check()?;
        check_still_mine(seg, self.peer_id, self.epoch)?;
        if seg.host_goodbye()? {
            return Err(Error::HostGone);
        }
        if self.last_host_check_ns == 0 || self.host_died.is_some() {
            self.judge_host(seg, sys::monotonic_ns())?;
        }
        let interval_ns = seg.heartbeat_interval_ns();
        if interval_ns > 0 {
            self.beat_if_due(seg, sys::monotonic_ns(), interval_ns)?;
        }
        Ok(())
    }

    /// Between naps: the host is there and alive (judged at most every
    /// 100 ms), the entry is still this guest's, and the heartbeat fresh.
    pub(crate) fn check(&mut self, seg: &Segment) -> Result<()> {
        if seg.host_goodbye()? {
            return Err(Error::HostGone);
        }
        check_still_mine(seg, self.peer_id, self.epoch)?;
        let now = sys::monotonic_ns();
        self.beat_if_due(seg, now, seg.heartbeat_interval_ns())?;
        if now.saturating_sub(self.last_host_check_ns) >= LIVENESS_EVERY_NS {
            self.judge_host(seg, now)?;
        }
        Ok(())
    }

    /// Judges the host's process now: [`Error::HostDied`] if it is dead
    /// (and remembered: it does not come back).
    #[cold]
    fn judge_host(&mut self, seg: &Segment, now: u64) -> Result<()> {
        self.last_host_check_ns = now.max(1);
        if let Some(pid) = self.host_died {
            return Err(Error::HostDied { pid });
        }
        let h = seg.header()?;
        let status =
            liveness::judge_host(h.host_goodbye, h.host_pid, h.host_start_time, seg.file());
        if status == HostStatus::Dead {
            self.host_died = Some(h.host_pid);
            return Err(Error::HostDied { pid: h.host_pid });
        }
        Ok(())
    }

    /// Refreshes the heartbeat now.
    pub(crate) fn beat(&mut self, seg: &Segment) -> Result<()> {
        self.last_beat_ns = sys::monotonic_ns();
        seg.peer(self.peer_id).beat()
    }

    fn beat_if_due(&mut self, seg: &Segment, now: u64, interval_ns: u64) -> Result<()> {
        if interval_ns > 0 && now.saturating_sub(self.last_beat_ns) >= interval_ns {
            self.last_beat_ns = now;
            seg.peer(self.peer_id).beat()?;
        }
        Ok(())
    }
}

/// Fails with [`Error::PeerGone`] if guest `p`'s entry no longer holds
/// its claim at `epoch` (reclaimed, or claimed again by another).
#[inline(always)]
pub(crate) fn check_still_mine(seg: &Segment, p: PeerId, epoch: u32) -> Result<()> {
    match seg.peer(p).state_and_epoch()? {
        (PeerState::Attached, e) if e == epoch => Ok(()),
        // The host cut this guest off (`shm.peer.quarantine`): it says so,
        // and stops, rather than going on as if it had been reclaimed.
        (PeerState::Quarantined, e) if e == epoch => Err(seg.quarantined(p)),
        _ => Err(Error::PeerGone { peer_id: p }),
    }
}

/// What the host's ends for one guest watch: that guest's entry. Kept
/// across operations for when the holder was last judged alive.
#[derive(Debug)]
pub(crate) struct GuestWatch {
    peer_id: PeerId,
    /// The guest's state-and-epoch word, looked at on every operation.
    entry: StateWord,
    holder: HolderRecord,
}

/// What the host's ends remember of a guest's holder between operations.
#[derive(Debug, Default)]
pub(crate) struct HolderRecord {
    /// When the holder was last judged (`CLOCK_MONOTONIC` ns, 0 = never):
    /// kept across calls, so that a host waiting in short slices (as the
    /// command does) still looks.
    last_check_ns: u64,
    /// The epoch of the claim whose holder a look found dead, and its pid:
    /// sends to it fail at once from then on, as its receives do.
    died: Option<(u32, u32)>,
}

impl GuestWatch {
    /// The watch of the host's ends for guest `peer_id` of `seg`.
    pub(crate) fn new(seg: &Segment, peer_id: PeerId) -> Result<Self> {
        Ok(GuestWatch {
            peer_id,
            entry: seg.peer(peer_id).state_word()?,
            holder: HolderRecord::default(),
        })
    }

    /// The guest watched.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The guest's state and epoch as the host's ends see them
    /// ([`Segment::guest_state`]).
    #[inline(always)]
    pub(crate) fn state(&self, seg: &Segment) -> Result<(PeerState, u32)> {
        seg.guest_state_in(&self.entry)
    }

    /// Whether the guest has said goodbye: one load, for the look after
    /// every take.
    #[inline(always)]
    pub(crate) fn has_left(&self) -> bool {
        self.entry.holds(PeerState::Goodbye)
    }

    /// The watch of one operation, on the entry as it is now.
    #[inline(always)]
    pub(crate) fn begin<'a>(&'a mut self, seg: &'a Segment) -> Result<EntryWatch<'a>> {
        let (state, epoch) = seg.guest_state_in(&self.entry)?;
        Ok(EntryWatch {
            seg,
            peer_id: self.peer_id,
            entry: &self.entry,
            state,
            epoch,
            holder: &mut self.holder,
        })
    }
}

/// One operation's watch on a guest's entry: the guest it began with (or,
/// for a Reserved entry, the guest that attaches to it, one epoch later)
/// is still there, and every 100 ms its holder still lives.
pub(crate) struct EntryWatch<'a> {
    seg: &'a Segment,
    peer_id: PeerId,
    entry: &'a StateWord,
    /// The state and epoch the operation began with.
    state: PeerState,
    epoch: u32,
    holder: &'a mut HolderRecord,
}

impl<'a> EntryWatch<'a> {
    /// For a send: the entry must accept messages (Attached or Reserved),
    /// and its guest must not be known dead. An end's first send judges
    /// the holder, so that a send to a guest that was killed fails as a
    /// receive would, rather than filling the ring for nobody; after that
    /// it is judged while a send waits.
    #[inline(always)]
    pub(crate) fn accepting(mut self) -> Result<Self> {
        // An entry a guest has held and left (Empty again, or Goodbye) has
        // seen that guest go: said as a receive from it says it.
        if matches!(self.state, PeerState::Empty | PeerState::Goodbye) && self.epoch > 0 {
            return Err(Error::PeerGone {
                peer_id: self.peer_id,
            });
        }
        if !matches!(self.state, PeerState::Attached | PeerState::Reserved) {
            return Err(Error::PeerState {
                peer_id: self.peer_id,
                state: self.state,
                expected: "attached or reserved",
            });
        }
        if self.holder.last_check_ns == 0
            || self
                .holder
                .died
                .is_some_and(|(epoch, _)| epoch == self.epoch)
        {
            self.judge_holder(Moving::Sending, sys::monotonic_ns())?;
        }
        Ok(self)
    }

    /// Judges the holder now: [`Error::PeerGone`] once it is dead and, for
    /// a receiver, nothing it sent is left (a death is remembered for the
    /// claim it ended).
    #[cold]
    fn judge_holder(&mut self, moving: Moving, now: u64) -> Result<()> {
        self.holder.last_check_ns = now.max(1);
        let seg = self.seg;
        let p = self.peer_id;
        let died = match self.holder.died {
            Some((epoch, pid)) if epoch == self.epoch => Some(pid),
            _ => {
                let entry = seg.peer(p).snapshot()?;
                let dead = seg.judge_at(&entry, now) == HolderStatus::Dead;
                (dead && entry.epoch == self.epoch).then_some(entry.pid)
            }
        };
        let Some(pid) = died else {
            return Ok(());
        };
        self.holder.died = Some((self.epoch, pid));
        if moving == Moving::Sending || !seg.ring(p, Direction::GuestToHost).has_data()? {
            return Err(Error::PeerDied { peer_id: p, pid });
        }
        Ok(())
    }

    /// What a send looks at just before and just after it publishes.
    #[inline(always)]
    pub(crate) fn presence(&self) -> Presence<'a> {
        Presence::new(self.entry, self.state, self.epoch)
    }

    /// Fails with [`Error::PeerGone`] once the guest has gone: for a
    /// sender, as soon as the entry is neither Attached nor Reserved or was
    /// claimed again; for a receiver, once also nothing is left to read. A
    /// guest whose process died counts as gone either way.
    pub(crate) fn check(&mut self, moving: Moving) -> Result<()> {
        let seg = self.seg;
        let p = self.peer_id;
        let (state, epoch) = seg.guest_state_in(self.entry)?;
        if self.state == PeerState::Reserved
            && state == PeerState::Attached
            && epoch == self.epoch.wrapping_add(1)
        {
            self.state = state;
            self.epoch = epoch;
        }
        let nothing_left = || -> Result<bool> {
            Ok(moving == Moving::Sending || !seg.ring(p, Direction::GuestToHost).has_data()?)
        };
        let present =
            matches!(state, PeerState::Attached | PeerState::Reserved) && epoch == self.epoch;
        if !present {
            return if nothing_left()? {
                Err(Error::PeerGone { peer_id: p })
            } else {
                Ok(())
            };
        }
        let now = sys::monotonic_ns();
        if now.saturating_sub(self.holder.last_check_ns) >= LIVENESS_EVERY_NS {
            self.judge_holder(moving, now)?;
        }
        Ok(())
    }
}
