//! What a session printed and what the docs show, brought to one form
//! where only what varies between runs is replaced, then compared line by
//! line. The rules are listed in the module documentation of
//! `docs_sessions`; [`TEXT_RULES`] and [`COLUMN_RULES`] are their table.

use std::sync::LazyLock;

use regex::Regex;

/// Where the docs' segments live; the session's segment directory is
/// shown as this.
pub const SHOWN_SHM_DIR: &str = "/dev/shm";

/// In an expected line, this stands for any text within the line.
pub const ELLIPSIS: &str = "...";

/// Patterns replaced, in both texts, by what names them: each is
/// something that differs from run to run, matched by its form.
const TEXT_RULES: &[(&str, &str)] = &[
    // RFC 3339 times, local or UTC, with or without fractions.
    (
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})",
        "[TIME]",
    ),
    // Unix times in JSON (`inspect --watch --json`, `events --json`).
    (r#""(\w*time_unix_\w+)":\d+"#, r#""$1":[TIME]"#),
    // How long ago something was made (`created`, `ls`'s age).
    (r"\b\d+[smhd] ago\b", "[AGE] ago"),
    (r#""(age_s)":\d+"#, r#""$1":[AGE]"#),
    // What was measured: how long something took, or since a heartbeat.
    (
        r#""(waited_ms|heartbeat_age_ms)":\d+"#,
        r#""$1":[DURATION]"#,
    ),
    // A process id after the word, in text and in JSON.
    (r"\bpid [1-9]\d*\b", "pid [PID]"),
    (r#""(\w*pid)":[1-9]\d*"#, r#""$1":[PID]"#),
    // What an interactive shell prints for a job put in the background.
    (r"^\[(\d+)\] [1-9]\d*$", "[$1] [PID]"),
    // A file's owner as `user:group MODE`: whoever runs the tests.
    (r"\b[\w.-]+:[\w.-]+ (0[0-7]{3})\b", "[USER]:[GROUP] $1"),
];

/// Cells of a table column, by its header, replaced when the whole cell
/// matches: values that name nothing by themselves.
const COLUMN_RULES: &[(&str, &str, &str)] = &[
    ("holder pid", r"^[1-9]\d*$", "[PID]"),
    ("age", r"^\d+[smhd]$", "[AGE]"),
    ("heartbeat age", r"^\d+\.\d+s$", "[DURATION]"),
];

/// [`TEXT_RULES`], compiled.
static TEXT: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| compile(TEXT_RULES));

/// [`COLUMN_RULES`], compiled, with their headers.
static COLUMNS: LazyLock<Vec<(&str, Regex, &str)>> = LazyLock::new(|| {
    COLUMN_RULES
        .iter()
        .map(|&(header, pattern, name)| (header, Regex::new(pattern).expect("column rule"), name))
        .collect()
});

fn compile(rules: &[(&'static str, &'static str)]) -> Vec<(Regex, &'static str)> {
    rules
        .iter()
        .map(|&(pattern, name)| (Regex::new(pattern).expect("text rule"), name))
        .collect()
}

/// What a session printed, as the docs would show it: the session's
/// segment directory written as [`SHOWN_SHM_DIR`].
pub fn as_shown(printed: &str, shm_dir: &str) -> String {
    printed.replace(shm_dir, SHOWN_SHM_DIR)
}

/// `lines` in the compared form: trailing blanks dropped, tables reduced to
/// their cells (the padding and border lengths follow the widest value of
/// a column, which a redacted value changes), then every rule applied.
pub fn normalize<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut table = Table::default();
    lines
        .into_iter()
        .map(|line| {
            let line = table.normalize(line.trim_end());
            TEXT.iter().fold(line, |line, (pattern, name)| {
                pattern.replace_all(&line, *name).into_owned()
            })
        })
        .collect()
}

/// The index of the first line where `expected` and `actual` (both
/// normalized) part, if they do; a missing or extra line counts.
pub fn first_difference(expected: &[String], actual: &[String]) -> Option<usize> {
    let differs = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| !line_matches(e, a));
    differs.or((expected.len() != actual.len()).then(|| expected.len().min(actual.len())))
}

/// Whether `actual` is `expected`, where each [`ELLIPSIS`] of `expected`
/// stands for any run of characters.
fn line_matches(expected: &str, actual: &str) -> bool {
    if !expected.contains(ELLIPSIS) {
        return expected == actual;
    }
    let literal: Vec<String> = expected.split(ELLIPSIS).map(regex::escape).collect();
    let pattern = format!("^{}$", literal.join(".*"));
    Regex::new(&pattern)
        .expect("escaped pattern")
        .is_match(actual)
}

/// Reads the box-drawn tables the command prints, one line at a time.
#[derive(Default)]
struct Table {
    /// The current table's column headers, once its first row is read.
    headers: Option<Vec<String>>,
}

impl Table {
    /// `line` with the cells of a table row trimmed and each run of a
    /// border character cut to one; other lines as they are.
    fn normalize(&mut self, line: &str) -> String {
        match line.chars().next() {
            Some('┌') => {
                self.headers = None;
                squeeze_borders(line)
            }
            Some('╞' | '├' | '└') => squeeze_borders(line),
            Some('│') => self.row(line),
            _ => line.to_owned(),
        }
    }

    fn row(&mut self, line: &str) -> String {
        let inner = line.trim_start_matches('│').trim_end_matches('│');
        let mut cells: Vec<String> = inner.split('┆').map(|c| c.trim().to_owned()).collect();
        match &self.headers {
            None => self.headers = Some(cells.clone()),
            Some(headers) => {
                for (cell, header) in cells.iter_mut().zip(headers) {
                    if let Some((_, _, name)) = COLUMNS
                        .iter()
                        .find(|(h, pattern, _)| h == header && pattern.is_match(cell))
                    {
                        *cell = (*name).to_owned();
                    }
                }
            }
        }
        format!("│ {} │", cells.join(" ┆ "))
    }
}

/// `line` with each run of one character cut to a single one.
fn squeeze_borders(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> String {
        normalize([line]).remove(0)
    }

    #[test]
    fn varying_values_are_named_in_both_texts() {
        let cases = [
            (
                "created 2026-12-05T11:20:16.902+00:00 (0s ago)",
                "created [TIME] ([AGE] ago)",
            ),
            ("at 2026-12-05T11:20:17Z", "at [TIME]"),
            ("host process pid 4242 died", "host process pid [PID] died"),
            (
                r#"{"event":"holder_died","pid":15483}"#,
                r#"{"event":"holder_died","pid":[PID]}"#,
            ),
            (r#"{"host_pid":0}"#, r#"{"host_pid":0}"#),
            (
                r#"{"time_unix_ms":1795959727143,"age_s":86400}"#,
                r#"{"time_unix_ms":[TIME],"age_s":[AGE]}"#,
            ),
            (
                r#"{"removed_by_host":true,"waited_ms":12}"#,
                r#"{"removed_by_host":true,"waited_ms":[DURATION]}"#,
            ),
            ("[2] 5490", "[2] [PID]"),
            (
                "│ owner ┆ alice:staff 0660 │",
                "│ owner ┆ [USER]:[GROUP] 0660 │",
            ),
            ("rings of 256, 8 guests", "rings of 256, 8 guests"),
        ];
        for (line, shown) in cases {
            assert_eq!(one(line), shown, "{line}");
        }
    }

    #[test]
    fn tables_compare_by_cell_and_redact_by_column() {
        let table = "\
┌──────┬────────────┬─────┬───────────────┐
│ peer ┆ holder pid ┆ age ┆ heartbeat age │
╞══════╪════════════╪═════╪═══════════════╡
│ 1    ┆ 5490       ┆  3m ┆ 0.3s          │
│ 2    ┆ -          ┆ 12  ┆               │
└──────┴────────────┴─────┴───────────────┘";
        assert_eq!(
            normalize(table.lines()),
            [
                "┌─┬─┬─┬─┐",
                "│ peer ┆ holder pid ┆ age ┆ heartbeat age │",
                "╞═╪═╪═╪═╡",
                "│ 1 ┆ [PID] ┆ [AGE] ┆ [DURATION] │",
                "│ 2 ┆ - ┆ 12 ┆  │",
                "└─┴─┴─┴─┘",
            ]
        );
    }

    #[test]
    fn an_ellipsis_stands_for_text_within_its_line_only() {
        let expected = normalize([r#"{"len":4,"payload_hex":"5b70..."}"#]);
        let same = normalize([r#"{"len":4,"payload_hex":"5b7061636b6167655d"}"#]);
        let other_len = normalize([r#"{"len":5,"payload_hex":"5b7061636b6167655d"}"#]);
        assert_eq!(first_difference(&expected, &same), None);
        assert_eq!(first_difference(&expected, &other_len), Some(0));
        let two = normalize(["a ... z", "b"]);
        assert_eq!(first_difference(&two, &normalize(["a b z"])), Some(1));
        assert_eq!(
            first_difference(&two, &normalize(["a  z", "b", "c"])),
            Some(2)
        );
    }

    #[test]
    fn the_segment_directory_is_shown_as_dev_shm() {
        let printed = "created /tmp/shmhub-docs-x1/demo: 2.6 MiB";
        assert_eq!(
            as_shown(printed, "/tmp/shmhub-docs-x1"),
            "created /dev/shm/demo: 2.6 MiB"
        );
    }
}
