//! Measures the CPU cost of one send and one receive in a single thread
//! (no cross-core transfer): the software overhead on top of the hardware.
use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost, WaitStrategy};
use std::time::{Duration, Instant};

fn main() {
    let dir = std::env::temp_dir().join(format!("overhead-{}.shm", std::process::id()));
    let mut host = ShmHost::create(&dir, SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach_path(&dir).unwrap();
    host.set_wait_strategy(WaitStrategy::Spin);
    guest.set_wait_strategy(WaitStrategy::Spin);
    let p = guest.peer_id();
    let desc = MsgDesc::default();
    let payload = [7u8; 32];
    let n = 1_000_000;
    let t = Instant::now();
    for _ in 0..n {
        host.send_with(p, desc, &payload, Some(Duration::from_secs(1)))
            .unwrap();
        let r = guest
            .recv_in_place(Some(Duration::from_secs(1)))
            .unwrap()
            .unwrap();
        std::hint::black_box(r.payload());
        drop(r);
        guest
            .send_with(desc, &payload, Some(Duration::from_secs(1)))
            .unwrap();
        let r = host
            .recv_from_in_place(p, Some(Duration::from_secs(1)))
            .unwrap()
            .unwrap();
        std::hint::black_box(r.payload());
    }
    println!(
        "{:?} per round trip (4 operations, one thread)",
        t.elapsed() / n
    );
}
