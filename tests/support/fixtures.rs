//! Small builders that several library test crates share.

use std::time::Duration;

use shmhub::admin::RemoveOptions;
use shmhub::{Frame, MsgDesc, msg_type};

/// A fresh temporary directory for one test's segments.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A `DATA` message with id `id` carrying `payload`.
pub fn data(id: u64, payload: &[u8]) -> Frame {
    Frame::new(MsgDesc::new(msg_type::DATA, id), payload.to_vec())
}

/// The wall clock in nanoseconds since the Unix epoch, the unit of the
/// segment's time fields.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Options of `remove_segment`.
pub fn remove_options(force: bool, timeout_ms: u64) -> RemoveOptions {
    RemoveOptions {
        allow_foreign_owner: false,
        force,
        timeout: Duration::from_millis(timeout_ms),
    }
}

/// Guest `n`'s id (a test's ids are never 0).
pub fn id(n: u8) -> shmhub::PeerId {
    shmhub::PeerId::new(n).expect("a guest id is not 0")
}

/// Guest `n` as a party: its pool, or a slot it holds.
pub fn guest_party(n: u8) -> shmhub::Party {
    shmhub::Party::Guest(id(n))
}

/// The owner of pool `n` as the format numbers pools (the layout's pool
/// order): the host's is 0, guest `p`'s is `p`. For tests that walk the
/// file's bytes pool by pool.
pub fn pool_owner(n: u8) -> shmhub::Party {
    shmhub::PeerId::new(n).map_or(shmhub::Party::Host, shmhub::Party::Guest)
}
