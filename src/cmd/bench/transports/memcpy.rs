//! memcpy within one process: bytes per second with no second CPU involved,
//! shown for comparison (the streams are judged against the ring floor,
//! which moves the bytes between the two CPUs as they must).

use std::time::Instant;

use crate::cmd::bench::measurement::{Kind, Measurement, Transport};
use crate::cmd::bench::plan::Plan;

/// Times copies of `size` bytes between two buffers.
pub fn measure(size: usize, plan: &Plan) -> Measurement {
    let src = vec![0x5Au8; size];
    let mut dst = vec![0u8; size];
    let iterations = plan.copies(size);
    let mut samples = Vec::with_capacity(iterations as usize);
    for i in 0..iterations {
        let start = Instant::now();
        dst.copy_from_slice(&src);
        // Keeps the copy from being optimized away, since nothing reads `dst`.
        std::hint::black_box(&mut dst);
        samples.push(start.elapsed().as_nanos() as u64);
        dst[0] = i as u8;
    }
    Measurement::from_samples(Kind::Copy, Transport::Memcpy, size, samples)
}
