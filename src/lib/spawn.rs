//! Starting a guest program under a segment: the host reserves an entry
//! and passes the segment and the entry to the child in its environment;
//! the child attaches from there.
//!
//! ```no_run
//! use shmhub::{SegmentConfig, ShmHost};
//!
//! let mut host = ShmHost::create("/dev/shm/app.shm", SegmentConfig::default())?;
//! let ticket = host.spawn_ticket()?;
//! let mut child = std::process::Command::new("./plugin")
//!     .envs(ticket.env())
//!     .spawn()?;
//! // In the plugin: `let guest = shmhub::ShmGuest::attach_from_env()?;`
//! # let _ = child.wait();
//! // Dropped before the child attached, the ticket gives the entry back.
//! drop(ticket);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::guest::ShmGuest;
use crate::host::ShmHost;
use crate::party::{IntoPeerId, PeerId, PeerState};

/// An entry reserved for a guest program about to start, and what that
/// program needs to find it. Dropped while the entry is still reserved
/// (the program never attached), it gives the entry back.
///
/// ```
/// use std::process::Command;
/// use shmhub::{PeerState, SegmentConfig, ShmHost};
///
/// let dir = tempfile::tempdir()?;
/// let mut host = ShmHost::create(dir.path().join("app.shm"), SegmentConfig::default())?;
/// let ticket = host.spawn_ticket()?;
/// let id = ticket.peer_id();
/// assert_eq!(host.status().peer(id)?.state, PeerState::Reserved);
///
/// // The program finds the segment and its entry in its environment
/// // (`ShmGuest::attach_from_env` reads them); `sh` only prints them.
/// let out = Command::new("sh")
///     .args(["-c", "echo \"$SHMHUB_PEER_ID $SHMHUB_SEGMENT\""])
///     .envs(ticket.env())
///     .output()?;
/// let expected = format!("{id} {}\n", ticket.segment().display());
/// assert_eq!(String::from_utf8(out.stdout)?, expected);
///
/// // It never attached: dropping the ticket gives the entry back.
/// assert!(!ticket.claimed()?);
/// drop(ticket);
/// assert_eq!(host.status().peer(id)?.state, PeerState::Empty);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SpawnTicket {
    /// A host handle of its own, to give the entry back with.
    host: ShmHost,
    peer_id: PeerId,
    /// The entry's epoch when it was reserved: an attach moves it on.
    epoch: u32,
    segment: PathBuf,
}

impl SpawnTicket {
    /// The environment variable that names the segment file (an absolute
    /// path).
    pub const SEGMENT_ENV: &'static str = "SHMHUB_SEGMENT";
    /// The environment variable that names the reserved entry.
    pub const PEER_ID_ENV: &'static str = "SHMHUB_PEER_ID";

    /// The reserved entry.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The segment file, as an absolute path.
    pub fn segment(&self) -> &std::path::Path {
        &self.segment
    }

    /// The environment the program needs: [`SpawnTicket::SEGMENT_ENV`] and
    /// [`SpawnTicket::PEER_ID_ENV`].
    ///
    /// shm[impl shm.peer.spawn]
    pub fn env(&self) -> [(&'static str, OsString); 2] {
        [
            (
                SpawnTicket::SEGMENT_ENV,
                self.segment.clone().into_os_string(),
            ),
            (SpawnTicket::PEER_ID_ENV, self.peer_id.to_string().into()),
        ]
    }

    /// Whether the program has attached to the entry (then dropping the
    /// ticket leaves the entry alone).
    ///
    /// # Errors
    ///
    /// A corrupt-segment error if the entry cannot be read.
    pub fn claimed(&self) -> Result<bool> {
        let entry = self.host.status().peer(self.peer_id)?;
        Ok(entry.epoch != self.epoch)
    }
}

impl Drop for SpawnTicket {
    fn drop(&mut self) {
        if matches!(self.claimed(), Ok(false)) {
            // Gives back only a reservation still unclaimed; one the child
            // took meanwhile is no longer Reserved and is left alone.
            let _ = self.host.release_peer(self.peer_id);
        }
    }
}

impl ShmHost {
    /// Reserves an Empty entry for a guest program about to start, and
    /// returns what the program needs to attach to it
    /// ([`SpawnTicket::env`], read by [`ShmGuest::attach_from_env`]).
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, PeerState, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut host = ShmHost::create(dir.path().join("app.shm"), SegmentConfig::default())?;
    /// let ticket = host.spawn_ticket()?;
    /// // Queued for the program until it attaches.
    /// host.send(ticket.peer_id(), Frame::new(MsgDesc::default(), b"welcome".to_vec()))?;
    ///
    /// // What the program does with its environment (`attach_from_env`),
    /// // here in this process, with the same two values:
    /// let mut guest = ShmGuest::attach_path_with_id(ticket.segment(), ticket.peer_id())?;
    /// assert_eq!(guest.recv()?.payload(), b"welcome");
    /// assert!(ticket.claimed()?);
    /// drop(ticket); // the entry is the program's now: left alone
    /// assert_eq!(host.status().peer(guest.peer_id())?.state, PeerState::Attached);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::HubFull`] when no entry is Empty; [`Error::Unsupported`]
    /// for a segment that is not file-backed (another process cannot
    /// attach to it).
    pub fn spawn_ticket(&mut self) -> Result<SpawnTicket> {
        let path = self.spawnable_path()?;
        let peer_id = self.reserve_peer()?;
        self.ticket(peer_id, path)
    }

    /// Like [`ShmHost::spawn_ticket`], for entry `peer_id`, which must be
    /// Empty.
    ///
    /// # Errors
    ///
    /// [`Error::PeerState`] if the entry is not Empty; as
    /// [`ShmHost::spawn_ticket`] otherwise.
    pub fn spawn_ticket_with_id(&mut self, peer_id: impl IntoPeerId) -> Result<SpawnTicket> {
        let path = self.spawnable_path()?;
        let peer_id = self.guest_id(peer_id)?;
        self.reserve_peer_id(peer_id)?;
        self.ticket(peer_id, path)
    }

    fn spawnable_path(&self) -> Result<PathBuf> {
        let path = self.path().ok_or(Error::Unsupported {
            what: "spawning a guest program needs a file-backed segment",
        })?;
        std::path::absolute(path).map_err(|cause| Error::Io {
            path: path.to_path_buf(),
            cause,
        })
    }

    fn ticket(&mut self, peer_id: PeerId, segment: PathBuf) -> Result<SpawnTicket> {
        let epoch = self.status().peer(peer_id)?.epoch;
        let host = match ShmHost::open_region(self.region()) {
            Ok(host) => host,
            Err(e) => {
                let _ = self.release_peer(peer_id);
                return Err(e);
            }
        };
        Ok(SpawnTicket {
            host,
            peer_id,
            epoch,
            segment,
        })
    }
}

impl ShmGuest {
    /// Attaches to the entry a host reserved for this program, as named by
    /// the environment it was started with ([`SpawnTicket::SEGMENT_ENV`] and
    /// [`SpawnTicket::PEER_ID_ENV`], set by [`SpawnTicket::env`] or `shmhub spawn`).
    ///
    /// # Errors
    ///
    /// [`Error::Env`] when a variable is missing or malformed; then the
    /// errors of [`ShmGuest::attach_path_with_id`].
    ///
    /// shm[impl shm.peer.spawn]
    pub fn attach_from_env() -> Result<ShmGuest> {
        let segment = std::env::var_os(SpawnTicket::SEGMENT_ENV).ok_or(Error::Env {
            var: SpawnTicket::SEGMENT_ENV,
            reason: "is not set (start this program with `shmhub spawn`)".to_string(),
        })?;
        if segment.is_empty() {
            return Err(Error::Env {
                var: SpawnTicket::SEGMENT_ENV,
                reason: "is empty".to_string(),
            });
        }
        let raw = std::env::var_os(SpawnTicket::PEER_ID_ENV).ok_or(Error::Env {
            var: SpawnTicket::PEER_ID_ENV,
            reason: "is not set (start this program with `shmhub spawn`)".to_string(),
        })?;
        let peer_id = raw
            .to_str()
            .and_then(|text| text.parse::<PeerId>().ok())
            .ok_or_else(|| Error::Env {
                var: SpawnTicket::PEER_ID_ENV,
                reason: format!("is {raw:?}, not a peer id 1..=255"),
            })?;
        ShmGuest::attach_path_with_id(PathBuf::from(segment), peer_id)
    }
}

impl ShmHost {
    /// Reserves entry `peer_id`, which must be Empty.
    fn reserve_peer_id(&mut self, peer_id: PeerId) -> Result<()> {
        if self.try_reserve(peer_id)? {
            return Ok(());
        }
        let state = self.status().peer(peer_id)?.state;
        if state == PeerState::Empty {
            // Empty, but a guest is in the middle of claiming it.
            return Err(Error::Busy {
                what: format!("peer {peer_id} (a guest is attaching to it)"),
            });
        }
        Err(Error::PeerState {
            peer_id,
            state,
            expected: "empty",
        })
    }
}
