//! Shared-memory IPC segments: one host and up to 255 guests talking
//! through one memory-mapped file.
//!
//! The examples in these docs make their segments in a temporary
//! directory with the [`tempfile`](https://docs.rs/tempfile) crate, a
//! dev-dependency of shmhub's, not a dependency: to run one in your own
//! project, add it (`cargo add --dev tempfile`) or put the segment
//! anywhere else, such as `/dev/shm/NAME`.
//!
//! ```
//! use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, msg_type};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("quickstart.shm");
//!
//! // The host creates the segment file; guests attach to it by path.
//! let mut host = ShmHost::create(&path, SegmentConfig::default())?;
//! let mut guest = ShmGuest::attach_path(&path)?;
//!
//! // Small payloads travel inside the 64-byte descriptor...
//! host.send(guest.peer_id(), Frame::new(MsgDesc::new(msg_type::DATA, 1), b"hello".to_vec()))?;
//! assert_eq!(guest.recv()?.payload(), b"hello");
//!
//! // ...larger ones in a slot of the sender's pool, freed by the receiver.
//! let big = vec![7u8; 10_000];
//! guest.send(Frame::new(MsgDesc::new(msg_type::DATA, 2), big.clone()))?;
//! let (from, frame) = host.try_recv()?.expect("a message is queued");
//! assert_eq!((from, frame.payload()), (guest.peer_id(), &big[..]));
//!
//! drop(guest);
//! drop(host); // the host deletes the file it created
//! assert!(!path.exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! A segment is a header, a peer table (one entry per guest), a pair of
//! single-producer single-consumer descriptor rings per guest, and slot
//! pools (the host's and one per guest). Every part lives at an offset
//! recorded in the header; attaching validates every one of them against
//! the file before touching anything else. `docs/spec.md` gives the byte
//! layout and the rules.
//!
//! # Who is who
//!
//! A guest is named by its [`PeerId`], `1..=255`, never 0. The host has
//! no id: where either side may be meant (a ring's ends, a pool's owner,
//! a process that ended) it is [`Party::Host`], beside
//! [`Party::Guest`]. Calls that take a guest accept a `PeerId` or its
//! number ([`IntoPeerId`]), so `host.send(1, frame)` reads as it looks; a
//! number that names no guest of the segment (0, or one above
//! `max_guests`) is refused with [`Error::InvalidPeerId`].
//!
//! # Safety
//!
//! All access to shared memory goes through [`Region`], which checks every
//! offset and length; the bytes of a segment are untrusted input, copied
//! out once and validated before use. `unsafe` lives in a few small places,
//! each block with a `SAFETY:` comment (a lint refuses one without):
//!
//! - `region.rs`: forming pointers, atomics and slices from checked offsets;
//! - `mmap.rs`: wrapping memmap2's mapping in a [`Region`];
//! - `desc.rs`: reading a descriptor taken off a ring as the plain-integer
//!   struct it is laid out as (little-endian targets);
//! - `zerocopy.rs`: lending a received slot ([`Received::payload`]) or a
//!   loaned one ([`SlotLoan::as_mut_slice`]) as a slice;
//! - `tokio.rs` (feature `tokio`): registering a readiness descriptor
//!   with tokio, which cannot check that the descriptor stays open;
//! - `sys.rs` and `locks.rs`: system calls (clocks, `kill(pid, 0)`, futexes,
//!   CPU affinity, `fcntl` record locks);
//! - in the command, not the library: `src/cmd/signals.rs` (signal handlers).
//!
//! A payload lent in place points into memory that another process could
//! write if it broke the protocol; [`Received`] says what that means for a
//! caller.
//!
#![deny(missing_docs)]

// Header and control fields are stored in the machine's byte order, which
// the format defines as little-endian (docs/spec.md).
#[cfg(target_endian = "big")]
compile_error!("shmhub segments are little-endian; big-endian targets are not supported");

// shm[impl shm.file.mmap-windows]
#[cfg(not(unix))]
compile_error!(
    "shmhub maps segments with POSIX mmap (MAP_SHARED) and has no Windows (CreateFileMapping) backend"
);

pub mod admin;
mod codec;
mod consumer;
mod cut_off;
mod desc;
mod end_core;
mod error;
mod events;
mod file;
pub mod format;
mod guest;
mod header;
mod host;
mod host_slots;
mod inspect;
mod layout;
mod listing;
mod liveness;
mod locks;
#[cfg(all(test, loom))]
mod loom_tests;
mod mmap;
mod open;
mod party;
mod path;
mod peek;
mod peer;
mod pool;
mod producer;
mod raw;
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
mod readiness;
mod ready;
mod receiver;
mod reclaim;
mod region;
mod remove;
mod ring;
mod ring_end;
mod segment;
mod sender;
mod share;
mod slots;
mod spawn;
mod status;
pub(crate) mod sync;
#[cfg(all(
    feature = "tokio",
    target_os = "linux",
    not(shmhub_portable),
    not(loom)
))]
pub mod tokio;
// System calls: the command and its benchmarks use some of them, so they
// are public with the `cli` feature, and not part of the library's API.
#[cfg(feature = "cli")]
pub mod sys;
#[cfg(not(feature = "cli"))]
#[allow(dead_code)]
mod sys;
#[cfg(all(test, not(loom)))]
mod testing;
mod wait;
mod watch;
mod zerocopy;

pub use desc::{Frame, INLINE_CAPACITY, MsgDesc, msg_type};
pub use error::{Error, ErrorKind, Result};
pub use guest::ShmGuest;
pub use host::{CreateOptions, ShmHost};
pub use layout::{Direction, LayoutError, SegmentConfig, SegmentLayout};
pub use liveness::{HolderStatus, HostStatus};
pub use mmap::{FileMode, MmapRegion};
pub use open::OpenOptions;
pub use party::{IntoPeerId, Party, PeerId, PeerState, QuarantineReason};
pub use peer::PeerEntry;
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub use readiness::{Ended, Readiness, RoomMark};
pub use receiver::{AnyReceiver, Receiver};
pub use region::{HeapRegion, Region, RegionError};
pub use sender::Sender;
pub use wait::{Timeout, WaitStrategy};
pub use zerocopy::{Received, SlotLoan};
