//! The byte format of a segment, as `docs/spec.md` gives it: the magic
//! and version, the sizes and limits of every part, and the offset of
//! every field, for tools and other implementations that read or write
//! segments without this library's types. All fields are little-endian.
//!
//! ```
//! use shmhub::format;
//!
//! let bytes = std::fs::read("/nonexistent").unwrap_or_else(|_| vec![0; 256]);
//! let magic = u64::from_le_bytes(bytes[format::header::MAGIC as usize..][..8].try_into().unwrap());
//! assert!(magic == format::MAGIC || magic == 0);
//! ```

pub use crate::desc::{DESC_SIZE, FLAG_PHASE, FLAG_SLOT, INLINE_CAPACITY, KNOWN_FLAGS};
pub use crate::header::{MAGIC, VERSION};
pub use crate::layout::{
    CACHE_LINE, HEADER_SIZE, MAX_GUESTS, MAX_RING_CAPACITY, MAX_SLOT_SIZE, MAX_SLOTS_PER_POOL,
    MAX_TOTAL_SIZE, MIN_SLOT_SIZE, PAGE_SIZE, PEER_ENTRY_SIZE, POOL_HEADER_SIZE, RING_HEADER_SIZE,
    SLOT_META_SIZE,
};

/// Byte offsets of the header's fields, from the start of the segment.
pub mod header {
    pub use crate::header::field::*;
}

/// Byte offsets inside a peer-table entry, and its flags.
pub mod peer {
    pub use crate::peer::field::*;
    pub use crate::peer::{FLAG_HELD, FLAG_LOCKED};
}

/// Byte offsets inside a ring's control block. A host-to-guest ring's
/// block also holds the counts of the host's slots its guest holds
/// (`shm.pool.share`).
pub mod ring {
    pub use crate::host_slots::field::{
        HANDED as HOST_SLOTS_HANDED, RETURNED as HOST_SLOTS_RETURNED,
    };
    pub use crate::ring::field::*;
}

/// Byte offsets in a pool's control block and slot metadata.
pub mod pool {
    pub use crate::pool::field::*;
}
