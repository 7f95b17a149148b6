//! Shared helpers: an isolated environment per test, bounded runs of the
//! binary, held (long-running) processes that are always killed, and small
//! JSON accessors for `inspect --json`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shmhub");

/// Upper bound for any single non-held invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// Upper bound for waiting on a held process (a line, an exit).
pub const HELD_TIMEOUT: Duration = Duration::from_secs(10);

/// Small segment flags: keep files tiny so tests stay fast.
pub const SMALL: &[&str] = &[
    "--max-guests",
    "4",
    "--ring-size",
    "8",
    "--slot-size",
    "4KiB",
    "--slots",
    "4",
];

/// A payload that needs a slot (more than 32 bytes).
pub fn slot_msg(tag: &str) -> String {
    format!(
        "{tag}: {}",
        "this payload is longer than thirty-two bytes ".repeat(2)
    )
}

/// `create NAME` with [`SMALL`]'s flags, except those `extra` sets (clap
/// refuses repeats), and `extra`.
pub fn small_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["create", name];
    for pair in SMALL.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// One test's private world: a temporary directory that bare segment
/// names resolve in (`SHMHUB_SHM_DIR`) and that is the working directory
/// of every invocation.
pub struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shmhub-cli-")
            .tempdir()
            .expect("tempdir");
        Env { dir }
    }

    /// An environment whose directory is made inside `parent` (a file
    /// system the test mounted, say); it must be dropped before `parent`
    /// goes away.
    pub fn inside(parent: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shmhub-cli-")
            .tempdir_in(parent)
            .expect("tempdir");
        Env { dir }
    }

    /// The directory bare names resolve in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where bare name `name` resolves.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Names of the entries in the directory, sorted.
    pub fn listing(&self) -> Vec<String> {
        listing(self.dir())
    }

    /// A bounded command for the binary, isolated in this environment.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(BIN);
        c.env("SHMHUB_SHM_DIR", self.dir())
            .env_remove("RUST_BACKTRACE")
            .current_dir(self.dir())
            .timeout(CMD_TIMEOUT);
        c
    }

    /// Runs the binary with `args` (stdin empty) and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_cmd(self.cmd().args(args), args)
    }

    /// Runs the binary with `args` that need not be UTF-8 (a directory
    /// whose name is not, say).
    pub fn run_os(&self, args: &[&std::ffi::OsStr]) -> Run {
        let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        Run::from_cmd(self.cmd().args(args), &shown)
    }

    /// Runs the binary with `args` and `stdin` as standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: impl Into<Vec<u8>>) -> Run {
        Run::from_cmd(self.cmd().args(args).write_stdin(stdin.into()), args)
    }

    /// Runs `sh -c script` in this environment, with `$SHMHUB` naming the
    /// binary: for pipelines and resource limits.
    pub fn shell(&self, script: &str) -> Run {
        let mut c = assert_cmd::Command::new("sh");
        c.arg("-c")
            .arg(script)
            .env("SHMHUB", BIN)
            .env("SHMHUB_SHM_DIR", self.dir())
            .env_remove("RUST_BACKTRACE")
            .current_dir(self.dir())
            .timeout(CMD_TIMEOUT);
        Run::from_cmd(&mut c, &["sh", "-c", script])
    }

    /// Runs and requires exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        r.code(0);
        r
    }

    /// `shmhub send SEG --as host --to PEER PAYLOAD`, which must succeed.
    pub fn send_as_host(&self, seg: &str, peer: &str, payload: &str) -> Run {
        self.ok(&["send", seg, "--as", "host", "--to", peer, payload])
    }

    /// `shmhub recv SEG --as host --from PEER --timeout TIMEOUT`, however
    /// it ends.
    pub fn recv_as_host_from(&self, seg: &str, peer: &str, timeout: &str) -> Run {
        self.run(&[
            "recv",
            seg,
            "--as",
            "host",
            "--from",
            peer,
            "--timeout",
            timeout,
        ])
    }

    /// Creates a small segment under bare name `name` (plus `extra` flags).
    pub fn small(&self, name: &str, extra: &[&str]) -> PathBuf {
        self.ok(&small_args(name, extra));
        let path = self.path(name);
        assert!(path.is_file(), "{} was not created", path.display());
        path
    }

    /// `attach SEGMENT` (scripted claim); returns the peer id.
    pub fn attach(&self, seg: &str) -> u64 {
        let r = self.ok(&["attach", seg]);
        r.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("attach printed {:?}", r.stdout))
    }

    /// `inspect SEGMENT --json`, parsed.
    pub fn inspect(&self, seg: &str) -> Value {
        self.ok(&["inspect", seg, "--json"]).json()
    }

    /// Runs the binary with `args` as a process that has no right to
    /// write the file at `path`, so that its success proves it wrote
    /// nothing there, even while other processes keep changing the file:
    /// the kernel refuses such a process any open for writing, and a
    /// mapping of a descriptor opened read-only cannot be made writable.
    /// That takes root, whom file modes do not bind: the command runs as
    /// the unprivileged user 65534, with the file made readable to all
    /// (0644) and its directory searchable (0755); processes that opened
    /// the file before keep their access. Not as root, it is a plain run
    /// (the second value is false): only the comparison of the file's
    /// bytes on an idle segment then shows that nothing was written.
    pub fn run_unable_to_write(&self, path: &Path, args: &[&str]) -> (Run, bool) {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return (self.run(args), false);
        }
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))
                .unwrap_or_else(|e| panic!("chmod {m:o} {}: {e}", p.display()))
        };
        mode(self.dir(), 0o755);
        mode(path, 0o644);
        (self.run_as_nobody(args).expect("root"), true)
    }

    /// Runs the binary with `args` as the unprivileged user 65534 (group
    /// 65534), from `/`, in this environment; `None` unless this process
    /// is root, which alone can start one so.
    pub fn run_as_nobody(&self, args: &[&str]) -> Option<Run> {
        use std::os::unix::process::CommandExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let mut c = std::process::Command::new(BIN);
        c.args(args)
            .env("SHMHUB_SHM_DIR", self.dir())
            .env_remove("RUST_BACKTRACE")
            .current_dir("/")
            .uid(65534)
            .gid(65534);
        let mut cmd = assert_cmd::Command::from_std(c);
        cmd.timeout(CMD_TIMEOUT);
        Some(Run::from_cmd(&mut cmd, args))
    }

    /// Runs the binary with `args` with its standard output on a
    /// pseudo-terminal `cols` columns wide, as `docker exec -t` or a CI
    /// runner gives it (0: a terminal that reports no width), through
    /// util-linux `script`. Standard error goes to a file (so progress bars
    /// stay out of stdout) and is read back into `stderr`; line ends are
    /// `\n`, as on a pipe.
    pub fn in_terminal(&self, cols: u16, args: &[&str]) -> Run {
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let words: Vec<String> = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(quote)
            .collect();
        let shell = format!(
            "stty cols {cols} && exec {} 2>{}",
            words.join(" "),
            quote(stderr.path().to_str().expect("UTF-8 temp path"))
        );
        let mut c = assert_cmd::Command::new("script");
        c.args(["-q", "-e", "-c", &shell, "/dev/null"])
            .env("SHMHUB_SHM_DIR", self.dir())
            .env_remove("RUST_BACKTRACE")
            .current_dir(self.dir())
            .timeout(CMD_TIMEOUT);
        let mut run = Run::from_cmd(&mut c, args);
        run.stdout = run.stdout.replace("\r\n", "\n");
        run.stdout_bytes = run.stdout.clone().into_bytes();
        run.stderr = std::fs::read_to_string(stderr.path()).expect("reading stderr");
        run
    }

    /// Runs `attach SEGMENT --hold`, reads the peer id it claims, then
    /// kills it with SIGKILL (no cleanup): its entry stays Attached with a
    /// dead holder. Returns the peer id and the dead process's pid.
    pub fn attach_then_kill(&self, seg: &str) -> (u64, u32) {
        let mut guest = self.spawn(&["attach", seg, "--hold"]);
        let line = guest.line();
        let id = line
            .parse()
            .unwrap_or_else(|_| panic!("attach --hold printed {line:?}"));
        guest.signal(libc::SIGKILL);
        guest.wait();
        (id, guest.pid())
    }

    /// Starts a held process (stdin closed, stdout/stderr captured).
    pub fn spawn(&self, args: &[&str]) -> Held {
        let mut c = std::process::Command::new(BIN);
        c.args(args)
            .env("SHMHUB_SHM_DIR", self.dir())
            .env_remove("RUST_BACKTRACE")
            .current_dir(self.dir());
        Held::spawn(c, args)
    }
}

/// Names of the entries in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// The result of one finished invocation.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout_bytes: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    fn from_cmd(cmd: &mut assert_cmd::Command, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running shmhub {args:?}: {e}"));
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stdout_bytes: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// Requires exit code `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "shmhub {:?}: expected exit {code}, got {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Requires exit 1 with exactly one stderr line, starting with
    /// `error:`, that contains every one of `needles`.
    #[track_caller]
    pub fn error(&self, needles: &[&str]) -> &Self {
        self.code(1);
        self.error_line(needles)
    }

    /// Requires one stderr line starting with `error:` containing `needles`
    /// (whatever the exit code).
    #[track_caller]
    pub fn error_line(&self, needles: &[&str]) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "shmhub {:?}: expected one stderr line, got {:?}",
            self.args,
            self.stderr
        );
        assert!(
            lines[0].starts_with("error: "),
            "shmhub {:?}: stderr {:?} does not start with 'error: '",
            self.args,
            lines[0]
        );
        for n in needles {
            assert!(
                lines[0].contains(n),
                "shmhub {:?}: stderr {:?} does not mention {n:?}",
                self.args,
                lines[0]
            );
        }
        self
    }

    /// Requires a clap usage error: exit 2 and `error:` on stderr.
    #[track_caller]
    pub fn usage(&self) -> &Self {
        self.code(2);
        assert!(
            self.stderr.starts_with("error:"),
            "shmhub {:?}: usage error stderr {:?}",
            self.args,
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "shmhub {:?}: usage error printed {:?}",
            self.args,
            self.stdout
        );
        self
    }

    /// Stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "shmhub {:?}: stdout is not one JSON document ({e}): {:?}",
                self.args, self.stdout
            )
        })
    }

    /// Stdout as JSON lines.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("shmhub {:?}: line {l:?} is not JSON ({e})", self.args)
                })
            })
            .collect()
    }
}

/// A running `shmhub` process that is killed (and reaped) if the test
/// ends before it does. Its stdout is read line by line on a thread and
/// its stderr collected on another, so reads never block the test.
pub struct Held {
    pub args: Vec<String>,
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line seen so far (in order).
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Held {
    fn spawn(mut c: std::process::Command, args: &[&str]) -> Held {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawning shmhub {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stderr_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Held {
            args: args.iter().map(|s| s.to_string()).collect(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            readers: vec![out_reader, err_reader],
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line, waiting at most [`HELD_TIMEOUT`]; panics (the
    /// guard then kills the process) if none comes.
    #[track_caller]
    pub fn line(&mut self) -> String {
        let deadline = Instant::now() + HELD_TIMEOUT;
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "shmhub {:?}: no stdout line within {HELD_TIMEOUT:?}; seen {:?}; stderr {:?}",
                    self.args,
                    self.seen,
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "shmhub {:?}: stdout closed (status {status:?}) while a line was expected; seen {:?}; stderr {:?}",
                    self.args,
                    self.seen,
                    self.stderr()
                )
            }
        }
    }

    /// The next stdout line if one comes within `wait`: for a test that
    /// makes a change again until a watcher has told one, not a deadline.
    pub fn line_within(&mut self, wait: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(wait).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// The next stdout line as JSON.
    #[track_caller]
    pub fn json_line(&mut self) -> Value {
        let l = self.line();
        serde_json::from_str(&l)
            .unwrap_or_else(|e| panic!("shmhub {:?}: line {l:?} is not JSON ({e})", self.args))
    }

    /// Sends a real signal.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.child.id());
    }

    /// Stops it with SIGSTOP and returns once it has stopped, so that it
    /// writes nothing (not even the waiting flag it sets and clears around
    /// each nap) until [`Held::thaw`].
    #[track_caller]
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        let mut status = 0;
        // SAFETY: waitpid(2) with WUNTRACED on our unreaped child only
        // reports (and does not reap) it once it has stopped.
        let rc =
            unsafe { libc::waitpid(self.child.id() as libc::pid_t, &mut status, libc::WUNTRACED) };
        assert_eq!(
            rc,
            self.child.id() as libc::pid_t,
            "waitpid on {:?}",
            self.args
        );
        assert!(
            libc::WIFSTOPPED(status),
            "shmhub {:?} did not stop: {status:#x}",
            self.args
        );
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Whether it has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits (at most [`HELD_TIMEOUT`]) for it to exit, then collects the
    /// rest of its stdout lines into `seen`.
    #[track_caller]
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HELD_TIMEOUT;
        let status = loop {
            if let Some(s) = self.exited() {
                break s;
            }
            if Instant::now() > deadline {
                panic!(
                    "shmhub {:?}: still running after {HELD_TIMEOUT:?}; seen {:?}; stderr {:?}",
                    self.args,
                    self.seen,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        status
    }

    /// Waits for exit and requires exit code 0.
    #[track_caller]
    pub fn wait_ok(&mut self) {
        let status = self.wait();
        assert_eq!(
            status.code(),
            Some(0),
            "shmhub {:?}: expected exit 0, got {status:?}; stdout {:?}; stderr {:?}",
            self.args,
            self.seen,
            self.stderr()
        );
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `inspect --json` entry of peer `id`.
#[track_caller]
pub fn peer(report: &Value, id: u64) -> &Value {
    let p = &report["peers"][(id - 1) as usize];
    assert_eq!(
        p["peer_id"], id,
        "peers[] is not indexed by peer id: {report}"
    );
    p
}

/// `inspect --json` pool owned by `owner` ("host" or "peer N", its
/// `owner_name`; its `owner` is the number, 0 for the host).
#[track_caller]
pub fn pool<'a>(report: &'a Value, owner: &str) -> &'a Value {
    let p = report["pools"]
        .as_array()
        .expect("pools array")
        .iter()
        .find(|p| p["owner_name"] == owner)
        .unwrap_or_else(|| panic!("no pool {owner:?} in {report}"));
    let number = owner
        .strip_prefix("peer ")
        .map_or(0, |n| n.parse().unwrap());
    assert_eq!(p["owner"], number, "owner of pool {owner:?}: {p}");
    p
}

/// Total slots in use over every pool.
pub fn pools_used(report: &Value) -> u64 {
    report["pools"]
        .as_array()
        .expect("pools array")
        .iter()
        .map(|p| p["used"].as_u64().expect("used"))
        .sum()
}

/// Fill level of a peer's ring ("to_host" or "to_guest").
#[track_caller]
pub fn ring_len(report: &Value, id: u64, ring: &str) -> u64 {
    peer(report, id)[ring]["len"]
        .as_u64()
        .unwrap_or_else(|| panic!("peer {id} {ring} len in {report}"))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes that are not UTF-8 and that cover every byte value.
pub fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 0x80) as u8).collect()
}

/// Makes files that are not segments, each kind in `dir`; returns their names.
pub fn non_segments(dir: &Path) -> Vec<&'static str> {
    std::fs::write(dir.join("text"), b"this is a text file, not a segment\n").unwrap();
    std::fs::write(dir.join("random"), binary_payload(100_000)).unwrap();
    std::fs::write(dir.join("zeros"), vec![0u8; 100_000]).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    vec!["text", "random", "zeros", "empty"]
}

/// The tables in `text` (as the command draws them), each as its lines
/// from the top border to the bottom one.
pub fn tables(text: &str) -> Vec<Vec<&str>> {
    let mut tables = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.starts_with('┌') {
            current = Some(Vec::new());
        }
        if let Some(t) = current.as_mut() {
            t.push(line);
        }
        if line.starts_with('└') {
            tables.extend(current.take());
        }
    }
    tables
}

/// The content lines of a table (not its borders), each split into its
/// cells' text, trimmed.
pub fn cell_lines(table: &[&str]) -> Vec<Vec<String>> {
    table
        .iter()
        .filter(|l| l.starts_with('│'))
        .map(|l| {
            l.trim_start_matches('│')
                .trim_end_matches('│')
                .split('┆')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// Checks that `table` is drawn whole: every line as wide as the others,
/// and each a border line or a line of cells, all with as many cells.
#[track_caller]
pub fn assert_well_formed(table: &[&str]) {
    let width = table[0].chars().count();
    let cells = cell_lines(table).first().map_or(0, Vec::len);
    for line in table {
        assert_eq!(
            line.chars().count(),
            width,
            "ragged line {line:?} in\n{}",
            table.join("\n")
        );
        let ends = (line.chars().next(), line.chars().last());
        assert!(
            matches!(
                ends,
                (Some('┌'), Some('┐'))
                    | (Some('│'), Some('│'))
                    | (Some('╞'), Some('╡'))
                    | (Some('└'), Some('┘'))
            ),
            "garbled line {line:?} in\n{}",
            table.join("\n")
        );
    }
    for line in cell_lines(table) {
        assert_eq!(line.len(), cells, "{line:?} in\n{}", table.join("\n"));
    }
}

/// Every word in the cells of `table`, sorted, with each run of digits
/// written `N` (so that ages and pids compare between runs).
pub fn cell_words(table: &[&str]) -> Vec<String> {
    let mut words: Vec<String> = cell_lines(table)
        .iter()
        .flatten()
        .flat_map(|cell| cell.split_whitespace().map(digits_as_n).collect::<Vec<_>>())
        .collect();
    words.sort();
    words
}

fn digits_as_n(word: &str) -> String {
    let mut out = String::new();
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until `events` says on stderr that it watches `name`: what
/// happens from then on is told (what it saw first is where it starts).
#[track_caller]
pub fn watching(events: &Held, name: &str) {
    let note = format!("{name}: watching for events from now on");
    assert!(
        wait_until(HELD_TIMEOUT, || events.stderr().contains(&note)),
        "events never said it was watching: {:?}",
        events.stderr()
    );
}
