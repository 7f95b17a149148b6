//! C bindings for [`shmhub`]: `libshmhub_c.so`, `libshmhub_c.a` and the
//! header `include/shmhub.h` (generated from this crate by cbindgen; a test
//! checks that the committed header matches).
//!
//! A C program holds opaque handles: a `shmhub_host` (which creates a
//! segment file, and removes it when destroyed) or a `shmhub_guest`
//! (attached to one). Every call reports failure the same way: a pointer
//! call returns NULL, a number call a negative `SHMHUB_ERR_*` code; the
//! code of the last failure on the calling thread is
//! `shmhub_last_error_code()` and its one-line message
//! `shmhub_last_error()`, worded as the `shmhub` command words it
//! (`PATH: cause`).
//!
//! # Rules the C side keeps
//!
//! - A handle is used by one thread at a time. A call that overlaps
//!   another call on the same handle fails with `SHMHUB_ERR_BUSY`
//!   instead of racing; destroying or detaching a handle while another
//!   thread is inside a call on it is the caller's bug (the handle is then
//!   leaked, not freed under that call). Different handles may be used on
//!   different threads at once, and a handle may move between threads.
//! - Pointers given to a call are only read during the call. A NULL
//!   pointer where one is needed is `SHMHUB_ERR_INVALID`, never a crash;
//!   a pointer that is not NULL must point to as many bytes as the call is
//!   told.
//! - No panic crosses into C: one is caught and reported as
//!   `SHMHUB_ERR_INTERNAL`, and the handle it struck is unusable from
//!   then on (destroying it is still fine).
//!
//! # Safety
//!
//! `unsafe` here turns what C hands over into Rust values: C strings,
//! byte ranges, out-pointers, and handles made by `Box::into_raw`. Each
//! block is small and says why it holds (a lint refuses one without).

#![deny(missing_docs)]
// The C names of the handle and configuration types.
#![allow(non_camel_case_types)]

mod error;
mod guest;
mod handle;
mod host;
mod text;

use std::ffi::{c_char, c_int};

pub use error::{shmhub_last_error, shmhub_last_error_code, shmhub_strerror};
pub use guest::{
    shmhub_guest, shmhub_guest_attach, shmhub_guest_attach_id, shmhub_guest_config,
    shmhub_guest_detach, shmhub_guest_peer_id, shmhub_guest_recv, shmhub_guest_send,
};
pub use host::{
    shmhub_host, shmhub_host_config, shmhub_host_create, shmhub_host_destroy,
    shmhub_host_reclaim_dead, shmhub_host_recv, shmhub_host_recv_from, shmhub_host_release_peer,
    shmhub_host_reserve_peer, shmhub_host_send,
};

/// What a call that returns a number says about itself: `SHMHUB_OK` (or,
/// for calls that return a length, count or id, that number), or a
/// negative code. The calls return these as `int` (or `int64_t`); the
/// calls that return a pointer return NULL and leave the code in
/// `shmhub_last_error_code()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum shmhub_code {
    /// Success.
    SHMHUB_OK = 0,
    /// The time ran out with nothing to receive (with a timeout of 0: nothing
    /// was queued). Retry later.
    SHMHUB_ERR_TIMED_OUT = -1,
    /// A send found no room before the time ran out: the ring to the receiver
    /// is full, or the sender's pool has no free slot for a payload larger
    /// than 32 bytes, or the receiving guest holds its share of the host's
    /// slots. Nothing was sent; retry once the receiver has caught up.
    SHMHUB_ERR_FULL = -2,
    /// The other side has left or died: the host said goodbye (destroyed its
    /// handle) or its process died, or the guest detached, died or was
    /// reclaimed. What it sent before leaving is still received first.
    SHMHUB_ERR_PEER_GONE = -3,
    /// The payload to send is larger than the segment's max payload; nothing
    /// was sent.
    SHMHUB_ERR_TOO_LARGE = -4,
    /// The next message is larger than the receive buffer. It stays queued,
    /// first in line: ask its length with a NULL buffer and a `cap` of 0, then
    /// receive it into a buffer large enough.
    SHMHUB_ERR_BUFFER_TOO_SMALL = -5,
    /// An argument cannot work: a NULL pointer where one is needed, a timeout
    /// below -1, a peer id that is not a guest of the segment, a configuration
    /// that cannot be laid out.
    SHMHUB_ERR_INVALID = -6,
    /// Someone else has what the call needs: every guest entry is taken (hub
    /// full), another process holds the role or the entry, the entry is not in
    /// the state the call needs (sending to a guest that never attached,
    /// attaching to an id that was not reserved), the segment is still being
    /// created, or another thread is inside a call on the same handle.
    SHMHUB_ERR_BUSY = -7,
    /// The file is not a segment this build can use (not a shmhub segment,
    /// another format version, too small), or what it holds breaks the
    /// protocol. Nothing was read through the bad value.
    SHMHUB_ERR_CORRUPT = -8,
    /// The file itself: a system call on it failed (it does not exist, or
    /// already exists for a create, or permission is denied), it is not a
    /// regular file, it is a symbolic link or another user's, the file system
    /// is full, or it was truncated, replaced or removed under the mapping.
    SHMHUB_ERR_IO = -9,
    /// A bug in the library or these bindings: a panic was caught (the handle
    /// it struck is unusable from then on), or the library reported an error
    /// this build does not know.
    SHMHUB_ERR_INTERNAL = -10,
    /// The host cut this guest off for breaking the protocol in its own part
    /// of the segment, or evicted it: every send to it and receive from it
    /// fails with this code, and so do the guest's own. The segment and the
    /// other guests go on; a host's receive from any guest reports a guest
    /// it cuts off once and serves the others from its next call.
    SHMHUB_ERR_CUT_OFF = -11,
}

pub use shmhub_code::*;

impl shmhub_code {
    /// Every code, `SHMHUB_OK` first.
    pub const ALL: [shmhub_code; 12] = [
        SHMHUB_OK,
        SHMHUB_ERR_TIMED_OUT,
        SHMHUB_ERR_FULL,
        SHMHUB_ERR_PEER_GONE,
        SHMHUB_ERR_TOO_LARGE,
        SHMHUB_ERR_BUFFER_TOO_SMALL,
        SHMHUB_ERR_INVALID,
        SHMHUB_ERR_BUSY,
        SHMHUB_ERR_CORRUPT,
        SHMHUB_ERR_IO,
        SHMHUB_ERR_INTERNAL,
        SHMHUB_ERR_CUT_OFF,
    ];

    /// The code whose value is `value`, if one is.
    pub fn from_c(value: c_int) -> Option<Self> {
        Self::ALL.into_iter().find(|&code| code as c_int == value)
    }
}

/// The sizes of a segment, for `shmhub_host_create()`. A field left 0
/// takes its default (see `shmhub_config_default()`); `max_payload` left 0
/// is `slot_size`. So `shmhub_config cfg = { .max_guests = 2 };` is the
/// default segment for two guests.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct shmhub_config {
    /// How many guests can attach at once (1 to 255). Default 8.
    pub max_guests: u32,
    /// Descriptors per ring; a power of two (2 to 65536). Default 256.
    pub ring_capacity: u32,
    /// Bytes per slot; a multiple of 64. Default 65536.
    pub slot_size: u32,
    /// Slots in each pool (the host's and each guest's). Default 64.
    pub slots_per_pool: u32,
    /// Largest payload a message may carry; at most `slot_size`. Payloads
    /// of up to 32 bytes travel inside the descriptor, larger ones in a
    /// slot. Default (and when 0): `slot_size`.
    pub max_payload: u32,
    /// How often guests refresh their heartbeat, in milliseconds; 0 turns
    /// heartbeats off (liveness is judged by process only). Default 0.
    pub heartbeat_interval_ms: u32,
}

impl From<shmhub::SegmentConfig> for shmhub_config {
    fn from(c: shmhub::SegmentConfig) -> Self {
        shmhub_config {
            max_guests: c.max_guests,
            ring_capacity: c.ring_capacity,
            slot_size: c.slot_size,
            slots_per_pool: c.slots_per_pool,
            max_payload: c.max_payload,
            heartbeat_interval_ms: c.heartbeat_interval_ms,
        }
    }
}

impl shmhub_config {
    /// The library's configuration: fields left 0 take their defaults.
    fn to_segment_config(self) -> shmhub::SegmentConfig {
        let d = shmhub::SegmentConfig::default();
        let or = |value: u32, default: u32| if value == 0 { default } else { value };
        let slot_size = or(self.slot_size, d.slot_size);
        shmhub::SegmentConfig {
            max_guests: or(self.max_guests, d.max_guests),
            ring_capacity: or(self.ring_capacity, d.ring_capacity),
            slot_size,
            slots_per_pool: or(self.slots_per_pool, d.slots_per_pool),
            max_payload: or(self.max_payload, slot_size),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        }
    }
}

/// The default configuration: 8 guests, rings of 256 descriptors, 64 slots
/// of 64 KiB per pool, a max payload of 64 KiB, heartbeats off.
#[unsafe(no_mangle)]
pub extern "C" fn shmhub_config_default() -> shmhub_config {
    shmhub::SegmentConfig::default().into()
}

/// The version of these bindings (and of the library they were built
/// with), such as `"0.1.0"`: a static string.
#[unsafe(no_mangle)]
pub extern "C" fn shmhub_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("the version has no NUL inside"),
    };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_take_the_defaults_and_max_payload_follows_slot_size() {
        let zero = shmhub_config {
            max_guests: 0,
            ring_capacity: 0,
            slot_size: 0,
            slots_per_pool: 0,
            max_payload: 0,
            heartbeat_interval_ms: 0,
        };
        assert_eq!(
            zero.to_segment_config(),
            shmhub::SegmentConfig::default(),
            "all zero is the default"
        );
        let small = shmhub_config {
            max_guests: 2,
            slot_size: 4096,
            ..zero
        }
        .to_segment_config();
        assert_eq!((small.max_guests, small.max_payload), (2, 4096));
        assert_eq!(shmhub_config::from(small).to_segment_config(), small);
    }
}
