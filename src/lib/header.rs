//! The segment header: what a segment is, how it is laid out, and the
//! host's live state.
//!
//! shm[impl shm.header.layout]

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::layout::{HEADER_SIZE, SegmentConfig, SegmentLayout};
use crate::region::Region;
use crate::sys;

/// The first eight bytes of every segment: `SHMHUB` followed by 0x00 0x01.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMHUB\x00\x01");
/// The format version this build reads and writes.
// shm[impl shm.header.version]
pub const VERSION: u32 = 6;

/// Byte offsets of the header fields.
pub mod field {
    /// `u64`: [`super::MAGIC`], written last.
    pub const MAGIC: u64 = 0;
    /// `u32`: format version.
    pub const VERSION: u64 = 8;
    /// `u32`: header size (256).
    pub const HEADER_SIZE: u64 = 12;
    /// `u64`: total segment size.
    pub const TOTAL_SIZE: u64 = 16;
    /// `u32`: max guests.
    pub const MAX_GUESTS: u64 = 24;
    /// `u32`: ring capacity.
    pub const RING_CAPACITY: u64 = 28;
    /// `u32`: slot size.
    pub const SLOT_SIZE: u64 = 32;
    /// `u32`: slots per pool.
    pub const SLOTS_PER_POOL: u64 = 36;
    /// `u32`: max payload.
    pub const MAX_PAYLOAD: u64 = 40;
    /// `u32`: heartbeat interval in ms (0 = off).
    pub const HEARTBEAT_MS: u64 = 44;
    /// `u64`: offset of the peer table.
    pub const PEER_TABLE_OFFSET: u64 = 48;
    /// `u64`: offset of the rings.
    pub const RINGS_OFFSET: u64 = 56;
    /// `u64`: size of one ring.
    pub const RING_SIZE: u64 = 64;
    /// `u64`: offset of the pools.
    pub const POOLS_OFFSET: u64 = 72;
    /// `u64`: bytes between pools.
    pub const POOL_STRIDE: u64 = 80;
    /// `u64`: offset of slot data inside a pool.
    pub const POOL_DATA_OFFSET: u64 = 88;
    /// `u64`: creation time, ns since the Unix epoch.
    pub const CREATED_UNIX_NS: u64 = 96;
    /// `u64`: random number chosen at creation, telling segments apart.
    pub const NONCE: u64 = 104;
    /// `u32`: how many of the host's slots one guest may hold at once
    /// (0: the fair share, the host's pool divided among the entries in
    /// use; see `shm.pool.share`).
    pub const HOST_SLOTS_PER_GUEST: u64 = 112;
    /// `u32`: non-zero once the host has said goodbye.
    pub const HOST_GOODBYE: u64 = 128;
    /// `u32`: pid of the host process (0 = none).
    pub const HOST_PID: u64 = 132;
    /// `u64`: host heartbeat, `CLOCK_MONOTONIC` ns.
    pub const HOST_HEARTBEAT_NS: u64 = 136;
    /// `u64`: start time of the host process, in clock ticks since boot.
    pub const HOST_START_TIME: u64 = 144;
    /// `u32`: bumped by guests to wake a sleeping host (its own cache line,
    /// apart from the host's live fields).
    pub const HOST_DOORBELL: u64 = 192;
    /// `u32`: non-zero while the host sleeps waiting for any guest; read by
    /// guests after every send, written by the host only when it sleeps.
    pub const HOST_WAITING: u64 = 196;
    /// `u64[4]`: the ready summary, one bit per guest (bit `(p - 1) % 64`
    /// of word `(p - 1) / 64`): set by a guest that has published to its
    /// guest-to-host ring, cleared by the host once it finds that ring
    /// empty (`ready.rs`). On the doorbell's line, which a guest reads
    /// after every send anyway.
    pub const READY: u64 = 224;
}

/// Everything the header says, validated.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HeaderInfo {
    /// Format version.
    pub version: u32,
    /// The layout, recomputed from the configuration and checked against
    /// every stored offset.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub layout: SegmentLayout,
    /// Creation time, ns since the Unix epoch.
    pub created_unix_ns: u64,
    /// Random number chosen at creation.
    pub nonce: u64,
    /// Whether the host has said goodbye.
    pub host_goodbye: bool,
    /// Host pid (0: no host process is recorded).
    pub host_pid: u32,
    /// Host process start time (clock ticks since boot; 0 = unknown).
    pub host_start_time: u64,
    /// Host heartbeat (`CLOCK_MONOTONIC` ns; 0 = never).
    pub host_heartbeat_ns: u64,
    /// How many of the host's slots one guest may hold at once; 0: the
    /// fair share (the pool divided among the entries in use).
    pub host_slots_per_guest: u32,
}

/// Writes every header field but the magic.
pub(crate) fn write(
    region: &Region,
    layout: &SegmentLayout,
    host_pid: u32,
    host_slots_per_guest: u32,
) -> Result<()> {
    region.store_u32(field::VERSION, VERSION, Ordering::Relaxed)?;
    region.store_u32(field::HEADER_SIZE, HEADER_SIZE as u32, Ordering::Relaxed)?;
    for (_, at, value) in CONFIG_FIELDS {
        region.store_u32(at, value(&layout.config), Ordering::Relaxed)?;
    }
    for (_, at, value) in STORED_LAYOUT {
        region.store_u64(at, value(layout), Ordering::Relaxed)?;
    }
    let now = sys::unix_ns();
    region.store_u64(field::CREATED_UNIX_NS, now, Ordering::Relaxed)?;
    region.store_u64(field::NONCE, nonce(now), Ordering::Relaxed)?;
    region.store_u32(
        field::HOST_SLOTS_PER_GUEST,
        host_slots_per_guest,
        Ordering::Relaxed,
    )?;
    region.store_u32(field::HOST_GOODBYE, 0, Ordering::Relaxed)?;
    region.store_u32(field::HOST_PID, host_pid, Ordering::Relaxed)?;
    region.store_u64(
        field::HOST_START_TIME,
        sys::process_start_time(host_pid),
        Ordering::Relaxed,
    )?;
    region.store_u64(
        field::HOST_HEARTBEAT_NS,
        sys::monotonic_ns(),
        Ordering::Relaxed,
    )?;
    Ok(())
}

/// Publishes the segment: the magic, with release ordering, after
/// everything else is written.
///
/// shm[impl shm.file.magic-last]
pub(crate) fn publish(region: &Region) -> Result<()> {
    region.store_u64(field::MAGIC, MAGIC, Ordering::Release)?;
    Ok(())
}

/// Wakes a host asleep in a receive from any guest, if it sleeps.
///
/// Called by a guest right after it publishes its tail with a sequentially
/// consistent swap; the host announces itself in `HOST_WAITING` the same
/// way before its last look at the rings (the handshake in `wait.rs`), so
/// one of the two sees the other. The doorbell is bumped only then, so a
/// guest sending to an awake host writes nothing here.
///
/// shm[impl shm.host.doorbell]
pub(crate) fn wake_host(region: &Region) -> Result<()> {
    if region.load_u32(field::HOST_WAITING, Ordering::SeqCst)? != 0 {
        let doorbell = region.atomic_u32(field::HOST_DOORBELL)?;
        doorbell.fetch_add(1, Ordering::Release);
        sys::futex_wake_all(doorbell);
    }
    Ok(())
}

fn nonce(now: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now);
    h.write_u32(sys::current_pid());
    h.finish() | 1
}

fn corrupt(field: &'static str, value: u64, reason: impl Into<String>) -> Error {
    Error::CorruptHeader {
        field,
        value,
        reason: reason.into(),
    }
}

/// The magic's rule (`shm.file.magic-last`): zero means not ready, any
/// other value but [`MAGIC`] is not a segment.
pub(crate) fn check_magic(magic: u64) -> Result<()> {
    match magic {
        MAGIC => Ok(()),
        0 => Err(Error::NotReady),
        magic => Err(Error::NotASegment { magic }),
    }
}

/// The version this build reads.
pub(crate) fn check_version(version: u32) -> Result<()> {
    if version == VERSION {
        Ok(())
    } else {
        Err(Error::VersionMismatch {
            found: version,
            expected: VERSION,
        })
    }
}

/// The stored header size.
pub(crate) fn check_header_size(header_size: u32) -> Result<()> {
    if u64::from(header_size) == HEADER_SIZE {
        Ok(())
    } else {
        Err(corrupt(
            "header_size",
            header_size.into(),
            format!("must be {HEADER_SIZE}"),
        ))
    }
}

/// The stored total size against the length of the file (or mapping).
pub(crate) fn check_total_size(total_size: u64, file_len: u64) -> Result<()> {
    if total_size == file_len {
        Ok(())
    } else {
        Err(corrupt(
            "total_size",
            total_size,
            format!("the file is {file_len} bytes"),
        ))
    }
}

/// The host's goodbye flag: 0 or 1.
pub(crate) fn check_goodbye(goodbye: u32) -> Result<()> {
    if goodbye <= 1 {
        Ok(())
    } else {
        Err(corrupt("host_goodbye", goodbye.into(), "must be 0 or 1"))
    }
}

/// The stored configuration, read with `u32_at` (a field's offset to its
/// value).
pub(crate) fn stored_config<E>(
    u32_at: impl Fn(u64) -> std::result::Result<u32, E>,
) -> std::result::Result<SegmentConfig, E> {
    Ok(SegmentConfig {
        max_guests: u32_at(field::MAX_GUESTS)?,
        ring_capacity: u32_at(field::RING_CAPACITY)?,
        slot_size: u32_at(field::SLOT_SIZE)?,
        slots_per_pool: u32_at(field::SLOTS_PER_POOL)?,
        max_payload: u32_at(field::MAX_PAYLOAD)?,
        heartbeat_interval_ms: u32_at(field::HEARTBEAT_MS)?,
    })
}

/// A configuration field the header stores: its name, its offset, and
/// its value in a configuration.
pub(crate) type ConfigField = (&'static str, u64, fn(&SegmentConfig) -> u32);

/// The configuration fields the header stores, in offset order.
pub(crate) const CONFIG_FIELDS: [ConfigField; 6] = [
    ("max_guests", field::MAX_GUESTS, |c| c.max_guests),
    ("ring_capacity", field::RING_CAPACITY, |c| c.ring_capacity),
    ("slot_size", field::SLOT_SIZE, |c| c.slot_size),
    ("slots_per_pool", field::SLOTS_PER_POOL, |c| {
        c.slots_per_pool
    }),
    ("max_payload", field::MAX_PAYLOAD, |c| c.max_payload),
    ("heartbeat_interval_ms", field::HEARTBEAT_MS, |c| {
        c.heartbeat_interval_ms
    }),
];

/// A layout field the header stores: its name, its offset, and what the
/// layout says it must be.
pub(crate) type StoredField = (&'static str, u64, fn(&SegmentLayout) -> u64);

/// The layout fields the header stores.
pub(crate) const STORED_LAYOUT: [StoredField; 7] = [
    ("total_size", field::TOTAL_SIZE, |l| l.total_size),
    ("peer_table_offset", field::PEER_TABLE_OFFSET, |l| {
        l.peer_table_offset
    }),
    ("rings_offset", field::RINGS_OFFSET, |l| l.rings_offset),
    ("ring_size", field::RING_SIZE, |l| l.ring_size),
    ("pools_offset", field::POOLS_OFFSET, |l| l.pools_offset),
    ("pool_stride", field::POOL_STRIDE, |l| l.pool_stride),
    ("pool_data_offset", field::POOL_DATA_OFFSET, |l| {
        l.pool_data_offset
    }),
];

/// A stored layout field against what the configuration implies.
pub(crate) fn check_stored(name: &'static str, found: u64, expected: u64) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(corrupt(
            name,
            found,
            format!("the configuration implies {expected}"),
        ))
    }
}

/// Reads and validates the header against the region it sits in.
///
/// Checks, in order: the magic (acquire; zero means not ready), the
/// version, the header size, the total size against the region length,
/// every configuration limit, and every stored offset against the layout
/// the configuration implies. Nothing past the header is touched.
///
/// shm[impl shm.file.attach]
/// shm[impl shm.header.validate]
pub fn read(region: &Region) -> Result<HeaderInfo> {
    if (region.len() as u64) < HEADER_SIZE {
        return Err(corrupt(
            "total_size",
            region.len() as u64,
            "the file is smaller than a header",
        ));
    }
    check_magic(region.load_u64(field::MAGIC, Ordering::Acquire)?)?;
    let u32_at = |off| region.load_u32(off, Ordering::Relaxed);
    let u64_at = |off| region.load_u64(off, Ordering::Relaxed);
    let version = u32_at(field::VERSION)?;
    check_version(version)?;
    check_header_size(u32_at(field::HEADER_SIZE)?)?;
    check_total_size(u64_at(field::TOTAL_SIZE)?, region.len() as u64)?;
    let layout = stored_config(u32_at)?
        .layout()
        .map_err(|e| corrupt(e.field, e.value, e.reason))?;
    for (name, at, expected) in STORED_LAYOUT {
        check_stored(name, u64_at(at)?, expected(&layout))?;
    }
    let goodbye = u32_at(field::HOST_GOODBYE)?;
    check_goodbye(goodbye)?;
    let host_slots_per_guest = u32_at(field::HOST_SLOTS_PER_GUEST)?;
    check_share(host_slots_per_guest, &layout)?;
    Ok(HeaderInfo {
        version,
        layout,
        created_unix_ns: u64_at(field::CREATED_UNIX_NS)?,
        nonce: u64_at(field::NONCE)?,
        host_goodbye: goodbye == 1,
        host_pid: u32_at(field::HOST_PID)?,
        host_start_time: u64_at(field::HOST_START_TIME)?,
        host_heartbeat_ns: u64_at(field::HOST_HEARTBEAT_NS)?,
        host_slots_per_guest,
    })
}

/// Checks the host-slot share: 0 (fair share) or at most the pool.
pub(crate) fn check_share(share: u32, layout: &SegmentLayout) -> Result<()> {
    if share > layout.config.slots_per_pool {
        return Err(corrupt(
            "host_slots_per_guest",
            share.into(),
            format!(
                "more than the {} slots of the host's pool",
                layout.config.slots_per_pool
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeapRegion;

    /// A header of the default layout, written but not published.
    fn fresh() -> Region {
        let layout = SegmentConfig::default().layout().unwrap();
        let region = HeapRegion::new_zeroed(layout.total_size as usize)
            .unwrap()
            .region();
        write(&region, &layout, 1234, 0).unwrap();
        region
    }

    /// A published header whose u32 field at `offset` was then changed to
    /// `value`.
    fn published_with_u32(offset: u64, value: u32) -> Region {
        let region = fresh();
        publish(&region).unwrap();
        region.store_u32(offset, value, Ordering::Relaxed).unwrap();
        region
    }

    // shm[verify shm.file.magic-last]
    #[test]
    fn header_without_magic_is_not_ready() {
        let region = fresh();
        assert!(matches!(read(&region), Err(Error::NotReady)));
        publish(&region).unwrap();
        let info = read(&region).unwrap();
        assert_eq!(info.layout.config, SegmentConfig::default());
        assert_eq!(info.host_pid, 1234);
    }

    // shm[verify shm.header.validate]
    #[test]
    fn wrong_magic_and_version_are_named() {
        let region = published_with_u32(field::VERSION, 9);
        assert!(matches!(
            read(&region),
            Err(Error::VersionMismatch {
                found: 9,
                expected: VERSION
            })
        ));
        region
            .store_u64(field::MAGIC, 0x1234, Ordering::Relaxed)
            .unwrap();
        assert!(matches!(
            read(&region),
            Err(Error::NotASegment { magic: 0x1234 })
        ));
    }

    // shm[verify shm.header.validate]
    #[test]
    fn every_offset_is_checked() {
        let offsets = [
            field::TOTAL_SIZE,
            field::PEER_TABLE_OFFSET,
            field::RINGS_OFFSET,
            field::RING_SIZE,
            field::POOLS_OFFSET,
            field::POOL_STRIDE,
            field::POOL_DATA_OFFSET,
        ];
        for off in offsets {
            let region = fresh();
            publish(&region).unwrap();
            let was = region.load_u64(off, Ordering::Relaxed).unwrap();
            region.store_u64(off, was + 64, Ordering::Relaxed).unwrap();
            assert!(
                matches!(read(&region), Err(Error::CorruptHeader { .. })),
                "offset {off}"
            );
        }
    }

    // shm[verify shm.header.validate]
    #[test]
    fn config_limits_are_checked() {
        match read(&published_with_u32(field::RING_CAPACITY, 3)) {
            Err(Error::CorruptHeader { field, value, .. }) => {
                assert_eq!((field, value), ("ring_capacity", 3));
            }
            other => panic!("{other:?}"),
        }
    }
}
