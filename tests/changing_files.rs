//! Files that change under you: a segment truncated, replaced or removed by
//! another process while `create --hold`, `attach --hold`, `recv --follow`
//! (as the host and as a guest) or `inspect` has it mapped. The command
//! reports it and exits 1, with a stderr line starting `error:` that names
//! the path; it never dies of SIGBUS (or any other signal), and it never
//! touches a file that replaced its own.
//!
//! Every command is a real process of the binary, started on a segment in
//! a temporary directory (bare names resolve there through
//! `SHMHUB_SHM_DIR`). Every wait is bounded, and children are killed when
//! a test fails.

use std::fs::{File, OpenOptions};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmhub::{SegmentConfig, ShmHost};

const BIN: &str = env!("CARGO_BIN_EXE_shmhub");
/// Name of the segment under test (a bare name: resolved in the directory).
const SEG: &str = "seg";
/// How long a held command may take to get ready, and to exit once its
/// file changed.
const BOUND: Duration = Duration::from_secs(5);
/// Small segments: quick to create and to copy.
const SMALL: &[&str] = &[
    "--max-guests",
    "2",
    "--ring-size",
    "8",
    "--slot-size",
    "4KiB",
    "--slots",
    "4",
];

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("shmhub-changing-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(SEG)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("SHMHUB_SHM_DIR", self.dir.path())
            .env_remove("RUST_BACKTRACE")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs a short command to completion (bounded) and requires exit 0.
    fn ok(&self, args: &[&str]) -> String {
        let mut held = self.spawn(args);
        let status = held.wait_exit(BOUND);
        assert_eq!(
            status.code(),
            Some(0),
            "shmhub {args:?}: {status:?}; stderr {:?}",
            held.stderr()
        );
        held.stdout()
    }

    /// Starts a command with stdout and stderr going to files.
    fn spawn(&self, args: &[&str]) -> Held {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.path().join(format!("out.{n}.stdout"));
        let err = self.dir.path().join(format!("out.{n}.stderr"));
        let child = self
            .command(args)
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("spawn shmhub");
        Held {
            args: args.iter().map(|s| s.to_string()).collect(),
            child: Some(child),
            out,
            err,
        }
    }
}

/// A running command; killed and reaped if the test ends first.
struct Held {
    args: Vec<String>,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Held {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until stdout contains `needle`; fails if the command exits
    /// first or `BOUND` passes.
    fn wait_for_output(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            if self.stdout().contains(needle) {
                return;
            }
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "shmhub {:?} exited ({status:?}) before printing {needle:?}; stdout {:?}, stderr {:?}",
                    self.args,
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < BOUND,
                "shmhub {:?} did not print {needle:?} within {BOUND:?}; stdout {:?}, stderr {:?}",
                self.args,
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit; kills the command and fails after `bound`.
    fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if start.elapsed() > bound {
                let _ = child.kill();
                let status = child.wait();
                self.child = None;
                panic!(
                    "shmhub {:?} still running {bound:?} after its file changed (killed: {status:?}); stdout {:?}, stderr {:?}",
                    self.args,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What happens to the file.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Cut to 100 bytes: even the header is gone.
    TruncateTiny,
    /// Cut to one page: the header stays, rings and pools are gone.
    TruncateToHeader,
    /// Removed, and another valid segment written at the path.
    ReplaceWithSegment,
    /// Removed, and as many bytes of garbage written at the path.
    ReplaceWithGarbage,
    /// Removed (unlinked) without `rm`: nobody was asked to leave.
    Remove,
}

const CHANGES: [Change; 5] = [
    Change::TruncateTiny,
    Change::TruncateToHeader,
    Change::ReplaceWithSegment,
    Change::ReplaceWithGarbage,
    Change::Remove,
];

/// Applies `change` to the file at `path`; returns the bytes of the file
/// that replaced it, if any.
fn apply(change: Change, path: &Path, scratch: &Path) -> Option<Vec<u8>> {
    let truncate = |len: u64| {
        OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open for truncation")
            .set_len(len)
            .expect("truncate");
    };
    match change {
        Change::TruncateTiny => {
            truncate(100);
            None
        }
        Change::TruncateToHeader => {
            truncate(4096);
            None
        }
        Change::ReplaceWithSegment => {
            let other = scratch.join("other.shm");
            let _ = std::fs::remove_file(&other);
            let host = ShmHost::create(
                &other,
                SegmentConfig {
                    max_guests: 3,
                    ring_capacity: 4,
                    slot_size: 256,
                    slots_per_pool: 2,
                    max_payload: 256,
                    heartbeat_interval_ms: 0,
                },
            )
            .expect("create the replacement");
            host.persist().expect("persist the replacement");
            let bytes = std::fs::read(&other).expect("read the replacement");
            std::fs::remove_file(&other).unwrap();
            std::fs::remove_file(path).expect("remove");
            std::fs::write(path, &bytes).expect("write the replacement");
            Some(bytes)
        }
        Change::ReplaceWithGarbage => {
            let len = std::fs::metadata(path).expect("stat").len() as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            std::fs::remove_file(path).expect("remove");
            std::fs::write(path, &bytes).expect("write the garbage");
            Some(bytes)
        }
        Change::Remove => {
            std::fs::remove_file(path).expect("remove");
            None
        }
    }
}

/// The held commands, each started and made ready on a fresh segment.
#[derive(Debug, Clone, Copy)]
enum Holder {
    CreateHold,
    AttachHold,
    RecvFollowHost,
    RecvFollowGuest,
}

fn with_small<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend_from_slice(SMALL);
    v
}

/// Starts `holder` on a fresh segment `SEG` in `env` and waits until it is
/// in its loop (it printed what it prints first, or a message sent to it).
fn start(env: &Env, holder: Holder) -> Held {
    match holder {
        Holder::CreateHold => {
            let mut held = env.spawn(&with_small(&["create", SEG, "--hold"]));
            held.wait_for_output("created");
            // It serves: a guest's message reaches it.
            let peer = env.ok(&["attach", SEG]);
            env.ok(&["send", SEG, "--as", peer.trim(), "ready"]);
            held.wait_for_output("ready");
            held
        }
        Holder::AttachHold => {
            env.ok(&with_small(&["create", SEG]));
            let mut held = env.spawn(&["attach", SEG, "--hold"]);
            held.wait_for_output("1");
            env.ok(&["send", SEG, "--as", "host", "--to", "1", "ready"]);
            held.wait_for_output("ready");
            held
        }
        Holder::RecvFollowHost => {
            env.ok(&with_small(&["create", SEG]));
            let peer = env.ok(&["attach", SEG]);
            let mut held = env.spawn(&["recv", SEG, "--as", "host", "--follow"]);
            env.ok(&["send", SEG, "--as", peer.trim(), "ready"]);
            held.wait_for_output("ready");
            held
        }
        Holder::RecvFollowGuest => {
            env.ok(&with_small(&["create", SEG]));
            let peer = env.ok(&["attach", SEG]);
            let mut held = env.spawn(&["recv", SEG, "--as", peer.trim(), "--follow"]);
            env.ok(&["send", SEG, "--as", "host", "--to", peer.trim(), "ready"]);
            held.wait_for_output("ready");
            held
        }
    }
}

/// One held command, one change: exit 1, `error:` naming the path and
/// saying what happened to the file, no signal, and a replacing file left
/// as it was written. Returns what went wrong, if anything.
fn scenario(holder: Holder, change: Change) -> Result<(), String> {
    let env = Env::new();
    let mut held = start(&env, holder);
    let path = env.path();
    let started = Instant::now();
    let replacement = apply(change, &path, env.dir.path());
    let status = held.wait_exit(BOUND);
    let elapsed = started.elapsed();
    let stderr = held.stderr();
    let what = format!("{holder:?} after {change:?}");
    if let Some(signal) = status.signal() {
        return Err(format!(
            "{what}: killed by signal {signal}; stderr {stderr:?}"
        ));
    }
    if status.code() != Some(1) {
        return Err(format!("{what}: exit {status:?}; stderr {stderr:?}"));
    }
    let shown = path.display().to_string();
    let Some(line) = stderr
        .lines()
        .find(|l| l.starts_with("error:") && l.contains(&shown))
    else {
        return Err(format!(
            "{what}: no stderr line starting 'error:' and naming {shown}: {stderr:?}"
        ));
    };
    // It reports what happened to the file, not a symptom of reading a
    // file that is no longer there (a peer "gone", a corrupt entry).
    let word = match change {
        Change::TruncateTiny | Change::TruncateToHeader => "truncated",
        Change::ReplaceWithSegment | Change::ReplaceWithGarbage => "replaced",
        Change::Remove => "removed",
    };
    if !line.contains(word) {
        return Err(format!(
            "{what}: exit 1, but the error does not say the file was {word}: {stderr:?}"
        ));
    }
    if let Some(bytes) = replacement {
        if std::fs::read(&path).ok() != Some(bytes) {
            return Err(format!(
                "{what}: the file that replaced the segment was changed or removed"
            ));
        }
    }
    eprintln!(
        "{what}: exit 1 after {:.0} ms: {line}",
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn all_changes(holder: Holder) {
    let problems: Vec<String> = CHANGES
        .into_iter()
        .filter_map(|change| scenario(holder, change).err())
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn create_hold_reports_a_changed_file() {
    all_changes(Holder::CreateHold);
}

#[test]
fn attach_hold_reports_a_changed_file() {
    all_changes(Holder::AttachHold);
}

#[test]
fn recv_follow_as_host_reports_a_changed_file() {
    all_changes(Holder::RecvFollowHost);
}

#[test]
fn recv_follow_as_guest_reports_a_changed_file() {
    all_changes(Holder::RecvFollowGuest);
}

/// `inspect` while another process cuts the file and grows it back, over
/// and over: each run ends with exit 0 (it saw a whole file) or exit 1 with
/// `error:` naming the path (it saw a short one, or the file shrank while
/// it read: SIGBUS reported, not died of).
#[test]
fn inspect_racing_truncation_exits_0_or_1() {
    let env = Env::new();
    // Many guests and slots: inspect reads a few hundred kilobytes of
    // metadata, long enough for the cuts to land while it reads.
    env.ok(&[
        "create",
        SEG,
        "--max-guests",
        "255",
        "--ring-size",
        "64",
        "--slot-size",
        "64",
        "--slots",
        "2048",
    ]);
    let path = env.path();
    let len = std::fs::metadata(&path).unwrap().len();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cutter = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            let mut cuts = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Keep the header page: the cut lands in the metadata.
                file.set_len(4096 * (1 + u64::from(cuts % 7) * 9)).unwrap();
                std::thread::sleep(Duration::from_micros(500));
                file.set_len(len).unwrap();
                std::thread::sleep(Duration::from_millis(10 + u64::from(cuts % 5) * 10));
                cuts += 1;
            }
            file.set_len(len).unwrap();
            cuts
        })
    };
    let shown = path.display().to_string();
    let started = Instant::now();
    let (mut ok, mut refused, mut sigbus, mut runs) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    while runs < 200 && started.elapsed() < Duration::from_secs(5) {
        runs += 1;
        let mut held = env.spawn(&["inspect", SEG, "--json"]);
        let status = held.wait_exit(BOUND);
        let stderr = held.stderr();
        match status.code() {
            Some(0) => ok += 1,
            Some(1)
                if stderr
                    .lines()
                    .next()
                    .is_some_and(|l| l.starts_with("error:") && l.contains(&shown)) =>
            {
                refused += 1;
                if stderr.contains("SIGBUS") {
                    sigbus += 1;
                }
            }
            _ => problems.push(format!("{status:?}: {stderr:?}")),
        }
        let _ = std::fs::remove_file(&held.out);
        let _ = std::fs::remove_file(&held.err);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cuts = cutter.join().unwrap();
    eprintln!(
        "inspect x{runs} against {cuts} cuts in {:.1}s: {ok} whole, {refused} refused ({sigbus} of them by SIGBUS)",
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
