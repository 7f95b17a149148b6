//! Arbitrary bytes as a segment: inspect it, attach to it as a guest, open
//! it as a host and receive (and send) everything it lets through. Any
//! outcome is fine but a panic, a crash or a hang.
//!
//! The bytes are placed in a heap region twice: once at their own length,
//! and once at the length the header's `total_size` claims (zero-padded or
//! cut, at most 1 MiB), so that inputs whose length the fuzzer changed
//! still get past the first header check.

#![no_main]

mod common;

use common::{exercise, region_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(region) = region_of(data, data.len()) {
        exercise(region);
    }
    if data.len() >= 24 {
        let claimed = u64::from_le_bytes(data[16..24].try_into().unwrap());
        let len = claimed.clamp(256, 1 << 20) as usize;
        if len != data.len()
            && let Some(region) = region_of(data, len)
        {
            exercise(region);
        }
    }
});
