//! Integration tests of the segment library on temporary file-backed
//! segments (and heap segments where the file does not matter).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use shmhub::{
    Error, FileMode, Frame, HeapRegion, INLINE_CAPACITY, MsgDesc, PeerState, SegmentConfig,
    ShmGuest, ShmHost, msg_type,
};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn data(id: u64, payload: &[u8]) -> Frame {
    Frame::new(MsgDesc::new(msg_type::DATA, id), payload.to_vec())
}

// The seed's first test, as it writes it (with a concrete MsgDesc).
// shm[verify shm.file.create]
// shm[verify shm.file.attach]
// shm[verify shm.file.mmap-posix]
#[test]
fn test_file_backed_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.shm");

    // Host creates segment
    let config = SegmentConfig::default();
    let mut host = ShmHost::create(&path, config).unwrap();

    // Guest attaches
    let mut guest = ShmGuest::attach_path(&path).unwrap();

    // Send message host -> guest
    let frame = Frame::new_inline(
        MsgDesc {
            msg_type: msg_type::DATA,
            id: 1,
            ..MsgDesc::default()
        },
        b"hello",
    );
    host.send(guest.peer_id(), frame.clone()).unwrap();

    // Guest receives
    let received = guest.recv().unwrap();
    assert_eq!(received.payload(), frame.payload());
}

// The seed's second test, as it writes it.
// shm[verify shm.file.cleanup]
#[test]
fn test_segment_cleanup_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.shm");

    {
        let _host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
        assert!(path.exists());
    }

    // File should be deleted after host is dropped
    assert!(!path.exists());
}

// shm[verify shm.send.placement]
// shm[verify shm.recv.validate]
#[test]
fn both_directions_inline_and_slot_up_to_max_payload() {
    let dir = tmp();
    let path = dir.path().join("both.shm");
    let config = SegmentConfig {
        slot_size: 8192,
        max_payload: 8192,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    let sizes = [
        0,
        1,
        INLINE_CAPACITY - 1,
        INLINE_CAPACITY,
        INLINE_CAPACITY + 1,
        4096,
        8191,
        8192,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        host.send(guest.peer_id(), data(i as u64, &payload))
            .unwrap();
        let got = guest.recv().unwrap();
        assert_eq!(got.payload(), &payload[..], "host->guest len {len}");
        assert_eq!(got.desc.id, i as u64);
        assert_eq!(got.desc.is_slot(), len > INLINE_CAPACITY);

        guest.send(data(100 + i as u64, &payload)).unwrap();
        let (from, got) = host.try_recv().unwrap().unwrap();
        assert_eq!(from, guest.peer_id());
        assert_eq!(got.payload(), &payload[..], "guest->host len {len}");
    }
    // Every slot went back to its pool.
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert!(
        report.pools.iter().all(|p| p.usage.used == 0),
        "{:?}",
        report.pools
    );
}

// shm[verify shm.send.placement]
#[test]
fn payload_over_max_is_refused_before_anything_is_written() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        max_payload: 1000,
        ..SegmentConfig::default()
    })
    .unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let err = host
        .send(guest.peer_id(), data(1, &[0u8; 1001]))
        .unwrap_err();
    assert!(matches!(
        err,
        Error::PayloadTooLarge {
            len: 1001,
            max: 1000
        }
    ));
    assert!(guest.try_recv().unwrap().is_none());
}

// shm[verify shm.send.backpressure]
// shm[verify shm.ring.spsc]
#[test]
fn full_ring_is_backpressure_not_overwrite() {
    let config = SegmentConfig {
        ring_capacity: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    for i in 0..4 {
        host.send(guest.peer_id(), data(i, b"x")).unwrap();
    }
    let err = host.try_send(guest.peer_id(), data(99, b"x")).unwrap_err();
    assert!(
        matches!(err, Error::RingFull { .. }) && err.is_retryable(),
        "{err}"
    );
    let err = host
        .send_timeout(
            guest.peer_id(),
            data(99, b"x"),
            Some(Duration::from_millis(20)),
        )
        .unwrap_err();
    assert!(matches!(err, Error::RingFull { .. }));
    for i in 0..4 {
        assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, i);
    }
    assert!(guest.try_recv().unwrap().is_none());
}

// shm[verify shm.pool.bitmap]
#[test]
fn exhausted_pool_is_retryable_and_nothing_leaks() {
    let config = SegmentConfig {
        slots_per_pool: 2,
        slot_size: 256,
        max_payload: 256,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    host.send(guest.peer_id(), data(1, &[1u8; 100])).unwrap();
    host.send(guest.peer_id(), data(2, &[2u8; 100])).unwrap();
    let err = host
        .try_send(guest.peer_id(), data(3, &[3u8; 100]))
        .unwrap_err();
    assert!(matches!(err, Error::PoolExhausted { .. }) && err.is_retryable());
    // Inline messages still go through while the pool is empty.
    host.send(guest.peer_id(), data(4, b"tiny")).unwrap();
    assert_eq!(guest.recv().unwrap().payload(), &[1u8; 100][..]);
    host.send(guest.peer_id(), data(5, &[5u8; 100])).unwrap();
    let ids: Vec<u64> = (0..3).map(|_| guest.recv().unwrap().desc.id).collect();
    assert_eq!(ids, [2, 4, 5]);
    let report = shmhub::admin::inspect_region(&host.region(), None).unwrap();
    assert_eq!(report.pools[0].usage.used, 0);
}

// shm[verify shm.host.fair]
// shm[verify shm.peer.claim]
#[test]
fn several_guests_each_get_their_own_messages_and_host_is_fair() {
    let dir = tmp();
    let path = dir.path().join("many.shm");
    let mut host = ShmHost::create(
        &path,
        SegmentConfig {
            max_guests: 4,
            ..SegmentConfig::default()
        },
    )
    .unwrap();
    let mut guests: Vec<ShmGuest> = (0..4)
        .map(|_| ShmGuest::attach_path(&path).unwrap())
        .collect();
    let ids: Vec<u8> = guests.iter().map(|g| g.peer_id().get()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert!(matches!(
        ShmGuest::attach_path(&path),
        Err(Error::HubFull { max_guests: 4 })
    ));
    for g in &guests {
        let p = g.peer_id();
        host.send(p, data(u64::from(p), &[p.get(); 100])).unwrap();
    }
    for g in &mut guests {
        let got = g.recv().unwrap();
        assert_eq!(got.desc.id, u64::from(g.peer_id()));
        assert_eq!(got.payload(), &vec![g.peer_id(); 100][..]);
    }
    // Guest 1 floods, the others send one each: the host still serves
    // every guest within one round.
    for i in 0..10 {
        guests[0].send(data(i, b"flood")).unwrap();
    }
    for g in &mut guests[1..] {
        g.send(data(0, b"one")).unwrap();
    }
    let first_four: Vec<u8> = (0..4)
        .map(|_| host.try_recv().unwrap().unwrap().0.get())
        .collect();
    let mut sorted = first_four.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3, 4], "round-robin order was {first_four:?}");
}

// shm[verify shm.peer.reserve]
// shm[verify shm.peer.states]
#[test]
fn reserved_id_attach_takes_only_a_reserved_entry() {
    let dir = tmp();
    let path = dir.path().join("reserve.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let reserved = host.reserve_peer().unwrap();
    assert_eq!(reserved, 1);
    // A plain attach skips the reserved entry.
    let plain = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(plain.peer_id(), 2);
    // Not reserved: refused, naming the state.
    match ShmGuest::attach_path_with_id(&path, 3) {
        Err(Error::PeerState {
            peer_id,
            state: PeerState::Empty,
            expected: "reserved",
        }) if peer_id == 3 => {}
        other => panic!("{other:?}"),
    }
    match ShmGuest::attach_path_with_id(&path, 2) {
        Err(Error::PeerState {
            state: PeerState::Attached,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ShmGuest::attach_path_with_id(&path, 0),
        Err(Error::InvalidPeerId { .. })
    ));
    assert!(matches!(
        ShmGuest::attach_path_with_id(&path, 9),
        Err(Error::InvalidPeerId { .. })
    ));
    // The host may send before the reserved guest arrives.
    host.send(reserved, data(7, b"welcome")).unwrap();
    let mut spawned = ShmGuest::attach_path_with_id(&path, reserved).unwrap();
    assert_eq!(spawned.peer_id(), reserved);
    assert_eq!(spawned.recv().unwrap().payload(), b"welcome");
    // Release returns a reserved entry.
    let again = host.reserve_peer().unwrap();
    host.release_peer(again).unwrap();
    assert!(host.release_peer(again).is_err());
}

// shm[verify shm.file.attach]
// shm[verify shm.header.validate]
// shm[verify shm.file.magic-last]
#[test]
fn attach_to_missing_empty_foreign_or_unready_files_fails_clearly() {
    let dir = tmp();
    let missing = dir.path().join("missing.shm");
    assert!(matches!(
        ShmGuest::attach_path(&missing),
        Err(Error::Io { .. })
    ));

    let empty = dir.path().join("empty.shm");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&empty),
        Err(Error::TooSmall { len: 0, .. })
    ));

    let foreign = dir.path().join("foreign.shm");
    std::fs::write(&foreign, vec![0xABu8; 8192]).unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&foreign),
        Err(Error::NotASegment { .. })
    ));

    // A segment whose creator never wrote the magic is not ready.
    let unready = dir.path().join("unready.shm");
    let layout = SegmentConfig::default().layout().unwrap();
    let f = std::fs::File::create(&unready).unwrap();
    f.set_len(layout.total_size).unwrap();
    assert!(matches!(
        ShmGuest::attach_path(&unready),
        Err(Error::NotReady)
    ));

    // Wrong version: named.
    let path = dir.path().join("v.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = 99;
    let other = dir.path().join("v2.shm");
    std::fs::write(&other, &bytes).unwrap();
    match ShmGuest::attach_path(&other) {
        Err(e @ Error::VersionMismatch { found: 99, .. }) => assert!(e.to_string().contains("99")),
        other => panic!("{other:?}"),
    }
    drop(host);
}

// shm[verify shm.file.permissions]
#[test]
fn created_file_mode_is_0600_or_0660_on_request() {
    let dir = tmp();
    let a = dir.path().join("a.shm");
    let b = dir.path().join("b.shm");
    let _ha = ShmHost::create(&a, SegmentConfig::default()).unwrap();
    let opts = shmhub::CreateOptions {
        mode: FileMode::OwnerAndGroup,
        ..Default::default()
    };
    let _hb = ShmHost::create_with(&b, SegmentConfig::default(), opts).unwrap();
    assert_eq!(
        std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

// shm[verify shm.file.create]
#[test]
fn create_refuses_an_existing_file_and_leaves_it_alone() {
    let dir = tmp();
    let path = dir.path().join("exists.shm");
    std::fs::write(&path, b"keep me").unwrap();
    assert!(ShmHost::create(&path, SegmentConfig::default()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

// shm[verify shm.peer.detach]
// shm[verify shm.peer.claim]
#[test]
fn detach_frees_the_entry_and_its_slots_and_epoch_moves_on() {
    let dir = tmp();
    let path = dir.path().join("detach.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let guest = ShmGuest::attach_path(&path).unwrap();
    let (p, epoch) = (guest.peer_id(), guest.epoch());
    // Unread slot messages from the host are returned when the guest leaves.
    host.send(p, data(1, &[9u8; 500])).unwrap();
    host.send(p, data(2, &[9u8; 500])).unwrap();
    drop(guest);
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(report.peers[0].entry.state, PeerState::Empty);
    assert_eq!(report.pools[0].usage.used, 0);
    let again = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(again.peer_id(), p);
    assert_eq!(again.epoch(), epoch + 1);
}

// shm[verify shm.host.goodbye]
#[test]
fn guest_sees_host_goodbye_after_reading_what_was_sent() {
    let dir = tmp();
    let path = dir.path().join("bye.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    host.send(guest.peer_id(), data(1, b"last words")).unwrap();
    drop(host);
    assert!(!path.exists());
    assert_eq!(guest.recv().unwrap().payload(), b"last words");
    assert!(matches!(guest.recv(), Err(Error::HostGone)));
    assert!(matches!(
        guest.send(data(2, b"anyone?")),
        Err(Error::HostGone)
    ));
}

// shm[verify shm.peer.detach]
// shm[verify shm.peer.states]
#[test]
fn host_reads_what_a_departed_guest_sent_then_entry_is_free() {
    let dir = tmp();
    let path = dir.path().join("leftover.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    let p = guest.peer_id();
    guest.send(data(1, &[4u8; 300])).unwrap();
    drop(guest);
    assert_eq!(host.peers().unwrap()[0].state, PeerState::Goodbye);
    assert_eq!(
        host.try_recv_from(p).unwrap().unwrap().payload(),
        &[4u8; 300][..]
    );
    // The receive that took the last message freed the entry, and the
    // next one says the guest has gone.
    assert_eq!(host.peers().unwrap()[0].state, PeerState::Empty);
    let next = host.try_recv_from(p);
    assert!(matches!(next, Err(Error::PeerGone { .. })), "{next:?}");
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert!(report.pools.iter().all(|p| p.usage.used == 0));
}

/// What a host send racing a guest's departure could leave: a free entry
/// whose host-to-guest ring still holds messages (one naming a host slot
/// held for the departed guest). Made here by a scripted guest that goes
/// without reading; the next guest of the entry, plain or reserved, must
/// get none of them, and the slot goes back.
// shm[verify shm.peer.claim]
// shm[verify shm.peer.reserve]
#[test]
fn the_next_guest_of_an_entry_never_gets_what_was_sent_to_the_last() {
    let dir = tmp();
    let path = dir.path().join("stale.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let leave_behind = |host: &mut ShmHost| {
        let (p, _) = ShmGuest::attach_path(&path)
            .unwrap()
            .release_to_script()
            .unwrap();
        host.send(p, data(1, &[7u8; 500])).unwrap();
        host.send(p, data(2, b"for the last guest")).unwrap();
        let state = host.layout().peer_entry(p);
        host.region()
            .store_u32(state, 0, std::sync::atomic::Ordering::Release)
            .unwrap();
        let report = shmhub::admin::inspect_path(&path).unwrap();
        assert_eq!(report.peers[usize::from(p) - 1].to_guest.len(), Some(2));
        assert_eq!(report.pools[0].usage.used, 1);
        p
    };
    // A plain attach drops them.
    let p = leave_behind(&mut host);
    let mut next = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(next.peer_id(), p);
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert!(report.peers[usize::from(p) - 1].to_guest.is_empty());
    assert_eq!(report.pools[0].usage.used, 0);
    assert!(next.try_recv().unwrap().is_none());
    host.send(p, data(3, b"for you")).unwrap();
    assert_eq!(next.try_recv().unwrap().unwrap().desc.id, 3);
    next.detach().unwrap();
    // So does a reservation; what the host sends ahead then is kept.
    let p = leave_behind(&mut host);
    assert_eq!(host.reserve_peer().unwrap(), p);
    assert_eq!(
        shmhub::admin::inspect_path(&path).unwrap().pools[0]
            .usage
            .used,
        0
    );
    host.send(p, data(4, b"sent ahead")).unwrap();
    let mut reserved = ShmGuest::attach_path_with_id(&path, p).unwrap();
    assert_eq!(reserved.try_recv().unwrap().unwrap().desc.id, 4);
    assert!(reserved.try_recv().unwrap().is_none());
}

// A plain claim reads an entry's state before it writes anything there:
// the entries it passes over (scripted, held by a dead process, reserved)
// keep every byte, and the dead one is still reclaimed as dead.
// shm[verify shm.peer.claim]
#[test]
fn a_plain_claim_writes_nothing_in_the_entries_it_passes_over() {
    let dir = tmp();
    let path = dir.path().join("pass-over.shm");
    let config = SegmentConfig {
        max_guests: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let region = host.region();
    let table = host.layout().peer_table_offset;
    let entry = |p: u8| table + (u64::from(p) - 1) * 64;
    // 1: a scripted claim. 2: an entry whose holder kept the presence lock
    // and died (its record says LOCKED; nobody holds the lock). 3: reserved.
    let (scripted, _) = ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let (dead, _) = ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    region
        .store_u32(
            entry(dead.get()) + 8,
            std::process::id(),
            std::sync::atomic::Ordering::Relaxed,
        )
        .unwrap();
    region
        .store_u32(
            entry(dead.get()) + 12,
            1 | 2,
            std::sync::atomic::Ordering::Release,
        )
        .unwrap();
    let reserved = host.reserve_peer().unwrap();
    assert_eq!((scripted.get(), dead.get(), reserved.get()), (1, 2, 3));
    let bytes = |p: u8| region.read_array::<64>(entry(p)).unwrap();
    let before = [bytes(1), bytes(2), bytes(3)];

    let fourth = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(fourth.peer_id(), 4);
    assert_eq!([bytes(1), bytes(2), bytes(3)], before);
    assert_eq!(host.reclaim_dead().unwrap(), [dead]);
    assert_eq!(host.peers().unwrap()[0].state, PeerState::Attached);
    drop(fourth);
}

// A plain claim of an Empty entry whose host-to-guest receiving role
// another process holds still claims it, but leaves its ring as it is.
// shm[verify shm.peer.claim]
#[test]
fn a_plain_claim_leaves_the_ring_of_an_entry_whose_receiving_role_is_held() {
    let dir = tmp();
    let path = dir.path().join("role-held.shm");
    let config = SegmentConfig {
        max_guests: 1,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let first = ShmGuest::attach_path(&path).unwrap();
    // Another open file acts as guest 1 and takes its receiving role.
    let mut other = ShmGuest::resume(&path, 1).unwrap();
    assert!(other.try_recv().unwrap().is_none());
    host.send(1, data(1, b"for the first guest")).unwrap();
    // The first guest cannot take its receiving role to drain: it leaves
    // the message where it is.
    first.detach().unwrap();
    let next = ShmGuest::attach_path(&path).unwrap();
    assert_eq!((next.peer_id().get(), next.epoch()), (1, 2));
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(report.peers[0].to_guest.len(), Some(1), "left as it is");
    drop(other);
    let mut next = next;
    assert_eq!(next.try_recv().unwrap().unwrap().desc.id, 1);
}

// Attaching with an id takes no receiving role at claim time and drops
// nothing: the role is taken at the first receive.
// shm[verify shm.peer.reserve]
#[test]
fn an_attach_with_id_takes_its_receiving_role_at_its_first_receive() {
    let dir = tmp();
    let path = dir.path().join("reserved-role.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let p = host.reserve_peer().unwrap();
    host.send(p, data(5, b"sent ahead")).unwrap();
    let mut guest = ShmGuest::attach_path_with_id(&path, p).unwrap();
    // The role is still free: another handle of the entry takes it and
    // finds what was sent ahead.
    let mut other = ShmGuest::resume(&path, p).unwrap();
    assert_eq!(other.try_recv().unwrap().unwrap().desc.id, 5);
    assert!(matches!(guest.try_recv(), Err(Error::Busy { .. })));
    drop(other);
    assert!(guest.try_recv().unwrap().is_none());
    guest.detach().unwrap();
}

/// A host sending without pause to a guest that attaches, receives a
/// little and detaches, over and over: no message whose send ended while
/// one guest held the entry ever reaches the next one, none is refused as
/// a bad descriptor, and the slots of messages stranded in a departed
/// guest's ring go back at once. (Before the fix, a send that found the
/// guest attached and published after its detach drained the ring was
/// delivered to the next guest, or named a slot the detach had freed; and
/// a detach freed the slot of a host send still under way, which, when that
/// send went on to the next guest, arrived as a bad descriptor.)
// shm[verify shm.peer.detach]
// shm[verify shm.send.placement]
#[test]
fn a_host_send_racing_a_detach_never_reaches_the_next_guest() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    let dir = tmp();
    let path = dir.path().join("race.shm");
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 8,
        slot_size: 128,
        max_payload: 128,
        slots_per_pool: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    // The epoch of the guest attached now, 0 between guests. A message
    // carries, in `method_id`, the value before its send; a send during
    // which it did not change ran within one guest's tenure.
    let current = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let straddled = Arc::new(Mutex::new(HashSet::new()));
    let sender = {
        let (current, stop, straddled) = (current.clone(), stop.clone(), straddled.clone());
        std::thread::spawn(move || {
            let mut id = 0u64;
            while !stop.load(SeqCst) {
                id += 1;
                let label = current.load(SeqCst);
                let len = if id % 2 == 0 { 100 } else { 8 };
                let desc = MsgDesc {
                    id,
                    method_id: label,
                    ..MsgDesc::new(msg_type::DATA, id)
                };
                let sent =
                    host.send_with(1, desc, &[id as u8; 100][..len], Duration::from_millis(1));
                if sent.is_ok() && current.load(SeqCst) != label {
                    straddled.lock().unwrap().insert(id);
                }
            }
            host
        })
    };
    let mut wrong = Vec::new();
    for _ in 0..4000 {
        let mut guest = ShmGuest::attach_path(&path).unwrap();
        let epoch = guest.epoch();
        current.store(epoch, SeqCst);
        for _ in 0..3 {
            match guest.recv_timeout(Duration::from_millis(1)) {
                Ok(Some(f)) if f.desc.method_id != epoch && f.desc.method_id != 0 => {
                    wrong.push((f.desc.id, f.desc.method_id, epoch));
                }
                Ok(_) => {}
                Err(e) => panic!("guest {epoch}: {e}"),
            }
        }
        guest.detach().unwrap();
        current.store(0, SeqCst);
    }
    stop.store(true, SeqCst);
    let host = sender.join().unwrap();
    let straddled = straddled.lock().unwrap();
    wrong.retain(|(id, _, _)| !straddled.contains(id));
    assert!(
        wrong.is_empty(),
        "(id, sent during guest, received by guest): {wrong:?}"
    );
    // Whatever a send left in the last guest's ring holds no slot, and the
    // next claim drops it.
    assert_eq!(
        shmhub::admin::inspect_path(&path).unwrap().pools[0]
            .usage
            .used,
        0
    );
    let _next = ShmGuest::attach_path(&path).unwrap();
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert!(report.peers[0].to_guest.is_empty(), "{report:?}");
    drop(host);
}

/// A guest killed at any moment of its detach must leave its entry either
/// Attached to its (dead) holder, which the host reclaims, or left: never
/// Attached with no holder, which passes for a scripted claim and is never
/// reclaimed. A kill cannot be aimed at the instant between two stores, but
/// the state itself can be watched for: a thread reading the entry while
/// guests detach never sees it Attached without `HELD`. (The detach used to
/// clear its holder before leaving Attached; a chaos run killed a guest in
/// between and its entry was lost.)
// shm[verify shm.peer.detach]
// shm[verify shm.peer.liveness]
#[test]
fn a_detaching_guest_never_looks_like_a_scripted_claim() {
    never_attached_without_holder(Watched::Detach);
}

/// The same for a guest killed at any point of its attach: it records
/// itself as holder before its entry is Attached, so it is judged by its
/// presence lock and reclaimed, never taken for a scripted claim.
// shm[verify shm.peer.detach]
// shm[verify shm.peer.liveness]
#[test]
fn an_attaching_guest_never_looks_like_a_scripted_claim() {
    never_attached_without_holder(Watched::Attach);
}

/// Which half of a claim-and-release cycle the watcher looks inside.
#[derive(Clone, Copy, PartialEq)]
enum Watched {
    Attach,
    Detach,
}

/// Attaches and detaches guests over and over while a thread reads entry 1
/// inside each `watched` call (a counter is odd during it, and a read
/// counts only if the counter did not move around it), and fails if the
/// entry was ever seen Attached with no holder. Runs at least 500 cycles,
/// and on until the watcher has looked inside some (on a busy machine it
/// may not run during the first ones), for at most 30 s.
fn never_attached_without_holder(watched: Watched) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

    let (a, word) = match watched {
        Watched::Attach => ("an", "attach"),
        Watched::Detach => ("a", "detach"),
    };
    let dir = tmp();
    let path = dir.path().join(format!("{word}ing.shm"));
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let (region, entry) = (
        host.region(),
        host.layout().peer_entry(shmhub::PeerId::new(1).unwrap()),
    );
    let cycle = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, looks) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let watcher = {
        let (cycle, stop, seen, looks) = (cycle.clone(), stop.clone(), seen.clone(), looks.clone());
        std::thread::spawn(move || {
            let read = |field| region.load_u32(entry + field, SeqCst).unwrap();
            while !stop.load(SeqCst) {
                let before = cycle.load(SeqCst);
                if before % 2 == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                // The field the call writes last is read first: a detach
                // clears the holder after leaving Attached, an attach
                // records it before entering Attached.
                let (state, flags) = match watched {
                    Watched::Attach => {
                        let state = read(shmhub::format::peer::STATE);
                        (state, read(shmhub::format::peer::FLAGS))
                    }
                    Watched::Detach => {
                        let flags = read(shmhub::format::peer::FLAGS);
                        (read(shmhub::format::peer::STATE), flags)
                    }
                };
                if cycle.load(SeqCst) != before {
                    continue;
                }
                looks.fetch_add(1, SeqCst);
                if state == PeerState::Attached.to_u32()
                    && flags & shmhub::format::peer::FLAG_HELD == 0
                {
                    seen.fetch_add(1, SeqCst);
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let mut cycles = 0;
    while cycles < 500
        || (looks.load(SeqCst) < 100 && started.elapsed() < std::time::Duration::from_secs(30))
    {
        if watched == Watched::Attach {
            cycle.fetch_add(1, SeqCst);
        }
        let guest = ShmGuest::attach_path(&path).unwrap();
        cycle.fetch_add(1, SeqCst);
        guest.detach().unwrap();
        if watched == Watched::Detach {
            cycle.fetch_add(1, SeqCst);
        }
        cycles += 1;
    }
    stop.store(true, SeqCst);
    watcher.join().unwrap();
    assert!(
        looks.load(SeqCst) > 0,
        "the watcher never looked inside {a} {word} in {cycles} {word}es"
    );
    assert_eq!(
        seen.load(SeqCst),
        0,
        "an entry was seen Attached with no holder while its guest {word}ed"
    );
    drop(host);
}

// shm[verify shm.recv.validate]
// shm[verify shm.peer.quarantine]
#[test]
fn forged_descriptors_are_refused_without_reading() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        slot_size: 256,
        max_payload: 256,
        ..SegmentConfig::default()
    })
    .unwrap();
    let region = host.region();
    let layout = *host.layout();
    // Send a real slot message, then corrupt its descriptor in place; each
    // on a guest of its own, since a guest that meets one stops.
    let corruptions: [(usize, &[u8]); 5] = [
        (2, &[0x80]),             // unknown flag (bit 15 of the flags is the ring's phase)
        (4, &[0xFF, 0xFF, 0, 0]), // length over max payload
        (20, &[0xFF, 0, 0, 0]),   // slot index out of range
        (24, &[0x77, 0, 0, 0]),   // stale generation
        (28, &[0xF0, 0, 0, 0]),   // offset past the slot
    ];
    for (at, bytes) in corruptions {
        let mut guest = ShmGuest::attach(region.clone()).unwrap();
        let ring = layout.host_to_guest_ring(guest.peer_id());
        host.send(guest.peer_id(), data(1, &[1u8; 200])).unwrap();
        let index = region
            .load_u32(ring, std::sync::atomic::Ordering::Acquire)
            .unwrap()
            .wrapping_sub(1);
        let desc_at = ring
            + shmhub::format::RING_HEADER_SIZE
            + u64::from(index % layout.config.ring_capacity) * 64;
        region.write(desc_at + at as u64, bytes).unwrap();
        let err = guest.try_recv().unwrap_err();
        assert!(matches!(err, Error::BadDescriptor { .. }), "{err}");
        // It stops, both ways, rather than read on (`shm.peer.quarantine`).
        let err = guest.try_recv().unwrap_err();
        assert!(matches!(err, Error::HostBroke { .. }), "{err}");
        assert!(err.to_string().contains("this guest has stopped"), "{err}");
        let err = guest.send(data(2, b"no")).unwrap_err();
        assert!(matches!(err, Error::HostBroke { .. }), "{err}");
        guest.detach().unwrap();
    }
}

// shm[verify shm.file.magic-last]
#[test]
fn heap_regions_carry_a_whole_segment() {
    let config = SegmentConfig::default();
    let layout = config.layout().unwrap();
    let heap = HeapRegion::new_zeroed(layout.total_size as usize).unwrap();
    // A region with no segment in it is not ready.
    assert!(matches!(
        ShmGuest::attach(heap.region()),
        Err(Error::NotReady)
    ));
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    guest.send(data(3, &[8u8; 5000])).unwrap();
    assert_eq!(
        host.recv_timeout(Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap()
            .1
            .payload(),
        &[8u8; 5000][..]
    );
}

// shm[verify shm.file.cleanup]
// shm[verify shm.peer.detach]
#[test]
fn persisted_segment_outlives_its_creator_and_resume_acts_as_a_claimed_guest() {
    let dir = tmp();
    let path = dir.path().join("persist.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    host.persist().unwrap();
    assert!(path.exists());
    let (p, _epoch) = ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(report.peers[0].entry.state, PeerState::Attached);
    assert_eq!(report.peers[0].holder, shmhub::HolderStatus::Scripted);
    let mut as_host = ShmHost::open(&path).unwrap();
    as_host.send(p, data(1, &[3u8; 900])).unwrap();
    drop(as_host);
    assert!(
        path.exists(),
        "a host that only opened the segment does not delete it"
    );
    let mut as_guest = ShmGuest::resume(&path, p).unwrap();
    assert_eq!(as_guest.recv().unwrap().payload(), &[3u8; 900][..]);
    drop(as_guest);
    assert_eq!(
        shmhub::admin::inspect_path(&path).unwrap().peers[0]
            .entry
            .state,
        PeerState::Attached
    );
    ShmGuest::release(&path, p).unwrap();
    assert_eq!(
        shmhub::admin::inspect_path(&path).unwrap().peers[0]
            .entry
            .state,
        PeerState::Empty
    );
}

// shm[verify shm.lock.roles]
#[test]
fn two_openers_cannot_take_the_same_ring_end() {
    let dir = tmp();
    let path = dir.path().join("roles.shm");
    ShmHost::create(&path, SegmentConfig::default())
        .unwrap()
        .persist()
        .unwrap();
    let (p, _) = ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let mut a = ShmHost::open(&path).unwrap();
    let mut b = ShmHost::open(&path).unwrap();
    a.send(p, data(1, b"a")).unwrap();
    assert!(matches!(b.send(p, data(2, b"b")), Err(Error::Busy { .. })));
    drop(a);
    b.send(p, data(2, b"b")).unwrap();
    let mut g1 = ShmGuest::resume(&path, p).unwrap();
    let mut g2 = ShmGuest::resume(&path, p).unwrap();
    assert_eq!(g1.try_recv().unwrap().unwrap().payload(), b"a");
    assert!(matches!(g2.try_recv(), Err(Error::Busy { .. })));
    // Different ends of the same guest do not conflict.
    g2.send(data(3, b"up")).unwrap();
    std::fs::remove_file(&path).unwrap();
}

// shm[verify shm.send.zero-copy]
// shm[verify shm.recv.zero-copy]
#[test]
fn loaned_slots_carry_payloads_written_in_place_both_ways() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        slots_per_pool: 2,
        ..SegmentConfig::default()
    })
    .unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let p = guest.peer_id();
    let mut loan = host.loan(p, 10_000, Some(Duration::from_secs(1))).unwrap();
    for (i, b) in loan.as_mut_slice().iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    loan.desc.id = 77;
    host.commit(p, loan).unwrap();
    {
        let received = guest
            .receiver()
            .recv(Some(Duration::from_secs(1)))
            .unwrap()
            .unwrap();
        assert_eq!(received.desc().id, 77);
        assert_eq!(received.payload().len(), 10_000);
        assert!(
            received
                .payload()
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 253) as u8)
        );
        let usage = shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage;
        assert_eq!(
            usage.used, 1,
            "the slot stays lent while the payload is read in place"
        );
    }
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage
            .used,
        0
    );

    // A loan dropped without commit gives its slot back and sends nothing.
    let dropped = guest.loan(500, None).unwrap();
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[1]
            .usage
            .used,
        1
    );
    drop(dropped);
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[1]
            .usage
            .used,
        0
    );
    assert!(host.try_recv().unwrap().is_none());

    let mut up = guest.loan(3, None).unwrap();
    up.as_mut_slice().copy_from_slice(b"abc");
    guest.commit(up).unwrap();
    let got = host
        .recv_from_in_place(p, Some(Duration::from_secs(1)))
        .unwrap()
        .unwrap();
    assert_eq!(got.payload(), b"abc");
    assert!(got.desc().is_slot());
    // A loan larger than the max payload is refused.
    assert!(matches!(
        guest.loan(1 << 20, None),
        Err(Error::PayloadTooLarge { .. })
    ));
}

// shm[verify shm.send.batch]
#[test]
fn batches_keep_order_and_wait_out_a_full_ring() {
    let config = SegmentConfig {
        ring_capacity: 8,
        slots_per_pool: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let p = guest.peer_id();
    let frames: Vec<Frame> = (0..20u64)
        .map(|i| data(i, &vec![i as u8; if i % 3 == 0 { 100 } else { 8 }]))
        .collect();
    // Only 8 fit, and only 4 of the slot messages: a zero timeout sends what fits now.
    let sent = host.send_batch(p, &frames, Some(Duration::ZERO)).unwrap();
    assert!(sent > 0 && sent <= 8, "sent {sent}");
    let mut ids = Vec::new();
    while guest
        .receiver()
        .recv_batch(5, Some(Duration::ZERO), |r| ids.push(r.desc().id))
        .unwrap()
        > 0
    {}
    assert_eq!(ids, (0..sent as u64).collect::<Vec<_>>());
    // With a receiver draining concurrently, the whole batch goes through in order.
    let region = host.region();
    let consumer = std::thread::spawn(move || {
        let mut guest = guest;
        let mut got = Vec::new();
        while got.len() < 20 - sent {
            guest
                .receiver()
                .recv_batch(32, Some(Duration::from_secs(10)), |r| {
                    assert!(r.payload().iter().all(|&b| b == r.desc().id as u8));
                    got.push(r.desc().id)
                })
                .unwrap();
        }
        got
    });
    assert_eq!(
        host.send_batch(p, &frames[sent..], Some(Duration::from_secs(10)))
            .unwrap(),
        20 - sent
    );
    assert_eq!(
        consumer.join().unwrap(),
        (sent as u64..20).collect::<Vec<_>>()
    );
    assert!(
        shmhub::admin::inspect_region(&region, None)
            .unwrap()
            .pools
            .iter()
            .all(|p| p.usage.used == 0)
    );
}

#[test]
fn application_flag_bits_are_the_library_s_and_never_strand_a_message() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let desc = MsgDesc {
        flags: 0x7FF0,
        ..MsgDesc::new(msg_type::DATA, 5)
    };
    host.send(guest.peer_id(), Frame::new(desc, vec![1u8; 500]))
        .unwrap();
    let got = guest.try_recv().unwrap().unwrap();
    assert_eq!(got.payload(), &[1u8; 500][..]);
    assert_eq!(got.desc.flags, shmhub::format::FLAG_SLOT);
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage
            .used,
        0
    );
}

#[test]
fn releasing_a_reserved_entry_drops_what_was_sent_ahead() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let p = host.reserve_peer().unwrap();
    host.send(p, data(1, &[2u8; 700])).unwrap();
    host.release_peer(p).unwrap();
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage
            .used,
        0
    );
    let mut next = ShmGuest::attach(host.region()).unwrap();
    assert_eq!(next.peer_id(), p);
    assert!(
        next.try_recv().unwrap().is_none(),
        "the next guest does not get the old message"
    );
}

#[test]
fn a_payload_read_in_place_stays_put_after_its_guest_detaches() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let p = guest.peer_id();
    host.send(p, data(1, &[9u8; 4000])).unwrap();
    let held = guest
        .receiver()
        .recv(Some(Duration::from_secs(1)))
        .unwrap()
        .unwrap();
    drop(guest);
    // The host reuses its pool: the lent slot is not among the free ones.
    let mut next = ShmGuest::attach(host.region()).unwrap();
    for i in 0..63 {
        host.send(next.peer_id(), data(i, &[3u8; 4000])).unwrap();
    }
    assert!(held.payload().iter().all(|&b| b == 9));
    drop(held);
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage
            .used,
        63
    );
    while next.try_recv().unwrap().is_some() {}
    assert_eq!(
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[0]
            .usage
            .used,
        0
    );
}

#[test]
fn a_host_waiting_on_a_reserved_entry_gets_the_guest_it_reserved_it_for() {
    let dir = tmp();
    let path = dir.path().join("reserved-wait.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let p = host.reserve_peer().unwrap();
    let child_path = path.clone();
    let guest = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut guest = ShmGuest::attach_path_with_id(&child_path, p).unwrap();
        guest.send(data(7, b"arrived")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let got = host
        .recv_from_timeout(p, Some(Duration::from_secs(10)))
        .unwrap()
        .unwrap();
    assert_eq!(got.payload(), b"arrived");
    guest.join().unwrap();
}

#[test]
fn a_descriptor_with_a_bad_length_gives_its_real_slot_back() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        slot_size: 256,
        max_payload: 256,
        ..SegmentConfig::default()
    })
    .unwrap();
    let region = host.region();
    let mut guest = ShmGuest::attach(region.clone()).unwrap();
    let layout = *host.layout();
    host.send(guest.peer_id(), data(1, &[1u8; 200])).unwrap();
    let ring = layout.host_to_guest_ring(guest.peer_id());
    // Offset 28: the slot offset, pushed past the slot's end.
    region
        .write(
            ring + shmhub::format::RING_HEADER_SIZE + 28,
            &[0xF0, 0, 0, 0],
        )
        .unwrap();
    assert!(matches!(guest.try_recv(), Err(Error::BadDescriptor { .. })));
    assert_eq!(
        shmhub::admin::inspect_region(&region, None).unwrap().pools[0]
            .usage
            .used,
        0
    );
}

// Creating a segment writes only its header: a fresh 4 GiB segment takes
// (almost) no memory or disk, on tmpfs where there is one.
#[test]
fn a_fresh_huge_segment_occupies_almost_nothing() {
    use std::os::unix::fs::MetadataExt;
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tmp()
    };
    let path = dir.path().join("huge.shm");
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 64,
        slot_size: 1 << 30,
        slots_per_pool: 2,
        max_payload: 4096,
        heartbeat_interval_ms: 0,
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.len() >= 4 << 30, "{}", meta.len());
    let occupied = meta.blocks() * 512;
    assert!(
        occupied * 100 < meta.len(),
        "a fresh {} byte segment occupies {occupied} bytes",
        meta.len()
    );
    // And it works: a message crosses it.
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    host.send(guest.peer_id(), data(1, &[5u8; 100])).unwrap();
    assert_eq!(guest.recv().unwrap().payload(), &[5u8; 100][..]);
}

// A batch with more slot messages than free slots publishes what it has
// placed before waiting for more, so a concurrent receiver can free them.
#[test]
fn a_batch_larger_than_the_pool_goes_through_with_a_concurrent_receiver() {
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 16,
        slot_size: 4096,
        max_payload: 4096,
        slots_per_pool: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let p = guest.peer_id();
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        while ids.len() < 8 {
            if let Some(f) = guest.recv_timeout(Some(Duration::from_secs(10))).unwrap() {
                ids.push(f.desc.id);
            }
        }
        ids
    });
    let frames: Vec<Frame> = (0..8).map(|i| data(i, &[i as u8; 100])).collect();
    let started = std::time::Instant::now();
    assert_eq!(
        host.send_batch(p, &frames, Some(Duration::from_secs(10)))
            .unwrap(),
        8
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the batch waited for its own unpublished slots"
    );
    assert_eq!(reader.join().unwrap(), (0..8).collect::<Vec<_>>());
}

// A guest split into its two ends keeps its entry while either lives, and
// leaves it (Empty again, its unread messages dropped) once both are gone.
// shm[verify shm.peer.detach]
#[test]
fn split_ends_keep_the_entry_until_both_are_dropped() {
    let dir = tmp();
    let path = dir.path().join("split.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let guest = ShmGuest::attach_path(&path).unwrap();
    let p = guest.peer_id();
    let (tx, mut rx) = guest.into_split();
    host.send(p, data(1, b"read")).unwrap();
    host.send(p, data(2, b"left unread")).unwrap();
    let got = rx.recv(Duration::ZERO).unwrap().expect("queued");
    assert_eq!(got.payload(), b"read");
    drop(got);
    drop(tx);
    assert_eq!(host.peers().unwrap()[0].state, PeerState::Attached);
    drop(rx);
    let entry = host.peers().unwrap()[0];
    assert_eq!((entry.state, entry.pid), (PeerState::Empty, 0));
    // The unread message went with the guest: the next one gets nothing.
    let mut next = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(next.peer_id(), p);
    assert!(next.try_recv().unwrap().is_none());
}

// An entry's epoch wraps: the claim after epoch u32::MAX gets 0, and
// everything that compares epochs (sends, receives, detach, a reserved
// entry's coming guest) works across it.
// shm[verify shm.wrap]
#[test]
fn epochs_wrap_from_the_largest_to_zero() {
    use std::sync::atomic::Ordering;
    let config = SegmentConfig {
        max_guests: 1,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let region = host.region();
    let word = host.layout().peer_entry(shmhub::PeerId::new(1).unwrap());
    // Empty (0) at the last epoch.
    region
        .store_u64(word, u64::from(u32::MAX) << 32, Ordering::Release)
        .unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    assert_eq!(guest.epoch(), 0);
    host.try_send(1, data(1, &[1u8; 100])).unwrap();
    assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, 1);
    guest.try_send(data(2, b"back")).unwrap();
    assert_eq!(host.try_recv().unwrap().unwrap().1.desc.id, 2);
    guest.detach().unwrap();
    let entry = host.peers().unwrap()[0];
    assert_eq!((entry.state, entry.epoch), (PeerState::Empty, 0));

    // A reservation at the last epoch: what the host sends ahead reaches
    // the guest that attaches to it, whose claim wraps the epoch.
    region
        .store_u64(word, u64::from(u32::MAX) << 32, Ordering::Release)
        .unwrap();
    assert_eq!(host.reserve_peer().unwrap(), 1);
    host.try_send(1, data(3, b"ahead")).unwrap();
    let mut guest = ShmGuest::attach_with_id(host.region(), 1).unwrap();
    assert_eq!(guest.epoch(), 0);
    assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, 3);
    host.try_send(1, data(4, b"after")).unwrap();
    assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, 4);
    guest.detach().unwrap();
}
