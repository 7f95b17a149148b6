//! Many guest processes at once: a fan-in (every guest sends the host
//! messages as fast as it can, the host receives from any guest) and a
//! fan-out (the host sends each guest a stream of its own), at each guest
//! count of the plan. One guest is the baseline the others are judged
//! against, in the same run. Both sides wait in the default (adaptive)
//! strategy, as a plugin host would: how much of a CPU the host takes
//! while a crowd of guests waits is part of what is measured.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shmhub::{Frame, MsgDesc, PeerId, SegmentConfig, ShmHost, Timeout, WaitStrategy};

use super::shm::{TIMEOUT, start_guest, tell_peer, wait_attached};
use super::{PeerProcess, Progress, check_report};
use crate::cmd::bench::measurement::{Measurement, Transport};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{EXIT, FAN_BYTE, FAN_SIZE, REPORT, SEND, SINK};
use crate::cmd::error::OnSegment;
use crate::cmd::segment::create_owned;

/// Times a fan-in and a fan-out at each guest count of the plan, each
/// count in a new segment with new guest processes.
pub fn measure(plan: &Plan, progress: &dyn Progress) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    for &guests in &plan.guests {
        results.extend(at(plan, guests, progress)?);
    }
    Ok(results)
}

/// A segment of `guests` entries with rings of the default size and a
/// few small slots: every message fits in its descriptor.
fn config(guests: u32) -> SegmentConfig {
    SegmentConfig {
        max_guests: guests,
        ring_capacity: SegmentConfig::default().ring_capacity,
        slot_size: 64,
        slots_per_pool: 4,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    }
}

/// Creates the segment, starts `guests` guest processes (all on the
/// peer's CPU when pinned: the host keeps one of its own), then times the
/// fan-in and the fan-out.
fn at(plan: &Plan, guests: u32, progress: &dyn Progress) -> anyhow::Result<Vec<Measurement>> {
    let path = plan.segment.as_path();
    let mut host = create_owned(path, config(guests))?;
    host.set_wait_strategy(WaitStrategy::default());
    let mut peers: Vec<(PeerId, PeerProcess)> = Vec::with_capacity(guests as usize);
    for _ in 0..guests {
        peers.push(start_guest(&mut host, plan)?);
    }
    let ids: Vec<PeerId> = peers.iter().map(|(p, _)| *p).collect();
    for &p in &ids {
        wait_attached(&host, p, path)?;
    }
    // Messages per guest: the plan's total, shared out.
    let per = plan.fan_messages().div_ceil(u64::from(guests)).max(1);

    progress.begin(format!("{} stream", Transport::FanIn(guests)))?;
    let fan_in = fan_in(&mut host, &ids, per, path)?;
    progress.done();
    progress.begin(format!("{} stream", Transport::FanOut(guests)))?;
    let fan_out = fan_out(&mut host, &ids, per, path)?;
    progress.done();

    for &p in &ids {
        tell_peer(&mut host, p, EXIT, 0, path)?;
    }
    for (p, peer) in peers {
        peer.finish(format!("fan guest {p}"))?;
    }
    drop(host);
    Ok(vec![fan_in, fan_out])
}

/// Tells every guest of `ids` to send `per` messages, and receives them
/// all from any guest ([`receive_all`]): the rate, and the host's share of
/// a CPU meanwhile. With more than one guest, [`fairness`] is measured
/// first.
fn fan_in(
    host: &mut ShmHost,
    ids: &[PeerId],
    per: u64,
    path: &Path,
) -> anyhow::Result<Measurement> {
    let least_served = if ids.len() > 1 {
        Some(fairness(host, ids, path)?)
    } else {
        None
    };
    let clock = HostClock::start();
    for &p in ids {
        tell_peer(host, p, SEND, per, path)?;
    }
    let total = per * ids.len() as u64;
    receive_all(host, total, path, |_, _| {})?;
    let (elapsed, host_cpu) = clock.stop();
    let mut line =
        Measurement::stream(Transport::FanIn(ids.len() as u32), FAN_SIZE, total, elapsed);
    line.host_cpu = host_cpu;
    line.least_served = least_served;
    Ok(line)
}

/// Receives `total` messages from any guest, each checked to be the next
/// of its guest's numbering (from 0) and whole; `after(n, got)` runs
/// after the `n`th, `got` counting the messages of each guest by peer id.
fn receive_all(
    host: &mut ShmHost,
    total: u64,
    path: &Path,
    mut after: impl FnMut(u64, &[u64]),
) -> anyhow::Result<()> {
    // Indexed by peer id (entry 0 unused).
    let mut got = vec![0u64; 256];
    for n in 0..total {
        let (from, whole) = host
            .any_receiver()
            .recv_with(TIMEOUT, |from, m| {
                let desc = m.desc();
                let whole = desc.method_id == SINK
                    && desc.id == got[usize::from(from)]
                    && m.payload() == [FAN_BYTE; FAN_SIZE];
                (from, whole)
            })
            .on_segment(path)?
            .with_context(|| format!("no message from any guest after {n} of {total}"))?;
        if !whole {
            bail!(
                "message {} of guest {from} arrived out of order or changed",
                got[usize::from(from)]
            );
        }
        got[usize::from(from)] += 1;
        after(n + 1, &got);
    }
    Ok(())
}

/// How fairly the host serves guests that all have messages queued: each
/// guest fills its ring (the host receives nothing until every ring is
/// full), then the host receives them all; when half have arrived, the
/// messages received from the least-served guest over the mean per guest.
/// (In the timed run the host drains faster than any one guest fills, so
/// who is served is decided by who runs, the system's scheduler, not by
/// the host.)
fn fairness(host: &mut ShmHost, ids: &[PeerId], path: &Path) -> anyhow::Result<f64> {
    let capacity = config(ids.len() as u32).ring_capacity;
    for &p in ids {
        tell_peer(host, p, SEND, u64::from(capacity), path)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = shmhub::admin::inspect_path(path).on_segment(path)?;
        let full = report
            .peers
            .iter()
            .filter(|p| ids.contains(&p.entry.peer_id))
            .all(|p| p.to_host.len() == Some(capacity));
        if full {
            break;
        }
        if Instant::now() > deadline {
            bail!("the fan-in guests did not fill their rings");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = u64::from(capacity) * ids.len() as u64;
    let mut least_served = 1.0;
    receive_all(host, total, path, |n, got| {
        if n == total / 2 {
            let mean = n as f64 / ids.len() as f64;
            let least = ids.iter().map(|&p| got[usize::from(p)]).min().unwrap_or(0);
            least_served = least as f64 / mean;
        }
    })?;
    Ok(least_served)
}

/// Messages the fan-out hands one guest at a time, as one batch (one
/// publication, at most one wake): as many as the guest takes per receive.
const BURST: usize = 256;

/// Room a guest's ring must have before the fan-out sends to it (unless
/// fewer are left for it): a guest that drains its ring as fast as it
/// fills goes to sleep after each batch, and a batch of one message would
/// cost a wake call and a process switch per message.
const LEAST_BATCH: usize = BURST / 4;

/// How long the fan-out goes round the guests finding none with room for
/// a batch before it sleeps in a send to the one with the most: about the
/// time the guests' CPU takes to drain a few rings, so that a host whose
/// guests keep up keeps going, and bounded, so that one whose guests have
/// stopped does not spin.
const SPIN_FOR: Duration = Duration::from_micros(200);

/// Sends every guest of `ids` `per` messages, going round the guests and
/// sending each bursts of up to [`BURST`] while its ring has room for at
/// least [`LEAST_BATCH`] of them ([`send_round`]). When none has, it goes
/// round again for up to [`SPIN_FOR`], then sleeps in a send to the guest
/// with the most room. The fan-out ends when every guest has taken its
/// last message; then each is asked for its report, which must show that
/// it received them all, whole.
fn fan_out(
    host: &mut ShmHost,
    ids: &[PeerId],
    per: u64,
    path: &Path,
) -> anyhow::Result<Measurement> {
    let message = Frame::new(
        MsgDesc {
            method_id: SINK,
            ..MsgDesc::default()
        },
        vec![FAN_BYTE; FAN_SIZE],
    );
    let burst = vec![message; BURST];
    let mut sent = vec![0u64; 256];
    let mut open: Vec<PeerId> = ids.to_vec();
    let mut idle_since = None;
    let clock = HostClock::start();
    loop {
        open.retain(|&p| sent[usize::from(p)] < per);
        if open.is_empty() {
            break;
        }
        let Round::NoRoom { roomiest } = send_round(host, &open, &burst, &mut sent, per, path)?
        else {
            idle_since = None;
            continue;
        };
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < SPIN_FOR {
            std::thread::yield_now();
            continue;
        }
        host.send_timeout(roomiest, &burst[0], TIMEOUT)
            .on_segment(path)?;
        sent[usize::from(roomiest)] += 1;
        idle_since = None;
    }
    wait_drained(host, ids, path)?;
    let (elapsed, host_cpu) = clock.stop();
    for &p in ids {
        tell_peer(host, p, REPORT, 0, path)?;
    }
    for _ in ids {
        let (from, report) = host
            .recv_timeout(TIMEOUT)
            .on_segment(path)?
            .context("a fan-out guest did not report")?;
        check_report(report.payload(), per, FAN_SIZE, FAN_BYTE)
            .with_context(|| format!("fan-out guest {from}"))?;
    }
    let mut line = Measurement::stream(
        Transport::FanOut(ids.len() as u32),
        FAN_SIZE,
        per * ids.len() as u64,
        elapsed,
    );
    line.host_cpu = host_cpu;
    Ok(line)
}

/// What one round of the fan-out did.
enum Round {
    /// It sent something.
    Sent,
    /// No guest's ring had room for a batch; `roomiest`'s had the most.
    NoRoom { roomiest: PeerId },
}

/// One round of the fan-out: sends each guest of `open` (not empty) its
/// messages left (`per` less what `sent` counts) in bursts, for as long
/// as its ring has room for at least [`LEAST_BATCH`] of them (or all it
/// has left): a guest that keeps taking them is the one its CPU is
/// running, and feeding it costs no wake.
fn send_round(
    host: &mut ShmHost,
    open: &[PeerId],
    burst: &[Frame],
    sent: &mut [u64],
    per: u64,
    path: &Path,
) -> anyhow::Result<Round> {
    let mut any = false;
    let (mut roomiest, mut most) = (open[0], 0);
    for &p in open {
        let tx = host.sender(p).on_segment(path)?;
        loop {
            let left = (per - sent[usize::from(p)]).min(burst.len() as u64) as usize;
            let room = tx.room().on_segment(path)?;
            if left == 0 || room < left.min(LEAST_BATCH) {
                if room > most {
                    (roomiest, most) = (p, room);
                }
                break;
            }
            match tx.send_batch(&burst[..left.min(room)], Timeout::NoWait) {
                Ok(n) => {
                    sent[usize::from(p)] += n as u64;
                    any |= n > 0;
                }
                Err(e) if e.is_retryable() => break,
                Err(e) => return Err(e).on_segment(path)?,
            }
        }
    }
    Ok(if any {
        Round::Sent
    } else {
        Round::NoRoom { roomiest }
    })
}

/// Waits until every guest of `ids` has taken all it was sent off its
/// ring: the end of a fan-out. The reports that then check what each
/// received are bookkeeping, one round trip per guest, and not timed.
fn wait_drained(host: &mut ShmHost, ids: &[PeerId], path: &Path) -> anyhow::Result<()> {
    let capacity = host.layout().config.ring_capacity as usize;
    let since = Instant::now();
    for &p in ids {
        while host.sender(p).on_segment(path)?.room().on_segment(path)? < capacity {
            if TIMEOUT.is_some_and(|limit| since.elapsed() > limit) {
                bail!("fan-out guest {p} stopped taking its messages");
            }
            std::thread::yield_now();
        }
    }
    Ok(())
}

/// Wall time and this thread's time on a CPU since it started.
struct HostClock {
    wall: Instant,
    cpu_ns: Option<u64>,
}

impl HostClock {
    fn start() -> Self {
        HostClock {
            cpu_ns: thread_cpu_ns(),
            wall: Instant::now(),
        }
    }

    /// The wall time elapsed, and the share of it this thread spent on a
    /// CPU (where the system tells).
    fn stop(self) -> (Duration, Option<f64>) {
        let elapsed = self.wall.elapsed();
        let share = self
            .cpu_ns
            .zip(thread_cpu_ns())
            .map(|(before, after)| after.saturating_sub(before) as f64 / elapsed.as_nanos() as f64);
        (elapsed, share)
    }
}

/// Nanoseconds the calling thread (the host: the bench runs on one) has
/// spent on a CPU; `None` if the system cannot tell.
fn thread_cpu_ns() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is handed, which
    // lives on this frame for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (rc == 0).then(|| now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}
