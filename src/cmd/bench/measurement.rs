//! One measured line: what was measured (kind, transport, size), what came
//! out, and how raw timings become one. Transports write these; the judge
//! and the report only read them, so this file sits below all three.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use shmhub::WaitStrategy;

/// What a line measures. Its snake-case name is both the table's text and
/// the JSON value, which scripts match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A message out and its echo back, timed together.
    RoundTrip,
    /// Many messages one way, timed until the receiver confirms them all.
    Stream,
    /// One memcpy within one process, for comparison.
    Copy,
    /// Creating (and removing) a segment.
    Create,
    /// Listing a directory of segments (`size` is how many).
    List,
}

impl Kind {
    /// The name the table prints; the unit test below holds it to the
    /// JSON's so the two outputs cannot disagree.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RoundTrip => "round_trip",
            Kind::Stream => "stream",
            Kind::Copy => "copy",
            Kind::Create => "create",
            Kind::List => "list",
        }
    }
}

/// Table cells take anything displayable.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What carried the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No second process: a copy within one.
    Memcpy,
    /// No transfer: the segment's creation itself.
    CreateSegment,
    /// `shmhub ls`'s listing of a directory of segments.
    ListSegments,
    /// The least any listing does: read the directory, stat each file and
    /// read its header.
    ReadHeaders,
    /// One bare shared cache line: the floor under any shared-memory round trip.
    Cacheline,
    /// An ideal ring of fixed buffers in a shared file, with no pool and no
    /// descriptor: the floor under any shared-memory stream.
    RingFloor,
    /// Two futex wakes per round trip: the floor under any round trip that
    /// sleeps.
    #[cfg(target_os = "linux")]
    FutexFloor,
    /// A shmhub segment, with both sides waiting this way.
    Shm(WaitStrategy),
    /// A shmhub segment, spinning, with one send and one receive per
    /// message where [`Transport::Shm`] streams small messages in batches.
    ShmUnbatched,
    /// A shmhub segment of this many peer-table entries, spinning, one
    /// guest talking, the host receiving from any guest.
    ShmAnyGuest(u32),
    /// This many guest processes sending to the host at once, the host
    /// receiving from any guest; both sides in the default wait strategy.
    FanIn(u32),
    /// The host sending each of this many guest processes a stream of its
    /// own; both sides in the default wait strategy.
    FanOut(u32),
    /// A Unix stream socket pair.
    UnixSocket,
    /// A pair of pipes.
    Pipe,
}

/// The label is the table's text and the JSON value alike, unchanged from
/// when transports were plain strings.
impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Memcpy => f.write_str("memcpy"),
            Transport::CreateSegment => f.write_str("create segment"),
            Transport::ListSegments => f.write_str("ls segments"),
            Transport::ReadHeaders => f.write_str("read headers (floor)"),
            Transport::Cacheline => f.write_str("cache line (floor)"),
            Transport::RingFloor => f.write_str("ring (floor)"),
            #[cfg(target_os = "linux")]
            Transport::FutexFloor => f.write_str("futex (floor)"),
            Transport::Shm(strategy) => write!(f, "shm {}", strategy.name()),
            Transport::ShmUnbatched => f.write_str("shm spin (unbatched)"),
            Transport::ShmAnyGuest(1) => f.write_str("shm any guest, 1 entry"),
            Transport::ShmAnyGuest(entries) => write!(f, "shm any guest, {entries} entries"),
            Transport::FanIn(1) => f.write_str("shm fan-in, 1 guest"),
            Transport::FanIn(guests) => write!(f, "shm fan-in, {guests} guests"),
            Transport::FanOut(1) => f.write_str("shm fan-out, 1 guest"),
            Transport::FanOut(guests) => write!(f, "shm fan-out, {guests} guests"),
            Transport::UnixSocket => f.write_str("unix socket"),
            Transport::Pipe => f.write_str("pipe"),
        }
    }
}

/// Serialized as its label, so the JSON carries the same text as the table.
impl Serialize for Transport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Transport {
    /// Whether this is one of the floors, which the report compares the
    /// other lines with.
    pub fn is_floor(self) -> bool {
        match self {
            Transport::Cacheline | Transport::RingFloor => true,
            #[cfg(target_os = "linux")]
            Transport::FutexFloor => true,
            _ => false,
        }
    }
}

/// Payload bytes of the cache-line floor's line: the line it bounces.
pub const CACHELINE_SIZE: u64 = 64;
/// Payload bytes of the blocking floor's line: the word each way.
#[cfg(target_os = "linux")]
pub const FUTEX_SIZE: u64 = 4;

/// One measured line.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Round trip, stream, copy or create.
    pub kind: Kind,
    /// What carried the bytes.
    pub transport: Transport,
    /// Payload bytes.
    pub size: u64,
    /// Iterations measured.
    pub iterations: u64,
    /// Round-trip (or copy) percentiles; `None` for a stream, whose
    /// messages overlap in flight.
    #[serde(flatten)]
    pub latency: Option<Latency>,
    /// Messages (or copies) per second.
    pub msgs_per_s: f64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
    /// The host's time on a CPU over the line's wall time, where it was
    /// measured (fan-in and fan-out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<f64>,
    /// Fairness, where it was measured (fan-in): when half the messages
    /// had arrived, the messages received from the least-served guest
    /// still sending over the mean per guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub least_served: Option<f64>,
}

/// A line's percentiles, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50_ns: f64,
    /// The 99th percentile.
    pub p99_ns: f64,
    /// The 99.9th percentile.
    pub p999_ns: f64,
}

impl Measurement {
    /// The median, for a line that has percentiles.
    pub fn p50_ns(&self) -> Option<f64> {
        self.latency.map(|l| l.p50_ns)
    }

    /// A line from one timing per iteration, in nanoseconds: percentiles
    /// need every sample, not just the total.
    pub fn from_samples(
        kind: Kind,
        transport: Transport,
        size: usize,
        mut samples: Vec<u64>,
    ) -> Self {
        samples.sort_unstable();
        let total: u64 = samples.iter().sum();
        let per_s = if total == 0 {
            0.0
        } else {
            samples.len() as f64 / (total as f64 / 1e9)
        };
        Measurement {
            kind,
            transport,
            size: size as u64,
            iterations: samples.len() as u64,
            latency: Some(Latency {
                p50_ns: percentile(&samples, 50.0),
                p99_ns: percentile(&samples, 99.0),
                p999_ns: percentile(&samples, 99.9),
            }),
            msgs_per_s: per_s,
            bytes_per_s: per_s * size as f64,
            host_cpu: None,
            least_served: None,
        }
    }

    /// A stream line: messages in flight overlap, so only the total time
    /// means anything and there are no percentiles.
    pub fn stream(transport: Transport, size: usize, messages: u64, elapsed: Duration) -> Self {
        let per_s = messages as f64 / elapsed.as_secs_f64().max(1e-9);
        Measurement {
            kind: Kind::Stream,
            transport,
            size: size as u64,
            iterations: messages,
            latency: None,
            msgs_per_s: per_s,
            bytes_per_s: per_s * size as f64,
            host_cpu: None,
            least_served: None,
        }
    }
}

/// Times `rounds` round trips, each one call of `round` (given its number,
/// counting from 0, and the instant its timing started), in nanoseconds.
/// Before them, a tenth as many go untimed: they pay for the cold start
/// (caches, first page touches, the peer getting going).
pub fn time_round_trips(
    rounds: u64,
    mut round: impl FnMut(u64, Instant) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u64>> {
    let warm_up = rounds / 10;
    let mut samples = Vec::with_capacity(rounds as usize);
    for i in 0..warm_up + rounds {
        let start = Instant::now();
        round(i, start)?;
        if i >= warm_up {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    Ok(samples)
}

/// The median of `samples` (sorted in place), as a line's p50 is taken.
pub fn median(samples: &mut [u64]) -> f64 {
    samples.sort_unstable();
    percentile(samples, 50.0)
}

/// The cache-line floor's p50 over the round trips timed before the
/// segment's and over those timed after them. On a virtual machine the
/// two CPUs can be moved while a run goes on (onto two threads of one
/// core, where a line costs a fifth as much): then the two differ, and
/// the floor says nothing about the round trips between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloorHalves {
    /// p50 of the half timed before the segment's round trips.
    pub before_ns: f64,
    /// p50 of the half timed after them.
    pub after_ns: f64,
    /// Round trips timed in the smaller half.
    pub samples: usize,
}

impl FloorHalves {
    /// The most the larger half may be over the smaller for the floor to
    /// stand under what was timed between them; quiet runs differ by a few
    /// percent.
    pub const STEADY: f64 = 1.25;

    /// Round trips a half needs for its p50 to say whether the floor moved
    /// (a `--quick` run times a few dozen, whose p50s differ by a third).
    pub const ENOUGH: usize = 1000;

    /// Whether the two halves agree (within [`FloorHalves::STEADY`]), or
    /// are too short to tell.
    pub fn steady(self) -> bool {
        if self.samples < Self::ENOUGH {
            return true;
        }
        let low = self.before_ns.min(self.after_ns);
        let high = self.before_ns.max(self.after_ns);
        high <= low.max(1.0) * Self::STEADY
    }
}

/// The nearest-rank percentile `p` (0 to 100) of sorted samples; 0 when
/// there are none, so that an empty run reports rather than panics.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64
}

/// The floor line a line of `kind` over `transport` at `size` bytes is
/// held against, if it has one: for a stream, the ring of the same size;
/// for a round trip of a message that fits in a descriptor, the bounced
/// cache line when both sides spin, the futex round trip when they sleep
/// (the segment in block mode, a socket, a pipe). Larger round trips and
/// the rest have no floor.
pub fn floor_of(kind: Kind, transport: Transport, size: u64) -> Option<(Transport, u64)> {
    if transport.is_floor() {
        return None;
    }
    match kind {
        // Many guests at once are held against one guest, not a floor.
        Kind::Stream if matches!(transport, Transport::FanIn(_) | Transport::FanOut(_)) => None,
        Kind::Stream => Some((Transport::RingFloor, size)),
        Kind::RoundTrip if size <= shmhub::INLINE_CAPACITY as u64 => match transport {
            Transport::Shm(WaitStrategy::Spin | WaitStrategy::Adaptive)
            | Transport::ShmAnyGuest(_) => Some((Transport::Cacheline, CACHELINE_SIZE)),
            #[cfg(target_os = "linux")]
            Transport::Shm(WaitStrategy::Block) | Transport::UnixSocket | Transport::Pipe => {
                Some((Transport::FutexFloor, FUTEX_SIZE))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The line for `kind` over `transport` at `size` bytes, if the run has
/// one: ratios compare lines of the same kind and size.
pub fn find(
    results: &[Measurement],
    kind: Kind,
    transport: Transport,
    size: u64,
) -> Option<&Measurement> {
    results
        .iter()
        .find(|m| m.kind == kind && m.transport == transport && m.size == size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts read the JSON and people read the table: both must say the
    /// same names as before kinds and transports became enums.
    #[test]
    fn names_in_json_match_the_table_and_the_old_strings() {
        fn same_names<T: fmt::Display + serde::Serialize>(cases: &[(T, &str)]) {
            for (value, name) in cases {
                assert_eq!(value.to_string(), *name);
                assert_eq!(serde_json::to_value(value).unwrap(), *name);
            }
        }
        let kinds = [
            Kind::RoundTrip,
            Kind::Stream,
            Kind::Copy,
            Kind::Create,
            Kind::List,
        ];
        let names = ["round_trip", "stream", "copy", "create", "list"];
        same_names(&std::array::from_fn::<_, 5, _>(|i| (kinds[i], names[i])));
        same_names(&[
            (Transport::Memcpy, "memcpy"),
            (Transport::CreateSegment, "create segment"),
            (Transport::ListSegments, "ls segments"),
            (Transport::ReadHeaders, "read headers (floor)"),
            (Transport::Cacheline, "cache line (floor)"),
            (Transport::RingFloor, "ring (floor)"),
            #[cfg(target_os = "linux")]
            (Transport::FutexFloor, "futex (floor)"),
            (Transport::Shm(WaitStrategy::Spin), "shm spin"),
            (Transport::ShmUnbatched, "shm spin (unbatched)"),
            (Transport::ShmAnyGuest(1), "shm any guest, 1 entry"),
            (Transport::ShmAnyGuest(255), "shm any guest, 255 entries"),
            (Transport::FanIn(1), "shm fan-in, 1 guest"),
            (Transport::FanIn(64), "shm fan-in, 64 guests"),
            (Transport::FanOut(1), "shm fan-out, 1 guest"),
            (Transport::FanOut(255), "shm fan-out, 255 guests"),
            (Transport::Shm(WaitStrategy::Block), "shm block"),
            (Transport::Shm(WaitStrategy::Adaptive), "shm adaptive"),
            (Transport::UnixSocket, "unix socket"),
            (Transport::Pipe, "pipe"),
        ]);
    }

    /// Nearest rank on an odd count picks the middle sample, and an empty
    /// run reports zero rather than panicking.
    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 50.0), 3.0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5], 99.9), 5.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
