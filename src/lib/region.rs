//! Bounds-checked views of mapped bytes.
//!
//! Every access the library makes to shared memory goes through a [`Region`]:
//! an offset and a length are checked against the mapping (and the alignment
//! of atomics against their size) before any pointer is formed. The memory
//! behind a region is kept alive by reference counting, so a `Region` can
//! never outlive what it points into.
//!
//! Under `cfg(loom)` (model checking, see `loom_tests.rs`) a region does not
//! touch its memory after creation: it keeps a *shadow* of it made of loom
//! atomics (see `shadow`), so that loom sees, schedules and checks every
//! access the ring and pool code makes.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sync::atomic::{AtomicU32, AtomicU64};

/// Page alignment used for heap regions, so that they behave like mappings.
const HEAP_ALIGN: usize = 4096;

/// An access that a [`Region`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The range `offset..offset+len` does not fit in the region.
    #[error("range {offset}+{len} is outside the region of {region_len} bytes")]
    OutOfBounds {
        /// Start of the refused range.
        offset: u64,
        /// Length of the refused range.
        len: u64,
        /// Length of the region.
        region_len: u64,
    },
    /// An atomic was requested at an offset not aligned to its size.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// The refused offset.
        offset: u64,
        /// The alignment the access needs.
        align: u64,
    },
    /// A write was requested through a read-only mapping.
    #[error("the region is mapped read-only")]
    ReadOnly,
    /// A zero-length region was requested.
    #[error("a region cannot be empty")]
    Empty,
    /// The heap refused the allocation.
    #[error("cannot allocate {0} bytes")]
    Alloc(usize),
}

/// Owner of the memory behind one or more [`Region`]s.
pub(crate) trait Backing: Send + Sync {}

/// Zeroed, page-aligned heap memory.
struct HeapAlloc {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: HeapAlloc owns its allocation exclusively; the pointer is only
// dereferenced through Region, whose accessors are safe to call from any
// thread (atomics, or byte copies of plain data).
unsafe impl Send for HeapAlloc {}
// SAFETY: see Send above; no interior state besides the raw allocation.
unsafe impl Sync for HeapAlloc {}
impl Backing for HeapAlloc {}

impl Drop for HeapAlloc {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with exactly this layout
        // and is freed once, here, when the last Region referring to it drops.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// What a mapping (or an open file) allows: reading only, or reading and
/// writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Loads only; stores and read-modify-write atomics are refused.
    ReadOnly,
    /// Loads and stores.
    ReadWrite,
}

impl Access {
    /// Whether this access lets one write.
    pub(crate) fn writes(self) -> bool {
        self == Access::ReadWrite
    }

    /// Whether a file opened with this access serves a caller that needs
    /// `needed` (descriptors are parked only on the POSIX-lock path).
    #[cfg_attr(all(target_os = "linux", not(shmhub_portable)), allow(dead_code))]
    pub(crate) fn serves(self, needed: Access) -> bool {
        self.writes() || !needed.writes()
    }
}

/// A bounds-checked view of `len` bytes of shared (or heap) memory.
///
/// Cloning a `Region` is cheap and keeps the memory alive. Accessors take
/// byte offsets from the start of the region and return [`RegionError`]
/// instead of touching anything outside it.
///
/// ```
/// use shmhub::HeapRegion;
/// use std::sync::atomic::Ordering;
///
/// let heap = HeapRegion::new_zeroed(4096).unwrap();
/// let region = heap.region();
/// region.store_u32(64, 7, Ordering::Release).unwrap();
/// assert_eq!(region.load_u32(64, Ordering::Acquire).unwrap(), 7);
/// assert!(region.load_u32(4096, Ordering::Acquire).is_err());
/// ```
#[derive(Clone)]
pub struct Region {
    _backing: Arc<dyn Backing>,
    // Under loom, only read when the shadow is made (and by tests).
    #[cfg_attr(loom, allow(dead_code))]
    ptr: NonNull<u8>,
    len: usize,
    access: Access,
    /// Under loom, the model of the memory that every access goes to.
    #[cfg(loom)]
    shadow: Arc<shadow::Shadow>,
}

// SAFETY: Region only hands out atomics (which are Sync) and copies bytes in
// and out; the backing it points into is Send + Sync and kept alive by the Arc.
unsafe impl Send for Region {}
// SAFETY: as for Send.
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("len", &self.len)
            .field("access", &self.access)
            .finish()
    }
}

impl Region {
    /// Wraps memory owned by `backing`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` must be valid for reads (and for writes when `access`
    /// is [`Access::ReadWrite`]) for as long as `backing` lives, and must
    /// stay mapped while any clone of the returned region exists.
    pub(crate) unsafe fn from_backing(
        backing: Arc<dyn Backing>,
        ptr: NonNull<u8>,
        len: usize,
        access: Access,
    ) -> Self {
        Region {
            // SAFETY: the caller guarantees ptr..ptr+len is readable now.
            #[cfg(loom)]
            shadow: Arc::new(unsafe { shadow::Shadow::new(ptr, len) }),
            _backing: backing,
            ptr,
            len,
            access,
        }
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty region cannot be made.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether writes (and read-modify-write atomics) are allowed.
    pub fn is_writable(&self) -> bool {
        self.access.writes()
    }

    /// Checks that `offset..offset+len` lies inside the region and that
    /// `offset` is a multiple of `align`; returns the offset as `usize`.
    #[inline]
    fn check(&self, offset: u64, len: u64, align: u64) -> Result<usize, RegionError> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.len as u64)
        {
            return Err(RegionError::OutOfBounds {
                offset,
                len,
                region_len: self.len as u64,
            });
        }
        if offset % align != 0 {
            return Err(RegionError::Misaligned { offset, align });
        }
        // end <= self.len, which is a usize, so offset fits in usize.
        Ok(offset as usize)
    }

    #[inline]
    fn check_writable(&self) -> Result<(), RegionError> {
        if self.access.writes() {
            Ok(())
        } else {
            Err(RegionError::ReadOnly)
        }
    }

    /// The `AtomicU32` at `offset`, for reads and writes.
    ///
    /// Fails on a read-only region, out of bounds or misaligned.
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32, RegionError> {
        self.check_writable()?;
        let at = self.check(offset, 4, 4)?;
        // SAFETY: at..at+4 is inside the region and `at` is a multiple of 4
        // (checked above); the region is writable (checked above).
        Ok(unsafe { self.u32_at(at) })
    }

    /// The `AtomicU64` at `offset`, for reads and writes.
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64, RegionError> {
        self.check_writable()?;
        let at = self.check(offset, 8, 8)?;
        // SAFETY: as in atomic_u32, with 8 bytes and 8-byte alignment.
        Ok(unsafe { self.u64_at(at) })
    }

    /// Atomically loads the `u32` at `offset`; works on read-only regions.
    #[inline]
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32, RegionError> {
        let at = self.check(offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked). The atomic is only loaded
        // from, which is valid on a read-only mapping too.
        Ok(unsafe { self.u32_at(at) }.load(order))
    }

    /// Atomically loads the `u64` at `offset`; works on read-only regions.
    #[inline]
    pub fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64, RegionError> {
        let at = self.check(offset, 8, 8)?;
        // SAFETY: as in load_u32, with 8 bytes and 8-byte alignment.
        Ok(unsafe { self.u64_at(at) }.load(order))
    }

    /// Stores `value` at `offset` with the given ordering.
    #[inline]
    pub fn store_u32(&self, offset: u64, value: u32, order: Ordering) -> Result<(), RegionError> {
        self.atomic_u32(offset)?.store(value, order);
        Ok(())
    }

    /// Stores `value` at `offset` with the given ordering.
    #[inline]
    pub fn store_u64(&self, offset: u64, value: u64, order: Ordering) -> Result<(), RegionError> {
        self.atomic_u64(offset)?.store(value, order);
        Ok(())
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    // Inlined, so that a copy of a length known where it is called (a
    // descriptor's 60 bytes) compiles to a few moves, not a call.
    #[inline]
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        let at = self.check(offset, dst.len() as u64, 1)?;
        // SAFETY: the source range is inside the region (checked).
        unsafe { self.copy_out(at, dst) };
        Ok(())
    }

    /// Copies `src` into the region starting at `offset`.
    #[inline]
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, src.len() as u64, 1)?;
        // SAFETY: the destination range is inside a writable region (checked).
        unsafe { self.copy_in(at, src) };
        Ok(())
    }

    /// Copies `N` bytes at `offset` into an array; a fixed size lets the
    /// copy compile to a few vector moves (descriptors on the hot path).
    #[inline]
    pub fn read_array<const N: usize>(&self, offset: u64) -> Result<[u8; N], RegionError> {
        let at = self.check(offset, N as u64, 1)?;
        let mut out = [0u8; N];
        // SAFETY: as in `read`: the source range is inside the region (checked).
        unsafe { self.copy_out(at, &mut out) };
        Ok(out)
    }

    /// Copies an `N`-byte array into the region at `offset` (fixed size,
    /// like [`Region::read_array`]).
    #[inline]
    pub fn write_array<const N: usize>(
        &self,
        offset: u64,
        src: &[u8; N],
    ) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, N as u64, 1)?;
        // SAFETY: as in `write`: in bounds of a writable region (checked).
        unsafe { self.copy_in(at, src) };
        Ok(())
    }

    /// Fills `len` bytes at `offset` with zero.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, len, 1)?;
        // SAFETY: the range is inside a writable region (checked).
        unsafe { self.fill_zero(at, len as usize) };
        Ok(())
    }
}

/// An atomic a [`Word`] can be: 32 or 64 bits wide.
pub(crate) trait Atomic {
    /// Its size, which is also its alignment.
    const SIZE: u64;

    /// The integer it holds.
    type Value: Copy;

    /// The atomic at byte `at` of `region`.
    ///
    /// # Safety
    ///
    /// As for [`Region::u32_at`], with `SIZE` bytes and `SIZE`-byte
    /// alignment.
    unsafe fn at(region: &Region, at: usize) -> &Self;

    /// Loads its value.
    fn load_value(&self, order: Ordering) -> Self::Value;
}

/// The two widths as [`Atomic`]s: the same impl but for the type, its
/// size and the region's accessor of that width.
macro_rules! atomic_of_width {
    ($atomic:ty, $value:ty, $size:expr, $accessor:ident) => {
        impl Atomic for $atomic {
            const SIZE: u64 = $size;
            type Value = $value;

            #[inline(always)]
            unsafe fn at(region: &Region, at: usize) -> &Self {
                // SAFETY: the caller's guarantee is the accessor's.
                unsafe { region.$accessor(at) }
            }

            #[inline(always)]
            fn load_value(&self, order: Ordering) -> $value {
                self.load(order)
            }
        }
    };
}

atomic_of_width!(AtomicU32, u32, 4, u32_at);
atomic_of_width!(AtomicU64, u64, 8, u64_at);

/// What a checked view of a region's lines ([`Word`], [`Atomics`]) may
/// do: [`Writing`] (loads, stores and read-modify-writes, on a writable
/// region only) or [`Reading`] (loads only, on any region: what
/// inspection uses on a read-only mapping).
pub(crate) trait Mode {
    /// The access the region must allow.
    const ACCESS: Access;
}

/// Loads only (see [`Mode`]).
#[derive(Debug)]
pub(crate) enum Reading {}

/// Loads, stores and read-modify-writes (see [`Mode`]).
#[derive(Debug)]
pub(crate) enum Writing {}

impl Mode for Reading {
    const ACCESS: Access = Access::ReadOnly;
}

impl Mode for Writing {
    const ACCESS: Access = Access::ReadWrite;
}

impl Region {
    /// Checks that the region allows `M`'s access, and that `count`
    /// atomics of type `A` spaced `stride` bytes apart from `offset` lie
    /// inside it, each aligned to its size; returns `offset` as `usize`.
    fn check_lines<A: Atomic, M: Mode>(
        &self,
        offset: u64,
        count: u32,
        stride: u64,
    ) -> Result<usize, RegionError> {
        if M::ACCESS.writes() {
            self.check_writable()?;
        }
        if stride % A::SIZE != 0 {
            return Err(RegionError::Misaligned {
                offset: stride,
                align: A::SIZE,
            });
        }
        let span = u64::from(count.saturating_sub(1))
            .checked_mul(stride)
            .and_then(|last| last.checked_add(if count == 0 { 0 } else { A::SIZE }))
            .ok_or(RegionError::OutOfBounds {
                offset,
                len: u64::MAX,
                region_len: self.len as u64,
            })?;
        self.check(offset, span, A::SIZE)
    }
}

/// A word (32 bits unless said otherwise) of a region, bounds- and
/// alignment-checked once when it is made: reading or writing it
/// afterwards cannot fail. It keeps the region's memory alive. What an
/// end owns (its ring's indices and flags, its pool's counts) it holds as
/// words, so that its hot path carries no check that can fail for its own
/// lines. A `Word<_, Reading>` only loads, and may lie in a read-only
/// region.
#[derive(Debug)]
pub(crate) struct Word<A: Atomic = AtomicU32, M: Mode = Writing> {
    /// One atomic: its place checked as any array's is.
    line: Atomics<A, M>,
}

// By hand: a derive would ask the atomic and the mode to be `Clone`.
impl<A: Atomic, M: Mode> Clone for Word<A, M> {
    fn clone(&self) -> Self {
        Word {
            line: self.line.clone(),
        }
    }
}

impl<A: Atomic, M: Mode> Word<A, M> {
    /// The word at `offset` of `region`.
    pub(crate) fn new(region: &Region, offset: u64) -> Result<Self, RegionError> {
        Ok(Word {
            line: Atomics::new(region, offset, 1, A::SIZE)?,
        })
    }
}

impl<A: Atomic> Word<A, Writing> {
    /// The word, as an atomic.
    #[inline(always)]
    pub(crate) fn get(&self) -> &A {
        // SAFETY: `line` holds one atomic at `at`, checked to lie inside
        // the region, aligned to SIZE, and the region to be writable, when
        // it was made; the region's length and mapping never change, and
        // `line.region` keeps them alive as long as the returned reference.
        unsafe { A::at(&self.line.region, self.line.at) }
    }
}

/// `count` atomics of one width, `stride` bytes apart, in a region (a
/// pool's bitmap words, its slots' state words, one counter in each
/// guest's ring), bounds- and alignment-checked once when made. An index
/// is checked against the count, the only check left: an index from the
/// shared file that is past the end is `None`, never an access outside.
/// `Atomics<_, Reading>` only loads, and may lie in a read-only region.
pub(crate) struct Atomics<A: Atomic, M: Mode = Writing> {
    region: Region,
    at: usize,
    count: u32,
    stride: usize,
    atomic: std::marker::PhantomData<fn() -> (A, M)>,
}

impl<A: Atomic, M: Mode> Clone for Atomics<A, M> {
    fn clone(&self) -> Self {
        Atomics {
            region: self.region.clone(),
            at: self.at,
            count: self.count,
            stride: self.stride,
            atomic: std::marker::PhantomData,
        }
    }
}

impl<A: Atomic, M: Mode> fmt::Debug for Atomics<A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Atomics")
            .field("at", &self.at)
            .field("count", &self.count)
            .field("stride", &self.stride)
            .finish()
    }
}

impl<A: Atomic, M: Mode> Atomics<A, M> {
    /// The `count` atomics at `offset`, `offset + stride`, … of `region`.
    pub(crate) fn new(
        region: &Region,
        offset: u64,
        count: u32,
        stride: u64,
    ) -> Result<Self, RegionError> {
        let at = region.check_lines::<A, M>(offset, count, stride)?;
        Ok(Atomics {
            region: region.clone(),
            at,
            count,
            // At most the checked span, which fits in the region's usize.
            stride: stride as usize,
            atomic: std::marker::PhantomData,
        })
    }

    /// How many there are.
    #[inline(always)]
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// The byte where atomic `index` starts, if there is one.
    #[inline(always)]
    fn place(&self, index: u32) -> Option<usize> {
        (index < self.count).then(|| self.at + index as usize * self.stride)
    }

    /// Loads atomic `index`; `None` past the end.
    #[inline(always)]
    pub(crate) fn load(&self, index: u32, order: Ordering) -> Option<A::Value> {
        let at = self.place(index)?;
        // SAFETY: an index below the count lies inside the span checked
        // when this was made, aligned (`at` and `stride` are multiples of
        // SIZE); `self.region` keeps the memory alive. A load writes
        // nothing, so a read-only mapping serves it.
        Some(unsafe { A::at(&self.region, at) }.load_value(order))
    }
}

impl<A: Atomic> Atomics<A, Writing> {
    /// Atomic `index`, for reads and writes; `None` past the end.
    #[inline(always)]
    pub(crate) fn get(&self, index: u32) -> Option<&A> {
        let at = self.place(index)?;
        // SAFETY: as in `load`, and the region was checked to be writable
        // when this was made.
        Some(unsafe { A::at(&self.region, at) })
    }
}

/// `count` cells of `CELL` bytes each in a writable region (a ring's
/// descriptor entries), checked once when made, addressed by a free-running
/// index taken modulo the count (a power of two): no index can reach
/// outside them, so no access can fail.
#[derive(Clone)]
pub(crate) struct Cells<const CELL: usize> {
    region: Region,
    at: usize,
    mask: u32,
}

impl<const CELL: usize> fmt::Debug for Cells<CELL> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cells")
            .field("at", &self.at)
            .field("count", &(self.mask + 1))
            .finish()
    }
}

impl<const CELL: usize> Cells<CELL> {
    /// The `count` cells at `offset` of `region`; `count` is a power of
    /// two, `CELL` and `offset` multiples of 4.
    pub(crate) fn new(region: &Region, offset: u64, count: u32) -> Result<Self, RegionError> {
        assert!(count.is_power_of_two() && CELL % 4 == 0 && CELL >= 4);
        region.check_writable()?;
        let at = region.check(offset, u64::from(count) * CELL as u64, 4)?;
        Ok(Cells {
            region: region.clone(),
            at,
            mask: count - 1,
        })
    }

    #[inline(always)]
    fn start(&self, index: u32) -> usize {
        self.at + (index & self.mask) as usize * CELL
    }

    /// The first 32-bit word of cell `index` (modulo the count), as an
    /// atomic.
    #[inline(always)]
    pub(crate) fn first_word(&self, index: u32) -> &AtomicU32 {
        // SAFETY: the cell starts inside the range checked when this was
        // made (the index is masked to the count), 4-aligned (`at` and
        // `CELL` are multiples of 4), in a writable region that `self`
        // keeps alive.
        unsafe { self.region.u32_at(self.start(index)) }
    }

    /// Copies cell `index` whole into `out`.
    #[inline(always)]
    pub(crate) fn read(&self, index: u32, out: &mut [u8; CELL]) {
        // SAFETY: the cell lies inside the range checked when this was made.
        unsafe { self.region.copy_out(self.start(index), out) };
    }

    /// Writes `bytes` into cell `index` from byte `from` on (`from +
    /// bytes.len()` at most `CELL`).
    #[inline(always)]
    pub(crate) fn write_from(&self, index: u32, from: usize, bytes: &[u8]) {
        assert!(from + bytes.len() <= CELL);
        // SAFETY: `from..from+len` lies inside the cell (asserted), which
        // lies inside the writable range checked when this was made.
        unsafe { self.region.copy_in(self.start(index) + from, bytes) };
    }
}

/// The memory accesses themselves, on the mapping (normal builds).
///
/// Every function takes a byte offset `at` (and a length) that the caller
/// has checked against the region; they are `unsafe` because they rely on
/// that check.
#[cfg(not(loom))]
impl Region {
    /// The `AtomicU32` at byte `at`.
    ///
    /// # Safety
    ///
    /// `at..at+4` must be inside the region and `at` a multiple of 4. On a
    /// read-only region the caller may only load through the result.
    #[inline]
    unsafe fn u32_at(&self, at: usize) -> &AtomicU32 {
        // SAFETY: at..at+4 is inside the mapping (the caller's guarantee) and
        // 4-byte aligned (the base is page-aligned and `at` is a multiple of
        // 4). The mapping lives as long as `self` (the Arc), which bounds the
        // returned reference. AtomicU32 tolerates concurrent access from
        // other processes, and every bit pattern is a valid u32. Only loads
        // go through it on a read-only mapping (the caller's guarantee).
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(at).cast::<u32>()) }
    }

    /// The `AtomicU64` at byte `at`.
    ///
    /// # Safety
    ///
    /// As for [`Region::u32_at`], with 8 bytes and 8-byte alignment.
    #[inline]
    unsafe fn u64_at(&self, at: usize) -> &AtomicU64 {
        // SAFETY: as in u32_at, with 8 bytes and 8-byte alignment.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) }
    }

    /// Copies the bytes at `at..at+dst.len()` into `dst`.
    ///
    /// # Safety
    ///
    /// The range must be inside the region.
    #[inline]
    unsafe fn copy_out(&self, at: usize, dst: &mut [u8]) {
        // SAFETY: the source range is inside the mapping (the caller's
        // guarantee); `dst` is a distinct Rust allocation, so the ranges
        // cannot overlap. Bytes have no invalid values, so whatever another
        // process wrote is a valid u8; the protocol (ring publication, slot
        // ownership) orders these reads after the writer is done, and
        // callers validate what they read.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), dst.as_mut_ptr(), dst.len())
        };
    }

    /// Copies `src` to `at..at+src.len()`.
    ///
    /// # Safety
    ///
    /// The range must be inside the region, and the region writable.
    #[inline]
    unsafe fn copy_in(&self, at: usize, src: &[u8]) {
        // SAFETY: the destination range is inside a writable mapping (the
        // caller's guarantee); `src` is a distinct Rust allocation, so no
        // overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(at), src.len())
        };
    }

    /// Fills `at..at+len` with zero.
    ///
    /// # Safety
    ///
    /// The range must be inside the region, and the region writable.
    #[inline]
    unsafe fn fill_zero(&self, at: usize, len: usize) {
        // SAFETY: the range is inside a writable mapping (the caller's
        // guarantee).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(at), 0, len) };
    }

    /// A shared slice of `len` bytes at `offset` (bounds checked).
    ///
    /// # Safety
    ///
    /// While the slice lives, no one may write the range: the caller must
    /// own it by protocol (a received slot before it is freed).
    pub(crate) unsafe fn bytes(&self, offset: u64, len: u64) -> Result<&[u8], RegionError> {
        let at = self.check(offset, len, 1)?;
        // SAFETY: the range is inside the mapping (checked), which lives as
        // long as `self`; the caller guarantees nobody writes it meanwhile.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), len as usize) })
    }

    /// A mutable slice of `len` bytes at `offset` (bounds checked).
    ///
    /// # Safety
    ///
    /// While the slice lives, no one else may read or write the range: the
    /// caller must own it exclusively (a slot lent and not yet published)
    /// and must not make a second slice of it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, offset: u64, len: u64) -> Result<&mut [u8], RegionError> {
        self.check_writable()?;
        let at = self.check(offset, len, 1)?;
        // SAFETY: in bounds of a writable mapping (checked); exclusivity is
        // the caller's guarantee.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), len as usize) })
    }
}

/// The memory accesses under loom: every one goes to the shadow (see
/// `shadow`). They are `unsafe` only to have the same signatures as in
/// normal builds; the shadow checks its indices itself.
#[cfg(loom)]
impl Region {
    /// # Safety
    ///
    /// None needed under loom (see the normal build for the contract).
    unsafe fn u32_at(&self, at: usize) -> &AtomicU32 {
        self.shadow.u32_at(at)
    }

    /// # Safety
    ///
    /// None needed under loom (see the normal build for the contract).
    unsafe fn u64_at(&self, at: usize) -> &AtomicU64 {
        self.shadow.u64_at(at)
    }

    /// # Safety
    ///
    /// None needed under loom (see the normal build for the contract).
    unsafe fn copy_out(&self, at: usize, dst: &mut [u8]) {
        self.shadow.read(at, dst);
    }

    /// # Safety
    ///
    /// None needed under loom (see the normal build for the contract).
    unsafe fn copy_in(&self, at: usize, src: &[u8]) {
        self.shadow.write(at, src);
    }

    /// # Safety
    ///
    /// None needed under loom (see the normal build for the contract).
    unsafe fn fill_zero(&self, at: usize, len: usize) {
        self.shadow.zero(at, len);
    }

    /// Not modelled under loom: a slice would bypass the shadow. (The ring
    /// and the pool do not use it; zero-copy payloads do.)
    ///
    /// # Safety
    ///
    /// As in normal builds.
    pub(crate) unsafe fn bytes(&self, _offset: u64, _len: u64) -> Result<&[u8], RegionError> {
        unimplemented!("Region::bytes is not modelled under loom")
    }

    /// Not modelled under loom, like [`Region::bytes`].
    ///
    /// # Safety
    ///
    /// As in normal builds.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(
        &self,
        _offset: u64,
        _len: u64,
    ) -> Result<&mut [u8], RegionError> {
        unimplemented!("Region::bytes_mut is not modelled under loom")
    }
}

/// The loom model of a region's memory.
///
/// Loom can only check accesses to its own atomics and cells, so under
/// `cfg(loom)` a region copies its memory, when it is created, into:
///
/// - one loom `AtomicU32` per 4-byte word and one loom `AtomicU64` per
///   8-byte word. The 32-bit and 64-bit views are **separate** objects:
///   this models memory faithfully only because every location of a
///   segment is accessed with a single width (the pool bitmap words as
///   `u64`, every other field as `u32` or as bytes). The shadow enforces
///   that assumption: it records the width each word is used with and
///   panics on a second, different width.
/// - byte copies (`read`, `write`, `read_array`, `write_array`, `zero`),
///   which become per-word relaxed loads and stores of the 32-bit atomics;
///   a partial word is written with two atomic read-modify-writes
///   (`fetch_and` then `fetch_or`), which leave the word's other bytes
///   alone. Relaxed because a byte copy orders nothing; and each word also
///   has a loom `UnsafeCell` that byte copies *access* (read or write),
///   without dereferencing it, so that loom reports a byte copy that races
///   with another one (two non-atomic accesses, at least one a write, not
///   ordered by happens-before): e.g. a producer rewriting a descriptor the
///   consumer is still copying out.
///
/// All the loom objects are created up front, in the thread that creates
/// the region (loom requires an object's creation to happen-before every
/// access to it). That costs three objects per word, so loom regions should
/// be small (a ring, a pool): each `SeqCst` fence visits every atomic.
#[cfg(loom)]
mod shadow {
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

    use crate::sync::atomic::{AtomicU32, AtomicU64};

    /// Which width a word has been used with (see [`Shadow`]).
    const UNUSED: u8 = 0;
    const NARROW: u8 = 4;
    const WIDE: u8 = 8;

    pub(super) struct Shadow {
        /// One per 4-byte word (the last one may be partial).
        u32s: Box<[AtomicU32]>,
        /// One per whole 8-byte word.
        u64s: Box<[AtomicU64]>,
        /// Race detection for byte copies, one per 4-byte word.
        cells: Box<[loom::cell::UnsafeCell<()>]>,
        /// The width each 4-byte word was used with: not loom state, only
        /// a check of the single-width assumption.
        widths: Box<[AtomicU8]>,
    }

    // SAFETY: the only field that is not Sync is `cells`, whose loom
    // `UnsafeCell`s hold `()` and are never dereferenced: `with` and
    // `with_mut` are only called to record an access, which updates loom's
    // own bookkeeping (and loom runs one model thread at a time).
    unsafe impl Sync for Shadow {}

    impl Shadow {
        /// A shadow of `len` bytes at `ptr`, holding their current values.
        ///
        /// # Safety
        ///
        /// `ptr..ptr+len` must be valid for reads.
        pub(super) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Shadow {
            let mut bytes = vec![0u8; len.div_ceil(8) * 8];
            // SAFETY: the source is valid for `len` reads (the caller's
            // guarantee); `bytes` is a distinct allocation of at least `len`.
            unsafe { std::ptr::copy_nonoverlapping(ptr.as_ptr(), bytes.as_mut_ptr(), len) };
            let word = |i: usize| u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
            let dword = |i: usize| u64::from_ne_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap());
            let words = len.div_ceil(4);
            Shadow {
                u32s: (0..words).map(|i| AtomicU32::new(word(i))).collect(),
                u64s: (0..len / 8).map(|i| AtomicU64::new(dword(i))).collect(),
                cells: (0..words)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect(),
                widths: (0..words).map(|_| AtomicU8::new(UNUSED)).collect(),
            }
        }

        /// Records that word `w` is used with `width`; panics if it was
        /// used with the other one.
        fn claim(&self, w: usize, width: u8) {
            let before = self.widths[w].swap(width, Relaxed);
            assert!(
                before == UNUSED || before == width,
                "byte {} of a region is accessed both as {before}-byte and as {width}-byte \
                 memory, which the loom shadow does not model",
                4 * w
            );
        }

        pub(super) fn u32_at(&self, at: usize) -> &AtomicU32 {
            assert_eq!(at % 4, 0);
            self.claim(at / 4, NARROW);
            &self.u32s[at / 4]
        }

        pub(super) fn u64_at(&self, at: usize) -> &AtomicU64 {
            assert_eq!(at % 8, 0);
            self.claim(at / 4, WIDE);
            self.claim(at / 4 + 1, WIDE);
            &self.u64s[at / 8]
        }

        /// The words covering `at..at+len`: for each, its index and the
        /// range of its bytes (0..4) inside the copy.
        fn words(at: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
            let end = at + len;
            (at / 4..end.div_ceil(4)).map(move |w| {
                let lo = at.max(4 * w) - 4 * w;
                let hi = end.min(4 * w + 4) - 4 * w;
                (w, lo, hi)
            })
        }

        pub(super) fn read(&self, at: usize, dst: &mut [u8]) {
            let mut pos = 0;
            for (w, lo, hi) in Self::words(at, dst.len()) {
                self.claim(w, NARROW);
                self.cells[w].with(|_| ());
                let bytes = self.u32s[w].load(Relaxed).to_ne_bytes();
                dst[pos..pos + hi - lo].copy_from_slice(&bytes[lo..hi]);
                pos += hi - lo;
            }
        }

        pub(super) fn write(&self, at: usize, src: &[u8]) {
            let mut pos = 0;
            for (w, lo, hi) in Self::words(at, src.len()) {
                self.write_word(w, lo, hi, &src[pos..pos + hi - lo]);
                pos += hi - lo;
            }
        }

        pub(super) fn zero(&self, at: usize, len: usize) {
            for (w, lo, hi) in Self::words(at, len) {
                self.write_word(w, lo, hi, &[0; 4][..hi - lo]);
            }
        }

        /// Writes `src` to bytes `lo..hi` of word `w`.
        fn write_word(&self, w: usize, lo: usize, hi: usize, src: &[u8]) {
            self.claim(w, NARROW);
            self.cells[w].with_mut(|_| ());
            let mut bytes = [0u8; 4];
            let mut mask = [0u8; 4];
            bytes[lo..hi].copy_from_slice(src);
            mask[lo..hi].fill(0xFF);
            let (value, mask) = (u32::from_ne_bytes(bytes), u32::from_ne_bytes(mask));
            let word = &self.u32s[w];
            if mask == u32::MAX {
                word.store(value, Relaxed);
            } else {
                word.fetch_and(!mask, Relaxed);
                word.fetch_or(value, Relaxed);
            }
        }
    }
}

/// Zeroed, page-aligned heap memory: a segment without a file, for tests
/// and for hosts and guests that live in one process.
///
/// ```
/// use shmhub::HeapRegion;
///
/// let heap = HeapRegion::new_zeroed(8192).unwrap();
/// assert_eq!(heap.region().len(), 8192);
/// ```
#[derive(Clone)]
pub struct HeapRegion {
    region: Region,
}

impl fmt::Debug for HeapRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapRegion")
            .field("len", &self.region.len())
            .finish()
    }
}

impl HeapRegion {
    /// Allocates `len` zeroed bytes aligned to a page.
    pub fn new_zeroed(len: usize) -> Result<Self, RegionError> {
        if len == 0 {
            return Err(RegionError::Empty);
        }
        let layout =
            Layout::from_size_align(len, HEAP_ALIGN).map_err(|_| RegionError::Alloc(len))?;
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(RegionError::Alloc(len))?;
        let backing: Arc<dyn Backing> = Arc::new(HeapAlloc { ptr, layout });
        // SAFETY: the allocation is len bytes, readable and writable, and is
        // freed only when the last Arc (held by every Region clone) drops.
        let region = unsafe { Region::from_backing(backing, ptr, len, Access::ReadWrite) };
        Ok(HeapRegion { region })
    }

    /// A view of the whole allocation; it keeps the memory alive.
    pub fn region(&self) -> Region {
        self.region.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_region_is_zeroed_and_page_aligned() {
        let heap = HeapRegion::new_zeroed(10_000).unwrap();
        let region = heap.region();
        let mut buf = vec![0xFFu8; 10_000];
        region.read(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(region.ptr.as_ptr() as usize % HEAP_ALIGN, 0);
    }

    #[test]
    fn out_of_bounds_and_overflow_are_refused() {
        let region = HeapRegion::new_zeroed(128).unwrap().region();
        assert!(matches!(
            region.load_u32(128, Ordering::Relaxed),
            Err(RegionError::OutOfBounds { .. })
        ));
        assert!(matches!(
            region.load_u64(124, Ordering::Relaxed),
            Err(RegionError::OutOfBounds { .. })
        ));
        assert!(matches!(
            region.read(u64::MAX, &mut [0u8; 2]),
            Err(RegionError::OutOfBounds { .. })
        ));
        assert!(matches!(
            region.write(127, &[1, 2]),
            Err(RegionError::OutOfBounds { .. })
        ));
        assert!(region.write(126, &[1, 2]).is_ok());
    }

    #[test]
    fn misaligned_atomics_are_refused() {
        let region = HeapRegion::new_zeroed(128).unwrap().region();
        assert_eq!(
            region.atomic_u32(2).unwrap_err(),
            RegionError::Misaligned {
                offset: 2,
                align: 4
            }
        );
        assert_eq!(
            region.atomic_u64(4).unwrap_err(),
            RegionError::Misaligned {
                offset: 4,
                align: 8
            }
        );
    }

    #[test]
    fn region_outlives_its_heap_handle() {
        let region = HeapRegion::new_zeroed(64).unwrap().region();
        region.write(0, b"still here").unwrap();
        let mut buf = [0u8; 10];
        region.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"still here");
    }

    #[test]
    fn empty_region_is_refused() {
        assert_eq!(HeapRegion::new_zeroed(0).unwrap_err(), RegionError::Empty);
    }

    #[test]
    fn bytes_round_trip_and_zero() {
        let region = HeapRegion::new_zeroed(256).unwrap().region();
        region.write(10, b"abcdef").unwrap();
        region.zero(12, 2).unwrap();
        let mut buf = [0u8; 6];
        region.read(10, &mut buf).unwrap();
        assert_eq!(&buf, b"ab\0\0ef");
    }
}
