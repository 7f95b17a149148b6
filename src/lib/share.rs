//! The host's share per guest: how many of the host's slots one guest may
//! hold at once, so that a guest that stops receiving cannot take the
//! whole pool from the others. A policy over the pool (it holds an
//! allocation back through the pool's [`Gate`]), the peer table (the fair
//! share divides the pool among the entries in use) and the host's own
//! record of what it handed out ([`HandedSlots`]); the counters of
//! `host_slots.rs`, which the guest can write, only inform.
//!
//! shm[impl shm.pool.share]

use crate::error::{Error, Result};
use crate::layout::SegmentLayout;
use crate::party::{Party, PeerId, PeerState};
use crate::peer::Peer;
use crate::pool::{Gate, Pool, Releases, SlotRef};
use crate::region::Region;

/// The host's slots one guest may hold now: the fixed share if the header
/// sets one, else the pool divided among the entries in use (attached,
/// reserved, or leaving with messages unread), at least 1.
pub(crate) fn host_share(region: &Region, layout: &SegmentLayout, fixed: u32) -> Result<u32> {
    if fixed > 0 {
        return Ok(fixed);
    }
    let mut in_use = 0u32;
    for p in layout.guests() {
        // A state no state is an entry in use (its guest is cut off when
        // an operation on it meets it): one bad entry does not fail the
        // sends to every other guest.
        if Peer::new(region, layout, p).raw_state()? != PeerState::Empty.to_u32() {
            in_use += 1;
        }
    }
    Ok((layout.config.slots_per_pool / in_use.max(1)).max(1))
}

/// The least share a guest can have: below it there is no need to look
/// at the peer table.
pub(crate) fn least_host_share(layout: &SegmentLayout, fixed: u32) -> u32 {
    if fixed > 0 {
        fixed
    } else {
        (layout.config.slots_per_pool / layout.config.max_guests.max(1)).max(1)
    }
}

/// The host's own record of the slots it has handed to one guest and not
/// seen come back: the count its share is judged by. It lives in the
/// sending process, never in the file, so that nothing the guest writes
/// (the counters in its ring, say) makes it hold more than its share
/// (`shm.pool.share`).
#[derive(Debug, Default)]
pub(crate) struct HandedSlots {
    /// The slots handed, some of which may have come back since.
    slots: Vec<SlotRef>,
    /// Whether `slots` has been filled from the pool's records yet (at the
    /// first send that asks): what an earlier host process handed out.
    known: bool,
}

impl HandedSlots {
    /// The record of a host that hands slots to a guest of `layout` whose
    /// header share is `fixed`; `None` when no share can stop an
    /// allocation there (see [`HostShare::of`]): nothing is recorded.
    pub(crate) fn for_share(layout: &SegmentLayout, fixed: u32) -> Option<Self> {
        (least_host_share(layout, fixed) < layout.config.slots_per_pool).then(Self::default)
    }

    /// Records `slot`, handed to the guest.
    #[inline]
    pub(crate) fn push(&mut self, slot: SlotRef) {
        self.slots.push(slot);
    }

    /// Forgets everything (the guest's entry was reset): the next look
    /// starts from the pool's records.
    pub(crate) fn reset(&mut self) {
        self.slots.clear();
        self.known = false;
    }

    /// How many are recorded, some perhaps back already: a bound from
    /// above on what the guest holds, read without touching shared memory.
    fn bound(&self) -> usize {
        if self.known {
            self.slots.len()
        } else {
            usize::MAX
        }
    }

    /// Drops the slots that came back (freed, or allocated again), after
    /// filling the record from `pool` if this process never has; how many
    /// the guest holds now.
    fn recount(&mut self, pool: &Pool, guest: PeerId) -> u32 {
        if !self.known {
            self.slots = pool.held_by(Party::Guest(guest));
            self.known = true;
        }
        self.slots
            .retain(|&slot| pool.still_held_by(slot, Party::Guest(guest)));
        self.slots.len() as u32
    }
}

/// The share of one receiving guest, as a gate on the host's pool.
pub(crate) struct HostShare<'a> {
    receiver: PeerId,
    pool: &'a Pool,
    /// A count below which the receiver is under any share it can have:
    /// below it, `limit` is not asked (it may read the peer table).
    floor: u32,
    /// The receiver's share now.
    limit: &'a dyn Fn() -> Result<u32>,
    /// What the host has handed to the receiver, by its own record.
    handed: &'a mut HandedSlots,
    /// The share the receiver was found holding, when that held it back.
    capped: u32,
}

impl<'a> HostShare<'a> {
    /// The share of guest `receiver` of the host's pool `pool`, judged by
    /// `handed` (made by [`HandedSlots::for_share`], which says whether a
    /// share can stop an allocation at all).
    pub(crate) fn new(
        pool: &'a Pool,
        layout: &'a SegmentLayout,
        receiver: PeerId,
        fixed: u32,
        limit: &'a dyn Fn() -> Result<u32>,
        handed: &'a mut HandedSlots,
    ) -> Self {
        HostShare {
            receiver,
            pool,
            floor: least_host_share(layout, fixed),
            limit,
            handed,
            capped: 0,
        }
    }
}

impl Gate for HostShare<'_> {
    fn holds_back(&mut self, releases: &Releases<'_>) -> Result<bool> {
        // While the host's own record holds fewer slots than the least
        // share the receiver could have, nothing shared is read. Past it,
        // the release count first, then the slots' states, so that a free
        // after that look moves the release count, and no sleep follows.
        if self.handed.bound() < self.floor as usize {
            return Ok(false);
        }
        releases.mark();
        let held = self.handed.recount(self.pool, self.receiver);
        if held < self.floor {
            return Ok(false);
        }
        let limit = (self.limit)()?;
        self.capped = limit;
        Ok(held >= limit)
    }

    fn refusal(&self) -> Error {
        Error::ShareExhausted {
            peer_id: self.receiver,
            share: self.capped,
        }
    }
}
