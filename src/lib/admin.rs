//! Administration and diagnostics: what a tool needs to look after the
//! segments of a machine without sending or receiving through them.
//!
//! - Looking inside a segment, read-only: [`inspect_path`] (header, peer
//!   table with liveness, rings, pools), [`inspect_raw`] (every field of
//!   even a damaged file, each with a verdict), [`peek_path`] (the
//!   messages queued in rings, without taking them) and [`inspect_slots`]
//!   (who holds each slot, and which are leaked).
//! - The segments of a machine: [`list_segments`] and
//!   [`collect_garbage`], and removing one: [`remove_segment`]; where a
//!   name leads ([`resolve_segment`], under [`shm_dir`]), and what a
//!   spawned guest is told ([`SpawnTicket`]).
//! - What happens to a segment over time: two [`Snapshot`]s and the
//!   [`changes`] between them.
//! - What [`crate::ShmHost::reclaim_dead_report`] reports, and what a
//!   host or guest reads of its segment's status ([`SegmentStatus`], from
//!   [`crate::ShmHost::status`] and [`crate::ShmGuest::status`]), the
//!   header ([`HeaderInfo`]) among it.
//!
//! ```
//! use shmhub::{SegmentConfig, ShmGuest, ShmHost, admin};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("look.shm");
//! let host = ShmHost::create(&path, SegmentConfig::default())?;
//! let guest = ShmGuest::attach_path(&path)?;
//! let report = admin::inspect_path(&path)?;
//! assert_eq!(report.peers.iter().filter(|p| p.entry.state == shmhub::PeerState::Attached).count(), 1);
//! # drop((guest, host));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crate::events::{EntrySnapshot, Event, Snapshot, changes};
pub use crate::header::HeaderInfo;
pub use crate::inspect::{
    BadPeer, PeerReport, PeerTable, PoolReport, SegmentReport, inspect_path, inspect_region,
};
pub use crate::layout::party_name;
pub use crate::listing::{
    Collected, GuestCounts, Listing, SegmentSummary, Unlisted, collect_garbage, list_segments,
};
pub use crate::mmap::{FileIdentity, FileOwner};
pub use crate::path::{NameError, SHM_DIR_ENV, resolve_segment, shm_dir};
pub use crate::peek::{
    PREVIEW_BYTES, PeekOptions, PeekReport, Placement, Preview, QueuedMessage, RingPeek, SlotPlace,
    peek_path, peek_region,
};
pub use crate::pool::PoolUsage;
pub use crate::raw::{FieldStatus, RawDump, RawField, RawSection, inspect_raw};
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub use crate::readiness::ProcessWatch;
pub use crate::reclaim::{ReclaimReport, SkipReason, Skipped};
pub use crate::remove::{RemoveOptions, RemoveReport, remove_segment, remove_unused_segment};
pub use crate::ring::RingState;
pub use crate::slots::{
    QueuedAt, SlotHolder, SlotReport, SlotsReport, inspect_slots, inspect_slots_region,
};
pub use crate::spawn::SpawnTicket;
pub use crate::status::SegmentStatus;
