//! Single-producer single-consumer descriptor rings.
//!
//! A ring is a control block of three cache lines followed by `capacity`
//! 64-byte descriptors. The producer's line holds the tail (next index to
//! write), the consumer's line the head (next index to read), and the third
//! line the two waiting flags, written only by a side about to sleep, and
//! each side's word saying whether it publishes fenced for now (a sleeper
//! then needs no barrier, `wait::publish_advertised`).
//! Indices are free-running `u32`s.
//!
//! A descriptor says itself whether it is new: bit 15 of its flags is a
//! *phase* bit that the producer sets to `1` on even laps of the ring and
//! `0` on odd ones (a fresh ring is all zero, so nothing is new). The
//! producer writes bytes 4..64 first, then the first word (type, flags)
//! with release ordering; a spinning consumer polls only the descriptor at
//! its head, so a message costs it one cache-line transfer, not two (index,
//! then descriptor). The tail is still published after every batch, for
//! sleepers (who wait on it with a futex) and for inspection.
//!
//! shm[impl shm.ring.spsc]

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::desc::{DESC_SIZE, FLAG_PHASE};
use crate::error::{Error, Result};
use crate::layout::RING_HEADER_SIZE;
use crate::region::{Cells, Region, RegionError, Word};
use crate::sys;
use crate::wait::{
    Announce, Asleep, Waiting, any_asleep, publish_advertised, sleep_unless, wait_until,
};

/// Byte offsets inside a ring's control block.
pub mod field {
    /// `u32`: next index the producer writes (producer's cache line).
    pub const TAIL: u64 = 0;
    /// `u32`: next index the consumer reads (consumer's cache line).
    pub const HEAD: u64 = 64;
    /// `u32`: non-zero while the producer sleeps waiting for space.
    pub const PRODUCER_WAITING: u64 = 128;
    /// `u32`: non-zero while the consumer sleeps waiting for data.
    pub const CONSUMER_WAITING: u64 = 132;
    /// `u32`: non-zero while the producer publishes the tail fenced.
    pub const PRODUCER_FENCES: u64 = 136;
    /// `u32`: non-zero while the consumer publishes the head fenced.
    pub const CONSUMER_FENCES: u64 = 140;
    /// `u32`: non-zero while the producer sleeps until the head reaches
    /// [`ROOM_AT`].
    pub const ROOM_SLEEPERS: u64 = 144;
    /// `u32`: the head a producer counted in [`ROOM_SLEEPERS`] waits for.
    pub const ROOM_AT: u64 = 148;
}

/// Longest sleep of a producer waiting for room: woken only once the
/// head reaches its `room_at`, it would otherwise sleep through a
/// consumer that took a few descriptors and then stopped (waiting, say,
/// for this very producer elsewhere) as long as a sleep may last.
const ROOM_NAP: Duration = Duration::from_millis(10);

/// Whether moving the head `moved` places on from `old` brings it to
/// `room_at` or past it, in wrapping indices (`shm.ring.room`, rule 2).
#[inline(always)]
fn brings_head_to(room_at: u32, old: u32, moved: u32) -> bool {
    room_at.wrapping_sub(old).wrapping_sub(1) < moved
}

/// The phase bit in a descriptor's first 32-bit word (bit 15 of its flags).
const PHASE_BIT: u32 = (FLAG_PHASE as u32) << 16;

/// The phase bit a descriptor written at `index` carries: set on even
/// laps (`index / capacity` even, which for a power of two is the
/// capacity's bit of the index clear: a mask, not a division). Indices
/// wrap at 2^32, an even number of laps, so the phase runs on unbroken.
///
/// shm[impl shm.wrap]
#[inline(always)]
fn phase(index: u32, capacity: u32) -> u32 {
    if index & capacity == 0 { PHASE_BIT } else { 0 }
}

/// Whether `first`, the first word of the descriptor at `index`, carries
/// that index's phase: whether the descriptor is new.
#[inline(always)]
fn carries_phase(first: u32, index: u32, capacity: u32) -> bool {
    first & PHASE_BIT == phase(index, capacity)
}

/// Clears the phase bit of a descriptor copied out of a ring (the top bit
/// of its first word's last byte).
#[inline(always)]
fn clear_phase(desc: &mut [u8; DESC_SIZE]) {
    desc[3] &= !(PHASE_BIT >> 24) as u8;
}

/// Indices read from a ring, for inspection. Serialized with its
/// [`len`](RingState::len) beside the indices, so that a reader of the
/// JSON need not redo the wrapping arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// Next index the consumer reads.
    pub head: u32,
    /// Next index the producer writes.
    pub tail: u32,
    /// Descriptors the ring holds.
    pub capacity: u32,
}

#[cfg(feature = "serde")]
impl serde::Serialize for RingState {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut ring = serializer.serialize_struct("RingState", 4)?;
        ring.serialize_field("head", &self.head)?;
        ring.serialize_field("tail", &self.tail)?;
        ring.serialize_field("capacity", &self.capacity)?;
        ring.serialize_field("len", &self.len())?;
        ring.end()
    }
}

impl RingState {
    /// Descriptors waiting to be read, or `None` if the indices are
    /// inconsistent. A head up to a capacity ahead of the tail counts as
    /// empty: the consumer may take descriptors a moment before the
    /// producer publishes the tail that covers them.
    ///
    /// shm[impl shm.ring.empty]
    pub fn len(&self) -> Option<u32> {
        let queued = self.tail.wrapping_sub(self.head);
        if queued <= self.capacity {
            Some(queued)
        } else if self.head.wrapping_sub(self.tail) <= self.capacity {
            Some(0)
        } else {
            None
        }
    }

    /// Whether nothing is queued (inconsistent indices count as not empty).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// One ring as its producer and its consumer work on it: its indices,
/// waiting flags and entries, bounds-checked once when it is opened, so
/// that neither side's look at its own index can fail. What the other
/// side wrote (its index, a descriptor) is still checked every time.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    base: u64,
    capacity: u32,
    tail: Word,
    head: Word,
    producer_waiting: Word,
    consumer_waiting: Word,
    producer_fences: Word,
    consumer_fences: Word,
    room_sleepers: Word,
    room_at: Word,
    entries: Cells<DESC_SIZE>,
}

impl Ring {
    /// The ring at `base` of `region`, holding `capacity` descriptors (a
    /// power of two: `SegmentLayout` refuses any other).
    pub(crate) fn open(
        region: &Region,
        base: u64,
        capacity: u32,
    ) -> std::result::Result<Self, RegionError> {
        let word = |field| Word::new(region, base + field);
        Ok(Ring {
            base,
            capacity,
            tail: word(field::TAIL)?,
            head: word(field::HEAD)?,
            producer_waiting: word(field::PRODUCER_WAITING)?,
            consumer_waiting: word(field::CONSUMER_WAITING)?,
            producer_fences: word(field::PRODUCER_FENCES)?,
            consumer_fences: word(field::CONSUMER_FENCES)?,
            room_sleepers: word(field::ROOM_SLEEPERS)?,
            room_at: word(field::ROOM_AT)?,
            entries: Cells::new(region, base + RING_HEADER_SIZE, capacity)?,
        })
    }

    fn corrupt(&self, head: u32, tail: u32) -> Error {
        Error::Corrupt(format!(
            "ring at offset {} has head {head} and tail {tail}, more than its capacity {} apart",
            self.base, self.capacity
        ))
    }

    /// Both indices, as they are now.
    pub(crate) fn state(&self) -> RingState {
        RingState {
            head: self.head.get().load(Ordering::Acquire),
            tail: self.tail.get().load(Ordering::Acquire),
            capacity: self.capacity,
        }
    }

    /// Producer: its own index, the next one it writes.
    #[inline(always)]
    pub(crate) fn tail(&self) -> u32 {
        self.tail.get().load(Ordering::Relaxed)
    }

    /// The consumer's own index, as the consumer reads it.
    #[inline(always)]
    fn consumer_head(&self) -> u32 {
        self.head.get().load(Ordering::Relaxed)
    }

    /// Whether the descriptor at `index` is new.
    #[inline(always)]
    fn is_new(&self, index: u32) -> bool {
        let first = self.entries.first_word(index).load(Ordering::Acquire);
        carries_phase(first, index, self.capacity)
    }

    /// Consumer: whether the descriptor at the head is new.
    #[inline]
    pub(crate) fn has_data(&self) -> bool {
        self.is_new(self.consumer_head())
    }

    /// Whether nothing is there to read, judged with sequentially
    /// consistent loads (for the host's sleep handshake across many rings).
    ///
    /// shm[impl shm.ring.empty]
    pub(crate) fn is_empty_now(&self) -> bool {
        let head = self.head.get().load(Ordering::SeqCst);
        let tail = self.tail.get().load(Ordering::SeqCst);
        // Inconsistent indices count as empty here: the phase decides.
        let queued = RingState {
            head,
            tail,
            capacity: self.capacity,
        }
        .len()
        .unwrap_or(0);
        queued == 0 && !self.is_new(head)
    }

    /// Producer: whether `wanted` more descriptors fit. `cached_head` is the
    /// producer's private copy of the consumer's index; the shared head is
    /// read (and the copy refreshed) only when the copy says there is no
    /// room. A head more than a capacity away from the tail is corrupt.
    pub(crate) fn has_room(&self, cached_head: &mut u32, wanted: u32) -> Result<bool> {
        if wanted > self.capacity {
            return Ok(false);
        }
        let tail = self.tail();
        if tail.wrapping_sub(*cached_head) <= self.capacity - wanted {
            return Ok(true);
        }
        let head = self.head.get().load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.capacity {
            return Err(self.corrupt(head, tail));
        }
        *cached_head = head;
        Ok(tail.wrapping_sub(head) <= self.capacity - wanted)
    }

    /// Producer: how many more descriptors fit now, the head read afresh
    /// (and `cached_head` refreshed) unless the copy says the ring is
    /// empty. A head more than a capacity away from the tail is corrupt.
    pub(crate) fn room(&self, cached_head: &mut u32) -> Result<u32> {
        self.has_room(cached_head, self.capacity)?;
        Ok(self.capacity - self.tail().wrapping_sub(*cached_head))
    }

    /// Producer: whether one more descriptor fits after `tail` (the
    /// producer's own index), judged by the producer's copy of the head
    /// alone; `false` means look at the shared head ([`Ring::has_room`]).
    #[inline(always)]
    pub(crate) fn fits_one(&self, tail: u32, cached_head: u32) -> bool {
        tail.wrapping_sub(cached_head) < self.capacity
    }

    /// Producer: appends descriptors if there is room for all of them. Each
    /// is published by its first word (with its phase bit), stored last with
    /// release ordering; the tail follows once for the whole batch.
    ///
    /// Returns false (nothing written) if the ring lacks room.
    pub(crate) fn push_batch(
        &self,
        cached_head: &mut u32,
        descs: &[[u8; DESC_SIZE]],
    ) -> Result<bool> {
        let wanted = u32::try_from(descs.len()).unwrap_or(u32::MAX);
        if !self.has_room(cached_head, wanted)? {
            return Ok(false);
        }
        let tail = self.tail();
        for (i, desc) in descs.iter().enumerate() {
            self.put(tail.wrapping_add(i as u32), desc);
        }
        self.publish_tail(tail.wrapping_add(wanted));
        Ok(true)
    }

    /// Producer: appends one descriptor at `tail`, which the caller has
    /// made sure has room ([`Ring::fits_one`] or [`Ring::has_room`]), and
    /// publishes it as [`Ring::push_batch`] does.
    #[inline(always)]
    pub(crate) fn push_one(&self, tail: u32, desc: &[u8; DESC_SIZE]) {
        self.put(tail, desc);
        self.publish_tail(tail.wrapping_add(1));
    }

    /// Producer: writes `desc` into entry `index` with the phase of that
    /// index: bytes 4..64 first, then the first word with release
    /// ordering, which makes the entry new to the consumer.
    #[inline(always)]
    fn put(&self, index: u32, desc: &[u8; DESC_SIZE]) {
        self.entries.write_from(index, 4, &desc[4..]);
        let first = u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]);
        let first = (first & !PHASE_BIT) | phase(index, self.capacity);
        self.entries
            .first_word(index)
            .store(first, Ordering::Release);
    }

    /// Consumer: takes the descriptor at the head, if any.
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<[u8; DESC_SIZE]> {
        let mut one = [[0u8; DESC_SIZE]; 1];
        (self.pop_batch(&mut one) == 1).then_some(one[0])
    }

    /// Consumer: takes the descriptor at the head into `out` as the ring
    /// holds it, phase bit included (`MsgDesc::from_ring_bytes` clears
    /// it), if it is new; returns whether it was. The whole entry is copied
    /// in one piece, so that the descriptor built from it is read back
    /// from whole stores.
    #[inline(always)]
    pub(crate) fn pop_raw_into(&self, out: &mut [u8; DESC_SIZE]) -> bool {
        let head = self.consumer_head();
        if !self.read_raw_into(head, out) {
            return false;
        }
        self.advance(head, 1);
        true
    }

    /// Whether the descriptor at `index` is new, and if so, copied whole
    /// into `out` as the ring holds it, phase bit included.
    #[inline(always)]
    fn read_raw_into(&self, index: u32, out: &mut [u8; DESC_SIZE]) -> bool {
        if !self.is_new(index) {
            return false;
        }
        // The first word is read again with the rest: the producer does
        // not touch this entry again until the head has moved past it.
        self.entries.read(index, out);
        true
    }

    /// Consumer: takes up to `out.len()` new descriptors, copying them out
    /// (phase bit cleared) and publishing the new head once. Returns how
    /// many were taken.
    pub(crate) fn pop_batch(&self, out: &mut [[u8; DESC_SIZE]]) -> usize {
        let (head, count) = self.peek_batch(out);
        if count > 0 {
            // The descriptors are copied out, so the producer may reuse their places.
            self.advance(head, count);
        }
        count
    }

    /// Consumer: copies out up to `out.len()` new descriptors from the head
    /// (phase bit cleared) without taking them. Returns the head and how
    /// many were copied.
    fn peek_batch(&self, out: &mut [[u8; DESC_SIZE]]) -> (u32, usize) {
        let head = self.consumer_head();
        let mut count = 0;
        for place in out.iter_mut() {
            if !self.read_raw_into(head.wrapping_add(count as u32), place) {
                break;
            }
            clear_phase(place);
            count += 1;
        }
        (head, count)
    }

    /// Producer: publishes a new tail and wakes the consumer if it
    /// sleeps: the tail is written with or without a fence as
    /// `producer_fences` says, and the consumer's count of sleepers read
    /// after it ([`publish_advertised`]), the waking half of the
    /// handshake in `wait.rs`.
    #[inline(always)]
    fn publish_tail(&self, tail: u32) {
        let sleepers = self.consumer_waiting.get();
        publish_advertised(self.tail.get(), tail, self.producer_fences.get(), || {
            any_asleep(sleepers)
        });
    }

    /// Consumer: takes the `count` descriptors from `head` on, publishing
    /// the new head as [`Ring::publish_tail`] does the tail, and wakes the
    /// producer's sleepers that wait for any move, or the one that waits
    /// for room once the head reaches its `room_at`.
    ///
    /// shm[impl shm.ring.room]
    #[inline(always)]
    fn advance(&self, head: u32, count: usize) {
        let moved = count as u32;
        publish_advertised(
            self.head.get(),
            head.wrapping_add(moved),
            self.consumer_fences.get(),
            || match any_asleep(self.producer_waiting.get()) {
                Asleep::Nobody if self.room_sleepers.get().load(Ordering::SeqCst) != 0 => {
                    // The count's acquire orders this read after the
                    // sleeper's write of `room_at`, made before it counted
                    // itself in.
                    let at = self.room_at.get().load(Ordering::Relaxed);
                    if brings_head_to(at, head, moved) {
                        Asleep::Wake
                    } else {
                        Asleep::NotYet
                    }
                }
                found => found,
            },
        );
    }

    /// Consumer: waits until there is something to read, `stop` says to
    /// stop, or `deadline` passes. Returns whether there is.
    pub(crate) fn wait_for_data(&self, waiting: &mut Waiting<'_>) -> Result<bool> {
        let head = self.consumer_head();
        let seen = self.wait_at(head, waiting, || Ok(self.is_new(head).then_some(())))?;
        Ok(seen.is_some())
    }

    /// Consumer: waits until `take` takes something off this ring, `stop`
    /// says to stop, or `deadline` passes; returns what `take` took. `take`
    /// is each look of the wait, so a descriptor is taken by the very look
    /// that sees it, not seen, then looked at again. It must not move the
    /// head unless it returns something.
    #[inline(always)]
    pub(crate) fn wait_to_take<T>(
        &self,
        waiting: &mut Waiting<'_>,
        take: impl FnMut() -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        self.wait_at(self.consumer_head(), waiting, take)
    }

    /// The wait of [`Ring::wait_to_take`] for a consumer whose head is
    /// `head`.
    #[inline(always)]
    fn wait_at<T>(
        &self,
        head: u32,
        waiting: &mut Waiting<'_>,
        mut take: impl FnMut() -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let tail = self.tail.get();
        let nothing_new = || Ok(self.tail_while_nothing_new(head));
        let announce = self.consumer_announcement();
        let sleep = |nap| sleep_unless(announce, tail, nap, nothing_new);
        wait_until(waiting, |_| take(), sleep)
    }

    /// What a consumer whose head is `head` sleeps on: the tail's current
    /// value, as long as no publication has come in; `None` if one has.
    /// A tail ahead of the head means one has (its phase shows up at
    /// once): no sleep. A tail behind the head means the consumer took
    /// descriptors a moment before the producer published the tail that
    /// covers them: sleep until the tail changes, which the next
    /// publication does.
    fn tail_while_nothing_new(&self, head: u32) -> Option<u32> {
        if self.is_new(head) {
            return None;
        }
        let now = self.tail.get().load(Ordering::SeqCst);
        let ahead = now.wrapping_sub(head);
        (ahead == 0 || ahead > self.capacity).then_some(now)
    }

    /// How a consumer about to sleep on this ring's tail says so: in the
    /// consumer's count of sleepers, and with a barrier only if the
    /// producer does not say that it fences.
    pub(crate) fn consumer_announcement(&self) -> Announce<'_> {
        Announce::Flag(
            self.consumer_waiting.get(),
            Some(self.producer_fences.get()),
        )
    }

    /// The same for a producer about to sleep on the head until it
    /// reaches `room_at`.
    fn room_announcement(&self) -> Announce<'_> {
        Announce::Flag(self.room_sleepers.get(), Some(self.consumer_fences.get()))
    }

    /// How far past the head a producer that sleeps for room asks to be
    /// woken: a quarter of the ring, so that a crowd of producers on one
    /// CPU is woken once per quarter ring each rather than once per
    /// message the consumer takes, and each refills a quarter when it
    /// runs. Under loom the whole ring, so that a model's ring of two
    /// places has a publication that does not wake the sleeper.
    fn room_batch(&self) -> u32 {
        if cfg!(loom) {
            self.capacity
        } else {
            (self.capacity / 4).max(1)
        }
    }

    /// For a waker that sleeps in the consumer's stead (`readiness.rs`),
    /// in another thread than the consumer's: a sleep on the tail, judged
    /// at the consumer's head as it stands now.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub(crate) fn consumer_vigil(&self) -> crate::wait::Vigil {
        let head = self.head.get().load(Ordering::SeqCst);
        let unchanged = self.tail_while_nothing_new(head);
        index_vigil(
            &self.tail,
            &self.consumer_waiting,
            &self.producer_fences,
            unchanged,
        )
    }

    /// For a waker that sleeps in the producer's stead: a sleep on the
    /// head, until it moves from where it is now.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub(crate) fn producer_vigil(&self) -> crate::wait::Vigil {
        let head = self.head.get().load(Ordering::SeqCst);
        index_vigil(
            &self.head,
            &self.producer_waiting,
            &self.consumer_fences,
            Some(head),
        )
    }

    /// Producer: waits until the head moves past `seen_head`. Spinning,
    /// any move ends the wait; asleep, the producer asks to be woken once
    /// the head has moved [`Ring::room_batch`] places (`room_at`), and
    /// naps at most [`ROOM_NAP`] in case the consumer stops short of it.
    ///
    /// shm[impl shm.ring.room]
    pub(crate) fn wait_for_space(&self, seen_head: u32, waiting: &mut Waiting<'_>) -> Result<bool> {
        let head = self.head.get();
        let unmoved = || -> Result<Option<u32>> {
            Ok((head.load(Ordering::SeqCst) == seen_head).then_some(seen_head))
        };
        let announce = self.room_announcement();
        let moved = |_| Ok((head.load(Ordering::Acquire) != seen_head).then_some(()));
        let sleep = |nap: Duration| {
            // Written before the sleeper counts itself in: a consumer that
            // sees the count sees this.
            let at = seen_head.wrapping_add(self.room_batch());
            self.room_at.get().store(at, Ordering::Relaxed);
            sleep_unless(announce, head, nap.min(ROOM_NAP), unmoved)
        };
        Ok(wait_until(waiting, moved, sleep)?.is_some())
    }

    /// Consumer side: takes every new descriptor (when the peer is gone, or
    /// the entry passes to another guest), up to a capacity, handing each
    /// to `each` (which frees the slot it names) *before* the head moves
    /// past it: a drainer killed midway leaves what it has not finished in
    /// the ring, for the next drain. Returns how many were taken.
    pub(crate) fn drain(
        &self,
        mut each: impl FnMut(&[u8; DESC_SIZE]) -> Result<()>,
    ) -> Result<usize> {
        let mut one = [[0u8; DESC_SIZE]; 1];
        let mut taken = 0;
        while taken < self.capacity as usize {
            let (head, n) = self.peek_batch(&mut one);
            if n == 0 {
                break;
            }
            each(&one[0])?;
            self.advance(head, 1);
            taken += 1;
        }
        Ok(taken)
    }
}

/// A sleep on one of a ring's indexes (`index`), announced on the other
/// side's `sleepers`, and judged at `unchanged`. Each side publishes its
/// index as [`Ring::publish`] does, without a fence unless its `fences`
/// word says otherwise, the consumer the head as the producer the tail.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
fn index_vigil(
    index: &Word,
    sleepers: &Word,
    fences: &Word,
    unchanged: Option<u32>,
) -> crate::wait::Vigil {
    crate::wait::Vigil {
        word: index.clone(),
        sleepers: sleepers.clone(),
        publisher: crate::wait::Publisher::Unfenced(Some(fences.clone())),
        unchanged,
    }
}

/// A view of one ring that checks every access: for inspection (it works
/// on read-only regions) and for the upkeep a ring needs now and then
/// (a reclaim, a goodbye), where no end holds the ring open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingView<'a> {
    region: &'a Region,
    base: u64,
    capacity: u32,
}

impl<'a> RingView<'a> {
    /// The ring at `base` of `region`, holding `capacity` descriptors.
    pub(crate) fn new(region: &'a Region, base: u64, capacity: u32) -> Self {
        RingView {
            region,
            base,
            capacity,
        }
    }

    /// Reads both indices (works on read-only regions).
    pub(crate) fn state(&self) -> Result<RingState> {
        Ok(RingState {
            head: self.head()?,
            tail: self
                .region
                .load_u32(self.base + field::TAIL, Ordering::Acquire)?,
            capacity: self.capacity,
        })
    }

    /// The consumer's index (works on read-only regions).
    pub(crate) fn head(&self) -> Result<u32> {
        Ok(self
            .region
            .load_u32(self.base + field::HEAD, Ordering::Acquire)?)
    }

    /// Descriptors the ring holds.
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    fn entry(&self, index: u32) -> u64 {
        self.base + RING_HEADER_SIZE + u64::from(index & (self.capacity - 1)) * DESC_SIZE as u64
    }

    /// The descriptor at `index`, copied out with its phase bit cleared, if
    /// it is new; `None` otherwise. It only reads, so inspection looks at
    /// descriptors through it without taking them.
    pub(crate) fn read_new(&self, index: u32) -> Result<Option<[u8; DESC_SIZE]>> {
        let at = self.entry(index);
        let first = self.region.load_u32(at, Ordering::Acquire)?;
        if !carries_phase(first, index, self.capacity) {
            return Ok(None);
        }
        let mut desc = [0u8; DESC_SIZE];
        self.region.read(at, &mut desc)?;
        clear_phase(&mut desc);
        Ok(Some(desc))
    }

    /// Whether a new descriptor is at the head (works on read-only regions).
    pub(crate) fn has_data(&self) -> Result<bool> {
        let head = self.head()?;
        let first = self.region.load_u32(self.entry(head), Ordering::Acquire)?;
        Ok(carries_phase(first, head, self.capacity))
    }

    /// When the producer is dead: makes the tail agree with the head, so
    /// that the next producer starts where the consumer stands (a producer
    /// that died mid-batch may have left either one behind).
    pub(crate) fn settle_tail(&self) -> Result<()> {
        let head = self.head()?;
        self.region
            .store_u32(self.base + field::TAIL, head, Ordering::Release)?;
        Ok(())
    }

    /// Zeroes the whole ring, control block and descriptors, as a new
    /// segment has it: for an entry freed after a quarantine, whose ring
    /// the guest may have written anything into (nothing in it is read).
    pub(crate) fn reset(&self) -> Result<()> {
        let len = RING_HEADER_SIZE + u64::from(self.capacity) * DESC_SIZE as u64;
        self.region.zero(self.base, len)?;
        Ok(())
    }

    /// Clears the counts of sleepers (a dead process may have left one
    /// set).
    pub(crate) fn clear_waiting(&self) -> Result<()> {
        self.region
            .store_u32(self.base + field::PRODUCER_WAITING, 0, Ordering::Relaxed)?;
        self.region
            .store_u32(self.base + field::ROOM_SLEEPERS, 0, Ordering::Relaxed)?;
        self.region
            .store_u32(self.base + field::CONSUMER_WAITING, 0, Ordering::Relaxed)?;
        Ok(())
    }

    /// Wakes anyone sleeping on either index (used when leaving).
    pub(crate) fn wake_all(&self) -> Result<()> {
        sys::futex_wake_all(self.region.atomic_u32(self.base + field::TAIL)?);
        sys::futex_wake_all(self.region.atomic_u32(self.base + field::HEAD)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeapRegion;
    use crate::wait::{Deadline, WaitStrategy};

    fn ring_region(capacity: u32) -> Region {
        HeapRegion::new_zeroed((RING_HEADER_SIZE + u64::from(capacity) * 64) as usize)
            .unwrap()
            .region()
    }

    fn desc(n: u8) -> [u8; DESC_SIZE] {
        let mut d = [n; DESC_SIZE];
        // Bit 15 of the flags belongs to the ring.
        d[3] &= 0x7F;
        d
    }

    /// A ring of 4 holding descriptors 1, 2 and 3, and its producer's
    /// copy of the head.
    fn holding_three() -> (Ring, u32) {
        let ring = Ring::open(&ring_region(4), 0, 4).unwrap();
        let mut cached_head = 0;
        assert!(
            ring.push_batch(&mut cached_head, &[desc(1), desc(2), desc(3)])
                .unwrap()
        );
        (ring, cached_head)
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn fifo_until_full_then_refuses() {
        let region = ring_region(4);
        let ring = Ring::open(&region, 0, 4).unwrap();
        let mut head_cache = 0;
        for n in 0..4 {
            assert!(ring.push_batch(&mut head_cache, &[desc(n)]).unwrap());
        }
        assert!(!ring.push_batch(&mut head_cache, &[desc(9)]).unwrap());
        assert_eq!(ring.state().len(), Some(4));
        for n in 0..4 {
            assert_eq!(ring.pop(), Some(desc(n)));
        }
        assert_eq!(ring.pop(), None);
        assert!(ring.is_empty_now());
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn indices_and_phases_wrap_around_u32() {
        let region = ring_region(2);
        region
            .store_u32(field::HEAD, u32::MAX - 5, Ordering::Relaxed)
            .unwrap();
        region
            .store_u32(field::TAIL, u32::MAX - 5, Ordering::Relaxed)
            .unwrap();
        // Descriptors left by the lap before must not look new: write the
        // phase that lap had.
        let ring = Ring::open(&region, 0, 2).unwrap();
        for i in 0..2u32 {
            let index = (u32::MAX - 5).wrapping_add(i).wrapping_sub(2);
            region
                .store_u32(
                    RING_HEADER_SIZE + u64::from(index & 1) * DESC_SIZE as u64,
                    phase(index, 2),
                    Ordering::Relaxed,
                )
                .unwrap();
        }
        let mut head_cache = u32::MAX - 5;
        for round in 0..10u8 {
            assert!(
                ring.push_batch(&mut head_cache, &[desc(round), desc(round + 100)])
                    .unwrap()
            );
            assert!(!ring.push_batch(&mut head_cache, &[desc(0)]).unwrap());
            assert_eq!(ring.pop(), Some(desc(round)));
            assert_eq!(ring.pop(), Some(desc(round + 100)));
            assert_eq!(ring.pop(), None);
        }
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn batch_larger_than_room_writes_nothing() {
        let (ring, mut head_cache) = holding_three();
        assert!(
            !ring
                .push_batch(&mut head_cache, &[desc(4), desc(5)])
                .unwrap()
        );
        assert!(!ring.push_batch(&mut head_cache, &[desc(0); 5]).unwrap());
        assert_eq!(ring.state().tail, 3);
        let mut out = [[0u8; DESC_SIZE]; 8];
        assert_eq!(ring.pop_batch(&mut out), 3);
        assert_eq!(&out[..3], &[desc(1), desc(2), desc(3)]);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn corrupt_indices_are_an_error_not_a_read() {
        let region = ring_region(4);
        region
            .store_u32(field::TAIL, 1000, Ordering::Relaxed)
            .unwrap();
        let ring = Ring::open(&region, 0, 4).unwrap();
        assert!(matches!(
            ring.push_batch(&mut 0, &[desc(1)]),
            Err(Error::Corrupt(_))
        ));
        assert_eq!(ring.state().len(), None);
        // The consumer only trusts phases: nothing new is there.
        assert_eq!(ring.pop(), None);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn a_consumer_a_moment_ahead_of_the_tail_reads_as_empty() {
        let state = RingState {
            head: 5,
            tail: 3,
            capacity: 4,
        };
        assert_eq!(state.len(), Some(0));
        let state = RingState {
            head: 50,
            tail: 3,
            capacity: 4,
        };
        assert_eq!(state.len(), None);
    }

    // A drainer killed midway must leave what it has not finished in the
    // ring, for the next drain: each descriptor is handed over (its slot
    // freed) while the head still points at it. (A detaching guest killed
    // between taking a descriptor and freeing its slot used to leave that
    // slot held with nothing naming it.)
    // shm[verify shm.peer.detach]
    #[test]
    fn drain_hands_each_descriptor_over_before_taking_it() {
        let (ring, mut cached) = holding_three();
        let mut seen = Vec::new();
        let taken = ring
            .drain(|d| {
                seen.push((d[4], ring.state().head));
                Ok(())
            })
            .unwrap();
        assert_eq!(taken, 3);
        assert_eq!(seen, vec![(1, 0), (2, 1), (3, 2)]);
        assert!(ring.push_batch(&mut cached, &[desc(4), desc(5)]).unwrap());
        let cut = ring.drain(|d| {
            if d[4] == 5 {
                return Err(Error::Corrupt("the drainer dies here".into()));
            }
            Ok(())
        });
        assert!(cut.is_err());
        assert_eq!(ring.pop(), Some(desc(5)));
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn settle_tail_realigns_after_a_dead_producer() {
        let region = ring_region(4);
        let ring = Ring::open(&region, 0, 4).unwrap();
        assert!(ring.push_batch(&mut 0, &[desc(1), desc(2)]).unwrap());
        // The producer died after publishing a tail past what it wrote.
        region.store_u32(field::TAIL, 4, Ordering::Relaxed).unwrap();
        assert_eq!(ring.drain(|_| Ok(())).unwrap(), 2);
        RingView::new(&region, 0, 4).settle_tail().unwrap();
        assert_eq!(
            ring.state(),
            RingState {
                head: 2,
                tail: 2,
                capacity: 4
            }
        );
        assert!(ring.push_batch(&mut 2, &[desc(3)]).unwrap());
        assert_eq!(ring.pop(), Some(desc(3)));
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn waiting_consumer_is_woken_by_producer() {
        let region = ring_region(4);
        let consumer_region = region.clone();
        let waiter = std::thread::spawn(move || {
            let ring = Ring::open(&consumer_region, 0, 4).unwrap();
            let deadline = Deadline::after(Some(std::time::Duration::from_secs(20)));
            ring.wait_for_data(&mut Waiting {
                strategy: WaitStrategy::Block,
                deadline,
                stop: &mut || Ok(()),
            })
            .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ring = Ring::open(&region, 0, 4).unwrap();
        assert!(ring.push_batch(&mut 0, &[desc(1)]).unwrap());
        assert!(waiter.join().unwrap());
    }

    // shm[verify shm.ring.room]
    #[test]
    fn a_publication_wakes_the_room_sleeper_when_it_reaches_room_at() {
        // From 10, asking for 12: moves of 1 do not reach it, 2 do, and
        // so does anything longer; indices wrap.
        assert!(!brings_head_to(12, 10, 1));
        assert!(brings_head_to(12, 10, 2));
        assert!(brings_head_to(12, 10, 200));
        assert!(!brings_head_to(12, 11, 0));
        assert!(brings_head_to(12, 11, 1));
        // Already passed (a stale value): no wake from this move.
        assert!(!brings_head_to(9, 10, 5));
        assert!(brings_head_to(2, u32::MAX - 1, 4));
        assert!(!brings_head_to(2, u32::MAX - 1, 3));
    }

    // A producer asleep for room asks for a quarter of the ring, counts
    // itself in room_sleepers (not producer_waiting, whose sleepers any
    // move wakes), and is woken once the consumer has taken that much.
    // shm[verify shm.ring.room]
    #[test]
    fn a_producer_asleep_for_room_asks_for_a_quarter_of_the_ring() {
        let region = ring_region(8);
        let ring = Ring::open(&region, 0, 8).unwrap();
        let full: Vec<_> = (0..8).map(desc).collect();
        assert!(ring.push_batch(&mut 0, &full).unwrap());
        let producer_region = region.clone();
        let producer = std::thread::spawn(move || {
            let ring = Ring::open(&producer_region, 0, 8).unwrap();
            let deadline = Deadline::after(Some(std::time::Duration::from_secs(20)));
            ring.wait_for_space(
                0,
                &mut Waiting {
                    strategy: WaitStrategy::Block,
                    deadline,
                    stop: &mut || Ok(()),
                },
            )
            .unwrap()
        });
        let word = |at| region.load_u32(at, Ordering::SeqCst).unwrap();
        let since = std::time::Instant::now();
        while word(field::ROOM_SLEEPERS) == 0 {
            assert!(since.elapsed().as_secs() < 20, "the producer never slept");
            std::thread::yield_now();
        }
        assert_eq!(word(field::ROOM_AT), 2);
        assert_eq!(word(field::PRODUCER_WAITING), 0);
        assert_eq!(ring.pop(), Some(desc(0)));
        assert_eq!(ring.pop(), Some(desc(1)));
        assert!(producer.join().unwrap());
        assert_eq!(word(field::ROOM_SLEEPERS), 0);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn wait_times_out_when_nothing_comes() {
        let region = ring_region(4);
        let ring = Ring::open(&region, 0, 4).unwrap();
        let deadline = Deadline::after(Some(std::time::Duration::from_millis(30)));
        assert!(
            !ring
                .wait_for_data(&mut Waiting {
                    strategy: WaitStrategy::Adaptive,
                    deadline,
                    stop: &mut || Ok(()),
                })
                .unwrap()
        );
    }
}
