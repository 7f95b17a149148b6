//! Round trips of one 32-byte inline message that the host receives from
//! any guest (`AnyReceiver::recv_with`), one guest echoing, both threads
//! pinned to two CPUs and spinning, with a peer table of each size given:
//! what the host's receive from any guest costs as the table grows. The
//! sizes are timed in turn, several rounds of each, so that what the
//! machine does during the run falls on all of them alike. Prints p50 and
//! p99 per size, and each p50 over the first size's.
//!
//! With `stream` first, the guest instead sends `COUNT` 32-byte messages
//! one after another as fast as it can, and the host receives each from
//! any guest: messages per second, per size, and each over the first
//! size's.
//!
//! `cargo run --release --example any_guest_profile -- [stream] [COUNT] [ENTRIES...]`
//! (default 100,000 round trips, or 2,000,000 messages, per size; tables
//! of 1 and 255 entries)
use std::time::{Duration, Instant};

use shmhub::{MsgDesc, PeerId, SegmentConfig, ShmGuest, ShmHost, WaitStrategy, sys};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Rounds each size is timed in, in turn with the others.
const ROUNDS: u64 = 4;

fn percentiles(mut samples: Vec<u64>) -> (u64, u64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// A segment of `entries` guests, its host spinning, and the entry
/// reserved for the guest; and the segment's path.
fn segment(entries: u32) -> Result<(ShmHost, PeerId, std::path::PathBuf), Error> {
    let path = std::env::temp_dir().join(format!(
        "any-guest-profile-{}-{entries}.shm",
        std::process::id()
    ));
    let config = SegmentConfig {
        max_guests: entries,
        ring_capacity: 64,
        slot_size: 64,
        slots_per_pool: 4,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    };
    let mut host = ShmHost::create(&path, config)?;
    host.set_wait_strategy(WaitStrategy::Spin);
    let peer = host.reserve_peer()?;
    Ok((host, peer, path))
}

/// Waits until the guest has attached to entry `peer`.
fn attached(host: &ShmHost, peer: PeerId) -> Result<(), Error> {
    while host.peers()?[usize::from(peer) - 1].state != shmhub::PeerState::Attached {
        std::thread::yield_now();
    }
    Ok(())
}

/// `count` messages from one guest through a segment of `entries`
/// guests, each received from any guest; messages per second.
fn stream(entries: u32, count: u64) -> Result<f64, Error> {
    let (mut host, peer, path) = segment(entries)?;
    let sender = std::thread::spawn(move || -> Result<(), shmhub::Error> {
        sys::pin_to_cpu(1);
        let mut guest = ShmGuest::attach_path_with_id(&path, peer)?;
        guest.set_wait_strategy(WaitStrategy::Spin);
        let payload = [0x42u8; 32];
        for i in 0..count {
            guest
                .sender()
                .send(MsgDesc::new(1, i), &payload, Some(Duration::from_secs(5)))?;
        }
        Ok(())
    });
    sys::pin_to_cpu(0);
    attached(&host, peer)?;
    let start = Instant::now();
    for i in 0..count {
        let id = host
            .any_receiver()
            .recv_with(Some(Duration::from_secs(5)), |_, m| m.desc().id)?
            .ok_or("a message did not come")?;
        if id != i {
            return Err(format!("message {id} came where {i} was due").into());
        }
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    sender.join().map_err(|_| "the sending thread panicked")??;
    Ok(rate)
}

/// `count` round trips through a segment of `entries` guests, the echo
/// received from any guest; their durations in ns.
fn round_trips(entries: u32, count: u64) -> Result<Vec<u64>, Error> {
    let (mut host, peer, path) = segment(entries)?;
    let total = count + count / 10;
    let echo = std::thread::spawn(move || -> Result<(), shmhub::Error> {
        sys::pin_to_cpu(1);
        let mut guest = ShmGuest::attach_path_with_id(&path, peer)?;
        guest.set_wait_strategy(WaitStrategy::Spin);
        for _ in 0..total {
            let Some(r) = guest.receiver().recv(Some(Duration::from_secs(5)))? else {
                return Err(shmhub::Error::Timeout);
            };
            let desc = *r.desc();
            guest.sender().send(desc, r.payload(), None)?;
        }
        Ok(())
    });
    sys::pin_to_cpu(0);
    attached(&host, peer)?;
    let payload = [0x42u8; 32];
    let mut samples = Vec::with_capacity(count as usize);
    for i in 0..total {
        let start = Instant::now();
        host.send_with(peer, MsgDesc::new(1, i), &payload, None)?;
        let from = host
            .any_receiver()
            .recv_with(Some(Duration::from_secs(5)), |from, back| {
                (back.payload() == payload).then_some(from)
            })?
            .ok_or("the echo did not come back")?;
        if from != Some(peer) {
            return Err("the echo came back changed, or from another guest".into());
        }
        if i >= count / 10 {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    echo.join().map_err(|_| "the echo thread panicked")??;
    Ok(samples)
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1).peekable();
    let streaming = args.next_if(|a| a == "stream").is_some();
    let count: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(if streaming { 2_000_000 } else { 100_000 });
    let mut sizes: Vec<u32> = args.filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 255];
    }
    if streaming {
        let mut rates = vec![Vec::new(); sizes.len()];
        for _ in 0..ROUNDS {
            for (size, rates) in sizes.iter().zip(&mut rates) {
                rates.push(stream(*size, count.div_ceil(ROUNDS))?);
            }
        }
        let mut first = None;
        for (size, mut rates) in sizes.iter().zip(rates) {
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let base = *first.get_or_insert(median);
            println!(
                "{size} entries: {:.2} M msgs/s (rounds {:.2}-{:.2}); median / first {:.2}",
                median / 1e6,
                rates[0] / 1e6,
                rates[rates.len() - 1] / 1e6,
                median / base
            );
        }
        return Ok(());
    }
    let mut samples = vec![Vec::new(); sizes.len()];
    for _ in 0..ROUNDS {
        for (size, samples) in sizes.iter().zip(&mut samples) {
            samples.extend(round_trips(*size, count.div_ceil(ROUNDS))?);
        }
    }
    let mut first = None;
    for (size, samples) in sizes.iter().zip(samples) {
        let (p50, p99) = percentiles(samples);
        let base = *first.get_or_insert(p50);
        println!(
            "{size} entries: p50 {p50} ns, p99 {p99} ns; p50 / first {:.2}",
            p50 as f64 / base as f64
        );
    }
    Ok(())
}
