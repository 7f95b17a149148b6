//! `docs/cli.md` and the command's own `--help` name the same flags for
//! every subcommand, so neither can drift from the other.
//!
//! The commands are those `shmhub --help` lists (clap's `help` aside;
//! hidden internal commands such as `bench-peer` are not listed, so they
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
//! The document is read as GitHub renders it (pulldown-cmark, tables on),
//! so a code span that a line break cuts in the source is still one span,
//! and HTML comments (the directives of `docs_sessions`) and link targets
//! are not text.
//!
//! Every mismatch is collected before failing, so one run lists them all.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};

use crate::common::Env;
use crate::markdown::{self, LineIndex};

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

/// Every `--flag` in `text`, with its byte offset there: two dashes not
/// preceded by a word character or a dash, then a lowercase name (so
/// `|---|` rows and `a--b` are not).
fn flags_in(text: &str) -> Vec<(usize, String)> {
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
            flags.push((at, format!("--{name}")));
        }
        i = at + 2 + name_len;
    }
    flags
}

/// A run of the document's source read as one unit: a stretch of prose, a
/// code span (without its backticks) or one line of a fenced block.
struct Part<'a> {
    /// Byte offset of `text` in the document.
    offset: usize,
    text: &'a str,
    is_code: bool,
}

/// The words of `part` with their offsets in the document: a code span's
/// whitespace-separated words, or a stretch of prose as a single word.
fn words<'a>(part: &Part<'a>) -> Vec<(usize, &'a str)> {
    if !part.is_code {
        return vec![(part.offset, part.text)];
    }
    let base = part.text.as_ptr() as usize;
    part.text
        .split_whitespace()
        .map(|w| (part.offset + (w.as_ptr() as usize - base), w))
        .collect()
}

/// The command a heading names: `shmhub CMD` in its first code span.
/// `events` start just after the heading's start.
fn heading_command(events: &[(Event<'_>, Range<usize>)]) -> Option<String> {
    let code = events.iter().find_map(|(event, _)| match event {
        Event::Code(code) => Some(Some(code)),
        Event::End(TagEnd::Heading(_)) => Some(None),
        _ => None,
    })??;
    match code.split_whitespace().collect::<Vec<_>>()[..] {
        ["shmhub", command, ..] => Some(command.to_owned()),
        _ => None,
    }
}

/// The parts `event` (at `range` of `text`) holds, if it holds any: a
/// fenced block's text is a code span per line.
fn parts<'a>(
    text: &'a str,
    event: &Event<'_>,
    range: &Range<usize>,
    in_fence: bool,
) -> Vec<Part<'a>> {
    let raw = &text[range.clone()];
    match event {
        Event::Text(_) if in_fence => raw
            .split_inclusive('\n')
            .scan(range.start, |offset, line| {
                let part = Part {
                    offset: *offset,
                    text: line,
                    is_code: true,
                };
                *offset += line.len();
                Some(part)
            })
            .collect(),
        Event::Text(_) => vec![Part {
            offset: range.start,
            text: raw,
            is_code: false,
        }],
        Event::Code(_) => {
            let inner = raw.trim_start_matches('`');
            let offset = range.start + (raw.len() - inner.len());
            vec![Part {
                offset,
                text: inner.trim_end_matches('`'),
                is_code: true,
            }]
        }
        _ => Vec::new(),
    }
}

/// Records the flags `part` mentions, each tied to the command the part
/// names before it, else to `section`'s.
fn record_mentions(
    doc: &mut Doc,
    part: &Part<'_>,
    section: Option<&str>,
    commands: &BTreeSet<String>,
    lines: &LineIndex,
) {
    let words = words(part);
    let mut named: Option<&str> = None;
    for (w, &(offset, word)) in words.iter().enumerate() {
        if part.is_code && w == 0 && commands.contains(word) {
            named = Some(word);
        }
        if part.is_code && word == "shmhub" {
            if let Some(&(_, next)) = words.get(w + 1).filter(|(_, n)| !n.starts_with('-')) {
                named = Some(next);
            }
        }
        for (at, flag) in flags_in(word) {
            let Some(command) = named.or(section) else {
                continue;
            };
            doc.mentions.push(Mention {
                line: lines.line(offset + at),
                command: command.to_owned(),
                flag,
                documents: Some(command) == section,
            });
        }
    }
}

/// Reads docs/cli.md per the module's convention; `commands` are those
/// help lists, so that a code span's first word can be told to be one.
fn parse_doc(text: &str, commands: &BTreeSet<String>) -> Doc {
    let lines = LineIndex::new(text);
    let events: Vec<(Event<'_>, Range<usize>)> =
        markdown::parser(text).into_offset_iter().collect();
    let mut doc = Doc::default();
    // Open headings, outermost first: level and the command they name.
    let mut open: Vec<(HeadingLevel, Option<String>)> = Vec::new();
    let mut in_fence = false;
    for (i, (event, range)) in events.iter().enumerate() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                while open.last().is_some_and(|(l, _)| l >= level) {
                    open.pop();
                }
                let command = heading_command(&events[i + 1..]);
                if let Some(c) = &command {
                    doc.sections
                        .entry(c.clone())
                        .or_default()
                        .push(lines.line(range.start));
                }
                open.push((*level, command));
            }
            Event::Start(Tag::CodeBlock(_)) => in_fence = true,
            Event::End(TagEnd::CodeBlock) => in_fence = false,
            _ => {}
        }
        let section = open.iter().rev().find_map(|(_, c)| c.as_deref());
        for part in parts(text, event, range, in_fence) {
            record_mentions(&mut doc, &part, section, commands, &lines);
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

#[test]
fn doc_parser_reads_a_code_span_cut_by_a_line_break_as_one() {
    let doc = "\
## `shmhub rm SEGMENT`

Run `shmhub
send SEGMENT --count 2` or `--force`
<!-- not a mention: --id -->
";
    let commands = ["rm", "send"].map(String::from).into();
    let got: Vec<(usize, String, String, bool)> = parse_doc(doc, &commands)
        .mentions
        .into_iter()
        .map(|m| (m.line, m.command, m.flag, m.documents))
        .collect();
    assert_eq!(
        got,
        [
            (4, "send".into(), "--count".into(), false),
            (4, "rm".into(), "--force".into(), true),
        ]
    );
}
