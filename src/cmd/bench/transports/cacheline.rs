//! One cache line bounced between two processes per round trip, with no
//! ring, slot or wake-up around it: the floor under any shared-memory round
//! trip, which the segment's spinning round trip is judged against. Round
//! trips take turns on [`CACHELINE_LINES`] lines, so that the floor pays
//! what a line costs on average wherever it lies, as a ring's entries do.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::bail;
use shmhub::MmapRegion;

use super::spawn_floor_peer;
use crate::cmd::bench::floor::spin_until;
use crate::cmd::bench::measurement::{CACHELINE_SIZE, Kind, Measurement, Transport};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{
    CACHELINE_LINES, CACHELINE_STOP, PeerTransport, cacheline_offset,
};
use crate::cmd::common::seg_err;

/// Times round trips of one word in a file beside the plan's segment,
/// round trip `n` on line `n % CACHELINE_LINES`: this side makes the word
/// odd, the peer makes it even. The file is removed whatever happens.
pub fn measure(plan: &Plan) -> anyhow::Result<Measurement> {
    let file = PathBuf::from(format!("{}.line", plan.segment.display()));
    let len = (CACHELINE_LINES * 64) as usize;
    let map = MmapRegion::create(&file, len).map_err(|e| seg_err(&file, e))?;
    let result = (|| {
        let region = map.region();
        let words = (0..CACHELINE_LINES)
            .map(|line| region.atomic_u64(cacheline_offset(line)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| seg_err(&file, e.into()))?;
        let peer = spawn_floor_peer(PeerTransport::Cacheline, plan, &file)?;
        let rounds = plan.round_trips(32);
        let mut samples = Vec::with_capacity(rounds as usize);
        let mut value = 0u64;
        // The first tenth goes untimed: it pays for the cold start (caches,
        // first page touches, the peer getting going).
        for i in 0..rounds + rounds / 10 {
            let word = words[(i % CACHELINE_LINES) as usize];
            let start = Instant::now();
            word.store(value + 1, Ordering::Release);
            if spin_until(word, |v| v == value + 2).is_none() {
                bail!("the cache-line peer stopped answering");
            }
            value += 2;
            if i >= rounds / 10 {
                samples.push(start.elapsed().as_nanos() as u64);
            }
        }
        // The peer waits on the line of the round trip after the last.
        let next = words[((rounds + rounds / 10) % CACHELINE_LINES) as usize];
        next.store(CACHELINE_STOP, Ordering::Release);
        peer.finish("cache-line")?;
        Ok(Measurement::from_samples(
            Kind::RoundTrip,
            Transport::Cacheline,
            CACHELINE_SIZE as usize,
            samples,
        ))
    })();
    drop(map);
    let _ = std::fs::remove_file(&file);
    result
}
