//! `shmhub bench`: round trips and one-way throughput through a segment,
//! measured in one run beside a Unix socket pair, a pipe, a bare shared
//! cache line (the floor) and memcpy, and reported as ratios.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::json;
use shmhub::{
    Frame, MmapRegion, MsgDesc, PeerState, SegmentConfig, ShmHost, WaitStrategy, msg_type, sys,
};

use super::common::{human_bytes, parse_size, print_line, progress_bar, seg_err};
use super::{Outcome, segment_path};
use protocol::{
    CACHELINE_OFFSET, CACHELINE_STOP, ECHO, EXIT, PeerTransport, REPORT, SET_WAIT, SINK, header,
    parse_report, wait_id,
};

pub mod peer;
mod protocol;

const EXAMPLES: &str = "\
Examples:
  shmhub bench                      # the full run (about a minute)
  shmhub bench --quick --json       # a tiny run, for scripts
  shmhub bench --sizes 32,64KiB --scale 3";

/// Arguments of `shmhub bench`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Payload sizes, comma-separated.
    #[arg(long, default_value = "32,4KiB,64KiB,1MiB", value_delimiter = ',', value_parser = parse_size)]
    pub sizes: Vec<u64>,
    /// Multiply every iteration count by this.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Tiny iteration counts: checks that everything runs, measures little.
    #[arg(long)]
    pub quick: bool,
    /// Create the benchmark segment here (default: a fresh name under /dev/shm).
    #[arg(long, value_name = "SEGMENT")]
    pub segment: Option<String>,
    /// Do not pin the two processes to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One measured line.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `round_trip`, `stream` or `copy`.
    pub kind: &'static str,
    /// What carried the bytes.
    pub transport: String,
    /// Payload bytes.
    pub size: u64,
    /// Iterations measured.
    pub iterations: u64,
    /// Round-trip (or copy) percentiles, in nanoseconds.
    pub p50_ns: Option<f64>,
    /// 99th percentile.
    pub p99_ns: Option<f64>,
    /// 99.9th percentile.
    pub p999_ns: Option<f64>,
    /// Messages (or copies) per second.
    pub msgs_per_s: f64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
}

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

struct Plan {
    sizes: Vec<usize>,
    scale: f64,
    quick: bool,
}

impl Plan {
    fn round_trips(&self, size: usize) -> u64 {
        let base = match size {
            0..=64 => 20_000.0,
            65..=8192 => 10_000.0,
            8193..=131_072 => 2_000.0,
            _ => 300.0,
        };
        self.count(base)
    }

    fn stream_messages(&self, size: usize) -> u64 {
        let base = match size {
            0..=64 => 1_000_000.0,
            65..=8192 => 100_000.0,
            8193..=131_072 => 10_000.0,
            _ => 1_000.0,
        };
        self.count(base)
    }

    fn count(&self, base: f64) -> u64 {
        if self.quick {
            (base / 1000.0).clamp(5.0, 200.0) as u64
        } else {
            (base * self.scale).max(5.0) as u64
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64
}

fn round_trip_result(transport: &str, size: usize, mut samples: Vec<u64>) -> Measurement {
    samples.sort_unstable();
    let total: u64 = samples.iter().sum();
    let per_s = if total == 0 {
        0.0
    } else {
        samples.len() as f64 / (total as f64 / 1e9)
    };
    Measurement {
        kind: "round_trip",
        transport: transport.to_string(),
        size: size as u64,
        iterations: samples.len() as u64,
        p50_ns: Some(percentile(&samples, 50.0)),
        p99_ns: Some(percentile(&samples, 99.0)),
        p999_ns: Some(percentile(&samples, 99.9)),
        msgs_per_s: per_s,
        bytes_per_s: per_s * size as f64,
    }
}

fn stream_result(transport: &str, size: usize, messages: u64, elapsed: Duration) -> Measurement {
    let per_s = messages as f64 / elapsed.as_secs_f64().max(1e-9);
    Measurement {
        kind: "stream",
        transport: transport.to_string(),
        size: size as u64,
        iterations: messages,
        p50_ns: None,
        p99_ns: None,
        p999_ns: None,
        msgs_per_s: per_s,
        bytes_per_s: per_s * size as f64,
    }
}

/// Kills a child process that is still running when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Peer {
    fn finish(mut self, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait()? {
                if !status.success() {
                    bail!("the {what} benchmark peer failed ({status})");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the {what} benchmark peer did not exit");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn peer_command(transport: PeerTransport, pin: Option<usize>) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the shmhub binary")?);
    cmd.arg("bench-peer").arg(transport.arg());
    if let Some(cpu) = pin {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    Ok(cmd)
}

/// Runs `shmhub bench`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > (256 << 20)) {
        crate::usage!("--sizes must be between 1 byte and 256MiB each");
    }
    if !(args.scale > 0.0 && args.scale <= 1000.0) {
        crate::usage!("--scale must be in (0, 1000]");
    }
    let plan = Plan {
        sizes: args.sizes.iter().map(|&s| s as usize).collect(),
        scale: args.scale,
        quick: args.quick,
    };
    let cpus = sys::available_cpus();
    let pin = !args.no_pin && cpus >= 2;
    let (host_cpu, peer_cpu) = if pin {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if let Some(cpu) = host_cpu {
        sys::pin_to_cpu(cpu);
    }
    let name = args
        .segment
        .clone()
        .unwrap_or_else(|| format!("shmhub-bench-{}", std::process::id()));
    let path = segment_path(&name)?;
    let modes = [
        WaitStrategy::Spin,
        WaitStrategy::Block,
        WaitStrategy::Adaptive,
    ];
    let phases = plan.sizes.len() as u64 * (1 + modes.len() as u64 + 1 + 2 + 2) + 1;
    // (segment creation is quick and not counted as a phase)
    let bar = progress_bar(phases, "benchmarking");

    let mut results = Vec::new();
    for &size in &plan.sizes {
        bar.set_message(format!("memcpy {}", human_bytes(size as u64)));
        results.push(bench_memcpy(size, &plan));
        bar.inc(1);
    }
    bar.set_message("creating segments");
    results.extend(bench_create(&path, &plan)?);
    bar.set_message("cache line floor");
    results.push(bench_cacheline(&path, &plan, peer_cpu)?);
    bar.inc(1);
    results.extend(bench_shm(&path, &plan, &modes, peer_cpu, &bar)?);
    results.extend(bench_stream_transport(
        "unix socket",
        &plan,
        peer_cpu,
        &bar,
    )?);
    results.extend(bench_stream_transport("pipe", &plan, peer_cpu, &bar)?);
    bar.finish_and_clear();

    let targets = judge(&results);
    if args.json {
        let doc = json!({
            "machine": { "cpus": cpus, "pinned": pin, "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
            "quick": args.quick,
            "results": results,
            "targets": targets,
        });
        print_line(doc)?;
    } else {
        print_report(&results, &targets, cpus, pin)?;
    }
    Ok(Outcome::Done)
}

fn bench_memcpy(size: usize, plan: &Plan) -> Measurement {
    let src = vec![0x5Au8; size];
    let mut dst = vec![0u8; size];
    let iterations = plan.stream_messages(size).max(10);
    let mut samples = Vec::with_capacity(iterations as usize);
    for i in 0..iterations {
        let start = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        samples.push(start.elapsed().as_nanos() as u64);
        dst[0] = i as u8;
    }
    let mut m = round_trip_result("memcpy", size, samples);
    m.kind = "copy";
    m
}

fn bench_cacheline(
    path: &Path,
    plan: &Plan,
    peer_cpu: Option<usize>,
) -> anyhow::Result<Measurement> {
    let file = PathBuf::from(format!("{}.line", path.display()));
    let map = MmapRegion::create(&file, 4096).map_err(|e| seg_err(&file, e))?;
    let result = (|| {
        let region = map.region();
        let word = region
            .atomic_u64(CACHELINE_OFFSET)
            .map_err(|e| seg_err(&file, e.into()))?;
        let peer = Peer(
            peer_command(PeerTransport::Cacheline, peer_cpu)?
                .arg("--segment")
                .arg(&file)
                .stdin(Stdio::null())
                .spawn()
                .context("starting the cache-line peer")?,
        );
        let rounds = plan.round_trips(32);
        let mut samples = Vec::with_capacity(rounds as usize);
        let mut value = 0u64;
        for i in 0..rounds + rounds / 10 {
            let start = Instant::now();
            word.store(value + 1, Ordering::Release);
            let spin_deadline = start + Duration::from_secs(10);
            while word.load(Ordering::Acquire) != value + 2 {
                std::hint::spin_loop();
                if Instant::now() > spin_deadline {
                    bail!("the cache-line peer stopped answering");
                }
            }
            value += 2;
            if i >= rounds / 10 {
                samples.push(start.elapsed().as_nanos() as u64);
            }
        }
        word.store(CACHELINE_STOP, Ordering::Release);
        peer.finish("cache-line")?;
        Ok(round_trip_result("cache line (floor)", 64, samples))
    })();
    drop(map);
    let _ = std::fs::remove_file(&file);
    result
}

/// Sizes of the segments whose creation is timed: 1 MiB and 4 GiB.
const CREATE_SMALL: u64 = 1 << 20;
const CREATE_HUGE: u64 = 4 << 30;

/// A configuration whose segment is `total` bytes plus a few pages of
/// header, rings and metadata: two pools (the host's and one guest's)
/// carry nearly all of it.
fn create_config(total: u64) -> SegmentConfig {
    let per_pool = total / 2;
    let slot_size = per_pool.min(u64::from(shmhub::MAX_SLOT_SIZE)) as u32;
    SegmentConfig {
        max_guests: 1,
        ring_capacity: 64,
        slot_size,
        slots_per_pool: (per_pool / u64::from(slot_size)) as u32,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    }
}

/// Times creating (and removing) a small and a huge segment: creation
/// writes only the header, so the two should cost about the same.
fn bench_create(path: &Path, plan: &Plan) -> anyhow::Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let rounds = if plan.quick { 3 } else { 15 };
    for total in [CREATE_SMALL, CREATE_HUGE] {
        let config = create_config(total);
        let file = PathBuf::from(format!("{}.create", path.display()));
        let mut samples = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            let host = ShmHost::create(&file, config).map_err(|e| seg_err(&file, e))?;
            samples.push(start.elapsed().as_nanos() as u64);
            size = host.layout().total_size;
            drop(host);
        }
        let mut m = round_trip_result("create segment", size as usize, samples);
        m.kind = "create";
        results.push(m);
    }
    Ok(results)
}

fn control(method: u32, id: u64) -> Frame {
    Frame::new(
        MsgDesc {
            msg_type: msg_type::REQUEST,
            method_id: method,
            id,
            ..MsgDesc::default()
        },
        Vec::new(),
    )
}

fn bench_shm(
    path: &Path,
    plan: &Plan,
    modes: &[WaitStrategy],
    peer_cpu: Option<usize>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Measurement>> {
    let largest = plan.sizes.iter().copied().max().unwrap_or(64);
    let slot_size = (largest.div_ceil(64) * 64).max(64) as u32;
    let config = SegmentConfig {
        max_guests: 1,
        ring_capacity: 1024,
        slot_size,
        // Few slots keep the working set of large payloads in cache.
        slots_per_pool: 4,
        max_payload: slot_size,
        heartbeat_interval_ms: 0,
    };
    let mut host = ShmHost::create(path, config).map_err(|e| seg_err(path, e))?;
    let peer_id = host.reserve_peer().map_err(|e| seg_err(path, e))?;
    let peer = Peer(
        peer_command(PeerTransport::Shm, peer_cpu)?
            .arg("--segment")
            .arg(path)
            .arg("--peer-id")
            .arg(peer_id.to_string())
            .stdin(Stdio::null())
            .spawn()
            .context("starting the segment benchmark peer")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.peers().map_err(|e| seg_err(path, e))?[0].state != PeerState::Attached {
        if Instant::now() > deadline {
            bail!("the benchmark guest did not attach");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let timeout = Some(Duration::from_secs(30));
    let mut results = Vec::new();
    for &mode in modes {
        host.set_wait_strategy(mode);
        host.send_timeout(peer_id, &control(SET_WAIT, wait_id(mode)), timeout)
            .map_err(|e| seg_err(path, e))?;
        let transport = format!("shm {}", mode.name());
        for &size in &plan.sizes {
            bar.set_message(format!(
                "{transport} round trip {}",
                human_bytes(size as u64)
            ));
            let rounds = plan.round_trips(size);
            let mut samples = Vec::with_capacity(rounds as usize);
            let inline = Frame::new(
                MsgDesc {
                    method_id: ECHO,
                    ..MsgDesc::default()
                },
                vec![0x42u8; size],
            );
            for i in 0..rounds + rounds / 10 {
                let start = Instant::now();
                if inline.fits_inline() {
                    host.send_timeout(peer_id, &inline, timeout)
                } else {
                    host.loan(peer_id, size, timeout).and_then(|mut loan| {
                        loan.as_mut_slice().fill(i as u8);
                        loan.desc.method_id = ECHO;
                        host.commit(peer_id, loan)
                    })
                }
                .map_err(|e| seg_err(path, e))?;
                let echo = host
                    .recv_from_in_place(peer_id, timeout)
                    .map_err(|e| seg_err(path, e))?
                    .context("the benchmark guest did not answer")?;
                if echo.payload().len() != size {
                    bail!(
                        "echo of {} bytes came back with {}",
                        size,
                        echo.payload().len()
                    );
                }
                drop(echo);
                if i >= rounds / 10 {
                    samples.push(start.elapsed().as_nanos() as u64);
                }
            }
            results.push(round_trip_result(&transport, size, samples));
            bar.inc(1);
        }
    }
    // One-way streaming, spinning on both sides.
    host.set_wait_strategy(WaitStrategy::Spin);
    host.send_timeout(peer_id, &control(SET_WAIT, 0), timeout)
        .map_err(|e| seg_err(path, e))?;
    for &size in &plan.sizes {
        bar.set_message(format!("shm stream {}", human_bytes(size as u64)));
        let messages = plan.stream_messages(size);
        let value = 7u8;
        let start = Instant::now();
        if size <= shmhub::INLINE_CAPACITY {
            let batch: Vec<Frame> = (0..64)
                .map(|_| {
                    Frame::new(
                        MsgDesc {
                            method_id: SINK,
                            ..MsgDesc::default()
                        },
                        vec![value; size],
                    )
                })
                .collect();
            let mut sent = 0u64;
            while sent < messages {
                let n = (messages - sent).min(batch.len() as u64) as usize;
                sent += host
                    .send_batch(peer_id, &batch[..n], timeout)
                    .map_err(|e| seg_err(path, e))? as u64;
            }
        } else {
            for _ in 0..messages {
                let mut loan = host
                    .loan(peer_id, size, timeout)
                    .map_err(|e| seg_err(path, e))?;
                loan.as_mut_slice().fill(value);
                loan.desc.method_id = SINK;
                host.commit(peer_id, loan).map_err(|e| seg_err(path, e))?;
            }
        }
        host.send_timeout(peer_id, &control(REPORT, 0), timeout)
            .map_err(|e| seg_err(path, e))?;
        let report = host
            .recv_from_timeout(peer_id, timeout)
            .map_err(|e| seg_err(path, e))?
            .context("the benchmark guest did not report")?;
        let elapsed = start.elapsed();
        check_report(report.payload(), messages, size, value)?;
        results.push(stream_result("shm spin", size, messages, elapsed));
        bar.inc(1);
    }
    host.send_timeout(peer_id, &control(EXIT, 0), timeout)
        .map_err(|e| seg_err(path, e))?;
    peer.finish("segment")?;
    drop(host);
    Ok(results)
}

fn check_report(payload: &[u8], messages: u64, size: usize, value: u8) -> anyhow::Result<()> {
    let (count, sum) = parse_report(payload)?;
    let expected = messages
        .wrapping_mul(size as u64)
        .wrapping_mul(u64::from(value));
    if count != messages || sum != expected {
        bail!(
            "the receiver saw {count} messages summing to {sum}; sent {messages} summing to {expected}"
        );
    }
    Ok(())
}

fn bench_stream_transport(
    transport: &str,
    plan: &Plan,
    peer_cpu: Option<usize>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Measurement>> {
    let (peer, mut writer, mut reader): (Peer, Box<dyn Write>, Box<dyn Read>) =
        if transport == "pipe" {
            let mut child = peer_command(PeerTransport::Pipe, peer_cpu)?
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the pipe benchmark peer")?;
            let stdin = child.stdin.take().context("the pipe peer has no stdin")?;
            let stdout = child.stdout.take().context("the pipe peer has no stdout")?;
            (Peer(child), Box::new(stdin), Box::new(stdout))
        } else {
            let (ours, theirs) = UnixStream::pair().context("creating a socket pair")?;
            let child = peer_command(PeerTransport::Socket, peer_cpu)?
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                .spawn()
                .context("starting the socket benchmark peer")?;
            (Peer(child), Box::new(ours.try_clone()?), Box::new(ours))
        };
    let mut results = Vec::new();
    for &size in &plan.sizes {
        bar.set_message(format!(
            "{transport} round trip {}",
            human_bytes(size as u64)
        ));
        let rounds = plan.round_trips(size);
        let mut message = header(size, ECHO).to_vec();
        message.resize(8 + size, 0x42);
        let mut echo = vec![0u8; 8 + size];
        let mut samples = Vec::with_capacity(rounds as usize);
        for i in 0..rounds + rounds / 10 {
            let start = Instant::now();
            message[8..].fill(i as u8);
            writer.write_all(&message)?;
            reader.read_exact(&mut echo)?;
            if i >= rounds / 10 {
                samples.push(start.elapsed().as_nanos() as u64);
            }
        }
        results.push(round_trip_result(transport, size, samples));
        bar.inc(1);
    }
    for &size in &plan.sizes {
        bar.set_message(format!("{transport} stream {}", human_bytes(size as u64)));
        let messages = plan.stream_messages(size);
        let value = 7u8;
        let mut message = header(size, SINK).to_vec();
        message.resize(8 + size, 0);
        let start = Instant::now();
        for _ in 0..messages {
            message[8..].fill(value);
            writer.write_all(&message)?;
        }
        writer.write_all(&header(0, REPORT))?;
        let mut report = [0u8; 24];
        reader.read_exact(&mut report)?;
        let elapsed = start.elapsed();
        check_report(&report[8..], messages, size, value)?;
        results.push(stream_result(transport, size, messages, elapsed));
        bar.inc(1);
    }
    writer.write_all(&header(0, EXIT))?;
    drop(writer);
    drop(reader);
    peer.finish(transport)?;
    Ok(results)
}

fn find<'a>(
    results: &'a [Measurement],
    kind: &str,
    transport: &str,
    size: u64,
) -> Option<&'a Measurement> {
    results
        .iter()
        .find(|m| m.kind == kind && m.transport == transport && m.size == size)
}

fn judge(results: &[Measurement]) -> Vec<Target> {
    let mut targets = Vec::new();
    let p50 = |kind, transport, size| find(results, kind, transport, size).and_then(|m| m.p50_ns);
    let rate = |kind, transport, size| find(results, kind, transport, size).map(|m| m.msgs_per_s);
    let floor = p50("round_trip", "cache line (floor)", 64);
    let spin = p50("round_trip", "shm spin", 32);
    let block = p50("round_trip", "shm block", 32);
    let socket = p50("round_trip", "unix socket", 32);
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
        rate("stream", "shm spin", 32),
        rate("stream", "unix socket", 32),
    ) {
        let ratio = shm / sock.max(1e-9);
        targets.push(Target {
            name: "32 B stream msgs/s, spin / unix socket",
            ratio,
            needed: ">= 50",
            met: ratio >= 50.0,
        });
    }
    let created = |size: u64| {
        results
            .iter()
            .find(|m| m.kind == "create" && (m.size as f64 / size as f64 - 1.0).abs() < 0.1)
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
    let mib = 1 << 20;
    if let (Some(shm), Some(copy)) = (
        find(results, "stream", "shm spin", mib),
        find(results, "copy", "memcpy", mib),
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

fn ns(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(v) if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Some(v) => format!("{v:.0} ns"),
    }
}

fn rate_text(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

fn print_report(
    results: &[Measurement],
    targets: &[Target],
    cpus: usize,
    pinned: bool,
) -> anyhow::Result<()> {
    print_line(format_args!(
        "shmhub bench: {cpus} CPUs{}",
        if pinned {
            ", processes pinned to CPUs 0 and 1"
        } else {
            ""
        }
    ))?;
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "kind",
            "transport",
            "size",
            "p50",
            "p99",
            "p99.9",
            "msgs/s",
            "bytes/s",
            "vs socket",
        ]);
    for m in results {
        let socket = find(results, m.kind, "unix socket", m.size);
        let versus = match (m.kind, socket) {
            ("round_trip", Some(s)) => match (s.p50_ns, m.p50_ns) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x faster", a / b),
                _ => "-".into(),
            },
            ("stream", Some(s)) if s.msgs_per_s > 0.0 => {
                format!("{:.1}x", m.msgs_per_s / s.msgs_per_s)
            }
            _ => "-".into(),
        };
        let row = vec![
            Cell::new(m.kind),
            Cell::new(&m.transport),
            Cell::new(human_bytes(m.size)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p50_ns)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p99_ns)).set_alignment(CellAlignment::Right),
            Cell::new(ns(m.p999_ns)).set_alignment(CellAlignment::Right),
            Cell::new(rate_text(m.msgs_per_s)).set_alignment(CellAlignment::Right),
            Cell::new(if m.kind == "create" {
                "-".to_string()
            } else {
                format!("{}/s", human_bytes(m.bytes_per_s as u64))
            })
            .set_alignment(CellAlignment::Right),
            Cell::new(versus).set_alignment(CellAlignment::Right),
        ];
        table.add_row(row);
    }
    print_line(table)?;
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_header(vec!["target", "ratio", "needed", "met"]);
    for target in targets {
        t.add_row(vec![
            target.name.to_string(),
            format!("{:.2}", target.ratio),
            target.needed.to_string(),
            if target.met {
                "yes".into()
            } else {
                "no".into()
            },
        ]);
    }
    print_line(t)?;
    Ok(())
}
