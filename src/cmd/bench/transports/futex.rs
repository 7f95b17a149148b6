//! The blocking floor: a round trip of two futex wakes between the same two
//! processes, with a word each way in a shared file and each side asleep in
//! `FUTEX_WAIT` until the other wakes it. Nothing else happens per round
//! trip, so what a sleeping round trip (the segment in block mode, a
//! socket, a pipe) costs beyond this line is its own. Linux only: elsewhere
//! there is no futex to measure.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;

use super::spawn_floor_peer;
use crate::cmd::bench::floor::{STALL, SharedFile, futex_wait, futex_wake};
use crate::cmd::bench::measurement::{FUTEX_SIZE, Kind, Measurement, Transport, time_round_trips};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{FUTEX_PING, FUTEX_PONG, FUTEX_STOP, PeerTransport};
use crate::cmd::signals;

/// Times round trips of the futex words in a file beside the plan's
/// segment, as many as the segment's 32 B round trips: this side writes
/// the round trip's number to the ping word and wakes the peer, which
/// writes it back to the pong word and wakes this side. The file is
/// removed whatever happens.
pub fn measure(plan: &Plan) -> anyhow::Result<Measurement> {
    let path = PathBuf::from(format!("{}.futex", plan.segment.display()));
    let file = SharedFile::create(&path, 4096)?;
    let result = (|| {
        let (ping, pong) = (file.u32_at(FUTEX_PING), file.u32_at(FUTEX_PONG));
        let peer = spawn_floor_peer(PeerTransport::Futex, plan, &path)?;
        let samples = time_round_trips(plan.round_trips(32), |i, start| {
            let number = (i + 1) as u32;
            ping.store(number, Ordering::Release);
            futex_wake(ping);
            loop {
                let seen = pong.load(Ordering::Acquire);
                if seen == number {
                    return Ok(());
                }
                if start.elapsed() > STALL || signals::received().is_some() {
                    bail!("the futex floor's peer stopped answering");
                }
                futex_wait(pong, seen, Duration::from_millis(100));
            }
        })?;
        ping.store(FUTEX_STOP, Ordering::Release);
        futex_wake(ping);
        peer.finish(Transport::FutexFloor)?;
        Ok(Measurement::from_samples(
            Kind::RoundTrip,
            Transport::FutexFloor,
            FUTEX_SIZE as usize,
            samples,
        ))
    })();
    drop(file);
    let _ = std::fs::remove_file(&path);
    result
}
