//! The stream floor: an ideal ring of fixed buffers in a shared file, with
//! a sequence word per buffer on its own cache line and no pool, descriptor
//! or wake-up. Per message the writer fills every byte of a buffer in place
//! and the reader (the peer) sums every byte in place, exactly the work the
//! segment's stream does per message, so what the segment loses to this
//! line is what its ring and pool cost.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::bail;

use super::{Progress, check_report, spawn_floor_peer};
use crate::cmd::bench::floor::{SharedFile, spin_until};
use crate::cmd::bench::measurement::{Measurement, Transport};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{
    MAX_RING_DEPTH, PeerTransport, RING_BUFFERS, RING_COMMAND, RING_REPLY, RING_SEQS, RING_STOP,
    report, ring_depth, ring_file_len, ring_stride,
};
use crate::cmd::text::human_bytes;

/// The byte every payload is filled with, as in the segment's stream.
const VALUE: u8 = 7;

/// How many times the floor is timed, each in a new file with a new
/// reader; the fastest run of each size is the floor. On these shared VMs
/// about one file in eight runs the whole 32 B stream at a third of the
/// ring's speed, and keeps doing so for as long as it is mapped (three
/// readers in turn on one file were all slow), and a floor is what the
/// machine does at best.
const READERS: usize = 3;

/// Times the stream floor at every size of the plan [`READERS`] times,
/// each time in a new file beside the plan's segment (removed whatever
/// happens) with a new reader; keeps the fastest run of each size.
pub fn measure(plan: &Plan, progress: &dyn Progress) -> anyhow::Result<Vec<Measurement>> {
    let path = PathBuf::from(format!("{}.ring", plan.segment.display()));
    let mut fastest: Vec<Measurement> = Vec::new();
    for _ in 0..READERS {
        let file = SharedFile::create(&path, ring_file_len(&plan.sizes))?;
        let runs = run(&file, &path, plan, progress);
        drop(file);
        let _ = std::fs::remove_file(&path);
        let runs = runs?;
        if fastest.is_empty() {
            fastest = runs;
            continue;
        }
        for (best, run) in fastest.iter_mut().zip(runs) {
            if run.msgs_per_s > best.msgs_per_s {
                *best = run;
            }
        }
    }
    Ok(fastest)
}

/// Starts the reader, then streams each size twice: a warm-up (the first
/// touch of every buffer's pages, the reader getting going) and the timed
/// run.
fn run(
    file: &SharedFile,
    path: &Path,
    plan: &Plan,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Measurement>> {
    let peer = spawn_floor_peer(PeerTransport::Ring, plan, path)?;
    let mut ring = Writer {
        file,
        seqs: (0..MAX_RING_DEPTH)
            .map(|b| file.u64_at(RING_SEQS + b * 64))
            .collect(),
        commands: 0,
    };
    let mut results = Vec::new();
    for &size in &plan.sizes {
        progress.begin(format!(
            "{} stream {}",
            Transport::RingFloor,
            human_bytes(size as u64)
        ))?;
        let messages = plan.stream_messages(size);
        let depth = ring_depth(size) as u64;
        ring.stream(size, (messages / 10).max(depth))?;
        let start = Instant::now();
        ring.stream(size, messages)?;
        results.push(Measurement::stream(
            Transport::RingFloor,
            size,
            messages,
            start.elapsed(),
        ));
        progress.done();
    }
    file.u64_at(RING_COMMAND)
        .store(RING_STOP, Ordering::Release);
    peer.finish(Transport::RingFloor)?;
    Ok(results)
}

/// The writing side of the ring.
struct Writer<'a> {
    /// The shared file.
    file: &'a SharedFile,
    /// Each buffer's sequence word.
    seqs: Vec<&'a AtomicU64>,
    /// Commands given so far.
    commands: u64,
}

impl Writer<'_> {
    /// Streams `messages` payloads of `size` bytes through the ring and
    /// waits until the reader has summed them all, then checks its count
    /// and sum.
    fn stream(&mut self, size: usize, messages: u64) -> anyhow::Result<()> {
        let depth = ring_depth(size);
        let stride = ring_stride(size);
        // The reader is idle, done with the last command: every buffer is
        // free, and zeroes say so for lap 0.
        for seq in &self.seqs {
            seq.store(0, Ordering::Relaxed);
        }
        for (at, value) in [(8, size as u64), (16, messages), (24, depth as u64)] {
            self.file
                .u64_at(RING_COMMAND + at)
                .store(value, Ordering::Relaxed);
        }
        self.commands += 1;
        let number = self.commands;
        // Release: the reader sees the zeroed words and the command's
        // arguments once it sees the number.
        self.file
            .u64_at(RING_COMMAND)
            .store(number, Ordering::Release);
        let (mut buffer, mut lap) = (0usize, 0u64);
        for _ in 0..messages {
            let seq = self.seqs[buffer];
            if spin_until(seq, |v| v == 2 * lap).is_none() {
                bail!("the stream floor's reader stopped");
            }
            // SAFETY: the reader handed this buffer back (its word is even,
            // read with Acquire) and reads it again only once it is
            // published, below; no other slice of it exists.
            let payload = unsafe { self.file.bytes_mut(RING_BUFFERS + buffer * stride, size) };
            payload.fill(VALUE);
            seq.store(2 * lap + 1, Ordering::Release);
            buffer += 1;
            if buffer == depth {
                (buffer, lap) = (0, lap + 1);
            }
        }
        if spin_until(self.file.u64_at(RING_REPLY), |n| n == number).is_none() {
            bail!("the stream floor's reader did not finish");
        }
        let count = self.file.u64_at(RING_REPLY + 8).load(Ordering::Relaxed);
        let sum = self.file.u64_at(RING_REPLY + 16).load(Ordering::Relaxed);
        check_report(&report(count, sum), messages, size, VALUE)
    }
}
