//! The readiness descriptor (`shmhub::Readiness`) and the tokio API
//! (`shmhub::tokio`) across real processes: a single-threaded tokio host
//! serving several guest processes at once; a plain epoll loop waiting on
//! the descriptors of two segments; futures dropped at their await point
//! (cancel-safety of receive and send); a process on the other side
//! SIGKILLed while a loop waits; and the descriptor's level triggering,
//! its drain and its room marks.
//!
//! The children are this test binary run again through the harness of
//! `tests/support` ([`Child::spawn`]), each in one of the roles that
//! [`child_entry`] dispatches. Nothing waits without a deadline: every
//! await sits under a `tokio::time::timeout`, every poll of a descriptor
//! has a timeout, the parent kills a child that overstays, and every child
//! arms a watchdog ([`CHILD_WATCHDOG`]) that ends it regardless.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::tokio::{AsyncGuest, AsyncHost};
use shmhub::{
    Ended, Error, Frame, MsgDesc, Party, PeerId, Readiness, SegmentConfig, ShmGuest, ShmHost,
    Timeout, msg_type,
};
use support::fixtures::unix_ns;
use support::traffic::fill_seeded;
use support::{Child, ChildEnv, fail_all, signal};

/// How many messages a child sends or expects.
const COUNT_ENV: &str = "SHMHUB_TEST_COUNT";
/// Which payload stream a child sends ([`payload`]).
const STREAM_ENV: &str = "SHMHUB_TEST_STREAM";
/// A paced sender's messages between two pauses.
const BURST_ENV: &str = "SHMHUB_TEST_BURST";
/// A paced sender's pause between two bursts, in microseconds.
const PAUSE_ENV: &str = "SHMHUB_TEST_PAUSE_US";
/// The file a child announces its attach in, with its peer id.
const ATTACHED_ENV: &str = "SHMHUB_TEST_ATTACHED";
/// The pid of the host process a guest expects to see die.
const HOST_PID_ENV: &str = "SHMHUB_TEST_HOST_PID";

/// How long any single wait (a message, a child's signal, its exit) may
/// take.
const WAIT: Duration = Duration::from_secs(5);
/// How long a whole exchange, or the news of a death, may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// A child that is still running after this long ends itself.
const CHILD_WATCHDOG: Duration = Duration::from_secs(30);
/// How long a descriptor is watched to find it *not* readable: long
/// enough for a wrong wake to show, and a slow machine can only hide one
/// (never invent one).
const QUIET: Duration = Duration::from_millis(50);

/// Payload sizes in turn: one inline, one in a slot.
const SIZES: [usize; 2] = [8, 3000];
/// Id of the message that tells a guest that it may leave.
const DONE_ID: u64 = u64::MAX;
/// How many messages an echoing guest has in flight at most.
const WINDOW: u64 = 4;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Message `i` of stream `stream`: its size alternates between inline and
/// slot-sized, its bytes are seeded by both numbers.
fn payload(stream: u64, i: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; SIZES[(i % SIZES.len() as u64) as usize]];
    fill_seeded((stream << 40) ^ i, &mut bytes);
    bytes
}

/// Checks that a message is number `expected` of `stream`, whole.
fn check_message(stream: u64, expected: u64, desc: &MsgDesc, bytes: &[u8]) -> anyhow::Result<()> {
    check_against(stream, expected, &payload(stream, expected), desc, bytes)
}

/// [`check_message`] with the payload due already made (`want`).
fn check_against(
    stream: u64,
    expected: u64,
    want: &[u8],
    desc: &MsgDesc,
    bytes: &[u8],
) -> anyhow::Result<()> {
    ensure!(
        desc.id == expected,
        "stream {stream}: message {} where {expected} was due (lost, repeated or out of order)",
        desc.id
    );
    ensure!(
        bytes.len() == want.len(),
        "stream {stream}, message {expected}: {} bytes instead of {}",
        bytes.len(),
        want.len()
    );
    if let Some(at) = bytes.iter().zip(want).position(|(a, b)| a != b) {
        bail!("stream {stream}, message {expected}: payload differs at byte {at}");
    }
    Ok(())
}

/// Four guests, slots of 4 KiB (a 3000-byte payload takes one), and the
/// ring and pool sizes a test wants full or not.
fn config(ring_capacity: u32, slots_per_pool: u32) -> SegmentConfig {
    SegmentConfig {
        max_guests: 4,
        ring_capacity,
        slot_size: 4096,
        max_payload: 4096,
        slots_per_pool,
        ..SegmentConfig::default()
    }
}

/// A runtime with one thread: whatever it serves, it serves on the
/// thread that runs it.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a current-thread runtime")
}

/// `fut` with the deadline `within`, as an error naming `what`.
async fn within<T>(
    within: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(within, fut)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: nothing after {within:?}"))
}

/// The kinds of [`interruption`], by `round % INTERRUPTIONS`.
const INTERRUPTIONS: usize = 3;

/// What a cancelling loop races a receive or send against, by turns: a
/// future pending once that wakes its task at once (it wins whenever the
/// other future has to wait at all), tokio's task yield (which lets the
/// reactor look first) and a very short timer.
async fn interruption(round: u64) {
    match round % INTERRUPTIONS as u64 {
        0 => {
            let mut polled = false;
            std::future::poll_fn(|cx| {
                if polled {
                    Poll::Ready(())
                } else {
                    polled = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
        1 => tokio::task::yield_now().await,
        _ => tokio::time::sleep(Duration::from_micros(100)).await,
    }
}

/// Whether `fd` becomes readable within `timeout` (zero: is it now).
fn readable_within(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd the kernel may write, matching
        // the count of 1, and `fd` is borrowed, so open, for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => return false,
            n if n > 0 => {
                assert_eq!(
                    pfd.revents & (libc::POLLERR | libc::POLLNVAL),
                    0,
                    "poll reports an error on the descriptor: {:#x}",
                    pfd.revents
                );
                return pfd.revents & libc::POLLIN != 0;
            }
            _ => {
                let e = std::io::Error::last_os_error();
                assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
            }
        }
    }
}

/// Waits for the file `dir/name` to appear (written with [`signal`]);
/// returns its contents.
fn await_file(dir: &Path, name: &str, within: Duration) -> anyhow::Result<String> {
    let file = dir.join(name);
    let deadline = Instant::now() + within;
    loop {
        if let Ok(contents) = std::fs::read_to_string(&file) {
            return Ok(contents);
        }
        ensure!(
            Instant::now() < deadline,
            "`{name}` did not appear within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// A plain epoll set, as an event loop with no runtime keeps one
// ---------------------------------------------------------------------------

/// An epoll descriptor of the test's own.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> Epoll {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            fd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just returned by epoll_create1; nothing else
        // owns it.
        Epoll(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Watches `fd` for reading, level-triggered, reported with `data`.
    fn add(&self, fd: BorrowedFd<'_>, data: u64) {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: both descriptors are open (one owned, one borrowed) for
        // the call, and `event` is a valid epoll_event the kernel reads.
        let rc = unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut event,
            )
        };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }

    /// The data of the descriptors readable within `timeout`.
    fn wait(&self, timeout: Duration) -> Vec<u64> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `events` is a writable array of as many epoll_events as
        // the count given, for the kernel to fill.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "epoll_wait: {e}");
            return Vec::new();
        }
        events[..n as usize].iter().map(|e| e.u64).collect()
    }
}

// ---------------------------------------------------------------------------
// The child's side
// ---------------------------------------------------------------------------

/// Runs a child role when this binary was started as a child; otherwise
/// (a normal test run) does nothing.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG, |role, env| match role {
        "sync_echo" => child_sync_echo(env),
        "async_echo" => child_async_echo(env),
        "paced_sender" => child_paced_sender(env),
        "late_receiver" => child_late_receiver(env),
        "idle" => child_idle(env),
        "leaver" => child_leaver(env),
        "host_until_killed" => child_host_until_killed(env),
        "awaits_host" => child_awaits_host(env),
        "puppet" => child_puppet(env),
        other => bail!("unknown role {other}"),
    });
}

/// Tells the parent that `guest` is attached, with its peer id, in the
/// file `ATTACHED` names (one per child: several children share the
/// directory).
fn say_attached(env: &ChildEnv, guest: &ShmGuest) -> anyhow::Result<()> {
    let name = env.var(ATTACHED_ENV)?;
    signal(&env.dir, &name, &guest.peer_id().to_string())
}

/// A blocking guest: sends `COUNT` messages of its stream (its peer id),
/// up to [`WINDOW`] ahead of the echoes, and checks every echo.
fn child_sync_echo(env: &ChildEnv) -> anyhow::Result<()> {
    let count: u64 = env.parse(COUNT_ENV)?;
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    let stream = u64::from(guest.peer_id());
    let mut echoed = 0;
    let take_echo = |guest: &mut ShmGuest, echoed: &mut u64| -> anyhow::Result<()> {
        let echo = guest
            .recv_timeout(Some(WAIT))
            .with_context(|| format!("receive echo {echoed}"))?
            .with_context(|| format!("no echo {echoed} in time"))?;
        ensure!(
            echo.desc.msg_type == msg_type::RESPONSE,
            "echo of type {}",
            echo.desc.msg_type
        );
        check_message(stream, *echoed, &echo.desc, echo.payload())?;
        *echoed += 1;
        Ok(())
    };
    for i in 0..count {
        let frame = Frame::new(MsgDesc::new(msg_type::REQUEST, i), payload(stream, i));
        guest
            .send_timeout(&frame, Some(WAIT))
            .with_context(|| format!("send {i}"))?;
        if i + 1 - echoed == WINDOW {
            take_echo(&mut guest, &mut echoed)?;
        }
    }
    while echoed < count {
        take_echo(&mut guest, &mut echoed)?;
    }
    guest.detach().context("detach")?;
    Ok(())
}

/// [`child_sync_echo`] as an `AsyncGuest` in a runtime of its own.
fn child_async_echo(env: &ChildEnv) -> anyhow::Result<()> {
    let count: u64 = env.parse(COUNT_ENV)?;
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    let stream = u64::from(guest.peer_id());
    current_thread().block_on(async move {
        let mut guest = AsyncGuest::new(guest).context("AsyncGuest::new")?;
        let mut echoed = 0u64;
        for i in 0..count {
            let bytes = payload(stream, i);
            within(
                WAIT,
                "send",
                guest.send(MsgDesc::new(msg_type::REQUEST, i), &bytes),
            )
            .await?
            .with_context(|| format!("send {i}"))?;
            while i + 1 - echoed >= WINDOW || (i + 1 == count && echoed < count) {
                let echo = within(WAIT, "echo", guest.recv())
                    .await?
                    .with_context(|| format!("receive echo {echoed}"))?;
                ensure!(
                    echo.desc().msg_type == msg_type::RESPONSE,
                    "echo of type {}",
                    echo.desc().msg_type
                );
                check_message(stream, echoed, echo.desc(), echo.payload())?;
                echoed += 1;
            }
        }
        guest.into_inner().detach().context("detach")?;
        Ok(())
    })
}

/// Sends `COUNT` messages of stream `STREAM` in bursts of `BURST` with
/// pauses of `PAUSE_US` µs between them (blocking), then stays until the
/// host says it is done, so that it leaves only once everything was read.
fn child_paced_sender(env: &ChildEnv) -> anyhow::Result<()> {
    let count: u64 = env.parse(COUNT_ENV)?;
    let stream: u64 = env.parse(STREAM_ENV)?;
    let burst: u64 = env.parse(BURST_ENV)?;
    let pause = Duration::from_micros(env.parse(PAUSE_ENV)?);
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    for i in 0..count {
        let frame = Frame::new(MsgDesc::new(msg_type::DATA, i), payload(stream, i));
        guest
            .send_timeout(&frame, Some(WAIT))
            .with_context(|| format!("send {i}"))?;
        if (i + 1) % burst == 0 {
            std::thread::sleep(pause);
        }
    }
    let done = guest
        .recv_timeout(Some(DEADLINE))
        .context("receive the done message")?
        .context("no done message in time")?;
    ensure!(
        done.desc.id == DONE_ID,
        "message {} instead of done",
        done.desc.id
    );
    guest.detach().context("detach")?;
    Ok(())
}

/// An `AsyncGuest` that receives nothing until the parent writes `start`,
/// then receives `COUNT` messages of stream `STREAM`, racing every receive
/// against [`interruption`], pausing now and then so that the host's ring
/// fills again; then the done message. Reports `received <n> cancelled
/// <m>` in `received`.
fn child_late_receiver(env: &ChildEnv) -> anyhow::Result<()> {
    let count: u64 = env.parse(COUNT_ENV)?;
    let stream: u64 = env.parse(STREAM_ENV)?;
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    say_attached(env, &guest)?;
    await_file(&env.dir, "start", DEADLINE)?;
    let (received, cancelled) = current_thread().block_on(async move {
        let mut guest = AsyncGuest::new(guest).context("AsyncGuest::new")?;
        within(DEADLINE, "receiving everything", async {
            let (mut next, mut cancelled, mut round) = (0u64, 0u64, 0u64);
            loop {
                round += 1;
                tokio::select! {
                    got = guest.recv() => {
                        let msg = got.with_context(|| format!("receive {next}"))?;
                        if msg.desc().id == DONE_ID {
                            break;
                        }
                        check_message(stream, next, msg.desc(), msg.payload())?;
                        next += 1;
                        if next % 16 == 0 {
                            // Blocks the runtime on purpose: the host's
                            // ring fills meanwhile.
                            std::thread::sleep(Duration::from_micros(300));
                        }
                    }
                    () = interruption(round) => cancelled += 1,
                }
            }
            anyhow::Ok((next, cancelled))
        })
        .await?
    })?;
    ensure!(
        received == count,
        "received {received} messages, not {count}"
    );
    signal(
        &env.dir,
        "received",
        &format!("received {received} cancelled {cancelled}"),
    )
}

/// Attaches, says so ([`say_attached`]), and waits to be killed.
fn child_idle(env: &ChildEnv) -> anyhow::Result<()> {
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    say_attached(env, &guest)?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Attaches, says so ([`say_attached`]), and once the parent writes
/// `leave`, detaches and exits.
fn child_leaver(env: &ChildEnv) -> anyhow::Result<()> {
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    say_attached(env, &guest)?;
    await_file(&env.dir, "leave", DEADLINE)?;
    guest.detach().context("detach")
}

/// Creates the segment as its host, says so in `hosting`, and waits to be
/// killed.
fn child_host_until_killed(env: &ChildEnv) -> anyhow::Result<()> {
    let _host = ShmHost::create(&env.path, config(16, 16)).context("create")?;
    signal(&env.dir, "hosting", "")?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An `AsyncGuest` awaiting a receive while its host (pid `HOST_PID`) is
/// killed: the receive must fail with `HostDied` naming that pid. Writes
/// the wall clock at that moment (ns) to `host-died`.
fn child_awaits_host(env: &ChildEnv) -> anyhow::Result<()> {
    let host_pid: u32 = env.parse(HOST_PID_ENV)?;
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    current_thread().block_on(async move {
        let mut guest = AsyncGuest::new(guest).context("AsyncGuest::new")?;
        signal(&env.dir, "waiting", "")?;
        match within(DEADLINE, "the host's death", guest.recv()).await? {
            Err(Error::HostDied { pid }) => {
                let at = unix_ns();
                ensure!(
                    pid == host_pid,
                    "HostDied names pid {pid}, the host was {host_pid}"
                );
                signal(&env.dir, "host-died", &at.to_string())
            }
            Err(e) => bail!("recv failed with {e:?} ({e}), not HostDied"),
            Ok(msg) => bail!(
                "recv returned message {} instead of HostDied",
                msg.desc().id
            ),
        }
    })
}

/// A guest that does what the parent writes to `cmd-<n>`, one command
/// after the other, and answers each in `done-<n>`:
/// `send <count> <size>` (numbered from 0 on, across commands),
/// `take <count>` (receives, and drops at once), `quit` (detaches).
fn child_puppet(env: &ChildEnv) -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    say_attached(env, &guest)?;
    let mut sent = 0u64;
    for n in 0.. {
        let command = await_file(&env.dir, &format!("cmd-{n}"), DEADLINE)?;
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["send", count, size] => {
                let (count, size): (u64, usize) = (count.parse()?, size.parse()?);
                for _ in 0..count {
                    let frame = Frame::new(MsgDesc::new(msg_type::DATA, sent), vec![7u8; size]);
                    guest
                        .send_timeout(&frame, Some(WAIT))
                        .with_context(|| format!("send {sent}"))?;
                    sent += 1;
                }
            }
            ["take", count] => {
                for i in 0..count.parse::<u64>()? {
                    guest
                        .recv_timeout(Some(WAIT))
                        .with_context(|| format!("take {i}"))?
                        .with_context(|| format!("nothing to take ({i})"))?;
                }
            }
            ["quit"] => {
                guest.detach().context("detach")?;
                return Ok(());
            }
            _ => bail!("unknown command {command:?}"),
        }
        signal(&env.dir, &format!("done-{n}"), "")?;
    }
    unreachable!("the commands are counted without end")
}

// ---------------------------------------------------------------------------
// The parent's side
// ---------------------------------------------------------------------------

/// A `puppet` child and the count of the commands given to it.
struct Puppet {
    child: Child,
    dir: std::path::PathBuf,
    commands: u32,
}

impl Puppet {
    fn spawn(path: &Path, dir: &Path) -> (Puppet, PeerId) {
        let (child, peer) = spawn_guest("puppet", "puppet", path, dir, &[]);
        let puppet = Puppet {
            child,
            dir: dir.to_path_buf(),
            commands: 0,
        };
        (puppet, peer)
    }

    /// Has the guest do `command`; returns once it is done.
    fn order(&mut self, command: &str) {
        let n = self.commands;
        self.commands += 1;
        signal(&self.dir, &format!("cmd-{n}"), command).unwrap();
        self.child.await_signal(&format!("done-{n}"), WAIT);
    }

    /// Has the guest detach and exit, and checks that it did.
    fn quit(mut self) {
        signal(&self.dir, &format!("cmd-{}", self.commands), "quit").unwrap();
        self.child.expect_success(WAIT);
    }
}

/// Starts a child in `role` that attaches to `path` as a guest (`name` in
/// messages and in the file it announces itself in); returns it once it
/// is attached, with its peer id.
fn spawn_guest(
    role: &str,
    name: &str,
    path: &Path,
    dir: &Path,
    env: &[(&str, String)],
) -> (Child, PeerId) {
    let announce = format!("attached-{name}");
    let mut env = env.to_vec();
    env.push((ATTACHED_ENV, announce.clone()));
    let mut child = Child::spawn(role, path, dir, &env).named(name);
    let peer = child.await_signal(&announce, WAIT).parse().unwrap();
    (child, peer)
}

/// Whether the host's descriptor becomes readable within `within`.
fn host_readable(ready: &Readiness, within: Duration) -> bool {
    readable_within(ready.as_fd(), within)
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

// One host task on a current-thread runtime (so no thread per guest, nor
// any thread of the runtime's besides the test's own) serves four guest
// processes at once, two blocking and two async, each with messages of
// both placements in flight.
// shm[verify shm.ready.async]
#[test]
fn one_thread_tokio_host_serves_four_guest_processes_at_once() {
    const GUESTS: usize = 4;
    const COUNT: u64 = 300;
    let dir = support::fixtures::tmp();
    let path = dir.path().join("serve.shm");
    let rt = current_thread();
    let mut host = rt
        .block_on(async { AsyncHost::new(ShmHost::create(&path, config(16, 64))?) })
        .unwrap();
    let mut children: Vec<Child> = (0..GUESTS)
        .map(|g| {
            let role = if g % 2 == 0 {
                "sync_echo"
            } else {
                "async_echo"
            };
            Child::spawn(role, &path, dir.path(), &[(COUNT_ENV, COUNT.to_string())])
                .named(format!("guest {g} ({role})"))
        })
        .collect();

    let started = Instant::now();
    let served = rt.block_on(within(DEADLINE, "serving every guest", async {
        let mut next: BTreeMap<PeerId, u64> = BTreeMap::new();
        let mut last_peer = None;
        let mut switches = 0u64;
        for _ in 0..GUESTS as u64 * COUNT {
            let (peer, msg) = host.recv().await.context("host recv")?;
            if last_peer.is_some_and(|p| p != peer) {
                switches += 1;
            }
            last_peer = Some(peer);
            let expected = next.entry(peer).or_insert(0);
            ensure!(
                *expected < COUNT,
                "peer {peer} sent more than {COUNT} messages"
            );
            ensure!(
                msg.desc().msg_type == msg_type::REQUEST,
                "type {}",
                msg.desc().msg_type
            );
            check_message(u64::from(peer), *expected, msg.desc(), msg.payload())?;
            let echo = MsgDesc::new(msg_type::RESPONSE, *expected);
            host.send(peer, echo, msg.payload())
                .await
                .with_context(|| format!("echo {expected} to peer {peer}"))?;
            *expected += 1;
        }
        anyhow::Ok((next, switches))
    }));
    let (next, switches) = match served.and_then(|r| r) {
        Ok(done) => done,
        Err(e) => fail_all(&mut children, &format!("host: {e:#}")),
    };
    let elapsed = started.elapsed();
    assert_eq!(next.len(), GUESTS, "messages came from {next:?}");
    assert!(next.values().all(|&n| n == COUNT), "{next:?}");
    for child in &mut children {
        child.expect_success(WAIT);
    }
    println!(
        "{GUESTS} guests x {COUNT} echoes in {elapsed:?}; the host switched guests {switches} times"
    );
}

// A loop with no runtime waits on the descriptors of two segments at once
// (epoll, level-triggered): each wake is a drain, then receives without
// waiting. The two guests send in bursts at their own pace.
// shm[verify shm.ready.fd]
#[test]
fn plain_epoll_loop_waits_on_two_segments_at_once() {
    const COUNT: u64 = 200;
    let dir = support::fixtures::tmp();
    let mut hosts: Vec<ShmHost> = (0..2)
        .map(|k| ShmHost::create(dir.path().join(format!("seg{k}.shm")), config(16, 16)).unwrap())
        .collect();
    let readies: Vec<Readiness> = hosts.iter().map(|h| h.readiness().unwrap()).collect();
    let epoll = Epoll::new();
    for (k, ready) in readies.iter().enumerate() {
        epoll.add(ready.as_fd(), k as u64);
    }
    // (burst, pause in µs) of each segment's guest: different paces, so
    // that the wakes come from one segment, the other, or both.
    let paces = [(5u64, 2000u64), (17, 7000)];
    let mut children: Vec<Child> = paces
        .iter()
        .enumerate()
        .map(|(k, (burst, pause))| {
            let env = [
                (COUNT_ENV, COUNT.to_string()),
                (STREAM_ENV, (100 + k).to_string()),
                (BURST_ENV, burst.to_string()),
                (PAUSE_ENV, pause.to_string()),
            ];
            let path = hosts[k].path().unwrap().to_path_buf();
            Child::spawn("paced_sender", &path, dir.path(), &env)
                .named(format!("guest of segment {k}"))
        })
        .collect();

    let started = Instant::now();
    let mut next = [0u64; 2];
    let mut peers: [Option<PeerId>; 2] = [None; 2];
    let mut wakes = [0u64; 2];
    while next != [COUNT; 2] {
        if started.elapsed() > DEADLINE {
            fail_all(
                &mut children,
                &format!("after {DEADLINE:?} only {next:?} arrived"),
            );
        }
        for child in &mut children {
            if let Err(e) = child.check_not_failed() {
                fail_all(&mut children, &format!("{e:#}"));
            }
        }
        for k in epoll.wait(Duration::from_millis(100)) {
            let k = k as usize;
            wakes[k] += 1;
            let ended = readies[k].drain().unwrap();
            if !ended.is_empty() {
                fail_all(
                    &mut children,
                    &format!(
                        "segment {k}: {ended:?} ended with {} of {COUNT} sent",
                        next[k]
                    ),
                );
            }
            while let Some((peer, msg)) = hosts[k].any_receiver().recv(Timeout::NoWait).unwrap() {
                peers[k] = Some(peer);
                if let Err(e) = check_message(100 + k as u64, next[k], msg.desc(), msg.payload()) {
                    fail_all(&mut children, &format!("segment {k}: {e:#}"));
                }
                next[k] += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    for (k, host) in hosts.iter_mut().enumerate() {
        let done = Frame::new(MsgDesc::new(msg_type::DATA, DONE_ID), Vec::new());
        host.send_timeout(peers[k].unwrap(), &done, Some(WAIT))
            .unwrap();
    }
    for child in &mut children {
        child.expect_success(WAIT);
    }
    println!("both streams of {COUNT} in {elapsed:?}, with {wakes:?} wakes of the loop");
}

// A receive future dropped at its await point has taken nothing: the host
// races `recv()` against an `interruption` (a self-wake, a task yield, a
// short timer) thousands of times while a guest process sends a numbered
// stream with pauses; every message arrives once, in order.
// shm[verify shm.ready.async]
#[test]
fn receive_futures_dropped_while_waiting_lose_nothing() {
    const COUNT: u64 = 2000;
    const STREAM: u64 = 7;
    let dir = support::fixtures::tmp();
    let path = dir.path().join("cancel-recv.shm");
    let rt = current_thread();
    let mut host = rt
        .block_on(async { AsyncHost::new(ShmHost::create(&path, config(16, 16))?) })
        .unwrap();
    let env = [
        (COUNT_ENV, COUNT.to_string()),
        (STREAM_ENV, STREAM.to_string()),
        (BURST_ENV, "1".to_string()),
        (PAUSE_ENV, "200".to_string()),
    ];
    // Made ahead, so that the host keeps up with the guest and has to
    // wait in every pause.
    let payloads: Vec<Vec<u8>> = (0..COUNT).map(|i| payload(STREAM, i)).collect();
    let mut child = Child::spawn("paced_sender", &path, dir.path(), &env);

    let started = Instant::now();
    let outcome = rt.block_on(within(DEADLINE, "receiving the stream", async {
        let (mut next, mut round, mut cancelled) = (0u64, 0u64, [0u64; INTERRUPTIONS]);
        let mut peer = None;
        while next < COUNT {
            round += 1;
            // Half the stream without the spin: the future goes straight
            // to its await point.
            host.set_spin(if next < COUNT / 2 {
                Duration::from_micros(20)
            } else {
                Duration::ZERO
            });
            tokio::select! {
                got = host.recv() => {
                    let (from, msg) = got.with_context(|| format!("receive {next}"))?;
                    peer = Some(from);
                    let want = &payloads[next as usize];
                    check_against(STREAM, next, want, msg.desc(), msg.payload())?;
                    next += 1;
                }
                () = interruption(round) => cancelled[round as usize % INTERRUPTIONS] += 1,
            }
        }
        let peer = peer.context("no message at all")?;
        host.send(peer, MsgDesc::new(msg_type::DATA, DONE_ID), &[])
            .await
            .context("send done")?;
        anyhow::Ok(cancelled)
    }));
    let [by_wake, by_yield, by_timer] = match outcome.and_then(|r| r) {
        Ok(cancelled) => cancelled,
        Err(e) => child.fail(&format!("host: {e:#}")),
    };
    let elapsed = started.elapsed();
    child.expect_success(WAIT);
    println!(
        "{COUNT} messages in {elapsed:?}; receives dropped while waiting: {by_wake} for a self-wake, {by_yield} for a yield, {by_timer} for a timer"
    );
    assert!(
        by_wake + by_yield + by_timer > 0,
        "no receive was ever dropped while waiting: the test tested nothing"
    );
}

// A send future dropped while it waits for room (the guest receives
// nothing yet, then slowly) has sent the message whole or not at all: the
// host retries the same message after each drop, and the guest, itself
// dropping its receives again and again, finds every number exactly once.
// shm[verify shm.ready.async]
#[test]
fn send_futures_dropped_while_waiting_for_room_send_whole_or_nothing() {
    const COUNT: u64 = 2000;
    const STREAM: u64 = 9;
    // Drops of a waiting send before the guest starts receiving: until
    // then the ring (8) or the pool (4 slots) is full, so each is certain.
    const DROPS_BEFORE_START: u64 = 500;
    let dir = support::fixtures::tmp();
    let path = dir.path().join("cancel-send.shm");
    let rt = current_thread();
    let mut host = rt
        .block_on(async { AsyncHost::new(ShmHost::create(&path, config(8, 4))?) })
        .unwrap();
    let env = [
        (COUNT_ENV, COUNT.to_string()),
        (STREAM_ENV, STREAM.to_string()),
    ];
    let (mut child, peer) = spawn_guest("late_receiver", "receiver", &path, dir.path(), &env);
    let payloads: Vec<Vec<u8>> = (0..COUNT).map(|i| payload(STREAM, i)).collect();

    let started = Instant::now();
    let outcome = rt.block_on(within(DEADLINE, "sending the stream", async {
        let (mut next, mut round, mut dropped) = (0u64, 0u64, 0u64);
        while next < COUNT {
            round += 1;
            let desc = MsgDesc::new(msg_type::DATA, next);
            tokio::select! {
                sent = host.send(peer, desc, &payloads[next as usize]) => {
                    sent.with_context(|| format!("send {next}"))?;
                    next += 1;
                }
                () = interruption(round) => {
                    dropped += 1;
                    if dropped == DROPS_BEFORE_START {
                        signal(dir.path(), "start", "")?;
                    }
                }
            }
        }
        ensure!(
            dropped >= DROPS_BEFORE_START,
            "only {dropped} sends dropped"
        );
        host.send(peer, MsgDesc::new(msg_type::DATA, DONE_ID), &[])
            .await
            .context("send done")?;
        anyhow::Ok(dropped)
    }));
    let dropped = match outcome.and_then(|r| r) {
        Ok(dropped) => dropped,
        Err(e) => child.fail(&format!("host: {e:#}")),
    };
    let elapsed = started.elapsed();
    child.expect_success(WAIT);
    let report = child.await_signal("received", WAIT);
    assert_eq!(
        report.split_whitespace().nth(1),
        Some(COUNT.to_string().as_str()),
        "the guest reports {report:?}"
    );
    println!(
        "{COUNT} messages in {elapsed:?}; sends dropped while waiting for room: {dropped}; guest: {report}"
    );
}

// The host awaits `recv()` with no message coming while the guest's
// process is SIGKILLed: the receive fails with `PeerDied` naming the guest
// and its pid, and says so once.
// shm[verify shm.ready.death]
// shm[verify shm.ready.async]
#[test]
fn async_host_awaiting_recv_learns_of_a_killed_guest() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("guest-dies.shm");
    let rt = current_thread();
    let mut host = rt
        .block_on(async { AsyncHost::new(ShmHost::create(&path, config(16, 16))?) })
        .unwrap();
    let (mut child, peer) = spawn_guest("idle", "guest", &path, dir.path(), &[]);
    let pid = child.pid();

    let ((outcome, returned_at), killed_at) = rt.block_on(async {
        let waiting = async {
            let outcome = tokio::time::timeout(DEADLINE, host.recv()).await;
            (outcome, Instant::now())
        };
        let killing = async {
            // Long enough for the receive to be parked on the descriptor.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let at = Instant::now();
            child.kill();
            at
        };
        tokio::join!(waiting, killing)
    });
    match outcome {
        Ok(Err(Error::PeerDied { peer_id, pid: died })) => {
            assert_eq!(
                (peer_id, died),
                (peer, pid),
                "PeerDied names the wrong guest"
            );
        }
        Ok(Err(e)) => panic!(
            "recv failed with {e:?} ({e}), not PeerDied\n{}",
            child.output()
        ),
        Ok(Ok((from, msg))) => panic!("recv returned a message {msg:?} from {from}"),
        Err(_) => panic!("recv still waiting {DEADLINE:?} after the guest was killed"),
    }
    println!(
        "PeerDied {:?} after the SIGKILL",
        returned_at.saturating_duration_since(killed_at)
    );

    // Told once: the next receive has no second death to report.
    let again =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(200), host.recv()).await });
    match again {
        Ok(Err(Error::PeerDied { peer_id, pid })) => {
            panic!("the death of peer {peer_id} (pid {pid}) was reported twice")
        }
        Ok(Ok((from, msg))) => panic!("a message {msg:?} from {from} after the death"),
        Ok(Err(e)) => println!("the next receive: {e:?}"),
        Err(_) => println!("the next receive: still waiting after 200 ms"),
    }
}

// A guest that detaches and then exits while the host awaits `recv()`
// has not died: the receive goes on waiting (another guest stays
// attached, so the host is not left without guests).
// shm[verify shm.ready.async]
#[test]
fn async_host_does_not_report_a_guest_that_detached_as_dead() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("guest-leaves.shm");
    let rt = current_thread();
    let mut host = rt
        .block_on(async { AsyncHost::new(ShmHost::create(&path, config(16, 16))?) })
        .unwrap();
    let (mut stayer, _) = spawn_guest("idle", "staying guest", &path, dir.path(), &[]);
    let (mut leaver, peer) = spawn_guest("leaver", "leaving guest", &path, dir.path(), &[]);
    // Past the waker's periodic look for processes (50 ms), so that the
    // leaving guest's process is watched before it leaves.
    std::thread::sleep(Duration::from_millis(100));

    // The receive is watched until a while after the guest's process
    // has ended: it must not return in all that time.
    let left = rt.block_on(async {
        let leaving = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            signal(dir.path(), "leave", "").unwrap();
            let deadline = Instant::now() + WAIT;
            let status = loop {
                if let Some(status) = leaver.poll() {
                    break status;
                }
                assert!(Instant::now() < deadline, "the guest did not leave");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            status
        };
        tokio::select! {
            got = host.recv() => match got {
                Err(Error::PeerDied { peer_id, pid }) => panic!(
                    "peer {peer_id} (pid {pid}) detached before it exited, yet recv reports it dead (the guest that left was {peer})"
                ),
                Err(e) => panic!("recv failed with {e:?} ({e})"),
                Ok((from, msg)) => panic!("recv returned a message {msg:?} from {from}"),
            },
            status = leaving => status,
        }
    });
    assert!(left.success(), "{}", leaver.output());
    stayer.kill();
}

// A guest awaiting `recv()` while its host's process is SIGKILLed gets
// `HostDied` naming the host's pid (both are child processes here).
// shm[verify shm.ready.death]
// shm[verify shm.ready.async]
#[test]
fn async_guest_awaiting_recv_learns_of_a_killed_host() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("host-dies.shm");
    let mut host = Child::spawn("host_until_killed", &path, dir.path(), &[]).named("host");
    host.await_signal("hosting", WAIT);
    let env = [(HOST_PID_ENV, host.pid().to_string())];
    let mut guest = Child::spawn("awaits_host", &path, dir.path(), &env).named("guest");
    guest.await_signal("waiting", WAIT);
    // Long enough for the receive to be parked on the descriptor.
    std::thread::sleep(Duration::from_millis(100));
    let killed_at = unix_ns();
    host.kill();
    guest.expect_success(DEADLINE + WAIT);
    let told_at: u64 = guest.await_signal("host-died", WAIT).parse().unwrap();
    println!(
        "HostDied {:.3} ms after the SIGKILL",
        told_at.saturating_sub(killed_at) as f64 / 1e6
    );
}

// The bare descriptor of a host: a SIGKILL of the guest's process makes it
// readable, and the drain names the guest and its pid, once.
// shm[verify shm.ready.death]
// shm[verify shm.ready.fd]
#[test]
fn descriptor_turns_readable_when_a_guest_process_is_killed() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("fd-death.shm");
    let host = ShmHost::create(&path, config(16, 16)).unwrap();
    let (mut child, peer) = spawn_guest("idle", "guest", &path, dir.path(), &[]);
    let pid = child.pid();
    // Made once the guest is there, so that its process is watched from
    // the start.
    let ready = host.readiness().unwrap();
    assert_eq!(
        ready.drain().unwrap(),
        [],
        "a process ended before the kill"
    );
    assert!(
        !host_readable(&ready, QUIET),
        "readable with nothing queued and nobody dead"
    );

    let killed_at = Instant::now();
    child.kill();
    assert!(
        host_readable(&ready, DEADLINE),
        "not readable {DEADLINE:?} after the guest was killed"
    );
    let latency = killed_at.elapsed();
    let ended = ready.drain().unwrap();
    assert_eq!(
        ended,
        [Ended {
            party: Party::Guest(peer),
            pid,
            goodbye: false,
        }]
    );
    println!("readable {latency:?} after the SIGKILL");

    // Reported once: the descriptor may wake again, but says nothing new.
    if host_readable(&ready, Duration::from_millis(200)) {
        assert_eq!(ready.drain().unwrap(), [], "the death was reported twice");
    }
}

// A guest process that died before the descriptor was made is reported by
// the first drain, and only by it.
// shm[verify shm.ready.death]
#[test]
fn a_guest_dead_before_the_descriptor_is_reported_once() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("fd-dead-before.shm");
    let host = ShmHost::create(&path, config(16, 16)).unwrap();
    let (mut child, peer) = spawn_guest("idle", "guest", &path, dir.path(), &[]);
    let pid = child.pid();
    child.kill();

    let ready = host.readiness().unwrap();
    assert!(host_readable(&ready, WAIT), "the dead guest is not told");
    assert_eq!(
        ready.drain().unwrap(),
        [Ended {
            party: Party::Guest(peer),
            pid,
            goodbye: false,
        }]
    );
    // Longer than the waker's look for processes (50 ms), a few times.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        if host_readable(&ready, Duration::from_millis(50)) {
            assert_eq!(ready.drain().unwrap(), [], "the death was reported again");
        }
    }
}

// The same through the async host: a guest process that died before the
// `AsyncHost` was made fails one receive with `PeerDied`; the next waits
// (another guest stays attached, so the host is not left without guests).
// shm[verify shm.ready.death]
// shm[verify shm.ready.async]
#[test]
fn async_host_reports_a_guest_dead_before_it_once() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("dead-before-async.shm");
    let host = ShmHost::create(&path, config(16, 16)).unwrap();
    let (mut stayer, _) = spawn_guest("idle", "staying guest", &path, dir.path(), &[]);
    let (mut dead, peer) = spawn_guest("idle", "killed guest", &path, dir.path(), &[]);
    let pid = dead.pid();
    dead.kill();

    current_thread().block_on(async {
        let mut host = AsyncHost::new(host).unwrap();
        match tokio::time::timeout(DEADLINE, host.recv()).await {
            Ok(Err(Error::PeerDied { peer_id, pid: died })) => {
                assert_eq!(
                    (peer_id, died),
                    (peer, pid),
                    "PeerDied names the wrong guest"
                );
            }
            other => panic!("the first receive: {other:?}, not PeerDied"),
        }
        match tokio::time::timeout(Duration::from_millis(300), host.recv()).await {
            Err(_) => {}
            Ok(Err(Error::PeerDied { peer_id, pid })) => {
                panic!("the death of peer {peer_id} (pid {pid}) was reported again")
            }
            Ok(other) => panic!("the second receive: {other:?}"),
        }
    });
    stayer.kill();
}

// Level-triggered: readable until drained, whoever looks how often, even
// once everything is taken; after a drain readable again at once while
// something is still queued; not readable once drained and empty.
// shm[verify shm.ready.fd]
#[test]
fn descriptor_is_level_triggered_until_drained() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("level.shm");
    let mut host = ShmHost::create(&path, config(16, 16)).unwrap();
    let ready = host.readiness().unwrap();
    let (mut puppet, peer) = Puppet::spawn(&path, dir.path());
    let take = |host: &mut ShmHost, id: u64| {
        let (from, msg) = host
            .any_receiver()
            .recv(Timeout::NoWait)
            .unwrap()
            .unwrap_or_else(|| panic!("message {id} is not queued"));
        assert_eq!((from, msg.desc().id), (peer, id));
    };

    assert!(
        !host_readable(&ready, QUIET),
        "readable with nothing queued"
    );
    puppet.order("send 2 8");
    assert!(
        host_readable(&ready, WAIT),
        "two messages queued, not readable"
    );
    for _ in 0..3 {
        assert!(
            host_readable(&ready, Duration::ZERO),
            "readable once, then not before a drain"
        );
    }
    assert_eq!(ready.drain().unwrap(), []);
    assert!(
        host_readable(&ready, WAIT),
        "drained with two queued: not readable again"
    );
    take(&mut host, 0);
    assert!(
        host_readable(&ready, Duration::ZERO),
        "not drained, yet no longer readable"
    );
    assert_eq!(ready.drain().unwrap(), []);
    assert!(
        host_readable(&ready, WAIT),
        "drained with one queued: not readable again"
    );
    take(&mut host, 1);
    assert!(
        host_readable(&ready, Duration::ZERO),
        "everything taken but not drained: no longer readable"
    );
    assert_eq!(ready.drain().unwrap(), []);
    assert!(
        !host_readable(&ready, QUIET),
        "drained and empty, yet readable"
    );
    assert!(host.any_receiver().recv(Timeout::NoWait).unwrap().is_none());

    // A message after the drain wakes it again.
    puppet.order("send 1 3000");
    assert!(
        host_readable(&ready, WAIT),
        "a new message after the drain is not told"
    );
    assert_eq!(ready.drain().unwrap(), []);
    take(&mut host, 2);
    puppet.quit();
}

// A room mark taken before a send that found no room (a full ring, then
// an exhausted pool) makes the descriptor readable once the guest's
// process takes a message, and not before.
// shm[verify shm.ready.fd]
#[test]
fn room_mark_makes_the_descriptor_readable_once_room_comes() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("room.shm");
    // Ring of 8, pool of 4 slots: eight inline messages fill the ring,
    // four slot-sized ones the pool.
    let mut host = ShmHost::create(&path, config(8, 4)).unwrap();
    let ready = host.readiness().unwrap();
    let (mut puppet, peer) = Puppet::spawn(&path, dir.path());

    // Sends `size`-byte messages until one finds no room; hands that
    // send's mark to the descriptor. Returns how many went.
    let fill = |host: &mut ShmHost, size: usize| -> u64 {
        let sender = host.sender(peer).unwrap();
        for sent in 0..64 {
            let mark = sender.room_mark().unwrap();
            match sender.send(
                MsgDesc::new(msg_type::DATA, sent),
                &vec![3u8; size],
                Timeout::NoWait,
            ) {
                Ok(()) => {}
                Err(
                    Error::RingFull { .. }
                    | Error::PoolExhausted { .. }
                    | Error::ShareExhausted { .. },
                ) => {
                    ready.tell_when_room(mark);
                    return sent;
                }
                Err(e) => panic!("send {sent}: {e:?} ({e})"),
            }
        }
        panic!("64 messages sent to a guest that receives nothing");
    };

    for (what, size) in [("ring", 8usize), ("pool", 3000)] {
        let sent = fill(&mut host, size);
        assert!(sent > 0, "{what}: no room for even one message");
        assert!(
            !host_readable(&ready, QUIET),
            "{what}: readable with no room come and nothing queued"
        );
        let asked_at = Instant::now();
        puppet.order("take 1");
        assert!(host_readable(&ready, WAIT), "{what}: room came, not told");
        let latency = asked_at.elapsed();
        assert_eq!(ready.drain().unwrap(), []);
        host.sender(peer)
            .unwrap()
            .send(
                MsgDesc::new(msg_type::DATA, 99),
                &vec![3u8; size],
                Timeout::NoWait,
            )
            .unwrap_or_else(|e| panic!("{what}: told of room, yet no room: {e}"));
        println!(
            "{what}: full after {sent}; told of room within {latency:?} of asking the guest to take one"
        );
        // Empty again for the next round.
        puppet.order(&format!("take {sent}"));
        assert!(
            !host_readable(&ready, QUIET),
            "{what}: readable, told twice"
        );
    }
    puppet.quit();
}
