//! A deterministic corruption corpus: a valid segment, mutated in every way
//! the issue lists, fed to the library and to the `shmhub` command.
//!
//! The base segment is built once per test: a host creates it in a
//! temporary directory, guests attach, messages are queued both ways inline
//! and in slots (some rings past their first lap, one message in the second
//! bitmap word of a pool), then the host persists it. Each mutation is
//! written to a fresh file and then:
//!
//! * the library (`inspect_path`, the read-only views `peek_path`,
//!   `inspect_slots` and `inspect_raw`, `ShmGuest::attach_path`,
//!   `ShmHost::open` with `try_recv`/`try_recv_from`/sends/`reclaim_dead`,
//!   `ShmGuest::resume` with `try_recv`, and the same on a `HeapRegion`
//!   copy) must return `Ok` or `Err`: never panic (each call runs under
//!   `catch_unwind`, naming the mutation and call that panicked), never
//!   crash the process, never hang (each mutation has a time bound). A
//!   refused open, attach or resume leaves the bytes unchanged; inspection
//!   and the views never change them, and `inspect_raw` dumps every file.
//! * the command (`inspect`, `inspect --json`, `peek`, `inspect --slots`,
//!   `inspect --raw`, `attach`, `recv --as host --timeout 0`, `recv --as 1
//!   --timeout 0`, `rm`), on a representative subset: exit 0, 1 or 3
//!   (never 101, never a signal), `error:` first on stderr when it fails
//!   (after a `warning:` line for each guest a receive cut off), the
//!   file's bytes unchanged when it refused it, and never any change
//!   from `inspect` or `peek`. `SHMHUB_CORPUS_FULL_CLI=1` runs the command
//!   on every mutation instead (about a minute more).
//!
//! Mutations: every header field set to 0, to the maximum of its width, to
//! its value plus and minus one and to seeded pseudo-random values; whole
//! headers rewritten consistently for other configurations (with the file
//! resized to match, or not); truncation and extension at many points; peer
//! states invalid, or valid with garbage pid, flags, epoch and times; ring
//! indices inconsistent or wrapping; queued and not-yet-published
//! descriptors corrupted field by field; pool bitmaps all ones and all
//! zeros; slot generations and holders changed; and seeded random byte and
//! word writes. Inputs that once crashed the fuzz target (`fuzz/`) are
//! replayed too.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use shmhub::format::header as hf;
use shmhub::format::peer::{self as pf, FLAG_HELD, FLAG_LOCKED};
use shmhub::format::pool as plf;
use shmhub::format::ring as rf;
use shmhub::format::{DESC_SIZE, FLAG_PHASE, FLAG_SLOT, RING_HEADER_SIZE, SLOT_META_SIZE};
use shmhub::{
    Frame, HeapRegion, MsgDesc, Party, SegmentConfig, SegmentLayout, ShmGuest, ShmHost, msg_type,
};
use support::Child;
use support::fixtures::{id, pool_owner};

/// The base segment: five guests (one of each state, and a free entry),
/// 8-entry rings, 66 slots of 128 bytes per pool (two bitmap words, the
/// second partial). About 56 KiB.
const CONFIG: SegmentConfig = SegmentConfig {
    max_guests: 5,
    ring_capacity: 8,
    slot_size: 128,
    slots_per_pool: 66,
    max_payload: 128,
    heartbeat_interval_ms: 0,
};

/// How long the library calls on one mutated file may take in all.
const LIB_BOUND: Duration = Duration::from_secs(20);
/// How long one command may run.
const CLI_BOUND: Duration = Duration::from_secs(20);
/// How many library calls a receive loop makes at most.
const MAX_RECEIVES: usize = 40;

/// Inputs that crashed the fuzz target, replayed as whole files (hex).
/// Empty: the fuzz runs recorded in `fuzz/README.md` found no crash.
const FUZZ_REGRESSIONS: &[(&str, &str)] = &[];

// ---------------------------------------------------------------------------
// Deterministic pseudo-random numbers
// ---------------------------------------------------------------------------

/// xorshift64: small, seeded, good enough to pick values and positions.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------
// The base segment
// ---------------------------------------------------------------------------

fn frame(id: u64, payload: &[u8]) -> Frame {
    Frame::new(MsgDesc::new(msg_type::DATA, id), payload.to_vec())
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(29).wrapping_add(i as u8))
        .collect()
}

/// Builds the base segment at `path` and returns its bytes.
///
/// * peer 1: Attached (scripted), messages queued both ways, inline and
///   in slots, one of them in slot 64 of the host's pool (second word);
/// * peer 2: Attached (scripted), both rings past their first lap (phase
///   0), messages queued both ways;
/// * peer 3: Goodbye, with messages to the host still queued;
/// * peer 4: Reserved;
/// * peer 5: Empty.
fn build_base(path: &Path) -> Vec<u8> {
    let mut host = ShmHost::create(path, CONFIG).expect("create base");
    let mut g1 = ShmGuest::attach_path(path).expect("attach 1");
    let mut g2 = ShmGuest::attach_path(path).expect("attach 2");
    let mut g3 = ShmGuest::attach_path(path).expect("attach 3");
    assert_eq!(
        (g1.peer_id().get(), g2.peer_id().get(), g3.peer_id().get()),
        (1, 2, 3)
    );
    assert_eq!(host.reserve_peer().expect("reserve"), 4);

    // Peer 2's rings go round more than once.
    for i in 0..11u64 {
        g2.try_send(frame(i, &payload(i as u8, 40)))
            .expect("g2 send");
        host.try_recv_from(2).expect("host recv").expect("queued");
        host.try_send(2, frame(i, &payload(i as u8, 8)))
            .expect("host send");
        g2.try_recv().expect("g2 recv").expect("queued");
    }

    // Host to peer 1: inline, a slot in the second bitmap word, a full slot.
    host.try_send(1, frame(100, b"host to one, inline"))
        .expect("send");
    let loans: Vec<_> = (0..64)
        .map(|_| host.loan(1, 100, None).expect("loan"))
        .collect();
    host.try_send(1, frame(101, &payload(1, 100)))
        .expect("send");
    drop(loans);
    host.try_send(1, frame(102, &payload(2, 128)))
        .expect("send");
    host.try_send(1, frame(103, b"")).expect("send");

    // Host to peer 2: a slot and an inline message.
    host.try_send(2, frame(200, &payload(3, 33))).expect("send");
    host.try_send(2, frame(201, b"to two")).expect("send");

    // Peers to the host.
    g1.try_send(frame(110, b"one to host")).expect("send");
    g1.try_send(frame(111, &payload(4, 64))).expect("send");
    g1.try_send(frame(112, &payload(5, 128))).expect("send");
    g2.try_send(frame(210, &payload(6, 90))).expect("send");
    g2.try_send(frame(211, b"two to host")).expect("send");
    g3.try_send(frame(310, &payload(7, 50))).expect("send");
    g3.try_send(frame(311, b"three")).expect("send");

    g1.release_to_script().expect("release 1");
    g2.release_to_script().expect("release 2");
    drop(g3); // detaches into Goodbye: its messages are still queued
    host.persist().expect("persist");
    let mut bytes = std::fs::read(path).expect("read base");
    // Times and the nonce differ from run to run; fix them, so that the
    // mutations derived from them are the same every run.
    let layout = CONFIG.layout().unwrap();
    put_u64(&mut bytes, hf::CREATED_UNIX_NS, 1_700_000_000_000_000_000);
    put_u64(&mut bytes, hf::NONCE, 0x1234_5678_9ABC_DEF1);
    put_u64(&mut bytes, hf::HOST_HEARTBEAT_NS, 1_000_000_000);
    for p in 1..=CONFIG.max_guests as u8 {
        let e = layout.peer_entry(id(p));
        if get_u64(&bytes, e + pf::HEARTBEAT_NS) != 0 {
            put_u64(&mut bytes, e + pf::HEARTBEAT_NS, 1_000_000_000);
        }
        if get_u64(&bytes, e + pf::CLAIMED_UNIX_NS) != 0 {
            put_u64(
                &mut bytes,
                e + pf::CLAIMED_UNIX_NS,
                1_700_000_000_000_000_000,
            );
        }
    }
    bytes
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

struct Mutation {
    name: String,
    bytes: Vec<u8>,
    /// Also run the command on it.
    cli: bool,
}

fn get_u32(b: &[u8], at: u64) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], at: u64, v: u32) {
    let at = at as usize;
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put_u64(b: &mut [u8], at: u64, v: u64) {
    let at = at as usize;
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put(b: &mut [u8], at: u64, width: usize, v: u64) {
    if width == 4 {
        put_u32(b, at, v as u32)
    } else {
        put_u64(b, at, v)
    }
}

fn get(b: &[u8], at: u64, width: usize) -> u64 {
    if width == 4 {
        get_u32(b, at).into()
    } else {
        get_u64(b, at)
    }
}

/// Every header field: name, offset, width.
const HEADER_FIELDS: &[(&str, u64, usize)] = &[
    ("magic", hf::MAGIC, 8),
    ("version", hf::VERSION, 4),
    ("header_size", hf::HEADER_SIZE, 4),
    ("total_size", hf::TOTAL_SIZE, 8),
    ("max_guests", hf::MAX_GUESTS, 4),
    ("ring_capacity", hf::RING_CAPACITY, 4),
    ("slot_size", hf::SLOT_SIZE, 4),
    ("slots_per_pool", hf::SLOTS_PER_POOL, 4),
    ("max_payload", hf::MAX_PAYLOAD, 4),
    ("heartbeat_ms", hf::HEARTBEAT_MS, 4),
    ("peer_table_offset", hf::PEER_TABLE_OFFSET, 8),
    ("rings_offset", hf::RINGS_OFFSET, 8),
    ("ring_size", hf::RING_SIZE, 8),
    ("pools_offset", hf::POOLS_OFFSET, 8),
    ("pool_stride", hf::POOL_STRIDE, 8),
    ("pool_data_offset", hf::POOL_DATA_OFFSET, 8),
    ("created_unix_ns", hf::CREATED_UNIX_NS, 8),
    ("nonce", hf::NONCE, 8),
    ("host_goodbye", hf::HOST_GOODBYE, 4),
    ("host_pid", hf::HOST_PID, 4),
    ("host_heartbeat_ns", hf::HOST_HEARTBEAT_NS, 8),
    ("host_start_time", hf::HOST_START_TIME, 8),
    ("host_doorbell", hf::HOST_DOORBELL, 4),
    ("host_waiting", hf::HOST_WAITING, 4),
    ("ready[0]", hf::READY, 8),
    ("ready[1]", hf::READY + 8, 8),
    ("ready[2]", hf::READY + 16, 8),
    ("ready[3]", hf::READY + 24, 8),
];

/// Writes a complete, self-consistent header for `layout` (the fields the
/// layout determines; times, nonce and host fields are kept).
fn write_layout(b: &mut [u8], l: &SegmentLayout) {
    let c = &l.config;
    put_u64(b, hf::TOTAL_SIZE, l.total_size);
    put_u32(b, hf::MAX_GUESTS, c.max_guests);
    put_u32(b, hf::RING_CAPACITY, c.ring_capacity);
    put_u32(b, hf::SLOT_SIZE, c.slot_size);
    put_u32(b, hf::SLOTS_PER_POOL, c.slots_per_pool);
    put_u32(b, hf::MAX_PAYLOAD, c.max_payload);
    put_u32(b, hf::HEARTBEAT_MS, c.heartbeat_interval_ms);
    put_u64(b, hf::PEER_TABLE_OFFSET, l.peer_table_offset);
    put_u64(b, hf::RINGS_OFFSET, l.rings_offset);
    put_u64(b, hf::RING_SIZE, l.ring_size);
    put_u64(b, hf::POOLS_OFFSET, l.pools_offset);
    put_u64(b, hf::POOL_STRIDE, l.pool_stride);
    put_u64(b, hf::POOL_DATA_OFFSET, l.pool_data_offset);
}

/// The offsets of the descriptors between head and tail of a ring, and of
/// the next one the producer would write (index `tail`).
fn ring_descs(base: &[u8], ring: u64, capacity: u32) -> (Vec<u64>, u64) {
    let head = get_u32(base, ring + rf::HEAD);
    let tail = get_u32(base, ring + rf::TAIL);
    let at = |i: u32| ring + RING_HEADER_SIZE + u64::from(i & (capacity - 1)) * DESC_SIZE as u64;
    let queued = (0..tail.wrapping_sub(head).min(capacity))
        .map(|k| at(head.wrapping_add(k)))
        .collect();
    (queued, at(tail))
}

/// The phase bit (as stored in the first word) a descriptor at `index`
/// carries when it is new.
fn phase_word(index: u32, capacity: u32) -> u32 {
    if (index / capacity) % 2 == 0 {
        u32::from(FLAG_PHASE) << 16
    } else {
        0
    }
}

struct Builder {
    base: Vec<u8>,
    out: Vec<Mutation>,
}

impl Builder {
    fn add(&mut self, name: impl Into<String>, cli: bool, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self.base.clone();
        f(&mut bytes);
        self.out.push(Mutation {
            name: name.into(),
            bytes,
            cli,
        });
    }
}

fn mutations(base: &[u8], layout: &SegmentLayout) -> Vec<Mutation> {
    let mut m = Builder {
        base: base.to_vec(),
        out: Vec::new(),
    };
    let mut rng = XorShift::new(0x5EED_C0DE_F00D_0001);
    let len = base.len() as u64;
    let c = layout.config;
    let guests = c.max_guests as u8;

    m.add("unchanged", true, |_| {});

    // Header fields: 0, max, +-1, a flipped bit, random values.
    for &(name, at, width) in HEADER_FIELDS {
        let max = if width == 4 {
            u64::from(u32::MAX)
        } else {
            u64::MAX
        };
        let was = get(base, at, width);
        m.add(format!("header {name} = 0"), true, |b| put(b, at, width, 0));
        m.add(format!("header {name} = max"), true, |b| {
            put(b, at, width, max)
        });
        m.add(format!("header {name} + 1"), false, |b| {
            put(b, at, width, was.wrapping_add(1) & max)
        });
        m.add(format!("header {name} - 1"), false, |b| {
            put(b, at, width, was.wrapping_sub(1) & max)
        });
        let bit = rng.below(width as u64 * 8);
        m.add(format!("header {name} ^ bit {bit}"), false, |b| {
            put(b, at, width, was ^ (1 << bit))
        });
        for k in 0..3 {
            let v = match k {
                0 => rng.next() & max,
                1 => rng.below(was.max(64).saturating_mul(2)),
                _ => rng.below(1 << 20),
            };
            m.add(format!("header {name} = {v:#x}"), k == 0, |b| {
                put(b, at, width, v)
            });
        }
    }
    // Garbage in the reserved header bytes (112..128, 152..192, 200..256).
    m.add("header reserved bytes", false, |b| {
        for at in (112..128).chain(152..192).chain(200..256) {
            b[at] = 0xA5;
        }
    });

    // Whole headers rewritten for other configurations: the file resized
    // to match (the old contents reinterpreted), or left as it is.
    let mut alternatives = vec![
        SegmentConfig { max_guests: 4, ..c },
        SegmentConfig { max_guests: 1, ..c },
        SegmentConfig { max_guests: 8, ..c },
        SegmentConfig {
            max_guests: 255,
            ring_capacity: 2,
            slot_size: 64,
            slots_per_pool: 1,
            max_payload: 64,
            ..c
        },
        SegmentConfig {
            ring_capacity: 4,
            ..c
        },
        SegmentConfig {
            ring_capacity: 16,
            ..c
        },
        SegmentConfig {
            slot_size: 64,
            max_payload: 64,
            ..c
        },
        SegmentConfig {
            slot_size: 192,
            ..c
        },
        SegmentConfig {
            slots_per_pool: 64,
            ..c
        },
        SegmentConfig {
            slots_per_pool: 1,
            ..c
        },
        SegmentConfig {
            max_payload: 1,
            ..c
        },
        SegmentConfig {
            max_payload: 32,
            ..c
        },
        SegmentConfig {
            heartbeat_interval_ms: 1,
            ..c
        },
    ];
    for _ in 0..12 {
        let pick = |r: &mut XorShift, v: &[u32]| v[r.below(v.len() as u64) as usize];
        let slot_size = pick(&mut rng, &[64, 128, 192, 256]);
        alternatives.push(SegmentConfig {
            max_guests: pick(&mut rng, &[1, 2, 3, 5, 7, 9]),
            ring_capacity: pick(&mut rng, &[2, 4, 8, 16, 32]),
            slot_size,
            slots_per_pool: pick(&mut rng, &[1, 2, 63, 64, 65, 66, 130]),
            max_payload: pick(&mut rng, &[1, 32, 33, slot_size]).min(slot_size),
            heartbeat_interval_ms: pick(&mut rng, &[0, 0, 1, 1000]),
        });
    }
    for (i, alt) in alternatives.iter().enumerate() {
        let Ok(l) = alt.layout() else { continue };
        if l.total_size > 1 << 24 {
            continue;
        }
        m.add(
            format!("relayout {i} {alt:?}, file resized"),
            i % 3 == 0,
            |b| {
                b.resize(l.total_size as usize, 0);
                write_layout(b, &l);
            },
        );
        m.add(format!("relayout {i} {alt:?}, file kept"), false, |b| {
            write_layout(b, &l)
        });
    }

    // Truncation (and extension) at many points.
    let mut cuts = vec![
        0,
        1,
        8,
        255,
        256,
        257,
        layout.peer_table_offset + u64::from(c.max_guests) * 64,
        layout.rings_offset,
        layout.rings_offset + layout.ring_size / 2,
        layout.host_to_guest_ring(id(1)) + RING_HEADER_SIZE + 10,
        layout.pools_offset - 1,
        layout.pools_offset,
        layout.pools_offset + layout.pool_stride / 2,
        layout.pool(pool_owner(2)) + layout.pool_data_offset + 5,
        layout.pool(pool_owner(c.max_guests as u8)),
        len - 4096,
        len - 1,
    ];
    for _ in 0..8 {
        cuts.push(rng.below(len));
    }
    for cut in cuts {
        m.add(format!("truncated to {cut}"), true, |b| {
            b.truncate(cut as usize)
        });
    }
    for extra in [1, 63, 4096, len] {
        m.add(format!("extended by {extra}"), true, |b| {
            b.resize((len + extra) as usize, 0)
        });
    }
    // A truncated file whose header says so (total_size matches).
    for cut in [4096, layout.pools_offset, len - 4096] {
        m.add(
            format!("truncated to {cut} with total_size agreeing"),
            true,
            |b| {
                b.truncate(cut as usize);
                put_u64(b, hf::TOTAL_SIZE, cut);
            },
        );
    }

    // Peer entries: invalid states, and valid states with garbage.
    let me = std::process::id();
    for p in 1..=guests {
        let e = layout.peer_entry(id(p));
        for bad in [4u32, 7, 0x8000_0002, u32::MAX] {
            m.add(format!("peer {p} state {bad}"), p <= 2 && bad == 4, |b| {
                put_u32(b, e + pf::STATE, bad)
            });
        }
        let garbage: [(u32, u32, u32, u64); 6] = [
            (u32::MAX, FLAG_HELD, u32::MAX, u64::MAX),
            (1, FLAG_HELD, 0, 0),
            (me, FLAG_HELD | FLAG_LOCKED, 7, 0),
            (me, FLAG_HELD, 1, 0),
            (0x7FFF_FFFE, u32::MAX, 1, 12345),
            (0, FLAG_HELD, 0xDEAD_BEEF, 0),
        ];
        for state in 0..4u32 {
            for (k, &(pid, flags, epoch, time)) in garbage.iter().enumerate() {
                m.add(
                    format!("peer {p} state {state} pid {pid} flags {flags:#x} epoch {epoch} times {time:#x}"),
                    p == 1 && k < 2,
                    |b| {
                        put_u32(b, e + pf::STATE, state);
                        put_u32(b, e + pf::EPOCH, epoch);
                        put_u32(b, e + pf::PID, pid);
                        put_u32(b, e + pf::FLAGS, flags);
                        put_u64(b, e + pf::HEARTBEAT_NS, time);
                        put_u64(b, e + pf::START_TIME, time);
                        put_u64(b, e + pf::CLAIMED_UNIX_NS, time);
                    },
                );
            }
        }
        m.add(format!("peer {p} entry all 0xFF"), false, |b| {
            for i in 0..64 {
                b[(e + i) as usize] = 0xFF;
            }
        });
    }

    // Ring indices: inconsistent, wrapping, waiting flags set.
    let cap = c.ring_capacity;
    for p in 1..=guests {
        for (dir, ring) in [
            ("to-host", layout.guest_to_host_ring(id(p))),
            ("to-guest", layout.host_to_guest_ring(id(p))),
        ] {
            let head = get_u32(base, ring + rf::HEAD);
            let tail = get_u32(base, ring + rf::TAIL);
            let cli = p <= 2;
            let cases: [(&str, u32, u32); 9] = [
                ("tail far ahead", head, head.wrapping_add(1000)),
                ("head far ahead", tail.wrapping_add(1000), tail),
                ("tail one lap ahead", head, head.wrapping_add(cap)),
                ("tail a lap and one ahead", head, head.wrapping_add(cap + 1)),
                ("head a lap ahead", head.wrapping_add(cap), tail),
                ("both near u32::MAX", u32::MAX - 1, u32::MAX - 1),
                ("head u32::MAX tail 2", u32::MAX, 2),
                ("both 0x80000000", 0x8000_0000, 0x8000_0000),
                ("head behind by u32::MAX", tail.wrapping_add(1), tail),
            ];
            for (what, h, t) in cases {
                m.add(
                    format!("peer {p} {dir} ring: {what} (head {h}, tail {t})"),
                    cli && what.contains("far"),
                    |b| {
                        put_u32(b, ring + rf::HEAD, h);
                        put_u32(b, ring + rf::TAIL, t);
                    },
                );
            }
            m.add(
                format!("peer {p} {dir} ring: waiting flags set"),
                false,
                |b| {
                    put_u32(b, ring + rf::PRODUCER_WAITING, u32::MAX);
                    put_u32(b, ring + rf::CONSUMER_WAITING, u32::MAX);
                    put_u32(b, ring + rf::ROOM_SLEEPERS, u32::MAX);
                },
            );
            m.add(
                format!("peer {p} {dir} ring: every descriptor new"),
                cli,
                |b| {
                    let head = get_u32(b, ring + rf::HEAD);
                    for i in 0..cap {
                        let at = ring + RING_HEADER_SIZE + u64::from(i) * DESC_SIZE as u64;
                        // The index at this position the consumer reaches first.
                        let index = head.wrapping_add(i.wrapping_sub(head) & (cap - 1));
                        let w = get_u32(b, at) & !(u32::from(FLAG_PHASE) << 16);
                        put_u32(b, at, w | phase_word(index, cap));
                    }
                },
            );
        }
    }

    // Descriptors: every queued one, corrupted field by field; and a forged
    // one at the producer's next index, with the phase that makes it new.
    const FLAGS: u64 = 2;
    const LEN: u64 = 4;
    const SLOT_INDEX: u64 = 20;
    const SLOT_GEN: u64 = 24;
    const SLOT_OFF: u64 = 28;
    let flags_word = |b: &[u8], at: u64| get_u32(b, at) >> 16;
    let set_flags = |b: &mut [u8], at: u64, f: u32| {
        let w = get_u32(b, at);
        put_u32(b, at, (w & 0xFFFF) | (f << 16));
    };
    for p in 1..=guests {
        for (dir, ring) in [
            ("to-host", layout.guest_to_host_ring(id(p))),
            ("to-guest", layout.host_to_guest_ring(id(p))),
        ] {
            let (queued, next) = ring_descs(base, ring, cap);
            for (k, &d) in queued.iter().enumerate() {
                let name = |what: &str| format!("peer {p} {dir} desc {k}: {what}");
                let cli = p == 1 && k < 3;
                let is_slot = u32::from(base[(d + FLAGS) as usize]) & u32::from(FLAG_SLOT) != 0;
                let plen = get_u32(base, d + LEN);
                for bit in [0x0002u32, 0x0004, 0x4000] {
                    m.add(
                        name(&format!("unknown flag {bit:#x}")),
                        cli && bit == 2,
                        |b| {
                            let f = flags_word(b, d);
                            set_flags(b, d, f | bit)
                        },
                    );
                }
                m.add(name("phase flipped"), cli, |b| {
                    let f = flags_word(b, d);
                    set_flags(b, d, f ^ u32::from(FLAG_PHASE))
                });
                m.add(name("slot flag toggled"), cli, |b| {
                    let f = flags_word(b, d);
                    set_flags(b, d, f ^ u32::from(FLAG_SLOT))
                });
                m.add(name("len > max payload"), cli, |b| {
                    put_u32(b, d + LEN, c.max_payload + 1)
                });
                m.add(name("len u32::MAX"), false, |b| {
                    put_u32(b, d + LEN, u32::MAX)
                });
                m.add(name("len 33 (past inline)"), false, |b| {
                    put_u32(b, d + LEN, 33)
                });
                m.add(name("len max payload"), false, |b| {
                    put_u32(b, d + LEN, c.max_payload)
                });
                m.add(name("all bytes 0xFF but phase"), false, |b| {
                    let keep = get_u32(b, d) & (u32::from(FLAG_PHASE) << 16);
                    for i in 0..DESC_SIZE as u64 {
                        b[(d + i) as usize] = 0xFF;
                    }
                    put_u32(b, d, 0xFFFF | (0x7FFF << 16) | keep);
                });
                if !is_slot {
                    continue;
                }
                for idx in [c.slots_per_pool, c.slots_per_pool + 1, 64, u32::MAX] {
                    m.add(
                        name(&format!("slot index {idx}")),
                        cli && idx == u32::MAX,
                        |b| put_u32(b, d + SLOT_INDEX, idx),
                    );
                }
                let generation = get_u32(base, d + SLOT_GEN);
                for g in [
                    0,
                    generation.wrapping_add(1),
                    generation.wrapping_sub(1),
                    u32::MAX,
                ] {
                    m.add(name(&format!("generation {g}")), cli && g == 0, |b| {
                        put_u32(b, d + SLOT_GEN, g)
                    });
                }
                for off in [
                    c.slot_size - plen + 1,
                    c.slot_size,
                    u32::MAX,
                    u32::MAX - plen + 1,
                ] {
                    m.add(
                        name(&format!("offset {off} + len {plen} past the slot")),
                        cli && off == u32::MAX,
                        |b| put_u32(b, d + SLOT_OFF, off),
                    );
                }
                m.add(name("offset and len both u32::MAX/2"), false, |b| {
                    put_u32(b, d + SLOT_OFF, u32::MAX / 2);
                    put_u32(b, d + LEN, u32::MAX / 2);
                });
                m.add(
                    name("slot 0 of the sender's pool, its generation"),
                    false,
                    |b| {
                        put_u32(b, d + SLOT_INDEX, 0);
                        let sender = if dir == "to-host" { p } else { 0 };
                        let meta = layout.pool(pool_owner(sender)) + layout.pool_meta_offset;
                        let g0 = get_u32(b, meta + plf::SLOT_STATE);
                        put_u32(b, d + SLOT_GEN, g0);
                    },
                );
            }
            // The next index: a forged descriptor the consumer sees as new.
            let tail = get_u32(base, ring + rf::TAIL);
            let phase = phase_word(tail, cap);
            let forged: [(&str, u16, u32, u32, u32, u32); 5] = [
                ("inline len 32", 0, 32, 0, 0, 0),
                ("inline len u32::MAX", 0, u32::MAX, 0, 0, 0),
                ("slot 0 gen 1 len 10", FLAG_SLOT, 10, 0, 1, 0),
                ("slot 65 gen 1 len 128", FLAG_SLOT, 128, 65, 1, 0),
                ("slot u32::MAX", FLAG_SLOT, 1, u32::MAX, 1, 0),
            ];
            for (what, flags, plen, idx, g, off) in forged {
                m.add(
                    format!("peer {p} {dir} forged next descriptor: {what}"),
                    p == 1 && flags == 0,
                    |b| {
                        put_u32(b, next + LEN, plen);
                        put_u32(b, next + SLOT_INDEX, idx);
                        put_u32(b, next + SLOT_GEN, g);
                        put_u32(b, next + SLOT_OFF, off);
                        put_u32(
                            b,
                            next,
                            u32::from(msg_type::DATA) | u32::from(flags) << 16 | phase,
                        );
                    },
                );
            }
        }
    }

    // Pools: bitmaps all ones or all zeros, generations and holders changed,
    // control words garbage.
    let words = c.slots_per_pool.div_ceil(64) as u64;
    for pool in 0..=guests {
        let base_at = layout.pool(pool_owner(pool));
        let bitmap = base_at + layout.pool_bitmap_offset;
        m.add(format!("pool {pool} bitmap all ones"), pool <= 1, |b| {
            for w in 0..words {
                put_u64(b, bitmap + w * 8, u64::MAX)
            }
        });
        m.add(format!("pool {pool} bitmap all zeros"), pool <= 1, |b| {
            for w in 0..words {
                put_u64(b, bitmap + w * 8, 0)
            }
        });
        m.add(
            format!("pool {pool} releases and waiters u32::MAX"),
            false,
            |b| {
                put_u32(b, base_at + plf::RELEASES, u32::MAX);
                put_u32(b, base_at + plf::WAITERS, u32::MAX);
            },
        );
        for slot in 0..c.slots_per_pool as u64 {
            let word = get_u64(base, bitmap + slot / 64 * 8);
            let allocated = word & (1 << (slot % 64)) != 0;
            let meta = base_at + layout.pool_meta_offset + slot * SLOT_META_SIZE;
            if !allocated && slot != 0 && slot != 65 {
                continue;
            }
            let cli = pool <= 1 && allocated && slot < 2;
            for g in [0u32, 1, u32::MAX] {
                m.add(
                    format!("pool {pool} slot {slot} generation {g}"),
                    cli && g == 0,
                    |b| put_u32(b, meta + plf::SLOT_STATE, g),
                );
            }
            m.add(
                format!("pool {pool} slot {slot} generation + 1"),
                false,
                |b| {
                    let g = get_u32(b, meta + plf::SLOT_STATE);
                    put_u32(b, meta + plf::SLOT_STATE, g.wrapping_add(1))
                },
            );
            for h in [0u32, 1, 2, 7, u32::MAX] {
                m.add(format!("pool {pool} slot {slot} holder {h}"), false, |b| {
                    put_u32(b, meta + plf::SLOT_STATE + 4, h)
                });
            }
        }
    }

    // Seeded random damage past the header: bytes flipped anywhere, and
    // random words at aligned offsets in the metadata (peer table, rings,
    // pool control blocks, bitmaps and slot metadata).
    let meta_ranges: Vec<(u64, u64)> = {
        let mut v = vec![(layout.peer_table_offset, layout.pools_offset)];
        for pool in 0..=guests {
            v.push((
                layout.pool(pool_owner(pool)),
                layout.pool(pool_owner(pool)) + layout.pool_data_offset,
            ));
        }
        v
    };
    for i in 0..150 {
        let flips = 1 + rng.below(8);
        let picks: Vec<(usize, u8)> = (0..flips)
            .map(|_| (rng.below(len) as usize, 1 + rng.below(255) as u8))
            .collect();
        m.add(format!("random flips {i} {picks:?}"), i % 25 == 0, |b| {
            for (at, x) in picks {
                b[at] ^= x;
            }
        });
    }
    for i in 0..250 {
        let (lo, hi) = meta_ranges[rng.below(meta_ranges.len() as u64) as usize];
        let at = (lo + rng.below(hi - lo)) & !3;
        let v = match rng.below(4) {
            0 => 0,
            1 => u32::MAX,
            2 => rng.below(300) as u32,
            _ => rng.next() as u32,
        };
        m.add(
            format!("random word {i}: {v:#x} at {at}"),
            i % 25 == 0,
            |b| put_u32(b, at, v),
        );
    }

    for (name, hex) in FUZZ_REGRESSIONS {
        let bytes = decode_hex(hex);
        m.out.push(Mutation {
            name: format!("fuzz regression {name}"),
            bytes,
            cli: true,
        });
    }
    m.out
}

fn decode_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    digits.chunks(2).map(|d| d[0] << 4 | d[1]).collect()
}

// ---------------------------------------------------------------------------
// The library
// ---------------------------------------------------------------------------

/// What one library call on one mutation did wrong.
type Problems = Arc<Mutex<Vec<String>>>;

fn write_file(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).expect("write mutated file");
}

fn read_or_gone(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

/// What the library calls returned, over all mutations: evidence that the
/// corpus reaches past header validation into rings, descriptors and pools.
#[derive(Default)]
struct Tally {
    inspected: AtomicUsize,
    peeked: AtomicUsize,
    dumped: AtomicUsize,
    opened: AtomicUsize,
    received: AtomicUsize,
    bad_descriptors: AtomicUsize,
    corrupt: AtomicUsize,
    other_errors: AtomicUsize,
}

static TALLY: Tally = Tally {
    inspected: AtomicUsize::new(0),
    peeked: AtomicUsize::new(0),
    dumped: AtomicUsize::new(0),
    opened: AtomicUsize::new(0),
    received: AtomicUsize::new(0),
    bad_descriptors: AtomicUsize::new(0),
    corrupt: AtomicUsize::new(0),
    other_errors: AtomicUsize::new(0),
};

fn count(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A guest's bad descriptor or entry, met by the host, comes as the
/// guest's quarantine (`shm.peer.quarantine`) and counts as what it found.
fn count_error(e: &shmhub::Error) {
    use shmhub::QuarantineReason as Q;
    match e {
        shmhub::Error::BadDescriptor { .. }
        | shmhub::Error::Quarantined {
            reason: Q::Descriptor,
            ..
        } => count(&TALLY.bad_descriptors),
        shmhub::Error::Corrupt(_) | shmhub::Error::Quarantined { .. } => count(&TALLY.corrupt),
        _ => count(&TALLY.other_errors),
    }
}

/// Receives until nothing is left, an error, or `MAX_RECEIVES`.
fn drain<T>(mut f: impl FnMut() -> shmhub::Result<Option<T>>) {
    for _ in 0..MAX_RECEIVES {
        match f() {
            Ok(Some(_)) => count(&TALLY.received),
            Ok(None) => return,
            Err(e) => {
                count_error(&e);
                return;
            }
        }
    }
}

fn host_session(host: &mut ShmHost) {
    let guests = host.layout().config.max_guests.min(255) as u8;
    let _ = host.status().header();
    let _ = host.peers();
    drain(|| host.try_recv());
    for p in 0..=guests.saturating_add(1) {
        drain(|| host.try_recv_from(p));
    }
    for p in 1..=guests {
        let _ = host.try_send(p, frame(1, b"inline"));
        let _ = host.try_send(p, frame(2, &payload(9, 100)));
        let _ = host
            .receiver(p)
            .unwrap()
            .recv_batch(8, Some(Duration::ZERO), |r| {
                let _ = r.payload().len();
            });
    }
    let _ = host.reclaim_dead();
    drain(|| host.try_recv());
}

fn guest_session(guest: &mut ShmGuest) {
    let _ = guest.status().header();
    let _ = guest.status().host_status();
    drain(|| guest.try_recv());
    let _ = guest.try_send(frame(1, b"inline"));
    let _ = guest.try_send(frame(2, &payload(8, 100)));
    let _ = guest.receiver().recv_batch(8, Some(Duration::ZERO), |r| {
        let _ = r.payload().len();
    });
}

/// Runs every library call on `bytes`, each on a fresh copy at `path`.
/// Returns the problems found (panics, changes by refused calls).
fn library_checks(path: &Path, bytes: &[u8], current: &Mutex<String>) -> Vec<String> {
    let problems: Problems = Arc::default();
    let run = |op: &str, f: &mut dyn FnMut(&Path) -> Option<String>| {
        *current.lock().unwrap() = op.to_string();
        write_file(path, bytes);
        match catch_unwind(AssertUnwindSafe(|| f(path))) {
            Ok(None) => {}
            Ok(Some(problem)) => problems.lock().unwrap().push(format!("{op}: {problem}")),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                problems
                    .lock()
                    .unwrap()
                    .push(format!("{op}: PANICKED: {msg}"));
            }
        }
    };
    let unchanged = |path: &Path, what: &str, e: &dyn std::fmt::Debug| -> Option<String> {
        match read_or_gone(path) {
            Some(now) if now == bytes => None,
            Some(now) => Some(format!(
                "{what} refused the file ({e:?}) but changed its bytes (first difference at {:?})",
                first_difference(bytes, &now)
            )),
            None => Some(format!("{what} refused the file ({e:?}) but it is gone")),
        }
    };

    run("inspect_path", &mut |p| {
        let r = shmhub::admin::inspect_path(p);
        if let Ok(report) = &r {
            count(&TALLY.inspected);
            let _ = serde_json::to_string(report);
        }
        match read_or_gone(p) {
            Some(now) if now == bytes => None,
            _ => Some(format!("inspect changed the file (result {:?})", r.is_ok())),
        }
    });
    run("read-only views", &mut |p| {
        let mut seen = Vec::new();
        let options = [None, Some(1), Some(5)].map(|peer| shmhub::admin::PeekOptions {
            peer: peer.map(id),
            ..Default::default()
        });
        for o in &options {
            if let Ok(report) = shmhub::admin::peek_path(p, o) {
                count(&TALLY.peeked);
                let _ = serde_json::to_string(&report);
            }
        }
        seen.push(("peek_path", read_or_gone(p)));
        if let Ok(report) = shmhub::admin::inspect_slots(p) {
            let _ = serde_json::to_string(&report);
        }
        seen.push(("inspect_slots", read_or_gone(p)));
        match shmhub::admin::inspect_raw(p) {
            Ok(dump) => {
                count(&TALLY.dumped);
                let _ = serde_json::to_string(&dump);
            }
            Err(e) => return Some(format!("inspect_raw failed on a regular file: {e}")),
        }
        seen.push(("inspect_raw", read_or_gone(p)));
        seen.into_iter().find_map(|(what, now)| {
            (now.as_deref() != Some(bytes)).then(|| format!("{what} changed the file"))
        })
    });
    run("attach_path", &mut |p| match ShmGuest::attach_path(p) {
        Err(e) => unchanged(p, "attach_path", &e),
        Ok(mut g) => {
            guest_session(&mut g);
            let _ = g.detach();
            None
        }
    });
    run(
        "attach_path_with_id(4)",
        &mut |p| match ShmGuest::attach_path_with_id(p, 4) {
            Err(e) => unchanged(p, "attach_path_with_id", &e),
            Ok(mut g) => {
                guest_session(&mut g);
                None
            }
        },
    );
    run("ShmHost::open", &mut |p| match ShmHost::open(p) {
        Err(e) => unchanged(p, "ShmHost::open", &e),
        Ok(mut h) => {
            count(&TALLY.opened);
            host_session(&mut h);
            None
        }
    });
    run(
        "ShmHost::open + reclaim_dead",
        &mut |p| match ShmHost::open(p) {
            Err(e) => unchanged(p, "ShmHost::open", &e),
            Ok(mut h) => {
                let _ = h.reclaim_dead();
                let _ = h.try_recv();
                None
            }
        },
    );
    run("ShmGuest::resume", &mut |p| {
        for id in [0u8, 1, 2, 3, 4, 5, 6, 255] {
            match ShmGuest::resume(p, id) {
                Err(_) => {}
                Ok(mut g) => guest_session(&mut g),
            }
        }
        None
    });
    run(
        "ShmGuest::resume refusal",
        &mut |p| match ShmGuest::resume(p, 3) {
            Err(e) => unchanged(p, "ShmGuest::resume", &e),
            Ok(_) => None,
        },
    );
    run("remove_segment", &mut |p| {
        let options = shmhub::admin::RemoveOptions {
            allow_foreign_owner: false,
            force: false,
            timeout: Duration::ZERO,
        };
        match shmhub::admin::remove_segment(p, options, &mut |_| {}) {
            Ok(_) => None,
            Err(e) => {
                // A refusal, even after giving up on live holders (`StillAttached`),
                // leaves the file as it was (shm.file.remove).
                let now = read_or_gone(p)?;
                (now != bytes).then(|| {
                    format!(
                        "remove_segment refused the file ({e}) but changed its bytes \
                         (first difference at {:?})",
                        first_difference(bytes, &now)
                    )
                })
            }
        }
    });
    run("heap region", &mut |_| {
        let Ok(heap) = HeapRegion::new_zeroed(bytes.len()) else {
            return None;
        };
        let region = heap.region();
        region.write(0, bytes).expect("heap write");
        let _ = shmhub::admin::inspect_region(&region, None);
        let _ = shmhub::admin::peek_region(&region, &shmhub::admin::PeekOptions::default());
        let _ = shmhub::admin::inspect_slots_region(&region, None);
        if let Ok(mut g) = ShmGuest::attach(region.clone()) {
            guest_session(&mut g);
        }
        if let Ok(mut g) = ShmGuest::attach_with_id(region.clone(), 4) {
            guest_session(&mut g);
        }
        if let Ok(mut h) = ShmHost::open_region(region.clone()) {
            host_session(&mut h);
        }
        None
    });
    problems.lock().unwrap().clone()
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

struct Base {
    _dir: tempfile::TempDir,
    work: PathBuf,
    layout: SegmentLayout,
    bytes: Vec<u8>,
}

fn base() -> Base {
    let dir = tempfile::Builder::new()
        .prefix("shmhub-corpus-")
        .tempdir()
        .expect("tempdir");
    let bytes = build_base(&dir.path().join("base.shm"));
    let layout = CONFIG.layout().unwrap();
    assert_eq!(bytes.len() as u64, layout.total_size);
    let work = dir.path().to_path_buf();
    Base {
        _dir: dir,
        work,
        layout,
        bytes,
    }
}

/// The base segment is what it claims: the library reads every queued
/// message back.
#[test]
fn base_segment_is_valid() {
    let b = base();
    let path = b.work.join("valid.shm");
    write_file(&path, &b.bytes);
    let report = shmhub::admin::inspect_path(&path).expect("inspect base");
    let states: Vec<String> = report
        .peers
        .iter()
        .map(|p| p.entry.state.to_string())
        .collect();
    assert_eq!(
        states,
        ["attached", "attached", "goodbye", "reserved", "empty"]
    );
    let mut host = ShmHost::open(&path).expect("open base");
    let mut got = Vec::new();
    while let Some((p, f)) = host.try_recv().expect("recv") {
        got.push((p.get(), f.desc.id, f.payload().len()));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (1, 110, 11),
            (1, 111, 64),
            (1, 112, 128),
            (2, 210, 90),
            (2, 211, 11),
            (3, 310, 50),
            (3, 311, 5)
        ]
    );
    let mut g1 = ShmGuest::resume(&path, 1).expect("resume 1");
    let mut ids = Vec::new();
    while let Some(f) = g1.try_recv().expect("recv") {
        ids.push((f.desc.id, f.payload().len()));
    }
    assert_eq!(ids, [(100, 19), (101, 100), (102, 128), (103, 0)]);
    // The message in the second bitmap word is there.
    let host_bitmap = b.layout.pool(Party::Host) + b.layout.pool_bitmap_offset;
    assert_ne!(
        get_u64(&b.bytes, host_bitmap + 8) & 1,
        0,
        "slot 64 of the host's pool is in use"
    );
}

#[test]
fn library_survives_every_mutation() {
    let b = base();
    let started = Instant::now();
    let all = mutations(&b.bytes, &b.layout);
    let count = all.len();
    let path = b.work.join("lib.shm");
    let current = Arc::new(Mutex::new(String::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let worker = {
        let (current, done, path) = (current.clone(), done.clone(), path.clone());
        std::thread::spawn(move || {
            for (i, m) in all.iter().enumerate() {
                let found = library_checks(&path, &m.bytes, &current);
                done.store(i + 1, Ordering::SeqCst);
                for f in found {
                    let _ = tx.send(format!("[{i}] {}: {f}", m.name));
                }
                let _ = tx.send(String::new());
            }
        })
    };
    let mut problems = Vec::new();
    let mut finished = 0;
    while finished < count {
        match rx.recv_timeout(LIB_BOUND) {
            Ok(line) if line.is_empty() => finished += 1,
            Ok(line) => problems.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "library calls on mutation {} hung for {LIB_BOUND:?} (in {})",
                    done.load(Ordering::SeqCst),
                    current.lock().unwrap()
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    worker.join().expect("worker");
    let t = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    eprintln!(
        "library: {count} mutations in {:.1}s; inspected {}, peeked {}, dumped {}, \
         opened as host {}, messages received {}, bad descriptors {}, corrupt {}, \
         other errors {}",
        started.elapsed().as_secs_f64(),
        t(&TALLY.inspected),
        t(&TALLY.peeked),
        t(&TALLY.dumped),
        t(&TALLY.opened),
        t(&TALLY.received),
        t(&TALLY.bad_descriptors),
        t(&TALLY.corrupt),
        t(&TALLY.other_errors),
    );
    // The corpus must reach past the header: most files open, messages are
    // received, and corrupt descriptors and entries are met and refused.
    assert!(t(&TALLY.opened) > count / 2, "too few mutations open");
    assert!(t(&TALLY.received) > count, "too few messages received");
    assert!(
        t(&TALLY.bad_descriptors) > 50,
        "too few bad descriptors met"
    );
    assert!(t(&TALLY.corrupt) > 20, "too few corrupt entries met");
    assert!(t(&TALLY.peeked) > count, "too few mutations peeked at");
    // (The fuzz seeds, checked at the same time, count too.)
    assert!(
        t(&TALLY.dumped) >= count,
        "inspect_raw dumps every regular file"
    );
    assert!(
        problems.is_empty(),
        "{} problem(s) in {count} mutations:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    timed_out: bool,
}

/// Runs `shmhub args` in `dir`, killing it after [`CLI_BOUND`]: a command
/// that hangs is one of the outcomes checked, not a failure of the run.
fn run_bounded(dir: &Path, args: &[&str]) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let command = support::cli_command(dir, args);
    // Every run in `dir` overwrites the last one's output files.
    let mut child = Child::start(format!("shmhub {args:?}"), command, dir, "cli");
    let (status, timed_out) = match child.wait_until(Instant::now() + CLI_BOUND) {
        Ok(status) => (status, false),
        Err(_) => (child.kill(), true),
    };
    Outcome {
        code: status.code(),
        signal: status.signal(),
        stderr: child.stderr(),
        timed_out,
    }
}

fn cli_checks(dir: &Path, m: &Mutation) -> Vec<String> {
    let path = dir.join("cli.shm");
    let p = path.to_str().unwrap();
    let commands: [&[&str]; 9] = [
        &["inspect", p],
        &["inspect", p, "--json"],
        &["peek", p],
        &["inspect", p, "--slots"],
        &["inspect", p, "--raw"],
        &["attach", p],
        &["recv", p, "--as", "host", "--timeout", "0"],
        &["recv", p, "--as", "1", "--timeout", "0"],
        &["rm", p, "--timeout", "100ms"],
    ];
    let mut problems = Vec::new();
    for args in commands {
        write_file(&path, &m.bytes);
        let out = run_bounded(dir, args);
        let what = format!("{}: shmhub {}", m.name, args.join(" "));
        let after = read_or_gone(&path);
        if out.timed_out {
            problems.push(format!("{what}: still running after {CLI_BOUND:?}"));
            continue;
        }
        let Some(code) = out.code else {
            problems.push(format!(
                "{what}: killed by signal {:?}; stderr {:?}",
                out.signal, out.stderr
            ));
            continue;
        };
        if !matches!(code, 0 | 1 | 3) {
            problems.push(format!("{what}: exit {code}; stderr {:?}", out.stderr));
            continue;
        }
        // A receive from any guest warns of each guest it cuts off and
        // goes on: its error, if any, is the first line after those.
        let warning = |l: &&str| l.starts_with("warning: ") && l.contains(" is cut off");
        let first_error = out.stderr.lines().find(|l| !warning(l));
        // Exit 3 without an error: recv found nothing to receive.
        let quiet_timeout = code == 3 && first_error.is_none();
        if code != 0 && !quiet_timeout && !first_error.is_some_and(|l| l.starts_with("error:")) {
            problems.push(format!(
                "{what}: exit {code} but stderr does not start with 'error:': {:?}",
                out.stderr
            ));
        }
        // Every view is read-only: inspect (and its --slots and --raw) and peek.
        let inspect = args[0] == "inspect" || args[0] == "peek";
        // A bad descriptor is consumed from its ring by design
        // (shm.recv.validate), and a guest found breaking the protocol is
        // marked cut off (shm.peer.quarantine): that receive changed the
        // file on purpose.
        let bad_message =
            out.stderr.contains("bad descriptor") || out.stderr.contains(" is cut off");
        let refused = code == 1 && !bad_message;
        if (inspect || refused) && after.as_deref() != Some(&m.bytes[..]) {
            problems.push(format!(
                "{what}: exit {code} and the file {} (stderr {:?})",
                match &after {
                    None => "is gone".to_string(),
                    Some(now) => format!(
                        "changed (first difference at byte {:?})",
                        first_difference(&m.bytes, now)
                    ),
                },
                out.stderr.trim_end()
            ));
        }
    }
    problems
}

#[test]
fn command_survives_representative_mutations() {
    let b = base();
    let started = Instant::now();
    let chosen: Vec<Mutation> = mutations(&b.bytes, &b.layout)
        .into_iter()
        .filter(|m| m.cli || std::env::var_os("SHMHUB_CORPUS_FULL_CLI").is_some())
        .collect();
    // Two workers, each in its own directory.
    let halves: Vec<Vec<Mutation>> = {
        let mut a = Vec::new();
        let mut c = Vec::new();
        for (i, m) in chosen.into_iter().enumerate() {
            if i % 2 == 0 { a.push(m) } else { c.push(m) }
        }
        vec![a, c]
    };
    let count: usize = halves.iter().map(Vec::len).sum();
    let workers: Vec<_> = halves
        .into_iter()
        .enumerate()
        .map(|(w, ms)| {
            let dir = b.work.join(format!("cli{w}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::thread::spawn(move || {
                ms.iter()
                    .flat_map(|m| cli_checks(&dir, m))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let problems: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("cli worker"))
        .collect();
    eprintln!(
        "command: {count} mutations x 6 commands in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Fuzz seeds
// ---------------------------------------------------------------------------

/// Small valid segments with traffic in them, as the fuzz target's seeds.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let small = |max_guests, ring_capacity, slot_size, slots_per_pool, heartbeat_interval_ms| {
        SegmentConfig {
            max_guests,
            ring_capacity,
            slot_size,
            slots_per_pool,
            max_payload: slot_size,
            heartbeat_interval_ms,
        }
    };
    let configs = [
        ("g1-r2-s64x1", small(1, 2, 64, 1, 0), 1),
        ("g2-r4-s64x2", small(2, 4, 64, 2, 0), 2),
        ("g3-r2-s128x1-hb", small(3, 2, 128, 1, 1000), 3),
        ("g2-r2-s64x2-empty", small(2, 2, 64, 2, 0), 0),
        ("g1-r8-s64x70", small(1, 8, 64, 70, 0), 1),
    ];
    let mut seeds = Vec::new();
    for (name, config, guests) in configs {
        let mut host = ShmHost::create_heap(config).expect("heap segment");
        let region = host.region();
        let mut attached = Vec::new();
        for i in 0..guests {
            let mut g = ShmGuest::attach(region.clone()).expect("attach");
            let p = g.peer_id();
            let _ = host.try_send(p, frame(u64::from(p), b"hi"));
            let _ = host.try_send(p, frame(u64::from(p) + 10, &payload(p.get(), 40)));
            let _ = g.try_send(frame(20, &payload(i as u8, 50)));
            let _ = g.try_send(frame(21, b"inline"));
            attached.push(g);
        }
        if guests == 3 {
            // The last guest leaves with messages queued: Goodbye.
            let _ = attached.pop().unwrap().detach();
            let _ = host.reserve_peer();
        }
        let len = host.layout().total_size as usize;
        let mut bytes = vec![0u8; len];
        region.read(0, &mut bytes).expect("read heap segment");
        for g in attached {
            let _ = g.release_to_script();
        }
        seeds.push((name.to_string(), bytes));
    }
    seeds
}

/// Writes the fuzz seeds to `$SHMHUB_WRITE_FUZZ_SEEDS` (a directory):
/// `SHMHUB_WRITE_FUZZ_SEEDS=fuzz/seeds/segment cargo test --test corpus -- --ignored write_fuzz_seeds`
#[test]
#[ignore = "writes the fuzz seeds; run by hand"]
fn write_fuzz_seeds() {
    let dir = PathBuf::from(
        std::env::var_os("SHMHUB_WRITE_FUZZ_SEEDS").expect("set SHMHUB_WRITE_FUZZ_SEEDS"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in fuzz_seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The seeds, and whatever is in `fuzz/seeds/segment`, go through the same
/// library checks as the mutations.
#[test]
fn fuzz_seeds_survive_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.shm");
    let current = Mutex::new(String::new());
    let mut inputs = fuzz_seeds();
    let stored = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/segment");
    if let Ok(entries) = std::fs::read_dir(&stored) {
        for e in entries.flatten() {
            inputs.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    let mut problems = Vec::new();
    for (name, bytes) in &inputs {
        assert!(
            shmhub::admin::inspect_region(&region_copy(bytes), None).is_ok() || name.contains('/'),
            "seed {name} is not a valid segment"
        );
        for p in library_checks(&path, bytes, &current) {
            problems.push(format!("{name}: {p}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn region_copy(bytes: &[u8]) -> shmhub::Region {
    let region = HeapRegion::new_zeroed(bytes.len()).unwrap().region();
    region.write(0, bytes).unwrap();
    region
}
