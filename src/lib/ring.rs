//! Single-producer single-consumer descriptor rings.
//!
//! A ring is a control block of three cache lines followed by `capacity`
//! 64-byte descriptors. The producer's line holds the tail (next index to
//! write), the consumer's line the head (next index to read); the third
//! line holds the two waiting flags, written only by a side about to sleep
//! and read by the other after each publication, so that in the common case
//! (nobody sleeps) it stays shared in both caches. No line holds fields
//! written by both sides on every message, and each side keeps a private
//! copy of the other's index, re-reading it only when its copy says the
//! ring is full (producer) or empty (consumer). Indices are free-running `u32`s: the number
//! of queued descriptors is `tail - head` (wrapping), which is never more
//! than the capacity unless the segment is corrupt.
//!
//! shm[impl shm.ring.spsc]

use std::sync::atomic::Ordering;

use crate::desc::DESC_SIZE;
use crate::error::{Error, Result};
use crate::layout::RING_HEADER_SIZE;
use crate::region::Region;
use crate::sys;
use crate::wait::{Backoff, Deadline, Step, WaitStrategy};

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
}

/// A view of one ring in a region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    region: &'a Region,
    base: u64,
    capacity: u32,
}

/// Indices read from a ring, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RingState {
    /// Next index the consumer reads.
    pub head: u32,
    /// Next index the producer writes.
    pub tail: u32,
    /// Descriptors the ring holds.
    pub capacity: u32,
}

impl RingState {
    /// Descriptors waiting to be read, or `None` if the indices are
    /// inconsistent (more queued than the ring holds).
    pub fn len(&self) -> Option<u32> {
        let queued = self.tail.wrapping_sub(self.head);
        (queued <= self.capacity).then_some(queued)
    }

    /// Whether nothing is queued (inconsistent indices count as not empty).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl<'a> Ring<'a> {
    pub(crate) fn new(region: &'a Region, base: u64, capacity: u32) -> Self {
        Ring {
            region,
            base,
            capacity,
        }
    }

    fn slot_offset(&self, index: u32) -> u64 {
        self.base + RING_HEADER_SIZE + u64::from(index & (self.capacity - 1)) * DESC_SIZE as u64
    }

    fn corrupt(&self, head: u32, tail: u32) -> Error {
        Error::Corrupt(format!(
            "ring at offset {} has head {head} and tail {tail}, more than its capacity {} apart",
            self.base, self.capacity
        ))
    }

    /// Reads both indices (works on read-only regions).
    pub(crate) fn state(&self) -> Result<RingState> {
        Ok(RingState {
            head: self
                .region
                .load_u32(self.base + field::HEAD, Ordering::Acquire)?,
            tail: self
                .region
                .load_u32(self.base + field::TAIL, Ordering::Acquire)?,
            capacity: self.capacity,
        })
    }

    /// Whether the ring is empty, with both indices read sequentially
    /// consistently (for the host's sleep handshake across many rings).
    pub(crate) fn is_empty_now(&self) -> Result<bool> {
        let tail = self.region.load_u32(self.base + field::TAIL, Ordering::SeqCst)?;
        let head = self.region.load_u32(self.base + field::HEAD, Ordering::SeqCst)?;
        Ok(tail == head)
    }

    /// Producer: whether `wanted` more descriptors fit. `cached_head` is the
    /// producer's private copy of the consumer's index; the shared head is
    /// read (and the copy refreshed) only when the copy says there is no room.
    pub(crate) fn has_room(&self, cached_head: &mut u32, wanted: u32) -> Result<bool> {
        if wanted > self.capacity {
            return Ok(false);
        }
        let tail = self.region.load_u32(self.base + field::TAIL, Ordering::Relaxed)?;
        if tail.wrapping_sub(*cached_head) <= self.capacity - wanted {
            return Ok(true);
        }
        let head = self.region.load_u32(self.base + field::HEAD, Ordering::Acquire)?;
        if tail.wrapping_sub(head) > self.capacity {
            return Err(self.corrupt(head, tail));
        }
        *cached_head = head;
        Ok(tail.wrapping_sub(head) <= self.capacity - wanted)
    }

    /// Producer: appends descriptors if there is room for all of them,
    /// publishing them with one release store.
    ///
    /// Returns false (nothing written) if the ring lacks room.
    pub(crate) fn push_batch(&self, cached_head: &mut u32, descs: &[[u8; DESC_SIZE]]) -> Result<bool> {
        let wanted = u32::try_from(descs.len()).unwrap_or(u32::MAX);
        if !self.has_room(cached_head, wanted)? {
            return Ok(false);
        }
        let tail = self.region.load_u32(self.base + field::TAIL, Ordering::Relaxed)?;
        for (i, desc) in descs.iter().enumerate() {
            self.region.write(self.slot_offset(tail.wrapping_add(i as u32)), desc)?;
        }
        self.publish_index(field::TAIL, tail.wrapping_add(wanted), field::CONSUMER_WAITING)?;
        Ok(true)
    }

    /// Consumer: takes the descriptor at the head, if any. `cached_tail` is
    /// the consumer's private copy of the producer's index.
    pub(crate) fn pop(&self, cached_tail: &mut u32) -> Result<Option<[u8; DESC_SIZE]>> {
        let mut one = [[0u8; DESC_SIZE]; 1];
        Ok((self.pop_batch(cached_tail, &mut one)? == 1).then_some(one[0]))
    }

    /// Consumer: takes up to `out.len()` descriptors, copying them out and
    /// publishing the new head once. Returns how many were taken.
    pub(crate) fn pop_batch(&self, cached_tail: &mut u32, out: &mut [[u8; DESC_SIZE]]) -> Result<usize> {
        let head = self.region.load_u32(self.base + field::HEAD, Ordering::Relaxed)?;
        if head == *cached_tail || cached_tail.wrapping_sub(head) > self.capacity {
            let tail = self.region.load_u32(self.base + field::TAIL, Ordering::Acquire)?;
            if tail.wrapping_sub(head) > self.capacity {
                return Err(self.corrupt(head, tail));
            }
            *cached_tail = tail;
        }
        let available = cached_tail.wrapping_sub(head) as usize;
        let count = available.min(out.len());
        if count == 0 {
            return Ok(0);
        }
        for (i, desc) in out[..count].iter_mut().enumerate() {
            self.region.read(self.slot_offset(head.wrapping_add(i as u32)), desc)?;
        }
        // The descriptors are copied out, so the producer may reuse their places.
        self.publish_index(field::HEAD, head.wrapping_add(count as u32), field::PRODUCER_WAITING)?;
        Ok(count)
    }

    /// Publishes a new value of `index_field` and wakes the other side if
    /// it said it sleeps. The index is swapped in (a sequentially consistent
    /// read-modify-write, a full barrier) and the flag read after it; the
    /// sleeper sets its flag the same way before its last look at the index
    /// ([`Ring::wait`]), so either the sleeper sees the new index, or the
    /// publisher sees the flag and makes the wake call. Nobody asleep: no
    /// system call.
    fn publish_index(&self, index_field: u64, value: u32, flag_field: u64) -> Result<()> {
        let index = self.region.atomic_u32(self.base + index_field)?;
        index.swap(value, Ordering::SeqCst);
        if self.region.load_u32(self.base + flag_field, Ordering::SeqCst)? != 0 {
            sys::futex_wake_all(index);
        }
        Ok(())
    }

    /// Consumer: waits until the tail moves past `seen_tail`, `stop` says
    /// to stop, or `deadline` passes. Returns whether the tail moved.
    pub(crate) fn wait_for_data(
        &self,
        seen_tail: u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<bool> {
        self.wait(field::TAIL, field::CONSUMER_WAITING, seen_tail, strategy, deadline, stop)
    }

    /// Producer: waits until the head moves past `seen_head`.
    pub(crate) fn wait_for_space(
        &self,
        seen_head: u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<bool> {
        self.wait(field::HEAD, field::PRODUCER_WAITING, seen_head, strategy, deadline, stop)
    }

    fn wait(
        &self,
        index_field: u64,
        flag_field: u64,
        seen: u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<bool> {
        let index = self.region.atomic_u32(self.base + index_field)?;
        let flag = self.region.atomic_u32(self.base + flag_field)?;
        let mut backoff = Backoff::new(strategy);
        loop {
            if index.load(Ordering::Acquire) != seen {
                return Ok(true);
            }
            match backoff.next_step(deadline) {
                Step::Again => {}
                Step::Check => stop()?,
                Step::Expired => return Ok(false),
                Step::Sleep(sleep) => {
                    stop()?;
                    flag.swap(1, Ordering::SeqCst);
                    if index.load(Ordering::SeqCst) == seen {
                        sys::futex_wait(index, seen, Some(sleep));
                    }
                    flag.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// Consumer-side reset used when reclaiming a dead guest: drops every
    /// queued descriptor, returning them so their slots can be freed.
    pub(crate) fn drain(&self) -> Result<Vec<[u8; DESC_SIZE]>> {
        let mut out = Vec::new();
        let mut cached_tail = self
            .region
            .load_u32(self.base + field::TAIL, Ordering::Acquire)?;
        while let Some(desc) = self.pop(&mut cached_tail)? {
            out.push(desc);
            if out.len() > self.capacity as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Clears both waiting flags (a dead process may have left one set).
    pub(crate) fn clear_waiting(&self) -> Result<()> {
        self.region
            .store_u32(self.base + field::PRODUCER_WAITING, 0, Ordering::Relaxed)?;
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

    fn ring_region(capacity: u32) -> Region {
        HeapRegion::new_zeroed((RING_HEADER_SIZE + u64::from(capacity) * 64) as usize)
            .unwrap()
            .region()
    }

    fn desc(n: u8) -> [u8; DESC_SIZE] {
        [n; DESC_SIZE]
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn fifo_until_full_then_refuses() {
        let region = ring_region(4);
        let ring = Ring::new(&region, 0, 4);
        let (mut head_cache, mut tail_cache) = (0, 0);
        for n in 0..4 {
            assert!(ring.push_batch(&mut head_cache, &[desc(n)]).unwrap());
        }
        assert!(!ring.push_batch(&mut head_cache, &[desc(9)]).unwrap());
        assert_eq!(ring.state().unwrap().len(), Some(4));
        for n in 0..4 {
            assert_eq!(ring.pop(&mut tail_cache).unwrap(), Some(desc(n)));
        }
        assert_eq!(ring.pop(&mut tail_cache).unwrap(), None);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn indices_wrap_around_u32() {
        let region = ring_region(2);
        region
            .store_u32(field::HEAD, u32::MAX - 1, Ordering::Relaxed)
            .unwrap();
        region
            .store_u32(field::TAIL, u32::MAX - 1, Ordering::Relaxed)
            .unwrap();
        let ring = Ring::new(&region, 0, 2);
        let (mut head_cache, mut tail_cache) = (u32::MAX - 1, u32::MAX - 1);
        for round in 0..10u8 {
            assert!(
                ring.push_batch(&mut head_cache, &[desc(round), desc(round + 100)])
                    .unwrap()
            );
            assert!(!ring.push_batch(&mut head_cache, &[desc(0)]).unwrap());
            assert_eq!(ring.pop(&mut tail_cache).unwrap(), Some(desc(round)));
            assert_eq!(ring.pop(&mut tail_cache).unwrap(), Some(desc(round + 100)));
        }
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn batch_larger_than_room_writes_nothing() {
        let region = ring_region(4);
        let ring = Ring::new(&region, 0, 4);
        let mut head_cache = 0;
        assert!(
            ring.push_batch(&mut head_cache, &[desc(1), desc(2), desc(3)])
                .unwrap()
        );
        assert!(
            !ring
                .push_batch(&mut head_cache, &[desc(4), desc(5)])
                .unwrap()
        );
        assert!(!ring.push_batch(&mut head_cache, &[desc(0); 5]).unwrap());
        assert_eq!(ring.state().unwrap().tail, 3);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn corrupt_indices_are_an_error_not_a_read() {
        let region = ring_region(4);
        region
            .store_u32(field::TAIL, 1000, Ordering::Relaxed)
            .unwrap();
        let ring = Ring::new(&region, 0, 4);
        assert!(matches!(ring.pop(&mut 0), Err(Error::Corrupt(_))));
        assert!(matches!(
            ring.push_batch(&mut 0, &[desc(1)]),
            Err(Error::Corrupt(_))
        ));
        assert_eq!(ring.state().unwrap().len(), None);
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn waiting_consumer_is_woken_by_producer() {
        let region = ring_region(4);
        let consumer_region = region.clone();
        let waiter = std::thread::spawn(move || {
            let ring = Ring::new(&consumer_region, 0, 4);
            let mut deadline = Deadline::after(Some(std::time::Duration::from_secs(20)));
            ring.wait_for_data(0, WaitStrategy::Block, &mut deadline, &mut || Ok(()))
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ring = Ring::new(&region, 0, 4);
        assert!(ring.push_batch(&mut 0, &[desc(1)]).unwrap());
        assert!(waiter.join().unwrap());
    }

    // shm[verify shm.ring.spsc]
    #[test]
    fn wait_times_out_when_nothing_comes() {
        let region = ring_region(4);
        let ring = Ring::new(&region, 0, 4);
        let mut deadline = Deadline::after(Some(std::time::Duration::from_millis(30)));
        assert!(
            !ring
                .wait_for_data(0, WaitStrategy::Adaptive, &mut deadline, &mut || Ok(()))
                .unwrap()
        );
    }
}
