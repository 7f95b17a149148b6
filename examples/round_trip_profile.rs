//! Round trips of one 32-byte inline message between two threads pinned to
//! two CPUs, both spinning, for profiling (`perf record -g`) and for quick
//! before/after comparisons of the round-trip path: the host sends, the
//! guest echoes what it received in place, the host reads the echo in
//! place (`recv_from_with`, as `bench` does).
//! Prints p50 and p99 of `COUNT` timed round trips, and the same for one
//! cache line per round trip bounced between the same two threads (the
//! floor, taking turns on 64 lines as `bench`'s does).
//!
//! With `legs`, both threads also read the clock between the steps, and the
//! medians of the four legs are printed: the host's send, from the start
//! of that send until the guest has the message, the guest's echo send,
//! and from the end of that send until the host has the echo. Each leg
//! includes one clock read (about 20 ns), so the round trip itself is
//! slower in that mode.
//!
//! `cargo run --release --example round_trip_profile -- COUNT [legs]`
//! (default 200,000)
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost, WaitStrategy, sys};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn percentiles(mut samples: Vec<u64>) -> (u64, u64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// One cache line bounced per round trip, taking turns on 64 lines as
/// `bench`'s floor does (what a line costs depends on where its address
/// lands in the shared cache): the main thread writes odd numbers, the
/// other answers with the next even one.
fn cache_line_floor(count: u64) -> (u64, u64) {
    #[repr(align(64))]
    struct Line(AtomicU64);
    const LINES: usize = 64;
    let lines: std::sync::Arc<Vec<Line>> =
        std::sync::Arc::new((0..LINES).map(|_| Line(AtomicU64::new(0))).collect());
    let other = lines.clone();
    let rounds = count + count / 10;
    let echo = std::thread::spawn(move || {
        sys::pin_to_cpu(1);
        for (round, line) in (0..rounds).zip(other.iter().cycle()) {
            let want = 2 * round + 1;
            while line.0.load(Ordering::Acquire) != want {
                std::hint::spin_loop();
            }
            line.0.store(want + 1, Ordering::Release);
        }
    });
    sys::pin_to_cpu(0);
    let mut samples = Vec::with_capacity(count as usize);
    for (round, line) in (0..rounds).zip(lines.iter().cycle()) {
        let value = 2 * round + 1;
        let start = Instant::now();
        line.0.store(value, Ordering::Release);
        while line.0.load(Ordering::Acquire) != value + 1 {
            std::hint::spin_loop();
        }
        if round >= count / 10 {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    echo.join().expect("the echo thread panicked");
    percentiles(samples)
}

/// Nanoseconds since a common start, read by either thread.
fn since(start: Instant) -> i64 {
    start.elapsed().as_nanos() as i64
}

/// The segment's round trips: their durations, and with `legs` the times
/// of the steps of each (host: send start, send end, echo in hand; guest:
/// message in hand, echo sent).
fn segment_round_trips(count: u64, legs: bool) -> Result<(Vec<u64>, Vec<[i64; 5]>), Error> {
    let path = std::env::temp_dir().join(format!("rt-profile-{}.shm", std::process::id()));
    let mut host = ShmHost::create(&path, SegmentConfig::default())?;
    host.set_wait_strategy(WaitStrategy::Spin);
    let peer = host.reserve_peer()?;
    let total = count + count / 10;
    let clock = Instant::now();
    let echo = std::thread::spawn(move || -> Result<Vec<[i64; 2]>, shmhub::Error> {
        sys::pin_to_cpu(1);
        let mut guest = ShmGuest::attach_path_with_id(&path, peer)?;
        guest.set_wait_strategy(WaitStrategy::Spin);
        let mut marks = Vec::with_capacity(if legs { total as usize } else { 0 });
        for _ in 0..total {
            let Some(r) = guest.receiver().recv(Some(Duration::from_secs(5)))? else {
                return Err(shmhub::Error::Timeout);
            };
            let got = if legs { since(clock) } else { 0 };
            let desc = *r.desc();
            guest.sender().send(desc, r.payload(), None)?;
            if legs {
                marks.push([got, since(clock)]);
            }
        }
        Ok(marks)
    });
    sys::pin_to_cpu(0);
    while host.peers()?[0].state != shmhub::PeerState::Attached {
        std::thread::yield_now();
    }
    let payload = [0x42u8; 32];
    let mut samples = Vec::with_capacity(count as usize);
    let mut host_marks = Vec::with_capacity(if legs { total as usize } else { 0 });
    for i in 0..total {
        let start = Instant::now();
        host.send_with(peer, MsgDesc::new(1, i), &payload, None)?;
        let sent = if legs { since(clock) } else { 0 };
        let same = host
            .receiver(peer)
            .unwrap()
            .recv_with(Some(Duration::from_secs(5)), |back| {
                back.payload() == payload
            })?
            .ok_or("the echo did not come back")?;
        if !same {
            return Err("the echo came back changed".into());
        }
        if legs {
            let started = start.duration_since(clock).as_nanos() as i64;
            host_marks.push([started, sent, since(clock)]);
        }
        if i >= count / 10 {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    let guest_marks = echo.join().map_err(|_| "the echo thread panicked")??;
    let steps = host_marks
        .iter()
        .zip(&guest_marks)
        .skip((count / 10) as usize)
        .map(|(h, g)| [h[0], h[1], g[0], g[1], h[2]])
        .collect();
    Ok((samples, steps))
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let legs = args.next().as_deref() == Some("legs");
    let (samples, steps) = segment_round_trips(count, legs)?;
    if legs {
        let names = [
            "host send",
            "host send start -> guest has it",
            "guest echo send",
            "guest echo sent -> host has it",
        ];
        let spans = [(0, 1), (0, 2), (2, 3), (3, 4)];
        for (name, (from, to)) in names.into_iter().zip(spans) {
            let mut leg: Vec<i64> = steps.iter().map(|s| s[to] - s[from]).collect();
            leg.sort_unstable();
            println!("{name}: p50 {} ns", leg[leg.len() / 2]);
        }
    }
    let (p50, p99) = percentiles(samples);
    let (floor50, floor99) = cache_line_floor(count);
    println!(
        "segment p50 {p50} ns, p99 {p99} ns; cache line p50 {floor50} ns, p99 {floor99} ns; \
         p50 ratio {:.2}",
        p50 as f64 / floor50 as f64
    );
    Ok(())
}
