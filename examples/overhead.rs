//! The CPU cost of each operation on the hot path, in one thread (no
//! cross-core transfer: every line is in this core's cache), so what is
//! measured is the software on top of the hardware: the checks, the
//! copies, the atomics.
//!
//! `cargo run --release --example overhead [ROUNDS]` prints nanoseconds per
//! operation; under `valgrind --tool=callgrind` (with `ROUNDS` small) the
//! same loop gives instructions per operation, which do not move with the
//! machine's load.
use std::time::{Duration, Instant};

use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};

/// Messages per batch: fewer than the ring holds, so that no send waits.
const BATCH: u64 = 1000;
/// Slot payloads per batch: fewer than the pool holds.
const SLOTS: u64 = 60;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let path = std::env::temp_dir().join(format!("overhead-{}.shm", std::process::id()));
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 1024,
        slot_size: 4096,
        slots_per_pool: 64,
        max_payload: 4096,
        heartbeat_interval_ms: 0,
    };
    let mut host = ShmHost::create(&path, config)?;
    let peer = host.reserve_peer()?;
    let mut guest = ShmGuest::attach_path_with_id(&path, peer)?;
    let inline = [1u8; 32];
    let frame = Frame::new(MsgDesc::new(1, 0), vec![1u8; 32]);
    let mut spent = [Duration::ZERO; 5];
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..BATCH {
            host.send_with(peer, MsgDesc::new(1, i), &inline, None)?;
        }
        spent[0] += start.elapsed();
        spent[2] += receive(&mut guest, BATCH)?;
        let start = Instant::now();
        for _ in 0..BATCH {
            host.try_send(peer, &frame)?;
        }
        spent[1] += start.elapsed();
        spent[2] += receive(&mut guest, BATCH)?;
        let start = Instant::now();
        for _ in 0..SLOTS {
            let mut loan = host.loan(peer, 4096, None)?;
            loan.as_mut_slice()[0] = 1;
            host.commit(peer, loan)?;
        }
        spent[3] += start.elapsed();
        spent[4] += receive(&mut guest, SLOTS)?;
    }
    let per = |what: usize, count: u64| spent[what].as_nanos() as f64 / (rounds * count) as f64;
    println!("operation                              ns");
    println!("host send_with, 32 B inline      {:>8.1}", per(0, BATCH));
    println!("host try_send, 32 B inline       {:>8.1}", per(1, BATCH));
    println!(
        "guest recv_in_place, inline      {:>8.1}",
        per(2, 2 * BATCH)
    );
    println!("host loan + commit, slot         {:>8.1}", per(3, SLOTS));
    println!("guest recv_in_place + drop, slot {:>8.1}", per(4, SLOTS));
    Ok(())
}

/// Receives `count` messages in place, reading one byte of each, and
/// returns the time it took.
fn receive(guest: &mut ShmGuest, count: u64) -> Result<Duration, Error> {
    let start = Instant::now();
    for _ in 0..count {
        let received = guest.receiver().recv(None)?.ok_or("nothing queued")?;
        std::hint::black_box(received.payload().first());
    }
    Ok(start.elapsed())
}
