//! The targets of the performance issue, judged on one run: each is a ratio
//! of two lines of the same run, so that the machine cancels out.

use serde::Serialize;
use shmhub::WaitStrategy;

use super::measurement::{Kind, Measurement, Transport, find};
use super::plan::{CREATE_HUGE, CREATE_SMALL, LIST_SEGMENTS};

/// A target from the performance issue, judged on this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: &'static str,
    /// The measured ratio.
    pub ratio: f64,
    /// The ratio needed.
    pub needed: &'static str,
    /// Whether this run met it.
    pub met: bool,
}

/// Every target whose two lines the run has; a run without, say, a 1 MiB
/// size leaves the 1 MiB target out rather than failing it. Divisors are
/// floored so that a zero measurement cannot make a ratio infinite.
pub fn judge(results: &[Measurement]) -> Vec<Target> {
    let mut targets = Vec::new();
    let p50 = |kind, transport, size| find(results, kind, transport, size).and_then(|m| m.p50_ns);
    let rate = |kind, transport, size| find(results, kind, transport, size).map(|m| m.msgs_per_s);
    let spin_shm = Transport::Shm(WaitStrategy::Spin);
    let floor = p50(Kind::RoundTrip, Transport::Cacheline, 64);
    let spin = p50(Kind::RoundTrip, spin_shm, 32);
    let block = p50(Kind::RoundTrip, Transport::Shm(WaitStrategy::Block), 32);
    let socket = p50(Kind::RoundTrip, Transport::UnixSocket, 32);
    if let (Some(spin), Some(floor)) = (spin, floor) {
        let ratio = spin / floor.max(1.0);
        targets.push(Target {
            name: "32 B round trip p50, spin / cache-line floor",
            ratio,
            needed: "<= 2.5",
            met: ratio <= 2.5,
        });
    }
    if let (Some(spin), Some(socket)) = (spin, socket) {
        let ratio = socket / spin.max(1.0);
        targets.push(Target {
            name: "32 B round trip p50, unix socket / spin",
            ratio,
            needed: ">= 50",
            met: ratio >= 50.0,
        });
    }
    if let (Some(block), Some(socket)) = (block, socket) {
        let ratio = block / socket.max(1.0);
        targets.push(Target {
            name: "32 B round trip p50, block / unix socket",
            ratio,
            needed: "<= 1",
            met: ratio <= 1.0,
        });
    }
    if let (Some(shm), Some(sock)) = (
        rate(Kind::Stream, spin_shm, 32),
        rate(Kind::Stream, Transport::UnixSocket, 32),
    ) {
        let ratio = shm / sock.max(1e-9);
        targets.push(Target {
            name: "32 B stream msgs/s, spin / unix socket",
            ratio,
            needed: ">= 50",
            met: ratio >= 50.0,
        });
    }
    // A created segment is a little larger than asked (header, rings), so
    // its line is found by the size it was asked for, within a tenth.
    let created = |size: u64| {
        results
            .iter()
            .find(|m| m.kind == Kind::Create && (m.size as f64 / size as f64 - 1.0).abs() < 0.1)
            .and_then(|m| m.p50_ns)
    };
    if let (Some(small), Some(huge)) = (created(CREATE_SMALL), created(CREATE_HUGE)) {
        let ratio = huge / small.max(1.0);
        targets.push(Target {
            name: "create p50, 4 GiB / 1 MiB",
            ratio,
            needed: "<= 3",
            met: ratio <= 3.0,
        });
    }
    if let Some(list) = p50(Kind::List, Transport::ListSegments, LIST_SEGMENTS as u64) {
        // A budget, not a ratio of two lines: `ls` of this many segments
        // is held to 50 ms (its floor, reading the headers, is in the table).
        let ratio = list / 50e6;
        targets.push(Target {
            name: "ls of 100 segments p50 / 50 ms",
            ratio,
            needed: "<= 1",
            met: ratio <= 1.0,
        });
    }
    let mib = 1 << 20;
    if let (Some(shm), Some(copy)) = (
        find(results, Kind::Stream, spin_shm, mib),
        find(results, Kind::Copy, Transport::Memcpy, mib),
    ) {
        let ratio = shm.bytes_per_s / copy.bytes_per_s.max(1e-9);
        targets.push(Target {
            name: "1 MiB stream bytes/s, spin / memcpy",
            ratio,
            needed: ">= 0.5",
            met: ratio >= 0.5,
        });
    }
    targets
}
