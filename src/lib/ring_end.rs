//! What both ends of one ring hold: the segment's memory and layout,
//! whose ring it is and which way it carries messages, the ring opened
//! (its own words checked once), the leases of this process, and how the
//! end waits. The producer and the consumer add what only they need.

use std::sync::Arc;

use crate::error::Result;
use crate::layout::{Direction, SegmentLayout};
use crate::party::{Party, PeerId};
use crate::pool::Pool;
use crate::region::Region;
use crate::ring::Ring;
use crate::wait::WaitStrategy;
use crate::zerocopy::Leases;

/// One end of guest `guest`'s ring in `direction`.
#[derive(Debug)]
pub(crate) struct RingEnd {
    pub(crate) region: Region,
    pub(crate) layout: SegmentLayout,
    pub(crate) guest: PeerId,
    pub(crate) direction: Direction,
    pub(crate) ring: Ring,
    /// The sender's pool, where payloads too large for a descriptor travel.
    pub(crate) pool: Pool,
    pub(crate) leases: Arc<Leases>,
    pub(crate) strategy: WaitStrategy,
}

impl RingEnd {
    /// Opens guest `guest`'s ring in `direction` in `region`.
    pub(crate) fn open(
        region: Region,
        layout: SegmentLayout,
        guest: PeerId,
        direction: Direction,
        leases: Arc<Leases>,
    ) -> Result<Self> {
        Ok(RingEnd {
            pool: Pool::open(&region, &layout, direction.ends(guest).0)?,
            ring: Ring::open(
                &region,
                layout.ring(guest, direction),
                layout.config.ring_capacity,
            )?,
            region,
            layout,
            guest,
            direction,
            leases,
            strategy: WaitStrategy::default(),
        })
    }

    /// The sending party.
    #[inline(always)]
    pub(crate) fn sender(&self) -> Party {
        self.direction.ends(self.guest).0
    }

    /// The receiving party.
    #[inline(always)]
    pub(crate) fn receiver(&self) -> Party {
        self.direction.ends(self.guest).1
    }
}
