//! A look at the messages queued in rings, without taking them.
//!
//! Each ring is read the way its consumer reads it (from the head, every
//! descriptor that carries the phase of its index) and every descriptor is
//! judged by the receiver's own checks ([`codec::check`]), but nothing is
//! taken, freed or written: the file is opened and mapped read-only.
//!
//! A ring can change while it is read. The listing is kept only if the
//! head did not move and no slot it read changed from the first look at it
//! to the end: then no descriptor was taken (so none was overwritten) and
//! no payload was freed while it was read, and what is listed is exactly
//! what was queued at one moment. Otherwise the ring is read again, a
//! bounded number of times, and then the answer is
//! [`Error::Changing`](crate::Error::Changing) rather than a mix of
//! before and after.
//!
//! shm[impl shm.inspect.peek]

use std::path::{Path, PathBuf};

use crate::codec::{self, Placement as Verdict};
use crate::desc::{DESC_SIZE, MsgDesc, msg_type};
use crate::error::{Error, Result};
use crate::header;
use crate::layout::{Direction, HEADER_SIZE, SegmentLayout};
use crate::mmap::MmapRegion;
use crate::party::{Party, PeerId, PeerState, QuarantineReason};
use crate::peer::Peer;
use crate::pool::Pool;
use crate::region::{Reading, Region};
use crate::ring::RingView;

/// Most payload bytes a preview shows.
pub const PREVIEW_BYTES: usize = 64;

/// How many times a ring is read before giving up on a consistent look.
const TRIES: u32 = 64;

/// Which rings [`peek_path`] looks at, and how much of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeekOptions {
    /// Only guest `peer`'s rings, shown even when empty. Without it, every
    /// guest's rings that hold something.
    pub peer: Option<PeerId>,
    /// Only the rings carrying messages this way (default: both).
    pub direction: Option<Direction>,
    /// List at most this many messages of each ring, from its head
    /// (default: all). [`RingPeek::queued`] still counts every one.
    pub limit: Option<usize>,
}

/// Whether a payload travels inline or in a slot, as its descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Placement {
    /// In the descriptor's 32 inline bytes.
    Inline,
    /// In a slot of the sender's pool.
    Slot,
}

/// The slot a descriptor names (whether or not it checks out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlotPlace {
    /// Slot index in the sender's pool.
    pub index: u32,
    /// The generation the descriptor says the slot has.
    pub generation: u32,
    /// Offset of the payload in the slot.
    pub offset: u32,
}

/// The first bytes of a payload, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Preview {
    /// The bytes shown (at most [`PREVIEW_BYTES`]), in lowercase hex.
    pub hex: String,
    /// The same bytes as text, when they are printable: UTF-8 (a
    /// character cut at the end of the preview left out) without control
    /// characters other than tab, newline and carriage return.
    pub text: Option<String>,
    /// Whether the payload is longer than the preview.
    pub truncated: bool,
}

impl Preview {
    /// A preview of `shown`, the first bytes of a payload of `len` bytes.
    pub fn of(shown: &[u8], len: usize) -> Self {
        let truncated = len > shown.len();
        Preview {
            hex: shown.iter().map(|b| format!("{b:02x}")).collect(),
            text: printable(shown, truncated).map(str::to_string),
            truncated,
        }
    }
}

/// `bytes` as text if they are printable (see [`Preview::text`]); a
/// character cut off at the end counts only when `cut` says the bytes are
/// a prefix.
fn printable(bytes: &[u8], cut: bool) -> Option<&str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(text)
}

/// One queued message, as its descriptor says, judged by the receiver's
/// checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QueuedMessage {
    /// Its ring index (free-running; the head is the next to be read).
    pub position: u32,
    /// Message id.
    pub id: u64,
    /// Message type.
    pub msg_type: u16,
    /// Its name, for a well-known type ([`msg_type::name`]).
    pub msg_type_name: Option<&'static str>,
    /// Method id.
    pub method_id: u32,
    /// The flags as stored (the ring's phase bit cleared).
    pub flags: u16,
    /// Payload length in bytes.
    pub len: u32,
    /// Inline or in a slot.
    pub placement: Placement,
    /// The slot it names, for a slot payload.
    pub slot: Option<SlotPlace>,
    /// The payload's first bytes; `None` when the descriptor is refused
    /// (nothing is read through it).
    pub preview: Option<Preview>,
    /// Why the receiver will refuse it (`shm.recv.validate`); `None` when
    /// it checks out.
    pub problem: Option<String>,
}

/// One ring's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RingPeek {
    /// The guest whose ring it is.
    pub peer: PeerId,
    /// Which way it carries messages.
    pub direction: Direction,
    /// Who sends on it, as a party number (0 = the host, `p` = guest `p`).
    pub sender: u8,
    /// Who receives from it, likewise.
    pub receiver: u8,
    /// The state of the guest's entry, read with the ring; `None` when
    /// its state word holds no state the protocol knows (`raw_state`
    /// says what): a host that looks at the guest cuts it off.
    pub state: Option<PeerState>,
    /// The guest's state word as stored.
    pub raw_state: u32,
    /// Why the host cut the guest off, for a Quarantined entry
    /// (`shm.peer.quarantine`): nothing on its rings is received, by
    /// either side.
    pub quarantine: Option<QuarantineReason>,
    /// The consumer's index: the next message to be read.
    pub head: u32,
    /// The producer's published index (it may lag the messages by a batch).
    pub tail: u32,
    /// Descriptors the ring holds.
    pub capacity: u32,
    /// Messages queued: the descriptors from the head that are new.
    pub queued: u32,
    /// The first of them, up to the limit asked for.
    pub messages: Vec<QueuedMessage>,
}

/// What [`peek_path`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PeekReport {
    /// The file.
    pub path: PathBuf,
    /// The rings looked at, by guest, guest-to-host first.
    pub rings: Vec<RingPeek>,
}

/// Lists the messages queued in the rings of the segment at `path`,
/// without taking them: the file is opened and mapped read-only.
///
/// ```
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, msg_type};
/// use shmhub::admin::{PeekOptions, peek_path};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("peek.shm");
/// let mut host = ShmHost::create(&path, SegmentConfig::default())?;
/// let mut guest = ShmGuest::attach_path(&path)?;
/// host.send(guest.peer_id(), Frame::new(MsgDesc::new(msg_type::DATA, 7), b"hello".to_vec()))?;
///
/// let report = peek_path(&path, &PeekOptions::default())?;
/// let message = &report.rings[0].messages[0];
/// assert_eq!((message.id, message.preview.as_ref().unwrap().text.as_deref()), (7, Some("hello")));
/// assert_eq!(guest.recv()?.payload(), b"hello"); // still there
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// What [`crate::admin::inspect_path`] refuses (a file that is not a valid
/// segment, by its header); [`Error::InvalidPeerId`] for a guest the
/// segment does not have; [`Error::Changing`] when a ring kept changing
/// while it was read.
pub fn peek_path(path: &Path, options: &PeekOptions) -> Result<PeekReport> {
    let mmap = MmapRegion::open_read_only(path, HEADER_SIZE)?;
    let rings = peek_region(&mmap.region(), options)?.rings;
    Ok(PeekReport {
        path: path.to_path_buf(),
        rings,
    })
}

/// [`peek_path`] on a segment in `region`.
///
/// # Errors
///
/// As [`peek_path`].
pub fn peek_region(region: &Region, options: &PeekOptions) -> Result<PeekReport> {
    let layout = header::read(region)?.layout;
    let guests: Vec<PeerId> = match options.peer {
        Some(p) if layout.is_guest(p) => vec![p],
        Some(p) => {
            return Err(Error::InvalidPeerId {
                peer_id: p.get(),
                max_guests: layout.config.max_guests,
            });
        }
        None => layout.guests().collect(),
    };
    let directions = match options.direction {
        Some(d) => vec![d],
        None => vec![Direction::GuestToHost, Direction::HostToGuest],
    };
    let limit = options.limit.unwrap_or(usize::MAX);
    let mut rings = Vec::new();
    for &guest in &guests {
        for &direction in &directions {
            let which = Which {
                guest,
                direction,
                limit,
                previews: true,
            };
            let ring = peek_ring(region, &layout, which)?;
            if options.peer.is_some() || ring.queued > 0 {
                rings.push(ring);
            }
        }
    }
    Ok(PeekReport {
        path: PathBuf::new(),
        rings,
    })
}

/// Which ring [`look`] reads, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Which {
    /// The guest whose ring it is.
    pub(crate) guest: PeerId,
    /// Which of its rings.
    pub(crate) direction: Direction,
    /// List at most this many messages (all are counted).
    pub(crate) limit: usize,
    /// Read payload previews.
    pub(crate) previews: bool,
}

/// Reads a ring consistently (see the module docs).
pub(crate) fn peek_ring(region: &Region, layout: &SegmentLayout, which: Which) -> Result<RingPeek> {
    look_with(region, layout, which, TRIES, &mut || {})
}

/// [`look`], trying at most `tries` times, with `meanwhile` run after each
/// read and before it is checked: where a test makes the ring change.
fn look_with(
    region: &Region,
    layout: &SegmentLayout,
    which: Which,
    tries: u32,
    meanwhile: &mut dyn FnMut(),
) -> Result<RingPeek> {
    let Which {
        guest,
        direction,
        limit,
        previews,
    } = which;
    let ring = RingView::new(
        region,
        layout.ring(guest, direction),
        layout.config.ring_capacity,
    );
    let (sender, receiver) = direction.ends(guest);
    let pool = Pool::<Reading>::open(region, layout, sender)?;
    for _ in 0..tries {
        let head = ring.head()?;
        let tail = ring.state()?.tail;
        let mut taken: Vec<(u32, [u8; DESC_SIZE])> = Vec::new();
        let mut queued = 0u32;
        while queued < ring.capacity() {
            let position = head.wrapping_add(queued);
            let Some(bytes) = ring.read_new(position)? else {
                break;
            };
            if taken.len() < limit {
                taken.push((position, bytes));
            }
            queued += 1;
        }
        let mut slots_seen = Vec::new();
        let mut messages = Vec::with_capacity(taken.len());
        for (position, bytes) in &taken {
            let desc = MsgDesc::from_bytes(bytes);
            if desc.is_slot() {
                slots_seen.push((desc.slot_index, pool.slot_word(desc.slot_index)));
            }
            messages.push(message(&pool, receiver, *position, &desc, previews)?);
        }
        meanwhile();
        let mut unchanged = ring.head()? == head;
        for (slot, before) in &slots_seen {
            unchanged &= pool.slot_word(*slot) == *before;
        }
        if unchanged {
            let (state, raw_state, quarantine) = entry_state(&Peer::new(region, layout, guest))?;
            return Ok(RingPeek {
                peer: guest,
                direction,
                sender: sender.number(),
                receiver: receiver.number(),
                state,
                raw_state,
                quarantine,
                head,
                tail,
                capacity: ring.capacity(),
                queued,
                messages,
            });
        }
        std::thread::yield_now();
    }
    Err(Error::Changing {
        what: format!("the {direction} ring of peer {guest}"),
        tries,
    })
}

/// A guest's entry as a ring's listing shows it: its state (`None` for a
/// word the protocol does not know), the word, and why the guest was cut
/// off if it was.
fn entry_state(peer: &Peer<'_>) -> Result<(Option<PeerState>, u32, Option<QuarantineReason>)> {
    let raw = peer.raw_state()?;
    let state = PeerState::from_u32(raw);
    let quarantine = match state {
        Some(PeerState::Quarantined) => peer.quarantine_reason()?,
        _ => None,
    };
    Ok((state, raw, quarantine))
}

/// One descriptor as a listed message: judged, and previewed if it checks
/// out and `preview` asks for it.
fn message(
    pool: &Pool<Reading>,
    receiver: Party,
    position: u32,
    desc: &MsgDesc,
    preview: bool,
) -> Result<QueuedMessage> {
    let len = desc.payload_len;
    let shown = (len as usize).min(PREVIEW_BYTES);
    let (preview, problem) = match codec::check(pool, receiver, desc) {
        Err(refusal) => (None, Some(refusal.reason)),
        Ok(_) if !preview => (None, None),
        Ok(Verdict::Inline) => (Some(Preview::of(&desc.inline[..shown], len as usize)), None),
        Ok(Verdict::Slot { offset }) => {
            let mut bytes = vec![0u8; shown];
            pool.region().read(offset, &mut bytes)?;
            (Some(Preview::of(&bytes, len as usize)), None)
        }
    };
    Ok(QueuedMessage {
        position,
        id: desc.id,
        msg_type: desc.msg_type,
        msg_type_name: msg_type::name(desc.msg_type),
        method_id: desc.method_id,
        flags: desc.flags,
        len,
        placement: if desc.is_slot() {
            Placement::Slot
        } else {
            Placement::Inline
        },
        slot: desc.is_slot().then_some(SlotPlace {
            index: desc.slot_index,
            generation: desc.slot_generation,
            offset: desc.slot_offset,
        }),
        preview,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::id;
    use crate::{Frame, SegmentConfig, ShmGuest, ShmHost};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// The payload of message `id`: inline or in a slot by turns, its bytes
    /// telling which message it is.
    fn payload(id: u64) -> Vec<u8> {
        let len = if id % 2 == 0 { 20 } else { 100 };
        format!("{id:020}").bytes().cycle().take(len).collect()
    }

    /// A heap segment with guest 1 attached and three messages queued to
    /// it: inline, then two in slots 0 and 1 of the host's pool.
    fn three_queued() -> (ShmHost, ShmGuest, Region, SegmentLayout) {
        let mut host = ShmHost::create_heap(SegmentConfig {
            max_guests: 1,
            ring_capacity: 8,
            slot_size: 128,
            slots_per_pool: 4,
            max_payload: 128,
            heartbeat_interval_ms: 0,
        })
        .unwrap();
        let region = host.region();
        let guest = ShmGuest::attach(region.clone()).unwrap();
        for id in [0, 1, 3] {
            let frame = Frame::new(MsgDesc::new(msg_type::DATA, id), payload(id));
            host.send(1, frame).unwrap();
        }
        let layout = header::read(&region).unwrap().layout;
        (host, guest, region, layout)
    }

    const TO_GUEST: Which = Which {
        guest: id(1),
        direction: Direction::HostToGuest,
        limit: usize::MAX,
        previews: true,
    };

    fn ids(ring: &RingPeek) -> Vec<u64> {
        ring.messages.iter().map(|m| m.id).collect()
    }

    // What the receiver does while the ring is read decides: taking a
    // message (the head moves) or a slot freed and taken again (its state
    // changes) makes the read void; a message added behind does not.
    // shm[verify shm.inspect.peek]
    #[test]
    fn a_look_is_kept_only_if_nothing_it_read_changed() {
        let (mut host, mut guest, region, layout) = three_queued();
        let look_once =
            |meanwhile: &mut dyn FnMut()| look_with(&region, &layout, TO_GUEST, 1, meanwhile);

        // Still: the three, as they are.
        let ring = look_once(&mut || {}).unwrap();
        assert_eq!((ids(&ring), ring.head, ring.queued), (vec![0, 1, 3], 0, 3));

        // The sender adds one meanwhile: the look is still what was queued.
        let more = Frame::new(MsgDesc::new(msg_type::DATA, 4), payload(4));
        let ring = look_once(&mut || host.send(1, &more).unwrap()).unwrap();
        assert_eq!(ids(&ring), [0, 1, 3]);

        // The receiver takes one meanwhile: void.
        let mut taken = None;
        let void = look_once(&mut || taken = guest.try_recv().unwrap());
        assert!(
            matches!(void, Err(Error::Changing { tries: 1, .. })),
            "{void:?}"
        );
        assert_eq!(taken.unwrap().desc.id, 0);

        // A slot a listed message names is freed and allocated again
        // without the head moving (a broken or dying process): void.
        let pool: Pool = Pool::open(&region, &layout, Party::Host).unwrap();
        let named = look_once(&mut || {}).unwrap().messages[0].slot.unwrap();
        let void = look_once(&mut || {
            assert!(pool.free(crate::pool::SlotRef {
                index: named.index,
                generation: named.generation,
            }));
            pool.try_alloc(Party::Host, &mut 0).unwrap();
        });
        assert!(matches!(void, Err(Error::Changing { .. })), "{void:?}");

        // With tries left, the next read is kept. (What the receiver takes
        // is the message whose slot went: it refuses it.)
        let mut first = true;
        let ring = look_with(&region, &layout, TO_GUEST, 2, &mut || {
            if std::mem::take(&mut first) {
                assert!(matches!(guest.try_recv(), Err(Error::BadDescriptor { .. })));
            }
        })
        .unwrap();
        assert_eq!((ids(&ring), ring.head), (vec![3, 4], 2));
        assert!(matches!(
            peek_ring(&region, &layout, TO_GUEST),
            Ok(RingPeek { queued: 2, .. })
        ));
    }

    /// Checks that a listing of a fresh ring shows what was sent: message
    /// `id` at position `id`, with its own payload; returns how many.
    fn assert_listed_as_sent(ring: &RingPeek) -> usize {
        assert_eq!(ring.messages.len(), ring.queued as usize);
        for (k, m) in ring.messages.iter().enumerate() {
            assert_eq!(m.position, ring.head.wrapping_add(k as u32));
            assert_eq!(m.id, u64::from(m.position), "{ring:?}");
            assert_eq!(m.problem, None, "{ring:?}");
            let want = payload(m.id);
            let preview = m.preview.as_ref().unwrap();
            let shown = &want[..want.len().min(PREVIEW_BYTES)];
            assert_eq!(preview.text.as_deref().map(str::as_bytes), Some(shown));
            assert_eq!(m.len as usize, want.len());
        }
        ring.messages.len()
    }

    // A sender and a receiver in two threads keep one ring as busy as it
    // gets, while it is peeked at again and again: each look is either a
    // listing of what was really queued, in order, each message with its
    // own payload, or `Changing`. Never a mix.
    // shm[verify shm.inspect.peek]
    #[test]
    fn a_ring_in_use_is_listed_consistently_or_not_at_all() {
        let config = SegmentConfig {
            max_guests: 1,
            ring_capacity: 8,
            slot_size: 128,
            slots_per_pool: 8,
            max_payload: 128,
            heartbeat_interval_ms: 0,
        };
        let mut host = ShmHost::create_heap(config).unwrap();
        let region = host.region();
        let mut guest = ShmGuest::attach(region.clone()).unwrap();
        let stop = AtomicBool::new(false);
        let options = PeekOptions {
            peer: Some(id(1)),
            direction: Some(Direction::HostToGuest),
            limit: None,
        };
        let (mut listed, mut changing, mut messages) = (0u32, 0u32, 0usize);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) {
                    let frame = Frame::new(MsgDesc::new(msg_type::DATA, id), payload(id));
                    if host
                        .send_timeout(1, &frame, Some(Duration::from_millis(10)))
                        .is_ok()
                    {
                        id += 1;
                    }
                }
            });
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(frame)) = guest.recv_timeout(Some(Duration::from_millis(10))) {
                        assert_eq!(frame.payload(), &payload(frame.desc.id)[..]);
                        // A little slower than the sender: the ring stays
                        // full and keeps moving.
                        std::thread::sleep(Duration::from_micros(20));
                    }
                }
            });
            // Stops both threads when the look loop ends, even by a panic.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&stop);
            let deadline = Instant::now() + Duration::from_millis(1000);
            while Instant::now() < deadline {
                match peek_region(&region, &options) {
                    Ok(report) => {
                        messages += assert_listed_as_sent(&report.rings[0]);
                        listed += 1;
                    }
                    Err(Error::Changing { tries, .. }) => {
                        assert_eq!(tries, TRIES);
                        changing += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        eprintln!("{listed} listings ({messages} messages), {changing} changing");
        assert!(listed + changing > 0);
    }

    #[test]
    fn previews_are_text_only_when_printable() {
        let p = Preview::of(b"hello\tworld\n", 12);
        assert_eq!(
            (p.text.as_deref(), p.truncated),
            (Some("hello\tworld\n"), false)
        );
        assert_eq!(Preview::of(b"a\0b", 3).text, None);
        assert_eq!(Preview::of(&[0xff, 0x00], 2).hex, "ff00");
        // A character cut by the end of the preview is left out, but only
        // when the payload goes on.
        let cut = "é".as_bytes()[..1].to_vec();
        assert_eq!(Preview::of(&cut, 5).text.as_deref(), Some(""));
        assert_eq!(Preview::of(&cut, 1).text, None);
        assert!(Preview::of(b"abc", 100).truncated);
    }
}
