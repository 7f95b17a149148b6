//! One cache line bounced between two processes per round trip, with no
//! ring, slot or wake-up around it: the floor under any shared-memory round
//! trip, which the segment's spinning round trip is judged against. Round
//! trips take turns on [`CACHELINE_LINES`] lines, so that the floor pays
//! what a line costs on average wherever it lies, as a ring's entries do.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::bail;

use super::spawn_floor_peer;
use crate::cmd::bench::floor::{SharedFile, cacheline_words, spin_until};
use crate::cmd::bench::measurement::{
    CACHELINE_SIZE, Kind, Measurement, Transport, time_round_trips,
};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{
    CACHELINE_FILE_LEN, CACHELINE_LINES, CACHELINE_STOP, PeerTransport,
};

/// Times round trips of one word in a file beside the plan's segment,
/// round trip `n` on line `n % CACHELINE_LINES`: this side makes the word
/// odd (`2n + 1`), the peer makes it even. The file is removed whatever
/// happens.
pub fn measure(plan: &Plan) -> anyhow::Result<Measurement> {
    let path = PathBuf::from(format!("{}.line", plan.segment.display()));
    let file = SharedFile::create(&path, CACHELINE_FILE_LEN)?;
    let result = (|| {
        let words = cacheline_words(&file);
        let peer = spawn_floor_peer(PeerTransport::Cacheline, plan, &path)?;
        let mut next = 0;
        let samples = time_round_trips(plan.round_trips(32), |i, _| {
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
        Ok(Measurement::from_samples(
            Kind::RoundTrip,
            Transport::Cacheline,
            CACHELINE_SIZE as usize,
            samples,
        ))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}
