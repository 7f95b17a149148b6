//! `docs/cli.md` and the command's own `--help` name the same flags for
//! every subcommand, so neither can drift from the other.
//!
//! The commands are those `shmhub --help` lists (clap's `help` aside;
//! hidden internal commands such as `guest-echo` are not listed, so they
//! need no section). Every one of them must have exactly one section in
//! docs/cli.md, and every command section must name a listed command.
//!
//! How docs/cli.md ties a flag to a command:
//!
//! - A command's section starts at a heading whose first code span is
//!   `shmhub CMD ...` (as in "## `shmhub rm SEGMENT`") and runs to the next
//!   heading of the same or a higher level, so subheadings belong to it.
//!   Other headings (Conventions, the worked session) belong to no
//!   command. Lines in fenced blocks are never headings.
//! - Every `--flag` written in a command's section, in prose, tables, code
//!   spans or fenced synopses, is that command's, unless the code span or
//!   fenced line it is in names a command before it: the word after
//!   `shmhub`, or the span's first word when that is a command, as in
//!   `create --hold`, `recv --as N` or `shmhub detach SEGMENT --peer-id N`.
//!   Such a mention, anywhere in the document, must exist in the named
//!   command's `--help`, but it documents the flag only when it names the
//!   section's own command. A flag outside every command section that names
//!   no command (the exit-code table's `--count 0`) is not checked.
//!
//! So prose may point at another command's flags freely, as long as it says
//! whose they are.
//!
//! Every mismatch is collected before failing, so one run lists them all.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::Env;

/// The flags every clap command has, which the docs need not repeat.
const AUTOMATIC_FLAGS: &[&str] = &["--help", "--version"];

/// One `--flag` written in docs/cli.md, with the command it is tied to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mention {
    /// 1-based line in docs/cli.md, so a failure points at the text.
    line: usize,
    command: String,
    flag: String,
    /// Written in `command`'s own section without naming another command:
    /// only these count as documenting the flag.
    documents: bool,
}

/// What docs/cli.md says about commands and flags.
#[derive(Debug, Default)]
struct Doc {
    /// Each command section's heading line(s); more than one is a duplicate.
    sections: BTreeMap<String, Vec<usize>>,
    mentions: Vec<Mention>,
}

/// `shmhub ARGS --help` as plain text. `NO_COLOR` keeps clap from styling
/// it even where the environment forces colour (`CLICOLOR_FORCE`).
fn help(env: &Env, args: &[&str]) -> String {
    let out = env
        .cmd()
        .args(args)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running shmhub {args:?} --help: {e}"));
    assert!(
        out.status.success(),
        "shmhub {args:?} --help failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands in the `Commands:` list of top-level help, except
/// clap's own `help`, which is no command of ours.
fn help_commands(help: &str) -> BTreeSet<String> {
    let mut lines = help.lines().skip_while(|l| l.trim_end() != "Commands:");
    assert!(lines.next().is_some(), "no `Commands:` list in:\n{help}");
    let commands: BTreeSet<String> = lines
        .take_while(|l| l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&c| c != "help")
        .map(str::to_owned)
        .collect();
    assert!(!commands.is_empty(), "empty `Commands:` list in:\n{help}");
    commands
}

/// The long flags of a command's help. Clap writes each option at an
/// indent of 2 (`  -j, --json`) or 6 (`      --max-guests <N>`), while
/// wrapped or next-line descriptions are indented further and usage and
/// example lines do not start with `-`; so only lines indented 1 to 6
/// spaces that start with `-` are option lines.
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if !(1..=6).contains(&indent) || !body.starts_with('-') {
            continue;
        }
        for word in body.split_whitespace() {
            let word = word.trim_end_matches(',');
            if let Some(name) = word.strip_prefix("--") {
                // `--flag=<V>` and `--flag[=<V>]` spell the value inline.
                let name = name.split(['=', '[']).next().unwrap_or_default();
                flags.insert(format!("--{name}"));
            } else if !word.starts_with('-') {
                break; // the value name or the description
            }
        }
    }
    flags
}

/// Every `--flag` in `text`: two dashes not preceded by a word character
/// or a dash, then a lowercase name (so `|---|` rows and `a--b` are not).
fn flags_in(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut flags = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("--").map(|at| at + i) {
        let boundary = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'-');
        let name_len = text[at + 2..]
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            .count();
        let name = text[at + 2..at + 2 + name_len].trim_end_matches('-');
        if boundary && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.push(format!("--{name}"));
        }
        i = at + 2 + name_len;
    }
    flags
}

/// `line` cut into prose and code spans, each with whether it is code.
fn spans(line: &str) -> impl Iterator<Item = (&str, bool)> {
    line.split('`')
        .enumerate()
        .map(|(i, part)| (part, i % 2 == 1))
}

/// A heading's level and title, if `line` is one.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let title = line[level..].strip_prefix(' ')?;
    (1..=6).contains(&level).then_some((level, title))
}

/// The command a heading title names: `shmhub CMD` in its first code span.
fn heading_command(title: &str) -> Option<String> {
    let (code, _) = spans(title).find(|&(_, is_code)| is_code)?;
    match code.split_whitespace().collect::<Vec<_>>()[..] {
        ["shmhub", command, ..] => Some(command.to_owned()),
        _ => None,
    }
}

/// Reads docs/cli.md per the module's convention; `commands` are those
/// help lists, so that a code span's first word can be told to be one.
fn parse_doc(text: &str, commands: &BTreeSet<String>) -> Doc {
    let mut doc = Doc::default();
    // Open headings, outermost first: level and the command they name.
    let mut open: Vec<(usize, Option<String>)> = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if let Some((level, title)) = heading(line).filter(|_| !in_fence) {
            while open.last().is_some_and(|&(l, _)| l >= level) {
                open.pop();
            }
            let command = heading_command(title);
            if let Some(c) = &command {
                doc.sections.entry(c.clone()).or_default().push(number);
            }
            open.push((level, command));
        }
        let section = open.iter().rev().find_map(|(_, c)| c.as_deref());
        // A fenced line is one span of code; elsewhere backticks delimit.
        let parts: Vec<(&str, bool)> = if in_fence {
            vec![(line, true)]
        } else {
            spans(line).collect()
        };
        for (part, is_code) in parts {
            let words: Vec<&str> = if is_code {
                part.split_whitespace().collect()
            } else {
                vec![part]
            };
            let mut named: Option<&str> = None;
            for (w, word) in words.iter().enumerate() {
                if is_code && w == 0 && commands.contains(*word) {
                    named = Some(word);
                }
                if is_code && *word == "shmhub" {
                    if let Some(next) = words.get(w + 1).filter(|n| !n.starts_with('-')) {
                        named = Some(next);
                    }
                }
                for flag in flags_in(word) {
                    let Some(command) = named.or(section) else {
                        continue;
                    };
                    doc.mentions.push(Mention {
                        line: number,
                        command: command.to_owned(),
                        flag,
                        documents: Some(command) == section,
                    });
                }
            }
        }
    }
    doc
}

/// Every disagreement between the document and the help texts, one line
/// each; `help_of` gives a listed command's flags.
fn problems(
    doc: &Doc,
    commands: &BTreeSet<String>,
    help_of: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for c in commands {
        match doc.sections.get(c).map(Vec::as_slice) {
            None => problems.push(format!(
                "shmhub {c}: listed by `shmhub --help` but docs/cli.md has no \"`shmhub {c} ...`\" section"
            )),
            Some([_]) => {}
            Some(lines) => problems.push(format!(
                "shmhub {c}: docs/cli.md has several sections for it (lines {lines:?})"
            )),
        }
    }
    for (c, lines) in &doc.sections {
        if !commands.contains(c) {
            problems.push(format!(
                "shmhub {c}: docs/cli.md has a section for it (line {}) but `shmhub --help` does not list it",
                lines[0]
            ));
        }
    }
    // Lines of each (command, flag) written in the docs but not in help.
    let mut stale: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for m in &doc.mentions {
        let Some(flags) = help_of.get(&m.command) else {
            // A section for a command help lacks is reported once above;
            // a `shmhub X --flag` elsewhere is reported here.
            if !doc.sections.contains_key(&m.command) {
                stale.entry((&m.command, &m.flag)).or_default().push(m.line);
            }
            continue;
        };
        if !flags.contains(&m.flag) {
            stale.entry((&m.command, &m.flag)).or_default().push(m.line);
        }
    }
    for ((c, flag), lines) in stale {
        problems.push(format!(
            "shmhub {c}: {flag} is in docs/cli.md (line(s) {lines:?}) but not in `shmhub {c} --help`"
        ));
    }
    for (c, flags) in help_of {
        for flag in flags {
            if AUTOMATIC_FLAGS.contains(&flag.as_str()) {
                continue;
            }
            let documented = doc
                .mentions
                .iter()
                .any(|m| m.documents && &m.command == c && &m.flag == flag);
            if !documented {
                problems.push(format!(
                    "shmhub {c}: {flag} is in `shmhub {c} --help` but not documented in its section of docs/cli.md"
                ));
            }
        }
    }
    problems
}

#[test]
fn docs_cli_md_and_help_name_the_same_flags() {
    let env = Env::new();
    let commands = help_commands(&help(&env, &[]));
    let help_of: BTreeMap<String, BTreeSet<String>> = commands
        .iter()
        .map(|c| {
            let text = help(&env, &[c]);
            let flags = help_flags(&text);
            // Guards the parser: if clap's layout changed and nothing were
            // read, undocumented flags would go unnoticed.
            assert!(
                flags.contains("--help"),
                "read no --help in `shmhub {c} --help`:\n{text}"
            );
            (c.clone(), flags)
        })
        .collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
    let text = std::fs::read_to_string(path).expect("reading docs/cli.md");
    let doc = parse_doc(&text, &commands);
    let problems = problems(&doc, &commands, &help_of);
    assert!(
        problems.is_empty(),
        "docs/cli.md and `shmhub --help` disagree ({} problem(s)); fix docs/cli.md \
         (the clap definitions in src/cmd/ are the truth):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn help_parser_reads_only_option_lines() {
    let help = "\
Usage: shmhub x [OPTIONS] --as <host|N> <SEGMENT>

Arguments:
  <SEGMENT>  Segment path

Options:
  -j, --json
          Print JSON
      --max-guests <N>      How many guests [default: 8]
      --color[=<WHEN>]      When to colour
          --not-a-flag starts this wrapped description
  -h, --help                Print help
  -V, --version             Print version

Examples:
  shmhub x demo --example
";
    let flags: Vec<String> = help_flags(help).into_iter().collect();
    assert_eq!(
        flags,
        ["--color", "--help", "--json", "--max-guests", "--version"]
    );
}

#[test]
fn doc_parser_ties_flags_to_their_command() {
    let doc = "\
# The `shmhub` command

`--as host` belongs to no command here.

## `shmhub send SEGMENT`

| flag | meaning |
|---|---|
| `--count K` | copies |

```
shmhub send SEGMENT [--timeout DUR]
# not a heading
            [--json]
```

See `recv --follow`, `shmhub rm SEGMENT --force` and --id.

### Details

Still send's: `--method`.

## `shmhub recv SEGMENT`

```console
$ shmhub create demo --hold
```
";
    let commands = ["create", "recv", "rm", "send"].map(String::from).into();
    let parsed = parse_doc(doc, &commands);
    let sections: Vec<(&str, &[usize])> = parsed
        .sections
        .iter()
        .map(|(c, l)| (c.as_str(), l.as_slice()))
        .collect();
    assert_eq!(sections, [("recv", &[23][..]), ("send", &[5][..])]);
    let got: Vec<(usize, &str, &str, bool)> = parsed
        .mentions
        .iter()
        .map(|m| (m.line, m.command.as_str(), m.flag.as_str(), m.documents))
        .collect();
    assert_eq!(
        got,
        [
            (9, "send", "--count", true),
            (12, "send", "--timeout", true),
            (14, "send", "--json", true),
            (17, "recv", "--follow", false),
            (17, "rm", "--force", false),
            (17, "send", "--id", true),
            (21, "send", "--method", true),
            (26, "create", "--hold", false),
        ]
    );
}
