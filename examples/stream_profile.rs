//! A one-way stream between two threads pinned to two CPUs, for profiling
//! (`perf record -g`): the host sends `COUNT` messages of `SIZE` bytes,
//! filled in place through a loan (or, for inline sizes, one `send_with`
//! each), and the guest receives each in place and sums its bytes.
//!
//! `cargo run --release --example stream_profile -- SIZE COUNT [batched]`
//! (defaults: 4096 bytes, 2,000,000 messages). With `batched`, the guest
//! takes up to 32 messages per `recv_batch`, and inline sizes are sent 64
//! frames per `send_batch`, as `bench`'s batched stream does.
use std::time::{Duration, Instant};

use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, WaitStrategy, sys};

/// Sums every byte, as `shmhub bench`'s receiver does (u32 lanes: it
/// vectorizes).
fn byte_sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(1 << 16)
        .map(|chunk| u64::from(chunk.iter().map(|&b| u32::from(b)).sum::<u32>()))
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let count: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let batched = args.next().as_deref() == Some("batched");
    let path = std::env::temp_dir().join(format!("stream-profile-{}.shm", std::process::id()));
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 1024,
        slot_size: size.max(64).next_multiple_of(64) as u32,
        slots_per_pool: 64,
        max_payload: size.max(64) as u32,
        heartbeat_interval_ms: 0,
    };
    let mut host = ShmHost::create(&path, config)?;
    host.set_wait_strategy(WaitStrategy::Spin);
    let peer = host.reserve_peer()?;
    let guest_path = path.clone();
    let receiver = std::thread::spawn(move || -> Result<u64, shmhub::Error> {
        sys::pin_to_cpu(1);
        let mut guest = ShmGuest::attach_path_with_id(&guest_path, peer)?;
        guest.set_wait_strategy(WaitStrategy::Spin);
        let mut sum = 0u64;
        let mut got = 0;
        while got < count {
            if batched {
                let n = guest
                    .receiver()
                    .recv_batch(32, Duration::from_secs(5), |r| {
                        sum = sum.wrapping_add(byte_sum(r.payload()));
                    })?;
                if n == 0 {
                    return Err(shmhub::Error::Timeout);
                }
                got += n as u64;
                continue;
            }
            let Some(r) = guest.receiver().recv(Duration::from_secs(5))? else {
                return Err(shmhub::Error::Timeout);
            };
            sum = sum.wrapping_add(byte_sum(r.payload()));
            got += 1;
        }
        Ok(sum)
    });
    sys::pin_to_cpu(0);
    while host.peers()?[0].state != shmhub::PeerState::Attached {
        std::thread::yield_now();
    }
    let start = Instant::now();
    let inline = [1u8; 32];
    if batched && size <= 32 {
        let frames = vec![Frame::new(MsgDesc::new(1, 0), inline[..size].to_vec()); 64];
        let mut sent = 0u64;
        while sent < count {
            let n = (count - sent).min(frames.len() as u64) as usize;
            sent += host.send_batch(peer, &frames[..n], None)? as u64;
        }
    } else {
        for i in 0..count {
            if size <= 32 {
                host.send_with(peer, MsgDesc::new(1, i), &inline[..size], None)?;
            } else {
                let mut loan = host.loan(peer, size, None)?;
                loan.as_mut_slice().fill(i as u8);
                loan.desc = MsgDesc::new(1, i);
                host.commit(peer, loan)?;
            }
        }
    }
    let sum = receiver.join().map_err(|_| "the receiver panicked")??;
    let elapsed = start.elapsed();
    println!(
        "{size} B: {:.2} M msg/s, {:.2} GB/s (sum {sum})",
        count as f64 / elapsed.as_secs_f64() / 1e6,
        (count * size as u64) as f64 / elapsed.as_secs_f64() / 1e9
    );
    Ok(())
}
