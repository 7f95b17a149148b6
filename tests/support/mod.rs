//! Code shared by the integration test crates, each of which includes it
//! with `mod support;` (a directory under `tests/` is not a test crate of
//! its own).
//!
//! Most of it is the child-process harness. A test that needs a real
//! second process re-runs its own test binary ([`Child::spawn`]); the
//! child runs only the test named [`CHILD_ENTRY`], whose body is
//! [`child_main`], in the role the parent chose, and tells the parent how
//! it went through its exit status (0 for success, 1 with a message on
//! stderr for failure). The same [`Child`] wraps any other command, such as
//! the `shmhub` binary ([`cli_command`]).
//!
//! Nothing waits without a deadline: every wait of the parent is bounded,
//! a child that overstays is killed, a [`Child`] is killed and reaped when
//! it is dropped (so a failing test leaves no process behind), and every
//! re-run child arms a watchdog that ends it regardless.
//!
//! [`fixtures`] holds the small builders that the library tests share;
//! [`traffic`] the seeded payloads, checksum and send trait of the load
//! tests.

// Each test crate uses only part of this module.
#![allow(dead_code)]

pub mod fixtures;
pub mod traffic;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Names the role a re-run child plays; unset in a normal test run.
pub const ROLE_ENV: &str = "SHMHUB_TEST_CHILD";
/// The segment the child works on ([`ChildEnv::path`]).
pub const PATH_ENV: &str = "SHMHUB_TEST_PATH";
/// A scratch directory parent and child share ([`ChildEnv::dir`]).
pub const DIR_ENV: &str = "SHMHUB_TEST_DIR";
/// The test a crate that spawns children must define, with [`child_main`]
/// as its body: the child runs only that test.
pub const CHILD_ENTRY: &str = "child_entry";
/// Exit status of a child ended by its watchdog, distinct from a failure
/// (1) and a panic (101).
pub const WATCHDOG_STATUS: i32 = 97;
/// Pause between two looks of a waiting parent: short, since the waits
/// sit on the critical path of the tests, but not a busy spin.
const POLL: Duration = Duration::from_millis(2);

/// The `shmhub` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shmhub");

// ---------------------------------------------------------------------------
// The child's side
// ---------------------------------------------------------------------------

/// What every re-run child is told, whatever its role.
#[derive(Debug, Clone)]
pub struct ChildEnv {
    /// The segment the parent means.
    pub path: PathBuf,
    /// The parent's scratch directory: [`signal`] files go here.
    pub dir: PathBuf,
}

impl ChildEnv {
    /// An extra variable the parent passed to [`Child::spawn`].
    pub fn var(&self, name: &str) -> anyhow::Result<String> {
        std::env::var(name).with_context(|| format!("{name} is not set"))
    }

    /// An extra variable the parent passed, parsed.
    pub fn parse<T>(&self, name: &str) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let value = self.var(name)?;
        value
            .parse()
            .with_context(|| format!("{name}={value:?} does not parse"))
    }
}

/// The body of a crate's [`CHILD_ENTRY`] test.
///
/// In a normal test run it returns at once. In a child started by
/// [`Child::spawn`] it arms a watchdog that ends the process with
/// [`WATCHDOG_STATUS`] after `watchdog`, runs `run` with the role and the
/// [`ChildEnv`], and exits: 0 on success, 1 with the error on stderr
/// otherwise. It exits rather than returning so that the outcome is the
/// exit status and one error line, not a libtest panic report.
pub fn child_main(watchdog: Duration, run: impl FnOnce(&str, &ChildEnv) -> anyhow::Result<()>) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    // A child stuck anywhere, even outside a bounded wait, must not
    // outlive its test by much.
    std::thread::spawn(move || {
        std::thread::sleep(watchdog);
        eprintln!("child watchdog: still running after {watchdog:?}; exiting");
        std::process::exit(WATCHDOG_STATUS);
    });
    let read_env = || -> anyhow::Result<ChildEnv> {
        let var = |name: &str| std::env::var_os(name).with_context(|| format!("{name} is not set"));
        Ok(ChildEnv {
            path: var(PATH_ENV)?.into(),
            dir: var(DIR_ENV)?.into(),
        })
    };
    match read_env().and_then(|env| run(&role, &env)) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("child `{role}` failed: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Creates `dir/name` with `contents` atomically (write, then rename), so
/// that a reader never sees it half-written: how a child tells its parent
/// it reached a point ([`Child::await_signal`]) or leaves it a report.
pub fn signal(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, contents).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("publish {name}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The parent's side
// ---------------------------------------------------------------------------

/// The `shmhub` binary with `args`, run in `dir`, where bare segment names
/// also resolve (`SHMHUB_SHM_DIR`); without `RUST_BACKTRACE`, so that its
/// stderr is what a user would see.
pub fn cli_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("SHMHUB_SHM_DIR", dir)
        .env_remove("RUST_BACKTRACE")
        .current_dir(dir);
    cmd
}

/// A running child process; killed and reaped on drop, so a failed test
/// never leaves it behind.
///
/// Its stdout and stderr go to files rather than pipes: a chatty child can
/// never block on a full pipe, and the output is still there to show when
/// the test fails ([`Child::output`]).
pub struct Child {
    name: String,
    child: Option<std::process::Child>,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Child {
    /// Starts `cmd` with stdin closed and its output in
    /// `dir/{files}.stdout` and `dir/{files}.stderr` (a name used again
    /// overwrites the earlier files). `name` says who it is in messages.
    pub fn start(name: impl Into<String>, mut cmd: Command, dir: &Path, files: &str) -> Child {
        let name = name.into();
        let stdout = dir.join(format!("{files}.stdout"));
        let stderr = dir.join(format!("{files}.stderr"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create the child's stdout file"))
            .stderr(File::create(&stderr).expect("create the child's stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Child {
            name,
            child: Some(child),
            status: None,
            dir: dir.to_path_buf(),
            stdout,
            stderr,
        }
    }

    /// Starts this test binary again, running only [`CHILD_ENTRY`] in
    /// `role`, with `path` and `dir` as its [`ChildEnv`] and the extra
    /// variables `env`.
    pub fn spawn(role: &str, path: &Path, dir: &Path, env: &[(&str, String)]) -> Child {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
        cmd.args(["--exact", CHILD_ENTRY, "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role)
            .env(PATH_ENV, path)
            .env(DIR_ENV, dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Child::start(format!("child `{role}`"), cmd, dir, &format!("{role}-{n}"))
    }

    /// Renames the child in messages (several children of one role).
    pub fn named(mut self, name: impl Into<String>) -> Child {
        self.name = name.into();
        self
    }

    /// The child's process id; it must not have been reaped yet.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} has already exited", self.name))
            .id()
    }

    /// What the child has written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the child has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its state and everything it wrote, for failure messages.
    pub fn output(&self) -> String {
        let state = match self.status {
            Some(status) => status.to_string(),
            None => "not reaped".to_string(),
        };
        format!(
            "--- {} ({state}) stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Its exit status once it has exited (reaping it), without waiting.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            let status = c
                .try_wait()
                .unwrap_or_else(|e| panic!("wait for {}: {e}", self.name));
            if let Some(status) = status {
                self.child = None;
                self.status = Some(status);
            }
        }
        self.status
    }

    /// Fails the test if the child has exited: it was meant to keep
    /// running.
    pub fn check_running(&mut self) {
        if let Some(status) = self.poll() {
            panic!(
                "{} exited early with {status}\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// An error if the child has exited unsuccessfully; exiting
    /// successfully, or not yet, is fine.
    pub fn check_not_failed(&mut self) -> anyhow::Result<()> {
        match self.poll() {
            Some(status) if !status.success() => {
                anyhow::bail!("{} exited with {status}", self.name)
            }
            _ => Ok(()),
        }
    }

    /// Waits until the child has created `name` in its directory (with
    /// [`signal`]); returns the file's contents. Fails the test if the
    /// child exits first or `within` passes.
    pub fn await_signal(&mut self, name: &str, within: Duration) -> String {
        let file = self.dir.join(name);
        self.await_until(&format!("signalled `{name}`"), within, |_| {
            std::fs::read_to_string(&file).ok()
        })
    }

    /// Waits until the child's stdout contains `needle`. Fails the test if
    /// the child exits first or `within` passes.
    pub fn await_output(&mut self, needle: &str, within: Duration) {
        self.await_until(&format!("printed {needle:?}"), within, |c| {
            c.stdout().contains(needle).then_some(())
        });
    }

    fn await_until<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            if let Some(status) = self.poll() {
                panic!(
                    "{} exited with {status} before it {what}\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                self.fail(&format!("{} never {what} (waited {within:?})", self.name));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the child to exit until `deadline`; returns its status,
    /// or an error (leaving it running: the caller decides what then).
    pub fn wait_until(&mut self, deadline: Instant) -> anyhow::Result<ExitStatus> {
        loop {
            if let Some(status) = self.poll() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("{} did not exit in time", self.name);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `within` for the child to exit and returns its status;
    /// kills it and fails the test if it does not.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        match self.wait_until(Instant::now() + within) {
            Ok(status) => status,
            Err(e) => self.fail(&format!("{e} (waited {within:?})")),
        }
    }

    /// Waits up to `within` for the child to exit, and fails the test
    /// unless it succeeded.
    pub fn expect_success(&mut self, within: Duration) {
        let status = self.wait(within);
        assert!(
            status.success(),
            "{} failed with {status}\n{}",
            self.name,
            self.output()
        );
    }

    /// SIGKILLs the child if it is still running, reaps it and returns its
    /// status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(mut c) = self.child.take() {
            c.kill()
                .unwrap_or_else(|e| panic!("SIGKILL {}: {e}", self.name));
            let status = c
                .wait()
                .unwrap_or_else(|e| panic!("reap {}: {e}", self.name));
            self.status = Some(status);
        }
        self.status.expect("a reaped child has a status")
    }

    /// Like [`Child::kill`], but never panics: for paths that are already
    /// failing, or unwinding.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.status = c.wait().ok();
        }
    }

    /// Kills the child and fails the test with `msg` and its output.
    pub fn fail(&mut self, msg: &str) -> ! {
        self.stop();
        panic!("{msg}\n{}", self.output());
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills every child and fails the test with `msg` and all their output.
pub fn fail_all(children: &mut [Child], msg: &str) -> ! {
    for c in children.iter_mut() {
        c.stop();
    }
    let outputs: Vec<String> = children.iter().map(Child::output).collect();
    panic!("{msg}\n{}", outputs.join("\n"));
}
