//! The receiving ends as a caller holds them: one ring's
//! ([`Receiver`]: a guest's from the host, or the host's from one guest),
//! and the host's from every guest at once ([`AnyReceiver`]).

use std::sync::Arc;

use crate::consumer::Consumer;
use crate::end_core::{Checks, EndCore, Side};
use crate::error::{Error, Result};
use crate::liveness::HolderStatus;
use crate::party::{IntoPeerId, Party, PeerId, PeerState, QuarantineReason};
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
use crate::readiness::Readiness;
use crate::ready::{Inbox, Picker, WORDS};
use crate::segment::Segment;
use crate::wait::{Deadline, Timeout, WaitStrategy, Waiting};
use crate::watch::{KeepAlive, Moving, OtherSide};
use crate::zerocopy::Received;

/// The receiving end of one ring: a guest's from the host
/// ([`crate::ShmGuest::receiver`]), or the host's from one guest
/// ([`crate::ShmHost::receiver`]).
///
/// It holds the ring's consuming side, the receiving role (a lock on the
/// segment file, taken at the first receive, so that no other process
/// receives from this ring meanwhile) and a watch on the sending side,
/// which ends any wait once that side is gone and has nothing left to read.
///
/// A received message is checked before anything is read through it
/// (`shm.recv.validate`), and its payload is lent where it lies: a slot
/// goes back to the sender's pool when the message is dropped
/// ([`Receiver::recv`]) or as the closure returns ([`Receiver::recv_with`]).
///
/// ```
/// use std::time::Duration;
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// let mut guest = ShmGuest::attach(host.region())?;
/// host.send(guest.peer_id(), Frame::new(MsgDesc::new(2, 7), vec![1; 1000]))?;
///
/// let rx = guest.receiver();
/// let sum = rx.recv_with(Duration::from_secs(1), |m| m.payload().iter().map(|&b| u64::from(b)).sum::<u64>());
/// assert_eq!(sum?, Some(1000));
/// // Nothing more is queued: the time runs out, the closure is not called.
/// assert_eq!(rx.recv_with(Timeout::NoWait, |m| m.desc().id)?, None);
/// # Ok::<(), shmhub::Error>(())
/// ```
#[derive(Debug)]
pub struct Receiver {
    /// The ring's consuming side, the receiving role, and the watch on
    /// the sender (`core.other`).
    core: EndCore<Consumer>,
}

impl Receiver {
    /// The receiving end on `side` of guest `guest`'s ring: the host's
    /// from the guest, or the guest's from the host.
    pub(crate) fn new(seg: &Arc<Segment>, guest: PeerId, side: Side) -> Result<Self> {
        Ok(Receiver {
            core: EndCore::open(seg, guest, side)?,
        })
    }

    /// Who sends what this end receives.
    pub fn from(&self) -> Party {
        self.core.other.party()
    }

    /// Sets how this end waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.end.set_strategy(strategy);
    }

    /// A file descriptor that becomes readable when a message comes to
    /// this end or the sender's process ends, for an event loop to wait
    /// on ([`Readiness`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the descriptors or the waker thread cannot be
    /// made; a corrupt-segment error.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::ring(&self.core.seg, self.core.end.ring().clone(), self.from())
    }

    /// Takes the receiving role now rather than at the first receive, so
    /// that no other process receives from this ring from here on; waits up
    /// to `timeout` for a process that holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] if another process still holds it when the time is up.
    pub fn take_role(&mut self, timeout: impl Into<Timeout>) -> Result<()> {
        self.ensure_role(&mut Deadline::of(timeout.into()))
    }

    #[inline]
    fn ensure_role(&mut self, deadline: &mut Deadline) -> Result<()> {
        if self.core.role.is_held() {
            return Ok(());
        }
        self.core.take_the_role(deadline)
    }

    /// Takes the receiving role without waiting, for a reclaim or a
    /// detach; false if another process holds it.
    pub(crate) fn try_take_role(&mut self) -> bool {
        self.ensure_role(&mut Deadline::no_wait()).is_ok()
    }

    /// Receives the next message, waiting up to `timeout` for one, with
    /// its payload in place until the returned value is dropped.
    /// `Ok(None)` when the time ran out.
    ///
    /// # Errors
    ///
    /// - the sending side gone ([`crate::ErrorKind::Gone`]) once nothing it
    ///   sent is left to read: the host said goodbye ([`Error::HostGone`];
    ///   an empty ring without waiting is `Ok(None)` even then) or died
    ///   ([`Error::HostDied`], judged every 100 ms while waiting), a guest
    ///   left or died ([`Error::PeerGone`], at once for an entry that is
    ///   Empty again); [`Error::PeerGone`] also when a guest's own entry
    ///   was reclaimed; [`Error::PeerState`] at once for a guest entry
    ///   nobody ever held;
    /// - for a message that fails validation (`shm.peer.quarantine`), on
    ///   the host's end [`Error::Quarantined`]: the guest is cut off; on a
    ///   guest's end [`Error::BadDescriptor`], after which the guest has
    ///   stopped and every later call fails with [`Error::HostBroke`];
    /// - [`Error::Busy`] when another process receives from this ring.
    ///
    /// shm[impl shm.recv.zero-copy]
    #[inline]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<Option<Received>> {
        self.recv_taking(timeout.into(), Consumer::try_recv)
    }

    /// Receives the next message, waiting up to `timeout` for one, and
    /// lends it, payload in place, to `read`; returns what `read` returned,
    /// or `Ok(None)` when the time ran out (then `read` was not called). A
    /// payload in a slot goes back to the sender's pool as `read` returns.
    ///
    /// The fastest receive: the message is read in the call's own frame,
    /// where [`Receiver::recv`] moves it out to the caller.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`]; `read` is not called for a message that
    /// fails validation.
    ///
    /// shm[impl shm.recv.borrowed]
    #[inline]
    pub fn recv_with<T>(
        &mut self,
        timeout: impl Into<Timeout>,
        read: impl FnOnce(&Received) -> T,
    ) -> Result<Option<T>> {
        let mut read = Some(read);
        self.recv_taking(timeout.into(), |end| end.try_recv_with(&mut read))
    }

    /// The receives: the checks before a look, one look with `take`, which
    /// takes the message off the ring the way the caller wants it, then a
    /// wait whose every look is `take`.
    #[inline(always)]
    fn recv_taking<T>(
        &mut self,
        timeout: Timeout,
        mut take: impl FnMut(&Consumer) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut deadline = Deadline::of(timeout);
        self.before(&mut deadline)?;
        // The result goes back whole, not taken apart and rebuilt: a
        // message moved between two layouts is copied across the stores
        // that just built it, and waits for them.
        match take(&self.core.end) {
            Ok(None) => {}
            Ok(found) => {
                self.took();
                return Ok(found);
            }
            Err(e) => return Err(self.core.broken(e)),
        }
        self.found_empty()?;
        let (end, mut checks) = self.checks()?;
        let mut waiting = Waiting {
            strategy: end.strategy(),
            deadline,
            stop: &mut || checks.check(),
        };
        // `take` is this end's `Consumer::try_recv` or `try_recv_with`,
        // so the look that sees a message takes it.
        let taken = end.ring().wait_to_take(&mut waiting, || take(end));
        let taken = taken.map_err(|e| self.core.broken(e))?;
        if taken.is_some() {
            self.took();
        }
        Ok(taken)
    }

    /// Receives up to `max` queued messages at once (one index update for
    /// all of them), waiting up to `timeout` for the first; `handle` gets
    /// each with its payload in place. Returns how many (0: the time ran
    /// out).
    ///
    /// The slots of messages `handle` drops (on this thread) go back to
    /// the sender's pool together as this returns, not one by one; a
    /// message kept past the batch is freed when it is dropped.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`]; a bad descriptor in the batch is reported
    /// after the good ones were handed over.
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: impl Into<Timeout>,
        mut handle: impl FnMut(Received),
    ) -> Result<usize> {
        let mut deadline = Deadline::of(timeout.into());
        self.before(&mut deadline)?;
        loop {
            let n = self
                .core
                .end
                .recv_batch(max, &mut handle)
                .map_err(|e| self.core.broken(e))?;
            if n > 0 {
                self.took();
                return Ok(n);
            }
            self.found_empty()?;
            if self.core.end.has_data() {
                continue;
            }
            let (end, mut checks) = self.checks()?;
            let mut waiting = Waiting {
                strategy: end.strategy(),
                deadline,
                stop: &mut || checks.check(),
            };
            let arrived = end.wait_for_data(&mut waiting)?;
            deadline = waiting.deadline;
            if !arrived {
                return Ok(0);
            }
            self.before(&mut Deadline::no_wait())?;
        }
    }

    /// What comes before a look at the ring: the receiving role (waited for
    /// within the deadline), then, for a guest, its entry still its own and
    /// a heartbeat if due; for the host, a refusal to wait on an entry
    /// nobody holds with nothing queued in it, which would only end with
    /// its timeout.
    #[inline(always)]
    fn before(&mut self, deadline: &mut Deadline) -> Result<()> {
        self.ensure_role(deadline)?;
        match &mut self.core.other {
            OtherSide::Host(watch) => watch.before(&self.core.seg),
            OtherSide::Guest(watch) => {
                let p = watch.peer_id();
                let (state, epoch) = watch.state(&self.core.seg)?;
                if state != PeerState::Empty || self.core.end.has_data() {
                    return Ok(());
                }
                // An entry a guest has held has seen it leave; one never
                // held is just empty.
                if epoch > 0 {
                    return Err(Error::PeerGone { peer_id: p });
                }
                Err(Error::PeerState {
                    peer_id: p,
                    state,
                    expected: "attached or reserved",
                })
            }
        }
    }

    /// After a look that found nothing: the host finishes the goodbye of a
    /// guest that left once everything it sent has been read.
    fn found_empty(&self) -> Result<()> {
        match &self.core.other {
            OtherSide::Host(_) => Ok(()),
            OtherSide::Guest(watch) => self.core.seg.finish_goodbye(watch.peer_id()),
        }
    }

    /// After a take: the host finishes the goodbye of a guest that left
    /// once the take left its ring empty, so that the receive that reads a
    /// departed guest's last message frees its entry (a caller that reads
    /// once and ends would otherwise leave it Goodbye for good).
    #[inline(always)]
    fn took(&self) {
        if let OtherSide::Guest(watch) = &self.core.other {
            if watch.has_left() && !self.core.end.has_data() {
                finish_taken_goodbye(&self.core.seg, watch.peer_id());
            }
        }
    }

    /// The consuming end, and the checks of a wait on it (for the host,
    /// on the guest's entry as it is now).
    fn checks(&mut self) -> Result<(&Consumer, Checks<'_>)> {
        let seg = &*self.core.seg;
        let checks = match &mut self.core.other {
            OtherSide::Host(watch) => Checks::Host(watch, seg),
            OtherSide::Guest(watch) => Checks::Guest(watch.begin(seg)?, Moving::Receiving),
        };
        Ok((&self.core.end, checks))
    }

    /// Keeps `membership` alive as long as this end.
    pub(crate) fn keep_alive(&mut self, membership: KeepAlive) {
        self.core.keep_alive(membership);
    }

    /// Takes everything queued without reading it, freeing the slots the
    /// descriptors name; how many were dropped.
    pub(crate) fn discard_all(&self) -> Result<usize> {
        self.core.end.discard_all()
    }

    /// Whether nothing is left to read, judged after the caller's own move
    /// of its entry (see `Consumer::is_empty_after_move`).
    pub(crate) fn is_empty_after_move(&self) -> bool {
        self.core.end.is_empty_after_move()
    }

    /// The guest's watch, for its heartbeat (a guest's receiver only).
    pub(crate) fn beat(&mut self) -> Result<()> {
        match &mut self.core.other {
            OtherSide::Host(watch) => watch.beat(&self.core.seg),
            OtherSide::Guest(_) => Ok(()),
        }
    }
}

/// Finishes the goodbye of guest `p` after a take that left its ring
/// empty by its head, if the guest has left (`shm.peer.detach`). The
/// message taken is the caller's whatever happens here: an entry found
/// broken is left for the next look at it, which cuts the guest off and
/// says so (`shm.peer.quarantine`), rather than failing a receive that
/// already holds a message.
///
/// shm[impl shm.peer.detach]
fn finish_taken_goodbye(seg: &Segment, p: PeerId) {
    if !seg.cut_off.contains(p) {
        let _ = seg.finish_goodbye(p);
    }
}

/// The host's receiving end from every guest at once: a receive takes the
/// next message from whichever guest has one, round-robin, so that a busy
/// guest cannot starve the others. It holds the host's [`Receiver`] for
/// each guest ([`AnyReceiver::from_guest`]); a receive from any guest
/// takes the receiving role of every guest's ring.
///
/// It looks only at the rings of the guests the header's ready summary
/// names (a guest sets its bit when it sends), so a receive costs the same
/// with 1 entry as with 255.
///
/// ```
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// let mut a = ShmGuest::attach(host.region())?;
/// let mut b = ShmGuest::attach(host.region())?;
/// b.send(Frame::new(MsgDesc::default(), b"from b".to_vec()))?;
/// a.send(Frame::new(MsgDesc::default(), vec![1; 5000]))?;
///
/// let inbox = host.any_receiver();
/// let mut got = Vec::new();
/// while let Some((from, len)) = inbox.recv_with(Timeout::NoWait, |from, m| (from, m.payload().len()))? {
///     got.push((from, len));
/// }
/// assert_eq!(got, [(a.peer_id(), 5000), (b.peer_id(), 6)]);
/// # Ok::<(), shmhub::Error>(())
/// ```
#[derive(Debug)]
pub struct AnyReceiver {
    seg: Arc<Segment>,
    /// The receiving end from each guest (guest `p` at `p - 1`).
    receivers: Vec<Receiver>,
    /// Which ring to look at next (the header's ready summary).
    picker: Picker,
    strategy: WaitStrategy,
    /// Whether every guest's receiving role is held already.
    all_roles: bool,
    /// Each entry's epoch when this end was made (guest `p` at `p - 1`):
    /// one that moved since was claimed, by a guest that counts as seen
    /// even if it left before any count (`shm.host.no-guests`).
    epochs: Vec<u32>,
}

impl AnyReceiver {
    /// The host's receiving ends of `seg`, one per guest.
    pub(crate) fn new(seg: &Arc<Segment>) -> Result<Self> {
        // Entries another host process cut off stay cut off here.
        for p in seg.layout.guests() {
            if seg.peer(p).raw_state()? == PeerState::Quarantined.to_u32() {
                seg.cut_off.insert(p);
            }
        }
        Ok(AnyReceiver {
            receivers: seg
                .layout
                .guests()
                .map(|p| Receiver::new(seg, p, Side::Host))
                .collect::<Result<_>>()?,
            picker: Picker::new(&seg.region, seg.layout.config.max_guests as usize)?,
            seg: seg.clone(),
            strategy: WaitStrategy::default(),
            all_roles: false,
            epochs: seg
                .layout
                .guests()
                .map(|p| Ok(seg.peer(p).raw_state_and_epoch()?.1))
                .collect::<Result<_>>()?,
        })
    }

    /// The receiving end from guest `peer_id` alone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`] for an id that is not a guest of this
    /// segment.
    pub fn from_guest(&mut self, peer_id: impl IntoPeerId) -> Result<&mut Receiver> {
        let p = self.seg.guest_id(peer_id)?;
        Ok(&mut self.receivers[p.index()])
    }

    /// A file descriptor that becomes readable when a message comes from
    /// any guest or a guest's process ends, for an event loop to wait on
    /// ([`Readiness`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the descriptors or the waker thread cannot be
    /// made; a corrupt-segment error.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub fn readiness(&self) -> Result<Readiness> {
        Readiness::host(&self.seg)
    }

    /// Sets how this end, and each guest's, waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
        for receiver in &mut self.receivers {
            receiver.set_wait_strategy(strategy);
        }
    }

    /// Whether a receive from any guest waits on once every guest has gone
    /// (none attached, reserved or leaving), for new guests to come: a
    /// host that serves whoever attaches says yes. By default (no) such a
    /// receive fails with [`Error::NoGuests`], as a `std::sync::mpsc`
    /// receive fails once every sender is gone, so that `recv()` never
    /// blocks for good on an empty table. Before any guest was seen, a
    /// receive waits either way (for the first); a guest that claimed an
    /// entry since this end was made (with its host) counts as seen, even
    /// one that left before the first receive.
    ///
    /// shm[impl shm.host.no-guests]
    pub fn wait_for_guests(&mut self, yes: bool) {
        self.picker.wait_for_guests(yes);
    }

    /// Takes the receiving role of every guest's ring now rather than at
    /// the first receive, so that no other process receives as the host
    /// from here on; waits up to `timeout` for a process that holds one.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] if another process still holds one when the time is up.
    pub fn take_roles(&mut self, timeout: impl Into<Timeout>) -> Result<()> {
        self.ensure_roles(&mut Deadline::of(timeout.into()))
    }

    fn ensure_roles(&mut self, deadline: &mut Deadline) -> Result<()> {
        if self.all_roles {
            return Ok(());
        }
        for receiver in &mut self.receivers {
            receiver.ensure_role(deadline)?;
        }
        self.all_roles = true;
        Ok(())
    }

    /// Receives the next message from any guest, waiting up to `timeout`,
    /// with the id of the guest that sent it; the payload stays in place
    /// until the returned value is dropped. `Ok(None)` when the time ran
    /// out.
    ///
    /// # Errors
    ///
    /// - [`Error::Quarantined`] once for a guest found breaking the
    ///   protocol (a message that fails validation, a bad entry): it is cut
    ///   off, and the next call serves the others;
    /// - [`Error::NoGuests`] while waiting once every guest has gone, after
    ///   one was there, unless [`AnyReceiver::wait_for_guests`] says to
    ///   wait for new ones;
    /// - [`Error::Busy`] when another process receives as the host.
    ///
    /// shm[impl shm.host.fair]
    pub fn recv(&mut self, timeout: impl Into<Timeout>) -> Result<Option<(PeerId, Received)>> {
        self.recv_taking(timeout.into(), |end, p| Ok(end.try_recv()?.map(|r| (p, r))))
    }

    /// Receives the next message from any guest, waiting up to `timeout`,
    /// and lends it, payload in place, to `read` with the id of the guest
    /// that sent it; returns what `read` returned, or `Ok(None)` when the
    /// time ran out (then `read` was not called). A payload in a slot goes
    /// back to the guest's pool as `read` returns.
    ///
    /// # Errors
    ///
    /// As [`AnyReceiver::recv`]; `read` is not called for a message that
    /// fails validation.
    ///
    /// shm[impl shm.recv.borrowed]
    pub fn recv_with<T>(
        &mut self,
        timeout: impl Into<Timeout>,
        read: impl FnOnce(PeerId, &Received) -> T,
    ) -> Result<Option<T>> {
        let mut read = Some(read);
        // A message is taken once and `read` is there until then, so the
        // inner `None` (no `read` left) never happens.
        let taken = self.recv_taking(timeout.into(), |end, p| {
            end.try_take(|received| read.take().map(|read| read(p, &received)))
        })?;
        Ok(taken.flatten())
    }

    /// The receives from any guest: a look at the rings the ready summary
    /// names, each with `take`, until one finds something or the time runs
    /// out (`Picker::receive`).
    ///
    /// shm[impl shm.host.ready]
    #[inline(always)]
    fn recv_taking<T>(
        &mut self,
        timeout: Timeout,
        take: impl FnMut(&Consumer, PeerId) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut deadline = Deadline::of(timeout);
        self.ensure_roles(&mut deadline)?;
        let mut rings = Rings {
            seg: &self.seg,
            receivers: &self.receivers,
            epochs: &self.epochs,
            take,
        };
        self.picker
            .receive(&mut rings, self.strategy, &mut deadline)
    }
}

/// The guests' rings and entries as a receive from any guest sees them:
/// `take` takes a message off a ring the way the caller wants it.
struct Rings<'a, F> {
    seg: &'a Segment,
    receivers: &'a [Receiver],
    /// The entries' epochs when the receiving end was made.
    epochs: &'a [u32],
    take: F,
}

impl<F> Rings<'_, F> {
    /// Guest `p`'s ring (the summary names only guests of the segment).
    #[inline(always)]
    fn end(&self, p: PeerId) -> &Consumer {
        &self.receivers[p.index()].core.end
    }
}

// What a look at a guest's ring or entry finds broken there is the
// guest's own doing: the guest is cut off (`shm.peer.quarantine`), the
// error says so once, and the receive goes on with the others after it.
impl<T, F: FnMut(&Consumer, PeerId) -> Result<Option<T>>> Inbox for Rings<'_, F> {
    type Taken = T;

    #[inline(always)]
    fn take(&mut self, p: PeerId) -> Result<Option<T>> {
        let receiver = &self.receivers[p.index()];
        let taken = (self.take)(&receiver.core.end, p)
            .map_err(|e| self.seg.cut_off_for(p, QuarantineReason::Ring, e))?;
        if taken.is_some() {
            receiver.took();
        }
        Ok(taken)
    }

    fn is_empty_now(&self, p: PeerId) -> bool {
        self.end(p).is_empty_now()
    }

    fn has_left(&self, p: PeerId) -> Result<bool> {
        Ok(self.seg.guest_state(p)?.0 == PeerState::Goodbye)
    }

    fn finish_goodbye(&self, p: PeerId) -> Result<()> {
        // An entry another process marked (an eviction, say) is cut off
        // here too, once its ring is found empty.
        if self.seg.guest_state(p)?.0 != PeerState::Goodbye {
            return Ok(());
        }
        self.seg
            .finish_goodbye(p)
            .map_err(|e| self.seg.cut_off_for(p, QuarantineReason::Entry, e))
    }

    #[inline(always)]
    fn cut_off(&self) -> [u64; WORDS] {
        self.seg.cut_off.words()
    }

    fn has_guests(&self) -> Result<bool> {
        let seg = self.seg;
        for p in seg.layout.guests() {
            if seg.cut_off.contains(p) {
                continue;
            }
            let sends = match PeerState::from_u32(seg.peer(p).raw_state()?) {
                Some(PeerState::Reserved | PeerState::Goodbye) => true,
                // An attached guest whose process died sends nothing more
                // (what it sent before is found by the looks).
                Some(PeerState::Attached) => {
                    let entry = seg.peer(p).snapshot()?;
                    seg.judge(&entry) != HolderStatus::Dead || !self.end(p).is_empty_now()
                }
                _ => false,
            };
            if sends {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn claimed_since_start(&self) -> Result<bool> {
        for (p, &then) in self.seg.layout.guests().zip(self.epochs) {
            if self.seg.peer(p).raw_state_and_epoch()?.1 != then {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::Direction;
    use crate::mmap::OwnerCheck;
    use crate::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};

    fn frame(text: &str) -> Frame {
        Frame::new(MsgDesc::default(), text.as_bytes().to_vec())
    }

    /// A host and guest 1, which sent `messages` and left with them unread.
    fn left_with(messages: &[&str]) -> (tempfile::TempDir, ShmHost) {
        let dir = tempfile::tempdir().unwrap();
        let host = ShmHost::create(dir.path().join("seg"), SegmentConfig::default()).unwrap();
        let mut guest = ShmGuest::attach(host.region()).unwrap();
        for m in messages {
            guest.send(frame(m)).unwrap();
        }
        guest.detach().unwrap();
        assert_eq!(host.status().peer(1).unwrap().state, PeerState::Goodbye);
        (dir, host)
    }

    // Each receive that takes a departed guest's last message frees its
    // entry: one from that guest (each form) and one from any guest.
    // shm[verify shm.peer.detach]
    #[test]
    fn the_receive_that_takes_the_last_message_of_a_goodbye_frees_the_entry() {
        let state = |host: &ShmHost| host.status().peer(1).unwrap().state;
        let (_dir, mut host) = left_with(&["a", "b"]);
        let first = host.receiver(1).unwrap().recv(Timeout::NoWait).unwrap();
        assert_eq!(first.unwrap().payload(), b"a");
        assert_eq!(state(&host), PeerState::Goodbye, "a message is left");
        let last = host.receiver(1).unwrap().recv(Timeout::NoWait).unwrap();
        assert_eq!(last.unwrap().payload(), b"b");
        assert_eq!(state(&host), PeerState::Empty);

        let (_dir, mut host) = left_with(&["a", "b"]);
        let mut got = Vec::new();
        let n = host
            .receiver(1)
            .unwrap()
            .recv_batch(8, Timeout::NoWait, |m| got.push(m.payload().to_vec()))
            .unwrap();
        assert_eq!((n, got), (2, vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(state(&host), PeerState::Empty);

        let (_dir, mut host) = left_with(&["a", "b"]);
        let inbox = host.any_receiver();
        let read = |inbox: &mut AnyReceiver| {
            inbox
                .recv_with(Timeout::NoWait, |p, m| (p.get(), m.payload().to_vec()))
                .unwrap()
        };
        assert_eq!(read(inbox), Some((1, b"a".to_vec())));
        assert_eq!(read(inbox), Some((1, b"b".to_vec())));
        assert_eq!(state(&host), PeerState::Empty);
    }

    // A Goodbye entry whose last message was taken by a receive that did
    // not finish the goodbye (the take came just before the guest's move,
    // or the receiving process died after it) is freed by a reservation
    // and by a reclaim, which does not list it.
    // shm[verify shm.peer.reclaim]
    #[test]
    fn a_goodbye_left_with_nothing_to_read_is_freed_by_a_reservation_or_a_reclaim() {
        for by_reservation in [true, false] {
            let (dir, mut host) = left_with(&["bye"]);
            // A take that looks no further, as a receive cut short does.
            let other = Segment::open_path(&dir.path().join("seg"), OwnerCheck::Required).unwrap();
            let taken = other
                .consumer(PeerId::at_index(0), Direction::GuestToHost)
                .unwrap();
            assert_eq!(taken.try_recv().unwrap().unwrap().payload(), b"bye");
            assert_eq!(host.status().peer(1).unwrap().state, PeerState::Goodbye);
            if by_reservation {
                assert_eq!(host.reserve_peer().unwrap(), 1);
            } else {
                assert_eq!(host.reclaim_dead().unwrap(), Vec::<PeerId>::new());
                assert_eq!(host.status().peer(1).unwrap().state, PeerState::Empty);
            }
        }
    }
}
