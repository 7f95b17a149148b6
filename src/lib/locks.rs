//! The advisory locks that stand for roles: who is the host, who holds a
//! guest's entry, and who acts at each end of each ring.
//!
//! A role is a one-byte write lock on the segment file, at a byte number
//! far past the end of any segment (so it never covers real bytes). The
//! kernel drops a process's locks when it dies, however it dies, which
//! makes a lock the authority on whether its holder lives.
//!
//! shm[impl shm.lock.roles]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::wait::Deadline;

/// Byte numbers of the advisory locks that stand for roles.
pub(crate) mod lock_byte {
    const BASE: u64 = 1 << 40;
    const KIND_STRIDE: u64 = 1024;

    /// Which end of which ring a lock stands for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum End {
        /// The host sending to a guest.
        HostToGuestProducer,
        /// A guest receiving from the host.
        HostToGuestConsumer,
        /// A guest sending to the host.
        GuestToHostProducer,
        /// The host receiving from a guest.
        GuestToHostConsumer,
    }

    /// A process that holds the segment's host role (held while it lives).
    pub const HOST_PRESENCE: u64 = BASE;

    /// How many role bytes there are (five kinds of 1024).
    pub(crate) const COUNT: usize = 5 * KIND_STRIDE as usize;

    /// The position of a role byte among [`COUNT`], if it is one.
    pub(crate) fn index(byte: u64) -> Option<usize> {
        byte.checked_sub(BASE)
            .map(|i| i as usize)
            .filter(|&i| i < COUNT)
    }

    /// A process that holds guest `peer`'s entry (held while it lives).
    pub fn guest_presence(peer: u8) -> u64 {
        BASE + u64::from(peer)
    }

    /// One end of one of guest `peer`'s rings.
    pub fn ring_end(peer: u8, end: End) -> u64 {
        let kind = match end {
            End::HostToGuestProducer => 1,
            End::HostToGuestConsumer => 2,
            End::GuestToHostProducer => 3,
            End::GuestToHostConsumer => 4,
        };
        BASE + kind * KIND_STRIDE + u64::from(peer)
    }
}

/// An advisory write lock on one byte of a file, released on drop.
///
/// Open-file-description locks (`F_OFD_SETLK`) belong to the open file, not
/// to the process: two opens in one process exclude each other like two
/// processes do, and the kernel drops them when the process dies, so a
/// killed holder never leaves a role locked. The locked byte need not exist:
/// roles are numbered far past the end of the file.
#[derive(Debug)]
pub(crate) struct ByteLock {
    file: Arc<File>,
    byte: u64,
}

fn ofd_flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

impl ByteLock {
    /// Takes the lock without waiting; `Ok(None)` if another open file holds it.
    pub fn try_lock(file: &Arc<File>, byte: u64) -> std::io::Result<Option<ByteLock>> {
        let mut fl = ofd_flock(libc::F_WRLCK as libc::c_short, byte);
        // SAFETY: fcntl with F_OFD_SETLK reads the flock we own; the fd is
        // open for as long as `file` lives.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(Some(ByteLock {
                file: file.clone(),
                byte,
            }));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
            _ => Err(err),
        }
    }

    /// Whether some open file holds a lock on `byte`; works on a file
    /// opened read-only and takes nothing.
    pub fn is_locked(file: &File, byte: u64) -> std::io::Result<bool> {
        let mut fl = ofd_flock(libc::F_WRLCK as libc::c_short, byte);
        // SAFETY: F_OFD_GETLK reads and rewrites the flock we own.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }
}

impl Drop for ByteLock {
    fn drop(&mut self) {
        let mut fl = ofd_flock(libc::F_UNLCK as libc::c_short, self.byte);
        // SAFETY: as in try_lock; unlocking a byte we hold cannot fail in a
        // way that matters (closing the file releases it anyway).
        unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    }
}

/// The role locks one host or guest holds, taken on first use and kept
/// until it is dropped.
#[derive(Debug)]
pub(crate) struct RoleLocks {
    /// The segment file and its path (for errors); `None` for heap and
    /// caller-supplied regions, which live in one process whose `&mut self`
    /// methods already serialize each role.
    file: Option<(Arc<File>, PathBuf)>,
    /// The lock guards, kept for as long as the roles are held.
    held: Vec<(u64, ByteLock)>,
    /// One bit per role byte (`lock_byte::index`): the check made on every
    /// send and receive.
    held_bits: [u64; lock_byte::COUNT / 64],
}

impl RoleLocks {
    /// No roles yet, on `file` (if file-backed).
    pub(crate) fn new(file: Option<(Arc<File>, PathBuf)>) -> Self {
        RoleLocks {
            file,
            held: Vec::new(),
            held_bits: [0; lock_byte::COUNT / 64],
        }
    }

    fn holds(&self, byte: u64) -> bool {
        match lock_byte::index(byte) {
            Some(i) => self.held_bits[i / 64] & (1 << (i % 64)) != 0,
            None => self.held.iter().any(|(b, _)| *b == byte),
        }
    }

    /// Takes the lock on `byte` unless already held; waits until `deadline`
    /// for another process to release it. `what` names the role for the
    /// [`Error::Busy`] it fails with when the time is up.
    pub(crate) fn ensure(
        &mut self,
        byte: u64,
        deadline: &mut Deadline,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.holds(byte) {
            return Ok(());
        }
        let Some((file, path)) = &self.file else {
            return Ok(());
        };
        loop {
            let taken = ByteLock::try_lock(file, byte).map_err(|cause| Error::Io {
                path: path.clone(),
                cause,
            })?;
            if let Some(lock) = taken {
                self.held.push((byte, lock));
                if let Some(i) = lock_byte::index(byte) {
                    self.held_bits[i / 64] |= 1 << (i % 64);
                }
                return Ok(());
            }
            if deadline.passed() {
                return Err(Error::Busy { what: what() });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // shm[verify shm.lock.roles]
    #[test]
    fn byte_locks_exclude_other_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, b"").unwrap();
        let a = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let b = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let ro = File::open(&path).unwrap();
        let far = 1u64 << 40;
        let held = ByteLock::try_lock(&a, far).unwrap().expect("first lock");
        assert!(ByteLock::try_lock(&b, far).unwrap().is_none());
        assert!(ByteLock::is_locked(&ro, far).unwrap());
        assert!(ByteLock::try_lock(&b, far + 1).unwrap().is_some());
        drop(held);
        assert!(!ByteLock::is_locked(&ro, far).unwrap());
        assert!(ByteLock::try_lock(&b, far).unwrap().is_some());
    }
}
