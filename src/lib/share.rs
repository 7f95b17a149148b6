//! The host's share per guest: how many of the host's slots one guest may
//! hold at once, so that a guest that stops receiving cannot take the
//! whole pool from the others. A policy over the pool (it holds an
//! allocation back through the pool's [`Gate`]), the peer table (the fair
//! share divides the pool among the entries in use) and the counters of
//! `host_slots.rs`.
//!
//! shm[impl shm.pool.share]

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::host_slots::Counters;
use crate::layout::SegmentLayout;
use crate::party::PeerState;
use crate::peer::Peer;
use crate::pool::{Gate, Releases};
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
        if Peer::new(region, layout, p).state()? != PeerState::Empty {
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

/// The share of one receiving guest, as a gate on the host's pool.
pub(crate) struct HostShare<'a> {
    receiver: u8,
    counters: Counters<'a>,
    /// A count below which the receiver is under any share it can have:
    /// below it, `limit` is not asked (it may read the peer table).
    floor: u32,
    /// The receiver's share now.
    limit: &'a dyn Fn() -> Result<u32>,
    /// The receiver's count of returned slots as the sender last read it:
    /// the count only grows, so with it the sender bounds what the
    /// receiver holds without reading the receiver's cache line.
    returned_seen: &'a mut u32,
    /// The pool's size: a count above it can only come from a damaged
    /// counter, and is read as 0 (the share then lets sends through, never
    /// blocks them for good, until the next recount).
    slots: u32,
    /// The share the receiver was found holding, when that held it back.
    capped: u32,
}

impl<'a> HostShare<'a> {
    /// The share of guest `receiver` of the host's pool in `region`;
    /// `None` when no share can stop an allocation (a share as large as
    /// the pool: the pool runs out first), so that the receiver's count is
    /// not read at all.
    pub(crate) fn of(
        region: &'a Region,
        layout: &'a SegmentLayout,
        receiver: u8,
        fixed: u32,
        limit: &'a dyn Fn() -> Result<u32>,
        returned_seen: &'a mut u32,
    ) -> Result<Option<Self>> {
        let floor = least_host_share(layout, fixed);
        let slots = layout.config.slots_per_pool;
        if floor >= slots {
            return Ok(None);
        }
        Ok(Some(HostShare {
            receiver,
            counters: Counters::of(region, layout, receiver)?,
            floor,
            limit,
            returned_seen,
            slots,
            capped: 0,
        }))
    }
}

impl Gate for HostShare<'_> {
    fn holds_back(&mut self, releases: &Releases<'_>) -> Result<bool> {
        // The host alone hands slots over, so `handed` is its own line;
        // with the last `returned` it saw (never ahead of the real one) it
        // bounds the receiver's count from above. Only at the least share
        // the receiver could have is the receiver's line read: the release
        // count first, then the count, so that a free after that look
        // moves the release count, and no sleep follows.
        let handed = self.counters.handed;
        let bound = handed
            .load(Ordering::Relaxed)
            .wrapping_sub(*self.returned_seen);
        if bound < self.floor {
            return Ok(false);
        }
        releases.mark();
        let returned = self.counters.returned.load(Ordering::Acquire);
        *self.returned_seen = returned;
        let held = handed.load(Ordering::Acquire).wrapping_sub(returned);
        if held < self.floor || held > self.slots {
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
