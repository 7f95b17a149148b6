//! The sending end of one ring, as a caller holds it: the host's towards
//! one guest, or a guest's towards the host.

use std::sync::Arc;

use crate::desc::{Frame, MsgDesc};
use crate::end_core::{Checks, EndCore, Side};
use crate::error::Result;
use crate::party::{Party, PeerId};
use crate::producer::Producer;
use crate::segment::Segment;
use crate::wait::{Deadline, Timeout, WaitStrategy, Waiting};
use crate::watch::{KeepAlive, Moving, OtherSide};
use crate::zerocopy::SlotLoan;

/// The sending end of one ring: the host's towards one guest
/// ([`crate::ShmHost::sender`]), or a guest's towards the host
/// ([`crate::ShmGuest::sender`]).
///
/// It holds the ring's producing side, the sender's pool (a payload larger
/// than a descriptor's inline bytes travels in one of its slots), the
/// sending role (a lock on the segment file, taken at the first send, so
/// that no other process sends on this ring meanwhile) and a watch on the
/// receiving side, which ends any wait once that side is gone.
///
/// Every call takes one [`Timeout`]: how long to wait for room in the
/// ring and a free slot (`Timeout::NoWait`: not at all; a `Duration`; or
/// `None`/`Timeout::Never`: as long as it takes).
///
/// ```
/// use std::time::Duration;
/// use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout, msg_type};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// let mut guest = ShmGuest::attach(host.region())?;
/// let to_guest = host.sender(guest.peer_id())?;
/// to_guest.send(MsgDesc::new(msg_type::DATA, 1), b"hello", Timeout::NoWait)?;
/// to_guest.send(MsgDesc::new(msg_type::DATA, 2), &[7; 3000], Duration::from_secs(1))?;
///
/// let rx = guest.receiver();
/// assert_eq!(rx.recv(Timeout::NoWait)?.unwrap().payload(), b"hello");
/// assert_eq!(rx.recv(Timeout::NoWait)?.unwrap().payload().len(), 3000);
/// # Ok::<(), shmhub::Error>(())
/// ```
#[derive(Debug)]
pub struct Sender {
    /// The ring's producing side, the sending role, and the watch on the
    /// receiver (`core.other`).
    core: EndCore<Producer>,
}

impl Sender {
    /// The sending end on `side` of guest `guest`'s ring: the host's
    /// towards the guest, or the guest's towards the host.
    pub(crate) fn new(seg: &Arc<Segment>, guest: PeerId, side: Side) -> Result<Self> {
        Ok(Sender {
            core: EndCore::open(seg, guest, side)?,
        })
    }

    /// Who receives what this end sends.
    pub fn to(&self) -> Party {
        self.core.other.party()
    }

    /// What this end sees of its ring and pool now, taken just before a
    /// send that may find no room: given to
    /// [`crate::Readiness::tell_when_room`] after such a send, it makes
    /// the readiness descriptor readable once room comes.
    ///
    /// # Errors
    ///
    /// A corrupt-segment error.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub fn room_mark(&self) -> Result<crate::readiness::RoomMark> {
        Ok(crate::readiness::RoomMark {
            vigils: self.core.end.room_vigils()?,
        })
    }

    /// How many more messages the ring has room for now: a
    /// [`Sender::send_batch`] of that many inline messages (up to
    /// [`crate::INLINE_CAPACITY`] bytes each) does not wait for the ring;
    /// larger payloads also need free slots in the pool. The receiver may
    /// take more at any moment, so the room only grows until this end
    /// sends. A sender with many receivers can use it to send to each in
    /// batches, and so wake each once per batch.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let config = SegmentConfig { ring_capacity: 8, ..SegmentConfig::default() };
    /// let mut host = ShmHost::create_heap(config)?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let tx = host.sender(guest.peer_id())?;
    /// assert_eq!(tx.room()?, 8);
    /// tx.send(MsgDesc::default(), b"one", None)?;
    /// assert_eq!(tx.room()?, 7);
    /// guest.recv()?;
    /// assert_eq!(host.sender(guest.peer_id())?.room()?, 8);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A corrupt-segment error: the receiver's index is more than a ring
    /// away from this end's.
    pub fn room(&mut self) -> Result<usize> {
        let room = self.core.end.room().map_err(|e| self.core.broken(e))?;
        Ok(room as usize)
    }

    /// Sets how this end waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.core.end.set_strategy(strategy);
    }

    /// Takes the sending role now rather than at the first send, waiting
    /// up to `timeout` for another process that holds it.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Busy`] if another process still holds it when the
    /// time is up.
    pub fn take_role(&mut self, timeout: impl Into<Timeout>) -> Result<()> {
        self.core.take_the_role(&mut Deadline::of(timeout.into()))
    }

    /// Sends one message: `desc` (type, id, method) with `payload`, copied
    /// inline into the descriptor or into a slot of the sender's pool.
    /// Waits up to `timeout` for room in the ring and, for a payload larger
    /// than a descriptor's inline bytes, a free slot.
    ///
    /// # Errors
    ///
    /// - [`crate::Error::PayloadTooLarge`] before anything is written;
    /// - the retryable [`crate::Error::RingFull`],
    ///   [`crate::Error::PoolExhausted`] or [`crate::Error::ShareExhausted`]
    ///   when the time ran out (nothing was sent);
    /// - the receiving side gone ([`crate::ErrorKind::Gone`]): a guest that
    ///   left or died while this waited, or a host that said goodbye or
    ///   died; [`crate::Error::PeerState`] at once for an entry that is
    ///   neither attached nor reserved;
    /// - [`crate::Error::Busy`] when another process sends on this ring (a
    ///   role another process keeps is waited for within the timeout, but
    ///   not without one: it is not backpressure);
    /// - a corrupt-segment error.
    ///
    /// shm[impl shm.send.backpressure]
    #[inline(always)]
    pub fn send(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        let mut deadline = Deadline::of(timeout.into());
        let (end, mut checks) = self.begin(&mut deadline)?;
        let presence = checks.presence();
        let mut stop = || checks.check();
        let mut waiting = Waiting::new(end.strategy(), deadline, &mut stop);
        let sent = end.send(desc, payload, &mut waiting, presence);
        sent.map_err(|e| self.core.broken(e))
    }

    /// Sends `frames` in order, publishing as many descriptors at once as
    /// the ring has room for (one index update and at most one wake per
    /// round). Returns how many were sent: all, or fewer if the time ran
    /// out first.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`]; an oversized frame anywhere in the batch is
    /// refused before anything is sent.
    ///
    /// shm[impl shm.send.batch]
    pub fn send_batch(&mut self, frames: &[Frame], timeout: impl Into<Timeout>) -> Result<usize> {
        let mut deadline = Deadline::of(timeout.into());
        let (end, mut checks) = self.begin(&mut deadline)?;
        let presence = checks.presence();
        let mut stop = || checks.check();
        let mut waiting = Waiting::new(end.strategy(), deadline, &mut stop);
        let sent = end.send_batch(frames, &mut waiting, presence);
        sent.map_err(|e| self.core.broken(e))
    }

    /// Lends a slot of the sender's pool for a `len`-byte payload, once the
    /// ring has room for its descriptor: write the payload in place, then
    /// [`Sender::commit`]. A loan dropped without a commit gives its slot
    /// back.
    ///
    /// ```
    /// use shmhub::{SegmentConfig, ShmGuest, ShmHost, Timeout};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let tx = guest.sender();
    /// let mut loan = tx.loan(4096, Timeout::NoWait)?;
    /// loan.as_mut_slice().fill(0xAB);
    /// tx.commit(loan)?;
    /// let (from, got) = host.any_receiver().recv(Timeout::NoWait)?.unwrap();
    /// assert_eq!(from, guest.peer_id());
    /// assert!(got.payload().iter().all(|&b| b == 0xAB));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    ///
    /// shm[impl shm.send.zero-copy]
    pub fn loan(&mut self, len: usize, timeout: impl Into<Timeout>) -> Result<SlotLoan> {
        let mut deadline = Deadline::of(timeout.into());
        let (end, mut checks) = self.begin(&mut deadline)?;
        let mut stop = || checks.check();
        let mut waiting = Waiting::new(end.strategy(), deadline, &mut stop);
        let lent = end.loan(len, &mut waiting);
        lent.map_err(|e| self.core.broken(e))
    }

    /// Sends a slot lent by [`Sender::loan`] on this end.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupt`] for a loan made by another end or segment;
    /// the receiving side gone, as for a send (the slot goes back to the
    /// pool); [`crate::Error::RingFull`] only if the ring was filled
    /// behind the loan's back.
    pub fn commit(&mut self, loan: SlotLoan) -> Result<()> {
        let mut deadline = Deadline::no_wait();
        let (end, checks) = self.begin(&mut deadline)?;
        let presence = checks.presence();
        end.commit(loan, presence)
    }

    /// What every send does first: takes the sending role (waited for
    /// within the deadline, but never without one) and checks that the
    /// receiving side is there to send to; returns the producing end and
    /// the checks for the send's waits.
    #[inline(always)]
    fn begin(&mut self, deadline: &mut Deadline) -> Result<(&mut Producer, Checks<'_>)> {
        if !self.core.role.is_held() {
            let mut no_wait = Deadline::no_wait();
            let wait = if deadline.is_unlimited() {
                &mut no_wait
            } else {
                &mut *deadline
            };
            self.core.take_the_role(wait)?;
        }
        let seg = &*self.core.seg;
        let checks = match &mut self.core.other {
            OtherSide::Host(watch) => {
                watch.before_sending(seg)?;
                Checks::Host(watch, seg)
            }
            OtherSide::Guest(watch) => {
                Checks::Guest(watch.begin(seg)?.accepting()?, Moving::Sending)
            }
        };
        Ok((&mut self.core.end, checks))
    }

    /// Keeps `membership` alive as long as this end.
    pub(crate) fn keep_alive(&mut self, membership: KeepAlive) {
        self.core.keep_alive(membership);
    }

    /// Picks up the ring as it is now, after it was reset under this end
    /// (reclaiming a dead guest does).
    pub(crate) fn resync(&mut self) {
        self.core.end.resync();
    }

    /// Takes the sending role without waiting, for a reclaim; false if
    /// another process holds it.
    pub(crate) fn try_take_role(&mut self) -> bool {
        let what = self.core.role_name();
        self.core
            .role
            .ensure(self.core.seg.lock_file(), &mut Deadline::no_wait(), || what)
            .is_ok()
    }
}
