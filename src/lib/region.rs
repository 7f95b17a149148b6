//! Bounds-checked views of mapped bytes.
//!
//! Every access the library makes to shared memory goes through a [`Region`]:
//! an offset and a length are checked against the mapping (and the alignment
//! of atomics against their size) before any pointer is formed. The memory
//! behind a region is kept alive by reference counting, so a `Region` can
//! never outlive what it points into.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
/// region.atomic_u32(64).unwrap().store(7, Ordering::Release);
/// assert_eq!(region.load_u32(64, Ordering::Acquire).unwrap(), 7);
/// assert!(region.load_u32(4096, Ordering::Acquire).is_err());
/// ```
#[derive(Clone)]
pub struct Region {
    _backing: Arc<dyn Backing>,
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
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
            .field("writable", &self.writable)
            .finish()
    }
}

impl Region {
    /// Wraps memory owned by `backing`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` must be valid for reads (and for writes when
    /// `writable`) for as long as `backing` lives, and must stay mapped while
    /// any clone of the returned region exists.
    pub(crate) unsafe fn from_backing(
        backing: Arc<dyn Backing>,
        ptr: NonNull<u8>,
        len: usize,
        writable: bool,
    ) -> Self {
        Region {
            _backing: backing,
            ptr,
            len,
            writable,
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
        self.writable
    }

    /// Checks that `offset..offset+len` lies inside the region and that
    /// `offset` is a multiple of `align`; returns the offset as `usize`.
    #[inline]
    fn check(&self, offset: u64, len: u64, align: u64) -> Result<usize, RegionError> {
        let out_of_bounds = RegionError::OutOfBounds {
            offset,
            len,
            region_len: self.len as u64,
        };
        let end = offset.checked_add(len).ok_or(out_of_bounds.clone())?;
        if end > self.len as u64 {
            return Err(out_of_bounds);
        }
        if offset % align != 0 {
            return Err(RegionError::Misaligned { offset, align });
        }
        // end <= self.len, which is a usize, so offset fits in usize.
        Ok(offset as usize)
    }

    #[inline]
    fn check_writable(&self) -> Result<(), RegionError> {
        if self.writable {
            Ok(())
        } else {
            Err(RegionError::ReadOnly)
        }
    }

    /// The `AtomicU32` at `offset`, for reads and writes.
    ///
    /// Fails on a read-only region, out of bounds or misaligned.
    #[inline]
    pub fn atomic_u32(&self, offset: u64) -> Result<&AtomicU32, RegionError> {
        self.check_writable()?;
        let at = self.check(offset, 4, 4)?;
        // SAFETY: at..at+4 is inside the mapping (checked above) and 4-byte
        // aligned (the base is page-aligned and `at` is a multiple of 4). The
        // mapping lives as long as `self` (the Arc), which bounds the returned
        // reference. AtomicU32 tolerates concurrent access from other
        // processes, and every bit pattern is a valid u32.
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(at).cast::<u32>()) })
    }

    /// The `AtomicU64` at `offset`, for reads and writes.
    #[inline]
    pub fn atomic_u64(&self, offset: u64) -> Result<&AtomicU64, RegionError> {
        self.check_writable()?;
        let at = self.check(offset, 8, 8)?;
        // SAFETY: as in atomic_u32, with 8 bytes and 8-byte alignment.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) })
    }

    /// Atomically loads the `u32` at `offset`; works on read-only regions.
    #[inline]
    pub fn load_u32(&self, offset: u64, order: Ordering) -> Result<u32, RegionError> {
        let at = self.check(offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked). An atomic load only reads,
        // so it is valid on a read-only mapping too.
        Ok(unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(at).cast::<u32>()) }.load(order))
    }

    /// Atomically loads the `u64` at `offset`; works on read-only regions.
    #[inline]
    pub fn load_u64(&self, offset: u64, order: Ordering) -> Result<u64, RegionError> {
        let at = self.check(offset, 8, 8)?;
        // SAFETY: as in load_u32, with 8 bytes and 8-byte alignment.
        Ok(unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(at).cast::<u64>()) }.load(order))
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
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), RegionError> {
        let at = self.check(offset, dst.len() as u64, 1)?;
        // SAFETY: the source range is inside the mapping (checked); `dst` is a
        // distinct Rust allocation, so the ranges cannot overlap. Bytes have
        // no invalid values, so whatever another process wrote is a valid u8;
        // the protocol (ring publication, slot ownership) orders these reads
        // after the writer is done, and callers validate what they read.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), dst.as_mut_ptr(), dst.len())
        };
        Ok(())
    }

    /// Copies `src` into the region starting at `offset`.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, src.len() as u64, 1)?;
        // SAFETY: the destination range is inside a writable mapping
        // (checked); `src` is a distinct Rust allocation, so no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(at), src.len())
        };
        Ok(())
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

    /// Copies `N` bytes at `offset` into an array; a fixed size lets the
    /// copy compile to a few vector moves (descriptors on the hot path).
    #[inline]
    pub fn read_array<const N: usize>(&self, offset: u64) -> Result<[u8; N], RegionError> {
        let at = self.check(offset, N as u64, 1)?;
        let mut out = [0u8; N];
        // SAFETY: as in `read`: in bounds (checked), plain bytes, distinct
        // destination.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(at), out.as_mut_ptr(), N) };
        Ok(out)
    }

    /// Copies an `N`-byte array into the region at `offset` (fixed size,
    /// like [`Region::read_array`]).
    #[inline]
    pub fn write_array<const N: usize>(&self, offset: u64, src: &[u8; N]) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, N as u64, 1)?;
        // SAFETY: as in `write`: in bounds of a writable mapping (checked),
        // distinct source.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(at), N) };
        Ok(())
    }

    /// Fills `len` bytes at `offset` with zero.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), RegionError> {
        self.check_writable()?;
        let at = self.check(offset, len, 1)?;
        // SAFETY: the range is inside a writable mapping (checked).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(at), 0, len as usize) };
        Ok(())
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
        let region = unsafe { Region::from_backing(backing, ptr, len, true) };
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
