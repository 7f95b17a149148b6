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
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::file::SegmentFile;
#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
use crate::file::process_locks;
use crate::wait::Deadline;

/// Byte numbers of the advisory locks that stand for roles.
pub(crate) mod lock_byte {
    use crate::party::PeerId;

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

    /// A process that holds guest `peer`'s entry (held while it lives).
    pub fn guest_presence(peer: PeerId) -> u64 {
        BASE + u64::from(peer)
    }

    /// One end of one of guest `peer`'s rings.
    pub fn ring_end(peer: PeerId, end: End) -> u64 {
        let kind = match end {
            End::HostToGuestProducer => 1,
            End::HostToGuestConsumer => 2,
            End::GuestToHostProducer => 3,
            End::GuestToHostConsumer => 4,
        };
        BASE + kind * KIND_STRIDE + u64::from(peer)
    }
}

/// An advisory write lock on one byte of a segment file, released on drop.
///
/// The locked byte need not exist: roles are numbered far past the end of
/// the file. The kernel drops a process's locks when it dies, so a killed
/// holder never leaves a role locked. How the exclusion is made depends on
/// the platform (see `file.rs`): open-file-description locks on Linux,
/// POSIX record locks plus a per-process table elsewhere; either way, two
/// holders never share a byte, whether they are two processes or two
/// handles in one process.
#[derive(Debug)]
pub(crate) struct ByteLock {
    file: Arc<SegmentFile>,
    byte: u64,
    /// `sys::forks()` when taken: an open-file-description lock is shared
    /// with a copy of this process made by `fork`, whose drop must not
    /// release it under this process (`shm.file.fork`).
    forks: u32,
}

/// A `flock` request for one byte: a write lock (or an unlock) of exactly
/// that byte from the start of the file, `l_pid` 0 as open-file-description
/// locks require.
///
/// shm[impl shm.lock.shape]
fn one_byte(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Runs `fcntl(file, command, &mut fl)`.
///
/// Through `libc`, not `rustix` (which `sys.rs` uses): rustix sets only
/// whole-file locks (`fs::fcntl_lock`, a range of 0 from byte 0) and
/// queries only POSIX record locks (`process::fcntl_getlk`), and has no
/// open-file-description commands. A role is one byte, and on Linux must
/// be an open-file-description lock so that two handles of one process
/// exclude each other.
fn fcntl_lock(file: &File, command: libc::c_int, fl: &mut libc::flock) -> std::io::Result<()> {
    // SAFETY: the lock commands only read (and, for a query, rewrite) the
    // flock we own for the duration of the call; the descriptor is open for
    // as long as `file` is borrowed.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), command, fl as *mut libc::flock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether an `fcntl` lock error means "another holder has it".
fn is_conflict(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// The lock commands: open-file-description locks on Linux.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
mod commands {
    pub(super) const SET: libc::c_int = libc::F_OFD_SETLK;
    pub(super) const GET: libc::c_int = libc::F_OFD_GETLK;
}

/// The lock commands: POSIX record locks everywhere else.
#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
mod commands {
    pub(super) const SET: libc::c_int = libc::F_SETLK;
    pub(super) const GET: libc::c_int = libc::F_GETLK;
}

impl ByteLock {
    /// Takes the lock without waiting; `Ok(None)` if another holder has it.
    /// A handle takes a byte once ([`RoleLocks`] remembers what it holds).
    pub(crate) fn try_lock(
        file: &Arc<SegmentFile>,
        byte: u64,
    ) -> std::io::Result<Option<ByteLock>> {
        // POSIX locks: the process table says whether another handle of
        // this process holds the byte, and is held across the system call
        // so that two threads cannot both take it.
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        let mut table = process_locks::table();
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        if process_locks::inode(&mut table, file.key())
            .locked
            .contains(&byte)
        {
            return Ok(None);
        }
        let mut fl = one_byte(libc::F_WRLCK as libc::c_short, byte);
        match fcntl_lock(file, commands::SET, &mut fl) {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        process_locks::inode(&mut table, file.key())
            .locked
            .insert(byte);
        Ok(Some(ByteLock {
            file: file.clone(),
            byte,
            forks: crate::sys::forks(),
        }))
    }

    /// Whether some holder has a lock on `byte` of `file`; works on a file
    /// opened read-only and takes nothing.
    pub(crate) fn is_locked(file: &File, byte: u64) -> std::io::Result<bool> {
        // POSIX locks: a lock of this very process does not show in a
        // query (it would not conflict with itself); the table knows it.
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        {
            let key = crate::file::FileKey::of(file)?;
            let mut table = process_locks::table();
            if process_locks::inode(&mut table, key).locked.contains(&byte) {
                return Ok(true);
            }
        }
        let mut fl = one_byte(libc::F_WRLCK as libc::c_short, byte);
        fcntl_lock(file, commands::GET, &mut fl)?;
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    }
}

impl Drop for ByteLock {
    fn drop(&mut self) {
        if crate::sys::forks() != self.forks {
            return;
        }
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        let mut table = process_locks::table();
        let mut fl = one_byte(libc::F_UNLCK as libc::c_short, self.byte);
        // Unlocking a byte this holder has cannot fail in a way that
        // matters: closing the file, or the process ending, releases it too.
        let _ = fcntl_lock(&self.file, commands::SET, &mut fl);
        #[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
        {
            let to_close = process_locks::released(&mut table, self.file.key(), self.byte);
            drop(table);
            drop(to_close);
        }
    }
}

/// The segment file and its path, for the locks taken on it and the
/// errors that name it.
pub(crate) type LockFile<'a> = Option<(&'a Arc<SegmentFile>, &'a Path)>;

/// One role (one end of one ring), taken on first use and kept until the
/// end that plays it is dropped.
#[derive(Debug)]
pub(crate) struct Role {
    byte: u64,
    /// Whether the role is held: by `lock` on a file-backed segment; on a
    /// heap or caller-supplied region, which lives in one process whose
    /// `&mut self` methods already serialize each role, as soon as it is
    /// first asked for.
    held: bool,
    lock: Option<ByteLock>,
}

impl Role {
    /// The role of lock byte `byte`, not yet taken.
    pub(crate) fn new(byte: u64) -> Self {
        Role {
            byte,
            held: false,
            lock: None,
        }
    }

    /// Whether the role is held.
    #[inline]
    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// Takes the role unless already held; waits until `deadline` for
    /// another process to release it. `what` names the role for the
    /// [`Error::Busy`] it fails with when the time is up.
    // Every send and receive asks: the answer is nearly always yes, one
    // test inlined into the caller; taking the lock is out of line.
    #[inline]
    pub(crate) fn ensure(
        &mut self,
        file: LockFile<'_>,
        deadline: &mut Deadline,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.held {
            return Ok(());
        }
        self.take(file, deadline, what)
    }

    #[cold]
    #[inline(never)]
    fn take(
        &mut self,
        file: LockFile<'_>,
        deadline: &mut Deadline,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let Some((file, path)) = file else {
            self.held = true;
            return Ok(());
        };
        loop {
            let taken = ByteLock::try_lock(file, self.byte).map_err(|cause| Error::Io {
                path: path.to_path_buf(),
                cause,
            })?;
            if let Some(lock) = taken {
                self.lock = Some(lock);
                self.held = true;
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

    const FAR: u64 = 1 << 40;

    fn open(path: &std::path::Path) -> Arc<SegmentFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Arc::new(SegmentFile::new(file, crate::region::Access::ReadWrite).unwrap())
    }

    /// Whether another process finds `byte` of `path` locked: a POSIX lock
    /// attempt from python3, which conflicts with both kinds of lock.
    fn locked_elsewhere(path: &std::path::Path, byte: u64) -> bool {
        let script = format!(
            "import fcntl, os, sys\n\
             fd = os.open(sys.argv[1], os.O_RDWR)\n\
             try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, {byte})\n\
             except OSError:\n    sys.exit(3)\n"
        );
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .status()
            .expect("python3 runs");
        match status.code() {
            Some(0) => false,
            Some(3) => true,
            other => panic!("the lock probe failed: {other:?}"),
        }
    }

    // shm[verify shm.lock.roles]
    #[test]
    fn byte_locks_exclude_other_handles_and_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, b"").unwrap();
        let (a, b) = (open(&path), open(&path));
        let ro = File::open(&path).unwrap();
        let held = ByteLock::try_lock(&a, FAR).unwrap().expect("first lock");
        assert!(ByteLock::try_lock(&b, FAR).unwrap().is_none());
        assert!(ByteLock::is_locked(&ro, FAR).unwrap());
        assert!(locked_elsewhere(&path, FAR));
        let next = ByteLock::try_lock(&b, FAR + 1)
            .unwrap()
            .expect("another byte");
        drop(held);
        assert!(!ByteLock::is_locked(&ro, FAR).unwrap());
        assert!(!locked_elsewhere(&path, FAR));
        assert!(locked_elsewhere(&path, FAR + 1));
        assert!(ByteLock::try_lock(&b, FAR).unwrap().is_some());
        drop(next);
    }

    // A POSIX record lock would be dropped by closing any descriptor of the
    // file: segment files are parked instead while a lock is held.
    // shm[verify shm.lock.portable]
    #[test]
    fn closing_another_handle_of_the_file_keeps_the_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, b"").unwrap();
        let holder = open(&path);
        let held = ByteLock::try_lock(&holder, FAR).unwrap().expect("lock");
        for _ in 0..3 {
            drop(open(&path));
        }
        assert!(
            locked_elsewhere(&path, FAR),
            "closing a handle dropped the lock"
        );
        // A parked descriptor is used again rather than a new one opened.
        let key = holder.key();
        if let Some(reused) = SegmentFile::reuse(key, crate::region::Access::ReadWrite) {
            assert_eq!(reused.key(), key);
        }
        drop(held);
        assert!(!locked_elsewhere(&path, FAR));
        // Nothing is parked once no lock is held.
        assert!(SegmentFile::reuse(key, crate::region::Access::ReadOnly).is_none());
    }
}
