//! What every end of a ring that a caller holds is made of, receiving or
//! sending: the segment, the ring's consuming or producing side, the role
//! (the lock that keeps other processes off that side), the watch on the
//! other side, and a split guest's hold on its entry; and what their waits
//! check about that other side. The receiving and the sending ends add
//! what only they do around it.

use std::sync::Arc;

use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::layout::Direction;
use crate::locks::{Role, lock_byte, lock_byte::End};
use crate::party::{PeerId, QuarantineReason};
use crate::peer::Presence;
use crate::producer::Producer;
use crate::segment::Segment;
use crate::wait::Deadline;
use crate::watch::{EntryWatch, GuestWatch, HostWatch, KeepAlive, Moving, OtherSide};

/// Which side of a guest's rings an end is on: the host's, or the
/// guest's own, for its claim at `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The host's.
    Host,
    /// The guest's own, for its claim at `epoch`.
    Guest {
        /// The entry's epoch when the guest claimed it.
        epoch: u32,
    },
}

/// One end of a ring as a caller holds it, `E` being the ring's side
/// (its consumer or its producer).
#[derive(Debug)]
pub(crate) struct EndCore<E> {
    pub(crate) seg: Arc<Segment>,
    pub(crate) end: E,
    /// The lock on the file that makes this process the only one on the
    /// ring's side, taken at the first use.
    pub(crate) role: Role,
    /// The watch on the party at the ring's other end.
    pub(crate) other: OtherSide,
    moving: Moving,
    /// A split guest's hold on its entry (see `ShmGuest::into_split`).
    _membership: Option<KeepAlive>,
}

/// A ring's side as an end holds it: the producer sends, the consumer
/// receives. Tying the two together keeps an end from opening one side
/// and taking the other's role.
pub(crate) trait RingSide: Sized {
    /// Which way this side moves messages.
    const MOVING: Moving;

    /// Opens this side of guest `guest`'s ring in `direction`.
    fn open(seg: &Segment, guest: PeerId, direction: Direction) -> Result<Self>;
}

impl RingSide for Producer {
    const MOVING: Moving = Moving::Sending;

    fn open(seg: &Segment, guest: PeerId, direction: Direction) -> Result<Self> {
        seg.producer(guest, direction)
    }
}

impl RingSide for Consumer {
    const MOVING: Moving = Moving::Receiving;

    fn open(seg: &Segment, guest: PeerId, direction: Direction) -> Result<Self> {
        seg.consumer(guest, direction)
    }
}

impl<E: RingSide> EndCore<E> {
    /// The end on `side` of guest `guest`'s ring that `E` moves messages
    /// on: the ring's side, then the watch on the other side.
    pub(crate) fn open(seg: &Arc<Segment>, guest: PeerId, side: Side) -> Result<Self> {
        let moving = E::MOVING;
        let direction = direction(side, moving);
        let end = E::open(seg, guest, direction)?;
        let other = match side {
            Side::Host => OtherSide::Guest(GuestWatch::new(seg, guest)?),
            Side::Guest { epoch } => OtherSide::Host(HostWatch::new(guest, epoch)),
        };
        Ok(EndCore {
            seg: seg.clone(),
            end,
            role: Role::new(lock_byte::ring_end(guest, lock_end(direction, moving))),
            other,
            moving,
            _membership: None,
        })
    }
}

impl<E> EndCore<E> {
    /// Takes the role, waiting within `deadline` for a process that holds
    /// it, except a held guest's: a live process that holds the guest's
    /// entry keeps its ends while it runs, so waiting for it would only
    /// end with the timeout ([`Error::HeldByGuest`]).
    #[cold]
    pub(crate) fn take_the_role(&mut self, deadline: &mut Deadline) -> Result<()> {
        let what = self.role_name();
        match &self.other {
            OtherSide::Host(watch) => {
                let p = watch.peer_id();
                self.seg.take_guest_role(&mut self.role, p, what, deadline)
            }
            OtherSide::Guest(_) => self.role.ensure(self.seg.lock_file(), deadline, || what),
        }
    }

    /// The role in words, for the error that says another process holds
    /// it: `the sending end of peer 3`, `the host's receiving end for peer 3`.
    pub(crate) fn role_name(&self) -> String {
        let moving = match self.moving {
            Moving::Sending => "sending",
            Moving::Receiving => "receiving",
        };
        match &self.other {
            OtherSide::Host(watch) => format!("the {moving} end of peer {}", watch.peer_id()),
            OtherSide::Guest(watch) => {
                format!("the host's {moving} end for peer {}", watch.peer_id())
            }
        }
    }

    /// An error from the ring (or, sending, the pool): for the host, one
    /// that the guest's own writes caused cuts the guest off
    /// (`shm.peer.quarantine`); for a guest, one in the host's part stops
    /// it.
    #[cold]
    pub(crate) fn broken(&self, e: Error) -> Error {
        match &self.other {
            OtherSide::Guest(watch) => {
                self.seg
                    .cut_off_for(watch.peer_id(), QuarantineReason::Ring, e)
            }
            OtherSide::Host(_) => self.seg.host_broke(e),
        }
    }

    /// Keeps `membership` alive as long as this end.
    pub(crate) fn keep_alive(&mut self, membership: KeepAlive) {
        self._membership = Some(membership);
    }
}

/// What one receive or send checks about the other side between naps,
/// and (sending to a guest, which can leave under a send) around
/// publishing.
pub(crate) enum Checks<'a> {
    /// A guest's end: the host, and the guest's own entry.
    Host(&'a mut HostWatch, &'a Segment),
    /// One of the host's ends: the guest's entry, judged gone as the way
    /// messages move says (a receive still reads what a departed guest
    /// left).
    Guest(EntryWatch<'a>, Moving),
}

impl<'a> Checks<'a> {
    /// Fails once the other side is gone, or a guest's entry is no longer
    /// its own; a guest's end also beats its heartbeat, if one is due.
    pub(crate) fn check(&mut self) -> Result<()> {
        match self {
            Checks::Host(watch, seg) => watch.check(seg),
            Checks::Guest(entry, moving) => entry.check(*moving),
        }
    }

    /// What a publication looks at just before and just after; `None` for
    /// the host, which does not move away under a send as a guest can.
    #[inline(always)]
    pub(crate) fn presence(&self) -> Option<Presence<'a>> {
        match self {
            Checks::Host(..) => None,
            Checks::Guest(entry, _) => Some(entry.presence()),
        }
    }
}

/// The way the ring carries messages that an end on `side` moves as
/// `moving` says: the host sends towards the guest, the guest towards
/// the host.
fn direction(side: Side, moving: Moving) -> Direction {
    match (side, moving) {
        (Side::Host, Moving::Sending) | (Side::Guest { .. }, Moving::Receiving) => {
            Direction::HostToGuest
        }
        (Side::Host, Moving::Receiving) | (Side::Guest { .. }, Moving::Sending) => {
            Direction::GuestToHost
        }
    }
}

/// The lock byte's end for the side of the ring in `direction` that
/// `moving` says: its producer sends, its consumer receives.
fn lock_end(direction: Direction, moving: Moving) -> End {
    match (direction, moving) {
        (Direction::HostToGuest, Moving::Sending) => End::HostToGuestProducer,
        (Direction::HostToGuest, Moving::Receiving) => End::HostToGuestConsumer,
        (Direction::GuestToHost, Moving::Sending) => End::GuestToHostProducer,
        (Direction::GuestToHost, Moving::Receiving) => End::GuestToHostConsumer,
    }
}
