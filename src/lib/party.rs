//! Who takes part in a segment: the guests' ids, and the states a guest's
//! entry in the peer table moves through. The lowest floor of the
//! library beside the layout: errors name both.

use std::fmt;
use std::num::NonZeroU8;

/// A guest's id, `1..=255` (a segment uses `1..=max_guests`). The host
/// has none: it is [`Party::Host`], never a peer id, so no id means "the
/// host" and no id is 0.
///
/// Calls that take a guest accept a `PeerId` or its number as a `u8`
/// ([`IntoPeerId`]); a number that names no guest is refused with
/// [`Error::InvalidPeerId`](crate::Error::InvalidPeerId).
///
/// ```
/// use shmhub::PeerId;
///
/// let id = PeerId::new(3).unwrap();
/// assert_eq!(id.get(), 3);
/// assert_eq!(id, 3);
/// assert_eq!(id.to_string(), "3");
/// assert_eq!(PeerId::new(0), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct PeerId(NonZeroU8);

impl PeerId {
    /// The id numbered `id`; `None` for 0, which names no guest.
    pub const fn new(id: u8) -> Option<PeerId> {
        match NonZeroU8::new(id) {
            Some(id) => Some(PeerId(id)),
            None => None,
        }
    }

    /// The id's number, `1..=255`.
    pub const fn get(self) -> u8 {
        self.0.get()
    }

    /// Where the guest's entry (and its rings) sit among the guests':
    /// `id - 1`.
    pub(crate) const fn index(self) -> usize {
        self.0.get() as usize - 1
    }

    /// The guest whose entry sits at `index` (`0..255`).
    ///
    /// # Panics
    ///
    /// On an index of 255 or more: every caller counts below `max_guests`.
    pub(crate) fn at_index(index: usize) -> PeerId {
        u8::try_from(index + 1)
            .ok()
            .and_then(PeerId::new)
            .expect("a guest index below 255")
    }

    /// The ids `1..=max_guests`, in order.
    pub fn up_to(max_guests: u8) -> impl DoubleEndedIterator<Item = PeerId> + Clone {
        (1..=max_guests).filter_map(PeerId::new)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

impl PartialEq<u8> for PeerId {
    fn eq(&self, other: &u8) -> bool {
        self.get() == *other
    }
}

impl PartialEq<PeerId> for u8 {
    fn eq(&self, other: &PeerId) -> bool {
        *self == other.get()
    }
}

macro_rules! peer_id_into {
    ($($t:ty),*) => {$(
        impl From<PeerId> for $t {
            fn from(id: PeerId) -> $t {
                <$t>::from(id.get())
            }
        }
    )*};
}
peer_id_into!(u8, u16, u32, u64, usize);

impl TryFrom<u8> for PeerId {
    type Error = u8;

    /// The id numbered `id`, or `Err(0)` for 0.
    fn try_from(id: u8) -> Result<PeerId, u8> {
        PeerId::new(id).ok_or(id)
    }
}

impl std::str::FromStr for PeerId {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerId, String> {
        match s.parse::<u8>() {
            Ok(id) => {
                PeerId::new(id).ok_or_else(|| "a peer id is 1 to 255; 0 names no guest".to_owned())
            }
            Err(_) => Err(format!("{s:?} is not a peer id (1 to 255)")),
        }
    }
}

/// A guest named by its [`PeerId`] or by its number: what calls that take
/// a guest accept, so that `host.send(1, frame)` reads as it did when ids
/// were bare numbers. Sealed: only `PeerId` and `u8` implement it.
pub trait IntoPeerId: sealed::Sealed {
    /// The id, or `None` for 0.
    fn into_peer_id(self) -> Option<PeerId>;
}

impl IntoPeerId for PeerId {
    fn into_peer_id(self) -> Option<PeerId> {
        Some(self)
    }
}

impl IntoPeerId for u8 {
    fn into_peer_id(self) -> Option<PeerId> {
        PeerId::new(self)
    }
}

mod sealed {
    /// Copy: a call may look at the id twice (to check it, and to name it
    /// in the error when it is no guest).
    pub trait Sealed: Copy {}
    impl Sealed for super::PeerId {}
    impl Sealed for u8 {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn no_peer_id_is_zero() {
        assert_eq!(PeerId::new(0), None);
        assert_eq!(PeerId::try_from(0), Err(0));
        assert_eq!(0u8.into_peer_id(), None);
        assert_eq!(PeerId::new(255).map(PeerId::get), Some(255));
        assert_eq!(PeerId::up_to(3).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(PeerId::at_index(0), 1);
        assert_eq!(PeerId::at_index(254).index(), 254);
    }

    #[test]
    fn from_str_takes_1_to_255_only() {
        assert_eq!("1".parse::<PeerId>(), Ok(id(1)));
        assert_eq!("255".parse::<PeerId>(), Ok(id(255)));
        for refused in ["0", "256", "-1", "", "host", "1.5"] {
            assert!(refused.parse::<PeerId>().is_err(), "{refused:?}");
        }
    }

    #[test]
    fn party_numbers_are_the_formats() {
        assert_eq!(Party::Host.number(), 0);
        assert_eq!(guest(7).number(), 7);
        assert_eq!(Party::from_number(0), Party::Host);
        assert_eq!(Party::from_number(7), guest(7));
    }
}

/// The state of a peer entry.
///
/// shm[impl shm.peer.states]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PeerState {
    /// Free: any guest may claim it.
    Empty,
    /// Set aside by the host for a guest it is about to spawn.
    Reserved,
    /// A guest is attached.
    Attached,
    /// The guest has left; the host may still read what it sent.
    Goodbye,
    /// The host cut the guest off for breaking the protocol
    /// (`shm.peer.quarantine`): nobody sends to it or receives from it;
    /// the entry is freed once its holder is gone.
    Quarantined,
}

impl PeerState {
    /// The stored value.
    pub fn to_u32(self) -> u32 {
        match self {
            PeerState::Empty => 0,
            PeerState::Reserved => 1,
            PeerState::Attached => 2,
            PeerState::Goodbye => 3,
            PeerState::Quarantined => 4,
        }
    }

    /// Parses a stored value; anything else is corruption.
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            0 => PeerState::Empty,
            1 => PeerState::Reserved,
            2 => PeerState::Attached,
            3 => PeerState::Goodbye,
            4 => PeerState::Quarantined,
            _ => return None,
        })
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::Empty => "empty",
            PeerState::Reserved => "reserved",
            PeerState::Attached => "attached",
            PeerState::Goodbye => "goodbye",
            PeerState::Quarantined => "quarantined",
        })
    }
}

/// Why the host cut a guest off (`shm.peer.quarantine`): which part of
/// the guest's own memory broke the protocol, or an eviction. Stored in
/// the entry's `quarantine` field, so that every process can say why.
///
/// ```
/// use shmhub::QuarantineReason;
///
/// assert_eq!(QuarantineReason::from_u32(2), Some(QuarantineReason::Ring));
/// assert_eq!(QuarantineReason::Ring.to_string(), "its ring's indices");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum QuarantineReason {
    /// Its entry's state word held no state the protocol knows.
    Entry,
    /// Its guest-to-host ring's indices were more than the ring's
    /// capacity apart.
    Ring,
    /// It sent a descriptor that failed validation (`shm.recv.validate`).
    Descriptor,
    /// The host evicted it ([`crate::ShmHost::evict`]).
    Evicted,
}

impl QuarantineReason {
    /// The stored value.
    pub fn to_u32(self) -> u32 {
        match self {
            QuarantineReason::Entry => 1,
            QuarantineReason::Ring => 2,
            QuarantineReason::Descriptor => 3,
            QuarantineReason::Evicted => 4,
        }
    }

    /// Parses a stored value; `None` for any other (0: no reason written).
    pub fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => QuarantineReason::Entry,
            2 => QuarantineReason::Ring,
            3 => QuarantineReason::Descriptor,
            4 => QuarantineReason::Evicted,
            _ => return None,
        })
    }
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuarantineReason::Entry => "its entry's state",
            QuarantineReason::Ring => "its ring's indices",
            QuarantineReason::Descriptor => "a descriptor it sent",
            QuarantineReason::Evicted => "evicted by the host",
        })
    }
}

/// One side of a segment: the host, or a guest.
///
/// ```
/// use shmhub::{Party, PeerId};
///
/// assert_eq!(Party::Host.to_string(), "host");
/// assert_eq!(Party::Guest(PeerId::new(3).unwrap()).to_string(), "peer 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The host.
    Host,
    /// The guest with this id.
    Guest(PeerId),
}

impl Party {
    /// The party's number where the format numbers parties (pools, slot
    /// holders, role locks): 0 for the host, a guest's id for a guest.
    pub(crate) fn number(self) -> u8 {
        match self {
            Party::Host => 0,
            Party::Guest(p) => p.get(),
        }
    }

    /// The party numbered `number` ([`Party::number`]).
    pub(crate) fn from_number(number: u8) -> Party {
        PeerId::new(number).map_or(Party::Host, Party::Guest)
    }
}

/// Guest `n`'s id, for tests.
///
/// # Panics
///
/// For 0.
#[cfg(test)]
pub(crate) const fn id(n: u8) -> PeerId {
    PeerId::new(n).expect("a guest id is not 0")
}

/// Guest `n` as a party, for tests.
#[cfg(test)]
pub(crate) fn guest(n: u8) -> Party {
    Party::Guest(id(n))
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Host => f.write_str("host"),
            Party::Guest(p) => write!(f, "peer {p}"),
        }
    }
}
