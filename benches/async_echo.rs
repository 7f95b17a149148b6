//! The async API (`shmhub::tokio`) against a tokio `UnixStream`, between
//! this process and a child process, in one run: 32-byte round trips with
//! the waiting side spinning first (the default), the same with the spin
//! turned off on both sides (every wait goes through the readiness
//! descriptor: waker thread, eventfd, epoll), and a one-way stream. Every
//! figure is reported beside the socket's from the same round, and the
//! rounds interleave the transports so that a slow spell of the machine
//! falls on all of them.
//!
//! `cargo bench --features tokio --bench async_echo` (about 20 s on two
//! CPUs); with `SHMHUB_BENCH_QUICK=1`, tiny counts that only check it
//! still runs (about a second), the same table. This process and each
//! child are pinned to two different CPUs (all their threads), as
//! `shmhub bench` pins its two; `SHMHUB_BENCH_PIN=0` leaves them to the
//! scheduler.
//!
//! The child is this binary again, its role named by the environment
//! variable [`ROLE`]; it dies with this process (a parent-death signal),
//! and every wait here has a deadline (a watchdog thread that kills the
//! children and gives up).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmhub::tokio::{AsyncGuest, AsyncHost};
use shmhub::{Error, MsgDesc, PeerId, SegmentConfig, ShmGuest, ShmHost, msg_type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

type BenchResult<T> = Result<T, Box<dyn StdError>>;

/// Names the child's role; unset in the measuring process.
const ROLE: &str = "SHMHUB_ASYNC_ECHO_ROLE";
/// The segment or socket the child connects to.
const TARGET: &str = "SHMHUB_ASYNC_ECHO_TARGET";
/// The child's spin in nanoseconds; unset: the library's default.
const SPIN_NS: &str = "SHMHUB_ASYNC_ECHO_SPIN_NS";
/// How many messages a streaming child sends.
const COUNT: &str = "SHMHUB_ASYNC_ECHO_COUNT";
/// The measuring process's id, which the child checks is its parent.
const PARENT: &str = "SHMHUB_ASYNC_ECHO_PARENT";
/// The CPU the child pins itself to, if set.
const CHILD_CPU: &str = "SHMHUB_ASYNC_ECHO_CPU";

/// Every message, both transports: a shmhub inline payload's full size.
const MSG: usize = 32;
/// The socket stream's frame: a 4-byte length, then the message.
const FRAME: usize = 4 + MSG;
/// What the socket stream's receiver reads into at once.
const READ_BUFFER: usize = 256 * 1024;

/// The child's first message: it is attached and listening.
const HELLO: u16 = 100;
/// Starts a stream.
const GO: u16 = 101;
/// Ends a child.
const QUIT: u16 = 102;

/// How long a handshake or a child's exit may take before the run fails.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long one measurement (one transport, one round) may take.
const MEASUREMENT_DEADLINE: Duration = Duration::from_secs(60);
/// How long a child lives at most, whatever its parent does.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn main() {
    let outcome = match std::env::var(ROLE) {
        Ok(role) => child(&role),
        Err(_) => parent(),
    };
    if let Err(e) = outcome {
        eprintln!("async_echo: {e}");
        cleanup();
        std::process::exit(1);
    }
}

/// Iteration counts of a run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rounds: usize,
    warmup: usize,
    round_trips: usize,
    stream: usize,
}

impl Plan {
    fn from_env() -> Self {
        if std::env::var_os("SHMHUB_BENCH_QUICK").is_some_and(|v| v != "0") {
            Plan {
                rounds: 2,
                warmup: 200,
                round_trips: 2_000,
                stream: 20_000,
            }
        } else {
            Plan {
                rounds: 7,
                warmup: 2_000,
                round_trips: 20_000,
                stream: 200_000,
            }
        }
    }
}

/// What is measured, each in every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Unix,
    ShmSpin,
    ShmNoSpin,
}

impl Transport {
    const ALL: [Transport; 3] = [Transport::Unix, Transport::ShmSpin, Transport::ShmNoSpin];

    /// Its column in the tables.
    fn index(self) -> usize {
        match self {
            Transport::Unix => 0,
            Transport::ShmSpin => 1,
            Transport::ShmNoSpin => 2,
        }
    }

    /// The spin both sides use: `None` for the library's default.
    fn spin(self) -> Option<Duration> {
        match self {
            Transport::ShmNoSpin => Some(Duration::ZERO),
            _ => None,
        }
    }
}

/// Latency percentiles of one measurement, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1] as f64
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
        }
    }
}

/// One round: each transport's round trip and stream rate.
#[derive(Debug, Clone, Copy)]
struct Round {
    trips: [Percentiles; 3],
    msgs_per_s: [f64; 3],
}

/// What the report says about the run besides its rounds.
#[derive(Debug)]
struct RunInfo {
    plan: Plan,
    cpus: usize,
    pinned: Option<(usize, usize)>,
    load_before: String,
    load_after: String,
    took: Duration,
}

fn parent() -> BenchResult<()> {
    let plan = Plan::from_env();
    // Counted before pinning, which narrows what this process may use.
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let pinned = if std::env::var_os("SHMHUB_BENCH_PIN").is_some_and(|v| v == "0") {
        None
    } else {
        pin_apart()
    };
    let _ = PINNED.set(pinned);
    start_watchdog();
    let started = Instant::now();
    let load_before = load_average();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rounds = (0..plan.rounds)
        .map(|r| measure_round(&runtime, plan, r))
        .collect::<BenchResult<Vec<Round>>>()?;
    let info = RunInfo {
        plan,
        cpus,
        pinned,
        load_before,
        load_after: load_average(),
        took: started.elapsed(),
    };
    report(&info, &rounds);
    Ok(())
}

/// Round `r`: every transport's round trips, then every transport's stream.
fn measure_round(runtime: &tokio::runtime::Runtime, plan: Plan, r: usize) -> BenchResult<Round> {
    // Each round starts with the next transport, so that none is always
    // the one measured first (right after the previous round's streams).
    let order: Vec<Transport> = (0..3).map(|i| Transport::ALL[(r + i) % 3]).collect();
    let mut trips = [None; 3];
    let mut msgs_per_s = [0.0; 3];
    for &t in &order {
        arm(format!("the round trips of {t:?}, round {}", r + 1));
        let samples = match t {
            Transport::Unix => runtime.block_on(unix_round_trips(plan))?,
            _ => runtime.block_on(shm_round_trips(plan, t.spin()))?,
        };
        trips[t.index()] = Some(Percentiles::of(samples));
    }
    for &t in &order {
        arm(format!("the stream of {t:?}, round {}", r + 1));
        msgs_per_s[t.index()] = match t {
            Transport::Unix => runtime.block_on(unix_stream(plan))?,
            _ => runtime.block_on(shm_stream(plan, t.spin()))?,
        };
    }
    disarm();
    Ok(Round {
        trips: trips.map(|p| p.expect("every transport measured")),
        msgs_per_s,
    })
}

fn report(info: &RunInfo, rounds: &[Round]) {
    print_header(info);
    print_round_trips(rounds);
    print_streams(rounds);
    let medians = print_ratios(rounds);
    println!();
    let verdict = |ratio: f64| if ratio >= 3.0 { "met" } else { "not met" };
    println!(
        "goal (the issue): shmhub async at least 3 times as fast as the socket: \
         spin p50 {:.2} ({}), p99 {:.2} ({}).",
        medians[0],
        verdict(medians[0]),
        medians[1],
        verdict(medians[1])
    );
    println!(
        "no spin (the descriptor path alone, no goal): p50 {:.2}, p99 {:.2} of the socket's speed.",
        medians[2], medians[3]
    );
    println!("run took {:.1} s.", info.took.as_secs_f64());
}

fn print_header(info: &RunInfo) {
    let plan = info.plan;
    println!();
    println!("async_echo: shmhub::tokio (AsyncHost here, AsyncGuest in a child process) against");
    println!("a tokio UnixStream (echo or sender in a child process), current_thread runtimes,");
    println!(
        "{MSG}-byte messages; {} rounds, transports interleaved; {} round trips each after {} warm-up;",
        plan.rounds, plan.round_trips, plan.warmup
    );
    println!(
        "streams of {} messages one way (socket: one {FRAME}-byte length-prefixed frame per write).",
        plan.stream
    );
    let pinning = match info.pinned {
        Some((here, there)) => {
            format!("pinned: this process to CPU {here}, each child to CPU {there}")
        }
        None => "not pinned".to_owned(),
    };
    println!(
        "{} CPUs, {pinning}; load average before {}, after {}.",
        info.cpus, info.load_before, info.load_after
    );
}

fn print_round_trips(rounds: &[Round]) {
    println!();
    println!("round trip, µs  | unix socket            | shmhub, spin (default) | shmhub, no spin");
    println!(
        "round           |    p50     p90     p99 |    p50     p90     p99 |    p50     p90     p99"
    );
    for (r, round) in rounds.iter().enumerate() {
        let cells: Vec<String> = round
            .trips
            .iter()
            .map(|p| {
                format!(
                    "{:>7.2} {:>7.2} {:>7.2}",
                    p.p50 / 1e3,
                    p.p90 / 1e3,
                    p.p99 / 1e3
                )
            })
            .collect();
        println!("{:<15} | {}", r + 1, cells.join(" | "));
    }
}

fn print_streams(rounds: &[Round]) {
    println!();
    println!("stream, M msgs/s | unix socket | shmhub, spin | shmhub, no spin");
    for (r, round) in rounds.iter().enumerate() {
        let [u, s, n] = round.msgs_per_s.map(|m| m / 1e6);
        println!("{:<16} | {u:>11.3} | {s:>12.3} | {n:>15.3}", r + 1);
    }
}

/// Prints each round's ratios to the socket of the same round and their
/// medians; returns the medians (round trip spin p50, p99, no spin p50,
/// p99; stream spin, no spin).
fn print_ratios(rounds: &[Round]) -> [f64; 6] {
    println!();
    println!("ratios to the same round's socket, above 1: shmhub is faster");
    println!("(round trips: unix / shmhub; streams: msgs/s, shmhub / unix)");
    println!("                 | round trip, spin | round trip, no spin | stream");
    println!("round            |     p50      p99 |      p50       p99  |     spin   no spin");
    let ratios: Vec<[f64; 6]> = rounds
        .iter()
        .map(|round| {
            let [unix, spin, no_spin] = round.trips;
            let [unix_rate, spin_rate, no_spin_rate] = round.msgs_per_s;
            [
                unix.p50 / spin.p50,
                unix.p99 / spin.p99,
                unix.p50 / no_spin.p50,
                unix.p99 / no_spin.p99,
                spin_rate / unix_rate,
                no_spin_rate / unix_rate,
            ]
        })
        .collect();
    let row = |label: &str, v: &[f64; 6]| {
        println!(
            "{label:<16} | {:>7.2}  {:>7.2} | {:>8.2}  {:>8.2}  | {:>8.2}  {:>8.2}",
            v[0], v[1], v[2], v[3], v[4], v[5]
        );
    };
    for (r, v) in ratios.iter().enumerate() {
        row(&(r + 1).to_string(), v);
    }
    let medians: [f64; 6] = std::array::from_fn(|i| median(ratios.iter().map(|v| v[i]).collect()));
    row("median", &medians);
    medians
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

/// Where each side runs (set once, before any child starts).
static PINNED: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();

/// Pins this process to the first CPU it may use and returns it with
/// the second, for the children; `None` (nothing pinned) with fewer than
/// two. Apart, two spinning sides each have a CPU: left to the scheduler
/// on two CPUs, the two event loops were put on one CPU for seconds at a
/// time, and every round trip then took a time slice.
fn pin_apart() -> Option<(usize, usize)> {
    let allowed = rustix::thread::sched_getaffinity(None).ok()?;
    let mut cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| allowed.is_set(cpu));
    let (here, there) = (cpus.next()?, cpus.next()?);
    pin_to(here).ok()?;
    Some((here, there))
}

fn pin_to(cpu: usize) -> BenchResult<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

// ---- the measuring side ----

/// A fresh name for a segment or socket of this run.
fn fresh_path(dir: &Path, kind: &str) -> PathBuf {
    static NEXT: Mutex<u32> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    *next += 1;
    dir.join(format!(
        "shmhub-async-echo-{}-{kind}-{}",
        std::process::id(),
        *next
    ))
}

fn segment_path() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        fresh_path(shm, "segment")
    } else {
        fresh_path(&std::env::temp_dir(), "segment")
    }
}

/// A fresh segment's async host, its file registered for removal, with
/// `spin` if given.
fn shm_host(spin: Option<Duration>) -> BenchResult<(PathBuf, AsyncHost)> {
    let path = segment_path();
    let host = ShmHost::create(&path, SegmentConfig::default())?;
    register_file(&path);
    let mut host = AsyncHost::new(host)?;
    if let Some(spin) = spin {
        host.set_spin(spin);
    }
    Ok((path, host))
}

/// Sends `payload` to `peer` and waits for its echo, `warmup + count`
/// times; the times of the last `count`.
async fn shm_round_trips(plan: Plan, spin: Option<Duration>) -> BenchResult<Vec<u64>> {
    let (path, mut host) = shm_host(spin)?;
    let child = spawn_child("shm-echo", &path, spin, 0)?;
    let peer = shm_hello(&mut host).await?;
    let mut samples = Vec::with_capacity(plan.round_trips);
    let mut payload = [0u8; MSG];
    for i in 0..(plan.warmup + plan.round_trips) as u64 {
        fill(&mut payload, i);
        let start = Instant::now();
        host.send(peer, MsgDesc::new(msg_type::REQUEST, i), &payload)
            .await?;
        let echo = host.recv_from(peer).await?;
        let took = start.elapsed();
        if echo.payload() != payload || echo.desc().id != i {
            return Err(format!("round trip {i}: the echo is not what was sent").into());
        }
        if i >= plan.warmup as u64 {
            samples.push(took.as_nanos() as u64);
        }
    }
    host.send(peer, MsgDesc::new(QUIT, 0), &[]).await?;
    child.finish()?;
    drop(host);
    forget_file(&path);
    Ok(samples)
}

/// Has the child stream `plan.stream` messages and receives them all;
/// messages per second from the go to the last message.
async fn shm_stream(plan: Plan, spin: Option<Duration>) -> BenchResult<f64> {
    let (path, mut host) = shm_host(spin)?;
    let child = spawn_child("shm-stream", &path, spin, plan.stream)?;
    let peer = shm_hello(&mut host).await?;
    let mut expected = [0u8; MSG];
    let start = Instant::now();
    host.send(peer, MsgDesc::new(GO, 0), &[]).await?;
    for i in 0..plan.stream as u64 {
        let msg = host.recv_from(peer).await?;
        fill(&mut expected, i);
        if msg.payload() != expected {
            return Err(format!("stream message {i}: not what was sent").into());
        }
    }
    let rate = plan.stream as f64 / start.elapsed().as_secs_f64();
    host.send(peer, MsgDesc::new(QUIT, 0), &[]).await?;
    child.finish()?;
    drop(host);
    forget_file(&path);
    Ok(rate)
}

/// Waits for the child's hello; its entry.
async fn shm_hello(host: &mut AsyncHost) -> BenchResult<PeerId> {
    let (peer, hello) = tokio::time::timeout(HANDSHAKE, host.recv())
        .await
        .map_err(|_| "the child did not attach")??;
    if hello.desc().msg_type != HELLO {
        return Err("the child's first message is not its hello".into());
    }
    Ok(peer)
}

/// The socket's round trips, as [`shm_round_trips`].
async fn unix_round_trips(plan: Plan) -> BenchResult<Vec<u64>> {
    let (mut stream, child, path) = unix_accept("unix-echo", 0).await?;
    let mut samples = Vec::with_capacity(plan.round_trips);
    let mut payload = [0u8; MSG];
    let mut echo = [0u8; MSG];
    for i in 0..(plan.warmup + plan.round_trips) as u64 {
        fill(&mut payload, i);
        let start = Instant::now();
        stream.write_all(&payload).await?;
        stream.read_exact(&mut echo).await?;
        let took = start.elapsed();
        if echo != payload {
            return Err(format!("round trip {i}: the echo is not what was sent").into());
        }
        if i >= plan.warmup as u64 {
            samples.push(took.as_nanos() as u64);
        }
    }
    // Closing is the child's cue to end.
    drop(stream);
    child.finish()?;
    let _ = std::fs::remove_file(&path);
    forget_file(&path);
    Ok(samples)
}

/// The socket's stream, as [`shm_stream`]: frames read `READ_BUFFER` at
/// a time and taken apart here.
async fn unix_stream(plan: Plan) -> BenchResult<f64> {
    let (mut stream, child, path) = unix_accept("unix-stream", plan.stream).await?;
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut filled = 0;
    let mut next = 0u64;
    let mut expected = [0u8; MSG];
    let start = Instant::now();
    stream.write_all(&[1]).await?;
    while next < plan.stream as u64 {
        let n = stream.read(&mut buffer[filled..]).await?;
        if n == 0 {
            return Err(format!("the socket ended after {next} messages").into());
        }
        filled += n;
        let mut at = 0;
        while filled - at >= FRAME {
            let len = u32::from_le_bytes(buffer[at..at + 4].try_into()?);
            fill(&mut expected, next);
            if len as usize != MSG || buffer[at + 4..at + FRAME] != expected {
                return Err(format!("stream message {next}: not what was sent").into());
            }
            next += 1;
            at += FRAME;
        }
        buffer.copy_within(at..filled, 0);
        filled -= at;
    }
    let rate = plan.stream as f64 / start.elapsed().as_secs_f64();
    drop(stream);
    child.finish()?;
    let _ = std::fs::remove_file(&path);
    forget_file(&path);
    Ok(rate)
}

/// Listens on a fresh socket, starts the child `role` on it and accepts it.
async fn unix_accept(role: &str, count: usize) -> BenchResult<(UnixStream, ChildGuard, PathBuf)> {
    let path = fresh_path(&std::env::temp_dir(), "socket");
    let listener = UnixListener::bind(&path)?;
    register_file(&path);
    let child = spawn_child(role, &path, None, count)?;
    let (stream, _) = tokio::time::timeout(HANDSHAKE, listener.accept())
        .await
        .map_err(|_| "the child did not connect")??;
    Ok((stream, child, path))
}

/// Message `i`'s bytes: its number, then its low byte repeated, so that
/// a message crossed with another or torn is seen.
fn fill(payload: &mut [u8; MSG], i: u64) {
    payload[..8].copy_from_slice(&i.to_le_bytes());
    payload[8..].fill(i as u8);
}

// ---- children, and what keeps them from outliving the run ----

/// A child process that is killed if it has not exited when this drops.
struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Waits (at most `HANDSHAKE`) for the child to exit by itself; an
    /// error unless it exited successfully.
    fn finish(mut self) -> BenchResult<()> {
        let deadline = Instant::now() + HANDSHAKE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the child ended with {status}").into())
                };
            }
            if Instant::now() > deadline {
                return Err("the child did not exit".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let pid = self.child.id();
        lock(&CLEANUP).children.retain(|&p| p != pid);
    }
}

fn spawn_child(
    role: &str,
    target: &Path,
    spin: Option<Duration>,
    count: usize,
) -> BenchResult<ChildGuard> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(ROLE, role)
        .env(TARGET, target)
        .env(COUNT, count.to_string())
        .env(PARENT, std::process::id().to_string())
        .env_remove(SPIN_NS)
        .env_remove(CHILD_CPU)
        .stdin(Stdio::null());
    if let Some(spin) = spin {
        command.env(SPIN_NS, spin.as_nanos().to_string());
    }
    if let Some(Some((_, cpu))) = PINNED.get() {
        command.env(CHILD_CPU, cpu.to_string());
    }
    let child = command.spawn()?;
    lock(&CLEANUP).children.push(child.id());
    Ok(ChildGuard { child })
}

/// What the watchdog removes if the run has to be given up.
#[derive(Default)]
struct Cleanup {
    children: Vec<u32>,
    files: Vec<PathBuf>,
}

static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    children: Vec::new(),
    files: Vec::new(),
});

/// The current measurement and when it must be over.
static DEADLINE: Mutex<Option<(Instant, String)>> = Mutex::new(None);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn register_file(path: &Path) {
    lock(&CLEANUP).files.push(path.to_path_buf());
}

fn forget_file(path: &Path) {
    lock(&CLEANUP).files.retain(|p| p != path);
}

fn arm(what: String) {
    *lock(&DEADLINE) = Some((Instant::now() + MEASUREMENT_DEADLINE, what));
}

fn disarm() {
    *lock(&DEADLINE) = None;
}

/// Kills this run's children and removes its files.
fn cleanup() {
    let cleanup = std::mem::take(&mut *lock(&CLEANUP));
    for pid in cleanup.children {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    for file in cleanup.files {
        let _ = std::fs::remove_file(file);
    }
}

/// Gives up the run (children killed, files removed) once a measurement
/// overruns its deadline: a hung child or a lost wake-up must fail the
/// run, not hang it.
fn start_watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let overdue = lock(&DEADLINE)
                .as_ref()
                .filter(|(deadline, _)| Instant::now() > *deadline)
                .map(|(_, what)| what.clone());
            if let Some(what) = overdue {
                eprintln!(
                    "async_echo: {what} took longer than {MEASUREMENT_DEADLINE:?}; giving up"
                );
                cleanup();
                std::process::exit(2);
            }
        }
    });
}

// ---- the child ----

fn child(role: &str) -> BenchResult<()> {
    // The child must not outlive the measuring process, however that ends.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let parent: u32 = std::env::var(PARENT)?.parse()?;
    if std::os::unix::process::parent_id() != parent {
        return Err("the measuring process ended before the child started".into());
    }
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        eprintln!("async_echo child: still running after {CHILD_LIFETIME:?}; giving up");
        std::process::exit(3);
    });
    if let Ok(cpu) = std::env::var(CHILD_CPU) {
        pin_to(cpu.parse()?)?;
    }
    let target = PathBuf::from(std::env::var(TARGET)?);
    let spin = match std::env::var(SPIN_NS) {
        Ok(ns) => Some(Duration::from_nanos(ns.parse()?)),
        Err(_) => None,
    };
    let count: usize = std::env::var(COUNT)?.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match role {
            "shm-echo" => shm_echo(&target, spin).await,
            "shm-stream" => shm_send_stream(&target, spin, count).await,
            "unix-echo" => unix_echo(&target).await,
            "unix-stream" => unix_send_stream(&target, count).await,
            other => Err(format!("unknown role {other}").into()),
        }
    })
}

async fn shm_attach(target: &Path, spin: Option<Duration>) -> BenchResult<AsyncGuest> {
    let mut guest = AsyncGuest::new(ShmGuest::attach_path(target)?)?;
    if let Some(spin) = spin {
        guest.set_spin(spin);
    }
    guest.send(MsgDesc::new(HELLO, 0), &[]).await?;
    Ok(guest)
}

/// Whether a receive's error is the host's going away (the end of a run).
fn host_ended(e: &Error) -> bool {
    matches!(e, Error::HostGone | Error::HostDied { .. })
}

async fn shm_echo(target: &Path, spin: Option<Duration>) -> BenchResult<()> {
    let mut guest = shm_attach(target, spin).await?;
    loop {
        let msg = match guest.recv().await {
            Ok(msg) => msg,
            Err(e) if host_ended(&e) => return Err("the host ended before its quit".into()),
            Err(e) => return Err(e.into()),
        };
        if msg.desc().msg_type == QUIT {
            return Ok(());
        }
        guest
            .send(
                MsgDesc::new(msg_type::RESPONSE, msg.desc().id),
                msg.payload(),
            )
            .await?;
    }
}

async fn shm_send_stream(target: &Path, spin: Option<Duration>, count: usize) -> BenchResult<()> {
    let mut guest = shm_attach(target, spin).await?;
    if guest.recv().await?.desc().msg_type != GO {
        return Err("expected the go".into());
    }
    let mut payload = [0u8; MSG];
    for i in 0..count as u64 {
        fill(&mut payload, i);
        guest
            .send(MsgDesc::new(msg_type::DATA, i), &payload)
            .await?;
    }
    // Stays attached until the host has it all.
    if guest.recv().await?.desc().msg_type != QUIT {
        return Err("expected the quit".into());
    }
    Ok(())
}

async fn unix_echo(target: &Path) -> BenchResult<()> {
    let mut stream = UnixStream::connect(target).await?;
    let mut message = [0u8; MSG];
    loop {
        match stream.read_exact(&mut message).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        stream.write_all(&message).await?;
    }
}

async fn unix_send_stream(target: &Path, count: usize) -> BenchResult<()> {
    let mut stream = UnixStream::connect(target).await?;
    let mut go = [0u8; 1];
    stream.read_exact(&mut go).await?;
    let mut frame = [0u8; FRAME];
    frame[..4].copy_from_slice(&(MSG as u32).to_le_bytes());
    for i in 0..count as u64 {
        let payload: &mut [u8; MSG] = (&mut frame[4..]).try_into()?;
        fill(payload, i);
        stream.write_all(&frame).await?;
    }
    Ok(())
}
