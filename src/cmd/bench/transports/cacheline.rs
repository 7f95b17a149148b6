//! One cache line bounced between two processes, with no ring, slot or
//! wake-up around it: the floor under any shared-memory round trip, which
//! the segment's spinning round trip is judged against.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use shmhub::MmapRegion;

use super::spawn_floor_peer;
use crate::cmd::bench::measurement::{CACHELINE_SIZE, Kind, Measurement, Transport};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{CACHELINE_OFFSET, CACHELINE_STOP, PeerTransport};
use crate::cmd::common::seg_err;

/// Times round trips of one word in a file beside the plan's segment: this
/// side makes it odd, the peer makes it even. The file is removed whatever
/// happens.
pub fn measure(plan: &Plan) -> anyhow::Result<Measurement> {
    let file = PathBuf::from(format!("{}.line", plan.segment.display()));
    let map = MmapRegion::create(&file, 4096).map_err(|e| seg_err(&file, e))?;
    let result = (|| {
        let region = map.region();
        let word = region
            .atomic_u64(CACHELINE_OFFSET)
            .map_err(|e| seg_err(&file, e.into()))?;
        let peer = spawn_floor_peer(PeerTransport::Cacheline, plan, &file)?;
        let rounds = plan.round_trips(32);
        let mut samples = Vec::with_capacity(rounds as usize);
        let mut value = 0u64;
        // The first tenth goes untimed: it pays for the cold start (caches,
        // first page touches, the peer getting going).
        for i in 0..rounds + rounds / 10 {
            let start = Instant::now();
            word.store(value + 1, Ordering::Release);
            let spin_deadline = start + Duration::from_secs(10);
            while word.load(Ordering::Acquire) != value + 2 {
                std::hint::spin_loop();
                if Instant::now() > spin_deadline {
                    bail!("the cache-line peer stopped answering");
                }
            }
            value += 2;
            if i >= rounds / 10 {
                samples.push(start.elapsed().as_nanos() as u64);
            }
        }
        word.store(CACHELINE_STOP, Ordering::Release);
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
