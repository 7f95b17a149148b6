//! What changed in a segment between two snapshots of it: a guest attached,
//! detached, said goodbye or died, an entry was reserved or reclaimed, the
//! host left or died. For `shmhub events`, which takes a snapshot every
//! interval.
//!
//! Snapshots are read-only ([`crate::admin::inspect_path`]), so a watcher
//! never changes what it watches. Between two snapshots several things can
//! happen; each change is told from the states, epochs and holders the two
//! show (an entry claimed and left again within one interval is not seen).

use crate::inspect::SegmentReport;
use crate::liveness::{HolderStatus, HostStatus};
use crate::party::{PeerId, PeerState, QuarantineReason};

/// One guest entry in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntrySnapshot {
    /// The entry's state.
    pub state: PeerState,
    /// How many times it has been claimed.
    pub epoch: u32,
    /// Its holder's pid (0: none).
    pub pid: u32,
    /// Whether its holder lives.
    pub holder: HolderStatus,
    /// Why the host cut its guest off, when it is Quarantined.
    pub quarantine: Option<QuarantineReason>,
}

/// A snapshot of a segment: the host and every guest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Whether the host lives.
    pub host: HostStatus,
    /// The host's pid (0: none recorded).
    pub host_pid: u32,
    /// Every guest entry, guest `p` at `p - 1`: as read, or, for an entry
    /// whose state word is none the protocol knows (`shm.peer.states`),
    /// that word as stored.
    pub entries: Vec<Result<EntrySnapshot, u32>>,
}

impl Snapshot {
    /// What an inspection saw, its bad entries ([`SegmentReport::bad_peers`])
    /// in their places among the others.
    pub fn of(report: &SegmentReport) -> Self {
        let mut entries: Vec<Result<EntrySnapshot, u32>> =
            vec![Err(0); report.header.layout.config.max_guests as usize];
        for p in &report.peers {
            entries[usize::from(p.entry.peer_id) - 1] = Ok(EntrySnapshot {
                state: p.entry.state,
                epoch: p.entry.epoch,
                pid: p.entry.pid,
                holder: p.holder,
                quarantine: p.entry.quarantine,
            });
        }
        for bad in &report.bad_peers {
            entries[usize::from(bad.peer_id) - 1] = Err(bad.raw_state);
        }
        Snapshot {
            host: report.host,
            host_pid: report.header.host_pid,
            entries,
        }
    }
}

/// A change between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(
        tag = "event",
        rename_all = "snake_case",
        rename_all_fields = "snake_case"
    )
)]
pub enum Event {
    /// A guest claimed an entry (`pid` 0: a scripted claim, no process).
    Attached {
        /// The entry.
        peer: PeerId,
        /// The claiming process.
        pid: u32,
        /// The claim's epoch.
        epoch: u32,
    },
    /// A guest left its entry, which is free again.
    Detached {
        /// The entry.
        peer: PeerId,
    },
    /// A guest left while the host still had its messages to read; the
    /// entry is free once they are read.
    SaidGoodbye {
        /// The entry.
        peer: PeerId,
    },
    /// The host set an entry aside for a guest about to start.
    Reserved {
        /// The entry.
        peer: PeerId,
    },
    /// A reservation was given back without a guest attaching.
    Released {
        /// The entry.
        peer: PeerId,
    },
    /// A guest's process died; its entry waits to be reclaimed.
    HolderDied {
        /// The entry.
        peer: PeerId,
        /// The dead process.
        pid: u32,
    },
    /// A guest's process runs but has stopped beating.
    HolderStale {
        /// The entry.
        peer: PeerId,
        /// The silent process.
        pid: u32,
    },
    /// The host cut a guest off for breaking the protocol, or evicted it
    /// (`shm.peer.quarantine`); its entry is freed once its process is
    /// gone (then [`Event::Reclaimed`]).
    Quarantined {
        /// The entry.
        peer: PeerId,
        /// Why, as the entry says.
        reason: Option<QuarantineReason>,
    },
    /// The entry of a dead guest was reclaimed and is free again.
    Reclaimed {
        /// The entry.
        peer: PeerId,
    },
    /// The host said goodbye.
    HostLeft,
    /// The host's process died without saying goodbye.
    HostDied {
        /// The dead process.
        pid: u32,
    },
    /// A guest entry's state word holds a value the protocol does not know
    /// (`shm.peer.states`): a stray or hostile write. Told once, when it
    /// goes bad; the host cuts that guest off when its receive or reclaim
    /// meets the entry (then [`Event::Quarantined`]).
    BadState {
        /// The entry.
        peer: PeerId,
        /// The state word as stored.
        raw_state: u32,
    },
    /// The segment file was removed (or replaced by another file).
    Removed,
}

/// The changes from `before` to `after` (two snapshots of the same segment),
/// host first, then entries in order.
pub fn changes(before: &Snapshot, after: &Snapshot) -> Vec<Event> {
    let mut events = Vec::new();
    if before.host != after.host {
        match after.host {
            HostStatus::Gone => events.push(Event::HostLeft),
            HostStatus::Dead => events.push(Event::HostDied {
                pid: after.host_pid,
            }),
            HostStatus::Alive | HostStatus::NoProcess => {}
        }
    }
    for (i, (b, a)) in before.entries.iter().zip(&after.entries).enumerate() {
        let peer = PeerId::at_index(i);
        match (b, a) {
            (Ok(b), Ok(a)) => entry_changes(peer, b, a, &mut events),
            (Ok(_), &Err(raw_state)) => events.push(Event::BadState { peer, raw_state }),
            // Told once, whatever else is written there meanwhile.
            (Err(_), Err(_)) => {}
            (Err(_), Ok(a)) => after_bad_state(peer, a, &mut events),
        }
    }
    events
}

/// An entry whose state word was bad holds a known state again: cut off
/// by the host, or freed (cut off and reclaimed within one look). Any
/// other state is the guest writing its word back, which changes nothing:
/// a host that met the bad word has cut it off already.
fn after_bad_state(peer: PeerId, a: &EntrySnapshot, events: &mut Vec<Event>) {
    match a.state {
        PeerState::Quarantined => events.push(Event::Quarantined {
            peer,
            reason: a.quarantine,
        }),
        PeerState::Empty => events.push(Event::Reclaimed { peer }),
        _ => {}
    }
}

fn entry_changes(peer: PeerId, b: &EntrySnapshot, a: &EntrySnapshot, events: &mut Vec<Event>) {
    use PeerState::{Attached, Empty, Goodbye, Quarantined, Reserved};
    let occupied = |s: PeerState| matches!(s, Attached | Goodbye | Quarantined);
    let departure = |events: &mut Vec<Event>| {
        events.push(if b.holder == HolderStatus::Dead {
            Event::Reclaimed { peer }
        } else {
            Event::Detached { peer }
        })
    };
    if a.epoch != b.epoch {
        // Claimed again since: whoever held it before is gone.
        if occupied(b.state) {
            departure(events);
        }
        if a.state == Attached {
            events.push(Event::Attached {
                peer,
                pid: a.pid,
                epoch: a.epoch,
            });
            // Attached and already dead (or silent) by this snapshot.
            holder_change(peer, HolderStatus::Alive, a, events);
        }
        return;
    }
    match (b.state, a.state) {
        (Empty, Reserved) => events.push(Event::Reserved { peer }),
        (Reserved, Empty) => events.push(Event::Released { peer }),
        (Attached, Goodbye) if b.holder == HolderStatus::Dead => {}
        (Attached, Goodbye) => events.push(Event::SaidGoodbye { peer }),
        (Quarantined, Empty) => events.push(Event::Reclaimed { peer }),
        (before, Quarantined) if before != Quarantined => events.push(Event::Quarantined {
            peer,
            reason: a.quarantine,
        }),
        (Attached | Goodbye, Empty) => departure(events),
        (Attached, Attached) => holder_change(peer, b.holder, a, events),
        _ => {}
    }
}

/// The holder of an attached entry died or went stale since it was `was`.
fn holder_change(peer: PeerId, was: HolderStatus, now: &EntrySnapshot, events: &mut Vec<Event>) {
    if now.holder == was {
        return;
    }
    match now.holder {
        HolderStatus::Dead => events.push(Event::HolderDied { peer, pid: now.pid }),
        HolderStatus::Stale => events.push(Event::HolderStale { peer, pid: now.pid }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::id;

    fn entry(state: PeerState, epoch: u32, pid: u32, holder: HolderStatus) -> EntrySnapshot {
        EntrySnapshot {
            state,
            epoch,
            pid,
            holder,
            quarantine: None,
        }
    }

    fn snapshot(host: HostStatus, entries: Vec<Result<EntrySnapshot, u32>>) -> Snapshot {
        Snapshot {
            host,
            host_pid: 10,
            entries,
        }
    }

    /// Each (before, after, events) case gives exactly those events.
    fn assert_events(cases: Vec<(EntrySnapshot, EntrySnapshot, Vec<Event>)>) {
        for (before, after, want) in cases {
            let got = changes(
                &snapshot(HostStatus::Alive, vec![Ok(before)]),
                &snapshot(HostStatus::Alive, vec![Ok(after)]),
            );
            assert_eq!(got, want, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn each_arrival_is_one_event() {
        use HolderStatus::*;
        use PeerState::*;
        let empty = entry(Empty, 0, 0, NoProcess);
        let reserved = entry(Reserved, 0, 0, NoProcess);
        let attached = entry(Attached, 1, 42, Alive);
        let dead = entry(Attached, 1, 42, Dead);
        let arrived = |pid, epoch| Event::Attached {
            peer: id(1),
            pid,
            epoch,
        };
        assert_events(vec![
            (empty, attached, vec![arrived(42, 1)]),
            (empty, reserved, vec![Event::Reserved { peer: id(1) }]),
            (reserved, empty, vec![Event::Released { peer: id(1) }]),
            (
                dead,
                entry(Attached, 2, 7, Alive),
                vec![Event::Reclaimed { peer: id(1) }, arrived(7, 2)],
            ),
            (attached, attached, vec![]),
            (
                empty,
                dead,
                vec![
                    arrived(42, 1),
                    Event::HolderDied {
                        peer: id(1),
                        pid: 42,
                    },
                ],
            ),
        ]);
    }

    #[test]
    fn each_departure_is_one_event() {
        use HolderStatus::*;
        use PeerState::*;
        let attached = entry(Attached, 1, 42, Alive);
        let dead = entry(Attached, 1, 42, Dead);
        let gone = entry(Empty, 1, 0, NoProcess);
        assert_events(vec![
            (attached, gone, vec![Event::Detached { peer: id(1) }]),
            (
                attached,
                entry(Goodbye, 1, 0, NoProcess),
                vec![Event::SaidGoodbye { peer: id(1) }],
            ),
            (
                attached,
                dead,
                vec![Event::HolderDied {
                    peer: id(1),
                    pid: 42,
                }],
            ),
            (
                attached,
                entry(Attached, 1, 42, Stale),
                vec![Event::HolderStale {
                    peer: id(1),
                    pid: 42,
                }],
            ),
            (dead, gone, vec![Event::Reclaimed { peer: id(1) }]),
        ]);
    }

    // shm[verify shm.peer.quarantine]
    #[test]
    fn a_bad_state_word_is_told_once_then_its_cut_off() {
        use HolderStatus::*;
        use PeerState::*;
        let attached = entry(Attached, 1, 42, Alive);
        let look = |entries| snapshot(HostStatus::Alive, entries);
        let steps = [
            look(vec![Ok(attached), Ok(attached)]),
            look(vec![Ok(attached), Err(509_305_860)]),
            look(vec![Ok(attached), Err(77)]),
            look(vec![
                Ok(attached),
                Ok(EntrySnapshot {
                    quarantine: Some(QuarantineReason::Entry),
                    ..entry(Quarantined, 1, 42, Alive)
                }),
            ]),
        ];
        let told: Vec<Vec<Event>> = steps.windows(2).map(|w| changes(&w[0], &w[1])).collect();
        assert_eq!(
            told,
            [
                vec![Event::BadState {
                    peer: id(2),
                    raw_state: 509_305_860
                }],
                vec![],
                vec![Event::Quarantined {
                    peer: id(2),
                    reason: Some(QuarantineReason::Entry)
                }],
            ]
        );
        // Cut off and freed within one look: the entry is free again.
        assert_eq!(
            changes(
                &steps[1],
                &look(vec![Ok(attached), Ok(entry(Empty, 1, 0, NoProcess))])
            ),
            [Event::Reclaimed { peer: id(2) }]
        );
    }

    #[test]
    fn the_host_leaving_or_dying_is_told_apart() {
        let alive = snapshot(HostStatus::Alive, vec![]);
        assert_eq!(
            changes(&alive, &snapshot(HostStatus::Gone, vec![])),
            [Event::HostLeft]
        );
        assert_eq!(
            changes(&alive, &snapshot(HostStatus::Dead, vec![])),
            [Event::HostDied { pid: 10 }]
        );
    }
}
