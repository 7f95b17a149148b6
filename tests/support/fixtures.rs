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
