//! Opening a segment that someone else created, with the owner check
//! spelled out.
//!
//! Every way of opening an existing segment read/write (a guest attaching
//! or resuming, a host opening it, `remove_segment`) refuses a file owned by
//! another user unless it is root's, or a mode 0660 file of a group this
//! process is in ([`crate::admin::FileOwner::is_trusted`]): in a world-writable
//! directory like `/dev/shm`, another local user could have made a file at
//! the expected name and be waiting for guests to send it their data.
//! [`OpenOptions`] lets a caller who really means it open such a file.

use std::path::Path;

use crate::error::Result;
use crate::guest::ShmGuest;
use crate::host::ShmHost;
use crate::mmap::OwnerCheck;
use crate::party::{IntoPeerId, PeerId};

/// How to open an existing segment: the plain calls
/// ([`ShmGuest::attach_path`], [`ShmHost::open`], ...) are
/// `OpenOptions::new()` with nothing changed.
///
/// ```
/// use shmhub::{OpenOptions, SegmentConfig, ShmHost};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("shared.shm");
/// let _host = ShmHost::create(&path, SegmentConfig::default())?;
/// let guest = OpenOptions::new().allow_foreign_owner(true).attach(&path)?;
/// assert_eq!(guest.peer_id(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    allow_foreign_owner: bool,
}

impl OpenOptions {
    /// The defaults: refuse a segment another user owns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to open a segment another user owns (see the module docs):
    /// for someone who really means it.
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    fn owner_check(&self) -> OwnerCheck {
        if self.allow_foreign_owner {
            OwnerCheck::Skipped
        } else {
            OwnerCheck::Required
        }
    }

    /// Whether a segment another user owns is opened.
    pub fn allows_foreign_owner(&self) -> bool {
        self.allow_foreign_owner
    }

    /// [`ShmGuest::attach_path`] with these options.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::attach_path`]; [`crate::Error::ForeignOwner`] unless
    /// allowed.
    pub fn attach<P: AsRef<Path>>(&self, path: P) -> Result<ShmGuest> {
        ShmGuest::attach_path_with(path.as_ref(), None::<PeerId>, self.owner_check())
    }

    /// [`ShmGuest::attach_path_with_id`] with these options.
    ///
    /// # Errors
    ///
    /// As [`OpenOptions::attach`].
    pub fn attach_with_id<P: AsRef<Path>>(
        &self,
        path: P,
        peer_id: impl IntoPeerId,
    ) -> Result<ShmGuest> {
        ShmGuest::attach_path_with(path.as_ref(), Some(peer_id), self.owner_check())
    }

    /// [`ShmGuest::resume`] with these options.
    ///
    /// # Errors
    ///
    /// As [`OpenOptions::attach`].
    pub fn resume<P: AsRef<Path>>(&self, path: P, peer_id: impl IntoPeerId) -> Result<ShmGuest> {
        ShmGuest::resume_with(path.as_ref(), peer_id, self.owner_check())
    }

    /// [`ShmGuest::release`] with these options.
    ///
    /// # Errors
    ///
    /// As [`OpenOptions::attach`].
    pub fn release<P: AsRef<Path>>(&self, path: P, peer_id: impl IntoPeerId) -> Result<()> {
        ShmGuest::release_with(path.as_ref(), peer_id, self.owner_check())
    }

    /// [`ShmHost::open`] with these options.
    ///
    /// # Errors
    ///
    /// As [`OpenOptions::attach`].
    pub fn open_host<P: AsRef<Path>>(&self, path: P) -> Result<ShmHost> {
        ShmHost::open_with(path.as_ref(), self.owner_check())
    }
}
