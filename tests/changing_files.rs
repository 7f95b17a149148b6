//! Files that change under you: a segment truncated, replaced or removed by
//! another process while `create --hold`, `attach --hold`, `recv --follow`
//! (as the host and as a guest) or `inspect` has it mapped. The command
//! reports it and exits 1, with a stderr line starting `error:` that names
//! the path; it never dies of SIGBUS (or any other signal), and it never
//! touches a file that replaced its own. The one exception is a follower
//! (`recv --follow`) whose segment is removed: that ends what it followed,
//! with exit 0 and a note naming the path, as it ends `events` and
//! `inspect --watch` (docs/cli.md, "Followers").
//!
//! Every command is a real process of the binary, started on a segment in
//! a temporary directory (bare names resolve there through
//! `SHMHUB_SHM_DIR`). Every wait is bounded, and children are killed when
//! a test fails (the process harness of `tests/support`).

mod support;

use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shmhub::{SegmentConfig, ShmHost};
use support::Child;

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

    /// Runs a short command to completion (bounded) and requires exit 0;
    /// returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let mut held = self.spawn(args);
        let status = held.wait(BOUND);
        assert_eq!(
            status.code(),
            Some(0),
            "shmhub {args:?}: {status:?}; stderr {:?}",
            held.stderr()
        );
        held.stdout()
    }

    /// Starts a command, its output in files of its own.
    fn spawn(&self, args: &[&str]) -> Child {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        self.spawn_to(&format!("out.{n}"), args)
    }

    /// Starts a command, its output in `files.stdout` and `files.stderr`.
    fn spawn_to(&self, files: &str, args: &[&str]) -> Child {
        let dir = self.dir.path();
        Child::start(
            format!("shmhub {args:?}"),
            support::cli_command(dir, args),
            dir,
            files,
        )
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
fn start(env: &Env, holder: Holder) -> Child {
    match holder {
        Holder::CreateHold => {
            let mut held = env.spawn(&with_small(&["create", SEG, "--hold"]));
            held.await_output("created", BOUND);
            // It serves: a guest's message reaches it.
            let peer = env.ok(&["attach", SEG]);
            env.ok(&["send", SEG, "--as", peer.trim(), "ready"]);
            held.await_output("ready", BOUND);
            held
        }
        Holder::AttachHold => {
            env.ok(&with_small(&["create", SEG]));
            let mut held = env.spawn(&["attach", SEG, "--hold"]);
            held.await_output("1", BOUND);
            env.ok(&["send", SEG, "--as", "host", "--to", "1", "ready"]);
            held.await_output("ready", BOUND);
            held
        }
        Holder::RecvFollowHost => {
            env.ok(&with_small(&["create", SEG]));
            let peer = env.ok(&["attach", SEG]);
            let mut held = env.spawn(&["recv", SEG, "--as", "host", "--follow"]);
            env.ok(&["send", SEG, "--as", peer.trim(), "ready"]);
            held.await_output("ready", BOUND);
            held
        }
        Holder::RecvFollowGuest => {
            env.ok(&with_small(&["create", SEG]));
            let peer = env.ok(&["attach", SEG]);
            let mut held = env.spawn(&["recv", SEG, "--as", peer.trim(), "--follow"]);
            env.ok(&["send", SEG, "--as", "host", "--to", peer.trim(), "ready"]);
            held.await_output("ready", BOUND);
            held
        }
    }
}

/// One held command, one change: exit 1, `error:` naming the path and
/// saying what happened to the file, no signal, and a replacing file left
/// as it was written; or, for a follower whose segment was removed, exit 0
/// with a note naming the path and saying so. Returns what went wrong, if
/// anything.
fn scenario(holder: Holder, change: Change) -> Result<(), String> {
    let env = Env::new();
    let mut held = start(&env, holder);
    let path = env.path();
    let started = Instant::now();
    let replacement = apply(change, &path, env.dir.path());
    let status = held.wait(BOUND);
    let elapsed = started.elapsed();
    let stderr = held.stderr();
    let what = format!("{holder:?} after {change:?}");
    if let Some(signal) = status.signal() {
        return Err(format!(
            "{what}: killed by signal {signal}; stderr {stderr:?}"
        ));
    }
    let shown = path.display().to_string();
    let follower = matches!(holder, Holder::RecvFollowHost | Holder::RecvFollowGuest);
    if follower && matches!(change, Change::Remove) {
        let note = format!("{shown}: the segment was removed\n");
        if status.code() != Some(0) || stderr != note {
            return Err(format!(
                "{what}: a follower whose segment was removed ends with exit 0 and {note:?}; \
                 got exit {status:?}, stderr {stderr:?}"
            ));
        }
        return Ok(());
    }
    if status.code() != Some(1) {
        return Err(format!("{what}: exit {status:?}; stderr {stderr:?}"));
    }
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
        // Each run overwrites the last one's output files.
        let mut held = env.spawn_to("inspect", &["inspect", SEG, "--json"]);
        let status = held.wait(BOUND);
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
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cuts = cutter.join().unwrap();
    eprintln!(
        "inspect x{runs} against {cuts} cuts in {:.1}s: {ok} whole, {refused} refused ({sigbus} of them by SIGBUS)",
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
