//! The measuring side: each file here times one transport and hands back
//! `Measurement`s. Nothing here prints; how far a run has got is told
//! through [`Progress`], and the caller decides how to show it. This file
//! holds what the transports with a second process share.

use std::fmt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd::child::this_binary;
use crate::cmd::text::human_bytes;

use super::measurement::{Kind, Measurement, Transport, time_round_trips};
use super::plan::Plan;
use super::protocol::{PeerTransport, parse_report};

pub mod any_guest;
pub mod cacheline;
pub mod create;
pub mod fan;
#[cfg(target_os = "linux")]
pub mod futex;
pub mod listing;
pub mod memcpy;
pub mod ring;
pub mod shm;
pub mod stream;

/// Where a transport reports its progress, so that measuring stays apart
/// from drawing (and a run without a terminal draws nothing).
pub trait Progress {
    /// A step starts; `what` names it for a person watching. Fails once a
    /// termination signal has arrived, so that a run stops between steps
    /// (and its files and peers go the way they go after any error).
    fn begin(&self, what: String) -> anyhow::Result<()>;
    /// The current step is done.
    fn done(&self);
}

/// The second process of a measurement. It is killed when dropped unless
/// it already exited, so that an error halfway leaves no peer behind.
pub struct PeerProcess(pub Child);

/// Kills a peer that is still running: see [`PeerProcess`].
impl Drop for PeerProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl PeerProcess {
    /// Runs `body`, the measuring side's part. If it fails after the peer
    /// has already ended, the error says how the peer ended: a peer that
    /// exited or was killed is often why, and dropping it reaps it without
    /// a word.
    pub fn beside<T>(
        &mut self,
        what: impl fmt::Display,
        body: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        body().map_err(|e| match self.0.try_wait() {
            Ok(Some(status)) => {
                e.context(format!("the {what} benchmark peer had ended ({status})"))
            }
            _ => e,
        })
    }

    /// Waits for a peer that was told to exit. Its exit status is the only
    /// word on whether it saw what was sent, so a failure fails the run, and
    /// a peer stuck for ten seconds counts as one.
    pub fn finish(mut self, what: impl fmt::Display) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait()? {
                if !status.success() {
                    bail!("the {what} benchmark peer failed ({status})");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {what} benchmark peer did not exit");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The command that starts this same binary as the peer for `transport`,
/// on `cpu` if given, its standard input closed (see [`this_binary`]);
/// the caller adds what its transport needs.
pub fn peer_command(transport: PeerTransport, cpu: Option<usize>) -> anyhow::Result<Command> {
    let mut cmd = this_binary("bench-peer")?;
    cmd.arg(transport.arg());
    if let Some(cpu) = cpu {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    Ok(cmd)
}

/// Starts the peer of a floor, which shares with this side only the file
/// at `path`.
pub fn spawn_floor_peer(
    transport: PeerTransport,
    plan: &Plan,
    path: &Path,
) -> anyhow::Result<PeerProcess> {
    let child = peer_command(transport, plan.peer_cpu())?
        .arg("--segment")
        .arg(path)
        .spawn()
        .with_context(|| format!("starting the {} floor's peer", transport.arg()))?;
    Ok(PeerProcess(child))
}

/// Times the plan's round trips of `size` bytes over `transport`, as one
/// step of `progress`; `round_trip(i)` makes round trip number `i`.
pub fn time_round_trips_at(
    transport: Transport,
    size: usize,
    plan: &Plan,
    progress: &dyn Progress,
    mut round_trip: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<Measurement> {
    progress.begin(format!(
        "{transport} round trip {}",
        human_bytes(size as u64)
    ))?;
    let samples = time_round_trips(plan.round_trips(size), |i, _| round_trip(i))?;
    progress.done();
    Ok(Measurement::from_samples(
        Kind::RoundTrip,
        transport,
        size,
        samples,
    ))
}

/// Checks the peer's report against what was sent: a stream is only
/// measured if every message arrived whole, byte sum and all.
pub fn check_report(payload: &[u8], messages: u64, size: usize, value: u8) -> anyhow::Result<()> {
    let (count, sum) = parse_report(payload)?;
    let expected = messages
        .wrapping_mul(size as u64)
        .wrapping_mul(u64::from(value));
    if count != messages || sum != expected {
        bail!(
            "the receiver saw {count} messages summing to {sum}; sent {messages} summing to {expected}"
        );
    }
    Ok(())
}
