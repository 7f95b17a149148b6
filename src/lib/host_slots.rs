//! How many of the host's slots each guest holds: two counters per guest,
//! kept by the host's pool as it hands slots over and takes them back.
//!
//! The counters live in the spare words of the guest's host-to-guest ring
//! control block, each on the cache line of the side that writes it: the
//! host, handing a slot over, bumps `handed` on its own (producer's) line;
//! the guest, freeing what it received, bumps `returned` on its own
//! (consumer's) line next to its head. Counting so costs no cache-line
//! transfer per message. What the counts are for (a share per guest) is
//! decided above, in `share.rs`; the ring itself never reads them.
//!
//! shm[impl shm.pool.share]

use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::layout::SegmentLayout;
use crate::party::PeerId;
use crate::region::{Atomics, Mode, Region, RegionError, Writing};
use crate::sync::atomic::AtomicU32;

/// Byte offsets of the counters from the start of a host-to-guest ring's
/// control block.
pub(crate) mod field {
    /// `u32`: how many of the host's slots the host has handed to this
    /// guest, ever (wrapping). On the producer's line.
    pub const HANDED: u64 = 8;
    /// `u32`: how many of the host's slots held by this guest were freed,
    /// ever (wrapping). On the consumer's line.
    pub const RETURNED: u64 = 72;
}

/// The two counters of every guest of a segment, checked once: what the
/// host's pool keeps as it hands slots over and takes them back.
#[derive(Debug, Clone)]
pub(crate) struct Counters<M: Mode = Writing> {
    /// Slots handed to each guest, ever (index: the guest's table index).
    handed: Atomics<AtomicU32, M>,
    /// Slots each guest held that were freed, ever.
    returned: Atomics<AtomicU32, M>,
}

impl<M: Mode> Counters<M> {
    /// The counters of every guest of `layout` in `region`.
    pub(crate) fn open(region: &Region, layout: &SegmentLayout) -> Result<Self> {
        // The first guest's host-to-guest ring: the second of its pair.
        let first = layout.rings_offset + layout.ring_size;
        let (count, stride) = (layout.config.max_guests, layout.ring_pair_stride);
        Ok(Counters {
            handed: Atomics::new(region, first + field::HANDED, count, stride)?,
            returned: Atomics::new(region, first + field::RETURNED, count, stride)?,
        })
    }
}

impl Counters<Writing> {
    /// Guest `guest`'s count of slots handed to it; `None` for a guest
    /// past the table.
    #[inline]
    pub(crate) fn handed(&self, guest: PeerId) -> Option<&AtomicU32> {
        self.handed.get(guest.index() as u32)
    }

    /// Guest `guest`'s count of slots it held that were freed.
    #[inline]
    pub(crate) fn returned(&self, guest: PeerId) -> Option<&AtomicU32> {
        self.returned.get(guest.index() as u32)
    }
}

/// How many of the host's slots a guest holds: handed minus returned
/// (wrapping), from the counters in its host-to-guest ring at offset
/// `ring`. Works on read-only regions.
///
/// Two processes write the two counters, so a reader preempted between
/// its two loads could pair an old `returned` with a newer `handed` and
/// report more than the guest ever held (a stress test's monitor saw 5
/// with a share of 2). So `handed` is read on both sides of `returned`:
/// unchanged, nothing was handed meanwhile, and the difference is what
/// the guest held at the moment `returned` was read.
pub(crate) fn held(region: &Region, ring: u64) -> std::result::Result<u32, RegionError> {
    let load = |f| region.load_u32(ring + f, Ordering::Acquire);
    let mut handed = load(field::HANDED)?;
    for _ in 0..16 {
        let returned = load(field::RETURNED)?;
        let again = load(field::HANDED)?;
        if again == handed {
            return Ok(handed.wrapping_sub(returned));
        }
        handed = again;
    }
    // A host handing slots faster than this can look: the count of the
    // last look, which may run ahead.
    let returned = load(field::RETURNED)?;
    Ok(load(field::HANDED)?.wrapping_sub(returned))
}
