//! The segment files this process has open.
//!
//! The role locks (`locks.rs`) are byte locks on the segment file. On
//! Linux they are open-file-description locks (`F_OFD_SETLK`), which
//! belong to one open file: a segment file may be opened and closed
//! freely. Elsewhere (macOS, and Linux built with `--cfg shmhub_portable`,
//! which tests this path) they are POSIX record locks (`F_SETLK`), which
//! belong to the *process* and have two traps:
//!
//! - two handles of one file in one process never conflict, so the
//!   exclusion between a host and a guest (or two guests) in one process
//!   must be kept by the process itself;
//! - closing *any* descriptor of a file drops *all* the process's locks on
//!   it, so a descriptor must not be closed while a lock is held.
//!
//! As SQLite's unix VFS does, this path keeps one entry per (device, inode)
//! for the whole process: the role bytes the process holds on that file,
//! and the descriptors whose closing waits until no lock is held. A later
//! open of the same file reuses such a parked descriptor instead of opening
//! another, so parking never grows without bound.
//!
//! shm[impl shm.lock.portable]

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;

use crate::region::Access;

/// A file's identity: device and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
}

impl FileKey {
    /// The identity of an open file.
    pub(crate) fn of(file: &File) -> io::Result<Self> {
        Ok(Self::of_meta(&file.metadata()?))
    }

    /// The identity of the file `meta` describes.
    pub(crate) fn of_meta(meta: &std::fs::Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// An open segment file: its descriptor and identity. On the POSIX-lock
/// path, dropping it while this process holds a role lock on the file
/// parks the descriptor instead of closing it (see the module docs).
#[derive(Debug)]
pub(crate) struct SegmentFile {
    /// Always `Some` until dropped.
    file: Option<File>,
    key: FileKey,
    access: Access,
}

impl SegmentFile {
    /// Wraps a file just opened with `access`.
    pub(crate) fn new(file: File, access: Access) -> io::Result<Self> {
        Ok(SegmentFile {
            key: FileKey::of(&file)?,
            file: Some(file),
            access,
        })
    }

    /// The file's identity (the key of the POSIX-lock table; the locks'
    /// tests use it on every platform).
    #[cfg_attr(all(target_os = "linux", not(shmhub_portable)), allow(dead_code))]
    pub(crate) fn key(&self) -> FileKey {
        self.key
    }

    /// A descriptor of the file at `key` that this process parked, open
    /// with an access that serves `access`, to use instead of opening the
    /// file again. Always `None` where descriptors are never parked.
    pub(crate) fn reuse(key: FileKey, access: Access) -> Option<SegmentFile> {
        let (file, opened_with) = process_locks::take_parked(key, access)?;
        Some(SegmentFile {
            file: Some(file),
            key,
            access: opened_with,
        })
    }
}

impl Deref for SegmentFile {
    type Target = File;

    fn deref(&self) -> &File {
        // Set in `new` and `reuse`, taken only in `drop`.
        self.file
            .as_ref()
            .expect("a segment file is open until dropped")
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            process_locks::close_or_park(self.key, file, self.access);
        }
    }
}

/// The per-process table of the POSIX-lock path.
#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
pub(crate) mod process_locks {
    use std::collections::{BTreeSet, HashMap};
    use std::fs::File;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::{Access, FileKey};

    /// What the process has of one file.
    #[derive(Debug, Default)]
    pub(crate) struct Inode {
        /// Role bytes this process holds on the file.
        pub(crate) locked: BTreeSet<u64>,
        /// Descriptors waiting to be closed until no lock is held, and
        /// whether each is open for writing.
        parked: Vec<(File, Access)>,
    }

    static INODES: Mutex<Option<HashMap<FileKey, Inode>>> = Mutex::new(None);

    /// The table, locked. A panic while it was held left it consistent
    /// (every change is one insertion or removal), so poisoning is ignored.
    pub(crate) fn table() -> MutexGuard<'static, Option<HashMap<FileKey, Inode>>> {
        INODES.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of `key`, made if missing.
    pub(crate) fn inode<'a>(
        table: &'a mut MutexGuard<'static, Option<HashMap<FileKey, Inode>>>,
        key: FileKey,
    ) -> &'a mut Inode {
        table
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default()
    }

    /// Records that `byte` was released; returns the parked descriptors to
    /// close (after the table is unlocked) once no lock is held.
    pub(crate) fn released(
        table: &mut MutexGuard<'static, Option<HashMap<FileKey, Inode>>>,
        key: FileKey,
        byte: u64,
    ) -> Vec<(File, Access)> {
        let Some(map) = table.as_mut() else {
            return Vec::new();
        };
        let Some(inode) = map.get_mut(&key) else {
            return Vec::new();
        };
        inode.locked.remove(&byte);
        if !inode.locked.is_empty() {
            return Vec::new();
        }
        let parked = std::mem::take(&mut inode.parked);
        map.remove(&key);
        parked
    }

    /// Closes `file`, unless this process holds a lock on it: then parks it.
    pub(crate) fn close_or_park(key: FileKey, file: File, access: Access) {
        let mut table = table();
        match table.as_mut().and_then(|map| map.get_mut(&key)) {
            Some(inode) if !inode.locked.is_empty() => inode.parked.push((file, access)),
            _ => {
                drop(table);
                drop(file);
            }
        }
    }

    /// Takes a parked descriptor of `key` that serves `access`.
    pub(crate) fn take_parked(key: FileKey, access: Access) -> Option<(File, Access)> {
        let mut table = table();
        let inode = table.as_mut()?.get_mut(&key)?;
        let at = inode
            .parked
            .iter()
            .position(|(_, opened)| opened.serves(access))?;
        Some(inode.parked.swap_remove(at))
    }
}

/// Open-file-description locks need no table: descriptors close at once
/// and are never reused.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
pub(crate) mod process_locks {
    use std::fs::File;

    use super::{Access, FileKey};

    /// Closes `file`.
    pub(crate) fn close_or_park(_key: FileKey, file: File, _access: Access) {
        drop(file);
    }

    /// Nothing is ever parked.
    pub(crate) fn take_parked(_key: FileKey, _access: Access) -> Option<(File, Access)> {
        None
    }
}
