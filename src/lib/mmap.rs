//! File-backed shared mappings.
//!
//! A thin wrapper over `memmap2`'s raw mapping: the file is opened without
//! following symlinks, created exclusively with an exact mode, and mapped
//! `MAP_SHARED` so that every process mapping it sees the same bytes.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::Error;
use crate::file::{FileKey, SegmentFile};
use crate::region::{Access, Backing, Region};

/// File permission bits for a new segment file.
///
/// shm[impl shm.file.permissions]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileMode {
    /// `0600`: owner read/write only (the default).
    #[default]
    OwnerOnly,
    /// `0660`: owner and group read/write, for guests running as another
    /// user of the same group.
    OwnerAndGroup,
}

impl FileMode {
    /// The permission bits.
    pub fn bits(self) -> u32 {
        match self {
            FileMode::OwnerOnly => 0o600,
            FileMode::OwnerAndGroup => 0o660,
        }
    }
}

struct MappedFile {
    _map: memmap2::MmapRaw,
}
impl Backing for MappedFile {}

/// Whether a segment file another user owns may be opened: one it does
/// not own could be a squatter's (`shm.file.permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerCheck {
    /// Refuse a file another user controls.
    Required,
    /// Open it anyway (`OpenOptions::allow_foreign_owner`).
    Skipped,
}

/// A file mapped `MAP_SHARED`, with the [`Region`] that views it.
///
/// ```
/// use shmhub::MmapRegion;
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("demo.shm");
/// let created = MmapRegion::create(&path, 4096).unwrap();
/// created.region().write(0, b"hi").unwrap();
///
/// let attached = MmapRegion::attach(&path).unwrap();
/// let mut buf = [0u8; 2];
/// attached.region().read(0, &mut buf).unwrap();
/// assert_eq!(&buf, b"hi");
/// ```
pub struct MmapRegion {
    region: Region,
    file: Arc<SegmentFile>,
    path: PathBuf,
    identity: FileIdentity,
    owner: FileOwner,
}

/// Who owns a file, and its permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FileOwner {
    /// The owning user.
    pub uid: u32,
    /// The owning group.
    pub gid: u32,
    /// The permission bits (`0o600`, `0o660`, ...).
    pub mode: u32,
}

impl FileOwner {
    /// The owner of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        FileOwner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }

    /// Whether this process may trust a segment file with this owner: one
    /// it or root owns, or one shared with a group it is in on purpose
    /// (mode 0660). Another local user could have made any other file at
    /// the expected name and be waiting for guests to send it their data.
    ///
    /// shm[impl shm.file.owner]
    pub fn is_trusted(&self) -> bool {
        let me = crate::sys::effective_uid();
        self.uid == me
            || self.uid == 0
            || (self.mode & 0o777 == 0o660 && crate::sys::in_group(self.gid))
    }
}

impl fmt::Debug for MmapRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmapRegion")
            .field("path", &self.path)
            .field("len", &self.region.len())
            .field("writable", &self.region.is_writable())
            .finish()
    }
}

/// Device and inode of a file: tells whether a path still names the file
/// that was mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Opens the existing file at `path` (never through a symlink), for
/// writing too if `access` says so; where this process has parked a descriptor
/// of that very file (see `file.rs`), that one is used instead.
fn open_existing(path: &Path, access: Access) -> Result<SegmentFile, Error> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_file() {
            if let Some(file) = SegmentFile::reuse(FileKey::of_meta(&meta), access) {
                return Ok(file);
            }
        }
    }
    let file = open_regular(path, access)?;
    SegmentFile::new(file, access).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, cause: io::Error) -> Error {
    if cause.raw_os_error() == Some(libc::ELOOP) {
        return Error::Symlink {
            path: path.to_path_buf(),
        };
    }
    Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Opens an existing regular file for mapping, never through a symlink and
/// never blocking.
///
/// `O_NONBLOCK` keeps `open` itself from waiting: opening a FIFO that has
/// no writer, or some devices, would otherwise block forever. The file type
/// is checked with `fstat` before anything else, and anything but a regular
/// file is [`Error::NotAFile`]. For a regular file the flag is then cleared,
/// so the descriptor behaves exactly as one opened without it.
///
/// shm[impl shm.file.attach]
fn open_regular(path: &Path, access: Access) -> Result<File, Error> {
    let not_a_file = || Error::NotAFile {
        path: path.to_path_buf(),
    };
    let file = OpenOptions::new()
        .read(true)
        .write(access.writes())
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            // A socket cannot be opened at all (ENXIO): its type is the
            // cause worth reporting. A directory keeps its own error.
            let special = std::fs::symlink_metadata(path).is_ok_and(|m| {
                let t = m.file_type();
                !(t.is_file() || t.is_dir() || t.is_symlink())
            });
            if special {
                not_a_file()
            } else {
                io_error(path, e)
            }
        })?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_a_file());
    }
    clear_nonblocking(&file).map_err(|e| io_error(path, e))?;
    Ok(file)
}

/// Clears `O_NONBLOCK` on an open file.
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    if flags.contains(OFlags::NONBLOCK) {
        fcntl_setfl(file, flags - OFlags::NONBLOCK)?;
    }
    Ok(())
}

/// Reserves the first `len` bytes of `file` on its file system, so that
/// touching any page of a mapping of it cannot fail for want of space.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // posix_fallocate rather than rustix's fallocate, which on Linux is the
    // bare system call: where a file system has no fallocate, the C library
    // reserves the space by writing to it instead of failing.
    loop {
        // SAFETY: posix_fallocate works on the descriptor `file` keeps open
        // for the call; no memory is passed. It returns an error number
        // rather than setting errno.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => return Ok(()),
            libc::EINTR => continue,
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Reserves the first `len` bytes of `file` by writing zeroes over them
/// (where `posix_fallocate` is not available).
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeroes = vec![0u8; 1 << 16];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(zeroes.len() as u64) as usize;
        file.write_all_at(&zeroes[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

impl MmapRegion {
    /// Creates a new file of `size` bytes with mode `0600` and maps it.
    ///
    /// Fails if anything exists at `path` (a symlink included).
    ///
    /// shm[impl shm.file.create]
    pub fn create(path: &Path, size: usize) -> Result<Self, Error> {
        Self::create_with_mode(path, size, FileMode::default())
    }

    /// Creates a new file of `size` bytes with the given mode, whatever the
    /// umask, and maps it shared. The file is sparse: only its first page
    /// is allocated now (so that writing a header there cannot fault), the
    /// others as they are first touched (see
    /// [`MmapRegion::create_preallocated`]). A file system without room for
    /// that first page is [`Error::NoSpace`], and the file is deleted again.
    ///
    /// shm[impl shm.file.permissions]
    /// shm[impl shm.file.mmap-posix]
    pub fn create_with_mode(path: &Path, size: usize, mode: FileMode) -> Result<Self, Error> {
        Self::create_file(path, size, mode, false)
    }

    /// Like [`MmapRegion::create_with_mode`], but reserves every page of the
    /// file before mapping it (`posix_fallocate`), so that no later access
    /// can fault for want of space (a sparse file on a full tmpfs raises
    /// SIGBUS when a new page is touched).
    ///
    /// If the file system cannot hold `size` bytes, the file is deleted
    /// again and the error is [`Error::NoSpace`].
    ///
    /// shm[impl shm.file.create]
    pub fn create_preallocated(path: &Path, size: usize, mode: FileMode) -> Result<Self, Error> {
        Self::create_file(path, size, mode, true)
    }

    fn create_file(
        path: &Path,
        size: usize,
        mode: FileMode,
        preallocate: bool,
    ) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::Region(crate::region::RegionError::Empty));
        }
        // O_EXCL with O_CREAT never follows a symlink at the final component
        // and never opens an existing file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode.bits())
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let result = (|| {
            // The umask may have cleared bits of `mode`; set them exactly.
            file.set_permissions(std::fs::Permissions::from_mode(mode.bits()))
                .map_err(|e| io_error(path, e))?;
            // A new file is all zeroes: extending it allocates nothing on
            // tmpfs, so creation costs the same for any size.
            file.set_len(size as u64).map_err(|e| io_error(path, e))?;
            // Reserve the first page (where a segment's header is written)
            // or, preallocating, all of them: writing a page that a full
            // file system cannot back would fault instead of failing.
            let reserve = if preallocate {
                size as u64
            } else {
                (size as u64).min(crate::layout::PAGE_SIZE)
            };
            match allocate(&file, reserve) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    return Err(Error::NoSpace {
                        path: path.to_path_buf(),
                        needed: reserve,
                    });
                }
                // A file system that cannot allocate ahead (the first page
                // is only a precaution) is left to allocate on touch.
                Err(_) if !preallocate => {}
                Err(e) => return Err(io_error(path, e)),
            }
            Ok::<_, Error>(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let mapped = SegmentFile::new(file, Access::ReadWrite)
            .map_err(|e| io_error(path, e))
            .and_then(|file| Self::map(file, path, size, Access::ReadWrite));
        match mapped {
            Ok(region) => Ok(region),
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Opens an existing file read/write (never through a symlink) and maps
    /// all of it shared.
    ///
    /// Fails if the file is not a regular file (at once: a FIFO or a device
    /// is never waited on) or is smaller than `min_len` bytes.
    pub fn attach_min(path: &Path, min_len: u64) -> Result<Self, Error> {
        let file = open_existing(path, Access::ReadWrite)?;
        Self::map_existing(file, path, min_len, Access::ReadWrite)
    }

    /// Opens an existing file read/write and maps it shared.
    ///
    /// shm[impl shm.file.attach]
    pub fn attach(path: &Path) -> Result<Self, Error> {
        Self::attach_min(path, 1)
    }

    /// Opens an existing file read-only and maps it read-only: for looking
    /// at a segment without any chance of changing it.
    pub fn open_read_only(path: &Path, min_len: u64) -> Result<Self, Error> {
        let file = open_existing(path, Access::ReadOnly)?;
        Self::map_existing(file, path, min_len, Access::ReadOnly)
    }

    /// Opens an existing file read-only without mapping it, for reading
    /// with `pread` only the bytes it really has (never through a symlink;
    /// anything but a regular file is refused at once).
    pub(crate) fn open_unmapped(path: &Path) -> Result<SegmentFile, Error> {
        open_existing(path, Access::ReadOnly)
    }

    fn map_existing(
        file: SegmentFile,
        path: &Path,
        min_len: u64,
        access: Access,
    ) -> Result<Self, Error> {
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        let len = meta.len();
        if len < min_len.max(1) {
            return Err(Error::TooSmall {
                path: path.to_path_buf(),
                len,
                min: min_len.max(1),
            });
        }
        let size = usize::try_from(len).map_err(|_| Error::TooLarge {
            path: path.to_path_buf(),
            len,
        })?;
        Self::map(file, path, size, access)
    }

    fn map(file: SegmentFile, path: &Path, size: usize, access: Access) -> Result<Self, Error> {
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        let mut options = memmap2::MmapOptions::new();
        options.len(size);
        let map = if access.writes() {
            options.map_raw(&*file)
        } else {
            options.map_raw_read_only(&*file)
        }
        .map_err(|e| io_error(path, e))?;
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| io_error(path, io::Error::other("mmap returned a null pointer")))?;
        let backing: Arc<dyn Backing> = Arc::new(MappedFile { _map: map });
        // SAFETY: memmap2 mapped exactly `size` bytes at `ptr`, shared, with
        // write access iff `access` writes; the mapping is unmapped only when the
        // MappedFile drops, which happens after the last Region clone drops.
        let region = unsafe { Region::from_backing(backing, ptr, size, access) };
        Ok(MmapRegion {
            region,
            file: Arc::new(file),
            path: path.to_path_buf(),
            identity: FileIdentity::of(&meta),
            owner: FileOwner::of(&meta),
        })
    }

    /// A view of the whole mapping; it keeps the mapping alive.
    pub fn region(&self) -> Region {
        self.region.clone()
    }

    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file behind the mapping.
    ///
    /// Where role locks are POSIX record locks (macOS), closing any
    /// descriptor of a segment file drops every lock this process holds on
    /// it: do not open the file yourself while a host or guest of this
    /// process uses it; the library's own opens keep the locks (see
    /// `docs/spec.md`, `shm.lock.portable`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file, shared with the role locks taken on it.
    pub(crate) fn segment_file(&self) -> &Arc<SegmentFile> {
        &self.file
    }

    /// Who owned the file, and its mode, when it was opened.
    pub fn owner(&self) -> FileOwner {
        self.owner
    }

    /// Refuses the file unless this process may trust its owner
    /// ([`FileOwner::is_trusted`]).
    ///
    /// # Errors
    ///
    /// [`Error::ForeignOwner`], naming the owner and the mode.
    pub fn check_owner(&self) -> Result<(), Error> {
        if self.owner.is_trusted() {
            return Ok(());
        }
        Err(Error::ForeignOwner {
            path: self.path.clone(),
            uid: self.owner.uid,
            mode: self.owner.mode,
        })
    }

    /// Device and inode of the mapped file.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Whether the file is still as it was mapped: same length, and the
    /// path still names it. A truncated file would fault on access; a
    /// replaced or deleted one no longer reaches other processes.
    pub fn check_unchanged(&self) -> Result<(), Error> {
        let meta = self.file.metadata().map_err(|e| io_error(&self.path, e))?;
        if meta.len() < self.region.len() as u64 {
            return Err(Error::Truncated {
                path: self.path.clone(),
                len: meta.len(),
                mapped: self.region.len() as u64,
            });
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(now) if FileIdentity::of(&now) == self.identity => Ok(()),
            Ok(_) => Err(Error::Replaced {
                path: self.path.clone(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Removed {
                path: self.path.clone(),
            }),
            Err(e) => Err(io_error(&self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // shm[verify shm.file.create]
    #[test]
    fn create_refuses_existing_file_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.shm");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            MmapRegion::create(&path, 4096),
            Err(Error::Io { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");

        let link = dir.path().join("link.shm");
        std::os::unix::fs::symlink(dir.path().join("target.shm"), &link).unwrap();
        assert!(MmapRegion::create(&link, 4096).is_err());
        assert!(!dir.path().join("target.shm").exists());
    }

    // shm[verify shm.file.attach]
    #[test]
    fn attach_refuses_symlink_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.shm");
        let _created = MmapRegion::create(&path, 4096).unwrap();
        let link = dir.path().join("link.shm");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            MmapRegion::attach(&link),
            Err(Error::Symlink { .. })
        ));
        assert!(matches!(
            MmapRegion::attach(dir.path()),
            Err(Error::Io { .. }) | Err(Error::NotAFile { .. })
        ));
    }

    // A FIFO with no writer (whose plain open blocks forever), a character
    // device and a socket are refused at once, and a regular file keeps no
    // trace of the non-blocking open.
    // shm[verify shm.file.attach]
    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        // The mkfifo command rather than the call, which rustix does not
        // offer on macOS.
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let paths = [fifo, socket, "/dev/zero".into()];
        std::thread::spawn(move || {
            for path in &paths {
                let read_only = MmapRegion::open_read_only(path, 1);
                let read_write = MmapRegion::attach(path);
                let _ = done.send((path.clone(), read_only.err(), read_write.err()));
            }
        });
        for _ in 0..3 {
            let (path, read_only, read_write) = finished
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("opening a special file did not return within 5 s");
            assert!(
                matches!(read_only, Some(Error::NotAFile { .. })),
                "{path:?}: {read_only:?}"
            );
            assert!(
                matches!(read_write, Some(Error::NotAFile { .. })),
                "{path:?}: {read_write:?}"
            );
        }

        let path = dir.path().join("plain.shm");
        let _created = MmapRegion::create(&path, 4096).unwrap();
        for opened in [
            MmapRegion::attach(&path).unwrap(),
            MmapRegion::open_read_only(&path, 1).unwrap(),
        ] {
            let flags = rustix::fs::fcntl_getfl(opened.file()).unwrap();
            assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK));
        }
    }

    // shm[verify shm.file.permissions]
    #[test]
    fn mode_is_exact_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, bits) in [
            (FileMode::OwnerOnly, 0o600),
            (FileMode::OwnerAndGroup, 0o660),
        ] {
            let path = dir.path().join(format!("{bits:o}.shm"));
            use rustix::fs::Mode;
            let old = rustix::process::umask(Mode::from_raw_mode(0o077));
            let created = MmapRegion::create_with_mode(&path, 4096, mode);
            rustix::process::umask(old);
            created.unwrap();
            let got = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, bits);
        }
    }

    // shm[verify shm.inspect.read-only]
    #[test]
    fn read_only_mapping_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.shm");
        let _created = MmapRegion::create(&path, 4096).unwrap();
        let ro = MmapRegion::open_read_only(&path, 1).unwrap();
        assert!(ro.region().write(0, b"x").is_err());
        assert!(ro.region().atomic_u32(0).is_err());
        assert_eq!(
            ro.region()
                .load_u32(0, std::sync::atomic::Ordering::Relaxed)
                .unwrap(),
            0
        );
    }

    // shm[verify shm.file.mmap-posix]
    #[test]
    fn truncation_and_replacement_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.shm");
        let created = MmapRegion::create(&path, 8192).unwrap();
        created.check_unchanged().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        assert!(matches!(
            created.check_unchanged(),
            Err(Error::Truncated { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let again = MmapRegion::attach(&path).unwrap();
        again.check_unchanged().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            again.check_unchanged(),
            Err(Error::Removed { .. })
        ));
    }
}
