//! Golden vectors: small segment files and descriptors that the library
//! writes, each with its expected decoding beside it in `tests/vectors/`,
//! so that another implementation can test its reader and its writer
//! without running this one (`tests/vectors/README.md`).
//!
//! The decodings come from a reader written here from the byte tables of
//! `docs/spec.md` alone: the offsets, sizes and meanings are this file's
//! own tables, never the library's decoders. The tests check that:
//!
//! - the library, run through each scenario again, writes the same bytes
//!   (the fields that vary from run to run masked);
//! - each vector decodes, by those tables, exactly as its `.json` says,
//!   and every byte that is not zero lies in a field the tables name;
//! - those tables are the byte tables of `docs/spec.md`, parsed from it:
//!   every field at the same offset and size, the values of `state` and
//!   `quarantine` and the flag bits named alike;
//! - each decoding says what its scenario did (hand-written expectations);
//! - the library's own views (header, inspection, peek, slots) read the
//!   vectors as the tables do;
//! - `docs/spec.md`, the library's `VERSION`, these tables and the vectors
//!   name the same format version.
//!
//! `SHMHUB_WRITE_VECTORS=1 cargo test --test vectors` writes the vectors
//! again. It refuses to change the bytes of a vector while the format
//! version stays the same (a format change needs a new version);
//! `SHMHUB_WRITE_VECTORS=same-version` overwrites them anyway, for a change
//! of what a scenario does rather than of the format.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shmhub::admin::PeekOptions;
use shmhub::format::VERSION;
use shmhub::{
    Direction, Frame, HeapRegion, MsgDesc, PeerId, Region, SegmentConfig, ShmGuest, ShmHost,
    msg_type,
};

/// Where the vectors live.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
/// Set to `1` (or `same-version`) to write the vectors instead of checking.
const WRITE_ENV: &str = "SHMHUB_WRITE_VECTORS";

// ---------------------------------------------------------------------------
// The byte tables of docs/spec.md, for format version 4
// ---------------------------------------------------------------------------

/// The format version whose tables this reader follows. A new version
/// needs these tables read again against the spec.
const TABLES_VERSION: u32 = 6;

/// A field of a table: name, offset in its structure, size in bytes.
type Field = (&'static str, usize, usize);

/// Section Header: every field of the 256-byte header, in offset order
/// (the reserved ranges 116..128, 152..192 and 200..224 are not fields).
const HEADER: [Field; 29] = [
    ("magic", 0, 8),
    ("version", 8, 4),
    ("header_size", 12, 4),
    ("total_size", 16, 8),
    ("max_guests", 24, 4),
    ("ring_capacity", 28, 4),
    ("slot_size", 32, 4),
    ("slots_per_pool", 36, 4),
    ("max_payload", 40, 4),
    ("heartbeat_interval_ms", 44, 4),
    ("peer_table_offset", 48, 8),
    ("rings_offset", 56, 8),
    ("ring_size", 64, 8),
    ("pools_offset", 72, 8),
    ("pool_stride", 80, 8),
    ("pool_data_offset", 88, 8),
    ("created_unix_ns", 96, 8),
    ("nonce", 104, 8),
    ("host_slots_per_guest", 112, 4),
    ("host_goodbye", 128, 4),
    ("host_pid", 132, 4),
    ("host_heartbeat_ns", 136, 8),
    ("host_start_time", 144, 8),
    ("host_doorbell", 192, 4),
    ("host_waiting", 196, 4),
    ("ready[0]", 224, 8),
    ("ready[1]", 232, 8),
    ("ready[2]", 240, 8),
    ("ready[3]", 248, 8),
];

/// Section Host, `shm.host.ready`: the guests whose bit is set, guest `p`
/// being bit `(p - 1) mod 64` of word `(p - 1) / 64`.
fn ready_guests(header: &Rec) -> Vec<u64> {
    (0..4u64)
        .flat_map(|w| {
            let word = header.get(&format!("ready[{w}]"));
            (0..64)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| 64 * w + b + 1)
        })
        .collect()
}

/// `SHMHUB` then 0x00 0x01, as a little-endian u64.
const MAGIC: u64 = 0x0100_4255_484D_4853;

/// Section Peer table: a 64-byte entry (44..64 reserved).
const ENTRY: [Field; 8] = [
    ("state", 0, 4),
    ("epoch", 4, 4),
    ("pid", 8, 4),
    ("flags", 12, 4),
    ("heartbeat_ns", 16, 8),
    ("start_time", 24, 8),
    ("claimed_unix_ns", 32, 8),
    ("quarantine", 40, 4),
];
const ENTRY_SIZE: usize = 64;
/// The values of `state`, in order.
const STATES: [&str; 5] = ["empty", "reserved", "attached", "goodbye", "quarantined"];
/// The values of `quarantine`, in order (0: never cut off).
const REASONS: [&str; 5] = ["never", "entry", "ring", "descriptor", "evicted"];
const FLAG_HELD: u64 = 1;
const FLAG_LOCKED: u64 = 2;

/// Section Rings: the 192-byte control block.
const RING: [Field; 10] = [
    ("tail", 0, 4),
    ("host_slots_handed", 8, 4),
    ("head", 64, 4),
    ("host_slots_returned", 72, 4),
    ("producer_waiting", 128, 4),
    ("consumer_waiting", 132, 4),
    ("producer_fences", 136, 4),
    ("consumer_fences", 140, 4),
    ("room_sleepers", 144, 4),
    ("room_at", 148, 4),
];
const RING_HEADER: usize = 192;

/// Section Message descriptor: 64 bytes, `inline` being the last 32.
const DESC: [Field; 8] = [
    ("msg_type", 0, 2),
    ("flags", 2, 2),
    ("payload_len", 4, 4),
    ("id", 8, 8),
    ("method_id", 16, 4),
    ("slot_index", 20, 4),
    ("slot_generation", 24, 4),
    ("slot_offset", 28, 4),
];
const DESC_SIZE: usize = 64;
const INLINE_AT: usize = 32;
const INLINE_SIZE: usize = 32;
const FLAG_SLOT: u64 = 1;
const FLAG_PHASE: u64 = 0x8000;

/// Section Slot pools: the control block, then the bitmap at 64, then 64
/// bytes of metadata per slot.
const POOL: [Field; 2] = [("releases", 0, 4), ("waiters", 4, 4)];
const POOL_BITMAP: usize = 64;
const SLOT_META: [Field; 1] = [("state", 0, 8)];
const SLOT_META_SIZE: usize = 64;

/// The header's size.
const HEADER_SIZE: usize = 256;

/// One of the tables above and the byte table of docs/spec.md it writes
/// down (`the_tables_here_are_the_tables_of_the_spec` holds them to it).
struct Mapping {
    /// The spec's section (its `##` heading)...
    section: &'static str,
    /// ...and which of that section's byte tables, counting from 0.
    nth: usize,
    /// The table here, by name, for messages.
    ours: &'static str,
    /// Its fields as the spec lists them: an array's elements (`ready[0]`
    /// to `ready[3]`) as one field (`ready`).
    fields: Vec<Field>,
    /// The bytes the spec's rows, reserved ones included, cover from 0.
    size: usize,
    /// The `size` cell of a last row that repeats past `size` (the ring's
    /// descriptors), if the table ends with one.
    then: Option<String>,
}

/// Every table above, with the spec's table it follows.
fn mappings() -> Vec<Mapping> {
    let mut desc = DESC.to_vec();
    desc.push(("inline", INLINE_AT, INLINE_SIZE));
    let map = |section, nth, ours, fields, size| Mapping {
        section,
        nth,
        ours,
        fields,
        size,
        then: None,
    };
    vec![
        map("Header", 0, "HEADER", as_one(&HEADER), HEADER_SIZE),
        map("Peer table", 0, "ENTRY", ENTRY.to_vec(), ENTRY_SIZE),
        Mapping {
            then: Some(format!("{DESC_SIZE} · C")),
            ..map("Rings", 0, "RING", RING.to_vec(), RING_HEADER)
        },
        map(
            "Message descriptor",
            0,
            "DESC and INLINE_AT",
            desc,
            DESC_SIZE,
        ),
        map("Slot pools", 0, "POOL", POOL.to_vec(), POOL_BITMAP),
        map(
            "Slot pools",
            1,
            "SLOT_META",
            SLOT_META.to_vec(),
            SLOT_META_SIZE,
        ),
    ]
}

/// `table` with each run of array elements `name[k]` as one field `name`.
fn as_one(table: &[Field]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    for &(name, at, size) in table {
        let base = name.split('[').next().unwrap();
        match out.last_mut() {
            Some(last) if base != name && last.0 == base && last.1 + last.2 == at => last.2 += size,
            _ => out.push((base, at, size)),
        }
    }
    out
}

/// `align(x, n)` of the spec's Conventions.
fn align(x: usize, n: usize) -> usize {
    x.div_ceil(n) * n
}

// ---------------------------------------------------------------------------
// Fields that vary from run to run
// ---------------------------------------------------------------------------

/// What a pid that varies is replaced by: no process has it (pids stay
/// below 2^22 on Linux).
const PID_MASK: u64 = 0x7FFF_FFFF;
/// What a time, start time or nonce that varies is replaced by (odd, so
/// still a valid nonce; below 2^53, so exact in any JSON reader).
const TIME_MASK: u64 = 0x0012_3456_789A_BCDF;

/// Replaces, in a segment's bytes, every field whose value depends on the
/// run (process ids, clocks, the random nonce) with its mask; a field that
/// holds 0 ("none", "never") stays 0, and a start time goes with its pid.
/// Returns the names of the fields masked.
fn mask(bytes: &mut [u8]) -> Vec<String> {
    let mut masked = Vec::new();
    let mut put = |bytes: &mut [u8], at: usize, size: usize, value: u64, name: String| {
        bytes[at..at + size].copy_from_slice(&value.to_le_bytes()[..size]);
        masked.push(name);
    };
    let get = |bytes: &[u8], at: usize, size: usize| le(&bytes[at..at + size]);
    for name in ["created_unix_ns", "nonce", "host_heartbeat_ns"] {
        let (_, at, size) = field(&HEADER, name);
        put(bytes, at, size, TIME_MASK, format!("header.{name}"));
    }
    if get(bytes, 132, 4) != 0 {
        put(bytes, 132, 4, PID_MASK, "header.host_pid".into());
        put(bytes, 144, 8, TIME_MASK, "header.host_start_time".into());
    }
    let guests = get(bytes, 24, 4) as usize;
    for p in 1..=guests {
        let e = 256 + (p - 1) * ENTRY_SIZE;
        let name = |field: &str| format!("peers[{}].{field}", p - 1);
        if get(bytes, e + 8, 4) != 0 {
            put(bytes, e + 8, 4, PID_MASK, name("pid"));
            put(bytes, e + 24, 8, TIME_MASK, name("start_time"));
        }
        for (field, at) in [("heartbeat_ns", 16), ("claimed_unix_ns", 32)] {
            if get(bytes, e + at, 8) != 0 {
                put(bytes, e + at, 8, TIME_MASK, name(field));
            }
        }
    }
    masked
}

// ---------------------------------------------------------------------------
// The reader
// ---------------------------------------------------------------------------

/// The little-endian integer in `bytes` (at most 8 of them).
fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The field `name` of `table`.
fn field(table: &[Field], name: &str) -> Field {
    *table
        .iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// Named values, in table order.
#[derive(Debug, Clone, Default)]
struct Rec(Vec<(&'static str, u64)>);

impl Rec {
    fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no value {name}"))
            .1
    }
}

/// Reads a file's bytes and notes the span of every field it reads, so
/// that a byte outside every field can be found (it must be zero).
struct Reader<'a> {
    bytes: &'a [u8],
    spans: Vec<(usize, usize, String)>,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            spans: Vec::new(),
        }
    }

    /// The bytes `at..at + len`, noted as field `name`.
    fn take(&mut self, at: usize, len: usize, name: String) -> &'a [u8] {
        let bytes = self
            .bytes
            .get(at..at + len)
            .unwrap_or_else(|| panic!("{name} at {at}+{len} lies past the end"));
        self.spans.push((at, len, name));
        bytes
    }

    /// Every field of `table` for a structure at `base`, named
    /// `prefix.field`.
    fn record(&mut self, table: &[Field], base: usize, prefix: &str) -> Rec {
        Rec(table
            .iter()
            .map(|&(name, at, size)| {
                (
                    name,
                    le(self.take(base + at, size, format!("{prefix}.{name}"))),
                )
            })
            .collect())
    }

    /// The bytes `at..at + len` without noting them (a payload, read
    /// through a descriptor, lies in a field noted elsewhere).
    fn look(&self, at: usize, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(at..at.checked_add(len)?)
    }

    /// The name of the field covering `at`, or where it lies past the
    /// last field before it.
    fn near(&self, at: usize) -> String {
        match self
            .spans
            .iter()
            .filter(|(start, _, _)| *start <= at)
            .max_by_key(|(start, _, _)| *start)
        {
            Some((start, len, name)) if at < start + len => name.clone(),
            Some((start, len, name)) => format!("{} bytes past {name}", at - (start + len) + 1),
            None => "before every field".to_string(),
        }
    }

    /// Offsets of non-zero bytes that no field covers.
    fn stray_bytes(&self) -> Vec<usize> {
        let mut covered = vec![false; self.bytes.len()];
        for (at, len, _) in &self.spans {
            covered[*at..at + len].iter_mut().for_each(|c| *c = true);
        }
        (0..self.bytes.len())
            .filter(|&i| !covered[i] && self.bytes[i] != 0)
            .collect()
    }
}

/// A decoded descriptor, as a ring entry or a file holds it.
#[derive(Debug, Clone)]
struct Desc {
    rec: Rec,
    inline: Vec<u8>,
}

impl Desc {
    fn read(r: &mut Reader<'_>, at: usize, prefix: &str) -> Desc {
        let rec = r.record(&DESC, at, prefix);
        let inline = r
            .take(at + INLINE_AT, INLINE_SIZE, format!("{prefix}.inline"))
            .to_vec();
        Desc { rec, inline }
    }

    /// The ring's phase bit: bit 15 of the flags.
    fn phase(&self) -> u64 {
        u64::from(self.rec.get("flags") & FLAG_PHASE != 0)
    }

    fn in_slot(&self) -> bool {
        self.rec.get("flags") & FLAG_SLOT != 0
    }
}

/// A new descriptor at a ring index, and its payload.
#[derive(Debug, Clone)]
struct Queued {
    index: u32,
    position: usize,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct RingD {
    peer: usize,
    direction: &'static str,
    offset: usize,
    rec: Rec,
    entries: Vec<Desc>,
    queued: Vec<Queued>,
}

#[derive(Debug, Clone)]
struct SlotD {
    slot: usize,
    allocated: bool,
    generation: u64,
    holder: u64,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct PoolD {
    pool: usize,
    offset: usize,
    rec: Rec,
    bitmap: Vec<u64>,
    slots: Vec<SlotD>,
}

/// A segment, decoded by the tables.
#[derive(Debug, Clone)]
struct Seg {
    size: usize,
    header: Rec,
    layout: Rec,
    peers: Vec<(usize, Rec)>,
    rings: Vec<RingD>,
    pools: Vec<PoolD>,
    stray: Vec<(usize, String)>,
    /// Every field read: offset, size, name.
    spans: Vec<(usize, usize, String)>,
}

impl Seg {
    fn ring(&self, peer: usize, direction: &str) -> &RingD {
        self.rings
            .iter()
            .find(|r| r.peer == peer && r.direction == direction)
            .unwrap()
    }
}

/// The phase a descriptor at `index` carries in a ring of `capacity`: 1
/// when `floor(index / capacity)` is even (section Rings, `shm.ring.spsc`).
fn phase_of(index: u32, capacity: u32) -> u64 {
    u64::from((index / capacity) % 2 == 0)
}

/// Where the regions of a segment lie, from its configuration (section
/// Layout).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    guests: usize,
    capacity: usize,
    slot_size: usize,
    slots: usize,
    words: usize,
    rings_offset: usize,
    ring_size: usize,
    pools_offset: usize,
    pool_meta_offset: usize,
    pool_data_offset: usize,
    pool_stride: usize,
    total_size: usize,
}

impl Geometry {
    fn of(header: &Rec) -> Geometry {
        let g = header.get("max_guests") as usize;
        let c = header.get("ring_capacity") as usize;
        let z = header.get("slot_size") as usize;
        let s = header.get("slots_per_pool") as usize;
        let w = s.div_ceil(64);
        let rings_offset = align(256 + 64 * g, 64);
        let ring_size = 192 + 64 * c;
        let pools_offset = align(rings_offset + g * 2 * ring_size, 4096);
        let pool_meta_offset = align(POOL_BITMAP + 8 * w, 64);
        let pool_data_offset = align(pool_meta_offset + 64 * s, 4096);
        let pool_stride = align(pool_data_offset + s * z, 4096);
        Geometry {
            guests: g,
            capacity: c,
            slot_size: z,
            slots: s,
            words: w,
            rings_offset,
            ring_size,
            pools_offset,
            pool_meta_offset,
            pool_data_offset,
            pool_stride,
            total_size: align(pools_offset + (g + 1) * pool_stride, 4096),
        }
    }

    fn rec(&self) -> Rec {
        Rec(vec![
            ("peer_table_offset", 256),
            ("rings_offset", self.rings_offset as u64),
            ("ring_size", self.ring_size as u64),
            ("pools_offset", self.pools_offset as u64),
            ("pool_bitmap_offset", POOL_BITMAP as u64),
            ("pool_meta_offset", self.pool_meta_offset as u64),
            ("pool_data_offset", self.pool_data_offset as u64),
            ("pool_stride", self.pool_stride as u64),
            ("total_size", self.total_size as u64),
        ])
    }

    fn pool(&self, i: usize) -> usize {
        self.pools_offset + i * self.pool_stride
    }
}

/// Decodes a segment by the tables, checking as `shm.header.validate`
/// does that the header is one this reader can lay out.
fn decode_segment(bytes: &[u8]) -> Seg {
    let mut r = Reader::new(bytes);
    let header = r.record(&HEADER, 0, "header");
    assert_eq!(header.get("magic"), MAGIC, "magic");
    assert_eq!(header.get("version"), u64::from(TABLES_VERSION), "version");
    assert_eq!(header.get("header_size"), HEADER_SIZE as u64, "header_size");
    assert_eq!(header.get("total_size"), bytes.len() as u64, "total_size");
    let geo = Geometry::of(&header);
    let layout = geo.rec();
    for name in [
        "peer_table_offset",
        "rings_offset",
        "ring_size",
        "pools_offset",
        "pool_data_offset",
        "pool_stride",
        "total_size",
    ] {
        assert_eq!(header.get(name), layout.get(name), "stored {name}");
    }
    let peers = (1..=geo.guests)
        .map(|p| {
            let at = 256 + (p - 1) * ENTRY_SIZE;
            (at, r.record(&ENTRY, at, &format!("peers[{}]", p - 1)))
        })
        .collect();
    let mut rings = Vec::new();
    for p in 1..=geo.guests {
        for (k, direction) in [(0, "guest_to_host"), (1, "host_to_guest")] {
            rings.push(decode_ring(&mut r, &geo, p, k, direction, rings.len()));
        }
    }
    let pools = (0..=geo.guests)
        .map(|i| decode_pool(&mut r, &geo, i))
        .collect();
    let stray = r
        .stray_bytes()
        .into_iter()
        .map(|at| (at, r.near(at)))
        .collect();
    Seg {
        size: bytes.len(),
        header,
        layout,
        peers,
        rings,
        pools,
        stray,
        spans: r.spans,
    }
}

/// Guest `p`'s ring `k` (0 guest-to-host, 1 host-to-guest), the `n`-th of
/// the segment: its control block, every entry, and the new descriptors
/// from its head with their payloads.
fn decode_ring(
    r: &mut Reader<'_>,
    geo: &Geometry,
    p: usize,
    k: usize,
    direction: &'static str,
    n: usize,
) -> RingD {
    let c = geo.capacity;
    let offset = geo.rings_offset + (p - 1) * 2 * geo.ring_size + k * geo.ring_size;
    let prefix = format!("rings[{n}]");
    let rec = r.record(&RING, offset, &prefix);
    let entries: Vec<Desc> = (0..c)
        .map(|pos| {
            let at = offset + RING_HEADER + pos * DESC_SIZE;
            Desc::read(r, at, &format!("{prefix}.entries[{pos}]"))
        })
        .collect();
    // The sender's pool: the guest's own on its ring to the host.
    let sender = if k == 0 { p } else { 0 };
    let head = rec.get("head") as u32;
    let mut queued = Vec::new();
    for n in 0..c as u32 {
        let index = head.wrapping_add(n);
        let position = (index % c as u32) as usize;
        let desc = &entries[position];
        if desc.phase() != phase_of(index, c as u32) {
            break;
        }
        let len = desc.rec.get("payload_len") as usize;
        let payload = if desc.in_slot() {
            let from = geo.pool(sender)
                + geo.pool_data_offset
                + desc.rec.get("slot_index") as usize * geo.slot_size
                + desc.rec.get("slot_offset") as usize;
            r.look(from, len).unwrap_or_default().to_vec()
        } else {
            desc.inline[..len.min(INLINE_SIZE)].to_vec()
        };
        queued.push(Queued {
            index,
            position,
            payload,
        });
    }
    RingD {
        peer: p,
        direction,
        offset,
        rec,
        entries,
        queued,
    }
}

/// Pool `i` (0 the host's): control block, bitmap, and every slot's state
/// word and data.
fn decode_pool(r: &mut Reader<'_>, geo: &Geometry, i: usize) -> PoolD {
    let offset = geo.pool(i);
    let prefix = format!("pools[{i}]");
    let rec = r.record(&POOL, offset, &prefix);
    let bitmap: Vec<u64> = (0..geo.words)
        .map(|k| {
            let at = offset + POOL_BITMAP + 8 * k;
            le(r.take(at, 8, format!("{prefix}.bitmap[{k}]")))
        })
        .collect();
    let slots = (0..geo.slots)
        .map(|slot| {
            let at = offset + geo.pool_meta_offset + slot * SLOT_META_SIZE;
            let meta = r.record(&SLOT_META, at, &format!("{prefix}.slots[{slot}]"));
            let state = meta.get("state");
            let at = offset + geo.pool_data_offset + slot * geo.slot_size;
            let data = r.take(at, geo.slot_size, format!("{prefix}.slots[{slot}].data"));
            SlotD {
                slot,
                allocated: bitmap[slot / 64] & (1 << (slot % 64)) != 0,
                generation: state & 0xFFFF_FFFF,
                holder: state >> 32,
                data: data.to_vec(),
            }
        })
        .collect();
    PoolD {
        pool: i,
        offset,
        rec,
        bitmap,
        slots,
    }
}

/// The fields of a decoded segment that hold their mask: those that vary
/// from run to run.
fn varies(seg: &Seg) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in &seg.header.0 {
        let masked = match *name {
            "created_unix_ns" | "nonce" | "host_heartbeat_ns" | "host_start_time" => {
                *value == TIME_MASK
            }
            "host_pid" => *value == PID_MASK,
            _ => false,
        };
        if masked {
            out.push(format!("header.{name}"));
        }
    }
    for (i, (_, rec)) in seg.peers.iter().enumerate() {
        for (name, value) in &rec.0 {
            let masked = match *name {
                "pid" => *value == PID_MASK,
                "heartbeat_ns" | "start_time" | "claimed_unix_ns" => *value == TIME_MASK,
                _ => false,
            };
            if masked {
                out.push(format!("peers[{i}].{name}"));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The decodings as JSON
// ---------------------------------------------------------------------------

/// A JSON value, written with its keys in the order given.
enum J {
    N(u64),
    S(String),
    B(bool),
    A(Vec<J>),
    O(Vec<(String, J)>),
}

fn obj(fields: Vec<(&str, J)>) -> J {
    J::O(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn rec_fields(rec: &Rec) -> Vec<(String, J)> {
    rec.0
        .iter()
        .map(|(k, v)| (k.to_string(), J::N(*v)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes as text, if they are printable ASCII.
fn text(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)))
        .then(|| String::from_utf8(bytes.to_vec()).unwrap())
}

impl J {
    fn scalar(&self) -> bool {
        !matches!(self, J::A(_) | J::O(_))
    }

    fn write(&self, indent: usize, out: &mut String) {
        let pad = |n: usize| " ".repeat(n);
        match self {
            J::N(n) => write!(out, "{n}").unwrap(),
            J::B(b) => write!(out, "{b}").unwrap(),
            J::S(s) => {
                out.push('"');
                for ch in s.chars() {
                    match ch {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::A(items) if items.is_empty() => out.push_str("[]"),
            J::A(items) if items.iter().all(J::scalar) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(indent, out);
                }
                out.push(']');
            }
            J::A(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 2));
                    item.write(indent + 2, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            J::O(fields) if fields.is_empty() => out.push_str("{}"),
            J::O(fields) => {
                out.push_str("{\n");
                for (i, (key, value)) in fields.iter().enumerate() {
                    write!(out, "{}\"{key}\": ", pad(indent + 2)).unwrap();
                    value.write(indent + 2, out);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        self.write(0, &mut out);
        out.push('\n');
        out
    }
}

fn desc_json(d: &Desc, extra: Vec<(&str, J)>) -> J {
    let mut fields: Vec<(String, J)> = extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    fields.push(("phase".into(), J::N(d.phase())));
    fields.push(("in_slot".into(), J::B(d.in_slot())));
    fields.extend(rec_fields(&d.rec));
    fields.push(("inline_hex".into(), J::S(hex(&d.inline))));
    J::O(fields)
}

fn payload_json(fields: &mut Vec<(&str, J)>, payload: &[u8]) {
    fields.push(("payload_hex", J::S(hex(payload))));
    if let Some(t) = text(payload) {
        fields.push(("payload_text", J::S(t)));
    }
}

/// The fill of a ring judged by its indices (`shm.ring.empty`).
fn fill(head: u32, tail: u32, capacity: u32) -> J {
    let queued = tail.wrapping_sub(head);
    if queued <= capacity {
        J::N(u64::from(queued))
    } else if head.wrapping_sub(tail) <= capacity {
        J::N(0)
    } else {
        J::S("inconsistent".into())
    }
}

fn segment_json(v: &Vector, seg: &Seg) -> J {
    let mut header = vec![(
        "magic_hex".to_string(),
        J::S(format!("{:#018x}", seg.header.get("magic"))),
    )];
    header.extend(rec_fields(&seg.header));
    let capacity = seg.header.get("ring_capacity") as u32;
    obj(vec![
        ("vector", J::S(v.name.into())),
        ("about", J::S(v.about.into())),
        ("file", J::S(format!("{}.bin", v.name))),
        ("format_version", J::N(seg.header.get("version"))),
        ("size", J::N(seg.size as u64)),
        ("varies", J::A(varies(seg).into_iter().map(J::S).collect())),
        ("header", J::O(header)),
        (
            "ready_guests",
            J::A(ready_guests(&seg.header).into_iter().map(J::N).collect()),
        ),
        ("layout", J::O(rec_fields(&seg.layout))),
        (
            "peers",
            J::A(seg.peers.iter().enumerate().map(peer_json).collect()),
        ),
        (
            "rings",
            J::A(seg.rings.iter().map(|r| ring_json(r, capacity)).collect()),
        ),
        ("pools", J::A(seg.pools.iter().map(pool_json).collect())),
    ])
}

fn peer_json((i, (at, rec)): (usize, &(usize, Rec))) -> J {
    let mut fields = vec![
        ("peer_id".to_string(), J::N(i as u64 + 1)),
        ("offset".to_string(), J::N(*at as u64)),
    ];
    fields.extend(rec_fields(rec));
    let state = STATES.get(rec.get("state") as usize).unwrap_or(&"unknown");
    fields.insert(3, ("state_name".into(), J::S(state.to_string())));
    let flags = rec.get("flags");
    fields.push(("held".into(), J::B(flags & FLAG_HELD != 0)));
    fields.push(("locked".into(), J::B(flags & FLAG_LOCKED != 0)));
    let reason = REASONS.get(rec.get("quarantine") as usize);
    let reason = reason.unwrap_or(&"unknown").to_string();
    fields.push(("quarantine_name".into(), J::S(reason)));
    J::O(fields)
}

fn ring_json(ring: &RingD, capacity: u32) -> J {
    let mut fields = vec![
        ("peer_id".to_string(), J::N(ring.peer as u64)),
        ("direction".to_string(), J::S(ring.direction.into())),
        ("offset".to_string(), J::N(ring.offset as u64)),
    ];
    fields.extend(rec_fields(&ring.rec));
    let (head, tail) = (ring.rec.get("head") as u32, ring.rec.get("tail") as u32);
    fields.push(("fill".into(), fill(head, tail, capacity)));
    let queued = ring
        .queued
        .iter()
        .map(|q| {
            let mut f = vec![
                ("index", J::N(u64::from(q.index))),
                ("position", J::N(q.position as u64)),
            ];
            payload_json(&mut f, &q.payload);
            obj(f)
        })
        .collect();
    fields.push(("queued".into(), J::A(queued)));
    let entries = ring
        .entries
        .iter()
        .enumerate()
        .map(|(pos, d)| desc_json(d, vec![("position", J::N(pos as u64))]))
        .collect();
    fields.push(("entries".into(), J::A(entries)));
    J::O(fields)
}

fn pool_json(pool: &PoolD) -> J {
    let owner = match pool.pool {
        0 => "host".to_string(),
        p => format!("guest {p}"),
    };
    let mut fields = vec![
        ("pool".to_string(), J::N(pool.pool as u64)),
        ("owner".to_string(), J::S(owner)),
        ("offset".to_string(), J::N(pool.offset as u64)),
    ];
    fields.extend(rec_fields(&pool.rec));
    let bitmap = pool.bitmap.iter().map(|&w| J::N(w)).collect();
    fields.push(("bitmap".into(), J::A(bitmap)));
    let slots = pool
        .slots
        .iter()
        .map(|s| {
            obj(vec![
                ("slot", J::N(s.slot as u64)),
                ("allocated", J::B(s.allocated)),
                ("generation", J::N(s.generation)),
                ("holder", J::N(s.holder)),
                ("data_hex", J::S(hex(&s.data))),
            ])
        })
        .collect();
    fields.push(("slots".into(), J::A(slots)));
    J::O(fields)
}

fn descriptor_json(v: &Vector, bytes: &[u8]) -> J {
    assert_eq!(bytes.len(), DESC_SIZE, "a descriptor is 64 bytes");
    let mut r = Reader::new(bytes);
    let d = Desc::read(&mut r, 0, "desc");
    let mut fields = vec![
        ("vector", J::S(v.name.into())),
        ("about", J::S(v.about.into())),
        ("file", J::S(format!("{}.bin", v.name))),
        ("format_version", J::N(u64::from(TABLES_VERSION))),
        ("size", J::N(bytes.len() as u64)),
        ("first_word", J::N(le(&bytes[..4]))),
    ];
    if !d.in_slot() {
        let len = (d.rec.get("payload_len") as usize).min(INLINE_SIZE);
        payload_json(&mut fields, &d.inline[..len]);
    }
    fields.push(("descriptor", desc_json(&d, vec![])));
    obj(fields)
}

// ---------------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------------

/// The tiny configuration of every segment vector.
const CONFIG: SegmentConfig = SegmentConfig {
    max_guests: 1,
    ring_capacity: 4,
    slot_size: 64,
    slots_per_pool: 4,
    max_payload: 64,
    heartbeat_interval_ms: 0,
};

/// An id whose eight bytes all differ, to show the byte order.
const ID: u64 = 0x0102_0304_0506_0708;
/// A method id whose four bytes all differ.
const METHOD: u32 = 0xA1B2_C3D4;

fn frame(kind: u16, id: u64, method_id: u32, payload: &[u8]) -> Frame {
    Frame::new(
        MsgDesc {
            msg_type: kind,
            id,
            method_id,
            ..MsgDesc::default()
        },
        payload.to_vec(),
    )
}

/// `len` bytes of `text` repeated.
fn filled(text: &str, len: usize) -> Vec<u8> {
    text.bytes().cycle().take(len).collect()
}

/// The payloads of the scenarios.
fn received_first() -> Vec<u8> {
    filled("received and freed; ", 40)
}
fn hello() -> Vec<u8> {
    b"hello, guest".to_vec()
}
fn in_slot_to_guest() -> Vec<u8> {
    filled("to the guest in a slot; ", 48)
}
fn thirty_two() -> Vec<u8> {
    b"exactly thirty-two bytes, inline".to_vec()
}
fn thirty_three() -> Vec<u8> {
    b"thirty-three bytes go in a slot!!".to_vec()
}

/// What a vector is and how the library makes it.
struct Vector {
    name: &'static str,
    about: &'static str,
    kind: Kind,
}

enum Kind {
    /// A segment made by a scenario.
    Segment(fn(&Path) -> Vec<u8>),
    /// A descriptor cut from a segment vector: its name and the byte
    /// offset of the ring entry.
    Descriptor(&'static str, fn(&Seg) -> usize),
}

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "created",
            about: "a segment just created: 1 guest, rings of 4, 4 slots of 64 bytes per pool; nothing attached",
            kind: Kind::Segment(created),
        },
        Vector {
            name: "exchange",
            about: "guest 1 attached; the host sent a 40-byte slot message the guest read (slot 0 freed at generation 1), then an inline request and a 48-byte slot message (slot 0 again, generation 2), both queued; the guest sent a 32-byte inline response and a 33-byte slot message (type 0x1234), both queued",
            kind: Kind::Segment(exchange),
        },
        Vector {
            name: "goodbye",
            about: "guest 1 sent an inline message and a 40-byte slot message, then detached before the host read them: the entry is Goodbye, its holder cleared",
            kind: Kind::Segment(goodbye),
        },
        Vector {
            name: "scripted",
            about: "guest 1 attached, sent one inline message and released its entry to scripts: Attached without HELD, no pid",
            kind: Kind::Segment(scripted),
        },
        Vector {
            name: "reserved",
            about: "the host reserved entry 1 and sent ahead an inline message and a 50-byte slot message; nobody has attached",
            kind: Kind::Segment(reserved),
        },
        Vector {
            name: "quarantined",
            about: "guest 1 attached; the host sent it a 40-byte slot message and it sent an inline message, both queued; then the host evicted it (reason 4): Quarantined, its holder (alive) and everything else left as they were",
            kind: Kind::Segment(quarantined),
        },
        Vector {
            name: "wrapped",
            about: "ring indices across 2^32: the host-to-guest ring started at 2^32-2 (3 sent, 1 read), the guest-to-host ring at 2^32-3 (4 sent, 2 read); both now have head 4294967295 and tail 1",
            kind: Kind::Segment(wrapped),
        },
        Vector {
            name: "desc-inline",
            about: "the inline request of the exchange vector (host to guest, ring index 1) as the ring holds it: phase bit set (lap 0)",
            kind: Kind::Descriptor("exchange", |seg| {
                seg.ring(1, "host_to_guest").offset + RING_HEADER + DESC_SIZE
            }),
        },
        Vector {
            name: "desc-slot",
            about: "the 33-byte slot message of the exchange vector (guest to host, ring index 1) as the ring holds it: phase bit set (lap 0)",
            kind: Kind::Descriptor("exchange", |seg| {
                seg.ring(1, "guest_to_host").offset + RING_HEADER + DESC_SIZE
            }),
        },
        Vector {
            name: "desc-odd-lap",
            about: "the wrapped vector's host-to-guest descriptor at ring index 4294967295 (position 3, an odd lap): phase bit clear",
            kind: Kind::Descriptor("wrapped", |seg| {
                seg.ring(1, "host_to_guest").offset + RING_HEADER + 3 * DESC_SIZE
            }),
        },
    ]
}

/// The whole segment of `host`, as the library left it.
fn segment_bytes(host: &ShmHost) -> Vec<u8> {
    let region = host.region();
    let mut bytes = vec![0u8; region.len()];
    region.read(0, &mut bytes).unwrap();
    bytes
}

fn created(path: &Path) -> Vec<u8> {
    let host = ShmHost::create(path, CONFIG).unwrap();
    segment_bytes(&host)
}

fn exchange(path: &Path) -> Vec<u8> {
    let mut host = ShmHost::create(path, CONFIG).unwrap();
    let mut guest = ShmGuest::attach_path(path).unwrap();
    host.try_send(1, frame(msg_type::DATA, 1, 0, &received_first()))
        .unwrap();
    let first = guest.try_recv().unwrap().unwrap();
    assert_eq!(first.payload(), received_first());
    host.try_send(1, frame(msg_type::REQUEST, ID, METHOD, &hello()))
        .unwrap();
    host.try_send(1, frame(msg_type::DATA, 2, 0, &in_slot_to_guest()))
        .unwrap();
    guest
        .try_send(frame(msg_type::RESPONSE, ID, METHOD, &thirty_two()))
        .unwrap();
    guest
        .try_send(frame(0x1234, 7, 9, &thirty_three()))
        .unwrap();
    let bytes = segment_bytes(&host);
    drop(guest);
    bytes
}

fn goodbye(path: &Path) -> Vec<u8> {
    let host = ShmHost::create(path, CONFIG).unwrap();
    let mut guest = ShmGuest::attach_path(path).unwrap();
    guest.try_send(frame(msg_type::DATA, 1, 0, b"bye")).unwrap();
    guest
        .try_send(frame(
            msg_type::DATA,
            2,
            0,
            &filled("left for the host; ", 40),
        ))
        .unwrap();
    guest.detach().unwrap();
    segment_bytes(&host)
}

fn scripted(path: &Path) -> Vec<u8> {
    let host = ShmHost::create(path, CONFIG).unwrap();
    let mut guest = ShmGuest::attach_path(path).unwrap();
    guest
        .try_send(frame(msg_type::DATA, 1, 0, b"from a scripted guest"))
        .unwrap();
    guest.release_to_script().unwrap();
    segment_bytes(&host)
}

fn reserved(path: &Path) -> Vec<u8> {
    let mut host = ShmHost::create(path, CONFIG).unwrap();
    assert_eq!(host.reserve_peer().unwrap(), 1);
    host.try_send(1, frame(msg_type::DATA, 1, 0, b"welcome"))
        .unwrap();
    host.try_send(1, frame(msg_type::DATA, 2, 0, &filled("sent ahead; ", 50)))
        .unwrap();
    segment_bytes(&host)
}

fn quarantined(path: &Path) -> Vec<u8> {
    let mut host = ShmHost::create(path, CONFIG).unwrap();
    let mut guest = ShmGuest::attach_path(path).unwrap();
    host.try_send(
        guest.peer_id(),
        frame(msg_type::DATA, 1, 0, &filled("sent before; ", 40)),
    )
    .unwrap();
    guest
        .try_send(frame(msg_type::DATA, 2, 0, b"before the eviction"))
        .unwrap();
    // This process holds the guest, so its entry is not freed.
    assert!(!host.evict(guest.peer_id()).unwrap());
    let bytes = segment_bytes(&host);
    drop(guest);
    bytes
}

/// Makes a fresh ring of the segment start at index `start`: both indices
/// there, and each entry carrying the phase of the index that last wrote
/// it (one lap before), so that nothing in it is new.
fn start_ring_at(region: &Region, ring: u64, capacity: u32, start: u32) {
    use std::sync::atomic::Ordering;
    region.store_u32(ring, start, Ordering::Relaxed).unwrap();
    region
        .store_u32(ring + 64, start, Ordering::Relaxed)
        .unwrap();
    for back in 1..=capacity {
        let index = start.wrapping_sub(back);
        let entry = ring + RING_HEADER as u64 + u64::from(index % capacity) * DESC_SIZE as u64;
        let first = (phase_of(index, capacity) as u32) << 31;
        region.store_u32(entry, first, Ordering::Relaxed).unwrap();
    }
}

fn wrapped(path: &Path) -> Vec<u8> {
    let mut host = ShmHost::create(path, CONFIG).unwrap();
    let layout = *host.layout();
    let region = host.region();
    let capacity = CONFIG.ring_capacity;
    start_ring_at(
        &region,
        layout.host_to_guest_ring(PeerId::new(1).unwrap()),
        capacity,
        u32::MAX - 1,
    );
    start_ring_at(
        &region,
        layout.guest_to_host_ring(PeerId::new(1).unwrap()),
        capacity,
        u32::MAX - 2,
    );
    let mut guest = ShmGuest::attach_path(path).unwrap();
    for id in 1..=3 {
        host.try_send(
            1,
            frame(msg_type::DATA, id, 0, format!("to guest {id}").as_bytes()),
        )
        .unwrap();
    }
    assert_eq!(guest.try_recv().unwrap().unwrap().desc.id, 1);
    for id in 11..=14 {
        guest
            .try_send(frame(
                msg_type::DATA,
                id,
                0,
                format!("to host {id}").as_bytes(),
            ))
            .unwrap();
    }
    for id in [11, 12] {
        assert_eq!(host.try_recv().unwrap().unwrap().1.desc.id, id);
    }
    let bytes = segment_bytes(&host);
    drop(guest);
    bytes
}

// ---------------------------------------------------------------------------
// Making, writing and loading the vectors
// ---------------------------------------------------------------------------

fn path_of(name: &str, ext: &str) -> PathBuf {
    Path::new(DIR).join(format!("{name}.{ext}"))
}

/// Every vector's bytes as the library makes them now, masked.
fn made_now() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut made: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for v in vectors() {
        let bytes = match v.kind {
            Kind::Segment(scenario) => {
                let mut bytes = scenario(&dir.path().join(format!("{}.shm", v.name)));
                mask(&mut bytes);
                bytes
            }
            Kind::Descriptor(from, at) => {
                let source = &made.iter().find(|(n, _)| *n == from).unwrap().1;
                let at = at(&decode_segment(source));
                source[at..at + DESC_SIZE].to_vec()
            }
        };
        made.push((v.name, bytes));
    }
    made
}

fn load(name: &str) -> Vec<u8> {
    let path = path_of(name, "bin");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write the vectors with {WRITE_ENV}=1 (tests/vectors/README.md)",
            path.display()
        )
    })
}

/// The decoding of vector `v` with bytes `bytes`, as JSON text.
fn decoding(v: &Vector, bytes: &[u8]) -> String {
    match v.kind {
        Kind::Segment(_) => segment_json(v, &decode_segment(bytes)).render(),
        Kind::Descriptor(..) => descriptor_json(v, bytes).render(),
    }
}

/// The first byte where `now` and `recorded` differ, named by the field
/// there (or the last field before it).
fn first_difference(now: &[u8], recorded: &[u8]) -> String {
    if now.len() != recorded.len() {
        return format!("{} bytes now, {} recorded", now.len(), recorded.len());
    }
    let at = (0..now.len()).find(|&i| now[i] != recorded[i]).unwrap();
    let spans = if now.len() == DESC_SIZE {
        let mut r = Reader::new(now);
        Desc::read(&mut r, 0, "desc");
        r.spans
    } else {
        decode_segment(now).spans
    };
    let names = Reader { bytes: now, spans };
    format!(
        "byte {at} ({}): {:#04x} now, {:#04x} recorded",
        names.near(at),
        now[at],
        recorded[at]
    )
}

static READY: Mutex<bool> = Mutex::new(false);

/// In write mode, writes every vector (once per run, before any test reads
/// them); otherwise does nothing.
fn vectors_ready() {
    let mut done = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    *done = true;
    let Ok(mode) = std::env::var(WRITE_ENV) else {
        return;
    };
    let same_version_allowed = match mode.as_str() {
        "1" => false,
        "same-version" => true,
        other => panic!("{WRITE_ENV}={other:?}: use 1 or same-version"),
    };
    let recorded_version = std::fs::read_to_string(Path::new(DIR).join("VERSION")).ok();
    let same_version = recorded_version.as_deref().map(str::trim) == Some(&VERSION.to_string());
    let made = made_now();
    if same_version && !same_version_allowed {
        let changed: Vec<String> = made
            .iter()
            .filter_map(|(name, bytes)| {
                let old = std::fs::read(path_of(name, "bin")).ok()?;
                (old != *bytes).then(|| format!("{name}: {}", first_difference(bytes, &old)))
            })
            .collect();
        assert!(
            changed.is_empty(),
            "the library writes other bytes for these vectors while the format version \
             stays {VERSION}:\n  {}\nA change of the format needs a new version \
             (VERSION in src/lib/header.rs and docs/spec.md); a change of what a scenario \
             does, not of the format, is written with {WRITE_ENV}=same-version.",
            changed.join("\n  ")
        );
    }
    std::fs::create_dir_all(DIR).unwrap();
    for v in vectors() {
        let bytes = &made.iter().find(|(n, _)| *n == v.name).unwrap().1;
        std::fs::write(path_of(v.name, "bin"), bytes).unwrap();
        std::fs::write(path_of(v.name, "json"), decoding(&v, bytes)).unwrap();
    }
    std::fs::write(Path::new(DIR).join("VERSION"), format!("{VERSION}\n")).unwrap();
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

// Run through every scenario again, the library writes exactly the bytes
// of the vectors (the fields that vary from run to run masked).
// shm[verify shm.header.version]
// shm[verify shm.header.layout]
#[test]
fn the_library_writes_the_bytes_of_every_vector() {
    vectors_ready();
    let mut changed = Vec::new();
    for (name, bytes) in made_now() {
        let recorded = load(name);
        if recorded != bytes {
            changed.push(format!("{name}: {}", first_difference(&bytes, &recorded)));
        }
    }
    assert!(
        changed.is_empty(),
        "the library no longer writes the vectors' bytes:\n  {}\n\
         If the format changed, give it a new version (VERSION, docs/spec.md) and write \
         the vectors again with {WRITE_ENV}=1 (tests/vectors/README.md).",
        changed.join("\n  ")
    );
}

// Each vector decodes, by the spec's tables, exactly as its decoding
// says, and no byte outside the tables' fields is other than zero.
// shm[verify shm.header.version]
// shm[verify shm.peer.table]
// shm[verify shm.ring.spsc]
// shm[verify shm.pool.bitmap]
#[test]
fn every_vector_decodes_as_its_decoding_says() {
    vectors_ready();
    for v in vectors() {
        let bytes = load(v.name);
        if let Kind::Segment(_) = v.kind {
            let seg = decode_segment(&bytes);
            assert!(
                seg.stray.is_empty(),
                "{}: bytes outside every field are not zero: {:?}",
                v.name,
                seg.stray
            );
        }
        let path = path_of(v.name, "json");
        let recorded = std::fs::read_to_string(&path).unwrap();
        let decoded = decoding(&v, &bytes);
        if decoded != recorded {
            let line = decoded
                .lines()
                .zip(recorded.lines())
                .position(|(a, b)| a != b)
                .map_or("the end".to_string(), |i| format!("line {}", i + 1));
            panic!(
                "{} does not decode as {} says (first difference at {line})",
                v.name,
                path.display()
            );
        }
    }
}

/// What the reader found in a ring: (index, msg_type, id, method_id,
/// payload) of each queued message.
fn queued(seg: &Seg, direction: &str) -> Vec<(u32, u64, u64, u64, Vec<u8>)> {
    let ring = seg.ring(1, direction);
    ring.queued
        .iter()
        .map(|q| {
            let d = &ring.entries[q.position].rec;
            (
                q.index,
                d.get("msg_type"),
                d.get("id"),
                d.get("method_id"),
                q.payload.clone(),
            )
        })
        .collect()
}

/// (state, epoch, pid, flags) of entry 1, the pid masked or 0.
fn entry_one(seg: &Seg) -> (u64, u64, u64, u64) {
    let e = &seg.peers[0].1;
    (e.get("state"), e.get("epoch"), e.get("pid"), e.get("flags"))
}

/// (allocated, generation, holder) of slot `slot` of pool `pool`.
fn slot(seg: &Seg, pool: usize, slot: usize) -> (bool, u64, u64) {
    let s = &seg.pools[pool].slots[slot];
    (s.allocated, s.generation, s.holder)
}

fn ring_word(seg: &Seg, direction: &str, name: &str) -> u64 {
    seg.ring(1, direction).rec.get(name)
}

// The decodings say what each scenario did, as written here by hand:
// the messages queued and their payloads, entries, slots and counters.
// shm[verify shm.send.placement]
// shm[verify shm.peer.states]
// shm[verify shm.wrap]
#[test]
fn each_decoding_says_what_its_scenario_did() {
    vectors_ready();
    let seg = |name: &str| decode_segment(&load(name));
    expect_created(&seg("created"));
    expect_exchange(&seg("exchange"));
    expect_left(&seg("goodbye"), &seg("scripted"), &seg("reserved"));
    expect_quarantined(&seg("quarantined"));
    expect_wrapped(&seg("wrapped"));
    let odd = load("desc-odd-lap");
    assert_eq!(le(&odd[2..4]) & FLAG_PHASE, 0, "an odd lap's phase is 0");
    assert_eq!(le(&load("desc-inline")[2..4]), FLAG_PHASE);
    assert_eq!(le(&load("desc-slot")[2..4]), FLAG_PHASE | FLAG_SLOT);
}

fn expect_created(created: &Seg) {
    assert_eq!(created.size, 20480);
    assert_eq!(created.header.get("host_pid"), PID_MASK);
    assert_eq!(entry_one(created), (0, 0, 0, 0));
    assert!(created.rings.iter().all(|r| r.queued.is_empty()));
    let untouched = |p: &PoolD| p.bitmap == [0] && p.rec.get("releases") == 0;
    assert!(created.pools.iter().all(untouched));
}

fn expect_exchange(exchange: &Seg) {
    let (data, request, response) = (
        u64::from(msg_type::DATA),
        u64::from(msg_type::REQUEST),
        u64::from(msg_type::RESPONSE),
    );
    let method = u64::from(METHOD);
    let attached = (2, 1, PID_MASK, FLAG_HELD | FLAG_LOCKED);
    assert_eq!(entry_one(exchange), attached);
    assert_eq!(
        queued(exchange, "host_to_guest"),
        [
            (1, request, ID, method, hello()),
            (2, data, 2, 0, in_slot_to_guest()),
        ]
    );
    assert_eq!(
        queued(exchange, "guest_to_host"),
        [
            (0, response, ID, method, thirty_two()),
            (1, 0x1234, 7, 9, thirty_three()),
        ]
    );
    // Slot 0 of the host's pool: freed at generation 1, allocated again,
    // held by guest 1 (code 2); slot 0 of the guest's, held by the host.
    assert_eq!(slot(exchange, 0, 0), (true, 2, 2));
    assert_eq!(exchange.pools[0].rec.get("releases"), 1);
    assert_eq!(slot(exchange, 1, 0), (true, 1, 1));
    let handed = ring_word(exchange, "host_to_guest", "host_slots_handed");
    let returned = ring_word(exchange, "host_to_guest", "host_slots_returned");
    assert_eq!((handed, returned), (2, 1));
}

/// The entries a guest left (Goodbye, scripted) and one nobody has taken
/// yet (reserved).
fn expect_left(goodbye: &Seg, scripted: &Seg, reserved: &Seg) {
    assert_eq!(entry_one(goodbye), (3, 1, 0, 0));
    assert_eq!(goodbye.peers[0].1.get("start_time"), 0);
    let ids: Vec<u64> = queued(goodbye, "guest_to_host")
        .iter()
        .map(|m| m.2)
        .collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(slot(goodbye, 1, 0), (true, 1, 1));

    assert_eq!(entry_one(scripted), (2, 1, 0, 0));
    let sent = &queued(scripted, "guest_to_host")[0].4;
    assert_eq!(sent, b"from a scripted guest");

    // Reserved, epoch 0, its reserver recorded (HELD, no presence lock),
    // the pid masked as every pid is.
    assert_eq!(entry_one(reserved), (1, 0, 0x7FFF_FFFF, 1));
    let lengths: Vec<usize> = queued(reserved, "host_to_guest")
        .iter()
        .map(|m| m.4.len())
        .collect();
    assert_eq!(lengths, [7, 50]);
    assert_eq!(slot(reserved, 0, 0), (true, 1, 2));
    let handed = ring_word(reserved, "host_to_guest", "host_slots_handed");
    assert_eq!(handed, 1);
}

/// Evicted while its holder lives: Quarantined for reason 4, nothing
/// else touched (what it holds is freed only once its holder is gone).
fn expect_quarantined(quarantined: &Seg) {
    let held = (4, 1, PID_MASK, FLAG_HELD | FLAG_LOCKED);
    assert_eq!(entry_one(quarantined), held);
    assert_eq!(quarantined.peers[0].1.get("quarantine"), 4);
    let lengths = |direction| -> Vec<usize> {
        queued(quarantined, direction)
            .iter()
            .map(|m| m.4.len())
            .collect()
    };
    assert_eq!(lengths("host_to_guest"), [40]);
    assert_eq!(lengths("guest_to_host"), [19]);
    assert_eq!(slot(quarantined, 0, 0), (true, 1, 2));
}

fn expect_wrapped(wrapped: &Seg) {
    for direction in ["host_to_guest", "guest_to_host"] {
        let head = ring_word(wrapped, direction, "head");
        let tail = ring_word(wrapped, direction, "tail");
        assert_eq!((head, tail), (u64::from(u32::MAX), 1), "{direction}");
    }
    let ids = |direction| -> Vec<(u32, u64)> {
        queued(wrapped, direction)
            .iter()
            .map(|m| (m.0, m.2))
            .collect()
    };
    assert_eq!(ids("host_to_guest"), [(u32::MAX, 2), (0, 3)]);
    assert_eq!(ids("guest_to_host"), [(u32::MAX, 13), (0, 14)]);
}

// The library's own views (header, inspection, peek, slots) read every
// segment vector as the spec's tables do.
// shm[verify shm.header.validate]
// shm[verify shm.inspect.read-only]
#[test]
fn the_library_reads_the_vectors_as_the_tables_do() {
    vectors_ready();
    for v in vectors() {
        let bytes = load(v.name);
        if let Kind::Descriptor(..) = v.kind {
            library_agrees_on_descriptor(v.name, &bytes);
            continue;
        }
        let seg = decode_segment(&bytes);
        let region = HeapRegion::new_zeroed(bytes.len()).unwrap().region();
        region.write(0, &bytes).unwrap();
        library_agrees_on_header(v.name, &seg, &region);
        library_agrees_on_entries_and_rings(v.name, &seg, &region);
        library_agrees_on_queued_messages(v.name, &seg, &region);
        library_agrees_on_slots(v.name, &seg, &region);
    }
}

/// `MsgDesc::from_bytes` reads a descriptor vector as the table does.
fn library_agrees_on_descriptor(name: &str, bytes: &[u8]) {
    let desc = MsgDesc::from_bytes(bytes.try_into().unwrap());
    let mine = Desc::read(&mut Reader::new(bytes), 0, "desc");
    for (field, value) in [
        ("msg_type", u64::from(desc.msg_type)),
        ("flags", u64::from(desc.flags)),
        ("payload_len", u64::from(desc.payload_len)),
        ("id", desc.id),
        ("method_id", u64::from(desc.method_id)),
        ("slot_index", u64::from(desc.slot_index)),
        ("slot_generation", u64::from(desc.slot_generation)),
        ("slot_offset", u64::from(desc.slot_offset)),
    ] {
        assert_eq!(value, mine.rec.get(field), "{name}: {field}");
    }
    assert_eq!(desc.inline.to_vec(), mine.inline, "{name}: inline");
}

/// The library's header reader (through `shmhub::admin::inspect_region`).
fn library_agrees_on_header(name: &str, seg: &Seg, region: &Region) {
    let info = shmhub::admin::inspect_region(region, None).unwrap().header;
    let (l, c) = (&info.layout, &info.layout.config);
    for (field, value) in [
        ("version", u64::from(info.version)),
        ("total_size", l.total_size),
        ("max_guests", u64::from(c.max_guests)),
        ("ring_capacity", u64::from(c.ring_capacity)),
        ("slot_size", u64::from(c.slot_size)),
        ("slots_per_pool", u64::from(c.slots_per_pool)),
        ("max_payload", u64::from(c.max_payload)),
        ("heartbeat_interval_ms", u64::from(c.heartbeat_interval_ms)),
        ("peer_table_offset", l.peer_table_offset),
        ("rings_offset", l.rings_offset),
        ("ring_size", l.ring_size),
        ("pools_offset", l.pools_offset),
        ("pool_stride", l.pool_stride),
        ("pool_data_offset", l.pool_data_offset),
        ("created_unix_ns", info.created_unix_ns),
        ("nonce", info.nonce),
        ("host_slots_per_guest", u64::from(info.host_slots_per_guest)),
        ("host_goodbye", u64::from(info.host_goodbye)),
        ("host_pid", u64::from(info.host_pid)),
        ("host_heartbeat_ns", info.host_heartbeat_ns),
        ("host_start_time", info.host_start_time),
    ] {
        assert_eq!(value, seg.header.get(field), "{name}: header.{field}");
    }
    for (field, value) in [
        ("pool_bitmap_offset", l.pool_bitmap_offset),
        ("pool_meta_offset", l.pool_meta_offset),
    ] {
        assert_eq!(value, seg.layout.get(field), "{name}: layout.{field}");
    }
}

/// The library's inspection (`inspect_region`): every entry, both rings'
/// indices, the host's slots each guest holds, and each pool's use.
fn library_agrees_on_entries_and_rings(name: &str, seg: &Seg, region: &Region) {
    let report = shmhub::admin::inspect_region(region, None).unwrap();
    for (i, peer) in report.peers.iter().enumerate() {
        let (e, entry) = (&seg.peers[i].1, &peer.entry);
        let flags = e.get("flags");
        for (field, value, mine) in [
            ("state", u64::from(entry.state.to_u32()), e.get("state")),
            ("epoch", u64::from(entry.epoch), e.get("epoch")),
            ("pid", u64::from(entry.pid), e.get("pid")),
            ("held", u64::from(entry.held), flags & FLAG_HELD),
            ("locked", u64::from(entry.locked), flags >> 1 & 1),
            ("heartbeat_ns", entry.heartbeat_ns, e.get("heartbeat_ns")),
            ("start_time", entry.start_time, e.get("start_time")),
            ("claimed", entry.claimed_unix_ns, e.get("claimed_unix_ns")),
            // Meaningful only in a Quarantined entry.
            (
                "quarantine",
                entry.quarantine.map_or(0, |r| u64::from(r.to_u32())),
                if e.get("state") == 4 {
                    e.get("quarantine")
                } else {
                    0
                },
            ),
        ] {
            assert_eq!(value, mine, "{name}: peers[{i}].{field}");
        }
        let to_guest = &seg.ring(i + 1, "host_to_guest").rec;
        let held = to_guest.get("host_slots_handed") as u32;
        let held = held.wrapping_sub(to_guest.get("host_slots_returned") as u32);
        assert_eq!(entry.host_slots_held, held, "{name}: host slots held");
        for (state, direction) in [
            (peer.to_host, "guest_to_host"),
            (peer.to_guest, "host_to_guest"),
        ] {
            let rec = &seg.ring(i + 1, direction).rec;
            let indices = (u64::from(state.head), u64::from(state.tail));
            assert_eq!(indices, (rec.get("head"), rec.get("tail")), "{name}");
        }
    }
    for (pool, mine) in report.pools.iter().zip(&seg.pools) {
        let used = mine.slots.iter().filter(|s| s.allocated).count();
        assert_eq!(pool.usage.used as usize, used, "{name}: pool {}", mine.pool);
    }
}

/// The library's peek (`peek_region`): every queued message, its fields
/// and its payload.
fn library_agrees_on_queued_messages(name: &str, seg: &Seg, region: &Region) {
    let peek = shmhub::admin::peek_region(region, &PeekOptions::default()).unwrap();
    let mut listed = 0;
    for ring in &peek.rings {
        let direction = match ring.direction {
            Direction::GuestToHost => "guest_to_host",
            Direction::HostToGuest => "host_to_guest",
        };
        let mine = seg.ring(usize::from(ring.peer), direction);
        assert_eq!(ring.messages.len(), mine.queued.len(), "{name}");
        for (m, q) in ring.messages.iter().zip(&mine.queued) {
            let d = &mine.entries[q.position].rec;
            let slot = (d.get("flags") & FLAG_SLOT != 0)
                .then(|| (d.get("slot_index"), d.get("slot_generation")));
            assert_eq!(m.problem, None, "{name}");
            assert_eq!(
                (m.position, u64::from(m.msg_type), m.id),
                (q.index, d.get("msg_type"), d.get("id")),
                "{name}"
            );
            assert_eq!(
                (u64::from(m.method_id), u64::from(m.flags), u64::from(m.len)),
                (
                    d.get("method_id"),
                    d.get("flags") & !FLAG_PHASE,
                    d.get("payload_len")
                ),
                "{name}"
            );
            let theirs = m
                .slot
                .map(|s| (u64::from(s.index), u64::from(s.generation)));
            assert_eq!(theirs, slot, "{name}");
            let preview = m.preview.as_ref().map(|p| p.hex.clone());
            assert_eq!(preview, Some(hex(&q.payload)), "{name}");
            listed += 1;
        }
    }
    let queued: usize = seg.rings.iter().map(|r| r.queued.len()).sum();
    assert_eq!(listed, queued, "{name}: every queued message");
}

/// The library's slot listing (`inspect_slots_region`): every allocated
/// slot with its generation and holder.
fn library_agrees_on_slots(name: &str, seg: &Seg, region: &Region) {
    let slots = shmhub::admin::inspect_slots_region(region, None).unwrap();
    let mine: Vec<(u8, u32, u32, u32)> = seg
        .pools
        .iter()
        .flat_map(|p| {
            let pool = p.pool as u8;
            p.slots.iter().filter(|s| s.allocated).map(move |s| {
                let (slot, generation) = (s.slot as u32, s.generation as u32);
                (pool, slot, generation, s.holder as u32)
            })
        })
        .collect();
    let theirs: Vec<(u8, u32, u32, u32)> = slots
        .slots
        .iter()
        .map(|s| (s.pool, s.slot, s.generation, s.holder_code))
        .collect();
    assert_eq!(theirs, mine, "{name}: slots");
}

/// The format version docs/spec.md gives in its header table.
fn spec_version() -> u32 {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec.md")).unwrap();
    let row = spec
        .lines()
        .find(|l| l.starts_with("| 8 | 4 | u32 | `version` |"))
        .expect("the header table's version row");
    let after = row
        .split("format version, `")
        .nth(1)
        .expect("format version, `N`");
    after[..after.find('`').unwrap()].parse().unwrap()
}

// docs/spec.md, the library, the tables of this reader and the vectors
// (their VERSION file, every decoding, every segment's header) name one
// format version.
// shm[verify shm.header.version]
#[test]
fn the_spec_the_library_the_tables_and_the_vectors_name_one_version() {
    vectors_ready();
    let recorded: u32 = std::fs::read_to_string(Path::new(DIR).join("VERSION"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        (spec_version(), VERSION, TABLES_VERSION, recorded),
        (VERSION, VERSION, VERSION, VERSION),
        "docs/spec.md, shmhub::format::VERSION, this file's tables and tests/vectors/VERSION"
    );
    for v in vectors() {
        let json = std::fs::read_to_string(path_of(v.name, "json")).unwrap();
        let needle = format!("\"format_version\": {VERSION},");
        assert!(json.contains(&needle), "{}: {needle}", v.name);
        if let Kind::Segment(_) = v.kind {
            assert_eq!(le(&load(v.name)[8..12]), u64::from(VERSION), "{}", v.name);
        }
    }
}

// ---------------------------------------------------------------------------
// The tables here against the byte tables of docs/spec.md
// ---------------------------------------------------------------------------

/// The columns of every byte table of docs/spec.md.
const SPEC_COLUMNS: [&str; 5] = ["offset", "size", "type", "field", "meaning"];

/// A byte table of docs/spec.md: its section, the line it starts on, and
/// each row's line and cells (code spans kept in backquotes).
struct SpecTable {
    section: String,
    line: usize,
    rows: Vec<(usize, Vec<String>)>,
}

impl SpecTable {
    /// The cells of the row of field `name`.
    fn row(&self, name: &str) -> Option<&(usize, Vec<String>)> {
        let cell = format!("`{name}`");
        self.rows.iter().find(|(_, cells)| cells[3] == cell)
    }
}

/// Every table of `spec` whose columns are [`SPEC_COLUMNS`], in order, each
/// with the `##` section it is in.
fn spec_byte_tables(spec: &str) -> Vec<SpecTable> {
    use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
    let line_of = |at: usize| spec[..at].matches('\n').count() + 1;
    let (mut tables, mut section, mut in_section_heading) = (Vec::new(), String::new(), false);
    let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
    let (mut table_line, mut cell) = (0, None::<String>);
    for (event, range) in Parser::new_ext(spec, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H2,
                ..
            }) => {
                in_section_heading = true;
                section.clear();
            }
            Event::End(TagEnd::Heading(HeadingLevel::H2)) => in_section_heading = false,
            Event::Start(Tag::Table(_)) => {
                table_line = line_of(range.start);
                rows.clear();
            }
            Event::Start(Tag::TableHead | Tag::TableRow) => {
                rows.push((line_of(range.start), Vec::new()));
            }
            Event::Start(Tag::TableCell) => cell = Some(String::new()),
            Event::End(TagEnd::TableCell) => {
                let text = cell.take().unwrap_or_default();
                rows.last_mut().unwrap().1.push(text.trim().to_string());
            }
            Event::Text(_) | Event::Code(_) => {
                let text = match &event {
                    Event::Code(code) => format!("`{code}`"),
                    Event::Text(text) => text.to_string(),
                    _ => unreachable!(),
                };
                match &mut cell {
                    Some(cell) => cell.push_str(&text),
                    None if in_section_heading => section.push_str(&text),
                    None => {}
                }
            }
            Event::End(TagEnd::Table) if rows.first().is_some_and(|r| r.1 == SPEC_COLUMNS) => {
                // A row short of cells reads as if they were empty.
                let padded = rows.drain(1..).map(|(line, mut cells)| {
                    cells.resize(SPEC_COLUMNS.len(), String::new());
                    (line, cells)
                });
                tables.push(SpecTable {
                    section: section.clone(),
                    line: table_line,
                    rows: padded.collect(),
                });
            }
            _ => {}
        }
    }
    tables
}

/// The bytes a scalar or array type of the spec's `type` column takes
/// (`u32`, `u64[4]`); `None` for any other (`—`, `MsgDesc[C]`).
fn type_size(ty: &str) -> Option<usize> {
    let (scalar, count) = match ty.split_once('[') {
        Some((scalar, count)) => (scalar, count.strip_suffix(']')?.parse().ok()?),
        None => (ty, 1),
    };
    let bits: usize = scalar.strip_prefix('u')?.parse().ok()?;
    Some(bits / 8 * count)
}

/// Where `table` and the table `m` maps to it disagree, one line each,
/// naming the field.
fn check_table(m: &Mapping, table: &SpecTable) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut next, mut repeats) = (0, false);
    let mut listed = Vec::new();
    for (line, cells) in &table.rows {
        let here = format!("docs/spec.md:{line} ({}, {})", m.section, m.ours);
        let [offset, size, ty, field] = [0, 1, 2, 3].map(|i| cells[i].as_str());
        let Ok(offset) = offset.parse::<usize>() else {
            problems.push(format!("{here}: offset {offset:?} is not a number"));
            continue;
        };
        if offset != next || repeats {
            problems.push(format!(
                "{here}: {field} starts at {offset}, where the rows before end at {next}"
            ));
        }
        let Ok(size) = size.parse::<usize>() else {
            // A last row that repeats to the end of the structure.
            if m.then.as_deref() != Some(size) || offset != m.size {
                problems.push(format!(
                    "{here}: {field} of {size} bytes at {offset}; {} ends at {} with {:?}",
                    m.ours, m.size, m.then
                ));
            }
            repeats = true;
            continue;
        };
        next = offset + size;
        if field == "reserved" {
            continue;
        }
        let Some(name) = field.strip_prefix('`').and_then(|f| f.strip_suffix('`')) else {
            problems.push(format!(
                "{here}: field {field:?} is neither `a name` nor reserved"
            ));
            continue;
        };
        listed.push(name.to_string());
        if type_size(ty).is_some_and(|bytes| bytes != size) {
            problems.push(format!("{here}: field `{name}` is a {ty} but {size} bytes"));
        }
        match m.fields.iter().find(|f| f.0 == name) {
            None => problems.push(format!(
                "{here}: field `{name}` (offset {offset}, {size} bytes) is missing from {} \
                 in tests/vectors.rs",
                m.ours
            )),
            Some(&(_, at, bytes)) if (at, bytes) != (offset, size) => problems.push(format!(
                "{here}: field `{name}` is at offset {offset}, {size} bytes; {} in \
                 tests/vectors.rs has it at offset {at}, {bytes} bytes",
                m.ours
            )),
            Some(_) => {}
        }
    }
    if !repeats && (next != m.size || m.then.is_some()) {
        problems.push(format!(
            "docs/spec.md:{} ({}): the rows end at {next}; {} is {} bytes{}",
            table.line,
            m.section,
            m.ours,
            m.size,
            m.then
                .as_ref()
                .map_or(String::new(), |t| format!(", then {t}"))
        ));
    }
    for (name, at, bytes) in &m.fields {
        if !listed.iter().any(|l| l == name) {
            problems.push(format!(
                "{}'s field `{name}` (offset {at}, {bytes} bytes) is not in the table at \
                 docs/spec.md:{} ({})",
                m.ours, table.line, m.section
            ));
        }
    }
    problems
}

/// The values a meaning cell names as `N Name` (`0 Empty, 1 Reserved`),
/// the names lowercased.
fn named_values(meaning: &str) -> Vec<(usize, String)> {
    meaning
        .split([',', ';', ':', '(', ')'])
        .filter_map(|piece| {
            let (value, name) = piece.trim().split_once(' ')?;
            let alphabetic = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic());
            Some((value.parse().ok()?, name.to_lowercase())).filter(|_| alphabetic)
        })
        .collect()
}

/// Where the values and flag bits the peer table and the descriptor name
/// differ from those this file names (`STATES`, `REASONS`, the `FLAG_`s).
fn check_named(tables: &[SpecTable]) -> Vec<String> {
    let mut problems = Vec::new();
    // (section, field, the names here, the value of the first name)
    let named = [
        ("Peer table", "state", "STATES", &STATES[..], 0),
        ("Peer table", "quarantine", "REASONS", &REASONS[1..], 1),
    ];
    let bits = [
        ("Peer table", "flags", "HELD", FLAG_HELD),
        ("Peer table", "flags", "LOCKED", FLAG_LOCKED),
        ("Message descriptor", "flags", "FLAG_SLOT", FLAG_SLOT),
        ("Message descriptor", "flags", "FLAG_PHASE", FLAG_PHASE),
    ];
    let row = |section: &str, field: &str| {
        tables
            .iter()
            .filter(|t| t.section == section)
            .find_map(|t| t.row(field))
    };
    for (section, field, ours, names, first) in named {
        let Some((line, cells)) = row(section, field) else {
            problems.push(format!("docs/spec.md ({section}) has no row `{field}`"));
            continue;
        };
        let spec = named_values(&cells[4]);
        let expected: Vec<(usize, String)> =
            (first..).zip(names.iter().map(|n| n.to_string())).collect();
        if spec != expected {
            problems.push(format!(
                "docs/spec.md:{line} ({section}): `{field}` names {spec:?}; {ours} in \
                 tests/vectors.rs names {expected:?}"
            ));
        }
    }
    for (section, field, name, value) in bits {
        let bit = format!("bit {} `{name}`", value.trailing_zeros());
        if !row(section, field).is_some_and(|(_, cells)| cells[4].contains(&bit)) {
            problems.push(format!(
                "docs/spec.md ({section}): `{field}` does not say \"{bit}\" as tests/vectors.rs does"
            ));
        }
    }
    problems
}

/// Every disagreement between the tables here and the byte tables of
/// `spec`: each mapped table, every table of the spec mapped, and the
/// values named.
fn disagreements(spec: &str, mappings: &[Mapping]) -> Vec<String> {
    let tables = spec_byte_tables(spec);
    let mut problems = Vec::new();
    for m in mappings {
        let mut in_section = tables.iter().filter(|t| t.section == m.section);
        match in_section.nth(m.nth) {
            Some(table) => problems.extend(check_table(m, table)),
            None => problems.push(format!(
                "docs/spec.md has no byte table {} in section {} (for {})",
                m.nth + 1,
                m.section,
                m.ours
            )),
        }
    }
    for (i, t) in tables.iter().enumerate() {
        let nth = tables[..i]
            .iter()
            .filter(|u| u.section == t.section)
            .count();
        if !mappings
            .iter()
            .any(|m| m.section == t.section && m.nth == nth)
        {
            problems.push(format!(
                "docs/spec.md:{}: a byte table of section {} that no table of \
                 tests/vectors.rs follows",
                t.line, t.section
            ));
        }
    }
    problems.extend(check_named(&tables));
    problems
}

fn spec_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec.md")).unwrap()
}

// The byte tables this reader decodes by (HEADER, ENTRY, RING, DESC,
// POOL, SLOT_META) are those of docs/spec.md, parsed from it as `mappings`
// pairs them: every field at the same offset and size in both, the spec's
// rows (reserved ones too) covering each structure with no gap or
// overlap, every byte table of the spec followed here, and the values of
// `state` and `quarantine` and the flag bits named alike. A field the
// format gains without these tables fails here, named.
// shm[verify shm.header.version]
// shm[verify shm.peer.table]
#[test]
fn the_tables_here_are_the_tables_of_the_spec() {
    let problems = disagreements(&spec_text(), &mappings());
    assert!(
        problems.is_empty(),
        "tests/vectors.rs and docs/spec.md disagree:\n  {}",
        problems.join("\n  ")
    );
}

// The check above fails, naming the field, on the drifts it is for: a
// field the spec has and a table here lacks (the entry's `quarantine`
// before this file knew it), a row moved, and a state the spec does not
// list.
#[test]
fn the_check_against_the_spec_names_what_drifted() {
    let spec = spec_text();
    let mut old = mappings();
    old[1].fields.retain(|f| f.0 != "quarantine");
    let problems = disagreements(&spec, &old);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("field `quarantine` (offset 40, 4 bytes) is missing from ENTRY"),
        "{}",
        problems[0]
    );

    let row = "| 16 | 8 | u64 | `heartbeat_ns` |";
    let moved = spec.replacen(row, "| 20 | 8 | u64 | `heartbeat_ns` |", 1);
    assert_ne!(moved, spec, "the row {row}");
    let problems = disagreements(&moved, &mappings()).join("\n");
    assert!(
        problems.contains("`heartbeat_ns` is at offset 20, 8 bytes; ENTRY"),
        "{problems}"
    );
    assert!(problems.contains("starts at 20, where the rows before end at 16"));

    let states = "0 Empty, 1 Reserved, 2 Attached, 3 Goodbye, 4 Quarantined |";
    let four = spec.replacen(states, "0 Empty, 1 Reserved, 2 Attached, 3 Goodbye |", 1);
    assert_ne!(four, spec, "the state row");
    let problems = disagreements(&four, &mappings());
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("`state` names"), "{}", problems[0]);
}
