//! The shared memory under the floors: a plain file mapped `MAP_SHARED`
//! by both processes, with its words as atomics and its buffers as byte
//! slices, and (on Linux) the raw futex calls of the blocking floor. The
//! floors measure what the hardware and the kernel cost with no library
//! in between, so this file uses `memmap2` and `libc` directly rather than
//! a segment; both sides of a floor build on it.

use std::fs::OpenOptions;
use std::path::Path;
#[cfg(target_os = "linux")]
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use memmap2::{MmapOptions, MmapRaw};
use shmhub::{FileMode, MmapRegion};

use crate::cmd::bench::protocol::CACHELINE_LINES;
use crate::cmd::error::OnSegment;
use crate::cmd::signals;
use crate::cmd::text::shown;

/// How long a floor waits for the other side before it takes it for dead:
/// every wait of a floor is a message or two long, so this is only ever
/// reached when the other process is gone or stuck.
pub const STALL: Duration = Duration::from_secs(10);

/// A file both processes of a floor map `MAP_SHARED`. Every accessor
/// checks its range against the mapping, so a disagreement between the
/// two sides about the layout panics rather than touches memory outside.
pub struct SharedFile {
    /// The mapping; it lives as long as this value, and so do the
    /// references handed out.
    map: MmapRaw,
}

impl SharedFile {
    /// Creates the file at `path` (it must not exist), reserves all its
    /// `len` bytes on the file system (so that no page can fault later for
    /// want of space) and maps it.
    pub fn create(path: &Path, len: usize) -> anyhow::Result<Self> {
        // The library's creation refuses an existing file or symlink and
        // reports a full file system in one line; its mapping is dropped at
        // once, since the floors need raw slices of the bytes.
        drop(MmapRegion::create_preallocated(path, len, FileMode::OwnerOnly).on_segment(path)?);
        Self::open(path)
    }

    /// Maps the existing file at `path`, read and write.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", shown(&path)))?;
        let map = MmapOptions::new()
            .map_raw(&file)
            .with_context(|| format!("mapping {}", shown(&path)))?;
        Ok(SharedFile { map })
    }

    /// The address of `len` bytes at `offset`, after checking that they lie
    /// inside the mapping and that `offset` is a multiple of `align`.
    fn at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.map.len()),
            "{len} bytes at {offset} are outside the {}-byte floor file",
            self.map.len()
        );
        assert!(
            offset % align == 0,
            "offset {offset} is not {align}-aligned"
        );
        self.map.as_mut_ptr().wrapping_add(offset)
    }

    /// The `u64` at `offset` (a multiple of 8), as an atomic.
    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let ptr = self.at(offset, 8, 8).cast::<u64>();
        // SAFETY: `at` checked that the 8 bytes lie inside the mapping and
        // are 8-aligned (the mapping starts on a page). The mapping lives as
        // long as `self`, which bounds the reference; the other process
        // only ever accesses this word atomically too, and every bit
        // pattern is a valid u64.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// The `u32` at `offset` (a multiple of 4), as an atomic (the futex
    /// floor's words; there is no futex elsewhere).
    #[cfg(target_os = "linux")]
    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let ptr = self.at(offset, 4, 4).cast::<u32>();
        // SAFETY: as in `u64_at`, with 4 bytes and 4-byte alignment.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    /// The `len` bytes at `offset`, to write.
    ///
    /// # Safety
    ///
    /// While the slice lives, no one else (in this process or the other)
    /// may read or write those bytes: the caller owns them by the floor's
    /// protocol (a buffer the reader has handed back and that is not yet
    /// published), and makes no second slice of them.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        let ptr = self.at(offset, len, 1);
        // SAFETY: the range lies inside the mapping (checked by `at`), which
        // is writable and outlives the slice; exclusive access is the
        // caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// The `len` bytes at `offset`, to read.
    ///
    /// # Safety
    ///
    /// While the slice lives, no one may write those bytes: the caller owns
    /// them by the floor's protocol (a buffer published to it and not yet
    /// handed back).
    pub unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        let ptr = self.at(offset, len, 1);
        // SAFETY: the range lies inside the mapping (checked by `at`), which
        // outlives the slice; that nobody writes it meanwhile is the
        // caller's guarantee. Any byte value is a valid u8.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// The cache-line floor's words in `file`, one at the start of each of its
/// [`CACHELINE_LINES`] lines; round trip `n` bounces word
/// `n % CACHELINE_LINES`. Both sides take them from here.
pub fn cacheline_words(file: &SharedFile) -> Vec<&AtomicU64> {
    (0..CACHELINE_LINES)
        .map(|line| file.u64_at(line * 64))
        .collect()
}

/// Spins until `word` holds a value `ready` accepts, as a floor's side
/// does between two messages, and returns it; `None` if none came within
/// [`STALL`], or once a termination signal has arrived (only the
/// measuring side catches them). The clock and the signal flag are read
/// only every few thousand spins, so that a wait that ends at once costs
/// one load and nothing else.
pub fn spin_until(word: &AtomicU64, ready: impl Fn(u64) -> bool) -> Option<u64> {
    let mut deadline = None;
    let mut spins = 0u32;
    loop {
        let value = word.load(Ordering::Acquire);
        if ready(value) {
            return Some(value);
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 {
            if signals::received().is_some() {
                return None;
            }
            let now = Instant::now();
            if now > *deadline.get_or_insert(now + STALL) {
                return None;
            }
        }
    }
}

/// Sleeps in the kernel while `word` holds `expected`, for at most
/// `timeout`; may return early for no reason (callers re-check). The
/// futex is not private: the word lives in a file both processes map, and
/// a private futex is keyed on one process's address space. This is the
/// system call itself rather than `shmhub::sys::futex_wait`, which a build
/// with `--cfg shmhub_portable` turns into polling: the floor must be the
/// kernel's wake-up in every build.
#[cfg(target_os = "linux")]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned 4-byte word, which `word` keeps
    // valid for the call, and compares it with `expected`; `ts` outlives
    // the call. Early returns (a signal, EAGAIN when the word already
    // changed) are harmless, since callers re-check the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes the other process if it sleeps in [`futex_wait`] on `word`.
#[cfg(target_os = "linux")]
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE uses the address only as the key of the wait
    // queue and accesses no memory; `word` is valid for the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
    }
}
