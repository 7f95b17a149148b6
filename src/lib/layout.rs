//! Segment configuration and the byte layout computed from it.
//!
//! Every region of a segment sits at an offset computed here with checked
//! arithmetic; the same function lays out a new segment and re-derives the
//! layout of an existing one from its header, so that attach can compare
//! what the header claims with what the configuration implies.

use crate::desc::DESC_SIZE;
use crate::party::{IntoPeerId, Party, PeerId};

/// Alignment of every region: one cache line.
pub const CACHE_LINE: u64 = 64;
/// Size of the segment header.
pub const HEADER_SIZE: u64 = 256;
/// Size of one peer-table entry.
pub const PEER_ENTRY_SIZE: u64 = 64;
/// Size of a ring's control block: the producer's line, the consumer's
/// line, and a line of waiting flags.
pub const RING_HEADER_SIZE: u64 = 192;
/// Size of a slot pool's control block.
pub const POOL_HEADER_SIZE: u64 = 64;
/// Size of one slot's metadata: its state word, alone on a cache line, so
/// that a sender allocating one slot and a receiver checking or freeing
/// the next never write the same line (format version 3; four slots to a
/// line made the two sides take the line from each other on every
/// message: docs/benchmarks.md).
pub const SLOT_META_SIZE: u64 = 64;
/// Segments are sized in whole pages.
pub const PAGE_SIZE: u64 = 4096;

/// Largest number of guests a segment can have.
pub const MAX_GUESTS: u32 = 255;
/// Largest ring capacity (descriptors per ring).
pub const MAX_RING_CAPACITY: u32 = 1 << 16;
/// Smallest ring capacity.
pub const MIN_RING_CAPACITY: u32 = 2;
/// Smallest slot size; slot sizes are multiples of it.
pub const MIN_SLOT_SIZE: u32 = 64;
/// Largest slot size (1 GiB).
pub const MAX_SLOT_SIZE: u32 = 1 << 30;
/// Largest number of slots in one pool.
pub const MAX_SLOTS_PER_POOL: u32 = 1 << 16;
/// Largest heartbeat interval (one hour).
pub const MAX_HEARTBEAT_MS: u32 = 3_600_000;
/// Largest total segment size (64 GiB).
pub const MAX_TOTAL_SIZE: u64 = 64 << 30;

/// The sizes a segment is made with.
///
/// ```
/// use shmhub::SegmentConfig;
///
/// let config = SegmentConfig { max_guests: 4, ..SegmentConfig::default() };
/// let layout = config.layout().unwrap();
/// assert!(layout.total_size >= 4 * 2 * 64 * config.ring_capacity as u64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentConfig {
    /// How many guests can attach at once (`1..=255`).
    pub max_guests: u32,
    /// Descriptors per ring; a power of two.
    pub ring_capacity: u32,
    /// Bytes per slot; a multiple of 64.
    pub slot_size: u32,
    /// Slots in each pool (the host's and each guest's).
    pub slots_per_pool: u32,
    /// Largest payload a message may carry; at most `slot_size`.
    pub max_payload: u32,
    /// How often held guests refresh their heartbeat, in milliseconds;
    /// 0 turns heartbeats off (liveness is then judged by process only).
    pub heartbeat_interval_ms: u32,
}

impl Default for SegmentConfig {
    /// 8 guests, 256-entry rings, 64 slots of 64 KiB per pool (about 37 MiB
    /// of address space, of which a fresh segment touches a few pages), and
    /// heartbeats off: liveness is judged by process, so a guest busy with
    /// other work for a long time is never mistaken for a dead one.
    fn default() -> Self {
        SegmentConfig {
            max_guests: 8,
            ring_capacity: 256,
            slot_size: 64 * 1024,
            slots_per_pool: 64,
            max_payload: 64 * 1024,
            heartbeat_interval_ms: 0,
        }
    }
}

/// A configuration that cannot be laid out, naming the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} = {value}: {reason}")]
pub struct LayoutError {
    /// The offending field.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// What it must be instead.
    pub reason: &'static str,
}

fn invalid(field: &'static str, value: u64, reason: &'static str) -> LayoutError {
    LayoutError {
        field,
        value,
        reason,
    }
}

/// Which way a ring carries messages. Every guest has one ring each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Direction {
    /// From a guest to the host.
    GuestToHost,
    /// From the host to a guest.
    HostToGuest,
}

impl Direction {
    /// The sender and the receiver of guest `guest`'s ring this way.
    pub fn ends(self, guest: PeerId) -> (Party, Party) {
        match self {
            Direction::GuestToHost => (Party::Guest(guest), Party::Host),
            Direction::HostToGuest => (Party::Host, Party::Guest(guest)),
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::GuestToHost => "guest-to-host",
            Direction::HostToGuest => "host-to-guest",
        })
    }
}

/// The name of a party of a segment by its number, as pools and slot
/// holders are numbered: 0 is `host`, `p` is `peer p`.
///
/// ```
/// assert_eq!(shmhub::admin::party_name(0), "host");
/// assert_eq!(shmhub::admin::party_name(3), "peer 3");
/// ```
pub fn party_name(party: u8) -> String {
    if party == 0 {
        "host".to_string()
    } else {
        format!("peer {party}")
    }
}

/// Where every region of a segment lives, in bytes from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentLayout {
    /// The configuration this layout was computed from.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub config: SegmentConfig,
    /// Offset of the peer table.
    pub peer_table_offset: u64,
    /// Offset of guest 1's ring pair; guest `p`'s is at
    /// `rings_offset + (p - 1) * ring_pair_stride`.
    pub rings_offset: u64,
    /// Size of one ring (control block and descriptors).
    pub ring_size: u64,
    /// Bytes between two guests' ring pairs.
    pub ring_pair_stride: u64,
    /// Offset of the host's pool; pool `i` (0 = host, `p` = guest `p`) is at
    /// `pools_offset + i * pool_stride`.
    pub pools_offset: u64,
    /// Bytes between two pools.
    pub pool_stride: u64,
    /// Offset of the free bitmap inside a pool.
    pub pool_bitmap_offset: u64,
    /// Offset of the slot metadata inside a pool.
    pub pool_meta_offset: u64,
    /// Offset of the slot data inside a pool.
    pub pool_data_offset: u64,
    /// Total segment size (a whole number of pages).
    pub total_size: u64,
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    value.checked_add(align - 1).map(|v| v / align * align)
}

impl SegmentConfig {
    /// Every field outside its limit (section Layout of `docs/spec.md`),
    /// each judged on its own, in field order; empty when all are within.
    /// The total size is judged by [`SegmentConfig::layout`], which needs
    /// every field valid.
    pub(crate) fn limit_errors(&self) -> Vec<LayoutError> {
        let c = *self;
        let mut errors = Vec::new();
        if c.max_guests == 0 || c.max_guests > MAX_GUESTS {
            errors.push(invalid(
                "max_guests",
                c.max_guests.into(),
                "must be 1..=255",
            ));
        }
        if !c.ring_capacity.is_power_of_two()
            || c.ring_capacity < MIN_RING_CAPACITY
            || c.ring_capacity > MAX_RING_CAPACITY
        {
            errors.push(invalid(
                "ring_capacity",
                c.ring_capacity.into(),
                "must be a power of two in 2..=65536",
            ));
        }
        if c.slot_size < MIN_SLOT_SIZE
            || c.slot_size > MAX_SLOT_SIZE
            || c.slot_size % MIN_SLOT_SIZE != 0
        {
            errors.push(invalid(
                "slot_size",
                c.slot_size.into(),
                "must be a multiple of 64 in 64..=1GiB",
            ));
        }
        if c.slots_per_pool == 0 || c.slots_per_pool > MAX_SLOTS_PER_POOL {
            errors.push(invalid(
                "slots_per_pool",
                c.slots_per_pool.into(),
                "must be 1..=65536",
            ));
        }
        if c.max_payload == 0 || c.max_payload > c.slot_size {
            errors.push(invalid(
                "max_payload",
                c.max_payload.into(),
                "must be 1..=slot_size",
            ));
        }
        if c.heartbeat_interval_ms > MAX_HEARTBEAT_MS {
            errors.push(invalid(
                "heartbeat_interval_ms",
                c.heartbeat_interval_ms.into(),
                "must be at most 3600000 (one hour); 0 turns heartbeats off",
            ));
        }
        errors
    }

    /// Checks every limit and computes the layout.
    pub fn layout(&self) -> Result<SegmentLayout, LayoutError> {
        let c = *self;
        if let Some(first) = self.limit_errors().into_iter().next() {
            return Err(first);
        }
        let too_big = || invalid("total_size", u64::MAX, "the segment would exceed 64 GiB");
        let guests = u64::from(c.max_guests);
        let slots = u64::from(c.slots_per_pool);

        let peer_table_offset = HEADER_SIZE;
        let rings_offset = align_up(peer_table_offset + guests * PEER_ENTRY_SIZE, CACHE_LINE)
            .ok_or_else(too_big)?;
        let ring_size = RING_HEADER_SIZE + u64::from(c.ring_capacity) * DESC_SIZE as u64;
        let ring_pair_stride = 2 * ring_size;
        let pools_offset = guests
            .checked_mul(ring_pair_stride)
            .and_then(|r| r.checked_add(rings_offset))
            .and_then(|end| align_up(end, PAGE_SIZE))
            .ok_or_else(too_big)?;
        let bitmap_words = slots.div_ceil(64);
        let pool_bitmap_offset = POOL_HEADER_SIZE;
        let pool_meta_offset =
            align_up(pool_bitmap_offset + bitmap_words * 8, CACHE_LINE).ok_or_else(too_big)?;
        // Slot data starts on a page, and so does every pool: a slot never
        // straddles more pages than its size needs, which keeps the
        // hardware prefetcher (it stops at page boundaries) streaming
        // through a payload.
        let pool_data_offset =
            align_up(pool_meta_offset + slots * SLOT_META_SIZE, PAGE_SIZE).ok_or_else(too_big)?;
        let pool_stride = slots
            .checked_mul(u64::from(c.slot_size))
            .and_then(|d| d.checked_add(pool_data_offset))
            .and_then(|end| align_up(end, PAGE_SIZE))
            .ok_or_else(too_big)?;
        let total_size = (guests + 1)
            .checked_mul(pool_stride)
            .and_then(|p| p.checked_add(pools_offset))
            .and_then(|end| align_up(end, PAGE_SIZE))
            .ok_or_else(too_big)?;
        if total_size > MAX_TOTAL_SIZE {
            return Err(invalid(
                "total_size",
                total_size,
                "the segment would exceed 64 GiB",
            ));
        }
        Ok(SegmentLayout {
            config: c,
            peer_table_offset,
            rings_offset,
            ring_size,
            ring_pair_stride,
            pools_offset,
            pool_stride,
            pool_bitmap_offset,
            pool_meta_offset,
            pool_data_offset,
            total_size,
        })
    }
}

impl SegmentLayout {
    /// Offset of guest `peer_id`'s peer-table entry (`peer_id` in `1..=max_guests`).
    pub fn peer_entry(&self, peer_id: PeerId) -> u64 {
        self.peer_table_offset + peer_id.index() as u64 * PEER_ENTRY_SIZE
    }

    /// Offset of the ring guest `peer_id` sends to the host on.
    pub fn guest_to_host_ring(&self, peer_id: PeerId) -> u64 {
        self.rings_offset + peer_id.index() as u64 * self.ring_pair_stride
    }

    /// Offset of the ring the host sends to guest `peer_id` on.
    pub fn host_to_guest_ring(&self, peer_id: PeerId) -> u64 {
        self.guest_to_host_ring(peer_id) + self.ring_size
    }

    /// Offset of guest `peer_id`'s ring that carries messages `direction`.
    pub fn ring(&self, peer_id: PeerId, direction: Direction) -> u64 {
        match direction {
            Direction::GuestToHost => self.guest_to_host_ring(peer_id),
            Direction::HostToGuest => self.host_to_guest_ring(peer_id),
        }
    }

    /// Offset of `owner`'s pool.
    pub fn pool(&self, owner: Party) -> u64 {
        self.pools_offset + u64::from(owner.number()) * self.pool_stride
    }

    /// Whether `peer_id` names a guest of this segment.
    pub fn is_guest(&self, peer_id: impl IntoPeerId) -> bool {
        self.guest(peer_id).is_some()
    }

    /// The guest numbered `peer_id`, if this segment has it (`None` for
    /// 0, and for a number above `max_guests`).
    pub fn guest(&self, peer_id: impl IntoPeerId) -> Option<PeerId> {
        peer_id
            .into_peer_id()
            .filter(|p| u32::from(p.get()) <= self.config.max_guests)
    }

    /// The guests' ids, `1..=max_guests`, in order.
    pub fn guests(&self) -> impl DoubleEndedIterator<Item = PeerId> + Clone + use<> {
        // max_guests was validated to be at most 255 when this layout was made.
        PeerId::up_to(self.config.max_guests.min(u32::from(u8::MAX)) as u8)
    }

    /// The host, then the guests in order: the owners of the pools, in
    /// the order they lie in.
    pub(crate) fn parties(&self) -> impl Iterator<Item = Party> + Clone + use<> {
        std::iter::once(Party::Host).chain(self.guests().map(Party::Guest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::{guest, id};

    // shm[verify shm.header.layout]
    #[test]
    fn default_layout_is_aligned_and_ordered() {
        let l = SegmentConfig::default().layout().unwrap();
        assert_eq!(l.total_size % PAGE_SIZE, 0);
        for off in [
            l.peer_table_offset,
            l.rings_offset,
            l.pools_offset,
            l.pool_stride,
            l.pool_data_offset,
        ] {
            assert_eq!(off % CACHE_LINE, 0, "{off}");
        }
        assert!(l.peer_table_offset >= HEADER_SIZE);
        assert!(l.rings_offset >= l.peer_table_offset + 8 * PEER_ENTRY_SIZE);
        assert!(l.pools_offset >= l.host_to_guest_ring(id(8)) + l.ring_size);
        assert!(l.total_size >= l.pool(guest(8)) + l.pool_stride);
    }

    // shm[verify shm.header.validate]
    #[test]
    fn every_limit_names_its_field() {
        let base = SegmentConfig::default();
        let with = |change: fn(&mut SegmentConfig)| {
            let mut config = base;
            change(&mut config);
            config
        };
        let cases = [
            (with(|c| c.max_guests = 0), "max_guests"),
            (with(|c| c.max_guests = 256), "max_guests"),
            (with(|c| c.ring_capacity = 100), "ring_capacity"),
            (with(|c| c.ring_capacity = 1), "ring_capacity"),
            (with(|c| c.ring_capacity = 1 << 17), "ring_capacity"),
            (with(|c| c.slot_size = 100), "slot_size"),
            (with(|c| c.slot_size = 0), "slot_size"),
            (with(|c| c.slots_per_pool = 0), "slots_per_pool"),
            (with(|c| c.max_payload = 0), "max_payload"),
            (with(|c| c.max_payload = c.slot_size + 1), "max_payload"),
            (
                with(|c| c.heartbeat_interval_ms = u32::MAX),
                "heartbeat_interval_ms",
            ),
            (
                with(|c| {
                    c.max_guests = 255;
                    c.slot_size = 1 << 30;
                    c.max_payload = 1 << 30;
                    c.slots_per_pool = 1 << 16;
                }),
                "total_size",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.layout().unwrap_err().field, field, "{config:?}");
        }
    }

    // shm[verify shm.header.layout]
    #[test]
    fn largest_ring_and_guest_counts_lay_out() {
        let config = SegmentConfig {
            max_guests: 255,
            ring_capacity: MAX_RING_CAPACITY,
            slot_size: 64,
            slots_per_pool: 1,
            max_payload: 64,
            heartbeat_interval_ms: 0,
        };
        let l = config.layout().unwrap();
        assert!(l.total_size <= MAX_TOTAL_SIZE);
    }
}
