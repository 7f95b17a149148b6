//! The library's typed error.

use std::io;
use std::path::PathBuf;

use crate::layout::{Direction, LayoutError};
use crate::party::{PeerId, PeerState, QuarantineReason};
use crate::region::RegionError;

/// Everything that can go wrong with a segment.
///
/// Errors that a caller may simply retry later (a full ring, an exhausted
/// pool, a timeout) answer true to [`Error::is_retryable`]. [`Error::kind`]
/// sorts every error by what a caller can do about it ([`ErrorKind`]), so
/// that a caller matches the few variants it cares about and the kind of
/// the rest:
///
/// ```
/// use shmhub::{Error, ErrorKind, Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
///
/// let config = SegmentConfig { ring_capacity: 2, ..SegmentConfig::default() };
/// let mut host = ShmHost::create_heap(config)?;
/// let guest = ShmGuest::attach(host.region())?;
/// let hi = Frame::new(MsgDesc::default(), b"hi".to_vec());
/// host.try_send(guest.peer_id(), &hi)?;
/// host.try_send(guest.peer_id(), &hi)?;
///
/// // The guest has read nothing: its ring is full, for now.
/// let full = host.try_send(guest.peer_id(), &hi).unwrap_err();
/// assert!(matches!(full, Error::RingFull { .. }));
/// assert!(full.is_retryable());
///
/// // No such guest: a mistake of the caller's, never worth a retry.
/// let wrong = host.try_send(200, &hi).unwrap_err();
/// assert_eq!(wrong.kind(), ErrorKind::Invalid);
/// assert_eq!(
///     wrong.to_string(),
///     "peer id 200 is out of range (this segment has guests 1..=8)"
/// );
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on the segment file failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        cause: io::Error,
    },
    /// A segment is to be created where a file already is (a creation
    /// never replaces one): `found` says what it is (a stale segment a
    /// crash left, a segment in use, or no segment) and how to remove it
    /// first, when shmhub may.
    #[error("{}: already exists: {found}", path.display())]
    AlreadyExists {
        /// The path asked for.
        path: PathBuf,
        /// What is there, and what removes it.
        found: String,
    },
    /// The path is a symbolic link; segments are never opened through one.
    #[error("{}: is a symbolic link; refusing to follow it", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// The segment file belongs to another user (not root), and is not a
    /// 0660 file of a group this process is in: it could be a squatter's.
    #[error(
        "{}: owned by user {uid} (mode {mode:04o}), not by this user: refusing to trust a segment another user controls",
        path.display()
    )]
    ForeignOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is not a regular file.
    #[error("{}: not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is too small to hold a segment header.
    #[error("{}: file is {len} bytes, smaller than a segment header ({min} bytes)", path.display())]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The least a segment can be.
        min: u64,
    },
    /// The file is larger than this machine can map.
    #[error("{}: file of {len} bytes is too large to map", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The file system has no room for the pages of a new segment file
    /// that was to be preallocated ([`crate::CreateOptions::preallocate`]);
    /// the file was deleted again.
    #[error("{}: no space left on the file system for {needed} bytes", path.display())]
    NoSpace {
        /// The file that could not be allocated (no longer exists).
        path: PathBuf,
        /// The bytes it needed.
        needed: u64,
    },
    /// The file shrank after it was mapped.
    #[error("{}: segment file was truncated to {len} bytes under us (mapped {mapped})", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its length now.
        len: u64,
        /// The length mapped.
        mapped: u64,
    },
    /// Another file now stands at the path that was mapped.
    #[error("{}: segment file was replaced by another file", path.display())]
    Replaced {
        /// The path.
        path: PathBuf,
    },
    /// The file that was mapped has been deleted.
    #[error("{}: segment file was removed", path.display())]
    Removed {
        /// The path.
        path: PathBuf,
    },
    /// A bounds-checked access was refused.
    #[error("{0}")]
    Region(#[from] RegionError),
    /// The configuration cannot be laid out.
    #[error("{0}")]
    Layout(#[from] LayoutError),
    /// The file does not start with the segment magic.
    #[error("not a shmhub segment (magic {magic:#018x})")]
    NotASegment {
        /// The first eight bytes, as a little-endian number.
        magic: u64,
    },
    /// The file has a zero magic: its creator has not finished initializing it.
    #[error(
        "segment is not ready (no magic yet: still being created, or creation was interrupted)"
    )]
    NotReady,
    /// The segment was written by another format version.
    #[error(
        "segment format version {found} is not supported (this build reads version {expected})"
    )]
    VersionMismatch {
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A header field is inconsistent with the file or with the other fields.
    #[error("corrupt segment header: {field} = {value}: {reason}")]
    CorruptHeader {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Why it cannot be right.
        reason: String,
    },
    /// A value read from the segment (a state, an index, a descriptor) is
    /// not one the protocol allows.
    #[error("corrupt segment: {0}")]
    Corrupt(String),
    /// Every peer entry is taken.
    #[error("hub is full: {}", entries_taken(*max_guests))]
    HubFull {
        /// How many guests the segment allows.
        max_guests: u32,
    },
    /// The peer id is outside `1..=max_guests`.
    #[error("peer id {peer_id} is out of range (this segment has guests 1..={max_guests})")]
    InvalidPeerId {
        /// The id asked for.
        peer_id: u8,
        /// The largest valid id.
        max_guests: u32,
    },
    /// The peer entry is not in the state the operation needs.
    #[error("peer {peer_id} is {state}, not {expected}")]
    PeerState {
        /// The peer.
        peer_id: PeerId,
        /// What it is.
        state: PeerState,
        /// What it had to be.
        expected: &'static str,
    },
    /// Another process holds this role (a ring end or a peer entry).
    #[error("{what} is in use by another process")]
    Busy {
        /// The role, in words.
        what: String,
    },
    /// A guest's ring end is taken, and the guest's entry is held by a
    /// live process (a held guest) that keeps its ends while it runs: a
    /// wait for the role would only end with its timeout, so it is refused
    /// at once.
    #[error(
        "{what} is in use by process {pid}, which holds the entry (a held guest) and keeps it while it runs"
    )]
    HeldByGuest {
        /// The role, in words.
        what: String,
        /// The process that holds the entry, as the entry records it.
        pid: u32,
    },
    /// Live holders did not leave a segment that was asked to go
    /// ([`crate::admin::remove_segment`] without force).
    #[error("{} still attached after {waited:?}", holders(*host, peers))]
    StillAttached {
        /// How long removal waited.
        waited: std::time::Duration,
        /// Whether the host process was still there.
        host: bool,
        /// The live guests that stayed.
        peers: Vec<PeerId>,
    },
    /// The payload is larger than the segment's max payload.
    #[error("payload of {len} bytes exceeds the max payload of {max} bytes")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The ring has no free descriptor (retryable).
    #[error("{direction} ring of peer {peer_id} is full")]
    RingFull {
        /// The guest the ring belongs to.
        peer_id: PeerId,
        /// Which of its two rings.
        direction: Direction,
    },
    /// The sender's slot pool has no free slot (retryable).
    #[error("slot pool of {owner} has no free slot")]
    PoolExhausted {
        /// Whose pool: "host" or "peer N".
        owner: String,
    },
    /// The guest holds as many of the host's slots as its share allows
    /// (retryable: it frees them as it receives).
    #[error("peer {peer_id} holds its share of the host's slots ({share})")]
    ShareExhausted {
        /// The receiving guest.
        peer_id: PeerId,
        /// Its share.
        share: u32,
    },
    /// A received descriptor does not check out; nothing was read through it.
    #[error("bad descriptor from {from}: {reason}")]
    BadDescriptor {
        /// Who sent it.
        from: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host has said goodbye.
    #[error("the host has left the segment")]
    HostGone,
    /// The host process died without saying goodbye (it crashed or was
    /// killed); its segment stays behind until someone removes it.
    #[error("host process {pid} died without saying goodbye")]
    HostDied {
        /// The host's process id, as recorded in the header.
        pid: u32,
    },
    /// The guest has left (detached, or its entry was reclaimed).
    #[error("peer {peer_id} has left the segment")]
    PeerGone {
        /// The guest.
        peer_id: PeerId,
    },
    /// The guest's process died without detaching (it crashed or was
    /// killed): told from [`Error::PeerGone`] while its entry is not yet
    /// reclaimed, as [`Error::HostDied`] is from [`Error::HostGone`].
    #[error("peer {peer_id} died (pid {pid}) without detaching")]
    PeerDied {
        /// The guest.
        peer_id: PeerId,
        /// Its process id, as its entry records it.
        pid: u32,
    },
    /// A receive from any guest waited while no guest could send any
    /// more: every guest has gone (none attached, reserved or leaving),
    /// after at least one was there (`shm.host.no-guests`;
    /// [`crate::AnyReceiver::wait_for_guests`] waits for new ones instead).
    #[error("every guest has gone: none is attached, reserved or leaving")]
    NoGuests,
    /// An environment variable the library reads is missing or malformed.
    #[error("{var} {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation is not possible on this kind of segment.
    #[error("{what}")]
    Unsupported {
        /// What cannot be done, and why.
        what: &'static str,
    },
    /// Waiting ran out of time (retryable).
    #[error("timed out")]
    Timeout,
    /// The host cut this guest off for breaking the protocol
    /// (`shm.peer.quarantine`), or evicted it. The segment and every
    /// other guest go on: a receive from any guest reports a guest it
    /// cuts off once, with what it found (`detail`), and serves the others
    /// from then on; every later send to it, receive from it, and its own
    /// sends and receives, fail with this error (`detail` `None`).
    #[error("{}", cut_off(*peer_id, *reason, detail.as_deref()))]
    Quarantined {
        /// The guest cut off.
        peer_id: PeerId,
        /// Which part of its memory broke the protocol, or an eviction.
        reason: QuarantineReason,
        /// What the host found, when this error reports the finding.
        detail: Option<String>,
    },
    /// This guest found the host breaking the protocol in the guest's
    /// host-to-guest ring (a descriptor that fails validation, say) and
    /// has stopped: every later send and receive of this guest fails with
    /// this error (`shm.peer.quarantine`), rather than reading on through
    /// whatever else the host writes. The guest should detach and go.
    #[error("the host broke the protocol ({finding}); this guest has stopped")]
    HostBroke {
        /// What the guest found, as the error that reported it said.
        finding: String,
    },
    /// A read-only view found what it was reading change under it, every
    /// time it tried, and shows nothing rather than a mix of before and
    /// after (retryable).
    #[error("{what} changed while reading ({tries} tries); try again")]
    Changing {
        /// What kept changing, in words.
        what: String,
        /// How many times it was read.
        tries: u32,
    },
}

/// The message of [`Error::Quarantined`].
fn cut_off(peer_id: PeerId, reason: QuarantineReason, detail: Option<&str>) -> String {
    match (reason, detail) {
        (QuarantineReason::Evicted, _) => format!("peer {peer_id} is cut off: evicted by the host"),
        (reason, Some(detail)) => {
            format!("peer {peer_id} broke the protocol ({reason}: {detail}) and is cut off")
        }
        (reason, None) => {
            format!("peer {peer_id} is cut off for breaking the protocol ({reason})")
        }
    }
}

/// "the host and peers 1, 2", for [`Error::StillAttached`].
/// How many entries a full hub has, all taken: `all 8 guest entries are
/// taken`, `the 1 guest entry is taken`.
fn entries_taken(max_guests: u32) -> String {
    match max_guests {
        1 => "the 1 guest entry is taken".to_string(),
        n => format!("all {n} guest entries are taken"),
    }
}

fn holders(host: bool, peers: &[PeerId]) -> String {
    let ids: Vec<String> = peers.iter().map(PeerId::to_string).collect();
    let guests = match ids.len() {
        0 => String::new(),
        1 => format!("peer {}", ids[0]),
        _ => format!("peers {}", ids.join(", ")),
    };
    match (host, guests.is_empty()) {
        (true, true) => "the host is".to_string(),
        (true, false) => format!("the host and {guests} are"),
        (false, _) if ids.len() == 1 => format!("{guests} is"),
        (false, _) => format!("{guests} are"),
    }
}

/// What a caller can do about an [`Error`]: the error's kind.
///
/// The variants of [`Error`] say what went wrong, for a person; the kind
/// says what a program does next, so that it never has to sort variants
/// (or read messages) to decide.
///
/// ```
/// use shmhub::{Error, ErrorKind};
///
/// let full = Error::Timeout;
/// assert_eq!(full.kind(), ErrorKind::Retry);
/// assert!(full.is_retryable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing is wrong, only not possible now: a full ring, no free
    /// slot, a share used up, a time that ran out, a view that kept
    /// changing. The same call may succeed later; nothing was done.
    Retry,
    /// Someone else has what the call needs: another process holds the
    /// role or the entry, every entry is taken, or the entry is in another
    /// state. Retrying helps only once they let go.
    Busy,
    /// The other side has left or died: the host said goodbye or its
    /// process is gone, or a guest left or was reclaimed.
    Gone,
    /// One guest broke the protocol in its own part of the segment and the
    /// host cut it off ([`Error::Quarantined`]): the segment and the other
    /// guests are fine; that guest is gone for good (its entry is freed
    /// once its process is).
    CutOff,
    /// The file is not a segment this build can use, or what the segment
    /// holds breaks the protocol (a header, a state, an index, a
    /// descriptor). Nothing was read through the bad value.
    Corrupt,
    /// The file itself: a system call failed, the file system is full, the
    /// path is not a regular file or another user's, or the file changed
    /// under the mapping.
    Io,
    /// The call's own arguments cannot work: a configuration that cannot
    /// be laid out, a peer id out of range, a payload too large, an
    /// operation this kind of segment does not support.
    Invalid,
}

impl Error {
    /// What a caller can do about this error.
    pub fn kind(&self) -> ErrorKind {
        use Error as E;
        match self {
            E::RingFull { .. }
            | E::PoolExhausted { .. }
            | E::ShareExhausted { .. }
            | E::Timeout
            | E::Changing { .. } => ErrorKind::Retry,
            E::Busy { .. }
            | E::HeldByGuest { .. }
            | E::HubFull { .. }
            | E::PeerState { .. }
            | E::StillAttached { .. }
            | E::NotReady => ErrorKind::Busy,
            E::HostGone
            | E::HostDied { .. }
            | E::PeerGone { .. }
            | E::PeerDied { .. }
            | E::NoGuests => ErrorKind::Gone,
            E::Quarantined { .. } => ErrorKind::CutOff,
            E::NotASegment { .. }
            | E::VersionMismatch { .. }
            | E::CorruptHeader { .. }
            | E::Corrupt(_)
            | E::BadDescriptor { .. }
            | E::HostBroke { .. }
            | E::TooSmall { .. } => ErrorKind::Corrupt,
            E::Region(RegionError::Alloc(_)) => ErrorKind::Io,
            E::Region(RegionError::ReadOnly | RegionError::Empty) => ErrorKind::Invalid,
            E::Region(_) => ErrorKind::Corrupt,
            E::Io { .. }
            | E::AlreadyExists { .. }
            | E::Symlink { .. }
            | E::ForeignOwner { .. }
            | E::NotAFile { .. }
            | E::TooLarge { .. }
            | E::NoSpace { .. }
            | E::Truncated { .. }
            | E::Replaced { .. }
            | E::Removed { .. } => ErrorKind::Io,
            E::Layout(_)
            | E::InvalidPeerId { .. }
            | E::PayloadTooLarge { .. }
            | E::Env { .. }
            | E::Unsupported { .. } => ErrorKind::Invalid,
        }
    }

    /// The file this error's message names, for the errors that name one
    /// (a failed system call on it, a file that is not a segment's, one
    /// that changed under the mapping); `None` for the others, whose
    /// message a caller prefixes with the path it was working on.
    ///
    /// ```
    /// use std::path::Path;
    /// use shmhub::Error;
    ///
    /// let e = Error::Removed { path: "/dev/shm/gone".into() };
    /// assert_eq!(e.path(), Some(Path::new("/dev/shm/gone")));
    /// assert_eq!(Error::Timeout.path(), None);
    /// ```
    pub fn path(&self) -> Option<&std::path::Path> {
        use Error as E;
        match self {
            E::Io { path, .. }
            | E::AlreadyExists { path, .. }
            | E::Symlink { path }
            | E::ForeignOwner { path, .. }
            | E::NotAFile { path }
            | E::TooSmall { path, .. }
            | E::TooLarge { path, .. }
            | E::NoSpace { path, .. }
            | E::Truncated { path, .. }
            | E::Replaced { path }
            | E::Removed { path } => Some(path),
            _ => None,
        }
    }

    /// Whether trying the same operation later may succeed: the kind is
    /// [`ErrorKind::Retry`].
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retry
    }
}

/// Short for `Result<T, shmhub::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::party::id;

    // The command turns kinds into exit codes (Retry: 3), and callers
    // retry on Retry alone: each variant must land in the kind that says
    // what can be done about it.
    #[test]
    fn each_error_has_the_kind_that_says_what_to_do() {
        let cases = [
            (Error::Timeout, ErrorKind::Retry),
            (
                Error::PoolExhausted {
                    owner: "host".into(),
                },
                ErrorKind::Retry,
            ),
            (Error::Busy { what: "x".into() }, ErrorKind::Busy),
            (
                Error::HeldByGuest {
                    what: "x".into(),
                    pid: 1,
                },
                ErrorKind::Busy,
            ),
            (Error::HubFull { max_guests: 8 }, ErrorKind::Busy),
            (Error::HostDied { pid: 1 }, ErrorKind::Gone),
            (Error::PeerGone { peer_id: id(1) }, ErrorKind::Gone),
            (Error::NotASegment { magic: 0 }, ErrorKind::Corrupt),
            (Error::Corrupt("bad".into()), ErrorKind::Corrupt),
            (
                Error::Removed {
                    path: PathBuf::from("/x"),
                },
                ErrorKind::Io,
            ),
            (
                Error::PayloadTooLarge { len: 9, max: 8 },
                ErrorKind::Invalid,
            ),
            (Error::Region(RegionError::Alloc(1)), ErrorKind::Io),
            (Error::Region(RegionError::ReadOnly), ErrorKind::Invalid),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            assert_eq!(error.is_retryable(), kind == ErrorKind::Retry, "{error}");
        }
    }
}
