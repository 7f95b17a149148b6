//! What one `bench` run measures and how hard: the payload sizes, the
//! iteration counts, the files it may create and where the two processes
//! run. Everything is settled here before the first measurement, so a bad
//! argument fails at once rather than a minute in.

use std::path::PathBuf;

use shmhub::{WaitStrategy, sys};

use crate::cmd::segment::new_segment_path;

/// The small one of the two segments whose creation is timed (1 MiB).
pub const CREATE_SMALL: u64 = 1 << 20;
/// The huge one (4 GiB): creation writes only the header, so it should cost
/// about what the small one does, and the two sizes are far apart to show it.
pub const CREATE_HUGE: u64 = 4 << 30;

/// How many segments the listing is timed on (`shmhub ls`'s budget is
/// 50 ms for this many).
pub const LIST_SEGMENTS: usize = 100;

/// The wait strategies the segment's round trips are measured with, in the
/// order the report lists them.
pub const WAIT_MODES: [WaitStrategy; 3] = [
    WaitStrategy::Spin,
    WaitStrategy::Block,
    WaitStrategy::Adaptive,
];

/// The table sizes (peer-table entries) the round trips received from any
/// guest are measured at: one, and every entry a segment can have.
pub const ANY_GUEST_ENTRIES: [u32; 2] = [1, shmhub::format::MAX_GUESTS];

/// Largest payload size accepted. The benchmark segment holds four slots of
/// the largest size in each of its two pools, so this keeps it within 2 GiB.
const MAX_SIZE: u64 = 256 << 20;

/// A checked, complete description of one run.
#[derive(Debug)]
pub struct Plan {
    /// Payload sizes, each measured over every transport.
    pub sizes: Vec<usize>,
    /// Factor on every iteration count (ignored when `quick`).
    pub scale: f64,
    /// Tiny counts: a check that everything runs, not a measurement.
    pub quick: bool,
    /// The benchmark segment; the floors' files and the creation and
    /// listing scratch files sit beside it.
    pub segment: PathBuf,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Whether the two processes get a CPU each: without two CPUs, pinning
    /// would put both on one and measure the scheduler.
    pub pinned: bool,
    /// Guest processes of each fan-in and fan-out, in the order measured.
    pub guests: Vec<u32>,
}

impl Plan {
    /// Checks the arguments of `shmhub bench` and settles the run.
    /// `segment` defaults to a name of this process's own, so that two runs
    /// at once do not collide.
    pub fn new(
        sizes: &[u64],
        scale: f64,
        quick: bool,
        segment: Option<&str>,
        no_pin: bool,
        guests: &[u32],
    ) -> anyhow::Result<Plan> {
        if sizes.is_empty() || sizes.iter().any(|&s| s == 0 || s > MAX_SIZE) {
            crate::usage!("--sizes must be between 1 byte and 256MiB each");
        }
        if guests.is_empty()
            || guests
                .iter()
                .any(|&g| g == 0 || g > shmhub::format::MAX_GUESTS)
        {
            crate::usage!("--guests must be between 1 and 255 each");
        }
        if !(scale > 0.0 && scale <= 1000.0) {
            crate::usage!("--scale must be in (0, 1000]");
        }
        let cpus = sys::available_cpus();
        let name = segment.map_or_else(
            || format!("shmhub-bench-{}", std::process::id()),
            str::to_owned,
        );
        let segment = new_segment_path(&name)?;
        Ok(Plan {
            sizes: sizes.iter().map(|&s| s as usize).collect(),
            scale,
            quick,
            segment,
            cpus,
            pinned: !no_pin && cpus >= 2,
            guests: guests.to_vec(),
        })
    }

    /// The CPU this process should run on, if pinned.
    pub fn host_cpu(&self) -> Option<usize> {
        self.pinned.then_some(0)
    }

    /// The CPU the second process should run on, if pinned: not the host's,
    /// so that both can spin at once.
    pub fn peer_cpu(&self) -> Option<usize> {
        self.pinned.then_some(1)
    }

    /// Round trips measured at `size` bytes: fewer for big payloads, whose
    /// round trips each take long enough to time well.
    pub fn round_trips(&self, size: usize) -> u64 {
        self.count_by_size(size, [20_000.0, 10_000.0, 2_000.0, 300.0])
    }

    /// Messages streamed at `size` bytes: many more than round trips, since
    /// only the total time of a stream is measured.
    pub fn stream_messages(&self, size: usize) -> u64 {
        self.count_by_size(size, [1_000_000.0, 100_000.0, 10_000.0, 1_000.0])
    }

    /// The count of `bases` for a payload of `size` bytes (up to 64 B, up
    /// to 8 KiB, up to 128 KiB, larger), scaled as [`Plan::count`] says.
    fn count_by_size(&self, size: usize, bases: [f64; 4]) -> u64 {
        let [small, medium, large, huge] = bases;
        self.count(match size {
            0..=64 => small,
            65..=8192 => medium,
            8193..=131_072 => large,
            _ => huge,
        })
    }

    /// Messages of one fan-in or fan-out, over all its guests: enough
    /// that 255 guests each take some 30 rings' worth, and the start (the
    /// first wake of every guest, their first touch of their rings) is a
    /// small part of the line.
    pub fn fan_messages(&self) -> u64 {
        self.count(2_000_000.0)
    }

    /// Copies timed at `size` bytes: as many as streamed messages, and at
    /// least enough for the percentiles to mean something.
    pub fn copies(&self, size: usize) -> u64 {
        self.stream_messages(size).max(10)
    }

    /// Times each segment is created: creation is slow next to a message,
    /// so a few suffice.
    pub fn creations(&self) -> usize {
        if self.quick { 3 } else { 15 }
    }

    /// Steps the progress bar counts: per size, memcpy, a round trip per
    /// wait mode, the segment stream, the ring floor's stream, and a round
    /// trip and a stream over the socket and over the pipe; per size that
    /// fits in a descriptor, the unbatched segment stream; then the cache
    /// line and (on Linux) the futex floor once each, and the round trips
    /// received from any guest, in two halves per table size; then per
    /// guest count, a fan-in and a fan-out. (Segment creation and listing
    /// are quick and not counted.)
    pub fn phases(&self) -> u64 {
        let per_size = 1 + WAIT_MODES.len() as u64 + 1 + 1 + 2 + 2;
        let inline = self
            .sizes
            .iter()
            .filter(|&&s| s <= shmhub::INLINE_CAPACITY)
            .count() as u64;
        // The cache line's two halves, and the futex's.
        let floors = if cfg!(target_os = "linux") { 3 } else { 2 };
        let any_guest = 2 * ANY_GUEST_ENTRIES.len() as u64;
        let fans = 2 * self.guests.len() as u64;
        self.sizes.len() as u64 * per_size + inline + floors + any_guest + fans
    }

    /// Scales a base count, never below five iterations (nor, when quick,
    /// above two hundred).
    fn count(&self, base: f64) -> u64 {
        if self.quick {
            (base / 1000.0).clamp(5.0, 200.0) as u64
        } else {
            (base * self.scale).max(5.0) as u64
        }
    }
}
