//! The console sessions of README.md and docs/cli.md are run, and what
//! each command prints must be what the docs show after it, so that no
//! session in the docs can drift from the command.
//!
//! **Reading a block.** Every fenced block whose info string starts with
//! `console` is a session: a `$ ` line is a command, and the lines after
//! it, up to the next `$ ` or `#` line, are what it prints (stdout and
//! stderr, interleaved as written). Other `#` lines are comments, except
//! `# terminal NAME` (then `,`, `:` or a space, and anything): the lines
//! after it happen in that terminal, another shell of the same session,
//! and output right after it, before any `$ ` line, is the rest of what
//! the command still running there prints, up to its end. Such a command
//! is read only as far as the lines shown with it while it runs.
//!
//! **Sessions.** Each block runs in an environment of its own, unless an
//! HTML comment right before it, `<!-- session: NAME -->`, names a
//! session: the blocks of a file with one name run in one environment, in
//! order, shells and background jobs included. A block that cannot run
//! says why in a comment right before it, `<!-- not run: REASON -->`; the
//! test lists those blocks, and allows at most [`MAX_NOT_RUN`] per file.
//!
//! **Running.** Each terminal is a bash whose working directory is a fresh
//! one of the session's, where a session makes its files (`seq 1000 >
//! numbers.txt`); on its PATH, `shmhub` is the binary under test and
//! `cargo` the cargo building the tests, run in the crate's root (where
//! the docs' reader runs `cargo run --example`). `SHMHUB_SHM_DIR` is a
//! fresh directory, and `TZ=UTC`. `/dev/shm` in a command means that
//! directory, and printed, that directory reads `/dev/shm`, so nothing
//! touches the real one. Commands get /dev/null as standard input. A
//! command ending in `&` runs as a background job, its line `[JOB] PID`
//! printed first, as an interactive shell does; its later output goes to
//! the command it is printed under. A command that exits with a status
//! other than 0 must show an `error:` line (`$ cmd; echo "exit $?"` shows
//! a status on purpose). Sessions write nowhere but in their own
//! directories (and `cargo` in its target directory, should the example
//! not be built yet). Nothing here waits for a time to pass: a command is read
//! when it has ended and printed what the docs show (at once if no
//! background job could print more), and [`COMMAND_TIMEOUT`] only bounds
//! how long a failing comparison waits.
//!
//! **Comparing.** Both texts are brought to one form before they are
//! compared line by line ([`redact`] has the table):
//!
//! - tables are compared by cell: cells trimmed, border runs cut to one
//!   character, since a column's width follows its widest value;
//! - what differs from run to run is named, in both texts: RFC 3339 times
//!   and Unix times in JSON (`[TIME]`), ages (`3m ago`, `[AGE] ago`; `ls`'s
//!   `age` column), measured durations (`inspect`'s `heartbeat age`
//!   column, `"waited_ms":12`: `[DURATION]`), process ids (`pid 5038`,
//!   `"pid":5038`, a job's `[1] 5490`, `inspect`'s `holder pid` column:
//!   `[PID]`), and a file's owner (`root:root 0600`: `[USER]:[GROUP]
//!   0600`);
//! - `...` in a line of the docs stands for any text within that line: for
//!   the long payloads of JSON lines (`"payload_hex":"5b7061..."`).
//!
//! So the docs show real output (`pid 5038`, `/dev/shm/demo`), and a
//! failure names the file and line, the command, and both texts as
//! compared.
//!
//! **Other blocks.** `sh` blocks are commands to type, with no output
//! shown, and are not run (`sudo shmhub man --out-dir ...` installs into
//! the system). A few claims the docs make in words about what the
//! command prints (sizes, exit codes) are checked in [`claims`].

mod blocks;
mod claims;
mod redact;
mod terminal;

use std::collections::BTreeMap;
use std::path::Path;

use blocks::{Action, Block, Step};
use terminal::{COMMAND_TIMEOUT, Printed, Terminal};

use crate::common::BIN;

/// The most blocks of one file that may be left unrun: each is output
/// nobody checks, so a new one should run rather than raise this.
const MAX_NOT_RUN: usize = 2;

/// Variables that would change what the shell or the command does.
const UNSET: &[&str] = &[
    "BASH_ENV",
    "CDPATH",
    "CLICOLOR_FORCE",
    "ENV",
    "RUST_BACKTRACE",
    "SHMHUB_PEER_ID",
    "SHMHUB_SEGMENT",
];

#[test]
fn readme_sessions_print_what_the_readme_shows() {
    check_sessions("README.md");
}

#[test]
fn cli_md_sessions_print_what_cli_md_shows() {
    check_sessions("docs/cli.md");
}

/// Runs every session of `file` (relative to the crate's root) and fails
/// with every difference found.
fn check_sessions(file: &str) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("reading {file}: {e}"));
    let blocks = blocks::console_blocks(file, &text)
        .unwrap_or_else(|problems| panic!("{}", problems.join("\n")));
    let (not_run, to_run): (Vec<&Block>, Vec<&Block>) =
        blocks.iter().partition(|b| b.not_run.is_some());
    println!(
        "{file}: {} console block(s), {} not run:",
        blocks.len(),
        not_run.len()
    );
    for block in &not_run {
        let reason = block.not_run.as_deref().unwrap_or_default();
        println!("  {file}:{}: {reason}", block.line);
    }
    assert!(
        not_run.len() <= MAX_NOT_RUN,
        "{file} leaves {} console blocks unrun, more than {MAX_NOT_RUN}",
        not_run.len()
    );
    assert!(!to_run.is_empty(), "{file} has no console block to run");
    let failures = run_blocks(&to_run);
    assert!(
        failures.is_empty(),
        "{} difference(s) between {file}'s console sessions and what the command prints; \
         fix the docs (or the command, if it is wrong):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Runs `blocks`, each session in an environment of its own; returns the
/// failures.
fn run_blocks(blocks: &[&Block]) -> Vec<String> {
    sessions(blocks)
        .iter()
        .flat_map(|blocks| run_session(blocks))
        .collect()
}

// The runner itself: a session whose docs drifted from the command fails,
// naming the line of each difference, in text and in a table; the values
// that vary (the pid, the owner, the times) do not count.
#[test]
fn a_drifted_session_fails_at_the_lines_that_drifted() {
    let doc = "\
<!-- session: drift -->
```console
$ shmhub create drift --max-guests 2 --ring-size 8 --slot-size 4KiB --slots 8
created /dev/shm/drift: 112.0 KiB, 3 guests, rings of 8, 8 slots of 4.0 KiB per pool, max payload 4.0 KiB, heartbeat off, mode 0600
$ shmhub attach drift --hold &
[1] 4242
1
```

<!-- session: drift -->
```console
$ shmhub inspect drift
┌──────────────────────┬────────────────────────────────────────┐
│ header               ┆ value                                  │
╞══════════════════════╪════════════════════════════════════════╡
│ path                 ┆ /dev/shm/drift                         │
│ owner                ┆ alice:staff 0600                       │
│ version              ┆ VERSION                                │
│ total size           ┆ 112.0 KiB (114688 bytes)               │
│ created              ┆ 2026-12-05T11:20:17.204+00:00 (9m ago) │
│ host                 ┆ no process                             │
│ max guests           ┆ 2                                      │
│ ring capacity        ┆ 8                                      │
│ slot size            ┆ 4.0 KiB                                │
│ slots per pool       ┆ 8                                      │
│ max payload          ┆ 4.0 KiB                                │
│ host slots per guest ┆ 8 (the fair share)                     │
│ heartbeat            ┆ off                                    │
└──────────────────────┴────────────────────────────────────────┘
┌──────┬──────────┬───────┬────────────┬────────┬───────────────┬─────────┬──────────┬────────────┐
│ peer ┆ state    ┆ epoch ┆ holder pid ┆ holder ┆ heartbeat age ┆ to host ┆ to guest ┆ host slots │
╞══════╪══════════╪═══════╪════════════╪════════╪═══════════════╪═════════╪══════════╪════════════╡
│ 1    ┆ attached ┆ 1     ┆ 4242       ┆ alive  ┆               ┆ 0/8     ┆ 0/8      ┆ 0/6        │
└──────┴──────────┴───────┴────────────┴────────┴───────────────┴─────────┴──────────┴────────────┘
(1 empty entry hidden; --all shows them)
┌────────┬───────────┬──────┬──────┐
│ pool   ┆ slot size ┆ used ┆ free │
╞════════╪═══════════╪══════╪══════╡
│ host   ┆ 4.0 KiB   ┆ 0    ┆ 8    │
│ peer 1 ┆ 4.0 KiB   ┆ 0    ┆ 8    │
└────────┴───────────┴──────┴──────┘
$ kill %1
```
";
    // The format version is this build's, so that only the two drifts
    // planted below differ.
    let doc = doc.replace(
        "VERSION                                ",
        &format!("{:<39}", shmhub::format::VERSION),
    );
    let blocks = blocks::console_blocks("drift.md", &doc).expect("well-formed");
    let failures = run_blocks(&blocks.iter().collect::<Vec<_>>());
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures[0].starts_with("drift.md:3: $ shmhub create drift ")
            && failures[0].contains("differs from the docs at line 4")
            && failures[0].contains("printed: \"created /dev/shm/drift: 112.0 KiB, 2 guests,"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].starts_with("drift.md:12: $ shmhub inspect drift")
            && failures[1].contains("differs from the docs at line 33")
            && failures[1]
                .contains("printed: \"│ 1 ┆ attached ┆ 1 ┆ [PID] ┆ alive ┆  ┆ 0/8 ┆ 0/8 ┆ 0/8 │\""),
        "{}",
        failures[1]
    );
}

/// `blocks` grouped by session, in the order each session starts.
fn sessions<'a>(blocks: &[&'a Block]) -> Vec<Vec<&'a Block>> {
    let mut sessions: Vec<Vec<&Block>> = Vec::new();
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for &block in blocks {
        let Some(name) = block.session.as_deref() else {
            sessions.push(vec![block]);
            continue;
        };
        let at = *named.entry(name).or_insert_with(|| {
            sessions.push(Vec::new());
            sessions.len() - 1
        });
        sessions[at].push(block);
    }
    sessions
}

/// Runs the steps of `blocks` in one environment; returns the failures.
fn run_session(blocks: &[&Block]) -> Vec<String> {
    let steps: Vec<(&Block, Step)> = blocks
        .iter()
        .flat_map(|&block| blocks::steps(block).into_iter().map(move |s| (block, s)))
        .collect();
    let mut session = Session::new();
    let mut failures = Vec::new();
    for (i, (block, step)) in steps.iter().enumerate() {
        // A command whose terminal shows more of its output later is still
        // running when the docs move on.
        let keeps_running = steps[i + 1..]
            .iter()
            .find(|(_, later)| later.terminal == step.terminal)
            .is_some_and(|(_, later)| later.action == Action::Rest);
        failures.extend(session.step(block, step, keeps_running));
    }
    let first = blocks[0];
    failures.extend(session.finish(&format!("{}:{}", first.file, first.line)));
    failures
}

/// A command typed in a terminal that has not ended yet.
struct Running {
    marker: u64,
    command: String,
    line: usize,
    /// The lines the docs showed for it so far.
    shown: Vec<(usize, String)>,
}

/// One session's environment: its directories and terminals.
struct Session {
    // Dropped first: the shells and their jobs end before their
    // directories go.
    terminals: BTreeMap<String, Terminal>,
    running: BTreeMap<String, Running>,
    shm_dir: tempfile::TempDir,
    /// The terminals' working directory, where a session makes its files.
    work_dir: tempfile::TempDir,
    /// Put first on PATH: `shmhub` and `cargo`.
    bin_dir: tempfile::TempDir,
}

impl Session {
    fn new() -> Session {
        let temp = |prefix| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("tempdir")
        };
        let bin_dir = temp("shmhub-docs-bin-");
        std::os::unix::fs::symlink(BIN, bin_dir.path().join("shmhub")).expect("linking shmhub");
        write_cargo(&bin_dir.path().join("cargo"));
        Session {
            terminals: BTreeMap::new(),
            running: BTreeMap::new(),
            shm_dir: temp("shmhub-docs-"),
            work_dir: temp("shmhub-docs-work-"),
            bin_dir,
        }
    }

    fn shm_dir(&self) -> &str {
        self.shm_dir.path().to_str().expect("UTF-8 temp path")
    }

    /// The terminal named `name`, started on first use.
    fn terminal(&mut self, name: &str) -> &mut Terminal {
        if !self.terminals.contains_key(name) {
            let path = std::env::var("PATH").unwrap_or_default();
            let env = [
                ("PATH", format!("{}:{path}", self.bin_dir.path().display())),
                ("SHMHUB_SHM_DIR", self.shm_dir().to_owned()),
                ("TZ", "UTC".to_owned()),
            ];
            let terminal = Terminal::start(self.work_dir.path(), &env, UNSET);
            self.terminals.insert(name.to_owned(), terminal);
        }
        self.terminals.get_mut(name).expect("started")
    }

    /// Runs `step` of `block`; a failure if it did not print what the docs
    /// show. `keeps_running`: the docs show the rest of its output later.
    fn step(&mut self, block: &Block, step: &Step, keeps_running: bool) -> Option<String> {
        let place = match step.terminal.as_str() {
            "" => format!("{}:{}", block.file, step.line),
            name => format!("{}:{} (terminal {name})", block.file, step.line),
        };
        match &step.action {
            Action::Type(command) => {
                if let Some(running) = self.running.get(&step.terminal) {
                    return Some(format!(
                        "{place}: $ {command}\n  typed while `{}` (line {}) still runs there",
                        running.command, running.line
                    ));
                }
                let typed = command.replace(redact::SHOWN_SHM_DIR, self.shm_dir());
                let terminal = self.terminal(&step.terminal);
                let marker = terminal.type_command(&typed);
                let printed = terminal.read(marker, step.expected.len(), !keeps_running);
                if keeps_running && printed.status.is_none() {
                    let running = Running {
                        marker,
                        command: command.clone(),
                        line: step.line,
                        shown: step.expected.clone(),
                    };
                    self.running.insert(step.terminal.clone(), running);
                }
                let title = format!("{place}: $ {command}");
                self.check(
                    &title,
                    &step.expected,
                    &step.expected,
                    &printed,
                    keeps_running,
                )
            }
            Action::Rest => {
                let Some(running) = self.running.remove(&step.terminal) else {
                    return Some(format!("{place}: output shown, but no command runs there"));
                };
                let terminal = self.terminal(&step.terminal);
                let printed = terminal.read(running.marker, step.expected.len(), true);
                let title = format!(
                    "{place}: the rest of $ {} (line {})",
                    running.command, running.line
                );
                let whole: Vec<(usize, String)> = running
                    .shown
                    .into_iter()
                    .chain(step.expected.clone())
                    .collect();
                self.check(&title, &step.expected, &whole, &printed, false)
            }
        }
    }

    /// A failure, under `title`, if `printed` is not `shown`, or if the
    /// command ended badly: not at all (unless `may_run_on`), or with a
    /// status other than 0 while no `error:` line is in `whole`, all the
    /// docs show for it.
    fn check(
        &self,
        title: &str,
        shown: &[(usize, String)],
        whole: &[(usize, String)],
        printed: &Printed,
        may_run_on: bool,
    ) -> Option<String> {
        let mut problems = Vec::new();
        let expected = redact::normalize(shown.iter().map(|(_, l)| l.as_str()));
        let actual_text = redact::as_shown(&printed.text, self.shm_dir());
        let actual = redact::normalize(actual_text.lines());
        if let Some(at) = redact::first_difference(&expected, &actual) {
            problems.push(difference(shown, &expected, &actual, at));
            if printed.timed_out && printed.status.is_some() {
                problems.push(format!(
                    "  (it ended, but background jobs of the session ran: the test waited \
                     {COMMAND_TIMEOUT:?} for the lines the docs show)"
                ));
            }
        }
        let shows_error = whole.iter().any(|(_, l)| l.starts_with("error:"));
        match printed.status {
            None if !may_run_on => {
                problems.push(format!("  it did not end within {COMMAND_TIMEOUT:?}"))
            }
            Some(status) if status != 0 && !shows_error => problems.push(format!(
                "  it exited with status {status}, but the docs show no `error:` line for it"
            )),
            _ => {}
        }
        (!problems.is_empty()).then(|| format!("{title}\n{}", problems.join("\n")))
    }

    /// Ends the session: a failure (naming the session by `start`) for
    /// output nobody read, then every terminal closed.
    fn finish(mut self, start: &str) -> Vec<String> {
        let mut failures = Vec::new();
        for (name, terminal) in &mut self.terminals {
            let unread = terminal.unread();
            if !unread.trim().is_empty() {
                let shown =
                    redact::as_shown(&unread, self.shm_dir.path().to_str().unwrap_or_default());
                failures.push(format!(
                    "{start}: the session's terminal {name:?} printed more after its last step, \
                     which the docs do not show:\n{}",
                    indent(&shown)
                ));
            }
        }
        let said: Vec<String> = std::mem::take(&mut self.terminals)
            .into_values()
            .map(Terminal::close)
            .filter(|said| !said.trim().is_empty())
            .collect();
        if !failures.is_empty() && !said.is_empty() {
            failures.push(format!(
                "{start}: the shell said:\n{}",
                indent(&said.join(""))
            ));
        }
        failures
    }
}

/// Writes at `path` a `cargo` that runs the cargo building these tests in
/// the crate's root, as a reader of the docs runs it, whatever the
/// session's working directory.
fn write_cargo(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\ncd {} || exit 1\nexec {} \"$@\"\n",
        quote(env!("CARGO_MANIFEST_DIR")),
        quote(&cargo)
    );
    std::fs::write(path, script).expect("writing the cargo script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("making the cargo script executable");
}

/// Where `expected` and `actual` part (at `at`), with the line of the docs,
/// and both texts as compared.
fn difference(
    shown: &[(usize, String)],
    expected: &[String],
    actual: &[String],
    at: usize,
) -> String {
    let line = match (shown.get(at), shown.last()) {
        (Some((l, _)), _) => format!("line {l}"),
        (None, Some((l, _))) => format!("the line after {l}"),
        (None, None) => "the line after the command".to_owned(),
    };
    let side = |lines: &[String]| {
        lines
            .get(at)
            .map_or("(nothing)".to_owned(), |l| clip(&format!("{l:?}")))
    };
    format!(
        "  differs from the docs at {line} (as compared, after redaction):\n    docs:    {}\n    printed: {}\n  the docs show:\n{}  the command printed:\n{}",
        side(expected),
        side(actual),
        indent(&expected.join("\n")),
        indent(&actual.join("\n")),
    )
}

/// `text` indented as a quoted block of a failure message, or a line
/// saying there is none.
fn indent(text: &str) -> String {
    if text.is_empty() {
        return "    (nothing)\n".to_owned();
    }
    text.lines()
        .map(|l| format!("    | {}\n", clip(l)))
        .collect()
}

/// `line` cut to a length a failure message can show (a JSON payload can
/// run to kilobytes).
fn clip(line: &str) -> String {
    const SHOWN: usize = 240;
    match line.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}... ({} more bytes)", &line[..at], line.len() - at),
        None => line.to_owned(),
    }
}
