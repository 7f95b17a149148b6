//! Sending and receiving beyond the basics of `tests/segment.rs`: the
//! host serving its guests round-robin, batches that go whole or not at
//! all, slot loans committed by the pool's owner only, and batch and
//! in-place receives that hand over good messages around a bad one.
//!
//! Heap segments: nothing here depends on the file.

mod support;

use std::time::Duration;

use shmhub::{Error, MsgDesc, Party, PeerId, SegmentConfig, ShmGuest, ShmHost, msg_type};
use support::fixtures::{data, guest_party, id};

// ---------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------

// shm[verify shm.host.fair]
#[test]
fn host_serves_guests_round_robin() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        max_guests: 4,
        ..SegmentConfig::default()
    })
    .unwrap();
    let mut guests: Vec<ShmGuest> = (0..3)
        .map(|_| ShmGuest::attach(host.region()).unwrap())
        .collect();
    for g in &mut guests {
        for i in 0..5 {
            g.try_send(data(i, &[g.peer_id().get(); 40])).unwrap();
        }
    }
    let mut order = Vec::new();
    while let Some((from, frame)) = host.try_recv().unwrap() {
        assert_eq!(frame.payload(), &[from; 40][..]);
        order.push((from.get(), frame.desc.id));
    }
    let expected: Vec<(u8, u64)> = (0..5).flat_map(|i| [(1, i), (2, i), (3, i)]).collect();
    assert_eq!(order, expected);

    // A flooding guest does not starve a quiet one: the quiet guest's
    // messages come within one round (max_guests receives) each.
    for i in 0..20 {
        guests[0].try_send(data(100 + i, b"flood")).unwrap();
    }
    guests[2].try_send(data(200, b"quiet")).unwrap();
    guests[2].try_send(data(201, b"quiet")).unwrap();
    let mut order = Vec::new();
    while let Some((from, _)) = host.try_recv().unwrap() {
        order.push(from);
    }
    let quiet: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, from)| **from == 3)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(quiet.len(), 2);
    assert!(quiet[0] < 4 && quiet[1] - quiet[0] <= 4, "{order:?}");
    assert_eq!(order.len(), 22);
}

// ---------------------------------------------------------------------------
// Batches and zero-copy
// ---------------------------------------------------------------------------

// shm[verify shm.send.batch]
#[test]
fn a_batch_with_an_oversized_frame_sends_nothing() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        max_payload: 1000,
        ..SegmentConfig::default()
    })
    .unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let frames = [
        data(1, b"small"),
        data(2, &[2u8; 500]),
        data(3, &[3u8; 1001]),
    ];
    assert!(matches!(
        host.send_batch(guest.peer_id(), &frames, Some(Duration::ZERO)),
        Err(Error::PayloadTooLarge { len: 1001, .. })
    ));
    assert!(matches!(
        guest.sender().send_batch(&frames, None),
        Err(Error::PayloadTooLarge { len: 1001, .. })
    ));
    assert!(guest.try_recv().unwrap().is_none());
    assert!(host.try_recv().unwrap().is_none());
    let report = shmhub::admin::inspect_region(&host.region(), None).unwrap();
    assert!(report.pools.iter().all(|p| p.usage.used == 0));
    // Without the oversized frame, all go, in order, in one round.
    assert_eq!(
        host.send_batch(guest.peer_id(), &frames[..2], None)
            .unwrap(),
        2
    );
    let state = shmhub::admin::inspect_region(&host.region(), None)
        .unwrap()
        .peers[0]
        .to_guest;
    assert_eq!((state.head, state.tail), (0, 2));
    assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, 1);
    assert_eq!(
        guest.try_recv().unwrap().unwrap().payload(),
        &[2u8; 500][..]
    );
}

// shm[verify shm.send.zero-copy]
#[test]
fn a_loan_is_committed_only_by_the_sender_whose_pool_lent_it() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let p = guest.peer_id();
    let used = |host: &ShmHost, pool: usize| {
        shmhub::admin::inspect_region(&host.region(), None)
            .unwrap()
            .pools[pool]
            .usage
            .used
    };
    // The guest's loan comes from the guest's pool; the host cannot send it.
    let loan = guest.loan(100, None).unwrap();
    assert_eq!(used(&host, usize::from(p)), 1);
    assert!(matches!(host.commit(p, loan), Err(Error::Corrupt(_))));
    assert_eq!(used(&host, usize::from(p)), 0, "the refused loan was freed");
    assert!(guest.try_recv().unwrap().is_none());

    // A loan from another segment's host pool (the same pool number) is
    // refused too, and goes back to the pool that lent it.
    let mut other = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let other_guest = ShmGuest::attach(other.region()).unwrap();
    let foreign = other.loan(other_guest.peer_id(), 100, None).unwrap();
    assert_eq!(used(&other, 0), 1);
    assert!(matches!(host.commit(p, foreign), Err(Error::Corrupt(_))));
    assert_eq!(used(&other, 0), 0, "the refused loan went back to its pool");
    assert_eq!(used(&host, 0), 0, "nothing was taken from this pool");
    assert!(guest.try_recv().unwrap().is_none());

    // A short loan still travels in a slot, with the descriptor the
    // application filled in, and only the bytes kept by truncate.
    let mut loan = host.loan(p, 64, None).unwrap();
    assert_eq!(loan.len(), 64);
    loan.as_mut_slice()[..3].copy_from_slice(b"hey");
    loan.truncate(3);
    loan.desc = MsgDesc {
        msg_type: msg_type::REQUEST,
        id: 9,
        method_id: 4,
        ..MsgDesc::default()
    };
    host.commit(p, loan).unwrap();
    let got = guest.try_recv().unwrap().unwrap();
    assert!(got.desc.is_slot());
    assert_eq!(
        (got.desc.msg_type, got.desc.id, got.desc.method_id),
        (msg_type::REQUEST, 9, 4)
    );
    assert_eq!(got.payload(), b"hey");
    assert_eq!(used(&host, 0), 0);
}

// shm[verify shm.recv.zero-copy]
// shm[verify shm.recv.validate]
#[test]
fn a_batch_receive_hands_over_the_good_messages_and_reports_the_bad_one() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let region = host.region();
    let layout = *host.layout();
    let mut guest = ShmGuest::attach(region.clone()).unwrap();
    let p = guest.peer_id();
    for i in 0..3u8 {
        host.try_send(p, data(u64::from(i), &[i; 200])).unwrap();
    }
    forge_generation(&region, &layout, p, 1);
    let mut got = Vec::new();
    let err = guest
        .receiver()
        .recv_batch(8, Some(Duration::ZERO), |r| {
            got.push((r.desc().id, r.payload().to_vec()))
        })
        .unwrap_err();
    assert!(matches!(err, Error::BadDescriptor { .. }), "{err}");
    assert_eq!(got, [(0, vec![0u8; 200]), (2, vec![2u8; 200])]);
    // The good slots went back when their Received values were dropped;
    // the forged descriptor's slot was not freed through it.
    let report = shmhub::admin::inspect_region(&region, None).unwrap();
    assert_eq!(report.pools[0].usage.used, 1);
    assert_eq!(report.peers[0].to_guest.len(), Some(0));

    // The host broke the protocol: this guest stops (`shm.peer.quarantine`),
    // both ways, rather than read on through what else the host writes.
    host.try_send(p, data(5, &[5u8; 300])).unwrap();
    let stopped = guest.receiver().recv(Some(Duration::from_secs(5)));
    assert!(
        matches!(stopped, Err(Error::HostBroke { .. })),
        "{stopped:?}"
    );
    let stopped = guest.send(data(6, b"no"));
    assert!(
        matches!(stopped, Err(Error::HostBroke { .. })),
        "{stopped:?}"
    );

    // In place, on a guest the host keeps to the rules: the slot stays
    // allocated while the Received lives.
    let mut guest = ShmGuest::attach(region.clone()).unwrap();
    let before = host_slots_used(&region);
    host.try_send(guest.peer_id(), data(5, &[5u8; 300]))
        .unwrap();
    let received = guest
        .receiver()
        .recv(Some(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    assert_eq!(received.payload(), &[5u8; 300][..]);
    assert_eq!(host_slots_used(&region), before + 1);
    drop(received);
    assert_eq!(host_slots_used(&region), before);
}

// shm[verify shm.recv.borrowed]
#[test]
fn a_borrowed_receive_lends_each_message_once_and_frees_its_slot_as_it_returns() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let region = host.region();
    let layout = *host.layout();
    let mut guest = ShmGuest::attach(region.clone()).unwrap();
    let p = guest.peer_id();

    // Nothing queued: the time runs out and the function is not called.
    let mut calls = 0;
    let none = guest
        .receiver()
        .recv_with(Duration::ZERO, |_| calls += 1)
        .unwrap();
    assert_eq!((none, calls), (None, 0));

    // A slot payload is lent in place, and goes back as the function returns.
    host.try_send(p, data(1, &[1; 300])).unwrap();
    host.try_send(p, data(2, &[2; 300])).unwrap();
    let got = guest
        .receiver()
        .recv_with(Duration::ZERO, |r| {
            (r.desc().id, r.payload().to_vec(), host_slots_used(&region))
        })
        .unwrap();
    assert_eq!(got, Some((1, vec![1; 300], 2)));
    assert_eq!(host_slots_used(&region), 1);

    // A forged descriptor is refused and never handed to the function;
    // then the guest stops (`shm.peer.quarantine`): the next message is
    // not read either.
    {
        let mut forged = ShmGuest::attach(region.clone()).unwrap();
        let f = forged.peer_id();
        host.try_send(f, data(3, &[3; 300])).unwrap();
        host.try_send(f, data(3, b"next")).unwrap();
        forge_generation(&region, &layout, f, 0);
        let err = forged
            .receiver()
            .recv_with(Duration::ZERO, |_| calls += 1)
            .unwrap_err();
        assert!(matches!(err, Error::BadDescriptor { .. }), "{err}");
        let next = forged.receiver().recv_with(Duration::ZERO, |_| calls += 1);
        assert!(matches!(next, Err(Error::HostBroke { .. })), "{next:?}");
        assert_eq!(calls, 0);
    }

    // The host's form waits for a message sent while it waits, and, once
    // the guest has left and everything was read, says so.
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        guest.send(data(4, &[4; 5000])).unwrap();
        guest.detach().unwrap();
    });
    let got = host
        .receiver(p)
        .unwrap()
        .recv_with(Duration::from_secs(10), |r| {
            (
                r.desc().id,
                r.payload().len(),
                r.payload().iter().all(|&b| b == 4),
            )
        });
    assert_eq!(got.unwrap(), Some((4, 5000, true)));
    sender.join().unwrap();
    let gone = host
        .receiver(p)
        .unwrap()
        .recv_with(Duration::from_secs(10), |r| r.desc().id);
    assert!(
        matches!(gone, Err(Error::PeerGone { peer_id }) if peer_id == p),
        "{gone:?}"
    );
    // The guest's slot went back as the function returned; the host's pool
    // still holds the slot of the forged descriptor, left alone.
    let report = shmhub::admin::inspect_region(&region, None).unwrap();
    let used: Vec<u32> = report.pools.iter().map(|pool| pool.usage.used).collect();
    assert_eq!(used[..2], [1, 0]);
}

// shm[verify shm.recv.borrowed]
// shm[verify shm.host.fair]
#[test]
fn the_hosts_borrowed_receive_from_any_guest_names_the_sender_and_takes_turns() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let region = host.region();
    let mut first = ShmGuest::attach(region.clone()).unwrap();
    let mut second = ShmGuest::attach(region.clone()).unwrap();
    let (p1, p2) = (first.peer_id(), second.peer_id());
    for i in 0..2u8 {
        first.send(data(u64::from(i), &[1; 700])).unwrap();
        second.send(data(u64::from(i), &[2; 700])).unwrap();
    }
    let pool_used = |p: PeerId| {
        shmhub::admin::inspect_region(&region, None).unwrap().pools[usize::from(p)]
            .usage
            .used
    };
    let mut got = Vec::new();
    for _ in 0..4 {
        let one = host.any_receiver().recv_with(Duration::ZERO, |from, r| {
            // The slot is still the receiver's while it is lent.
            let held = pool_used(from);
            (from, r.desc().id, r.payload()[0], r.payload().len(), held)
        });
        got.push(one.unwrap().unwrap());
    }
    // One message from each guest in turn, each slot lent while `read` ran.
    assert_eq!(
        got,
        [
            (p1, 0, 1, 700, 2),
            (p2, 0, 2, 700, 2),
            (p1, 1, 1, 700, 1),
            (p2, 1, 2, 700, 1)
        ]
    );
    assert_eq!((pool_used(p1), pool_used(p2)), (0, 0));
    let mut called = false;
    let none = host
        .any_receiver()
        .recv_with(Duration::from_millis(20), |_, _| called = true);
    assert_eq!((none.unwrap(), called), (None, false));

    // A message sent while the host waits wakes it.
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        second.send(data(9, b"late")).unwrap();
        second
    });
    let late = host
        .any_receiver()
        .recv_with(Duration::from_secs(10), |from, r| {
            (from, r.payload().to_vec())
        });
    assert_eq!(late.unwrap(), Some((p2, b"late".to_vec())));
    drop(sender.join().unwrap());
}

/// Forges the slot generation in the descriptor at `position` of the host's
/// ring to guest `p` (counting from the ring's first entry).
fn forge_generation(
    region: &shmhub::Region,
    layout: &shmhub::SegmentLayout,
    p: PeerId,
    position: u64,
) {
    let entry = layout.host_to_guest_ring(p) + shmhub::format::RING_HEADER_SIZE + 64 * position;
    region.write(entry + 24, &[0x77, 0, 0, 0]).unwrap();
}

/// Slots in use in the host's pool, as inspection reads them.
fn host_slots_used(region: &shmhub::Region) -> u32 {
    shmhub::admin::inspect_region(region, None).unwrap().pools[0]
        .usage
        .used
}

// shm[verify shm.pool.batch-free]
#[test]
fn a_batch_frees_the_slots_dropped_in_its_handler_when_it_returns() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let region = host.region();
    let mut guest = ShmGuest::attach(region.clone()).unwrap();
    let p = guest.peer_id();
    for i in 0..6u8 {
        host.try_send(p, data(u64::from(i), &[i; 200])).unwrap();
    }
    // A message taken in an earlier receive, dropped inside the handler.
    let earlier = guest
        .receiver()
        .recv(Some(Duration::ZERO))
        .unwrap()
        .unwrap();
    let mut earlier = Some(earlier);
    let mut kept = Vec::new();
    let mut used_in_handler = Vec::new();
    let taken = guest
        .receiver()
        .recv_batch(8, Some(Duration::ZERO), |r| {
            match r.desc().id {
                // Kept past the batch: freed only when it is dropped.
                1 => kept.push(r),
                // Dropped on another thread: freed at once.
                2 => std::thread::spawn(move || drop(r)).join().unwrap(),
                _ => drop(r),
            }
            drop(earlier.take());
            used_in_handler.push(host_slots_used(&region));
        })
        .unwrap();
    assert_eq!(taken, 5);
    // The first handler call keeps message 1 and drops the earlier message
    // 0 (put off: 6 in use), message 2 goes at once (5), and the drops of
    // 3 to 5 are put off too.
    assert_eq!(used_in_handler, [6, 5, 5, 5, 5]);
    // As the batch returns, messages 0, 3, 4 and 5 go back together; the
    // kept one stays until it is dropped.
    assert_eq!(host_slots_used(&region), 1);
    assert_eq!(kept[0].payload(), &[1u8; 200][..]);
    drop(kept);
    assert_eq!(host_slots_used(&region), 0);

    // A batch on another segment inside the handler keeps its own list:
    // its slots go back as it returns, this batch's as this one does.
    let mut other_host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let other_region = other_host.region();
    let mut other_guest = ShmGuest::attach(other_region.clone()).unwrap();
    for i in 0..3u8 {
        host.try_send(p, data(u64::from(i), &[i; 200])).unwrap();
        other_host
            .try_send(other_guest.peer_id(), data(u64::from(i), &[i; 200]))
            .unwrap();
    }
    let mut seen = Vec::new();
    guest
        .receiver()
        .recv_batch(8, Some(Duration::ZERO), |r| {
            drop(r);
            if seen.is_empty() {
                other_guest
                    .receiver()
                    .recv_batch(8, Some(Duration::ZERO), drop)
                    .unwrap();
            }
            seen.push((host_slots_used(&region), host_slots_used(&other_region)));
        })
        .unwrap();
    assert_eq!(seen, [(3, 0), (3, 0), (3, 0)]);
    assert_eq!(host_slots_used(&region), 0);

    // A lone message is freed as it is dropped, as by an in-place receive.
    host.try_send(p, data(9, &[9u8; 200])).unwrap();
    let mut used = None;
    guest
        .receiver()
        .recv_batch(8, Some(Duration::ZERO), |r| {
            drop(r);
            used = Some(host_slots_used(&region));
        })
        .unwrap();
    assert_eq!(used, Some(0));
}

// ---------------------------------------------------------------------------
// Waiting and non-waiting calls (std::sync::mpsc conventions)
// ---------------------------------------------------------------------------

// shm[verify shm.send.backpressure]
#[test]
fn send_waits_for_room_and_slots_until_the_receiver_drains() {
    let config = SegmentConfig {
        ring_capacity: 2,
        slots_per_pool: 2,
        slot_size: 256,
        max_payload: 256,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    let peer = guest.peer_id();
    const COUNT: u64 = 40;
    let receiver = std::thread::spawn(move || {
        let mut ids = Vec::new();
        while ids.len() < COUNT as usize {
            std::thread::sleep(Duration::from_millis(1));
            match guest.recv_timeout(Duration::from_secs(10)).unwrap() {
                Some(frame) => ids.push((frame.desc.id, frame.payload().len())),
                None => panic!("nothing arrived within 10 s"),
            }
        }
        ids
    });
    // Every other message needs a slot: with two slots and a ring of two,
    // the sender waits for room or a slot most of the time.
    for id in 0..COUNT {
        let len = if id % 2 == 0 { 200 } else { 3 };
        host.send(peer, data(id, &vec![id as u8; len])).unwrap();
    }
    let got = receiver.join().unwrap();
    let want: Vec<(u64, usize)> = (0..COUNT)
        .map(|id| (id, if id % 2 == 0 { 200 } else { 3 }))
        .collect();
    assert_eq!(got, want);
    let report = shmhub::admin::inspect_region(&host.region(), None).unwrap();
    assert_eq!(report.pools[0].usage.used, 0);
}

// shm[verify shm.send.backpressure]
// shm[verify shm.host.goodbye]
#[test]
fn a_guest_waiting_to_send_is_told_when_the_host_says_goodbye() {
    let config = SegmentConfig {
        ring_capacity: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    guest.try_send(data(1, b"a")).unwrap();
    guest.try_send(data(2, b"b")).unwrap();
    assert!(matches!(
        guest.try_send(data(3, b"c")),
        Err(Error::RingFull { .. })
    ));
    let leaver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        host.shutdown().unwrap();
        host
    });
    let outcome = guest.send(data(3, b"c"));
    let host = leaver.join().unwrap();
    assert!(matches!(outcome, Err(Error::HostGone)), "{outcome:?}");
    drop(host);
}

#[test]
fn the_host_waits_for_a_message_from_any_guest_and_from_one() {
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let mut first = ShmGuest::attach(host.region()).unwrap();
    let mut second = ShmGuest::attach(host.region()).unwrap();
    let (p1, p2) = (first.peer_id(), second.peer_id());
    let senders = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        second.send(data(2, b"from the second")).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        first.send(data(1, b"from the first")).unwrap();
        first.detach().unwrap();
        second
    });
    let (from, frame) = host.recv().unwrap();
    assert_eq!((from, frame.payload()), (p2, &b"from the second"[..]));
    let frame = host
        .receiver(p1)
        .unwrap()
        .recv(None)
        .map(|r| r.unwrap().into_frame())
        .unwrap();
    assert_eq!(frame.payload(), b"from the first");
    // The first guest has left and everything it sent was read.
    assert!(
        matches!(host.receiver(p1).unwrap().recv(None).map(|r| r.unwrap().into_frame()), Err(Error::PeerGone { peer_id }) if peer_id == p1)
    );
    let _second = senders.join().unwrap();
    // A plain Duration is a timeout as well as an Option of one.
    assert!(
        host.recv_timeout(Duration::from_millis(10))
            .unwrap()
            .is_none()
    );
    assert!(host.try_recv().unwrap().is_none());
}

// ---------------------------------------------------------------------------
// The host's slots, shared fairly
// ---------------------------------------------------------------------------

// A guest that stops receiving holds at most its share of the host's
// slots; the host's sends to the others go on.
// shm[verify shm.pool.share]
#[test]
fn a_stalled_guest_holds_only_its_share_and_the_others_go_on() {
    let config = SegmentConfig {
        slots_per_pool: 8,
        slot_size: 256,
        max_payload: 256,
        ring_capacity: 64,
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let stalled = ShmGuest::attach(host.region()).unwrap();
    let mut busy = ShmGuest::attach(host.region()).unwrap();
    let (p1, p2) = (stalled.peer_id(), busy.peer_id());
    // Two entries in use: a fair share of 8 / 2.
    for i in 0..4 {
        host.try_send(p1, data(i, &[1u8; 200])).unwrap();
    }
    match host.try_send(p1, data(4, &[1u8; 200])) {
        Err(e @ Error::ShareExhausted { peer_id, share: 4 }) if peer_id == p1 => {
            assert!(e.is_retryable());
            assert!(
                e.to_string()
                    .contains("holds its share of the host's slots (4)"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // With time to wait, it waits for the stalled guest, then says so.
    let late = host.send_timeout(p1, data(4, &[1u8; 200]), Duration::from_millis(30));
    assert!(
        matches!(late, Err(Error::ShareExhausted { .. })),
        "{late:?}"
    );
    // Inline messages need no slot: they still go.
    host.try_send(p1, data(5, b"small")).unwrap();

    const COUNT: u64 = 10_000;
    let receiver = std::thread::spawn(move || {
        for i in 0..COUNT {
            let frame = busy.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
            assert_eq!((frame.desc.id, frame.payload().len()), (i, 200));
        }
        busy
    });
    for i in 0..COUNT {
        host.send(p2, data(i, &[2u8; 200])).unwrap();
    }
    let _busy = receiver.join().unwrap();
    let report = shmhub::admin::inspect_region(&host.region(), None).unwrap();
    assert_eq!(report.host_slot_share, Some(4));
    let held: Vec<u32> = report
        .peers
        .iter()
        .map(|p| p.entry.host_slots_held)
        .collect();
    assert_eq!(held, [4, 0], "the stalled guest keeps its share, no more");
    assert_eq!(report.pools[0].usage.used, 4);
    drop(stalled);
    let report = shmhub::admin::inspect_region(&host.region(), None).unwrap();
    assert_eq!(report.pools[0].usage.used, 0, "its detach gave them back");
    assert_eq!(report.peers[0].entry.host_slots_held, 0);
}

// A guest's own pool serves only its sends: one that cannot send (the
// host reads nobody's messages from it) takes nothing from another.
// shm[verify shm.pool.share]
#[test]
fn a_guest_whose_pool_is_full_takes_nothing_from_another() {
    let config = SegmentConfig {
        slots_per_pool: 2,
        slot_size: 256,
        max_payload: 256,
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let mut full = ShmGuest::attach(host.region()).unwrap();
    let mut other = ShmGuest::attach(host.region()).unwrap();
    full.try_send(data(1, &[1u8; 100])).unwrap();
    full.try_send(data(2, &[1u8; 100])).unwrap();
    assert!(matches!(
        full.try_send(data(3, &[1u8; 100])),
        Err(Error::PoolExhausted { .. })
    ));
    for i in 0..100 {
        other.try_send(data(i, &[2u8; 100])).unwrap();
        assert_eq!(
            host.try_recv_from(other.peer_id())
                .unwrap()
                .unwrap()
                .desc
                .id,
            i
        );
    }
}

// A fixed share, recorded in the header at creation.
// shm[verify shm.pool.share]
#[test]
fn a_fixed_share_is_recorded_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share.shm");
    let config = SegmentConfig {
        slots_per_pool: 8,
        slot_size: 256,
        max_payload: 256,
        ..SegmentConfig::default()
    };
    let too_many = shmhub::CreateOptions {
        host_slots_per_guest: 9,
        ..shmhub::CreateOptions::default()
    };
    assert!(matches!(
        ShmHost::create_with(&path, config, too_many),
        Err(Error::Layout(_))
    ));
    assert!(!path.exists());
    let options = shmhub::CreateOptions {
        host_slots_per_guest: 2,
        ..shmhub::CreateOptions::default()
    };
    let mut host = ShmHost::create_with(&path, config, options).unwrap();
    let guest = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(host.status().header().unwrap().host_slots_per_guest, 2);
    host.try_send(guest.peer_id(), data(1, &[0u8; 100]))
        .unwrap();
    host.try_send(guest.peer_id(), data(2, &[0u8; 100]))
        .unwrap();
    assert!(matches!(
        host.try_send(guest.peer_id(), data(3, &[0u8; 100])),
        Err(Error::ShareExhausted { share: 2, .. })
    ));
    assert_eq!(
        shmhub::admin::inspect_path(&path).unwrap().host_slot_share,
        Some(2)
    );
}

// ---------------------------------------------------------------------------
// What "empty" means, the host's doorbell, and counters that wrap
// ---------------------------------------------------------------------------

// Judged by its indices, a ring is empty when they are equal or when the
// consumer is up to a capacity ahead of the published tail; any other
// pair than a fill of 1..=capacity is inconsistent, never empty.
// shm[verify shm.ring.empty]
#[test]
fn a_ring_is_empty_by_its_indices_when_the_head_has_reached_the_tail_or_passed_it() {
    use shmhub::admin::RingState;
    let ring = |head: u32, tail: u32| RingState {
        head,
        tail,
        capacity: 4,
    };
    for (head, tail, len) in [
        (0, 0, Some(0)),
        (7, 7, Some(0)),
        (5, 3, Some(0)),
        (7, 3, Some(0)),
        (3, 4, Some(1)),
        (3, 7, Some(4)),
        (u32::MAX, 1, Some(2)),
        (1, u32::MAX, Some(0)),
        (3, 8, None),
        (8, 3, None),
    ] {
        assert_eq!(ring(head, tail).len(), len, "head {head}, tail {tail}");
        assert_eq!(ring(head, tail).is_empty(), len == Some(0));
    }
}

// A guest leaving judges its outbound ring by its indices: a host that
// took every message, even one whose tail the guest had not yet published
// (the consumer ahead of the tail), leaves it Empty; a message left makes
// it Goodbye, and the host's receive that takes that last message frees
// it (issue 32, item 2).
// shm[verify shm.ring.empty]
// shm[verify shm.peer.detach]
#[test]
fn a_guest_leaves_empty_when_the_host_took_everything_and_goodbye_otherwise() {
    use std::sync::atomic::Ordering;
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 4,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let region = host.region();
    let tail = host.layout().guest_to_host_ring(id(1));

    let mut guest = ShmGuest::attach(host.region()).unwrap();
    guest.try_send(data(1, b"taken")).unwrap();
    assert_eq!(host.try_recv().unwrap().unwrap().1.desc.id, 1);
    // As if the guest had written the descriptor but not yet its tail.
    region.store_u32(tail, 0, Ordering::Release).unwrap();
    guest.detach().unwrap();
    assert_eq!(host.peers().unwrap()[0].state, shmhub::PeerState::Empty);
    // The late tail lands.
    region.store_u32(tail, 1, Ordering::Release).unwrap();

    let mut guest = ShmGuest::attach(host.region()).unwrap();
    guest.try_send(data(2, b"left for the host")).unwrap();
    guest.detach().unwrap();
    assert_eq!(host.peers().unwrap()[0].state, shmhub::PeerState::Goodbye);
    assert_eq!(host.try_recv().unwrap().unwrap().1.desc.id, 2);
    assert_eq!(host.peers().unwrap()[0].state, shmhub::PeerState::Empty);
    assert!(host.try_recv().unwrap().is_none());
}

// A guest rings the doorbell (one more, wrapping) after each publication
// and when it leaves, but only while the host says it waits; otherwise it
// writes nothing there.
// shm[verify shm.host.doorbell]
#[test]
fn the_doorbell_moves_by_one_per_publication_only_while_the_host_waits() {
    use std::sync::atomic::Ordering;
    const DOORBELL: u64 = 192;
    const HOST_WAITING: u64 = 196;
    let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
    let region = host.region();
    let doorbell = || region.load_u32(DOORBELL, Ordering::Acquire).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();

    guest.try_send(data(1, b"awake")).unwrap();
    assert_eq!(doorbell(), 0, "nobody waits: nothing written");

    region.store_u32(HOST_WAITING, 1, Ordering::SeqCst).unwrap();
    guest.try_send(data(2, b"one")).unwrap();
    assert_eq!(doorbell(), 1);
    // A batch published in one round rings once.
    let sent = guest
        .sender()
        .send_batch(
            &[data(3, b"a"), data(4, &[9u8; 100])],
            shmhub::Timeout::NoWait,
        )
        .unwrap();
    assert_eq!((sent, doorbell()), (2, 2));
    region
        .store_u32(DOORBELL, u32::MAX, Ordering::Release)
        .unwrap();
    guest.try_send(data(5, b"wraps")).unwrap();
    assert_eq!(doorbell(), 0, "the doorbell wraps");
    guest.detach().unwrap();
    assert_eq!(doorbell(), 1, "leaving rings it too");

    region.store_u32(HOST_WAITING, 0, Ordering::SeqCst).unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    guest.try_send(data(6, b"awake again")).unwrap();
    guest.detach().unwrap();
    assert_eq!(doorbell(), 1);
    let mut ids = Vec::new();
    while let Some((_, frame)) = host.try_recv().unwrap() {
        ids.push(frame.desc.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
}

// A slot's generation wraps: the allocation after generation u32::MAX
// gets 0, an ordinary generation the descriptor repeats and the receiver
// checks; the next gets 1. Both directions.
// shm[verify shm.wrap]
#[test]
fn slot_generations_wrap_from_the_largest_to_zero() {
    use std::sync::atomic::Ordering;
    let config = SegmentConfig {
        max_guests: 1,
        slots_per_pool: 1,
        slot_size: 64,
        max_payload: 64,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create_heap(config).unwrap();
    let region = host.region();
    let layout = *host.layout();
    let state = |pool: Party| layout.pool(pool) + layout.pool_meta_offset;
    let generation = |pool: Party| region.load_u64(state(pool), Ordering::Acquire).unwrap() as u32;
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    for pool in [Party::Host, guest_party(1)] {
        // A free slot (no holder) at the last generation.
        region
            .store_u64(state(pool), u64::from(u32::MAX), Ordering::Release)
            .unwrap();
    }
    for (round, expected) in [(0u8, 0u32), (1, 1)] {
        let payload = [round; 40];
        host.try_send(1, data(u64::from(round), &payload)).unwrap();
        assert_eq!(generation(Party::Host), expected);
        let received = guest.try_recv().unwrap().unwrap();
        assert_eq!(received.desc.slot_generation, expected);
        assert_eq!(received.payload(), payload);

        guest.try_send(data(u64::from(round), &payload)).unwrap();
        assert_eq!(generation(guest_party(1)), expected);
        let (_, received) = host.try_recv().unwrap().unwrap();
        assert_eq!(received.desc.slot_generation, expected);
        assert_eq!(received.payload(), payload);
    }
    assert_eq!(host.peers().unwrap()[0].host_slots_held, 0);
}

// A guest is named 1..=max_guests; 0 names nobody (the host has no id),
// and a call that takes a guest refuses it as it refuses an id past the
// table, with the number it was given.
#[test]
fn peer_id_0_is_refused_as_invalid() {
    let mut host = ShmHost::create_heap(SegmentConfig {
        max_guests: 4,
        ..SegmentConfig::default()
    })
    .unwrap();
    let mut guest = ShmGuest::attach(host.region()).unwrap();
    assert_eq!(guest.peer_id(), 1);
    for wrong in [0u8, 5] {
        let refused = |e: Error| {
            matches!(
                e,
                Error::InvalidPeerId { peer_id, max_guests: 4 } if peer_id == wrong
            )
        };
        let frame = data(1, b"to nobody");
        assert!(refused(host.send(wrong, &frame).unwrap_err()));
        assert!(refused(host.try_recv_from(wrong).unwrap_err()));
        assert!(refused(host.status().peer(wrong).unwrap_err()));
        assert!(refused(host.evict(wrong).unwrap_err()));
        assert!(refused(host.release_peer(wrong).unwrap_err()));
        assert!(refused(host.any_receiver().from_guest(wrong).unwrap_err()));
        assert!(refused(
            ShmGuest::attach_with_id(host.region(), wrong).unwrap_err()
        ));
    }
    // A checked id and its number are one guest.
    let id = shmhub::PeerId::new(1).unwrap();
    host.send(id, data(1, b"by id")).unwrap();
    host.send(1, data(2, b"by number")).unwrap();
    assert_eq!(guest.try_recv().unwrap().unwrap().payload(), b"by id");
    assert_eq!(guest.try_recv().unwrap().unwrap().payload(), b"by number");
    assert_eq!(host.layout().guest(0), None);
    assert_eq!(host.layout().guest(4), shmhub::PeerId::new(4));
    assert_eq!(host.layout().guest(5), None);
}
