//! Where every byte of a segment sits, and what makes a file one: the
//! header's fields at their documented offsets, the layout formulas and
//! their alignment, the magic written last, header validation naming the
//! inconsistent field, and the peer table's 64-byte entries.
//!
//! The tests read a file-backed segment's bytes back (or patch them) and
//! compare with numbers computed here from the formulas of `docs/spec.md`.

mod support;

use shmhub::admin::{inspect_path, remove_segment};
use shmhub::format::{MAGIC, VERSION};
use shmhub::{Error, PeerState, SegmentConfig, ShmGuest, ShmHost};
use support::fixtures::{data, guest_party, id, remove_options, tmp, unix_ns};

/// The little-endian `u32` at byte `at`.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// The little-endian `u64` at byte `at`.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// `value` rounded up to a multiple of `to`, as the layout formulas do.
fn align(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

/// A configuration whose every field differs from the default and from
/// the others, so that a field read at the wrong offset shows.
fn odd_config() -> SegmentConfig {
    SegmentConfig {
        max_guests: 3,
        ring_capacity: 8,
        slot_size: 128,
        slots_per_pool: 70,
        max_payload: 100,
        heartbeat_interval_ms: 250,
    }
}

// ---------------------------------------------------------------------------
// Header and layout
// ---------------------------------------------------------------------------

// shm[verify shm.header.layout]
#[test]
fn header_fields_sit_at_their_documented_offsets() {
    let dir = tmp();
    let path = dir.path().join("layout.shm");
    let before = unix_ns();
    let host = ShmHost::create(&path, odd_config()).unwrap();
    let after = unix_ns();
    let bytes = std::fs::read(&path).unwrap();

    // The layout, computed here from the formulas of the spec.
    let (g, c, s, z) = (3u64, 8u64, 70u64, 128u64);
    let peer_table = 256;
    let rings = align(256 + 64 * g, 64);
    let ring_size = 192 + 64 * c;
    let pools = align(rings + g * 2 * ring_size, 4096);
    let words = s.div_ceil(64);
    let meta = align(64 + 8 * words, 64);
    let data_off = align(meta + 64 * s, 4096);
    let stride = align(data_off + s * z, 4096);
    let total = align(pools + (g + 1) * stride, 4096);
    assert_eq!(bytes.len() as u64, total);
    assert_eq!(total % 4096, 0);

    assert_eq!(&bytes[0..8], b"SHMHUB\x00\x01");
    assert_eq!(u64_at(&bytes, 0), MAGIC);
    assert_eq!(u32_at(&bytes, 8), VERSION);
    assert_eq!(u32_at(&bytes, 12), 256);
    assert_eq!(u64_at(&bytes, 16), total);
    assert_eq!(u32_at(&bytes, 24), 3, "max_guests");
    assert_eq!(u32_at(&bytes, 28), 8, "ring_capacity");
    assert_eq!(u32_at(&bytes, 32), 128, "slot_size");
    assert_eq!(u32_at(&bytes, 36), 70, "slots_per_pool");
    assert_eq!(u32_at(&bytes, 40), 100, "max_payload");
    assert_eq!(u32_at(&bytes, 44), 250, "heartbeat_interval_ms");
    assert_eq!(u64_at(&bytes, 48), peer_table);
    assert_eq!(u64_at(&bytes, 56), rings);
    assert_eq!(u64_at(&bytes, 64), ring_size);
    assert_eq!(u64_at(&bytes, 72), pools);
    assert_eq!(u64_at(&bytes, 80), stride);
    assert_eq!(u64_at(&bytes, 88), data_off);
    let created = u64_at(&bytes, 96);
    assert!(
        (before..=after).contains(&created),
        "created_unix_ns {created}"
    );
    assert_eq!(u64_at(&bytes, 104) % 2, 1, "the nonce is odd");
    assert_eq!(u32_at(&bytes, 128), 0, "host_goodbye");
    assert_eq!(u32_at(&bytes, 132), std::process::id(), "host_pid");
    assert_ne!(u64_at(&bytes, 136), 0, "host_heartbeat_ns");
    // Unknown (0) on the portable path, which reads no start times.
    assert_eq!(
        u64_at(&bytes, 144) != 0,
        !cfg!(shmhub_portable),
        "host_start_time"
    );
    assert_eq!(u32_at(&bytes, 192), 0, "host_doorbell");
    assert_eq!(u32_at(&bytes, 196), 0, "host_waiting");
    for reserved in [112..128, 152..192, 200..256] {
        assert!(
            bytes[reserved.clone()].iter().all(|&b| b == 0),
            "reserved bytes {reserved:?}"
        );
    }
    // Nothing past the header is written at creation: all-zero is the
    // initial state of peers, rings and pools.
    assert!(bytes[256..].iter().all(|&b| b == 0));

    // The library's layout and header agree with the bytes.
    let l = host.layout();
    assert_eq!(
        (
            l.peer_table_offset,
            l.rings_offset,
            l.ring_size,
            l.pools_offset
        ),
        (peer_table, rings, ring_size, pools)
    );
    assert_eq!(
        (
            l.pool_bitmap_offset,
            l.pool_meta_offset,
            l.pool_data_offset,
            l.pool_stride,
            l.total_size
        ),
        (64, meta, data_off, stride, total)
    );
    assert_eq!(l.host_to_guest_ring(id(2)), rings + 3 * ring_size);
    assert_eq!(l.pool(guest_party(3)), pools + 3 * stride);
    let h = host.status().header().unwrap();
    assert_eq!(h.created_unix_ns, created);
    assert_eq!(h.nonce, u64_at(&bytes, 104));
    assert_eq!(h.host_pid, std::process::id());
}

// shm[verify shm.header.layout]
#[test]
fn every_region_is_cache_line_aligned_and_the_pools_and_slot_data_page_aligned() {
    let configs = [
        SegmentConfig::default(),
        odd_config(),
        SegmentConfig {
            max_guests: 255,
            ring_capacity: 2,
            slot_size: 64,
            slots_per_pool: 1,
            max_payload: 1,
            heartbeat_interval_ms: 0,
        },
        SegmentConfig {
            max_guests: 1,
            ring_capacity: 1 << 16,
            slot_size: 192,
            slots_per_pool: 65,
            max_payload: 192,
            heartbeat_interval_ms: 3_600_000,
        },
    ];
    for config in configs {
        let l = config.layout().unwrap();
        let g = u64::from(config.max_guests);
        assert_eq!(l.peer_table_offset, 256);
        assert_eq!(l.rings_offset, 256 + 64 * g, "{config:?}");
        assert_eq!(l.ring_size, 192 + 64 * u64::from(config.ring_capacity));
        assert_eq!(l.pools_offset % 4096, 0);
        assert!(l.pools_offset >= l.host_to_guest_ring(id(config.max_guests as u8)) + l.ring_size);
        assert_eq!(l.total_size % 4096, 0);
        assert!(l.total_size >= l.pool(guest_party(config.max_guests as u8)) + l.pool_stride);
        assert_eq!(l.rings_offset % 64, 0, "{config:?}");
        assert_eq!(l.pool_meta_offset % 64, 0, "{config:?}");
        // Every pool, and the data of each, starts on a page.
        assert_eq!(l.pool_data_offset % 4096, 0, "{config:?}");
        assert_eq!(l.pool_stride % 4096, 0, "{config:?}");
        assert!(l.pool_meta_offset >= 64 + 8 * u64::from(config.slots_per_pool).div_ceil(64));
        assert!(l.pool_data_offset >= l.pool_meta_offset + 64 * u64::from(config.slots_per_pool));
    }
    // The default configuration's numbers, as the spec's table gives them.
    let l = SegmentConfig::default().layout().unwrap();
    assert_eq!(
        (
            l.rings_offset,
            l.ring_size,
            l.pools_offset,
            l.pool_meta_offset,
            l.pool_data_offset,
            l.pool_stride,
            l.total_size
        ),
        (768, 16_576, 266_240, 128, 8_192, 4_202_496, 38_088_704)
    );
    assert_eq!(SegmentConfig::default().heartbeat_interval_ms, 0);
}

// shm[verify shm.file.magic-last]
#[test]
fn a_segment_without_its_magic_is_not_ready_and_nothing_touches_it() {
    let dir = tmp();
    let path = dir.path().join("magic.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..8], b"SHMHUB\x00\x01");

    // The same bytes with only the magic missing: a creator interrupted
    // just before publishing.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].fill(0);
    let unready = dir.path().join("unready.shm");
    std::fs::write(&unready, &bytes).unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&unready),
        Err(Error::NotReady)
    ));
    assert!(matches!(ShmHost::open(&unready), Err(Error::NotReady)));
    assert!(matches!(inspect_path(&unready), Err(Error::NotReady)));
    assert!(matches!(
        remove_segment(&unready, remove_options(true, 0), &mut |_| {}),
        Err(Error::NotReady)
    ));
    assert_eq!(
        std::fs::read(&unready).unwrap(),
        bytes,
        "refusals change nothing"
    );

    // Everything else was complete: publishing the magic makes it usable.
    bytes[..8].copy_from_slice(&MAGIC.to_le_bytes());
    std::fs::write(&unready, &bytes).unwrap();
    let guest = ShmGuest::attach_path(&unready).unwrap();
    assert_eq!(guest.peer_id(), 1);
    drop(guest);

    // A magic that is not ours is not a segment.
    bytes[..8].copy_from_slice(b"NOTSHMHB");
    std::fs::write(&unready, &bytes).unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&unready),
        Err(Error::NotASegment { .. })
    ));
    drop(host);
}

// shm[verify shm.header.validate]
#[test]
fn each_inconsistent_header_field_is_named() {
    let dir = tmp();
    let path = dir.path().join("valid.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let good = std::fs::read(&path).unwrap();

    let expect_corrupt = |name: &str, bytes: &[u8], field: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        for result in [
            ShmGuest::attach_path(&p).map(|_| ()),
            inspect_path(&p).map(|_| ()),
        ] {
            match result {
                Err(Error::CorruptHeader { field: f, .. }) => assert_eq!(f, field, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    };
    let patched = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    expect_corrupt(
        "hsize.shm",
        &patched(12, &128u32.to_le_bytes()),
        "header_size",
    );
    // The file is longer (or shorter) than the header says.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    expect_corrupt("longer.shm", &longer, "total_size");
    expect_corrupt("shorter.shm", &good[..good.len() - 4096], "total_size");
    expect_corrupt(
        "guests.shm",
        &patched(24, &0u32.to_le_bytes()),
        "max_guests",
    );
    expect_corrupt("slot.shm", &patched(32, &100u32.to_le_bytes()), "slot_size");
    expect_corrupt(
        "payload.shm",
        &patched(40, &(1u32 << 20).to_le_bytes()),
        "max_payload",
    );
    expect_corrupt(
        "beat.shm",
        &patched(44, &3_600_001u32.to_le_bytes()),
        "heartbeat_interval_ms",
    );
    expect_corrupt(
        "rings.shm",
        &patched(56, &832u64.to_le_bytes()),
        "rings_offset",
    );
    expect_corrupt(
        "data.shm",
        &patched(88, &1216u64.to_le_bytes()),
        "pool_data_offset",
    );
    expect_corrupt(
        "goodbye.shm",
        &patched(128, &2u32.to_le_bytes()),
        "host_goodbye",
    );
    // A share of the host's pool larger than the pool (64 slots).
    expect_corrupt(
        "share.shm",
        &patched(112, &65u32.to_le_bytes()),
        "host_slots_per_guest",
    );
    // A configuration that lays out differently but is stored with the old
    // offsets: the offsets are checked against the configuration.
    expect_corrupt("cap.shm", &patched(28, &128u32.to_le_bytes()), "total_size");

    // Smaller than a header: refused before the header is read.
    let tiny = dir.path().join("tiny.shm");
    std::fs::write(&tiny, &good[..255]).unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&tiny),
        Err(Error::TooSmall { len: 255, .. })
    ));
    drop(host);
}

// ---------------------------------------------------------------------------
// Peer table
// ---------------------------------------------------------------------------

// shm[verify shm.peer.table]
#[test]
fn peer_entries_are_64_bytes_one_per_guest_from_peer_id_1() {
    let dir = tmp();
    let path = dir.path().join("peers.shm");
    let before = unix_ns();
    let mut host = ShmHost::create(&path, odd_config()).unwrap();
    let g1 = ShmGuest::attach_path(&path).unwrap();
    let g2 = ShmGuest::attach_path(&path).unwrap();
    let after = unix_ns();
    assert_eq!((g1.peer_id().get(), g2.peer_id().get()), (1, 2));
    let bytes = std::fs::read(&path).unwrap();
    let table = host.layout().peer_table_offset as usize;
    assert_eq!(table, 256);
    let me = std::process::id();
    for p in [1usize, 2] {
        let e = table + (p - 1) * 64;
        assert_eq!(u32_at(&bytes, e), 2, "peer {p} state Attached");
        assert_eq!(u32_at(&bytes, e + 4), 1, "peer {p} epoch");
        assert_eq!(u32_at(&bytes, e + 8), me, "peer {p} pid");
        assert_eq!(u32_at(&bytes, e + 12), 1 | 2, "peer {p} flags HELD|LOCKED");
        assert_ne!(u64_at(&bytes, e + 16), 0, "peer {p} heartbeat");
        assert_eq!(
            u64_at(&bytes, e + 24) != 0,
            !cfg!(shmhub_portable),
            "peer {p} start time"
        );
        let claimed = u64_at(&bytes, e + 32);
        assert!((before..=after).contains(&claimed), "peer {p} claim time");
        assert!(bytes[e + 40..e + 64].iter().all(|&b| b == 0), "reserved");
    }
    // The third entry is untouched, and the table ends there.
    let third = table + 2 * 64;
    assert!(bytes[third..third + 64].iter().all(|&b| b == 0));
    assert_eq!(host.layout().rings_offset as usize, third + 64);

    // The snapshot API reads the same entries; the host has none.
    let peers = host.peers().unwrap();
    assert_eq!(
        peers.iter().map(|e| e.peer_id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(peers[2].state, PeerState::Empty);
    assert_eq!(
        (peers[0].pid, peers[0].held, peers[0].locked),
        (me, true, true)
    );

    // Ids outside 1..=max_guests are refused.
    for bad in [0u8, 4, 255] {
        assert!(matches!(
            host.try_send(bad, data(1, b"x")),
            Err(Error::InvalidPeerId { .. })
        ));
        assert!(matches!(
            ShmGuest::attach_path_with_id(&path, bad),
            Err(Error::InvalidPeerId { .. })
        ));
    }

    // A scripted claim keeps the entry Attached with no holder recorded.
    let (p, epoch) = g2.release_to_script().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let e = table + (usize::from(p) - 1) * 64;
    assert_eq!((u32_at(&bytes, e), u32_at(&bytes, e + 4)), (2, epoch));
    assert_eq!((u32_at(&bytes, e + 8), u32_at(&bytes, e + 12)), (0, 0));
    assert_eq!(u64_at(&bytes, e + 24), 0, "no start time without a holder");
    drop(g1);
}

// shm[verify shm.peer.table]
#[test]
fn heap_guests_hold_their_entry_without_a_presence_lock() {
    let host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let guest = ShmGuest::attach(host.region()).unwrap();
    let entry = host.peers().unwrap()[0];
    assert_eq!(entry.peer_id, guest.peer_id());
    assert_eq!(entry.state, PeerState::Attached);
    assert!(entry.held && !entry.locked);
    assert_eq!(entry.pid, std::process::id());
}

/// The pid of a process that has exited (and been reaped): judged dead.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

// Clearing a holder (detach, reservation, reclaim) zeroes pid, start time
// and flags, leaves a fresh heartbeat rather than 0, and keeps the time of
// the entry's last claim: neither of those two says whether the entry is
// held.
// shm[verify shm.peer.holder]
#[test]
fn clearing_a_holder_leaves_a_fresh_heartbeat_and_the_last_claim_time() {
    use std::sync::atomic::Ordering;
    let dir = tmp();
    let path = dir.path().join("holder.shm");
    let config = SegmentConfig {
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let guest = ShmGuest::attach_path(&path).unwrap();
    let held = host.peers().unwrap()[0];
    assert_eq!(
        (held.pid, held.held, held.locked),
        (std::process::id(), true, true)
    );
    assert!(held.heartbeat_ns != 0 && held.claimed_unix_ns != 0);

    // Detach.
    guest.detach().unwrap();
    let left = host.peers().unwrap()[0];
    assert_eq!(left.state, PeerState::Empty);
    assert_eq!(
        (left.pid, left.held, left.locked, left.start_time),
        (0, false, false, 0)
    );
    assert!(left.heartbeat_ns >= held.heartbeat_ns, "a fresh heartbeat");
    assert_eq!(left.claimed_unix_ns, held.claimed_unix_ns);

    // A reservation records its reserver (no presence lock: it keeps
    // none), so that a reclaim can tell when it died.
    assert_eq!(host.reserve_peer().unwrap(), 1);
    let reserved = host.peers().unwrap()[0];
    assert_eq!(reserved.state, PeerState::Reserved);
    assert_eq!(
        (reserved.pid, reserved.held, reserved.locked),
        (std::process::id(), true, false)
    );
    assert!(reserved.heartbeat_ns >= left.heartbeat_ns);
    assert_eq!(reserved.claimed_unix_ns, held.claimed_unix_ns);
    // `release_peer` writes none of the record.
    host.release_peer(1).unwrap();
    let released = host.peers().unwrap()[0];
    assert_eq!(
        (released.heartbeat_ns, released.claimed_unix_ns),
        (reserved.heartbeat_ns, reserved.claimed_unix_ns)
    );

    // A reclaim: an Attached entry whose recorded holder (no presence lock
    // to judge it by) is a process that has exited.
    let guest = ShmGuest::attach_path(&path).unwrap();
    let claimed = host.peers().unwrap()[0];
    assert!(claimed.claimed_unix_ns >= held.claimed_unix_ns);
    guest.release_to_script().unwrap();
    let region = host.region();
    let entry = host.layout().peer_entry(id(1));
    region
        .store_u32(entry + 8, dead_pid(), Ordering::Relaxed)
        .unwrap();
    region.store_u32(entry + 12, 1, Ordering::Release).unwrap();
    let before = host.peers().unwrap()[0];
    assert_eq!(host.reclaim_dead().unwrap(), [1]);
    let reclaimed = host.peers().unwrap()[0];
    assert_eq!(reclaimed.state, PeerState::Empty);
    assert_eq!(
        (reclaimed.pid, reclaimed.held, reclaimed.start_time),
        (0, false, 0)
    );
    assert!(reclaimed.heartbeat_ns >= before.heartbeat_ns);
    assert_eq!(reclaimed.claimed_unix_ns, claimed.claimed_unix_ns);
}
