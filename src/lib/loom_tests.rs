//! Model checks of the real ring and pool code with loom.
//!
//! Built only with `RUSTFLAGS="--cfg loom"` (and `cfg(test)`); run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```
//!
//! Under `cfg(loom)` a [`Region`] keeps its memory as loom atomics and
//! cells (see `region.rs`), the atomics it hands out model `SeqCst` with
//! fences (see `sync.rs`), and `sys::futex_wait` / `futex_wake_all` are a
//! model of the futex in which a sleeper only wakes when woken. So the
//! `Ring` and `Pool` below are the production code, unchanged; loom
//! explores their interleavings and the values their loads may return, and
//! reports:
//!
//! - a failed assertion of these tests (lost, duplicated, reordered or
//!   torn descriptors; a slot owned twice; a wrong generation);
//! - a byte copy racing with another (for instance a producer rewriting a
//!   descriptor the consumer is copying out, or two owners of one slot
//!   writing its payload): loom's causality check on the region's cells;
//! - a deadlock, which with the futex model means a lost wake-up: a side
//!   asleep whose wake the other side decided not to send.
//!
//! The models are kept small (rings of 2 descriptors, pools of 1 or 2
//! slots, 2 to 4 messages). `LOOM_MAX_PREEMPTIONS` overrides the
//! preemption bound that some of them set to keep the run short.

use std::sync::atomic::Ordering;

use loom::thread;

use crate::desc::DESC_SIZE;
use crate::layout::{HEADER_SIZE, PEER_ENTRY_SIZE, RING_HEADER_SIZE, SegmentConfig, SegmentLayout};
use crate::party::{Party, PeerId, PeerState, id};
use crate::peer::{Peer, Presence, Publication};
use crate::pool::{Gate, Pool, SlotRef};
use crate::ready::{Inbox, Mark, Picker};
use crate::region::{HeapRegion, Region};
use crate::ring::{Ring, RingState, field};
use crate::share::{HandedSlots, HostShare};
use crate::wait::{Deadline, WaitStrategy, Waiting};

/// Runs `f` under loom with `preemptions` as the default preemption bound
/// (`None`: unbounded, an exhaustive check).
fn check(preemptions: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    builder.check(f);
}

/// Runs `body` in a new thread with its own handle to `region`, as a
/// second process mapping the same memory would.
fn spawn_on<T: 'static>(
    region: &Region,
    body: impl FnOnce(Region) -> T + 'static,
) -> thread::JoinHandle<T> {
    let region = region.clone();
    thread::spawn(move || body(region))
}

// ---------------------------------------------------------------- rings

const CAPACITY: u32 = 2;

fn ring_region() -> Region {
    let len = RING_HEADER_SIZE + u64::from(CAPACITY) * DESC_SIZE as u64;
    HeapRegion::new_zeroed(len as usize).unwrap().region()
}

/// Descriptor `n`: every byte differs from the same byte of every other
/// descriptor of a test, so a stale or torn word cannot go unnoticed.
fn desc(n: u8) -> [u8; DESC_SIZE] {
    let mut d: [u8; DESC_SIZE] =
        std::array::from_fn(|i| n.wrapping_mul(37).wrapping_add(i as u8 + 1));
    // Bit 15 of the flags (top bit of byte 3) belongs to the ring.
    d[3] &= 0x7F;
    d
}

/// Producer: pushes `batches` in order, retrying (after a yield) while the
/// ring lacks room.
fn produce(ring: &Ring, batches: &[Vec<[u8; DESC_SIZE]>]) {
    let mut cached_head = 0;
    for batch in batches {
        while !ring.push_batch(&mut cached_head, batch).unwrap() {
            thread::yield_now();
        }
    }
}

/// Consumer: pops (up to `batch` at a time, yielding when there is
/// nothing) until `count` descriptors have arrived.
fn consume(ring: &Ring, count: usize, batch: usize) -> Vec<[u8; DESC_SIZE]> {
    let mut got = Vec::new();
    let mut out = vec![[0u8; DESC_SIZE]; batch];
    while got.len() < count {
        let n = ring.pop_batch(&mut out);
        if n == 0 {
            thread::yield_now();
        }
        got.extend_from_slice(&out[..n]);
    }
    got
}

/// One producer thread, the consumer on the main thread: every descriptor
/// arrives once, in order and intact, and the ring ends empty and
/// consistent. A descriptor overwritten before it was read would show up
/// as a wrong or missing descriptor, or as a race on its bytes.
fn ring_transfer(batches: Vec<Vec<[u8; DESC_SIZE]>>, pop_batch: usize) {
    let region = ring_region();
    let expected: Vec<_> = batches.iter().flatten().copied().collect();
    let producer = spawn_on(&region, move |region| {
        produce(&Ring::open(&region, 0, CAPACITY).unwrap(), &batches)
    });
    let ring = Ring::open(&region, 0, CAPACITY).unwrap();
    let got = consume(&ring, expected.len(), pop_batch);
    producer.join().unwrap();
    assert_eq!(got, expected);
    assert_eq!(ring.pop(), None);
    let n = expected.len() as u32;
    assert_eq!(
        ring.state(),
        RingState {
            head: n,
            tail: n,
            capacity: CAPACITY
        }
    );
    assert!(ring.is_empty_now());
}

// shm[verify shm.ring.spsc]
#[test]
fn loom_ring_delivers_in_order_intact_once() {
    check(None, || {
        ring_transfer(vec![vec![desc(0)], vec![desc(1)]], 1)
    });
}

// shm[verify shm.ring.spsc]
#[test]
fn loom_ring_phases_survive_a_lap() {
    // Three descriptors through two places: the third is written on the
    // second lap, with the other phase, over the first one.
    check(None, || {
        ring_transfer(vec![vec![desc(0)], vec![desc(1)], vec![desc(2)]], 1)
    });
}

// shm[verify shm.ring.spsc]
#[test]
fn loom_ring_batches_cross_a_lap() {
    // A batch that fills the ring, then one that needs all of it again,
    // taken in batches of two.
    check(None, || {
        ring_transfer(vec![vec![desc(0), desc(1)], vec![desc(2), desc(3)]], 2)
    });
}

// shm[verify shm.ring.spsc]
#[test]
fn loom_ring_refuses_to_overwrite_unread_descriptors() {
    // The producer tries to push a third descriptor while the consumer
    // takes the first: the push must fail unless the first was taken, and
    // the first must arrive intact either way.
    check(None, || {
        let region = ring_region();
        let producer = spawn_on(&region, |region| {
            let ring = Ring::open(&region, 0, CAPACITY).unwrap();
            let mut cached_head = 0;
            assert!(
                ring.push_batch(&mut cached_head, &[desc(0), desc(1)])
                    .unwrap()
            );
            ring.push_batch(&mut cached_head, &[desc(2)]).unwrap()
        });
        let ring = Ring::open(&region, 0, CAPACITY).unwrap();
        let first = consume(&ring, 1, 1);
        let pushed = producer.join().unwrap();
        assert_eq!(first, vec![desc(0)]);
        let rest = consume(&ring, if pushed { 2 } else { 1 }, 2);
        let expected: &[_] = if pushed {
            &[desc(1), desc(2)]
        } else {
            &[desc(1)]
        };
        assert_eq!(rest, expected);
        assert_eq!(ring.pop(), None);
    });
}

/// A blocking wait without a deadline, whose stop check yields.
fn blocking(stop: &mut dyn FnMut() -> crate::error::Result<()>) -> Waiting<'_> {
    Waiting {
        strategy: WaitStrategy::Block,
        deadline: Deadline::after(None),
        stop,
    }
}

/// The `stop` callback of the blocking waits: it is called before every
/// sleep, and yields. Loom never preempts a thread that neither yields nor
/// blocks, and a waiter may legitimately loop without sleeping: a consumer
/// that has already taken a descriptor whose tail the producer has not
/// published yet sees a tail different from its head, so `wait_for_data`
/// re-checks at once instead of sleeping, until the producer (which the OS
/// would run meanwhile) publishes.
fn yield_then_go_on() -> crate::error::Result<()> {
    thread::yield_now();
    Ok(())
}

/// Consumer: takes `count` descriptors one at a time, waiting (`Block`
/// strategy, no deadline) with the real waits in turn: `wait_to_take`,
/// whose looks take the descriptor themselves (as `Receiver::recv` waits),
/// and `wait_for_data`, after which the descriptor is popped (as
/// `recv_batch` waits).
fn consume_blocking(ring: &Ring, count: usize) -> Vec<[u8; DESC_SIZE]> {
    let mut got = Vec::new();
    while got.len() < count {
        let mut stop = yield_then_go_on;
        let mut waiting = blocking(&mut stop);
        if got.len() % 2 == 0 {
            let taken = ring.wait_to_take(&mut waiting, || Ok(ring.pop())).unwrap();
            got.push(taken.expect("a wait without a deadline ended empty"));
            continue;
        }
        match ring.pop() {
            Some(d) => got.push(d),
            None => {
                assert!(ring.wait_for_data(&mut waiting).unwrap());
            }
        }
    }
    got
}

/// Whether the producer of [`ring_handshake`] sleeps for room, or pushes
/// `count` descriptors that the ring always has room for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Producer {
    Sleeps,
    NeverFull,
}

/// The real blocking waits: the consumer sleeps in `wait_to_take` or
/// `wait_for_data` and, where `producer` says it sleeps, the producer in
/// `wait_for_space` (as `Segment::wait_for_room` does), both with
/// `WaitStrategy::Block` and no deadline, which go straight to the
/// flag-and-futex handshake without reading the clock. With the futex
/// model, a lost wake-up leaves a side asleep for ever and loom reports a
/// deadlock.
fn ring_handshake(count: u8, producer: Producer) {
    let region = ring_region();
    let producing = spawn_on(&region, move |region| {
        let ring = Ring::open(&region, 0, CAPACITY).unwrap();
        let mut cached_head = 0;
        for n in 0..count {
            while producer == Producer::Sleeps && !ring.has_room(&mut cached_head, 1).unwrap() {
                let seen_head = cached_head;
                let mut stop = yield_then_go_on;
                assert!(
                    ring.wait_for_space(seen_head, &mut blocking(&mut stop))
                        .unwrap()
                );
            }
            assert!(ring.push_batch(&mut cached_head, &[desc(n)]).unwrap());
        }
    });
    let got = consume_blocking(
        &Ring::open(&region, 0, CAPACITY).unwrap(),
        usize::from(count),
    );
    producing.join().unwrap();
    assert_eq!(got, (0..count).map(desc).collect::<Vec<_>>());
    // Whoever slept put its flag down again.
    assert_eq!(
        region
            .load_u32(field::CONSUMER_WAITING, Ordering::Relaxed)
            .unwrap(),
        0
    );
    assert_eq!(
        region
            .load_u32(field::PRODUCER_WAITING, Ordering::Relaxed)
            .unwrap(),
        0
    );
    assert_eq!(
        region
            .load_u32(field::ROOM_SLEEPERS, Ordering::Relaxed)
            .unwrap(),
        0
    );
}

// shm[verify shm.ring.spsc]
#[test]
fn loom_ring_sleeping_consumer_is_always_woken() {
    check(None, || ring_handshake(2, Producer::NeverFull));
}

// shm[verify shm.ring.spsc]
// shm[verify shm.ring.room]
#[test]
fn loom_ring_sleeping_producer_and_consumer_are_always_woken() {
    // Three descriptors through two places: the producer has to wait for
    // space once, the consumer for data up to three times. The producer
    // asks for the whole ring (`Ring::room_batch` under loom): the
    // consumer's first take leaves it asleep, its second wakes it.
    check(Some(4), || ring_handshake(3, Producer::Sleeps));
}

/// With publications unfenced (release stores) and the barrier refused, a
/// sleeper that did not see its publisher fencing only naps, and its nap
/// ends at once; one that saw it fencing sleeps without the barrier, and
/// must be woken. The publisher starts unfenced, fences from the
/// publication that finds a sleeper and stops after a quiet one
/// (`FENCED_QUIET_RUN` is 1 under loom), so the models go through every
/// turn.
fn ring_handshake_unfenced(count: u8, producer: Producer) {
    crate::sys::model_unfenced_publications(true);
    ring_handshake(count, producer);
    crate::sys::model_unfenced_publications(false);
}

// shm[verify shm.ring.wake]
#[test]
fn loom_ring_consumer_sleeping_without_the_barrier_is_always_woken() {
    check(Some(3), || ring_handshake_unfenced(2, Producer::NeverFull));
}

// shm[verify shm.ring.wake]
// shm[verify shm.ring.room]
#[test]
fn loom_ring_both_sides_sleeping_without_the_barrier_are_always_woken() {
    check(Some(3), || ring_handshake_unfenced(3, Producer::Sleeps));
}

// ---------------------------------------------------------------- pools

/// A region holding only pool 0 of a segment with `slots` slots of 64
/// bytes: the offsets inside the pool are the real layout's, but the pool
/// starts at offset 0, so that loom tracks a few hundred bytes rather than
/// a whole segment.
fn pool_region(slots: u32) -> (Region, SegmentLayout) {
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: CAPACITY,
        slot_size: 64,
        slots_per_pool: slots,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    };
    let real = config.layout().unwrap();
    // The pool first, then the one guest's rings (whose control blocks
    // count the host's slots it holds).
    let layout = SegmentLayout {
        pools_offset: 0,
        rings_offset: real.pool_stride,
        total_size: real.pool_stride + real.ring_pair_stride,
        ..real
    };
    let region = HeapRegion::new_zeroed(layout.total_size as usize)
        .unwrap()
        .region();
    (region, layout)
}

/// Party number `n` (0: the host), as these models name the owners.
fn party(n: u8) -> Party {
    Party::from_number(n)
}

/// Owner `who` uses a slot it holds: writes its name into the payload and
/// reads it back. Two owners at once would race on these bytes (loom
/// reports it) or read each other's name.
fn use_slot(pool: &Pool, region: &Region, slot: SlotRef, who: u8) {
    let slot = slot.index;
    let at = pool.data_offset(slot);
    region.write(at, &[who; 8]).unwrap();
    let mut back = [0u8; 8];
    region.read(at, &mut back).unwrap();
    assert_eq!(back, [who; 8], "slot {slot} has two owners");
}

/// A pool of one slot (see [`pool_region`]), held by party 0.
fn one_slot_held() -> (Region, SegmentLayout, SlotRef) {
    let (region, layout) = pool_region(1);
    let slot = Pool::open(&region, &layout, Party::Host)
        .unwrap()
        .try_alloc(party(0), &mut 0)
        .unwrap();
    (region, layout, slot)
}

/// [`spawn_on`] with the thread's own view of the host's pool in
/// `region`, laid out as `layout` says.
fn spawn_on_pool<T: 'static>(
    region: &Region,
    layout: SegmentLayout,
    body: impl FnOnce(&Pool, &Region) -> T + 'static,
) -> thread::JoinHandle<T> {
    spawn_on(region, move |region| {
        body(&Pool::open(&region, &layout, Party::Host).unwrap(), &region)
    })
}

// shm[verify shm.pool.bitmap]
#[test]
fn loom_pool_allocations_are_exclusive_and_bump_generations() {
    // One slot, two threads allocating, using, and freeing it twice each
    // (when they get it): never two owners (their payload writes would
    // race); each allocation gets the next generation; the holder's free
    // succeeds. (A second free racing the other thread's reallocation is
    // `loom_pool_stale_free_racing_a_reallocation_frees_nothing`.)
    check(None, || {
        let (region, layout) = pool_region(1);
        let worker = move |region: Region, who: u8| {
            let pool = Pool::open(&region, &layout, Party::Host).unwrap();
            let mut generations = Vec::new();
            for _ in 0..2 {
                if let Some(slot) = pool.try_alloc(party(who), &mut 0) {
                    assert_eq!(slot.index, 0);
                    assert!(pool.validate(slot, party(who), 0, 64).is_ok());
                    use_slot(&pool, &region, slot, who);
                    assert!(pool.free(slot));
                    generations.push(slot.generation);
                }
            }
            generations
        };
        let other = spawn_on(&region, move |region| worker(region, 2));
        let mut generations = worker(region.clone(), 1);
        generations.extend(other.join().unwrap());
        generations.sort_unstable();
        let n = generations.len() as u32;
        assert!(
            n >= 2,
            "each thread finds the slot free at least once it is alone"
        );
        assert_eq!(generations, (1..=n).collect::<Vec<_>>());
        let pool = Pool::open(&region, &layout, Party::Host).unwrap();
        assert_eq!(pool.usage().used, 0);
        assert_eq!(
            pool.try_alloc(party(0), &mut 0),
            Some(SlotRef {
                index: 0,
                generation: n + 1
            })
        );
    });
}

// shm[verify shm.pool.bitmap]
#[test]
fn loom_pool_concurrent_allocations_get_distinct_slots() {
    // Two slots, two threads allocating at once: both succeed, with
    // different slots at generation 1, each held by its allocator; a third
    // allocation then finds nothing.
    check(None, || {
        let (region, layout) = pool_region(2);
        let other = spawn_on_pool(&region, layout, |pool, _| pool.try_alloc(party(2), &mut 0));
        let pool = Pool::open(&region, &layout, Party::Host).unwrap();
        let mine = pool.try_alloc(party(1), &mut 0).expect("a slot is free");
        let theirs = other.join().unwrap().expect("a slot is free");
        assert_ne!(mine.index, theirs.index);
        assert_eq!((mine.generation, theirs.generation), (1, 1));
        let valid = |slot, who| pool.validate(slot, party(who), 0, 64).is_ok();
        assert!(valid(mine, 1));
        assert!(valid(theirs, 2));
        assert!(!valid(theirs, 1));
        assert_eq!(pool.try_alloc(party(3), &mut 0), None);
    });
}

// shm[verify shm.pool.batch-free]
#[test]
fn loom_pool_batch_free_racing_an_allocator_hands_each_slot_out_once() {
    // Three slots: the receiver holds two and frees them in one batch while
    // the allocator (holding the third) allocates as slots come back. The
    // allocator gets only freed slots, each at its next generation, never
    // one still in use (the receiver writes its slots until the batch
    // free), and afterwards the pool accounts for every slot.
    check(None, || {
        let (region, layout) = pool_region(3);
        let pool = Pool::open(&region, &layout, Party::Host).unwrap();
        let held: Vec<SlotRef> = (0..2)
            .map(|_| pool.try_alloc(party(1), &mut 0).unwrap())
            .collect();
        let third = pool.try_alloc(party(2), &mut 0).unwrap().index;
        let allocator = spawn_on_pool(&region, layout, |pool, region| {
            let mut got = Vec::new();
            for _ in 0..2 {
                if let Some(slot) = pool.try_alloc(party(2), &mut 0) {
                    use_slot(pool, region, slot, 2);
                    got.push((slot.index, slot.generation));
                }
            }
            got
        });
        for &slot in &held {
            use_slot(&pool, &region, slot, 1);
        }
        assert_eq!(pool.free_many(&held), 2);
        let got = allocator.join().unwrap();
        for &(slot, generation) in &got {
            assert_ne!(slot, third, "the allocator's own slot was handed out again");
            assert_eq!(
                generation, 2,
                "slot {slot} came back at its next generation"
            );
        }
        assert_eq!(pool.usage().used, 1 + got.len() as u32);
    });
}

// shm[verify shm.pool.bitmap]
#[test]
fn loom_pool_racing_frees_of_one_allocation_free_it_once() {
    // Two frees of the same slot and generation at once (a holder and a
    // clean-up, say): exactly one succeeds, and the slot comes back once,
    // at the next generation.
    check(None, || {
        let (region, layout, slot) = one_slot_held();
        let pool = Pool::open(&region, &layout, Party::Host).unwrap();
        let other = spawn_on_pool(&region, layout, move |pool, _| pool.free(slot));
        let mine = pool.free(slot);
        let theirs = other.join().unwrap();
        assert!(
            mine ^ theirs,
            "freed {} times",
            u8::from(mine) + u8::from(theirs)
        );
        assert_eq!(pool.usage().used, 0);
        assert_eq!(
            pool.try_alloc(party(0), &mut 0),
            Some(slot.next_generation())
        );
        assert_eq!(pool.try_alloc(party(0), &mut 0), None);
    });
}

// shm[verify shm.pool.bitmap]
// shm[verify shm.recv.validate]
#[test]
fn loom_pool_send_validate_free_beside_another_allocation() {
    // The sender/receiver pattern on a pool of one slot: the sender (peer
    // 0) allocates, fills the payload, hands the slot to the receiver
    // (peer 1) and sends its index and generation through a real ring; the
    // receiver validates, reads and frees it. Meanwhile a third thread
    // allocates from the same pool, uses what it gets and frees it. The
    // receiver's validation must succeed, the payload must be the sender's,
    // and the slot is never owned twice. The sender waits for the slot in
    // the real `Pool::alloc` and the receiver for the descriptor in the
    // real `wait_for_data` (`Block`, no deadline), so the pool's
    // release-counter handshake is checked too: a lost wake is a deadlock.
    check(Some(4), || {
        let (pool_mem, layout) = pool_region(1);
        let ring_mem = ring_region();
        let sender = {
            let (pool_mem, ring_mem) = (pool_mem.clone(), ring_mem.clone());
            thread::spawn(move || {
                let pool = Pool::open(&pool_mem, &layout, Party::Host).unwrap();
                let mut stop = yield_then_go_on;
                let slot = pool
                    .alloc(Party::Host, &mut 0, &mut blocking(&mut stop), None)
                    .unwrap();
                pool_mem
                    .write(pool.data_offset(slot.index), b"payload!")
                    .unwrap();
                pool.set_holder(slot, party(1));
                let mut d = desc(0);
                d[4..8].copy_from_slice(&slot.index.to_le_bytes());
                d[8..12].copy_from_slice(&slot.generation.to_le_bytes());
                produce(&Ring::open(&ring_mem, 0, CAPACITY).unwrap(), &[vec![d]]);
                slot.generation
            })
        };
        let third = spawn_on_pool(&pool_mem, layout, |pool, pool_mem| {
            let slot = pool.try_alloc(party(0), &mut 0)?;
            use_slot(pool, pool_mem, slot, 3);
            assert!(pool.free(slot));
            Some(slot.generation)
        });
        let pool = Pool::open(&pool_mem, &layout, Party::Host).unwrap();
        let d = consume_blocking(&Ring::open(&ring_mem, 0, CAPACITY).unwrap(), 1)[0];
        let sent = SlotRef {
            index: u32::from_le_bytes(d[4..8].try_into().unwrap()),
            generation: u32::from_le_bytes(d[8..12].try_into().unwrap()),
        };
        let at = pool
            .validate(sent, party(1), 0, 8)
            .expect("a sent slot validates");
        let mut payload = [0u8; 8];
        pool_mem.read(at, &mut payload).unwrap();
        assert_eq!(&payload, b"payload!");
        assert!(pool.free(sent));
        assert!(
            pool.validate(sent, party(1), 0, 8).is_err(),
            "a freed slot does not validate"
        );
        assert_eq!(sender.join().unwrap(), sent.generation);
        if let Some(theirs) = third.join().unwrap() {
            assert_ne!(theirs, sent.generation);
        }
        assert_eq!(pool.usage().used, 0);
    });
}

// shm[verify shm.pool.bitmap]
#[test]
fn loom_pool_stale_free_racing_a_reallocation_frees_nothing() {
    // A holder frees its slot, then frees it again by mistake (or a
    // clean-up frees it with the generation it read earlier), while
    // another thread reallocates the slot. The second free must not free
    // the new allocation.
    check(None, || {
        let (region, layout, slot) = one_slot_held();
        let pool = Pool::open(&region, &layout, Party::Host).unwrap();
        let freer = spawn_on_pool(&region, layout, move |pool, _| {
            assert!(pool.free(slot));
            pool.free(slot)
        });
        let again = loop {
            match pool.try_alloc(party(1), &mut 0) {
                Some(found) => break found,
                None => thread::yield_now(),
            }
        };
        let double_freed = freer.join().unwrap();
        assert_eq!(again, slot.next_generation());
        assert!(
            !double_freed,
            "the second free of generation {} freed something",
            slot.generation
        );
        assert_eq!(pool.usage().used, 1, "the new allocation was freed");
        assert!(
            pool.validate(slot.next_generation(), party(1), 0, 1)
                .is_ok()
        );
    });
}

// shm[verify shm.pool.share]
#[test]
fn loom_a_receiver_at_its_share_wakes_the_waiting_sender_when_it_frees() {
    // Two free slots but a share of one for guest 1. The host hands guest 1
    // a slot, then asks for another for it: that allocation must wait (in
    // the real `Pool::alloc`, `Block`, no deadline) until guest 1 frees the
    // first, and the free's wake must reach it (a lost wake is a loom
    // deadlock). The count never exceeds the share.
    check(Some(3), || {
        let (pool_mem, layout) = pool_region(2);
        let pool = Pool::open(&pool_mem, &layout, Party::Host).unwrap();
        let limit = || Ok(1);
        let handed = std::cell::RefCell::new(
            HandedSlots::for_share(&layout, 1)
                .expect("a share of 1 in a pool of 2 can stop an allocation"),
        );
        let alloc = || {
            let mut handed = handed.borrow_mut();
            let mut share = HostShare::new(&pool, &layout, id(1), 1, &limit, &mut handed);
            let mut stop = yield_then_go_on;
            pool.alloc(
                Party::Host,
                &mut 0,
                &mut blocking(&mut stop),
                Some(&mut share as &mut dyn Gate),
            )
            .unwrap()
        };
        let first = alloc();
        pool.set_holder(first, party(1));
        handed.borrow_mut().push(first);
        let receiver = spawn_on_pool(&pool_mem, layout, move |pool, _| {
            assert!(pool.held(id(1)).unwrap() <= 1, "over its share");
            assert!(pool.free(first));
        });
        let second = alloc();
        assert_eq!(pool.held(id(1)).unwrap(), 0, "allocated while at the share");
        pool.set_holder(second, party(1));
        assert_eq!(pool.held(id(1)).unwrap(), 1);
        receiver.join().unwrap();
        assert_eq!(pool.held(id(1)).unwrap(), 1);
    });
}

// ---------------------------------------------------------------- peers

/// A region holding just one peer entry (guest 1's), at offset 0.
fn peer_region() -> (Region, SegmentLayout) {
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: CAPACITY,
        slot_size: 64,
        slots_per_pool: 1,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    };
    let layout = SegmentLayout {
        peer_table_offset: 0,
        total_size: PEER_ENTRY_SIZE,
        ..config.layout().unwrap()
    };
    let region = HeapRegion::new_zeroed(PEER_ENTRY_SIZE as usize)
        .unwrap()
        .region();
    (region, layout)
}

// shm[verify shm.peer.claim]
#[test]
fn loom_a_claimed_entry_is_never_seen_with_the_epoch_before_the_claim() {
    // A host that reserved guest 1's entry sends to it while the guest
    // claims it. The host looks at the entry when its send starts and
    // again before it publishes (`ShmHost::sending`, `Presence::check`).
    // Whatever it saw first, the second look must find the same guest:
    // the reservation or the guest that claimed it, one epoch later. With
    // the state and the epoch moved by two separate stores, a look between
    // them saw the entry Attached at the old epoch, and the next look took
    // the claim's epoch for another guest's (`PeerGone` from a send to a
    // guest that had just attached).
    check(None, || {
        let (region, layout) = peer_region();
        let peer = Peer::new(&region, &layout, id(1));
        assert!(
            peer.transition(PeerState::Empty, PeerState::Reserved)
                .unwrap()
        );
        let host = spawn_on(&region, move |region| {
            let peer = Peer::new(&region, &layout, id(1));
            let (state, epoch) = peer.state_and_epoch().unwrap();
            assert!(
                matches!(
                    (state, epoch),
                    (PeerState::Reserved, 0) | (PeerState::Attached, 1)
                ),
                "the entry was seen as {state:?} at epoch {epoch}"
            );
            // The look before publishing: the guest found, or the one
            // the reservation was for, must still be there.
            let word = peer.state_word().unwrap();
            Presence::new(&word, state, epoch)
                .check(Publication::Before)
                .expect("the guest that had just attached was taken for another");
        });
        assert_eq!(peer.claim(PeerState::Reserved).unwrap(), Some(1));
        host.join().unwrap();
        assert_eq!(peer.state_and_epoch().unwrap(), (PeerState::Attached, 1));
    });
}

// ---------------------------------------------------------------- readiness

/// Bytes of one ring of [`CAPACITY`] descriptors.
const RING_LEN: u64 = RING_HEADER_SIZE + CAPACITY as u64 * DESC_SIZE as u64;

/// A header's worth of bytes (the doorbell, the waiting flag and the
/// ready summary at their real offsets), then the guest-to-host rings of
/// `guests` guests: what the host's receive from any guest and the
/// guests' sends touch, and nothing more.
fn ready_region(guests: u8) -> Region {
    let len = HEADER_SIZE + u64::from(guests) * RING_LEN;
    HeapRegion::new_zeroed(len as usize).unwrap().region()
}

/// Guest `p`'s ring in a [`ready_region`].
fn ready_ring(region: &Region, p: PeerId) -> Ring {
    Ring::open(region, HEADER_SIZE + p.index() as u64 * RING_LEN, CAPACITY).unwrap()
}

/// Guest `p` sends `messages` one at a time as a guest's `Producer` does:
/// publishes, sets its bit, rings the doorbell if the host says it sleeps.
fn ready_guest(region: &Region, p: PeerId, messages: &[u8]) {
    let ring = ready_ring(region, p);
    let mark = Mark::new(region, p).unwrap();
    let mut cached_head = 0;
    for &n in messages {
        while !ring.push_batch(&mut cached_head, &[desc(n)]).unwrap() {
            thread::yield_now();
        }
        mark.set();
        crate::header::wake_host(region).unwrap();
    }
}

/// The rings of a [`ready_region`] as the host's receive sees them;
/// nobody leaves.
struct ModelInbox {
    rings: Vec<Ring>,
}

impl Inbox for ModelInbox {
    type Taken = (PeerId, [u8; DESC_SIZE]);

    fn take(&mut self, p: PeerId) -> crate::error::Result<Option<Self::Taken>> {
        Ok(self.rings[p.index()].pop().map(|d| (p, d)))
    }

    fn is_empty_now(&self, p: PeerId) -> bool {
        self.rings[p.index()].is_empty_now()
    }

    fn has_left(&self, _: PeerId) -> crate::error::Result<bool> {
        Ok(false)
    }

    fn finish_goodbye(&self, _: PeerId) -> crate::error::Result<()> {
        Ok(())
    }

    fn cut_off(&self) -> [u64; crate::ready::WORDS] {
        [0; crate::ready::WORDS]
    }

    fn has_guests(&self) -> crate::error::Result<bool> {
        Ok(true)
    }

    fn claimed_since_start(&self) -> crate::error::Result<bool> {
        Ok(true)
    }
}

/// Guests `1..=sends.len()` each send their messages (guest `p` those of
/// `sends[p - 1]`) while the host receives them all from any guest with
/// `receive`, which gets the picker and the inbox. Every message arrives
/// once, intact, in order per guest.
fn ready_transfer(
    sends: Vec<Vec<u8>>,
    picker: impl FnOnce(Picker) -> Picker,
    mut receive: impl FnMut(&mut Picker, &mut ModelInbox) -> (PeerId, [u8; DESC_SIZE]),
) {
    let guests = sends.len() as u8;
    let region = ready_region(guests);
    let threads: Vec<_> = PeerId::up_to(guests)
        .zip(sends.clone())
        .map(|(p, messages)| spawn_on(&region, move |region| ready_guest(&region, p, &messages)))
        .collect();
    let mut picker = picker(Picker::new(&region, usize::from(guests)).unwrap());
    let mut inbox = ModelInbox {
        rings: PeerId::up_to(guests)
            .map(|p| ready_ring(&region, p))
            .collect(),
    };
    let total: usize = sends.iter().map(Vec::len).sum();
    let mut got = vec![Vec::new(); sends.len()];
    for _ in 0..total {
        let (p, d) = receive(&mut picker, &mut inbox);
        got[p.index()].push(d);
    }
    for t in threads {
        t.join().unwrap();
    }
    let expected: Vec<Vec<_>> = sends
        .iter()
        .map(|m| m.iter().map(|&n| desc(n)).collect())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        region
            .load_u32(crate::header::field::HOST_WAITING, Ordering::Relaxed)
            .unwrap(),
        0
    );
}

// The race of the summary: a guest publishes and reads its bit as set
// while the host, having found the ring empty, clears it. The host then
// looks again, sequentially consistent, so one of the two sees the other:
// a host that only ever looks where the bits point (no sweep, no sleep,
// no scan) still gets every message. Guest 1's message makes guest 2 lose
// its place as the host's hot guest, so that the host clears guest 2's bit
// while guest 2 sends its second. A message left behind a cleared bit
// would leave the host looking for ever (loom: too many branches).
// shm[verify shm.host.ready]
#[test]
fn loom_ready_a_bit_cleared_as_its_guest_publishes_loses_nothing() {
    check(Some(4), || {
        ready_transfer(
            vec![vec![1], vec![2, 3]],
            Picker::without_sweeps,
            |picker, inbox| loop {
                if let Some(found) = picker.take_ready(inbox).unwrap() {
                    return found;
                }
                thread::yield_now();
            },
        );
    });
}

/// The host's receive of [`ready_transfer`] that sleeps on its doorbell
/// (`Block`, no deadline) until a message comes.
fn receive_asleep(picker: &mut Picker, inbox: &mut ModelInbox) -> (PeerId, [u8; DESC_SIZE]) {
    let mut forever = Deadline::after(None);
    picker
        .receive(inbox, WaitStrategy::Block, &mut forever)
        .unwrap()
        .expect("a wait without a deadline ended empty")
}

// The host's sleep on its doorbell: it announces itself, re-derives every
// bit from the rings, and sleeps only if none holds anything; a guest
// that publishes after the announcement rings the doorbell. A lost
// wake-up leaves the host asleep for ever (loom: a deadlock).
// shm[verify shm.host.ready]
// shm[verify shm.host.doorbell]
#[test]
fn loom_ready_a_sleeping_host_is_always_woken() {
    check(Some(4), || {
        ready_transfer(vec![vec![1, 2]], |picker| picker, receive_asleep);
    });
}

// Two guests at once, the host sleeping between messages: each sleep
// re-derives the bits and clears the hot guest's, so bits are cleared as
// both guests publish.
// shm[verify shm.host.ready]
#[test]
fn loom_ready_two_guests_and_a_sleeping_host() {
    check(Some(3), || {
        ready_transfer(vec![vec![1], vec![2, 3]], |picker| picker, receive_asleep);
    });
}
