//! `shmhub bench`: round trips and one-way throughput through a segment,
//! measured in one run beside the floors (a bare shared cache line, an
//! ideal ring of fixed buffers, two futex wakes), a Unix socket pair, a
//! pipe and memcpy, and reported as ratios to the floors.
//!
//! The files form layers, each using only those below it: `protocol`,
//! `plan`, `measurement` and `floor` (the floors' shared memory) at the
//! bottom; `peer` (the second process) and `transports` (the measuring
//! side) on top of them; `judge`, then `report`, reading only
//! measurements; and this file, which runs them in order.

mod floor;
mod judge;
mod measurement;
pub mod peer;
mod plan;
mod protocol;
mod report;
mod transports;

use indicatif::ProgressBar;
use shmhub::sys;

use crate::cmd::error::Interrupted;
use crate::cmd::exit::Outcome;
use crate::cmd::parse::parse_size;
use crate::cmd::signals;
use crate::cmd::text::{human_bytes, progress_bar, shown};
use judge::judge;
use measurement::{FloorHalves, Measurement};
use plan::Plan;
use transports::stream::Stream;
use transports::{Progress, any_guest, cacheline, create, fan, listing, memcpy, ring, shm, stream};

/// Shown after `--help`: the runs people reach for first.
const EXAMPLES: &str = "\
Examples:
  shmhub bench                      # the full run (about a minute)
  shmhub bench --quick --json       # a tiny run, for scripts
  shmhub bench --sizes 32,64KiB --scale 3";

/// Arguments of `shmhub bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Payload sizes, comma-separated.
    #[arg(long, default_value = "32,4KiB,64KiB,1MiB", value_delimiter = ',', value_parser = parse_size)]
    pub sizes: Vec<u64>,
    /// Multiply every iteration count by this.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Tiny iteration counts: checks that everything runs, measures little.
    #[arg(long)]
    pub quick: bool,
    /// Create the benchmark segment here (default: a fresh name under /dev/shm).
    #[arg(long, value_name = "SEGMENT")]
    pub segment: Option<String>,
    /// Do not pin the two processes to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Guest processes of each fan-in and fan-out, comma-separated (1 to
    /// 255 each; the ratios need 1).
    #[arg(long, default_value = "1,8,64,255", value_delimiter = ',')]
    pub guests: Vec<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub bench`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let plan = Plan::new(
        &args.sizes,
        args.scale,
        args.quick,
        args.segment.as_deref(),
        args.no_pin,
        &args.guests,
    )?;
    // The segment does not exist yet; a fault on it (or on the scratch
    // files beside it, on the same file system) is a full file system.
    signals::guard_sigbus(&plan.segment);
    // A signal stops the run between two steps, and everything it made
    // (the segment, the scratch files, the peer processes) goes as after
    // any other error, instead of staying behind in /dev/shm.
    signals::catch_termination();
    if let Some(cpu) = plan.host_cpu() {
        sys::pin_to_cpu(cpu);
    }
    let (results, floor_halves) = measure(&plan).map_err(|e| match signals::received() {
        // What failed then (a peer that took the same signal from the
        // terminal, or a step that was refused) is the signal's doing.
        Some(signal) => anyhow::Error::new(Interrupted(signal))
            .context(format!("{}: benchmark stopped", shown(&plan.segment))),
        None => e,
    })?;
    let targets = judge(&results, floor_halves);
    if args.json {
        report::print_json(&results, &targets, &plan)?;
    } else {
        report::print_tables(&results, &targets, &plan)?;
    }
    Ok(Outcome::Done)
}

/// Every measurement of the plan, in the order the report lists them,
/// with a progress bar on a terminal since a full run takes a while; and
/// the cache-line floor's two halves, timed before and after the segment's
/// round trips.
fn measure(plan: &Plan) -> anyhow::Result<(Vec<Measurement>, FloorHalves)> {
    let bar = progress_bar(plan.phases(), "benchmarking");
    let mut results = Vec::new();
    for &size in &plan.sizes {
        bar.begin(format!("memcpy {}", human_bytes(size as u64)))?;
        results.push(memcpy::measure(size, plan));
        bar.done();
    }
    // Not a phase of the bar's count: creation is over in a moment.
    bar.begin("creating segments".into())?;
    results.extend(create::measure(plan)?);
    bar.begin("listing segments".into())?;
    results.extend(listing::measure(plan)?);
    bar.begin("cache line floor".into())?;
    let floor_at = results.len();
    let floor_before = cacheline::time_half(plan)?;
    bar.done();
    #[cfg(target_os = "linux")]
    {
        bar.begin("futex floor".into())?;
        results.push(transports::futex::measure(plan)?);
        bar.done();
    }
    results.extend(ring::measure(plan, &bar)?);
    results.extend(shm::measure(plan, &bar)?);
    results.extend(any_guest::measure(plan, &bar)?);
    bar.begin("cache line floor, again".into())?;
    let (floor, halves) = cacheline::line(floor_before, cacheline::time_half(plan)?);
    results.insert(floor_at, floor);
    bar.done();
    for transport in Stream::ALL {
        results.extend(stream::measure(transport, plan, &bar)?);
    }
    results.extend(fan::measure(plan, &bar)?);
    bar.finish_and_clear();
    Ok((results, halves))
}

/// The transports tell their steps to the bar, which draws them only on a
/// terminal.
impl Progress for ProgressBar {
    fn begin(&self, what: String) -> anyhow::Result<()> {
        if let Some(signal) = signals::received() {
            return Err(Interrupted(signal).into());
        }
        self.set_message(what);
        Ok(())
    }

    fn done(&self) {
        self.inc(1);
    }
}
