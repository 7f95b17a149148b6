//! Creating a segment: it should cost about the same at any size, since
//! creation writes only the header.

use std::path::PathBuf;
use std::time::Instant;

use shmhub::{SegmentConfig, ShmHost};

use crate::cmd::bench::measurement::{Kind, Measurement, Transport};
use crate::cmd::bench::plan::{CREATE_HUGE, CREATE_SMALL, Plan};
use crate::cmd::error::OnSegment;

/// A configuration whose segment is `total` bytes plus a few pages of
/// header, rings and metadata: two pools (the host's and one guest's)
/// carry nearly all of it.
fn create_config(total: u64) -> SegmentConfig {
    let per_pool = total / 2;
    let slot_size = per_pool.min(u64::from(shmhub::format::MAX_SLOT_SIZE)) as u32;
    SegmentConfig {
        max_guests: 1,
        ring_capacity: 64,
        slot_size,
        slots_per_pool: (per_pool / u64::from(slot_size)) as u32,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    }
}

/// Times creating (and removing) a small and a huge segment beside the
/// plan's segment; each line's size is the whole segment's.
pub fn measure(plan: &Plan) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let rounds = plan.creations();
    for total in [CREATE_SMALL, CREATE_HUGE] {
        let config = create_config(total);
        let file = PathBuf::from(format!("{}.create", plan.segment.display()));
        let mut samples = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let host = ShmHost::create(&file, config).on_segment(&file)?;
            samples.push(start.elapsed().as_nanos() as u64);
            size = host.layout().total_size;
            drop(host);
        }
        results.push(Measurement::from_samples(
            Kind::Create,
            Transport::CreateSegment,
            size as usize,
            samples,
        ));
    }
    Ok(results)
}
