//! The sessions README.md and docs/cli.md show, run: every `$ shmhub ...`
//! line of README's short session and of cli.md's worked session is run
//! in order, and what it printed must be what the document shows below
//! it (`...` standing for any text, `/dev/shm/` for the test's directory);
//! tables, which show the user and the clock, are not compared, nor is a
//! command the document shows no output for. And the claims the documents
//! make about the command's own words: the size `demo` makes, the exit
//! codes `--help` lists. (Issue 32, item 9: these had drifted.)

use std::path::Path;

use crate::common::*;

/// One command of a session and the lines the document shows after it.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The steps of the first ```console block after `heading` in `doc`.
fn session(doc: &str, heading: &str) -> Vec<Step> {
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let block = &doc[at..];
    let start = block.find("```console\n").expect("a console block") + "```console\n".len();
    let end = start + block[start..].find("```").expect("the block's end");
    let mut steps: Vec<Step> = Vec::new();
    for line in block[start..end].lines() {
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_string(),
                shown: Vec::new(),
            }),
            None => steps
                .last_mut()
                .expect("output before any command")
                .shown
                .push(line.to_string()),
        }
    }
    steps
}

/// Whether `actual` is `shown` with each `...` standing for any text.
fn matches_elided(shown: &str, actual: &str) -> bool {
    let pieces: Vec<&str> = shown.split("...").collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return shown == actual;
    }
    if !actual.starts_with(first) || !actual[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Runs `steps` in a fresh, empty environment (the sessions make the
/// files they send) and returns each mismatch.
fn run_session(steps: &[Step]) -> Vec<String> {
    let env = Env::new();
    let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
    let dir = format!("{}/", env.dir().display());
    let mut problems = Vec::new();
    for step in steps {
        let r = env.shell(&format!(
            "PATH='{bin_dir}':\"$PATH\"; {} 2>&1",
            step.command
        ));
        if step.shown.is_empty() || step.shown.iter().any(|l| l.starts_with('┌')) {
            continue;
        }
        let actual: Vec<&str> = r.stdout.lines().collect();
        let shown: Vec<String> = step
            .shown
            .iter()
            .map(|l| l.replace("/dev/shm/", &dir))
            .collect();
        let same = actual.len() == shown.len()
            && shown.iter().zip(&actual).all(|(s, a)| matches_elided(s, a));
        if !same {
            problems.push(format!(
                "`$ {}` printed\n{}\nwhere the document shows\n{}",
                step.command,
                r.stdout,
                step.shown.join("\n")
            ));
        }
    }
    problems
}

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn readme_short_session_prints_what_it_shows() {
    let steps = session(&read("README.md"), "## A short session");
    assert!(steps.len() >= 6, "{} steps", steps.len());
    let problems = run_session(&steps);
    assert!(problems.is_empty(), "README.md:\n{}", problems.join("\n\n"));
}

#[test]
fn cli_md_worked_session_prints_what_it_shows() {
    let steps = session(&read("docs/cli.md"), "## A worked session");
    assert!(steps.len() >= 10, "{} steps", steps.len());
    let problems = run_session(&steps);
    assert!(
        problems.is_empty(),
        "docs/cli.md:\n{}",
        problems.join("\n\n")
    );
    // The comment on the file sent says its size: the size of what the
    // session's own `seq` wrote.
    let env = Env::new();
    let len = env.shell("seq 1000 | wc -c").stdout.trim().to_string();
    let send = steps
        .iter()
        .find(|s| s.command.contains("--file numbers.txt"))
        .expect("the session sends numbers.txt");
    assert!(
        send.command.contains(&format!("# {len} bytes")),
        "numbers.txt is {len} bytes: {:?}",
        send.command
    );
}

// The size docs/cli.md quotes for `demo`'s segment is the one it makes.
#[test]
fn cli_md_quotes_the_size_demo_makes() {
    let env = Env::new();
    let first = env.ok(&["demo"]).stdout.lines().next().unwrap().to_string();
    let size = first
        .split_once(" (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(size, _)| size.to_string())
        .unwrap_or_else(|| panic!("{first:?}"));
    let doc = read("docs/cli.md");
    let section = &doc[doc.find("## `shmhub demo`").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap()];
    assert!(
        section.contains(&format!("no space left on the file system for {size}")),
        "demo makes {size}; its section says otherwise:\n{section}"
    );
}

// `--help` lists every exit code of docs/cli.md's table.
#[test]
fn help_lists_every_documented_exit_code() {
    let help = Env::new().ok(&["--help"]).stdout;
    let listed = &help[help.find("Exit codes:").expect("--help lists exit codes")..];
    let doc = read("docs/cli.md");
    let table = &doc[doc.find("**Exit codes**").unwrap()..];
    let codes: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1).map(str::trim))
        .filter(|c| !c.is_empty() && *c != "code" && !c.starts_with("---"))
        .collect();
    assert!(codes.len() >= 5, "{codes:?}");
    for code in codes {
        assert!(
            listed.lines().any(|l| l.trim_start().starts_with(code)),
            "--help does not list exit code {code}:\n{listed}"
        );
    }
}
