//! Who takes part in a segment: the guests' ids, and the states a guest's
//! entry in the peer table moves through. The lowest floor of the
//! library beside the layout: errors name both.

use std::fmt;

/// A guest's id: `1..=max_guests` (the host has none). Pools and slot
/// holders number the host 0, so a guest's id is also its party number.
pub type PeerId = u8;

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
/// use shmhub::Party;
///
/// assert_eq!(Party::Host.to_string(), "host");
/// assert_eq!(Party::Guest(3).to_string(), "peer 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The host.
    Host,
    /// The guest with this id.
    Guest(PeerId),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Host => f.write_str("host"),
            Party::Guest(p) => write!(f, "peer {p}"),
        }
    }
}
