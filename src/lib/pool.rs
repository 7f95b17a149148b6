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
use crate::region::Region;
use crate::sync::atomic::AtomicU32;
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

/// A view of one pool in a region: the host's, or a guest's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool<'a> {
    region: &'a Region,
    layout: &'a SegmentLayout,
    owner: Party,
    base: u64,
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

impl<'a> Pool<'a> {
    pub(crate) fn new(region: &'a Region, layout: &'a SegmentLayout, owner: Party) -> Self {
        Pool {
            region,
            layout,
            owner,
            base: layout.pool(owner),
        }
    }

    /// The region the pool lies in.
    pub(crate) fn region(&self) -> &'a Region {
        self.region
    }

    /// The layout of the segment the pool belongs to.
    pub(crate) fn layout(&self) -> &'a SegmentLayout {
        self.layout
    }

    /// Whose pool this is.
    pub(crate) fn owner(&self) -> Party {
        self.owner
    }

    fn slots(&self) -> u32 {
        self.layout.config.slots_per_pool
    }

    fn words(&self) -> u32 {
        self.slots().div_ceil(64)
    }

    fn word_offset(&self, word: u32) -> u64 {
        self.base + self.layout.pool_bitmap_offset + u64::from(word) * 8
    }

    fn meta_offset(&self, slot: u32) -> u64 {
        self.base + self.layout.pool_meta_offset + u64::from(slot) * SLOT_META_SIZE
    }

    /// Offset of a slot's first data byte.
    pub(crate) fn data_offset(&self, slot: u32) -> u64 {
        self.base
            + self.layout.pool_data_offset
            + u64::from(slot) * u64::from(self.layout.config.slot_size)
    }

    /// Bits of `word` that stand for real slots (the last word may be partial).
    fn valid_bits(&self, word: u32) -> u64 {
        valid_bits(self.slots(), word)
    }

    /// Allocates a free slot for `holder`, starting the search at `*hint`.
    /// The generation wraps: 0 follows `u32::MAX`.
    ///
    /// shm[impl shm.wrap]
    pub(crate) fn try_alloc(&self, holder: Party, hint: &mut u32) -> Result<Option<SlotRef>> {
        let words = self.words();
        let start = *hint % words;
        for i in 0..words {
            let word_index = (start + i) % words;
            let word = self.region.atomic_u64(self.word_offset(word_index))?;
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
                        let state = self
                            .region
                            .atomic_u64(self.meta_offset(slot) + field::SLOT_STATE)?;
                        let generation =
                            generation_of(state.load(Ordering::Acquire)).wrapping_add(1);
                        state.store(pack(generation, holder_code(holder)), Ordering::Release);
                        *hint = word_index;
                        return Ok(Some(SlotRef {
                            index: slot,
                            generation,
                        }));
                    }
                    Err(now) => current = now,
                }
            }
        }
        Ok(None)
    }

    /// The counters of the host's slots that the guest holder code
    /// `holder` names holds (`host_slots.rs`); `None` for another pool, or
    /// a code that is no guest.
    fn host_slot_counters(&self, holder: u32) -> Result<Option<Counters<'a>>> {
        match holder_party(holder) {
            Some(Party::Guest(peer)) if self.owner == Party::Host && self.layout.is_guest(peer) => {
                Ok(Some(Counters::of(self.region, self.layout, peer)?))
            }
            _ => Ok(None),
        }
    }

    /// How many of the host's slots guest `peer` holds (0 for another
    /// pool). A count above the pool's size can only come from a damaged
    /// counter and is read as 0.
    #[cfg(all(loom, test))]
    pub(crate) fn held(&self, peer: PeerId) -> Result<u32> {
        if self.owner != Party::Host || !self.layout.is_guest(peer) {
            return Ok(0);
        }
        let held = crate::host_slots::held(self.region, self.layout.host_to_guest_ring(peer))?;
        Ok(if held > self.slots() { 0 } else { held })
    }

    /// What a waiter for a free slot sleeps on ([`Vigil`]): the release
    /// count as it is now, which every free bumps.
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub(crate) fn release_vigil(&self) -> Result<crate::wait::Vigil> {
        use crate::region::Word;
        let releases: Word = Word::new(self.region, self.base + field::RELEASES)?;
        let now = releases.get().load(Ordering::SeqCst);
        Ok(crate::wait::Vigil {
            word: releases,
            sleepers: Word::new(self.region, self.base + field::WAITERS)?,
            unfenced: false,
            unchanged: Some(now),
        })
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
        let releases = self.region.atomic_u32(self.base + field::RELEASES)?;
        let waiters = self.region.atomic_u32(self.base + field::WAITERS)?;
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
            let mut found = self.try_alloc(holder, &mut at)?;
            if found.is_none() && may_sleep {
                // Only a look that a sleep may follow reads the release
                // counter (the value it sleeps on), so that neither an
                // allocation that finds a slot nor a spinning one pulls
                // the freer's cache line, which the freer writes on every
                // free.
                seen.set(releases.load(Ordering::SeqCst));
                found = self.try_alloc(holder, &mut at)?;
            }
            search_from.set(at);
            Ok(found)
        };
        let none_freed =
            || Ok((releases.load(Ordering::SeqCst) == seen.get()).then_some(seen.get()));
        let sleep = |nap| sleep_unless(Announce::Count(waiters), releases, nap, none_freed);
        let found = wait_until(waiting, ready, sleep);
        *hint = search_from.get();
        match (found?, gate) {
            (Some(found), _) => Ok(found),
            // The gate is what stopped it only while free slots remain: a
            // full pool is said as such.
            (None, Some(gate)) if held_back.get() && self.usage()?.free > 0 => Err(gate.refusal()),
            (None, _) => Err(Error::PoolExhausted {
                owner: self.owner.to_string(),
            }),
        }
    }

    /// Hands a slot to `holder` (the receiver), before the descriptor that
    /// names it is published.
    pub(crate) fn set_holder(&self, slot: SlotRef, holder: Party) -> Result<()> {
        let state = self
            .region
            .atomic_u64(self.meta_offset(slot.index) + field::SLOT_STATE)?;
        let generation = generation_of(state.load(Ordering::Acquire));
        // Counted before the slot is the receiver's: the count may run
        // ahead of the slots a receiver holds, never behind.
        if let Some(counters) = self.host_slot_counters(holder_code(holder))? {
            counters.handed.fetch_add(1, Ordering::AcqRel);
        }
        state.store(pack(generation, holder_code(holder)), Ordering::Release);
        Ok(())
    }

    /// The generation and holder code of `slot` (works on read-only regions).
    fn state(&self, slot: u32) -> Result<(u32, u32)> {
        let state = self.region.load_u64(
            self.meta_offset(slot) + field::SLOT_STATE,
            Ordering::Acquire,
        )?;
        Ok((generation_of(state), holder_of(state)))
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
        if slot >= self.slots() {
            return Err(format!(
                "slot index {slot} is outside the pool of {} slots",
                self.slots()
            ));
        }
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(self.layout.config.slot_size) {
            return Err(format!(
                "payload {offset}+{len} does not fit a slot of {} bytes",
                self.layout.config.slot_size
            ));
        }
        let word = self
            .region
            .load_u64(self.word_offset(slot / 64), Ordering::Acquire)
            .map_err(|e| e.to_string())?;
        if word & (1 << (slot % 64)) == 0 {
            return Err(format!("slot {slot} of {} is not allocated", self.owner));
        }
        let (current, holder) = self.state(slot).map_err(|e| e.to_string())?;
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

    /// Returns a slot to the pool if it is still allocated at its
    /// generation. Returns whether it was freed (false: already freed or
    /// reallocated).
    pub(crate) fn free(&self, slot: SlotRef) -> Result<bool> {
        if !self.claim(slot)? {
            return Ok(false);
        }
        self.release_bit(slot.index)
    }

    /// Returns several slots to the pool, each if it is still allocated at
    /// its generation: each is claimed, and the bits of each run of claimed
    /// slots in the same bitmap word are cleared with one read-modify-write,
    /// after which the release count moves once. A receiver that frees a
    /// batch of slots so takes the bitmap's line from an allocator once per
    /// run, not once per slot. Returns how many were freed.
    ///
    /// shm[impl shm.pool.batch-free]
    pub(crate) fn free_many(&self, slots: &[SlotRef]) -> Result<u32> {
        let mut freed = 0;
        let mut word = None;
        let mut mask = 0u64;
        for &one in slots {
            if !self.claim(one)? {
                continue;
            }
            let slot = one.index;
            if word != Some(slot / 64) {
                if let Some(w) = word {
                    freed += self.release_bits(w, mask)?;
                }
                word = Some(slot / 64);
                mask = 0;
            }
            mask |= 1 << (slot % 64);
        }
        if let Some(w) = word {
            freed += self.release_bits(w, mask)?;
        }
        Ok(freed)
    }

    /// Claims `slot` for freeing if it is allocated at its generation: its
    /// state goes from (generation, some holder) to (generation, none), in
    /// one step, and the holder's count of the host's slots goes down.
    /// False if it was already freed (no holder) or allocated again (a
    /// newer generation): nothing to do. Its bit is still set afterwards:
    /// [`Pool::release_bits`] clears it.
    fn claim(&self, slot: SlotRef) -> Result<bool> {
        let SlotRef {
            index: slot,
            generation,
        } = slot;
        if slot >= self.slots() {
            return Ok(false);
        }
        let state = self
            .region
            .atomic_u64(self.meta_offset(slot) + field::SLOT_STATE)?;
        let mut current = state.load(Ordering::Acquire);
        loop {
            if generation_of(current) != generation || holder_of(current) == 0 {
                return Ok(false);
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
        if let Some(counters) = self.host_slot_counters(holder_of(current))? {
            counters.returned.fetch_add(1, Ordering::AcqRel);
        }
        Ok(true)
    }

    /// Clears `slot`'s bit and wakes sleeping allocators; false if the bit
    /// was already clear.
    fn release_bit(&self, slot: u32) -> Result<bool> {
        Ok(self.release_bits(slot / 64, 1 << (slot % 64))? == 1)
    }

    /// Clears the bits `mask` of bitmap word `word` and wakes sleeping
    /// allocators; returns how many of them were set.
    fn release_bits(&self, word: u32, mask: u64) -> Result<u32> {
        let before = self
            .region
            .atomic_u64(self.word_offset(word))?
            .fetch_and(!mask, Ordering::Release);
        let cleared = (before & mask).count_ones();
        if cleared == 0 {
            return Ok(0);
        }
        // A sequentially consistent increment, then the waiter count: pairs
        // with the waiter's increment-then-read in `alloc`, so a wake is
        // never lost and never made when nobody sleeps.
        let releases = self.region.atomic_u32(self.base + field::RELEASES)?;
        releases.fetch_add(1, Ordering::SeqCst);
        wake_sleepers(
            self.region.atomic_u32(self.base + field::WAITERS)?,
            releases,
        );
        Ok(cleared)
    }

    /// Sets the count of the host's slots guest `peer` holds to what the
    /// slots' holders say (a process killed between freeing a slot and
    /// counting it leaves the count one too high). Only while nobody
    /// hands `peer` a slot: its entry is being reclaimed or claimed anew.
    pub(crate) fn recount_held(&self, peer: PeerId) -> Result<()> {
        let code = holder_code(Party::Guest(peer));
        let Some(Counters { handed, returned }) = self.host_slot_counters(code)? else {
            return Ok(());
        };
        // A count of 0 is never too high; the scan reads every slot's
        // metadata, which costs pages a fresh pool has not touched yet.
        let handed_now = handed.load(Ordering::Acquire);
        if handed_now == returned.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut count = 0u32;
        for slot in 0..self.slots() {
            if self.state(slot)?.1 == code {
                count += 1;
            }
        }
        returned.store(handed_now.wrapping_sub(count), Ordering::Release);
        Ok(())
    }

    /// Clears the waiter count (a process that died asleep leaves it set,
    /// which would only cost needless wake calls).
    pub(crate) fn clear_waiters(&self) -> Result<()> {
        self.region
            .store_u32(self.base + field::WAITERS, 0, Ordering::Relaxed)?;
        Ok(())
    }

    /// Frees `slot` if it is allocated at its generation and held by
    /// `holder` (a descriptor that named it was refused, but the slot is
    /// really the receiver's).
    pub(crate) fn free_if_held_by(&self, slot: SlotRef, holder: Party) -> Result<bool> {
        if slot.index >= self.slots() {
            return Ok(false);
        }
        if self.state(slot.index)?.1 != holder_code(holder) {
            return Ok(false);
        }
        self.free(slot)
    }

    /// Whether `slot` is still `holder`'s, as the pool's own records say:
    /// allocated (its bit set) at its generation, held by `holder` or on
    /// its way back (a free has taken the holder but not yet cleared the
    /// bit, and not yet counted it returned either). False once the bit is
    /// clear or the generation moved (allocated again).
    pub(crate) fn still_held_by(&self, slot: SlotRef, holder: Party) -> Result<bool> {
        if slot.index >= self.slots() {
            return Ok(false);
        }
        let (generation, code) = self.state(slot.index)?;
        if generation != slot.generation || (code != holder_code(holder) && code != 0) {
            return Ok(false);
        }
        let word = self
            .region
            .load_u64(self.word_offset(slot.index / 64), Ordering::Acquire)?;
        Ok(word & (1 << (slot.index % 64)) != 0)
    }

    /// Every slot of this pool held by `holder` now, by the slots' states.
    pub(crate) fn held_by(&self, holder: Party) -> Result<Vec<SlotRef>> {
        let code = holder_code(holder);
        let mut held = Vec::new();
        for slot in 0..self.slots() {
            let (generation, now) = self.state(slot)?;
            if now == code {
                held.push(SlotRef {
                    index: slot,
                    generation,
                });
            }
        }
        Ok(held)
    }

    /// Frees every allocated slot whose holder is `holder`, except those
    /// `keep` names (lent out in this process); returns how many.
    pub(crate) fn free_held_by(&self, holder: Party, keep: &dyn Fn(u32) -> bool) -> Result<u32> {
        let code = holder_code(holder);
        let mut freed = 0;
        for slot in 0..self.slots() {
            if keep(slot) {
                continue;
            }
            let (generation, now) = self.state(slot)?;
            if now != code {
                continue;
            }
            if self.free(SlotRef {
                index: slot,
                generation,
            })? {
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// Frees every allocated slot except those `keep` names; returns how
    /// many. Only for the pool of a dead guest, its only allocator: a slot
    /// whose bit is set with no holder was being allocated when the guest
    /// died, and is cleared too.
    pub(crate) fn free_all(&self, keep: &dyn Fn(u32) -> bool) -> Result<u32> {
        let mut freed = 0;
        for slot in 0..self.slots() {
            if keep(slot) {
                continue;
            }
            let (generation, holder) = self.state(slot)?;
            let done = if holder == 0 {
                self.release_bit(slot)?
            } else {
                self.free(SlotRef {
                    index: slot,
                    generation,
                })?
            };
            if done {
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// Whether `slot`'s bitmap bit is set, and its state word, each loaded
    /// once (works on read-only regions): what a reader compares before and
    /// after to tell whether the slot changed meanwhile. `None` for a slot
    /// index outside the pool.
    pub(crate) fn slot_word(&self, slot: u32) -> Result<Option<(bool, u64)>> {
        if slot >= self.slots() {
            return Ok(None);
        }
        let word = self
            .region
            .load_u64(self.word_offset(slot / 64), Ordering::Acquire)?;
        let state = self.region.load_u64(
            self.meta_offset(slot) + field::SLOT_STATE,
            Ordering::Acquire,
        )?;
        Ok(Some((word & (1 << (slot % 64)) != 0, state)))
    }

    /// Every slot whose bitmap bit is set, in slot order, with its
    /// generation and holder (works on read-only regions). Bits past the
    /// last slot stand for nothing and are not read as slots.
    pub(crate) fn allocated(&self) -> Result<Vec<SlotState>> {
        let mut out = Vec::new();
        for w in 0..self.words() {
            let mut bits = self
                .region
                .load_u64(self.word_offset(w), Ordering::Acquire)?
                & self.valid_bits(w);
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                let (generation, holder) = self.state(slot)?;
                out.push(SlotState {
                    slot,
                    generation,
                    holder,
                });
            }
        }
        Ok(out)
    }

    /// Counts used and free slots (works on read-only regions).
    pub(crate) fn usage(&self) -> Result<PoolUsage> {
        let mut used = 0;
        for w in 0..self.words() {
            let word = self
                .region
                .load_u64(self.word_offset(w), Ordering::Acquire)?;
            used += (word & self.valid_bits(w)).count_ones();
        }
        Ok(PoolUsage {
            slots: self.slots(),
            used,
            free: self.slots() - used,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::guest;
    use crate::wait::{Deadline, WaitStrategy};
    use crate::{HeapRegion, SegmentConfig};

    const HOST: Party = Party::Host;

    fn setup(slots: u32) -> (Region, SegmentLayout) {
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
        (region, layout)
    }

    // shm[verify shm.pool.batch-free]
    #[test]
    fn a_batch_free_clears_each_word_once_and_skips_stale_slots() {
        let (region, layout) = setup(70);
        let pool = Pool::new(&region, &layout, HOST);
        let mut hint = 0;
        let all: Vec<SlotRef> = (0..70)
            .map(|_| pool.try_alloc(HOST, &mut hint).unwrap().unwrap())
            .collect();
        for &slot in &all {
            pool.set_holder(slot, guest(1)).unwrap();
        }
        let releases = || region.load_u32(layout.pool(HOST) + field::RELEASES, Ordering::SeqCst);
        // Slots of both bitmap words, out of order, one of them stale (a
        // generation it no longer has) and one already freed.
        let (gone, stale) = (all[5], all[6]);
        assert!(pool.free(gone).unwrap());
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
        assert_eq!(pool.free_many(&batch).unwrap(), 5);
        // Runs of one word each: [3], [65], [4], [69], [0] after the
        // skipped ones, so the count moved once per run, not per slot.
        assert_eq!(releases().unwrap(), before + 5);
        assert_eq!(pool.usage().unwrap().used, 70 - 6);
        for slot in [0, 3, 4, 5, 65, 69] {
            assert_eq!(pool.state(slot).unwrap().1, 0, "slot {slot} has no holder");
        }
        assert_eq!(
            pool.state(stale.index).unwrap(),
            (stale.generation, holder_code(guest(1)))
        );
        // One run for a whole word: one release for four slots.
        let before = releases().unwrap();
        assert_eq!(
            pool.free_many(&[all[7], all[8], all[9], all[10]]).unwrap(),
            4
        );
        assert_eq!(releases().unwrap(), before + 1);
        assert_eq!(pool.usage().unwrap().used, 70 - 10);
        // Nothing to free: the count stays.
        let outside = SlotRef {
            index: 999,
            generation: 1,
        };
        assert_eq!(pool.free_many(&[all[7], outside]).unwrap(), 0);
        assert_eq!(releases().unwrap(), before + 1);
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn allocates_every_slot_once_then_reports_exhaustion() {
        let (region, layout) = setup(70);
        let pool = Pool::new(&region, &layout, HOST);
        let mut hint = 0;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..70 {
            let slot = pool.try_alloc(HOST, &mut hint).unwrap().unwrap();
            assert!(slot.index < 70);
            assert_eq!(slot.generation, 1);
            assert!(seen.insert(slot.index));
        }
        assert_eq!(pool.try_alloc(HOST, &mut hint).unwrap(), None);
        assert_eq!(
            pool.usage().unwrap(),
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
        let (region, layout) = setup(1);
        let pool = Pool::new(&region, &layout, guest(1));
        let mut hint = 0;
        let first = pool.try_alloc(guest(1), &mut hint).unwrap().unwrap();
        let wrong = SlotRef {
            generation: first.generation + 1,
            ..first
        };
        assert!(!pool.free(wrong).unwrap(), "wrong generation must not free");
        assert!(pool.free(first).unwrap());
        assert!(
            !pool.free(first).unwrap(),
            "double free must not free twice"
        );
        let second = pool.try_alloc(guest(1), &mut hint).unwrap().unwrap();
        assert_eq!(second.generation, first.generation + 1);
        assert!(
            !pool.free(first).unwrap(),
            "stale generation must not free the new allocation"
        );
    }

    // shm[verify shm.pool.bitmap]
    // shm[verify shm.recv.validate]
    #[test]
    fn validate_refuses_bad_descriptors() {
        let (region, layout) = setup(4);
        let pool = Pool::new(&region, &layout, HOST);
        let mut hint = 0;
        let slot = pool.try_alloc(HOST, &mut hint).unwrap().unwrap();
        pool.set_holder(slot, guest(3)).unwrap();
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
        let (region, layout) = setup(8);
        let pool = Pool::new(&region, &layout, HOST);
        let mut hint = 0;
        for _ in 0..3 {
            let slot = pool.try_alloc(HOST, &mut hint).unwrap().unwrap();
            pool.set_holder(slot, guest(5)).unwrap();
        }
        pool.try_alloc(HOST, &mut hint).unwrap().unwrap();
        assert_eq!(pool.free_held_by(guest(5), &|_| false).unwrap(), 3);
        assert_eq!(pool.usage().unwrap().used, 1);
    }

    // shm[verify shm.pool.bitmap]
    #[test]
    fn waiting_allocator_gets_the_freed_slot() {
        let (region, layout) = setup(1);
        let pool = Pool::new(&region, &layout, HOST);
        let mut hint = 0;
        let slot = pool.try_alloc(HOST, &mut hint).unwrap().unwrap();
        let other = region.clone();
        let waiter = std::thread::spawn(move || {
            let pool = Pool::new(&other, &layout, HOST);
            let mut waiting = Waiting {
                strategy: WaitStrategy::Block,
                deadline: Deadline::after(Some(std::time::Duration::from_secs(20))),
                stop: &mut || Ok(()),
            };
            pool.alloc(HOST, &mut 0, &mut waiting, None).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(pool.free(slot).unwrap());
        let again = SlotRef {
            generation: slot.generation + 1,
            ..slot
        };
        assert_eq!(waiter.join().unwrap(), again);
    }
}
