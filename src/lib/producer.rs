//! The sending end of one ring: the ring, the sender's pool its larger
//! payloads travel in, and what a sender remembers between sends.

use std::sync::Arc;

use crate::codec;
use crate::desc::{DESC_SIZE, Frame, INLINE_CAPACITY, MsgDesc};
use crate::error::{Error, Result};
use crate::header;
use crate::layout::Direction;
use crate::peer::{Presence, Publication};
use crate::pool::{Gate, SlotRef};
use crate::ready::Mark;
use crate::ring_end::RingEnd;
use crate::share::{HandedSlots, HostShare, host_share};
use crate::wait::{WaitStrategy, Waiting};
use crate::zerocopy::SlotLoan;

/// Asks the receiver's `presence`, if the send has one, whether the
/// receiver is still there at `moment`: an error if not, which becomes the
/// send's result. `None` for a send to the host, which does not move away
/// under a send as a guest can.
#[inline(always)]
fn check_receiver(presence: Option<Presence<'_>>, moment: Publication) -> Result<()> {
    match presence {
        Some(presence) => presence.check(moment),
        None => Ok(()),
    }
}

/// The sending end of guest `guest`'s ring in `direction`.
///
/// One process at a time acts as a producer (the role locks see to that
/// across processes), so the cached index and the pool hint are private
/// to it.
#[derive(Debug)]
pub(crate) struct Producer {
    end: RingEnd,
    /// The consumer's head as this producer last read it. It may be stale,
    /// but only behind: the consumer alone moves the head, and only
    /// forward. So the producer may think the ring fuller than it is (and
    /// then reads the shared head again), never emptier; while the copy
    /// says there is room, the consumer's cache line is not touched.
    cached_head: u32,
    /// Where the last slot was found; the next search starts there.
    pool_hint: u32,
    /// For the host's sends: how many of its slots one guest may hold (0:
    /// the fair share), so that a guest that stops receiving cannot take
    /// the pool from the others.
    host_slots_per_guest: u32,
    /// For the host's sends, where a share can stop one: the slots handed
    /// to the guest, by the host's own record (see `share::HostShare`).
    host_slots_handed: Option<HandedSlots>,
    /// For a guest's sends: its bit in the ready summary, set after each
    /// publication so that the host looks at this ring.
    ready: Option<Mark>,
}

impl Producer {
    /// The sending end of the ring `end` opened, picking up the
    /// consumer's head as it is now; `host_slots_per_guest` is the
    /// header's share (0: the fair share).
    pub(crate) fn new(end: RingEnd, host_slots_per_guest: u32) -> Result<Self> {
        let ready = match end.direction {
            Direction::GuestToHost => Some(Mark::new(&end.region, end.guest)?),
            Direction::HostToGuest => None,
        };
        let host_slots_handed = match end.direction {
            Direction::HostToGuest => HandedSlots::for_share(&end.layout, host_slots_per_guest),
            Direction::GuestToHost => None,
        };
        let mut producer = Producer {
            end,
            host_slots_per_guest,
            cached_head: 0,
            pool_hint: 0,
            host_slots_handed,
            ready,
        };
        producer.resync();
        Ok(producer)
    }

    /// Sets how this end waits.
    pub(crate) fn set_strategy(&mut self, strategy: WaitStrategy) {
        self.end.strategy = strategy;
    }

    /// How this end waits.
    pub(crate) fn strategy(&self) -> WaitStrategy {
        self.end.strategy
    }

    /// Re-reads the consumer's head (after the ring was reset under this
    /// producer, as reclaiming a dead guest does).
    pub(crate) fn resync(&mut self) {
        self.cached_head = self.end.ring.state().head;
        if let Some(handed) = &mut self.host_slots_handed {
            handed.reset();
        }
    }

    /// How many more descriptors the ring has room for now.
    pub(crate) fn room(&mut self) -> Result<u32> {
        self.end.ring.room(&mut self.cached_head)
    }

    /// What a sender waiting for room sleeps on: the consumer's head and
    /// the sender's pool's release count, as they are now.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub(crate) fn room_vigils(&self) -> Result<Vec<crate::wait::Vigil>> {
        Ok(vec![
            self.end.ring.producer_vigil(),
            self.end.pool.release_vigil(),
        ])
    }

    fn check_len(&self, len: usize) -> Result<()> {
        let max = self.end.layout.config.max_payload;
        if len > max as usize {
            return Err(Error::PayloadTooLarge { len, max });
        }
        Ok(())
    }

    fn ring_full(&self) -> Error {
        Error::RingFull {
            peer_id: self.end.guest,
            direction: self.end.direction,
        }
    }

    /// Waits until the ring has room for one more descriptor.
    #[inline(never)]
    fn wait_for_room(&mut self, waiting: &mut Waiting<'_>) -> Result<()> {
        while !self.end.ring.has_room(&mut self.cached_head, 1)? {
            if !self.end.ring.wait_for_space(self.cached_head, waiting)? {
                return Err(self.ring_full());
            }
        }
        Ok(())
    }

    /// Allocates a slot of the sender's pool, waiting until `deadline`;
    /// the host's sends also wait while the guest holds its share.
    fn alloc(&mut self, waiting: &mut Waiting<'_>) -> Result<SlotRef> {
        let pool = &self.end.pool;
        let sender = pool.owner();
        let Some(handed) = &mut self.host_slots_handed else {
            return pool.alloc(sender, &mut self.pool_hint, waiting, None);
        };
        let limit = || {
            host_share(
                &self.end.region,
                &self.end.layout,
                self.host_slots_per_guest,
            )
        };
        let mut share = HostShare::new(
            pool,
            &self.end.layout,
            self.end.guest,
            self.host_slots_per_guest,
            &limit,
            handed,
        );
        pool.alloc(
            sender,
            &mut self.pool_hint,
            waiting,
            Some(&mut share as &mut dyn Gate),
        )
    }

    /// The descriptor for a message, its payload copied inline or into a
    /// newly allocated slot handed to the receiver; also the slot, to free
    /// if the descriptor cannot be published.
    // Inlined into the send loops, with the codec's builders and
    // `to_bytes`: a descriptor returned through memory was read back wider
    // than its fields were written, a store-forwarding stall per message.
    #[inline(always)]
    fn encode(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        waiting: &mut Waiting<'_>,
    ) -> Result<(MsgDesc, Option<SlotRef>)> {
        if payload.len() <= INLINE_CAPACITY {
            return Ok((codec::inline(desc, payload), None));
        }
        let slot = self.alloc(waiting)?;
        let pool = &self.end.pool;
        if let Err(e) = self.end.region.write(pool.data_offset(slot.index), payload) {
            pool.free(slot);
            return Err(e.into());
        }
        pool.set_holder(slot, self.end.receiver());
        if let Some(handed) = &mut self.host_slots_handed {
            handed.push(slot);
        }
        Ok((codec::in_slot(desc, payload.len(), slot), Some(slot)))
    }

    /// Frees slots that were placed but will not be published.
    fn free_slots(&self, slots: &[SlotRef]) -> Result<()> {
        for &slot in slots {
            self.end.pool.free(slot);
        }
        Ok(())
    }

    /// Publishes encoded descriptors; on failure frees their slots.
    ///
    /// `presence` is asked just before publishing, so that a
    /// send that waited or copied a large payload does not publish to a
    /// guest that has left meanwhile, and again just after: a
    /// guest that left in between, with nobody in its entry since, took
    /// what it took before leaving (or dropped it, leaving), and will never
    /// read the rest. The slots of descriptors it did not take (the head
    /// is not past them) go back at once, and then the error is the result;
    /// those descriptors are dropped when the entry is next taken.
    fn publish(
        &mut self,
        descs: &[[u8; DESC_SIZE]],
        slots: &[SlotRef],
        presence: Option<Presence<'_>>,
    ) -> Result<()> {
        if let Err(e) = check_receiver(presence, Publication::Before) {
            self.free_slots(slots)?;
            return Err(e);
        }
        let start = self.end.ring.tail();
        let pushed = self.end.ring.push_batch(&mut self.cached_head, descs);
        if !matches!(pushed, Ok(true)) {
            self.free_slots(slots)?;
            pushed?;
            return Err(self.ring_full());
        }
        self.published(start, descs, presence)
    }

    /// After `descs` went out from ring index `start`: for a guest's send,
    /// marks the guest ready and rings the host's doorbell (the host looks
    /// where the summary points and may sleep on all its rings at once,
    /// not on this one), then asks `presence` whether the receiver is
    /// still there, and if not, takes back what it did not take.
    #[inline(always)]
    fn published(
        &self,
        start: u32,
        descs: &[[u8; DESC_SIZE]],
        presence: Option<Presence<'_>>,
    ) -> Result<()> {
        if let Some(ready) = &self.ready {
            ready.set();
            header::wake_host(&self.end.region)?;
        }
        match check_receiver(presence, Publication::After) {
            Ok(()) => Ok(()),
            Err(gone) => self.withdraw(start, descs, gone),
        }
    }

    /// After `descs` were published from ring index `start` and the
    /// receiver turned out `gone`: frees the slots of those it did not
    /// take, and fails with `gone` unless it took them all.
    #[cold]
    fn withdraw(&self, start: u32, descs: &[[u8; DESC_SIZE]], gone: Error) -> Result<()> {
        let head = self.end.ring.state().head;
        let taken = match head.wrapping_sub(start) {
            d if d as usize <= descs.len() => d as usize,
            _ => 0,
        };
        if taken == descs.len() {
            return Ok(());
        }
        let (pool, receiver) = (&self.end.pool, self.end.receiver());
        for desc in &descs[taken..] {
            codec::discard(pool, receiver, desc);
        }
        Err(gone)
    }

    /// Sends one message, waiting until `deadline` for room in the ring
    /// and then for a slot. A payload that fits in the descriptor takes
    /// the path here: the room check against the cached head, the
    /// descriptor built and written into its ring entry, the tail
    /// published.
    ///
    /// shm[impl shm.send.placement]
    // Inlined into the callers' send functions, the slot path kept out of
    // line: every call, every prologue and every descriptor passed through
    // memory is stores, and a send whose descriptor store waits for its
    // cache line holds all of them up behind it.
    #[inline(always)]
    pub(crate) fn send(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        waiting: &mut Waiting<'_>,
        presence: Option<Presence<'_>>,
    ) -> Result<()> {
        self.check_len(payload.len())?;
        if payload.len() > INLINE_CAPACITY {
            let (desc, slot) = self.place_in_slot(desc, payload, waiting)?;
            return self.publish(&[desc], slot.as_slice(), presence);
        }
        let mut tail = self.end.ring.tail();
        if !self.end.ring.fits_one(tail, self.cached_head) {
            self.wait_for_room(waiting)?;
            tail = self.end.ring.tail();
        }
        check_receiver(presence, Publication::Before)?;
        let bytes = codec::inline(desc, payload).to_bytes();
        self.end.ring.push_one(tail, &bytes);
        self.published(tail, &[bytes], presence)
    }

    /// For [`Producer::send`] of a payload that travels in a slot: waits
    /// for room first, so that a slot is never taken for a message that
    /// cannot be queued, then copies the payload into a slot; the
    /// descriptor comes back encoded, ready to publish.
    #[inline(never)]
    fn place_in_slot(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        waiting: &mut Waiting<'_>,
    ) -> Result<([u8; DESC_SIZE], Option<SlotRef>)> {
        self.wait_for_room(waiting)?;
        let (desc, slot) = self.encode(desc, payload, waiting)?;
        Ok((desc.to_bytes(), slot))
    }

    /// Sends `frames` in order, publishing as many descriptors at a time as
    /// the ring has room for. Every payload is checked before anything is
    /// sent. Returns how many were sent: all of them, or fewer if `deadline`
    /// passed while waiting for room or slots.
    ///
    /// shm[impl shm.send.batch]
    pub(crate) fn send_batch(
        &mut self,
        frames: &[Frame],
        waiting: &mut Waiting<'_>,
        presence: Option<Presence<'_>>,
    ) -> Result<usize> {
        for frame in frames {
            self.check_len(frame.payload().len())?;
        }
        let capacity = self.end.layout.config.ring_capacity as usize;
        let mut descs = Vec::with_capacity(frames.len().min(capacity));
        let mut slots = Vec::new();
        let mut sent = 0;
        while sent < frames.len() {
            match self.wait_for_room(waiting) {
                Ok(()) => {}
                Err(e) if e.is_retryable() && sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
            let state = self.end.ring.state();
            let room = (state.capacity - state.len().unwrap_or(state.capacity)) as usize;
            descs.clear();
            slots.clear();
            for frame in &frames[sent..sent + room.max(1).min(frames.len() - sent)] {
                // Only the first frame of a round may wait for a slot: the
                // receiver frees slots only after it sees messages, so what
                // is already placed is published before waiting for more.
                let placed = if descs.is_empty() {
                    self.encode(frame.desc, frame.payload(), waiting)
                } else {
                    self.encode(frame.desc, frame.payload(), &mut waiting.without_waiting())
                };
                match placed {
                    Ok((desc, slot)) => {
                        descs.push(desc.to_bytes());
                        slots.extend(slot);
                    }
                    Err(e) if e.is_retryable() && !descs.is_empty() => break,
                    Err(e) => {
                        self.free_slots(&slots)?;
                        if e.is_retryable() && sent > 0 {
                            return Ok(sent);
                        }
                        return Err(e);
                    }
                }
            }
            self.publish(&descs, &slots, presence)?;
            sent += descs.len();
        }
        Ok(sent)
    }

    /// Lends a slot of the sender's pool for a payload of `len` bytes,
    /// after making sure the ring has room for its descriptor.
    ///
    /// shm[impl shm.send.zero-copy]
    pub(crate) fn loan(&mut self, len: usize, waiting: &mut Waiting<'_>) -> Result<SlotLoan> {
        self.check_len(len)?;
        self.wait_for_room(waiting)?;
        let slot = self.alloc(waiting)?;
        Ok(SlotLoan::new(
            &self.end.pool,
            slot,
            len,
            self.end.leases.clone(),
        ))
    }

    /// Publishes a loaned slot to the receiver.
    pub(crate) fn commit(
        &mut self,
        mut loan: SlotLoan,
        presence: Option<Presence<'_>>,
    ) -> Result<()> {
        let (sender, receiver) = self.end.direction.ends(self.end.guest);
        if loan.pool != sender || !Arc::ptr_eq(&loan.leases, &self.end.leases) {
            return Err(Error::Corrupt(format!(
                "a slot loan from pool {} of another sender or segment was committed on the {} ring of peer {}",
                loan.pool.number(),
                self.end.direction,
                self.end.guest
            )));
        }
        self.end.pool.set_holder(loan.slot, receiver);
        if let Some(handed) = &mut self.host_slots_handed {
            handed.push(loan.slot);
        }
        let desc = codec::in_slot(loan.desc, loan.len, loan.slot);
        // From here the loan's slot belongs to the receiver (or, if the
        // publication fails, is freed by `publish`).
        loan.committed = true;
        self.publish(&[desc.to_bytes()], &[loan.slot], presence)
    }
}
