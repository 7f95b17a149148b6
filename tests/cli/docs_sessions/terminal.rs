//! A terminal of a session: a bash that reads the commands as they are
//! typed, with what every command prints (stdout and stderr, interleaved
//! as they were written) in one stream, and a marker after each command
//! saying it ended, with what status, and how many background jobs of the
//! shell still run (which may print more).
//!
//! Each command runs with standard input from /dev/null, so that nothing
//! it starts reads the commands typed after it. The shell runs in its own
//! process group, killed with everything in it when the terminal goes.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait for a command to end and print what the docs show
/// before its output is compared as it is. Only a failing comparison
/// waits this long: a command that ended with no job of the shell
/// running is read at once.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts each marker; what follows is `ID exit STATUS jobs N@@` and a
/// newline.
/// It is written in one piece (bash's printf writes a line at a time), and
/// found wherever it is, so that output with no newline at its end keeps
/// its last line.
const MARKER: &str = "@@docs-session ";

/// Defined in every terminal: `__docs_next_job` sets `__docs_job` to the
/// number bash gives the next background job (one past the highest of
/// those it lists), which the job prints with its pid, as an interactive
/// shell does, through `__docs_announce`.
const PRELUDE: &str = r#"__docs_next_job() { local n=0 line; while read -r line; do line=${line#[}; line=${line%%]*}; [ -n "$line" ] && n=$line; done <<<"$(jobs)"; __docs_job=$((n + 1)); }
__docs_announce() { printf '[%s] %s\n' "$__docs_job" "$BASHPID"; }
"#;

/// Names the background jobs in what bash reports of them.
const JOB_MARK: &str = "__docs_announce;";

/// What the shell printed so far, filled by a reader thread.
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    closed: bool,
}

/// A stream shared with its reader thread, with a signal for news.
type Shared = Arc<(Mutex<Stream>, Condvar)>;

/// What a command printed, and how it ended if it did.
#[derive(Debug)]
pub struct Printed {
    pub text: String,
    /// Its exit status; `None` while it runs.
    pub status: Option<i32>,
    /// Whether the read gave up waiting, after [`COMMAND_TIMEOUT`], for
    /// its end or for lines a background job might still print.
    pub timed_out: bool,
}

/// One bash, driven through its standard input.
pub struct Terminal {
    shell: Child,
    stdin: ChildStdin,
    stream: Shared,
    /// How much of the stream has been handed out.
    taken: usize,
    /// Markers handed out so far.
    typed: u64,
    /// What the shell itself said on stderr (job reports, syntax errors).
    shell_errors: Option<JoinHandle<String>>,
}

impl Terminal {
    /// A bash in `cwd`, with `env` on top of this process's environment
    /// less `unset`.
    pub fn start(cwd: &Path, env: &[(&str, String)], unset: &[&str]) -> Terminal {
        let mut command = Command::new("bash");
        command
            .args(["--norc", "--noprofile"])
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for name in unset {
            command.env_remove(name);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut shell = command.spawn().expect("starting bash");
        let stdout = shell.stdout.take().expect("piped stdout");
        let mut stderr = shell.stderr.take().expect("piped stderr");
        let stream: Shared = Arc::default();
        let filling = Arc::clone(&stream);
        std::thread::spawn(move || fill(stdout, &filling));
        let shell_errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = shell.stdin.take().expect("piped stdin");
        let mut terminal = Terminal {
            shell,
            stdin,
            stream,
            taken: 0,
            typed: 0,
            shell_errors: Some(shell_errors),
        };
        terminal.write(PRELUDE);
        terminal
    }

    fn write(&mut self, script: &str) {
        self.stdin
            .write_all(script.as_bytes())
            .and_then(|()| self.stdin.flush())
            .expect("writing to bash");
    }

    /// Types `command` and returns the id of the marker that will say it
    /// ended. A command ending in a single `&` is run as a background job
    /// (replaced by its program, so that `kill %1` reaches it), after a
    /// `[JOB] PID` line as an interactive shell prints.
    pub fn type_command(&mut self, command: &str) -> u64 {
        self.typed += 1;
        let id = self.typed;
        let background = command
            .strip_suffix('&')
            .filter(|c| !c.ends_with('&'))
            .map(str::trim_end);
        let run = match background {
            Some(command) => format!(
                "__docs_next_job; {{ {JOB_MARK} exec {command}\n}} </dev/null 2>&1 &\n__docs_status=0"
            ),
            None => format!("{{ {command}\n}} </dev/null 2>&1; __docs_status=$?"),
        };
        self.write(&format!(
            "{run}; __docs_jobs=$(jobs -pr | wc -l); printf '{MARKER}%s exit %s jobs %s@@\\n' {id} \"$__docs_status\" $__docs_jobs; (exit \"$__docs_status\")\n"
        ));
        id
    }

    /// What command `id` printed: once it ended and `lines` lines are in,
    /// or it ended while no background job of the shell ran (nothing more
    /// can come); or, unless `to_the_end`, as soon as `lines` lines are
    /// in while it still runs; or whatever is there after
    /// [`COMMAND_TIMEOUT`]. A line is in once its newline is: a program
    /// may write one line in several pieces (Rust's `eprintln!` writes
    /// each argument as it formats it), and the first piece is not the
    /// line.
    pub fn read(&mut self, id: u64, lines: usize, to_the_end: bool) -> Printed {
        let marker = format!("{MARKER}{id} exit ");
        let started = Instant::now();
        let (lock, news) = &*self.stream;
        let mut stream = lock.lock().expect("stream lock");
        loop {
            let (text, end) = split_marker(&stream.bytes[self.taken..], &marker);
            let enough = text.matches('\n').count() >= lines;
            let done = match end {
                Some(End { jobs, .. }) => enough || jobs == 0,
                None => enough && !to_the_end,
            };
            let timed_out = started.elapsed() >= COMMAND_TIMEOUT;
            if done || stream.closed || timed_out {
                self.taken = stream.bytes.len();
                let status = end.map(|e| e.status);
                return Printed {
                    text,
                    status,
                    timed_out: timed_out && !done,
                };
            }
            let wait = Duration::from_millis(50);
            stream = news.wait_timeout(stream, wait).expect("stream lock").0;
        }
    }

    /// Whatever was printed and not yet read, without waiting.
    pub fn unread(&mut self) -> String {
        let stream = self.stream.0.lock().expect("stream lock");
        let text = without_job_reports(&String::from_utf8_lossy(&stream.bytes[self.taken..]));
        self.taken = stream.bytes.len();
        text
    }

    /// Ends the shell and everything it started; returns what the shell
    /// itself said on stderr.
    pub fn close(mut self) -> String {
        self.kill();
        self.shell_errors
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        let group = self.shell.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the group is the one
        // this terminal made for its shell, which is not reaped yet (the
        // `wait` below reaps it), so the id names no one else.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.shell.wait();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.shell_errors.is_some() {
            self.kill();
        }
    }
}

/// Copies `from` into `stream` until its end, waking the readers.
fn fill(mut from: impl Read, stream: &Shared) {
    let (lock, news) = &**stream;
    let mut buffer = [0u8; 8192];
    loop {
        let n = from.read(&mut buffer).unwrap_or(0);
        let mut stream = lock.lock().expect("stream lock");
        if n == 0 {
            stream.closed = true;
        } else {
            stream.bytes.extend_from_slice(&buffer[..n]);
        }
        news.notify_all();
        if n == 0 {
            return;
        }
    }
}

/// How a command ended, as its marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct End {
    status: i32,
    /// Background jobs of the shell still running when it ended.
    jobs: usize,
}

/// `bytes` as text without the marker that starts with `marker`, and what
/// the marker says, if it is there; without bash's reports of our
/// background jobs either (`bash: line 9: 5490 Killed ...`): an
/// interactive shell prints those before a prompt, and the docs leave them
/// out.
fn split_marker(bytes: &[u8], marker: &str) -> (String, Option<End>) {
    let text = without_job_reports(&String::from_utf8_lossy(bytes));
    let Some(at) = text.find(marker) else {
        return (text, None);
    };
    let rest = &text[at + marker.len()..];
    let Some(close) = rest.find("@@\n") else {
        return (text, None);
    };
    let end = rest[..close]
        .split_once(" jobs ")
        .and_then(|(status, jobs)| {
            Some(End {
                status: status.parse().ok()?,
                jobs: jobs.trim().parse().ok()?,
            })
        });
    (format!("{}{}", &text[..at], &rest[close + 3..]), end)
}

fn without_job_reports(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| !(line.starts_with("bash: ") && line.contains(JOB_MARK)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_cut_out_with_its_status() {
        let marker = "@@docs-session 3 exit ";
        let (text, end) = split_marker(b"one\n@@docs-session 3 exit 1 jobs 2@@\nlate\n", marker);
        let ended = End { status: 1, jobs: 2 };
        assert_eq!((text.as_str(), end), ("one\nlate\n", Some(ended)));
        let (text, end) = split_marker(b"no newline@@docs-session 3 exit 0 jobs 0@@\n", marker);
        let ended = End { status: 0, jobs: 0 };
        assert_eq!((text.as_str(), end), ("no newline", Some(ended)));
        let (text, end) = split_marker(b"@@docs-session 33 exit 0 jobs 0@@\n", marker);
        assert_eq!(end, None, "{text}");
    }

    // A background job that writes its line in two pieces is read once
    // the whole line is in, not after its first piece.
    #[test]
    fn a_line_written_in_pieces_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut terminal = Terminal::start(dir.path(), &[], &[]);
        // The pause only makes the two writes two reads; the read below
        // waits for the newline however long the pieces take.
        let id = terminal.type_command("sh -c 'printf half; sleep 0.3; printf \", whole\\n\"' &");
        let printed = terminal.read(id, 2, false);
        let job_line = printed.text.lines().next().unwrap_or_default();
        assert!(job_line.starts_with("[1] "), "{:?}", printed.text);
        assert_eq!(
            printed.text.lines().nth(1),
            Some("half, whole"),
            "{:?}",
            printed.text
        );
        terminal.close();
    }

    #[test]
    fn bash_reports_of_our_jobs_are_left_out() {
        let printed = format!(
            "a\nbash: line 22:  2833 Killed  {{ {JOB_MARK} exec shmhub attach x --hold; }}\nbash: other\n"
        );
        assert_eq!(without_job_reports(&printed), "a\nbash: other\n");
    }
}
