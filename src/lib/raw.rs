//! A field-by-field dump of a segment file, for when the normal path
//! refuses it: every header field, every peer entry, each ring's control
//! words and each pool's control words and bitmap, each with its offset,
//! raw value, decoded value and the verdict of the spec's rules.
//!
//! The file is opened read-only and read with `pread`, never mapped: only
//! the bytes it really has are read, so a truncated file is shown as far
//! as it goes, and nothing is ever written. Where a region lies is
//! computed from the stored configuration when that is valid (the stored
//! offsets are only checked against it); every read is bounded by the
//! file's length and by limits checked first, never by a value trusted
//! from the file.
//!
//! shm[impl shm.inspect.raw]

use std::fmt::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::header::{self, field as hf};
use crate::host_slots;
use crate::layout::{
    Direction, HEADER_SIZE, MAX_GUESTS, PEER_ENTRY_SIZE, POOL_HEADER_SIZE, SLOT_META_SIZE,
    SegmentConfig, SegmentLayout,
};
use crate::mmap::MmapRegion;
use crate::party::{Party, PeerId, PeerState, QuarantineReason};
use crate::peer::{self, FLAG_HELD, FLAG_LOCKED, field as pf};
use crate::pool::{self, field as plf};
use crate::ring::{RingState, field as rf};
use crate::sys;

/// The verdict on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum FieldStatus {
    /// It passes every rule of the spec that applies to it.
    Ok,
    /// It breaks a rule; [`RawField::reason`] says which.
    Invalid,
    /// Its rule depends on fields that are invalid themselves (a stored
    /// offset when the configuration cannot be laid out).
    Unchecked,
}

/// One field as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RawField {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The field's name (as in `docs/spec.md`).
    pub name: String,
    /// The stored value (a little-endian integer of `size` bytes; for a
    /// reserved range, its first non-zero word, or 0).
    pub raw: u64,
    /// The same in hex, as wide as the field.
    pub hex: String,
    /// What the value means.
    pub decoded: String,
    /// The verdict.
    pub status: FieldStatus,
    /// Why it is invalid or unchecked.
    pub reason: Option<String>,
}

/// A structure of the file: the header, a peer entry, a ring's control
/// block, a pool's control block and bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RawSection {
    /// Its name: `header`, `peer N`, `peer N to host`, `peer N to guest`,
    /// `host pool`, `peer N pool`.
    pub name: String,
    /// Where it starts in the file.
    pub offset: u64,
    /// Its fields that the file holds, in offset order.
    pub fields: Vec<RawField>,
}

/// What [`inspect_raw`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RawDump {
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub file_len: u64,
    /// The length a segment of the stored configuration has (else the
    /// stored `total_size`); `None` when the file is too short to say.
    pub expected_len: Option<u64>,
    /// Every structure that could be located and that the file reaches.
    pub sections: Vec<RawSection>,
    /// What could not be dumped and why: where the file ends, structures
    /// that cannot be located.
    pub notes: Vec<String>,
}

impl RawDump {
    /// Every invalid field, with the name of its section.
    pub fn invalid(&self) -> impl Iterator<Item = (&str, &RawField)> {
        self.sections.iter().flat_map(|s| {
            s.fields
                .iter()
                .filter(|f| f.status == FieldStatus::Invalid)
                .map(move |f| (s.name.as_str(), f))
        })
    }

    /// Whether the file holds the whole segment and every field is valid.
    pub fn is_sound(&self) -> bool {
        self.notes.is_empty()
            && self.invalid().next().is_none()
            && self
                .sections
                .iter()
                .flat_map(|s| &s.fields)
                .all(|f| f.status == FieldStatus::Ok)
    }
}

/// Dumps the segment file at `path` field by field (see the module docs).
/// It works on files that [`crate::admin::inspect_path`] refuses: a wrong magic or
/// version, an inconsistent layout, a truncated file, an unknown peer
/// state.
///
/// ```
/// use shmhub::{SegmentConfig, ShmHost};
/// use shmhub::admin::{FieldStatus, inspect_raw};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("raw.shm");
/// let host = ShmHost::create(&path, SegmentConfig::default())?;
/// std::fs::write(&path, b"not a segment at all")?; // 20 bytes
///
/// let dump = inspect_raw(&path)?;
/// let magic = &dump.sections[0].fields[0];
/// assert_eq!((magic.name.as_str(), magic.status), ("magic", FieldStatus::Invalid));
/// assert!(!dump.is_sound());
/// # drop(host);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// Only for what is at the path: [`Error::Io`] (missing, unreadable),
/// [`Error::Symlink`], [`Error::NotAFile`]. Whatever the file holds is
/// dumped, not refused.
pub fn inspect_raw(path: &Path) -> Result<RawDump> {
    let file = MmapRegion::open_unmapped(path)?;
    let io = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let reader = Reader {
        file: &file,
        file_len,
    };
    let mut dump = RawDump {
        path: path.to_path_buf(),
        file_len,
        expected_len: None,
        sections: Vec::new(),
        notes: Vec::new(),
    };
    let head = reader.span(0, HEADER_SIZE).map_err(io)?;
    let config = header::stored_config(|at| head.u32(at).ok_or(()));
    let layout = config.map(|c| c.layout());
    dump.expected_len = match &layout {
        Ok(Ok(l)) => Some(l.total_size),
        _ => head.u64(hf::TOTAL_SIZE),
    };
    dump.sections
        .push(header_section(&head, file_len, &config, &layout));
    if file_len < HEADER_SIZE {
        dump.notes.push(format!(
            "the file is {file_len} bytes, smaller than a segment header ({HEADER_SIZE} bytes): \
             only the fields it holds are shown"
        ));
        return Ok(dump);
    }
    let (Ok(config), Ok(layout)) = (config, layout) else {
        return Ok(dump); // not reached: a whole header holds the configuration
    };
    let guests = if (1..=MAX_GUESTS).contains(&config.max_guests) {
        config.max_guests as u8
    } else {
        dump.notes.push(format!(
            "max_guests {} is out of range: the peer table, rings and pools cannot be located",
            config.max_guests
        ));
        return Ok(dump);
    };
    let table = reader
        .span(HEADER_SIZE, u64::from(guests) * PEER_ENTRY_SIZE)
        .map_err(io)?;
    for p in PeerId::up_to(guests) {
        let at = HEADER_SIZE + p.index() as u64 * PEER_ENTRY_SIZE;
        if at < file_len {
            dump.sections.push(peer_section(&table, p, at));
        }
    }
    match layout {
        Ok(layout) => ring_and_pool_sections(&mut dump, &reader, &layout, guests).map_err(io)?,
        Err(e) => dump.notes.push(format!(
            "the configuration is invalid ({e}): the rings and pools cannot be located"
        )),
    }
    Ok(dump)
}

/// The sections of every ring and pool of `layout` the file holds, and a
/// note where the file ends before the segment does.
fn ring_and_pool_sections(
    dump: &mut RawDump,
    reader: &Reader<'_>,
    layout: &SegmentLayout,
    guests: u8,
) -> std::io::Result<()> {
    let file_len = reader.file_len;
    for p in PeerId::up_to(guests) {
        for direction in [Direction::GuestToHost, Direction::HostToGuest] {
            let at = layout.ring(p, direction);
            if at < file_len {
                let span = reader.span(at, rf::ROOM_AT + 4)?;
                dump.sections
                    .push(ring_section(&span, layout, p, direction, at));
            }
        }
    }
    for owner in std::iter::once(Party::Host).chain(PeerId::up_to(guests).map(Party::Guest)) {
        let at = layout.pool(owner);
        if at < file_len {
            let words = u64::from(layout.config.slots_per_pool.div_ceil(64));
            let span = reader.span(at, layout.pool_bitmap_offset + words * 8)?;
            dump.sections.push(pool_section(&span, layout, owner, at));
        }
    }
    if file_len < layout.total_size {
        dump.notes.push(format!(
            "the file ends at byte {file_len}, {}; a segment of this configuration is {} bytes: \
             what lies past the end is not shown",
            locate(layout, file_len),
            layout.total_size
        ));
    }
    Ok(())
}

/// The bytes of a file that a dump reads: only those it has.
struct Reader<'a> {
    file: &'a std::fs::File,
    file_len: u64,
}

impl Reader<'_> {
    /// Up to `len` bytes at `at`: fewer where the file ends first (or
    /// shrinks while it is read).
    fn span(&self, at: u64, len: u64) -> std::io::Result<Span> {
        let len = len.min(self.file_len.saturating_sub(at));
        // `len` is at most a header, a peer table (255 entries), a ring's
        // control words or a pool's bitmap (1024 words): small.
        let mut bytes = vec![0u8; len as usize];
        let mut got = 0;
        while got < bytes.len() {
            match self.file.read_at(&mut bytes[got..], at + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        bytes.truncate(got);
        Ok(Span { at, bytes })
    }
}

/// Bytes read from `at` on.
struct Span {
    at: u64,
    bytes: Vec<u8>,
}

impl Span {
    /// The `N` bytes at file offset `offset`, if read.
    fn array<const N: usize>(&self, offset: u64) -> Option<[u8; N]> {
        let start = usize::try_from(offset.checked_sub(self.at)?).ok()?;
        self.bytes
            .get(start..start.checked_add(N)?)?
            .try_into()
            .ok()
    }

    fn u32(&self, offset: u64) -> Option<u32> {
        self.array(offset).map(u32::from_le_bytes)
    }

    fn u64(&self, offset: u64) -> Option<u64> {
        self.array(offset).map(u64::from_le_bytes)
    }
}

/// A verdict being made.
enum Check {
    Ok,
    Invalid(String),
    Unchecked(String),
}

impl Check {
    /// `Invalid` with the error's reason (without the field's name and
    /// value, which the dump shows beside it), or `Ok`.
    fn of(result: Result<()>) -> Check {
        match result {
            Ok(()) => Check::Ok,
            Err(Error::CorruptHeader { reason, .. }) => Check::Invalid(reason),
            Err(Error::Corrupt(reason)) => Check::Invalid(reason),
            Err(e) => Check::Invalid(e.to_string()),
        }
    }

    /// The first of `self` and `then` that is not `Ok`.
    fn and(self, then: impl FnOnce() -> Check) -> Check {
        match self {
            Check::Ok => then(),
            other => other,
        }
    }
}

/// The fields of one section, built from the bytes read.
struct Fields<'a> {
    span: &'a Span,
    base: u64,
    fields: Vec<RawField>,
}

impl<'a> Fields<'a> {
    fn new(span: &'a Span, base: u64) -> Self {
        Fields {
            span,
            base,
            fields: Vec::new(),
        }
    }

    fn push(&mut self, at: u64, size: u64, name: &str, raw: u64, decoded: String, check: Check) {
        let (status, reason) = match check {
            Check::Ok => (FieldStatus::Ok, None),
            Check::Invalid(r) => (FieldStatus::Invalid, Some(r)),
            Check::Unchecked(r) => (FieldStatus::Unchecked, Some(r)),
        };
        let width = 2 * size.min(8) as usize;
        self.fields.push(RawField {
            offset: self.base + at,
            size,
            name: name.to_string(),
            raw,
            hex: format!("{raw:#0w$x}", w = width + 2),
            decoded,
            status,
            reason,
        });
    }

    /// A `u32` at `at` in the section, if the file holds it.
    fn u32(&mut self, at: u64, name: &str, judge: impl FnOnce(u32) -> (String, Check)) {
        if let Some(v) = self.span.u32(self.base + at) {
            let (decoded, check) = judge(v);
            self.push(at, 4, name, v.into(), decoded, check);
        }
    }

    /// A `u64` at `at` in the section, if the file holds it.
    fn u64(&mut self, at: u64, name: &str, judge: impl FnOnce(u64) -> (String, Check)) {
        if let Some(v) = self.span.u64(self.base + at) {
            let (decoded, check) = judge(v);
            self.push(at, 8, name, v, decoded, check);
        }
    }

    /// Reserved bytes `range` of the section (a multiple of 4 long): zero
    /// in a new segment and never written (the spec's conventions).
    fn reserved(&mut self, range: std::ops::Range<u64>) {
        let mut words = range
            .clone()
            .step_by(4)
            .map_while(|at| self.span.u32(self.base + at).map(|v| (at, u64::from(v))))
            .peekable();
        if words.peek().is_none() {
            return;
        }
        let present: Vec<(u64, u64)> = words.collect();
        let size = present.len() as u64 * 4;
        let name = format!("reserved {}..{}", range.start, range.start + size);
        match present.iter().find(|(_, v)| *v != 0) {
            None => self.push(range.start, size, &name, 0, "zero".into(), Check::Ok),
            Some(&(at, v)) => self.push(
                range.start,
                size,
                &name,
                v,
                format!("non-zero at byte {}", self.base + at),
                Check::Invalid("reserved bytes are zero and never written".into()),
            ),
        }
    }

    fn into_section(self, name: String) -> RawSection {
        RawSection {
            name,
            offset: self.base,
            fields: self.fields,
        }
    }
}

fn plain<T: ToString>(v: T) -> (String, Check) {
    (v.to_string(), Check::Ok)
}

/// What a header field is checked against: the layout its configuration
/// gives, or why there is none.
type LayoutVerdict = std::result::Result<SegmentLayout, String>;

fn header_section(
    span: &Span,
    file_len: u64,
    config: &std::result::Result<SegmentConfig, ()>,
    layout: &std::result::Result<std::result::Result<SegmentLayout, crate::LayoutError>, ()>,
) -> RawSection {
    let layout_ok: LayoutVerdict = match layout {
        Ok(Ok(l)) => Ok(*l),
        Ok(Err(e)) => Err(format!("the configuration is invalid ({})", e.field)),
        Err(()) => Err("the file ends before the configuration".to_string()),
    };
    let mut f = Fields::new(span, 0);
    identity_fields(&mut f, file_len, layout, &layout_ok);
    config_fields(&mut f, config);
    stored_layout_fields(&mut f, &layout_ok);
    host_fields(&mut f, &layout_ok);
    f.into_section("header".into())
}

/// Magic, version and sizes: whether this is a segment this build reads.
fn identity_fields(
    f: &mut Fields<'_>,
    file_len: u64,
    layout: &std::result::Result<std::result::Result<SegmentLayout, crate::LayoutError>, ()>,
    layout_ok: &LayoutVerdict,
) {
    f.u64(hf::MAGIC, "magic", |v| {
        (magic_text(v), Check::of(header::check_magic(v)))
    });
    f.u32(hf::VERSION, "version", |v| {
        (v.to_string(), Check::of(header::check_version(v)))
    });
    f.u32(hf::HEADER_SIZE, "header_size", |v| {
        (
            bytes_text(v.into()),
            Check::of(header::check_header_size(v)),
        )
    });
    f.u64(hf::TOTAL_SIZE, "total_size", |v| {
        let against_layout = || match layout_ok {
            Ok(l) => Check::of(header::check_stored("total_size", v, l.total_size)),
            Err(_) => match layout {
                Ok(Err(e)) if e.field == "total_size" => Check::Invalid(e.reason.to_string()),
                _ => Check::Ok,
            },
        };
        (
            bytes_text(v),
            Check::of(header::check_total_size(v, file_len)).and(against_layout),
        )
    });
}

/// The configuration, each field against its limits.
fn config_fields(f: &mut Fields<'_>, config: &std::result::Result<SegmentConfig, ()>) {
    let limits = config.map(|c| c.limit_errors()).unwrap_or_default();
    let limit = |name: &str| {
        limits
            .iter()
            .find(|e| e.field == name)
            .map_or(Check::Ok, |e| Check::Invalid(e.reason.to_string()))
    };
    for (name, at, _) in header::CONFIG_FIELDS {
        f.u32(at, name, |v| {
            let decoded = match name {
                "slot_size" | "max_payload" => bytes_text(v.into()),
                "heartbeat_interval_ms" => unless_zero(v, "off", |v| format!("{v} ms")),
                _ => v.to_string(),
            };
            (decoded, limit(name))
        });
    }
}

/// The stored offsets and sizes, each against what the configuration
/// gives.
fn stored_layout_fields(f: &mut Fields<'_>, layout_ok: &LayoutVerdict) {
    for (name, at, expected) in header::STORED_LAYOUT {
        if name == "total_size" {
            continue;
        }
        f.u64(at, name, |v| {
            let check = match layout_ok {
                Ok(l) => Check::of(header::check_stored(name, v, expected(l))),
                Err(why) => Check::Unchecked(why.clone()),
            };
            (bytes_text(v), check)
        });
    }
}

/// Creation, the share, and the host's own words: who it is, whether it
/// left, whether it sleeps.
fn host_fields(f: &mut Fields<'_>, layout_ok: &LayoutVerdict) {
    f.u64(hf::CREATED_UNIX_NS, "created_unix_ns", |v| plain(utc(v)));
    f.u64(hf::NONCE, "nonce", |v| {
        plain(if v % 2 == 1 { "odd" } else { "even" })
    });
    f.u32(hf::HOST_SLOTS_PER_GUEST, "host_slots_per_guest", |v| {
        let decoded = unless_zero(v, "the fair share", |v| count(v, "slot"));
        let check = match layout_ok {
            Ok(l) => Check::of(header::check_share(v, l)),
            Err(why) => Check::Unchecked(why.clone()),
        };
        (decoded, check)
    });
    f.reserved(116..128);
    f.u32(hf::HOST_GOODBYE, "host_goodbye", |v| {
        let decoded = match v {
            0 => "no",
            1 => "said goodbye",
            _ => "?",
        };
        (decoded.into(), Check::of(header::check_goodbye(v)))
    });
    f.u32(hf::HOST_PID, "host_pid", |v| plain(pid_text(v)));
    f.u64(hf::HOST_HEARTBEAT_NS, "host_heartbeat_ns", |v| {
        plain(monotonic_text(v))
    });
    f.u64(hf::HOST_START_TIME, "host_start_time", |v| {
        plain(start_time_text(v))
    });
    f.reserved(152..192);
    f.u32(hf::HOST_DOORBELL, "host_doorbell", |v| {
        plain(format!("rung {}", count(v, "time")))
    });
    f.u32(hf::HOST_WAITING, "host_waiting", |v| plain(waiting_text(v)));
    f.reserved(200..224);
    for w in 0..4 {
        f.u64(hf::READY + 8 * w, &format!("ready[{w}]"), |v| {
            ready_word(v, w, layout_ok)
        });
    }
}

/// Word `w` of the ready summary: the guests whose bit is set. A bit of
/// no guest (past `max_guests`) is never looked at; only a hostile guest
/// sets one.
fn ready_word(v: u64, w: u64, layout_ok: &LayoutVerdict) -> (String, Check) {
    let guests: Vec<u64> = (0..64)
        .filter(|b| v & (1 << b) != 0)
        .map(|b| 64 * w + b + 1)
        .collect();
    let decoded = match guests.as_slice() {
        [] => "no guest marked".to_string(),
        [one] => format!("guest {one} marked"),
        many => format!(
            "guests {} marked",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let check = match layout_ok {
        // No bit set is right whatever the table.
        _ if guests.is_empty() => Check::Ok,
        Ok(l) => match guests.iter().find(|&&p| p > u64::from(l.config.max_guests)) {
            Some(p) => Check::Invalid(format!(
                "guest {p} is past max_guests {}: its bit names no ring",
                l.config.max_guests
            )),
            None => Check::Ok,
        },
        Err(why) => Check::Unchecked(why.clone()),
    };
    (decoded, check)
}

fn peer_section(span: &Span, p: PeerId, at: u64) -> RawSection {
    let mut f = Fields::new(span, at);
    f.u32(pf::STATE, "state", |v| match PeerState::from_u32(v) {
        Some(state) => plain(state),
        None => ("unknown".into(), Check::of(Err(peer::unknown_state(p, v)))),
    });
    f.u32(pf::EPOCH, "epoch", |v| plain(count(v, "claim")));
    f.u32(pf::PID, "pid", |v| plain(pid_text(v)));
    f.u32(pf::FLAGS, "flags", |v| plain(flags_text(v)));
    f.u64(pf::HEARTBEAT_NS, "heartbeat_ns", |v| {
        plain(monotonic_text(v))
    });
    f.u64(pf::START_TIME, "start_time", |v| plain(start_time_text(v)));
    f.u64(pf::CLAIMED_UNIX_NS, "claimed_unix_ns", |v| {
        plain(unless_zero(v, "never", utc))
    });
    f.u32(pf::QUARANTINE, "quarantine", |v| match (v, QuarantineReason::from_u32(v)) {
        (0, _) => plain("none".to_string()),
        (_, Some(reason)) => plain(format!("cut off: {reason}")),
        (_, None) => (
            "unknown".into(),
            Check::Invalid(format!(
                "unknown quarantine reason {v} (known: 1 entry, 2 ring, 3 descriptor, 4 evicted)"
            )),
        ),
    });
    f.reserved(44..PEER_ENTRY_SIZE);
    f.into_section(format!("peer {p}"))
}

fn ring_section(
    span: &Span,
    layout: &SegmentLayout,
    p: PeerId,
    direction: Direction,
    at: u64,
) -> RawSection {
    let capacity = layout.config.ring_capacity;
    let head = span.u32(at + rf::HEAD);
    let mut f = Fields::new(span, at);
    f.u32(rf::TAIL, "tail", |tail| {
        let Some(head) = head else {
            return plain(format!("index {tail}"));
        };
        match (RingState {
            head,
            tail,
            capacity,
        })
        .len()
        {
            Some(n) => plain(format!("index {tail}: {n} queued")),
            None => (
                format!("index {tail}"),
                Check::Invalid(format!(
                    "head {head} and tail {tail} are more than the capacity {capacity} apart"
                )),
            ),
        }
    });
    let to_guest = direction == Direction::HostToGuest;
    if to_guest {
        f.u32(host_slots::field::HANDED, "host_slots_handed", |v| {
            plain(format!(
                "{} of the host's handed to the guest",
                count(v, "slot")
            ))
        });
    }
    f.u32(rf::HEAD, "head", |v| {
        plain(format!("index {v} (at {} of {capacity})", v % capacity))
    });
    if to_guest {
        f.u32(host_slots::field::RETURNED, "host_slots_returned", |v| {
            plain(format!("{} of those freed", count(v, "slot")))
        });
    }
    f.u32(rf::PRODUCER_WAITING, "producer_waiting", |v| {
        plain(waiting_text(v))
    });
    f.u32(rf::CONSUMER_WAITING, "consumer_waiting", |v| {
        plain(waiting_text(v))
    });
    f.u32(rf::PRODUCER_FENCES, "producer_fences", |v| {
        plain(fences_text(v))
    });
    f.u32(rf::CONSUMER_FENCES, "consumer_fences", |v| {
        plain(fences_text(v))
    });
    f.u32(rf::ROOM_SLEEPERS, "room_sleepers", |v| {
        plain(waiting_text(v))
    });
    f.u32(rf::ROOM_AT, "room_at", |v| {
        plain(format!("wake a room sleeper at head {v}"))
    });
    let way = match direction {
        Direction::GuestToHost => "to host",
        Direction::HostToGuest => "to guest",
    };
    f.into_section(format!("peer {p} {way}"))
}

fn pool_section(span: &Span, layout: &SegmentLayout, owner: Party, at: u64) -> RawSection {
    let slots = layout.config.slots_per_pool;
    let words = slots.div_ceil(64);
    let mut f = Fields::new(span, at);
    f.u32(plf::RELEASES, "releases", |v| plain(count(v, "free")));
    f.u32(plf::WAITERS, "waiters", |v| {
        plain(format!("{} asleep", count(v, "allocator")))
    });
    for w in 0..words {
        let word_at = layout.pool_bitmap_offset + u64::from(w) * 8;
        let Some(bits) = span.u64(at + word_at) else {
            break;
        };
        if bits == 0 && w + 1 < words {
            continue;
        }
        f.u64(word_at, &format!("bitmap word {w}"), |bits| {
            let valid = pool::valid_bits(slots, w);
            let used: Vec<u32> = (0..64)
                .filter(|b| bits & valid & (1 << b) != 0)
                .map(|b| w * 64 + b)
                .collect();
            let mut decoded = format!("{} allocated", used.len());
            if !used.is_empty() {
                let shown: Vec<String> = used.iter().take(8).map(u32::to_string).collect();
                let more = if used.len() > 8 { ", ..." } else { "" };
                let _ = write!(decoded, ": {}{more}", shown.join(", "));
            }
            let check = match bits & !valid {
                0 => Check::Ok,
                stray => Check::Invalid(format!(
                    "bits {stray:#x} stand for no slot (the pool has {slots}) and are never set"
                )),
            };
            (decoded, check)
        });
    }
    f.into_section(format!("{owner} pool"))
}

/// Where offset `at` lies in a segment of `layout`, in words.
fn locate(layout: &SegmentLayout, at: u64) -> String {
    let guests = u64::from(layout.config.max_guests);
    let table_end = layout.peer_table_offset + guests * PEER_ENTRY_SIZE;
    let rings_end = layout.rings_offset + guests * layout.ring_pair_stride;
    let pools_end = layout.pools_offset + (guests + 1) * layout.pool_stride;
    if at < HEADER_SIZE {
        "in the header".into()
    } else if at < table_end {
        format!(
            "in the entry of peer {}",
            (at - HEADER_SIZE) / PEER_ENTRY_SIZE + 1
        )
    } else if at < layout.rings_offset {
        "after the peer table".into()
    } else if at < rings_end {
        let from = at - layout.rings_offset;
        let p = from / layout.ring_pair_stride + 1;
        let within = from % layout.ring_pair_stride;
        let (way, inside) = if within < layout.ring_size {
            ("guest-to-host", within)
        } else {
            ("host-to-guest", within - layout.ring_size)
        };
        let part = if inside < crate::layout::RING_HEADER_SIZE {
            "control block"
        } else {
            "descriptors"
        };
        format!("in the {way} ring of peer {p} ({part})")
    } else if at < layout.pools_offset {
        "after the rings".into()
    } else if at < pools_end {
        let from = at - layout.pools_offset;
        let owner = from / layout.pool_stride;
        let inside = from % layout.pool_stride;
        let part = if inside < POOL_HEADER_SIZE {
            "control block"
        } else if inside < layout.pool_meta_offset {
            "bitmap"
        } else if inside
            < layout.pool_meta_offset + u64::from(layout.config.slots_per_pool) * SLOT_META_SIZE
        {
            "slot metadata"
        } else {
            "slot data"
        };
        let whose = match owner {
            0 => "the host's pool".to_string(),
            p => format!("the pool of peer {p}"),
        };
        format!("in {whose} ({part})")
    } else {
        "after the last pool".into()
    }
}

/// The magic's bytes: printable ASCII as is, anything else as `\xNN`.
fn magic_text(v: u64) -> String {
    v.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn bytes_text(v: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v < 1024 {
        return format!("{v} bytes");
    }
    let mut value = v as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{v} bytes ({value:.1} {})", UNITS[unit])
}

/// `1 claim`, `2 claims`.
fn count(n: u32, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `zero` for a field whose 0 stands for nothing there (no process, no
/// time, no setting), else its value as `text` words it.
fn unless_zero<T: Copy + Into<u64>>(v: T, zero: &str, text: impl FnOnce(T) -> String) -> String {
    if v.into() == 0 { zero.into() } else { text(v) }
}

fn pid_text(v: u32) -> String {
    unless_zero(v, "none", |v| format!("pid {v}"))
}

fn waiting_text(v: u32) -> String {
    unless_zero(v, "no", |_| "yes (asleep)".into())
}

fn fences_text(v: u32) -> String {
    unless_zero(v, "no (publishes without a fence)", |_| {
        "yes (publishes fenced)".into()
    })
}

fn start_time_text(v: u64) -> String {
    unless_zero(v, "unknown", |v| format!("{v} clock ticks after boot"))
}

fn flags_text(v: u32) -> String {
    let mut names = Vec::new();
    if v & FLAG_HELD != 0 {
        names.push("held".to_string());
    }
    if v & FLAG_LOCKED != 0 {
        names.push("locked".to_string());
    }
    let other = v & !(FLAG_HELD | FLAG_LOCKED);
    if other != 0 {
        names.push(format!("unknown bits {other:#x}"));
    }
    if names.is_empty() {
        "none (no process holds it)".into()
    } else {
        names.join(", ")
    }
}

/// A `CLOCK_MONOTONIC` time as an age.
fn monotonic_text(v: u64) -> String {
    unless_zero(v, "never", |v| {
        let now = sys::monotonic_ns();
        if v <= now {
            format!("{:.1}s ago", (now - v) as f64 / 1e9)
        } else {
            format!("{:.1}s in the future", (v - now) as f64 / 1e9)
        }
    })
}

/// Nanoseconds since the Unix epoch as a UTC date and time.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = ns / 1_000_000 % 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_magic_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(951_782_400_123_000_000), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(
            utc(4_102_444_799_000_000_000),
            "2099-12-31 23:59:59.000 UTC"
        );
        assert_eq!(magic_text(header::MAGIC), "SHMHUB\\x00\\x01");
        assert_eq!(bytes_text(256), "256 bytes");
        assert_eq!(bytes_text(4096), "4096 bytes (4.0 KiB)");
    }

    #[test]
    fn spans_give_only_the_bytes_read() {
        let span = Span {
            at: 8,
            bytes: vec![1, 0, 0, 0, 2, 0, 0],
        };
        assert_eq!(span.u32(8), Some(1));
        assert_eq!(span.u32(12), None, "only 3 of its 4 bytes were read");
        assert_eq!(span.u32(4), None);
        assert_eq!(span.u64(u64::MAX - 2), None);
    }
}
