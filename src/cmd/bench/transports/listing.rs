//! Listing a directory of segments (`shmhub ls`), beside the least any
//! listing must do: read the directory, stat each file, read its header.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shmhub::{SegmentConfig, ShmHost};

use crate::cmd::bench::measurement::{Kind, Measurement, Transport};
use crate::cmd::bench::plan::{LIST_SEGMENTS, Plan};
use crate::cmd::error::OnSegment;

/// The smallest segment there is: a listing reads its header, peer table,
/// rings and pools all the same.
fn tiny() -> SegmentConfig {
    SegmentConfig {
        max_guests: 2,
        ring_capacity: 2,
        slot_size: 64,
        slots_per_pool: 1,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    }
}

/// Removes the directory of segments when the measurement ends, however.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Times listing [`LIST_SEGMENTS`] segments, and reading their headers.
pub fn measure(plan: &Plan) -> anyhow::Result<Vec<Measurement>> {
    let dir = Scratch(PathBuf::from(format!("{}.ls", plan.segment.display())));
    std::fs::create_dir(&dir.0)?;
    for i in 0..LIST_SEGMENTS {
        let path = dir.0.join(format!("seg-{i:03}"));
        ShmHost::create(&path, tiny())
            .and_then(ShmHost::persist)
            .on_segment(&path)?;
    }
    let rounds = plan.creations();
    let mut listing = Vec::with_capacity(rounds);
    let mut floor = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let found = shmhub::admin::list_segments(&dir.0)?;
        listing.push(start.elapsed().as_nanos() as u64);
        anyhow::ensure!(
            found.segments.len() == LIST_SEGMENTS,
            "listed {} of {LIST_SEGMENTS} segments",
            found.segments.len()
        );
        let start = Instant::now();
        read_headers(&dir.0)?;
        floor.push(start.elapsed().as_nanos() as u64);
    }
    Ok(vec![
        Measurement::from_samples(Kind::List, Transport::ListSegments, LIST_SEGMENTS, listing),
        Measurement::from_samples(Kind::List, Transport::ReadHeaders, LIST_SEGMENTS, floor),
    ])
}

/// Reads the directory, stats each entry and reads its first 256 bytes.
fn read_headers(dir: &Path) -> anyhow::Result<()> {
    let mut header = [0u8; 256];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if std::fs::symlink_metadata(&path)?.is_file() {
            std::fs::File::open(&path)?.read_exact(&mut header)?;
        }
    }
    Ok(())
}
