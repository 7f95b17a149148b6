//! The receiving end of one ring: takes descriptors off it, checks them,
//! and lends out their payloads.

use crate::codec;
use crate::desc::{DESC_SIZE, MsgDesc};
use crate::error::Result;
use crate::ring_end::RingEnd;
use crate::wait::{WaitStrategy, Waiting, fence_publishers_or_wait};
use crate::zerocopy::{BatchFrees, Received};

/// Most descriptors taken from a ring in one batch.
pub(crate) const RECV_BATCH: usize = 32;

/// The receiving end of guest `guest`'s ring in `direction`.
///
/// It caches nothing of the producer's: each descriptor carries a phase
/// bit that says whether it is new, so the consumer reads the descriptor
/// at its head and never the producer's index.
#[derive(Debug)]
pub(crate) struct Consumer {
    end: RingEnd,
}

impl Consumer {
    /// The receiving end of the ring `end` opened.
    pub(crate) fn new(end: RingEnd) -> Self {
        Consumer { end }
    }

    /// The ring this end takes from.
    pub(crate) fn ring(&self) -> &crate::ring::Ring {
        &self.end.ring
    }

    /// Sets how this end waits.
    pub(crate) fn set_strategy(&mut self, strategy: WaitStrategy) {
        self.end.strategy = strategy;
    }

    /// Takes the next message, if one is queued, payload in place.
    // Inlined into the receive calls: a received message passed up through
    // calls is copied at each, and the copies are stores on the path of
    // every round trip.
    #[inline(always)]
    pub(crate) fn try_recv(&self) -> Result<Option<Received>> {
        self.try_take(|received| received)
    }

    /// Takes the next message, if one is queued, and lends it, payload in
    /// place, to `read`, which runs at most once: it is taken out of its
    /// `Option` only when a message is there. Returns what `read` returned.
    #[inline(always)]
    pub(crate) fn try_recv_with<T>(
        &self,
        read: &mut Option<impl FnOnce(&Received) -> T>,
    ) -> Result<Option<T>> {
        // A message is taken once per call and `read` is there until then,
        // so the inner `None` (no `read` left) never happens.
        Ok(self
            .try_take(|received| read.take().map(|read| read(&received)))?
            .flatten())
    }

    /// Pops the next descriptor, if there is one, checks it, and hands the
    /// message to `hand_over`, which is called only then.
    // The message stays in this frame until `hand_over` has it: a borrowed
    // receive (`shm.recv.borrowed`) reads it here, where a message moved
    // out to a caller is copied on the way, across the stores that built it.
    #[inline(always)]
    pub(crate) fn try_take<T>(&self, hand_over: impl FnOnce(Received) -> T) -> Result<Option<T>> {
        let mut bytes = [0u8; DESC_SIZE];
        if !self.end.ring.pop_raw_into(&mut bytes) {
            return Ok(None);
        }
        let received = self.decode(MsgDesc::from_ring_bytes(&bytes))?;
        Ok(Some(hand_over(received)))
    }

    #[inline(always)]
    fn decode(&self, desc: MsgDesc) -> Result<Received> {
        let receiver = self.end.receiver();
        codec::decode(&self.end.pool, receiver, desc, &self.end.leases)
    }

    /// Takes up to `max` (at most [`RECV_BATCH`], at least one) new
    /// descriptors with one head update and hands each valid message,
    /// payload in place, to `handle`. If any descriptor was bad, the first
    /// such error is returned after the valid ones were handed over.
    /// Returns how many descriptors were taken.
    pub(crate) fn recv_batch(&self, max: usize, handle: &mut dyn FnMut(Received)) -> Result<usize> {
        let mut batch = [[0u8; DESC_SIZE]; RECV_BATCH];
        let n = self
            .end
            .ring
            .pop_batch(&mut batch[..max.clamp(1, RECV_BATCH)]);
        // The slots of messages the handler drops go back together when
        // this returns (a lone message's at once).
        let sender = self.end.sender();
        let _frees = (n > 1).then(|| BatchFrees::start(&self.end.leases, sender));
        let mut first_error = None;
        for desc in &batch[..n] {
            match self.decode(MsgDesc::from_bytes(desc)) {
                Ok(received) => handle(received),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(n), Err)
    }

    /// Whether a new descriptor is at the head.
    pub(crate) fn has_data(&self) -> bool {
        self.end.ring.has_data()
    }

    /// Whether nothing is there to read, judged with sequentially
    /// consistent loads (the host's sleep handshake across many rings).
    pub(crate) fn is_empty_now(&self) -> bool {
        self.end.ring.is_empty_now()
    }

    /// [`Consumer::is_empty_now`] for a guest that has just moved its
    /// entry (leaving it, or claiming it): a producer may publish without
    /// a fence (`shm.ring.wake`), so the publishers' barrier runs first,
    /// where that producer's fence would have been.
    pub(crate) fn is_empty_after_move(&self) -> bool {
        fence_publishers_or_wait();
        self.is_empty_now()
    }

    /// Waits until there is something to read, or as `waiting` says;
    /// returns whether there is.
    pub(crate) fn wait_for_data(&self, waiting: &mut Waiting<'_>) -> Result<bool> {
        self.end.ring.wait_for_data(waiting)
    }

    /// How this end waits.
    pub(crate) fn strategy(&self) -> WaitStrategy {
        self.end.strategy
    }

    /// Takes everything queued without reading it, freeing the slots the
    /// descriptors name (the receiver left, or the entry is being reset).
    /// Returns how many descriptors were dropped.
    pub(crate) fn discard_all(&self) -> Result<usize> {
        let (pool, receiver) = (&self.end.pool, self.end.receiver());
        self.end.ring.drain(|desc| {
            codec::discard(pool, receiver, desc);
            Ok(())
        })
    }
}
