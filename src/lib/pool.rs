//! Slot pools: fixed-size payload slots allocated by compare-and-swap on a
//! free bitmap.
//!
//! Each slot has metadata: a generation, bumped on every allocation and
//! repeated in the descriptor that carries the slot, and a holder, the peer
//! responsible for freeing it (the allocator until it sends the slot, then
//! the receiver). A descriptor whose generation does not match, or a slot
//! not allocated or not held by its receiver, is refused before any byte of
//! it is read.
//!
//! shm[impl shm.pool.bitmap]

use std::sync::atomic::Ordering;

use std::cell::Cell;

use crate::error::{Error, Result};
use crate::host_slots::Counters;
use crate::layout::{SLOT_META_SIZE, SegmentLayout};
use crate::party::{Party, PeerId};
use crate::region::{Atomics, Mode, Region, Word, Writing};
use crate::sync::atomic::{AtomicU32, AtomicU64};
use crate::wait::{Announce, Waiting, sleep_unless, wait_until, wake_sleepers};

/// Byte offsets in a pool's control block and slot metadata.
pub mod field {
    /// `u32`: bumped on every free (the word sleepers wait on).
    pub const RELEASES: u64 = 0;
    /// `u32`: number of processes sleeping for a free slot.
    pub const WAITERS: u64 = 4;
    /// Slot metadata `u64`: the slot's state word, generation in the low
    /// 32 bits, holder code in the high 32 (0 = none, 1 = host, 1 + p =
    /// guest p). One word, so that a free claims the slot with a single
    /// compare-and-swap on both: a stale free can never take a slot that
    /// has since been allocated again.
    pub const SLOT_STATE: u64 = 0;
}

/// The state word of a slot allocated at `generation` and held by
/// `holder` (a holder code), as [`Pool::slot_word`] returns it.
pub(crate) fn state_word(generation: u32, holder: u32) -> u64 {
    pack(generation, holder)
}

fn pack(generation: u32, holder: u32) -> u64 {
    u64::from(generation) | (u64::from(holder) << 32)
}

fn generation_of(state: u64) -> u32 {
    state as u32
}

fn holder_of(state: u64) -> u32 {
    (state >> 32) as u32
}

/// Who must free a slot, as stored in its metadata: 1 + the holder's
/// party number (1 = the host, `1 + p` = guest `p`).
pub(crate) fn holder_code(holder: Party) -> u32 {
    u32::from(holder.number()) + 1
}

/// The party a stored holder code names; `None` for 0 (no holder) and
/// for codes no party has.
pub(crate) fn holder_party(code: u32) -> Option<Party> {
    code.checked_sub(1)
        .and_then(|n| u8::try_from(n).ok())
        .map(Party::from_number)
}

/// Bits of bitmap word `word` that stand for real slots of a pool of
/// `slots` slots (the last word may be partial; a word past the last has
/// none).
pub(crate) fn valid_bits(slots: u32, word: u32) -> u64 {
    let remaining = slots.saturating_sub(word.saturating_mul(64));
    if remaining >= 64 {
        u64::MAX
    } else {
        (1u64 << remaining) - 1
    }
}

/// One allocation of a slot: its index in its pool and the generation it
/// was allocated at. Frees and checks name the allocation, not only the
/// slot, so that a stale one (the slot freed and allocated again since)
/// is told from the current one and does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SlotRef {
    /// The slot's index in its pool.
    pub(crate) index: u32,
    /// The generation of this allocation.
    pub(crate) generation: u32,
}

#[cfg(all(test, loom))]
impl SlotRef {
    /// The same slot's next allocation.
    pub(crate) fn next_generation(self) -> SlotRef {
        SlotRef {
            generation: self.generation + 1,
            ..self
        }
    }
}

/// One allocated slot as read from its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotState {
    /// The slot's index in its pool.
    pub(crate) slot: u32,
    /// Its generation.
    pub(crate) generation: u32,
    /// Its holder code (0 none, 1 host, `1 + p` guest `p`).
    pub(crate) holder: u32,
}

/// What may hold an allocation back while the pool still has free slots
/// (the host's share per guest, `share.rs`): the pool itself allocates
/// whatever is free.
pub(crate) trait Gate {
    /// Asked before each search: `true` holds the allocation back. Before
    /// it reads anything that a free changes, it calls
    /// [`Releases::mark`], so that a sleep after it is woken by the next
    /// free.
    fn holds_back(&mut self, releases: &Releases<'_>) -> Result<bool>;

    /// The error for an allocation that the gate held back until its time
    /// ran out while slots were free.
    fn refusal(&self) -> Error;
}

/// The pool's count of frees, as a [`Gate`] sees it.
pub(crate) struct Releases<'a> {
    counter: &'a AtomicU32,
    seen: &'a Cell<u32>,
}

impl Releases<'_> {
    /// Notes the count of frees now: a sleep that follows lasts only until
    /// it moves.
    pub(crate) fn mark(&self) {
        self.seen.set(self.counter.load(Ordering::SeqCst));
    }
}

/// One pool of a segment, the host's or a guest's, its own lines checked
/// once when it is opened: its bitmap words, its slots' state words, its
/// release and waiter counts and, for the host's pool, each guest's count
/// of the host's slots. Reading or writing them cannot fail afterwards;
/// only a slot index is checked against the pool's size, where it comes
/// from the shared file. A `Pool<Reading>` only loads (inspection, on a
/// read-only mapping); an end holds a `Pool` (writing).
#[derive(Debug, Clone)]
pub(crate) struct Pool<M: Mode = Writing> {
    region: Region,
    layout: SegmentLayout,
    owner: Party,
    bitmap: Atomics<AtomicU64, M>,
    states: Atomics<AtomicU64, M>,
    releases: Word<AtomicU32, M>,
    waiters: Word<AtomicU32, M>,
    /// The guests' counts of the host's slots (`host_slots.rs`); the host's
    /// pool only, opened for writing.
    counters: Option<Counters<M>>,
}

/// Usage of one pool, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PoolUsage {
    /// Slots in the pool.
    pub slots: u32,
    /// Slots allocated.
    pub used: u32,
    /// Slots free.
    pub free: u32,
}

impl<M: Mode> Pool<M> {
    /// Opens `owner`'s pool of the segment laid out as `layout` in `region`.
    pub(crate) fn open(region: &Region, layout: &SegmentLayout, owner: Party) -> Result<Self> {
        let base = layout.pool(owner);
        let slots = layout.config.slots_per_pool;
        Ok(Pool {
            region: region.clone(),
            layout: *layout,
            owner,
            bitmap: Atomics::new(
                region,
                base + layout.pool_bitmap_offset,
                slots.div_ceil(64),
                8,
            )?,
            states: Atomics::new(
                region,
                base + layout.pool_meta_offset + field::SLOT_STATE,
                slots,
                SLOT_META_SIZE,
            )?,
            releases: Word::new(region, base + field::RELEASES)?,
            waiters: Word::new(region, base + field::WAITERS)?,
            // Only the host's ends, which hand its slots out, count them;
            // a reading pool never touches them.
            counters: match owner {
                Party::Host if M::ACCESS.writes() => Some(Counters::open(region, layout)?),
                _ => None,
            },
        })
    }

    /// The region the pool lies in.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// The layout of the segment the pool belongs to.
    pub(crate) fn layout(&self) -> &SegmentLayout {
        &self.layout
    }

    /// Whose pool this is.
    pub(crate) fn owner(&self) -> Party {
        self.owner
    }

    fn slots(&self) -> u32 {
        self.states.count()
    }

    /// Offset of a slot's first data byte.
    pub(crate) fn data_offset(&self, slot: u32) -> u64 {
        self.layout.pool(self.owner)
            + self.layout.pool_data_offset
            + u64::from(slot) * u64::from(self.layout.config.slot_size)
    }

    /// Bits of `word` that stand for real slots (the last word may be partial).
    fn valid_bits(&self, word: u32) -> u64 {
        valid_bits(self.slots(), word)
    }

    /// The generation and holder code of `slot`; `None` outside the pool.
    fn state(&self, slot: u32) -> Option<(u32, u32)> {
        let state = self.states.load(slot, Ordering::Acquire)?;
        Some((generation_of(state), holder_of(state)))
    }

    /// Whether `slot`'s bitmap bit is set; `None` outside the pool.
    fn allocated_bit(&self, slot: u32) -> Option<bool> {
        let word = self.bitmap.load(slot / 64, Ordering::Acquire)?;
        Some(word & (1 << (slot % 64)) != 0)
    }

    /// How many of the host's slots guest `peer` holds (0 for another
    /// pool). A count above the pool's size can only come from a damaged
    /// counter and is read as 0.
    #[cfg(all(loom, test))]
    pub(crate) fn held(&self, peer: PeerId) -> Result<u32> {
        if self.owner != Party::Host || !self.layout.is_guest(peer) {
            return Ok(0);
        }
        let held = crate::host_slots::held(&self.region, self.layout.host_to_guest_ring(peer))?;
        Ok(if held > self.slots() { 0 } else { held })
    }

    /// Checks that `slot` is allocated (at its generation) and held by
    /// `receiver`, and that `offset..offset+len` fits in it; returns the
    /// offset of its payload in the region.
    pub(crate) fn validate(
        &self,
        slot: SlotRef,
        receiver: Party,
        offset: u32,
        len: u32,
    ) -> std::result::Result<u64, String> {
        let SlotRef {
            index: slot,
            generation,
        } = slot;
        let (Some(allocated), Some((current, holder))) =
            (self.allocated_bit(slot), self.state(slot))
        else {
            return Err(format!(
                "slot index {slot} is outside the pool of {} slots",
                self.slots()
            ));
        };
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(self.layout.config.slot_size) {
            return Err(format!(
                "payload {offset}+{len} does not fit a slot of {} bytes",
                self.layout.config.slot_size
            ));
        }
        if !allocated {
            return Err(format!("slot {slot} of {} is not allocated", self.owner));
        }
        if current != generation {
            return Err(format!(
                "slot {slot} has generation {current}, the descriptor says {generation} (stale or forged)"
            ));
        }
        if holder != holder_code(receiver) {
            return Err(format!(
                "slot {slot} is not held by its receiver (holder code {holder})"
            ));
        }
        Ok(self.data_offset(slot) + u64::from(offset))
    }

    /// Whether `slot`'s bitmap bit is set, and its state word, each loaded
    /// once: what a reader compares before and after to tell whether the
    /// slot changed meanwhile. `None` for a slot index outside the pool.
    pub(crate) fn slot_word(&self, slot: u32) -> Option<(bool, u64)> {
        let allocated = self.allocated_bit(slot)?;
        let state = self.states.load(slot, Ordering::Acquire)?;
        Some((allocated, state))
    }

    /// Every slot whose bitmap bit is set, in slot order, with its
    /// generation and holder. Bits past the last slot stand for nothing
    /// and are not read as slots.
    pub(crate) fn allocated(&self) -> Vec<SlotState> {
        let mut out = Vec::new();
        for w in 0..self.bitmap.count() {
            let mut bits = self.bitmap.load(w, Ordering::Acquire).unwrap_or(0) & self.valid_bits(w);
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                if let Some((generation, holder)) = self.state(slot) {
                    out.push(SlotState {
                        slot,
                        generation,
                        holder,
                    });
                }
            }
        }
        out
    }

    /// Counts used and free slots.
    pub(crate) fn usage(&self) -> PoolUsage {
        let used: u32 = (0..self.bitmap.count())
            .map(|w| {
                let word = self.bitmap.load(w, Ordering::Acquire).unwrap_or(0);
                (word & self.valid_bits(w)).count_ones()
            })
            .sum();
        PoolUsage {
            slots: self.slots(),
            used,
            free: self.slots() - used,
        }
    }
}

impl Pool<Writing> {
    /// Allocates a free slot for `holder`, starting the search at `*hint`.
    /// The generation wraps: 0 follows `u32::MAX`.
    ///
    /// shm[impl shm.wrap]
    pub(crate) fn try_alloc(&self, holder: Party, hint: &mut u32) -> Option<SlotRef> {
        let words = self.bitmap.count();
        let start = *hint % words;
        for i in 0..words {
            let word_index = (start + i) % words;
            let word = self.bitmap.get(word_index)?;
            let valid = self.valid_bits(word_index);
            let mut current = word.load(Ordering::Relaxed);
            while current & valid != valid {
                let bit = (!current & valid).trailing_zeros();
                match word.compare_exchange_weak(
                    current,
                    current | (1 << bit),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let slot = word_index * 64 + bit;
                        // The bit is ours: nobody else writes the state word
                        // until we publish a holder (a stale free finds
                        // holder 0 and gives up).
                        let state = self.states.get(slot)?;
                        let generation =
                            generation_of(state.load(Ordering::Acquire)).wrapping_add(1);
                        state.store(pack(generation, holder_code(holder)), Ordering::Release);
                        *hint = word_index;
                        return Some(SlotRef {
                            index: slot,
                            generation,
                        });
                    }
                    Err(now) => current = now,
                }
            }
        }
        None
    }

    /// The counters of the host's slots that the guest holder code
    /// `holder` names holds (`host_slots.rs`): slots handed to it, and
    /// slots of it returned. `None` for another pool, or a code that is
    /// no guest of the segment.
    fn host_slot_counters(&self, holder: u32) -> Option<(&AtomicU32, &AtomicU32)> {
        let counters = self.counters.as_ref()?;
        match holder_party(holder) {
            Some(Party::Guest(peer)) => Some((counters.handed(peer)?, counters.returned(peer)?)),
            _ => None,
        }
    }

    /// What a waiter for a free slot sleeps on ([`Vigil`]): the release
    /// count as it is now, which every free bumps.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub(crate) fn release_vigil(&self) -> crate::wait::Vigil {
        crate::wait::Vigil {
            word: self.releases.clone(),
            sleepers: self.waiters.clone(),
            publisher: crate::wait::Publisher::Fenced,
            unchanged: Some(self.releases.get().load(Ordering::SeqCst)),
        }
    }

    /// Allocates a slot for `holder`, starting the search at `*hint`, and
    /// waiting as `waiting` says for one to be freed. A `gate` may hold the
    /// allocation back while slots are free: it then waits for a free as
    /// it would for an exhausted pool.
    pub(crate) fn alloc(
        &self,
        holder: Party,
        hint: &mut u32,
        waiting: &mut Waiting<'_>,
        mut gate: Option<&mut dyn Gate>,
    ) -> Result<SlotRef> {
        let releases = self.releases.get();
        // The release count seen just before the last failed search: a
        // sleeper sleeps only while no slot has been freed since.
        let seen = Cell::new(0);
        let search_from = Cell::new(*hint);
        let held_back = Cell::new(false);
        let ready = |may_sleep: bool| {
            if let Some(gate) = gate.as_deref_mut() {
                let marks = Releases {
                    counter: releases,
                    seen: &seen,
                };
                held_back.set(gate.holds_back(&marks)?);
                if held_back.get() {
                    return Ok(None);
                }
            }
            let mut at = search_from.get();
            let mut found = self.try_alloc(holder, &mut at);
            if found.is_none() && may_sleep {
                // Only a look that a sleep may follow reads the release
                // counter (the value it sleeps on), so that neither an
                // allocation that finds a slot nor a spinning one pulls
                // the freer's cache line, which the freer writes on every
                // free.
                seen.set(releases.load(Ordering::SeqCst));
                found = self.try_alloc(holder, &mut at);
            }
            search_from.set(at);
            Ok(found)
        };
        let none_freed =
            || Ok((releases.load(Ordering::SeqCst) == seen.get()).then_some(seen.get()));
        let sleep = |nap| {
            sleep_unless(
                Announce::Count(self.waiters.get()),
                releases,
                nap,
                none_freed,
            )
        };
        let found = wait_until(waiting, ready, sleep);
        *hint = search_from.get();
        match (found?, gate) {
            (Some(found), _) => Ok(found),
            // The gate is what stopped it only while free slots remain: a
            // full pool is said as such.
            (None, Some(gate)) if held_back.get() && self.usage().free > 0 => Err(gate.refusal()),
            (None, _) => Err(Error::PoolExhausted {
                owner: self.owner.to_string(),
            }),
        }
    }

    /// Hands a slot to `holder` (the receiver), before the descriptor that
    /// names it is published. A slot outside the pool is left alone.
    pub(crate) fn set_holder(&self, slot: SlotRef, holder: Party) {
        let Some(state) = self.states.get(slot.index) else {
            return;
        };
        let generation = generation_of(state.load(Ordering::Acquire));
        // Counted before the slot is the receiver's: the count may run
        // ahead of the slots a receiver holds, never behind.
        if let Some((handed, _)) = self.host_slot_counters(holder_code(holder)) {
            handed.fetch_add(1, Ordering::AcqRel);
        }
        state.store(pack(generation, holder_code(holder)), Ordering::Release);
    }

    /// Returns a slot to the pool if it is still allocated at its
    /// generation. Returns whether it was freed (false: already freed or
    /// reallocated).
    pub(crate) fn free(&self, slot: SlotRef) -> bool {
        self.claim(slot) && self.release_bit(slot.index)
    }

    /// Returns several slots to the pool, each if it is still allocated at
    /// its generation: each is claimed, and the bits of each run of claimed
    /// slots in the same bitmap word are cleared with one read-modify-write,
    /// after which the release count moves once. A receiver that frees a
    /// batch of slots so takes the bitmap's line from an allocator once per
    /// run, not once per slot. Returns how many were freed.
    ///
    /// shm[impl shm.pool.batch-free]
    pub(crate) fn free_many(&self, slots: &[SlotRef]) -> u32 {
        let mut freed = 0;
        let mut word = None;
        let mut mask = 0u64;
        for &one in slots {
            if !self.claim(one) {
                continue;
            }
            let slot = one.index;
            if word != Some(slot / 64) {
                if let Some(w) = word {
                    freed += self.release_bits(w, mask);
                }
                word = Some(slot / 64);
                mask = 0;
            }
            mask |= 1 << (slot % 64);
        }
        if let Some(w) = word {
            freed += self.release_bits(w, mask);
        }
        freed
    }

    /// Claims `slot` for freeing if it is allocated at its generation: its
    /// state goes from (generation, some holder) to (generation, none), in
    /// one step, and the holder's count of the host's slots goes down.
    /// False if it was already freed (no holder), allocated again (a newer
    /// generation) or is outside the pool: nothing to do. Its bit is still
    /// set afterwards: [`Pool::release_bits`] clears it.
    fn claim(&self, slot: SlotRef) -> bool {
        let SlotRef { index, generation } = slot;
        let Some(state) = self.states.get(index) else {
            return false;
        };
        let mut current = state.load(Ordering::Acquire);
        loop {
            if generation_of(current) != generation || holder_of(current) == 0 {
                return false;
            }
            match state.compare_exchange_weak(
                current,
                pack(generation, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // The slot was this holder's: one fewer counts against its share
        // (before the bit goes, so that an allocator woken by the release
        // sees the count down).
        if let Some((_, returned)) = self.host_slot_counters(holder_of(current)) {
            returned.fetch_add(1, Ordering::AcqRel);
        }
        true
    }

    /// Clears `slot`'s bit and wakes sleeping allocators; false if the bit
    /// was already clear.
    fn release_bit(&self, slot: u32) -> bool {
        self.release_bits(slot / 64, 1 << (slot % 64)) == 1
    }

    /// Clears the bits `mask` of bitmap word `word` and wakes sleeping
    /// allocators; returns how many of them were set.
    fn release_bits(&self, word: u32, mask: u64) -> u32 {
        let Some(bits) = self.bitmap.get(word) else {
            return 0;
        };
        let cleared = (bits.fetch_and(!mask, Ordering::Release) & mask).count_ones();
        if cleared == 0 {
            return 0;
        }
        // A sequentially consistent increment, then the waiter count: pairs
        // with the waiter's increment-then-read in `alloc`, so a wake is
        // never lost and never made when nobody sleeps.
        let releases = self.releases.get();
        releases.fetch_add(1, Ordering::SeqCst);
        wake_sleepers(self.waiters.get(), releases);
        cleared
    }

    /// Sets the count of the host's slots guest `peer` holds to what the
    /// slots' holders say (a process killed between freeing a slot and
    /// counting it leaves the count one too high). Only while nobody
    /// hands `peer` a slot: its entry is being reclaimed or claimed anew.
    pub(crate) fn recount_held(&self, peer: PeerId) {
        let code = holder_code(Party::Guest(peer));
        let Some((handed, returned)) = self.host_slot_counters(code) else {
            return;
        };
        // A count of 0 is never too high; the scan reads every slot's
        // metadata, which costs pages a fresh pool has not touched yet.
        let handed_now = handed.load(Ordering::Acquire);
        if handed_now == returned.load(Ordering::Acquire) {
            return;
        }
        let count = (0..self.slots())
            .filter(|&slot| self.state(slot).is_some_and(|(_, holder)| holder == code))
            .count() as u32;
        returned.store(handed_now.wrapping_sub(count), Ordering::Release);
    }

    /// Clears the waiter count (a process that died asleep leaves it set,
    /// which would only cost needless wake calls).
    pub(crate) fn clear_waiters(&self) {
        self.waiters.get().store(0, Ordering::Relaxed);
    }

    /// Frees `slot` if it is allocated at its generation and held by
    /// `holder` (a descriptor that named it was refused, but the slot is
    /// really the receiver's).
    pub(crate) fn free_if_held_by(&self, slot: SlotRef, holder: Party) -> bool {
        self.state(slot.index)
            .is_some_and(|(_, code)| code == holder_code(holder))
            && self.free(slot)
    }

    /// Whether `slot` is still `holder`'s, as the pool's own records say:
    /// allocated (its bit set) at its generation, held by `holder` or on
    /// its way back (a free has taken the holder but not yet cleared the
    /// bit, and not yet counted it returned either). False once the bit is
    /// clear or the generation moved (allocated again).
    pub(crate) fn still_held_by(&self, slot: SlotRef, holder: Party) -> bool {
        let Some((generation, code)) = self.state(slot.index) else {
            return false;
        };
        if generation != slot.generation || (code != holder_code(holder) && code != 0) {
            return false;
        }
        self.allocated_bit(slot.index) == Some(true)
    }

    /// Every slot of this pool held by `holder` now, by the slots' states.
    pub(crate) fn held_by(&self, holder: Party) -> Vec<SlotRef> {
        let code = holder_code(holder);
        (0..self.slots())
            .filter_map(|index| match self.state(index) {
                Some((generation, now)) if now == code => Some(SlotRef { index, generation }),
                _ => None,
            })
            .collect()
    }

    /// Frees every allocated slot whose holder is `holder`, except those
    /// `keep` names (lent out in this process); returns how many.
    pub(crate) fn free_held_by(&self, holder: Party, keep: &dyn Fn(u32) -> bool) -> u32 {
        let held = self.held_by(holder);
        held.into_iter()
            .filter(|slot| !keep(slot.index) && self.free(*slot))
            .count() as u32
    }

    /// Frees every allocated slot except those `keep` names; returns how
    /// many. Only for the pool of a dead guest, its only allocator: a slot
    /// whose bit is set with no holder was being allocated when the guest
    /// died, and is cleared too.
    pub(crate) fn free_all(&self, keep: &dyn Fn(u32) -> bool) -> u32 {
        let mut freed = 0;
        for index in 0..self.slots() {
            if keep(index) {
                continue;
            }
            let done = match self.state(index) {
                Some((_, 0)) => self.release_bit(index),
                Some((generation, _)) => self.free(SlotRef { index, generation }),
                None => false,
            };
            if done {
                freed += 1;
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::guest;
    use crate::wait::{Deadline, WaitStrategy};
    use crate::{HeapRegion, SegmentConfig};

    const HOST: Party = Party::Host;

    /// A region of one guest's segment with pools of `slots` slots, and
    /// `owner`'s pool in it, opened.
    fn setup(slots: u32, owner: Party) -> (Region, SegmentLayout, Pool) {
        let config = SegmentConfig {
            max_guests: 1,
            slots_per_pool: slots,
            slot_size: 128,
            max_payload: 128,
            ..SegmentConfig::default()
        };
        let layout = config.layout().unwrap();
        let region = HeapRegion::new_zeroed(layout.total_size as usize)
            .unwrap()
            .region();
        let pool = Pool::open(&region, &layout, owner).unwrap();
        (region, layout, pool)
    }

    /// A slot of the host's `pool` allocated and handed to `holder`.
    fn lent(pool: &Pool, hint: &mut u32, holder: Party) -> SlotRef {
        let slot = pool.try_alloc(HOST, hint).unwrap();
        pool.set_holder(slot, holder);
        slot
    }

    // shm[verify shm.pool.batch-free]
    #[test]
    fn a_batch_free_clears_each_word_once_and_skips_stale_slots() {
        let (region, layout, pool) = setup(70, HOST);
        let mut hint = 0;
        let all: Vec<SlotRef> = (0..70)
            .map(|_| pool.try_alloc(HOST, &mut hint).unwrap())
            .collect();
        for &slot in &all {
            pool.set_holder(slot, guest(1));
        }
        let releases = || region.load_u32(layout.pool(HOST) + field::RELEASES, Ordering::SeqCst);
        // Slots of both bitmap words, out of order, one of them stale (a
        // generation it no longer has) and one already freed.
        let (gone, stale) = (all[5], all[6]);
        assert!(pool.free(gone));
        let before = releases().unwrap();
        let batch = [
            all[3],
            all[65],
            all[4],
            SlotRef {
                generation: stale.generation + 1,
                ..stale
            },
            gone,
            all[69],
            all[0],
        ];
        assert_eq!(pool.free_many(&batch), 5);
        // Runs of one word each: [3], [65], [4], [69], [0] after the
        // skipped ones, so the count moved once per run, not per slot.
        assert_eq!(releases().unwrap(), before + 5);
        assert_eq!(pool.usage().used, 70 - 6);
        for slot in [0, 3, 4, 5, 65, 69] {
            assert_eq!(pool.state(slot).unwrap().1, 0, "slot {slot} has no holder");
        }
        assert_eq!(
            pool.state(stale.index).unwrap(),
            (stale.generation, holder_code(guest(1)))
        );
        // One run for a whole word: one release for four slots.
        let before = releases().unwrap();
        assert_eq!(pool.free_many(&[all[7], all[8], all[9], all[10]]), 4);
        assert_eq!(releases().unwrap(), before + 1);
        assert_eq!(pool.usage().used, 70 - 10);
        // Nothing to free: the count stays.
        let outside = SlotRef {
            index: 999,
            generation: 1,
        };
        assert_eq!(pool.free_many(&[all[7], outside]), 0);
        assert_eq!(releases().unwrap(), before + 1);
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn allocates_every_slot_once_then_reports_exhaustion() {
        let (_, _, pool) = setup(70, HOST);
        let mut hint = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..70 {
            let slot = pool.try_alloc(HOST, &mut hint).unwrap();
            assert!(slot.index < 70);
            assert_eq!(slot.generation, 1);
            assert!(seen.insert(slot.index));
        }
        assert_eq!(pool.try_alloc(HOST, &mut hint), None);
        assert_eq!(
            pool.usage(),
            PoolUsage {
                slots: 70,
                used: 70,
                free: 0
            }
        );
        let mut no_wait = Waiting {
            strategy: WaitStrategy::Block,
            deadline: Deadline::no_wait(),
            stop: &mut || Ok(()),
        };
        let err = pool.alloc(HOST, &mut hint, &mut no_wait, None);
        assert!(matches!(err, Err(Error::PoolExhausted { .. })));
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn generation_is_bumped_on_each_allocation_and_checked_on_free() {
        let (_, _, pool) = setup(1, guest(1));
        let mut hint = 0;
        let first = pool.try_alloc(guest(1), &mut hint).unwrap();
        let wrong = SlotRef {
            generation: first.generation + 1,
            ..first
        };
        assert!(!pool.free(wrong), "wrong generation must not free");
        assert!(pool.free(first));
        assert!(!pool.free(first), "double free must not free twice");
        let second = pool.try_alloc(guest(1), &mut hint).unwrap();
        assert_eq!(second.generation, first.generation + 1);
        assert!(
            !pool.free(first),
            "stale generation must not free the new allocation"
        );
    }

    // shm[verify shm.pool.bitmap]
    // shm[verify shm.recv.validate]
    #[test]
    fn validate_refuses_bad_descriptors() {
        let (_, _, pool) = setup(4, HOST);
        let mut hint = 0;
        let slot = lent(&pool, &mut hint, guest(3));
        let other = |index, generation| SlotRef { index, generation };
        assert!(pool.validate(slot, guest(3), 0, 128).is_ok());
        assert!(
            pool.validate(slot, guest(3), 64, 65).is_err(),
            "past the slot end"
        );
        assert!(
            pool.validate(slot, guest(3), u32::MAX, u32::MAX).is_err(),
            "overflow"
        );
        assert!(
            pool.validate(other(slot.index, slot.generation + 1), guest(3), 0, 1)
                .is_err(),
            "stale generation"
        );
        assert!(
            pool.validate(slot, guest(2), 0, 1).is_err(),
            "wrong receiver"
        );
        assert!(
            pool.validate(other(9, slot.generation), guest(3), 0, 1)
                .is_err(),
            "index out of range"
        );
        assert!(
            pool.validate(other(slot.index + 1, 0), guest(3), 0, 1)
                .is_err(),
            "not allocated"
        );
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn free_held_by_returns_only_that_holders_slots() {
        let (_, _, pool) = setup(8, HOST);
        let mut hint = 0;
        for _ in 0..3 {
            lent(&pool, &mut hint, guest(5));
        }
        pool.try_alloc(HOST, &mut hint).unwrap();
        assert_eq!(pool.free_held_by(guest(5), &|_| false), 3);
        assert_eq!(pool.usage().used, 1);
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn waiting_allocator_gets_the_freed_slot() {
        let (region, layout, pool) = setup(1, HOST);
        let mut hint = 0;
        let slot = pool.try_alloc(HOST, &mut hint).unwrap();
        let other = region.clone();
        let waiter = std::thread::spawn(move || {
            let pool = Pool::open(&other, &layout, HOST).unwrap();
            let mut waiting = Waiting {
                strategy: WaitStrategy::Block,
                deadline: Deadline::after(Some(std::time::Duration::from_secs(20))),
                stop: &mut || Ok(()),
            };
            pool.alloc(HOST, &mut 0, &mut waiting, None).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(pool.free(slot));
        let again = SlotRef {
            generation: slot.generation + 1,
            ..slot
        };
        assert_eq!(waiter.join().unwrap(), again);
    }
}
