//! What the docs say in words about the command's output, beside their
//! sessions: the size a session's comment gives for the file it sends,
//! the size docs/cli.md quotes for `demo`'s segment, and the exit codes
//! `--help` lists, and the crates README names as the command's. (Issue
//! 32, item 9, and issue 29: each of these had drifted.)

use std::path::Path;

use super::blocks::{self, Action};
use crate::common::*;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The size, in bytes, a `# N bytes` comment of `command` gives.
fn bytes_in_comment(command: &str) -> Option<u64> {
    let (_, comment) = command.split_once(" # ")?;
    let number = comment.trim().split_once(" bytes")?.0;
    number.trim().parse().ok()
}

// A session that sends numbers.txt and says how large it is says what
// `seq 1000` writes: the same on every machine, unlike a file of the repo
// (Cargo.toml's size changed, and the docs with it had to).
#[test]
fn sessions_say_the_size_of_the_file_they_send() {
    let len: u64 = Env::new()
        .shell("seq 1000 | wc -c")
        .stdout
        .trim()
        .parse()
        .expect("wc -c prints a number");
    let mut checked = 0;
    for file in ["README.md", "docs/cli.md"] {
        let text = read(file);
        let console = blocks::console_blocks(file, &text)
            .unwrap_or_else(|problems| panic!("{}", problems.join("\n")));
        for step in console.iter().flat_map(blocks::steps) {
            let Action::Type(command) = &step.action else {
                continue;
            };
            if !command.contains("numbers.txt") {
                continue;
            }
            if let Some(said) = bytes_in_comment(command) {
                assert_eq!(
                    said, len,
                    "{file}:{}: numbers.txt is {len} bytes: {command:?}",
                    step.line
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no session says the size of numbers.txt");
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

// README lists the command's dependencies, those the library alone goes
// without: every crate the `cli` feature brings in (its `dep:` entries in
// Cargo.toml), and no other.
#[test]
fn readme_names_every_dependency_of_the_command() {
    let manifest = read("Cargo.toml");
    let cli = &manifest[manifest.find("\ncli = [").expect("a cli feature")..];
    let cli = &cli[..cli.find(']').expect("the feature's end")];
    let mut brought: Vec<&str> = cli
        .split('"')
        .filter_map(|word| word.strip_prefix("dep:"))
        .collect();
    // The `serde` feature it enables brings serde.
    if cli.contains("\"serde\"") {
        brought.push("serde");
    }
    brought.sort_unstable();
    let readme = read("README.md");
    let start = "The command's dependencies (";
    let listed = &readme[readme.find(start).expect("README lists them") + start.len()..];
    let listed = &listed[..listed.find(')').expect("the list's end")];
    let mut named: Vec<&str> = listed
        .split(',')
        .map(|name| name.trim().trim_start_matches("and "))
        .collect();
    named.sort_unstable();
    assert!(brought.len() >= 10, "{brought:?}");
    assert_eq!(
        named, brought,
        "README names these; Cargo.toml's cli feature brings those"
    );
}

#[test]
fn a_size_is_read_from_a_comment() {
    let cases = [
        (
            "shmhub send demo --as 2 --file numbers.txt   # 3893 bytes: through a slot",
            Some(3893),
        ),
        (
            "shmhub send demo --as 1 --file numbers.txt     # larger than 32 bytes",
            None,
        ),
        ("shmhub send demo --as 1 --file numbers.txt", None),
    ];
    for (command, size) in cases {
        assert_eq!(bytes_in_comment(command), size, "{command}");
    }
}
