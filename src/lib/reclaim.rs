//! What a reclaim did with each entry, and why it left some alone
//! ([`crate::ShmHost::reclaim_dead_report`]).

use std::fmt;

use crate::liveness::HolderStatus;
use crate::party::PeerId;

/// The outcome of [`crate::ShmHost::reclaim_dead_report`]: the entries it
/// reclaimed, and every other entry that is not Empty with the reason it
/// was left alone. Both lists are in peer order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReclaimReport {
    /// The entries reclaimed: their holder was dead (or stale) and nobody
    /// held their roles, so they are Empty now.
    pub reclaimed: Vec<PeerId>,
    /// The entries left as they were, each with why.
    pub skipped: Vec<Skipped>,
}

/// An entry a reclaim left alone. It prints ([`Display`](fmt::Display))
/// why, as a sentence that stands on its own: the reason, preceded by how
/// the holder was judged where the reason does not say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Skipped {
    /// The guest whose entry it is.
    pub peer: PeerId,
    /// How its holder was judged ([`HolderStatus::NoProcess`] for an entry
    /// that is reserved or left).
    pub holder: HolderStatus,
    /// Why it was not reclaimed.
    pub reason: SkipReason,
}

/// Why a reclaim left an entry alone. It prints
/// ([`Display`](fmt::Display)) as a short sentence, and serializes as the
/// variant's name in snake case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum SkipReason {
    /// Set aside by the host for a guest it is starting; nobody holds it yet.
    Reserved,
    /// Its guest has left; the entry frees itself once the host has read
    /// what that guest sent.
    Leaving,
    /// Claimed for scripted use: it belongs to no process, so it is never
    /// dead; only an explicit release frees it.
    Scripted,
    /// Its holding process runs (and beats, when heartbeats are on).
    Alive,
    /// Its heartbeat is stale but its process still lives and holds the
    /// guest's role locks (a stopped process, say): its rings cannot be
    /// emptied safely under it.
    StaleHoldsRoles,
    /// Its holding process is dead, but another process holds one of the
    /// guest's role locks (it acts as that guest right now).
    DeadRolesInUse,
    /// Its holder is dead or stale (see [`Skipped::holder`]), but another
    /// process holds the host's role locks for it (a running host, which
    /// reclaims on its own).
    HostRolesInUse,
    /// It changed while being reclaimed (released, or claimed again).
    Changed,
    /// The host cut its guest off for breaking the protocol, and its
    /// process still lives (or its entry could not be cleaned): it is
    /// freed once that process is gone.
    Quarantined,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Reserved => f.write_str("reserved for a guest the host is starting"),
            SkipReason::Leaving => {
                f.write_str("its guest has left; freed once the host reads what it sent")
            }
            SkipReason::Scripted => {
                f.write_str("scripted; belongs to no process, freed only when released")
            }
            SkipReason::Alive => f.write_str("alive"),
            SkipReason::StaleHoldsRoles => f.write_str("stale but alive; holds its role locks"),
            SkipReason::DeadRolesInUse => {
                f.write_str("dead, but another process holds its role locks")
            }
            SkipReason::HostRolesInUse => {
                f.write_str("another process holds the host's role locks for it")
            }
            SkipReason::Changed => f.write_str("changed while being reclaimed"),
            SkipReason::Quarantined => {
                f.write_str("cut off for breaking the protocol; freed once its process is gone")
            }
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            SkipReason::HostRolesInUse => write!(f, "{}, but {}", self.holder, self.reason),
            reason => write!(f, "{reason}"),
        }
    }
}
