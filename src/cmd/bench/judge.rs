//! The targets of the performance issue, judged on one run: each is a ratio
//! of a line to the floor under it, measured in the same run on the same
//! two CPUs, so that the machine cancels out.

use serde::Serialize;
use shmhub::WaitStrategy;

#[cfg(target_os = "linux")]
use super::measurement::FUTEX_SIZE;
use super::measurement::{CACHELINE_SIZE, FloorHalves, Kind, Measurement, Transport, find};
use super::plan::{ANY_GUEST_ENTRIES, CREATE_HUGE, CREATE_SMALL, LIST_SEGMENTS};
use super::protocol::FAN_SIZE;

/// A target from the performance issue, judged on this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is compared.
    pub name: &'static str,
    /// The measured ratio.
    pub ratio: f64,
    /// The ratio needed, as `<= 1.6` or `>= 0.8`.
    pub needed: String,
    /// Whether this run met it.
    pub met: bool,
    /// Why this run cannot say, when it cannot (the target is then not
    /// met); absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Which way a target's ratio must go.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// No more than this (a time over its floor).
    AtMost(f64),
    /// At least this (a rate over its floor).
    AtLeast(f64),
}

impl Need {
    /// Judges `ratio`.
    fn target(self, name: &'static str, ratio: f64) -> Target {
        let (needed, met) = match self {
            Need::AtMost(limit) => (format!("<= {limit}"), ratio <= limit),
            Need::AtLeast(limit) => (format!(">= {limit}"), ratio >= limit),
        };
        Target {
            name,
            ratio,
            needed,
            met,
            note: None,
        }
    }
}

impl Target {
    /// This target, not met whatever its ratio, because of `why`.
    fn unjudged(self, why: String) -> Target {
        Target {
            met: false,
            note: Some(why),
            ..self
        }
    }
}

/// The stream targets: at each size, the segment's messages per second
/// over the ring floor's at the same size. The batched and the unbatched
/// 32 B streams both have one.
const STREAM_TARGETS: [(&str, Transport, u64, Need); 5] = [
    (
        "32 B stream msgs/s, batched / ring floor",
        Transport::Shm(WaitStrategy::Spin),
        32,
        Need::AtLeast(0.8),
    ),
    (
        "32 B stream msgs/s, unbatched / ring floor",
        Transport::ShmUnbatched,
        32,
        Need::AtLeast(0.5),
    ),
    (
        "4 KiB stream bytes/s, spin / ring floor",
        Transport::Shm(WaitStrategy::Spin),
        4 << 10,
        Need::AtLeast(0.8),
    ),
    (
        "64 KiB stream bytes/s, spin / ring floor",
        Transport::Shm(WaitStrategy::Spin),
        64 << 10,
        Need::AtLeast(0.95),
    ),
    (
        "1 MiB stream bytes/s, spin / ring floor",
        Transport::Shm(WaitStrategy::Spin),
        1 << 20,
        Need::AtLeast(0.95),
    ),
];

/// The fan targets, per guest count: fan-in's and fan-out's messages per
/// second over the same with one guest of the same run (at least half),
/// and fan-in's fairness (the least-served guest at half-time over the
/// mean, at least half).
const FAN_TARGETS: [(u32, &str, &str, &str); 3] = [
    (
        8,
        "fan-in msgs/s, 8 guests / 1 guest",
        "fan-out msgs/s, 8 guests / 1 guest",
        "fan-in least-served guest / mean, 8 guests",
    ),
    (
        64,
        "fan-in msgs/s, 64 guests / 1 guest",
        "fan-out msgs/s, 64 guests / 1 guest",
        "fan-in least-served guest / mean, 64 guests",
    ),
    (
        255,
        "fan-in msgs/s, 255 guests / 1 guest",
        "fan-out msgs/s, 255 guests / 1 guest",
        "fan-in least-served guest / mean, 255 guests",
    ),
];

/// Every target whose lines the run has; a run without, say, a 1 MiB size
/// leaves the 1 MiB target out rather than failing it, and a system
/// without futexes leaves out the blocking one. Every ratio but the
/// listing budget and creation is over a floor measured in the same run on
/// the same two CPUs. Divisors are floored so that a zero measurement
/// cannot make a ratio infinite. The spinning round trip is held against
/// the cache-line floor only if the floor's two halves (`halves`, timed
/// before and after the segment's round trips) agree.
pub fn judge(results: &[Measurement], halves: FloorHalves) -> Vec<Target> {
    let mut targets = round_trip_targets(results, halves);
    targets.extend(stream_targets(results));
    targets.extend(life_cycle_targets(results));
    targets
}

/// The round trips' targets: over the cache-line and futex floors, and
/// against each other.
fn round_trip_targets(results: &[Measurement], halves: FloorHalves) -> Vec<Target> {
    let mut targets = Vec::new();
    let line = |kind, transport, size| find(results, kind, transport, size);
    let p50 = |kind, transport, size| line(kind, transport, size).and_then(|m| m.p50_ns());
    let spin_shm = Transport::Shm(WaitStrategy::Spin);
    let spin = line(Kind::RoundTrip, spin_shm, 32);
    if let (Some(spin), Some(floor)) = (
        spin.and_then(|m| m.p50_ns()),
        p50(Kind::RoundTrip, Transport::Cacheline, CACHELINE_SIZE),
    ) {
        let target = Need::AtMost(1.6).target(
            "32 B round trip p50, spin / cache-line floor",
            spin / floor.max(1.0),
        );
        targets.push(if halves.steady() {
            target
        } else {
            target.unjudged(format!(
                "the floor moved during the run ({:.0} ns before the segment's round trips, \
                 {:.0} ns after): something changed under the two CPUs (a virtual machine's \
                 can be moved, other work can come and go); run again",
                halves.before_ns, halves.after_ns
            ))
        });
    }
    if let Some((p50, p99)) = spin.and_then(|m| m.latency.map(|l| (l.p50_ns, l.p99_ns))) {
        targets
            .push(Need::AtMost(3.0).target("32 B round trip p99 / p50, spin", p99 / p50.max(1.0)));
    }
    #[cfg(target_os = "linux")]
    if let (Some(block), Some(floor)) = (
        p50(Kind::RoundTrip, Transport::Shm(WaitStrategy::Block), 32),
        p50(Kind::RoundTrip, Transport::FutexFloor, FUTEX_SIZE),
    ) {
        targets.push(Need::AtMost(1.2).target(
            "32 B round trip p50, block / futex floor",
            block / floor.max(1.0),
        ));
    }
    if let (Some(adaptive), Some(spin)) = (
        p50(Kind::RoundTrip, Transport::Shm(WaitStrategy::Adaptive), 32),
        spin.and_then(|m| m.p50_ns()),
    ) {
        targets.push(Need::AtMost(1.2).target(
            "32 B round trip p50, adaptive / spin",
            adaptive / spin.max(1.0),
        ));
    }
    let [one, full] =
        ANY_GUEST_ENTRIES.map(|entries| p50(Kind::RoundTrip, Transport::ShmAnyGuest(entries), 32));
    if let (Some(one), Some(full)) = (one, full) {
        targets.push(Need::AtMost(1.2).target(
            "32 B round trip p50 from any guest, 255 entries / 1 entry",
            full / one.max(1.0),
        ));
    }
    targets
}

/// The streams' targets: over the ring floor, and fan-in and fan-out
/// with many guests against one.
fn stream_targets(results: &[Measurement]) -> Vec<Target> {
    let mut targets = Vec::new();
    let line = |kind, transport, size| find(results, kind, transport, size);
    for (name, transport, size, need) in STREAM_TARGETS {
        if let (Some(shm), Some(floor)) = (
            line(Kind::Stream, transport, size),
            line(Kind::Stream, Transport::RingFloor, size),
        ) {
            targets.push(need.target(name, shm.msgs_per_s / floor.msgs_per_s.max(1e-9)));
        }
    }
    let fan = |transport| line(Kind::Stream, transport, FAN_SIZE as u64);
    for (guests, fan_in, fan_out, fair) in FAN_TARGETS {
        for (name, one, many) in [
            (fan_in, Transport::FanIn(1), Transport::FanIn(guests)),
            (fan_out, Transport::FanOut(1), Transport::FanOut(guests)),
        ] {
            if let (Some(one), Some(many)) = (fan(one), fan(many)) {
                let ratio = many.msgs_per_s / one.msgs_per_s.max(1e-9);
                targets.push(Need::AtLeast(0.5).target(name, ratio));
            }
        }
        if let Some(least) = fan(Transport::FanIn(guests)).and_then(|m| m.least_served) {
            targets.push(Need::AtLeast(0.5).target(fair, least));
        }
    }
    targets
}

/// Creating segments and listing them.
fn life_cycle_targets(results: &[Measurement]) -> Vec<Target> {
    let mut targets = Vec::new();
    // A created segment is a little larger than asked (header, rings), so
    // its line is found by the size it was asked for, within a tenth.
    let created = |size: u64| {
        results
            .iter()
            .find(|m| m.kind == Kind::Create && (m.size as f64 / size as f64 - 1.0).abs() < 0.1)
            .and_then(|m| m.p50_ns())
    };
    if let (Some(small), Some(huge)) = (created(CREATE_SMALL), created(CREATE_HUGE)) {
        targets.push(Need::AtMost(3.0).target("create p50, 4 GiB / 1 MiB", huge / small.max(1.0)));
    }
    let list = find(
        results,
        Kind::List,
        Transport::ListSegments,
        LIST_SEGMENTS as u64,
    );
    if let Some(list) = list.and_then(|m| m.p50_ns()) {
        // A budget, not a ratio of two lines: `ls` of this many segments
        // is held to 50 ms (its floor, reading the headers, is in the table).
        targets.push(Need::AtMost(1.0).target("ls of 100 segments p50 / 50 ms", list / 50e6));
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::super::measurement::Latency;
    use super::*;

    /// A line with only what the judge reads.
    fn line(kind: Kind, transport: Transport, size: u64, p50: f64, rate: f64) -> Measurement {
        Measurement {
            kind,
            transport,
            size,
            iterations: 1,
            latency: Some(Latency {
                p50_ns: p50,
                p99_ns: p50 * 2.0,
                p999_ns: p50 * 4.0,
            }),
            msgs_per_s: rate,
            bytes_per_s: rate * size as f64,
            host_cpu: None,
            least_served: None,
        }
    }

    /// Many guests are held against one guest of the same run, and a
    /// guest count the run left out leaves its targets out.
    #[test]
    fn fan_targets_are_ratios_to_one_guest() {
        let fan_in = |guests, rate, least| Measurement {
            least_served: least,
            ..line(Kind::Stream, Transport::FanIn(guests), 32, 0.0, rate)
        };
        let results = [
            fan_in(1, 1e6, None),
            fan_in(8, 0.5e6, Some(0.9)),
            line(Kind::Stream, Transport::FanOut(1), 32, 0.0, 1e6),
            line(Kind::Stream, Transport::FanOut(8), 32, 0.0, 0.4e6),
            // 64 guests without a fan-out line: only the fan-in targets.
            fan_in(64, 0.2e6, Some(0.3)),
        ];
        let steady = FloorHalves {
            before_ns: 200.0,
            after_ns: 200.0,
            samples: 0,
        };
        let targets = judge(&results, steady);
        let judged: Vec<(&str, f64, bool)> =
            targets.iter().map(|t| (t.name, t.ratio, t.met)).collect();
        assert_eq!(
            judged,
            [
                ("fan-in msgs/s, 8 guests / 1 guest", 0.5, true),
                ("fan-out msgs/s, 8 guests / 1 guest", 0.4, false),
                ("fan-in least-served guest / mean, 8 guests", 0.9, true),
                ("fan-in msgs/s, 64 guests / 1 guest", 0.2, false),
                ("fan-in least-served guest / mean, 64 guests", 0.3, false),
            ]
        );
    }

    /// Ratios are over the floors of the same run, limits are inclusive,
    /// and a size the run left out leaves its targets out.
    #[test]
    fn targets_are_ratios_to_the_floors_and_missing_sizes_are_left_out() {
        let spin = Transport::Shm(WaitStrategy::Spin);
        let results = [
            line(Kind::RoundTrip, Transport::Cacheline, 64, 200.0, 0.0),
            line(Kind::RoundTrip, spin, 32, 320.0, 0.0),
            line(
                Kind::RoundTrip,
                Transport::Shm(WaitStrategy::Adaptive),
                32,
                400.0,
                0.0,
            ),
            line(Kind::Stream, Transport::RingFloor, 4096, 0.0, 1e6),
            line(Kind::Stream, spin, 4096, 0.0, 0.79e6),
            line(Kind::RoundTrip, Transport::ShmAnyGuest(1), 32, 300.0, 0.0),
            line(Kind::RoundTrip, Transport::ShmAnyGuest(255), 32, 360.0, 0.0),
        ];
        let steady = FloorHalves {
            before_ns: 190.0,
            after_ns: 210.0,
            samples: FloorHalves::ENOUGH,
        };
        let targets = judge(&results, steady);
        let found = |name: &str| targets.iter().find(|t| t.name == name).unwrap();
        let floor = found("32 B round trip p50, spin / cache-line floor");
        assert_eq!((floor.ratio, floor.met, &floor.note), (1.6, true, &None));
        assert_eq!(floor.needed, "<= 1.6");
        assert!(found("32 B round trip p99 / p50, spin").met);
        assert!(!found("32 B round trip p50, adaptive / spin").met);
        let stream = found("4 KiB stream bytes/s, spin / ring floor");
        assert!(!stream.met && (stream.ratio - 0.79).abs() < 1e-9);
        assert_eq!(stream.needed, ">= 0.8");
        // The table's size, at its limit.
        let any = found("32 B round trip p50 from any guest, 255 entries / 1 entry");
        assert_eq!(
            (any.ratio, any.met, any.needed.as_str()),
            (1.2, true, "<= 1.2")
        );
        // No 32 B or 1 MiB stream, no futex floor, no creation, no listing.
        assert_eq!(targets.len(), 5, "{targets:?}");

        // A floor whose halves disagree judges nothing: the same ratio is
        // not met, and the note says why, with both halves.
        let moved = FloorHalves {
            before_ns: 41.0,
            after_ns: 212.0,
            samples: FloorHalves::ENOUGH,
        };
        assert!(!moved.steady() && steady.steady());
        // A `--quick` run's few round trips cannot tell.
        let short = FloorHalves {
            samples: FloorHalves::ENOUGH - 1,
            ..moved
        };
        assert!(short.steady());
        let targets = judge(&results, moved);
        let floor = targets.iter().find(|t| t.name == floor.name).unwrap();
        assert_eq!((floor.ratio, floor.met), (1.6, false));
        let note = floor.note.as_deref().unwrap();
        assert!(
            note.contains("41 ns before") && note.contains("212 ns after"),
            "{note}"
        );
        // The others do not lean on that floor.
        assert!(targets.iter().filter(|t| t.note.is_some()).count() == 1);
    }
}
