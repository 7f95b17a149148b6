//! Who holds each slot: every allocated slot of every pool, with its
//! generation and holder, the queued message that names it, and whether it
//! looks leaked.
//!
//! Read-only, like the rest of inspection: the file is opened and mapped
//! read-only. The rings are looked at first (consistently, as
//! [`crate::admin::peek_path`] does), then the pools. Under traffic a slot
//! may be seen a moment after the message that named it was taken, or in
//! the middle of its allocation or its free; so a slot is called leaked
//! only when a second look, a moment later, finds it unchanged, and
//! nothing alive can free it: no live holder, and no process acting in a
//! role that frees it (a command receiving as a scripted guest holds that
//! guest's receiving role, not its entry).
//!
//! shm[impl shm.inspect.slots]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::inspect::{BadPeer, SegmentReport, inspect_region};
use crate::layout::{Direction, HEADER_SIZE, SegmentLayout};
use crate::liveness::{HolderStatus, HostStatus};
use crate::locks::{ByteLock, lock_byte, lock_byte::End};
use crate::mmap::MmapRegion;
use crate::party::{Party, PeerId};
use crate::peek;
use crate::pool::{self, Pool};
use crate::region::{Reading, Region};

/// Who holds a slot, from its pool's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SlotHolder {
    /// Nobody: the slot is being allocated or freed (or the process doing
    /// it died: a guest killed while freeing a host slot leaves it so for
    /// good, see docs/reliability.md).
    None,
    /// The pool's owner, who allocated it: a payload being written (a
    /// loan), or a send under way.
    Sender,
    /// Another party, to whom the slot was sent: it frees the slot once
    /// it has read the message.
    Receiver,
    /// A holder code that names no party of the segment.
    Unknown,
}

/// The queued message that names a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QueuedAt {
    /// The guest whose ring holds it.
    pub peer: PeerId,
    /// Which of its rings.
    pub direction: Direction,
    /// Its ring index.
    pub position: u32,
}

/// One allocated slot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlotReport {
    /// Whose pool: 0 for the host's, `N` for guest `N`'s.
    pub pool: u8,
    /// The same in words: "host" or "peer N".
    pub pool_name: String,
    /// The slot's index in its pool.
    pub slot: u32,
    /// Its generation (bumped at every allocation).
    pub generation: u32,
    /// The holder code as stored (0 none, 1 the host, `1 + p` guest `p`).
    pub holder_code: u32,
    /// Who holds it, from the pool's point of view.
    pub holder: SlotHolder,
    /// The holding party (0 = the host, `p` = guest `p`); `None` for no
    /// holder or an unknown code.
    pub holder_party: Option<u8>,
    /// Whether the process that must free it lives: for no holder, the
    /// pool's owner (the only one who allocates from it). A host is alive
    /// when judged `alive`, a guest when `alive` or `stale`; a scripted
    /// claim belongs to no process and counts as not alive. `None` when it
    /// cannot be judged (its entry could not be read).
    pub holder_alive: Option<bool>,
    /// The queued message that names it (index and generation), if any.
    pub queued: Option<QueuedAt>,
    /// Allocated, named by no queued message, and held by nobody alive:
    /// nothing will free it until its holder is reclaimed or detached.
    pub leaked: bool,
}

/// What [`inspect_slots`] saw.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SlotsReport {
    /// The file.
    pub path: PathBuf,
    /// Every allocated slot, pool by pool (the host's first), in slot
    /// order.
    pub slots: Vec<SlotReport>,
    /// The peer entries that could not be read (as
    /// [`SegmentReport::bad_peers`]): slots they hold are not judged.
    pub bad_peers: Vec<BadPeer>,
}

/// Lists every allocated slot of every pool of the segment at `path`:
/// holder, the queued message naming it, and whether it looks leaked. The
/// file is opened and mapped read-only.
///
/// ```
/// use shmhub::{SegmentConfig, ShmGuest, ShmHost};
/// use shmhub::admin::{SlotHolder, inspect_slots};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("slots.shm");
/// let mut host = ShmHost::create(&path, SegmentConfig::default())?;
/// let guest = ShmGuest::attach_path(&path)?;
/// let loan = host.loan(guest.peer_id(), 1000, None)?; // being written
///
/// let report = inspect_slots(&path)?;
/// let slot = &report.slots[0];
/// assert_eq!((slot.holder, slot.holder_alive, slot.leaked), (SlotHolder::Sender, Some(true), false));
/// # drop(loan);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`crate::admin::peek_path`].
pub fn inspect_slots(path: &Path) -> Result<SlotsReport> {
    let mmap = MmapRegion::open_read_only(path, HEADER_SIZE)?;
    let slots = inspect_slots_region(&mmap.region(), Some(mmap.file()))?;
    Ok(SlotsReport {
        path: path.to_path_buf(),
        ..slots
    })
}

/// The slots that descriptors queued in the rings name, by pool, slot
/// and generation, with where each is queued.
fn slots_named_by_rings(
    region: &Region,
    layout: &SegmentLayout,
) -> Result<HashMap<(u8, u32, u32), QueuedAt>> {
    let mut named = HashMap::new();
    for guest in layout.guests() {
        for direction in [Direction::GuestToHost, Direction::HostToGuest] {
            let which = peek::Which {
                guest,
                direction,
                limit: usize::MAX,
                previews: false,
            };
            let ring = peek::peek_ring(region, layout, which)?;
            for m in &ring.messages {
                if let Some(slot) = m.slot {
                    named.insert(
                        (ring.sender, slot.index, slot.generation),
                        QueuedAt {
                            peer: guest,
                            direction,
                            position: m.position,
                        },
                    );
                }
            }
        }
    }
    Ok(named)
}

/// [`inspect_slots`] on a segment in `region`; `file` (if any) is used to
/// test the liveness locks.
///
/// # Errors
///
/// As [`inspect_slots`].
pub fn inspect_slots_region(region: &Region, file: Option<&std::fs::File>) -> Result<SlotsReport> {
    let report = inspect_region(region, file)?;
    let layout = report.header.layout;
    let named = slots_named_by_rings(region, &layout)?;
    let mut slots = Vec::new();
    let mut candidates = Vec::new();
    for owner in layout.parties() {
        for s in Pool::<Reading>::open(region, &layout, owner)?.allocated() {
            let party = pool::holder_party(s.holder).filter(|&p| match p {
                Party::Host => true,
                Party::Guest(g) => layout.is_guest(g),
            });
            let holder = match (s.holder, party) {
                (0, _) => SlotHolder::None,
                (_, Some(p)) if p == owner => SlotHolder::Sender,
                (_, Some(_)) => SlotHolder::Receiver,
                (_, None) => SlotHolder::Unknown,
            };
            let holder_alive = match holder {
                SlotHolder::None => alive(&report, owner),
                SlotHolder::Unknown => Some(false),
                SlotHolder::Sender | SlotHolder::Receiver => party.and_then(|p| alive(&report, p)),
            };
            let queued = named.get(&(owner.number(), s.slot, s.generation)).copied();
            let suspect = queued.is_none()
                && holder_alive == Some(false)
                && !freer_at_work(file, &layout, owner, party);
            if suspect {
                candidates.push((slots.len(), owner, s.slot, s.generation, s.holder));
            }
            slots.push(SlotReport {
                pool: owner.number(),
                pool_name: owner.to_string(),
                slot: s.slot,
                generation: s.generation,
                holder_code: s.holder,
                holder,
                holder_party: party.map(Party::number),
                holder_alive,
                leaked: false,
                queued,
            });
        }
    }
    // A second look a moment later: a slot caught in the middle of its
    // allocation, its free or its journey from one side to the other has
    // moved on by then; a leaked one has not.
    if !candidates.is_empty() {
        std::thread::sleep(SECOND_LOOK);
        for (i, owner, slot, generation, holder) in candidates {
            let word = Pool::<Reading>::open(region, &layout, owner)?.slot_word(slot);
            let unchanged = word.is_some_and(|(allocated, state)| {
                allocated && state == pool::state_word(generation, holder)
            });
            slots[i].leaked = unchanged;
        }
    }
    Ok(SlotsReport {
        path: PathBuf::new(),
        slots,
        bad_peers: report.bad_peers,
    })
}

/// How long the second look at a suspect slot waits: far longer than any
/// allocation, free or hand-over takes.
const SECOND_LOOK: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether a process is acting in a role that would free a slot of pool
/// `owner` held by `holder` (a receiver frees what it was sent; a sender
/// frees what it allocated and could not send): its ring-end lock is held.
/// A scripted entry belongs to no process, but a command receiving or
/// sending as it holds these. Without a file there are no locks to ask.
fn freer_at_work(
    file: Option<&std::fs::File>,
    layout: &crate::layout::SegmentLayout,
    owner: Party,
    holder: Option<Party>,
) -> bool {
    let Some(file) = file else {
        return false;
    };
    let held = |peer: PeerId, end: End| {
        ByteLock::is_locked(file, lock_byte::ring_end(peer, end)).unwrap_or(false)
    };
    match (owner, holder) {
        // A guest's slot, held by the host (receiving) or the guest.
        (Party::Guest(g), Some(Party::Host)) => held(g, End::GuestToHostConsumer),
        (Party::Guest(g), Some(h)) if h == owner => held(g, End::GuestToHostProducer),
        // The host's slot, held by guest `h` (receiving) or the host,
        // which may be sending to any guest.
        (Party::Host, Some(Party::Guest(h))) => held(h, End::HostToGuestConsumer),
        (Party::Host, Some(Party::Host)) => {
            layout.guests().any(|g| held(g, End::HostToGuestProducer))
        }
        _ => false,
    }
}

/// Whether `party` has a live process, per `report`; `None` when its
/// entry could not be read.
fn alive(report: &SegmentReport, party: Party) -> Option<bool> {
    match party {
        Party::Host => Some(report.host == HostStatus::Alive),
        Party::Guest(p) => report
            .peer(p)
            .map(|p| matches!(p.holder, HolderStatus::Alive | HolderStatus::Stale)),
    }
}
