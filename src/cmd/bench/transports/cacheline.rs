//! One cache line bounced between two processes per round trip, with no
//! ring, slot or wake-up around it: the floor under any shared-memory round
//! trip, which the segment's spinning round trip is judged against. Round
//! trips take turns on [`CACHELINE_LINES`] lines, so that the floor pays
//! what a line costs on average wherever it lies, as a ring's entries do.
//!
//! It is timed in two halves, one before the segment's round trips and
//! one after them, so that the run can tell when the floor moved under
//! them ([`FloorHalves`]).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::bail;

use super::spawn_floor_peer;
use crate::cmd::bench::floor::{SharedFile, cacheline_words, spin_until};
use crate::cmd::bench::measurement::{
    CACHELINE_SIZE, FloorHalves, Kind, Measurement, Transport, median, time_round_trips,
};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{
    CACHELINE_FILE_LEN, CACHELINE_LINES, CACHELINE_STOP, PeerTransport,
};

/// Times half the plan's round trips of one word in a file beside the
/// plan's segment, round trip `n` on line `n % CACHELINE_LINES`: this side
/// makes the word odd (`2n + 1`), the peer makes it even. The file is
/// removed whatever happens. Returns the samples, in nanoseconds.
pub fn time_half(plan: &Plan) -> anyhow::Result<Vec<u64>> {
    let path = PathBuf::from(format!("{}.line", plan.segment.display()));
    let file = SharedFile::create(&path, CACHELINE_FILE_LEN)?;
    let result = (|| {
        let words = cacheline_words(&file);
        let peer = spawn_floor_peer(PeerTransport::Cacheline, plan, &path)?;
        let mut next = 0;
        let samples = time_round_trips(plan.round_trips(32).div_ceil(2), |i, _| {
            let (word, value) = (words[i as usize % CACHELINE_LINES], 2 * i + 1);
            word.store(value, Ordering::Release);
            if spin_until(word, |v| v == value + 1).is_none() {
                bail!("the cache-line peer stopped answering");
            }
            next = i + 1;
            Ok(())
        })?;
        // The peer waits on the line of the round trip after the last.
        words[next as usize % CACHELINE_LINES].store(CACHELINE_STOP, Ordering::Release);
        peer.finish("cache-line")?;
        Ok(samples)
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}

/// The floor's line, from both halves' samples together, and each half's
/// p50.
pub fn line(mut before: Vec<u64>, mut after: Vec<u64>) -> (Measurement, FloorHalves) {
    let halves = FloorHalves {
        before_ns: median(&mut before),
        after_ns: median(&mut after),
        samples: before.len().min(after.len()),
    };
    before.append(&mut after);
    let line = Measurement::from_samples(
        Kind::RoundTrip,
        Transport::Cacheline,
        CACHELINE_SIZE as usize,
        before,
    );
    (line, halves)
}
