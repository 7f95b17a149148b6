//! The `console` blocks of a Markdown file, the directives in the HTML
//! comments right before them, and each block cut into steps: a command
//! typed at a terminal and the lines shown after it.

use pulldown_cmark::{CodeBlockKind, Event, Tag, TagEnd};

use crate::markdown::{self, LineIndex};

/// A directive naming the session a block belongs to.
const SESSION: &str = "session:";
/// A directive saying a block is not run, and why.
const NOT_RUN: &str = "not run:";

/// One fenced block whose info string starts with `console`.
#[derive(Debug)]
pub struct Block {
    /// The file, as failure messages name it (`docs/cli.md`).
    pub file: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    /// `<!-- session: NAME -->`: the blocks of one file sharing a name
    /// share one environment, in document order.
    pub session: Option<String>,
    /// `<!-- not run: REASON -->`.
    pub not_run: Option<String>,
    /// The block's lines, each with its line in the file.
    pub lines: Vec<(usize, String)>,
}

/// What a step does at its terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `$ COMMAND`: the command typed at the prompt.
    Type(String),
    /// Output under a `# terminal` comment with no `$` line above it: the
    /// rest of what the command still running there prints, to its end.
    Rest,
}

/// A command, or the rest of a running one, with the output shown for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The terminal it happens in: the name a `# terminal NAME` comment
    /// gave, or empty for a block's only terminal.
    pub terminal: String,
    /// Line of the `$` line, or of the first line of a [`Action::Rest`].
    pub line: usize,
    pub action: Action,
    /// The lines shown for it, each with its line in the file.
    pub expected: Vec<(usize, String)>,
}

/// Directives read from comments, waiting for the block they precede.
#[derive(Default)]
struct Pending {
    /// Line of the first directive, for a dangling one's message.
    line: usize,
    session: Option<String>,
    not_run: Option<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.session.is_none() && self.not_run.is_none()
    }

    /// Reads the directives among the HTML comments of `html`, which
    /// starts on line `line`.
    fn read(&mut self, html: &str, line: usize) {
        for comment in html.split("<!--").skip(1) {
            let body = comment.split("-->").next().unwrap_or_default();
            let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let first = self.is_empty();
            if let Some(name) = body.strip_prefix(SESSION) {
                self.session = Some(name.trim().to_owned());
            } else if let Some(reason) = body.strip_prefix(NOT_RUN) {
                self.not_run = Some(reason.trim().to_owned());
            } else {
                continue;
            }
            if first {
                self.line = line;
            }
        }
    }
}

/// Every console block of `text` (the file `file`), or what is wrong
/// with the directives: one not right before a console block, or a block
/// both in a session and not run.
pub fn console_blocks(file: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let lines = LineIndex::new(text);
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut pending = Pending::default();
    // The console block being read, and its text so far.
    let mut open: Option<(Block, String)> = None;
    for (event, range) in markdown::parser(text).into_offset_iter() {
        let line = lines.line(range.start);
        match event {
            Event::Start(Tag::HtmlBlock) => pending.read(&text[range], line),
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info)))
                if info.split([' ', ',']).next() == Some("console") =>
            {
                let directives = std::mem::take(&mut pending);
                if directives.session.is_some() && directives.not_run.is_some() {
                    problems.push(format!(
                        "{file}:{line}: a block in a session cannot be left out of it (not run)"
                    ));
                }
                let block = Block {
                    file: file.to_owned(),
                    line,
                    session: directives.session,
                    not_run: directives.not_run,
                    lines: Vec::new(),
                };
                open = Some((block, String::new()));
            }
            Event::Text(content) if open.is_some() => {
                open.as_mut().expect("open block").1.push_str(&content);
            }
            Event::End(TagEnd::CodeBlock) => {
                blocks.extend(open.take().map(|(mut block, content)| {
                    let first = block.line + 1;
                    let numbered = content.lines().enumerate();
                    block.lines = numbered.map(|(i, l)| (first + i, l.to_owned())).collect();
                    block
                }))
            }
            Event::Start(_) if !pending.is_empty() => {
                problems.push(dangling(file, &pending));
                pending = Pending::default();
            }
            _ => {}
        }
    }
    if !pending.is_empty() {
        problems.push(dangling(file, &pending));
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

fn dangling(file: &str, pending: &Pending) -> String {
    format!(
        "{file}:{}: a `session:` or `not run:` comment must come right before a ```console block",
        pending.line
    )
}

/// The terminal a `# terminal NAME[,:] ...` comment switches to.
fn terminal_named(comment: &str) -> Option<String> {
    let rest = comment.strip_prefix("# terminal ")?;
    let name = rest.split([',', ':', ' ']).next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// `block` cut into steps. A `$ ` line is a command; the lines after it,
/// up to the next `$ ` or `#` line, are its output. A line starting with
/// `#` is a comment, and `# terminal NAME` moves to that terminal: output
/// right after it, before any `$ ` line, is a [`Action::Rest`].
pub fn steps(block: &Block) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut terminal = String::new();
    let mut taking_output = false;
    for (line, text) in &block.lines {
        if let Some(command) = text.strip_prefix("$ ") {
            steps.push(Step {
                terminal: terminal.clone(),
                line: *line,
                action: Action::Type(command.to_owned()),
                expected: Vec::new(),
            });
            taking_output = true;
        } else if text.starts_with('#') {
            if let Some(name) = terminal_named(text) {
                terminal = name;
                taking_output = false;
            }
        } else {
            if !taking_output {
                steps.push(Step {
                    terminal: terminal.clone(),
                    line: *line,
                    action: Action::Rest,
                    expected: Vec::new(),
                });
                taking_output = true;
            }
            let step = steps.last_mut().expect("a step takes this output");
            step.expected.push((*line, text.clone()));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Title

```console
$ shmhub create a
created a
$ shmhub rm a
```

<!-- session: live -->
```console
# terminal 1: the host
$ shmhub create live --hold
created live
# terminal 2, later
$ true
```

<!--
  not run: it streams
  until Ctrl-C
-->
```console
$ shmhub events x
```

```sh
$ not a console block
```
";

    #[test]
    fn blocks_carry_their_lines_and_directives() {
        let blocks = console_blocks("x.md", DOC).expect("no problems");
        let seen: Vec<_> = blocks
            .iter()
            .map(|b| (b.line, b.session.as_deref(), b.not_run.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (3, None, None),
                (10, Some("live"), None),
                (22, None, Some("it streams until Ctrl-C"))
            ]
        );
        assert_eq!(blocks[0].lines[1], (5, "created a".to_owned()));
        assert_eq!(blocks[1].lines.len(), 5);
    }

    #[test]
    fn steps_follow_prompts_and_terminals() {
        let blocks = console_blocks("x.md", DOC).expect("no problems");
        let live = steps(&blocks[1]);
        let got: Vec<_> = live
            .iter()
            .map(|s| (s.terminal.as_str(), s.line, &s.action, s.expected.len()))
            .collect();
        let create = Action::Type("shmhub create live --hold".into());
        assert_eq!(
            got,
            [
                ("1", 12, &create, 1),
                ("2", 15, &Action::Type("true".into()), 0)
            ]
        );
        let rest = Block {
            lines: vec![(1, "# terminal 1, to the end".into()), (2, "bye".into())],
            ..blocks.into_iter().next().expect("a block")
        };
        let rest = steps(&rest);
        assert_eq!(rest[0].action, Action::Rest);
        assert_eq!(rest[0].expected, [(2, "bye".to_owned())]);
    }

    #[test]
    fn a_directive_must_be_right_before_a_console_block() {
        let doc = "<!-- not run: later -->\n\nProse.\n\n```console\n$ true\n```\n";
        let problems = console_blocks("x.md", doc).expect_err("dangling");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("x.md:1: "), "{problems:?}");
        let both = "<!-- session: a -->\n<!-- not run: b -->\n```console\n$ true\n```\n";
        assert!(console_blocks("x.md", both).is_err());
    }
}
