//! Spec coverage: every rule of `docs/spec.md` is implemented and verified,
//! and every reference in the code names a rule of the spec.
//!
//! Rules are the `r[rule.id]` markers that stand alone on a line of the
//! spec (outside fenced code blocks). Implementations are marked in `src/`
//! with an `impl` reference and tests in `tests/` and `src/` with a `verify`
//! reference, each written as `shm`, then in square brackets the kind, a
//! space and the rule id (see `docs/spec.md`). The needles are assembled at
//! run time so that this file does not count as a reference itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where something was found: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    file: PathBuf,
    line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Whether `id` is a well-formed rule id: dot-separated, non-empty parts of
/// lowercase ASCII letters, digits, `-` and `_`.
fn is_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        })
}

/// What the spec defines.
#[derive(Debug, Default)]
struct Spec {
    /// Each rule id with the line it is defined on.
    rules: BTreeMap<String, usize>,
    /// Problems with the markers themselves.
    problems: Vec<String>,
}

/// Collects the `r[...]` markers of a spec: lines that are exactly one
/// marker (trailing whitespace aside), outside fenced code blocks.
fn parse_spec(text: &str) -> Spec {
    let mut spec = Spec::default();
    let mut in_fence = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end();
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with("r[") {
            continue;
        }
        let Some(id) = line.strip_prefix("r[").and_then(|l| l.strip_suffix(']')) else {
            spec.problems.push(format!(
                "line {line_no}: `{line}` starts like a rule marker but is not `r[rule.id]` alone on its line"
            ));
            continue;
        };
        if !is_rule_id(id) {
            spec.problems.push(format!(
                "line {line_no}: `{id}` is not a well-formed rule id"
            ));
            continue;
        }
        if let Some(first) = spec.rules.insert(id.to_string(), line_no) {
            spec.problems.push(format!(
                "line {line_no}: rule `{id}` is defined twice (first on line {first})"
            ));
            spec.rules.insert(id.to_string(), first);
        }
    }
    spec
}

/// (1-based line, text) pairs: a rule id, or the whole line of a malformed
/// reference.
type Lines = Vec<(usize, String)>;

/// Finds every reference of `kind` (`impl` or `verify`) in `text`: returns
/// (line, id) pairs, and the lines of references that are malformed.
fn parse_references(text: &str, kind: &str) -> (Lines, Lines) {
    let needle = format!("{}[{} ", "shm", kind);
    let mut found = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            match rest.find(']') {
                Some(end) if is_rule_id(rest[..end].trim()) => {
                    found.push((i + 1, rest[..end].trim().to_string()));
                    rest = &rest[end + 1..];
                }
                _ => malformed.push((i + 1, line.trim().to_string())),
            }
        }
    }
    (found, malformed)
}

/// Every `.rs` file under `dir`, sorted, found with `std::fs` alone.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) => panic!("cannot list {}: {e}", d.display()),
        };
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
            let path = entry.path();
            let file_type = entry
                .file_type()
                .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() && path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// References of `kind` found in every Rust file under `dirs`, by rule id.
struct References {
    by_id: BTreeMap<String, Vec<Location>>,
    malformed: Vec<(Location, String)>,
}

fn collect(root: &Path, dirs: &[&str], kind: &str) -> References {
    let mut refs = References {
        by_id: BTreeMap::new(),
        malformed: Vec::new(),
    };
    for dir in dirs {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            let shown = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
            let (found, malformed) = parse_references(&text, kind);
            for (line, id) in found {
                refs.by_id.entry(id).or_default().push(Location {
                    file: shown.clone(),
                    line,
                });
            }
            for (line, text) in malformed {
                refs.malformed.push((
                    Location {
                        file: shown.clone(),
                        line,
                    },
                    text,
                ));
            }
        }
    }
    refs
}

#[test]
fn every_spec_rule_is_implemented_and_verified_and_every_reference_is_a_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec_path = root.join("docs/spec.md");
    let text = std::fs::read_to_string(&spec_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", spec_path.display()));
    let spec = parse_spec(&text);
    let impls = collect(root, &["src"], "impl");
    let verifies = collect(root, &["src", "tests"], "verify");

    let mut report = String::new();
    if spec.rules.is_empty() {
        writeln!(report, "docs/spec.md defines no `r[rule.id]` rules").unwrap();
    }
    for problem in &spec.problems {
        writeln!(report, "docs/spec.md {problem}").unwrap();
    }
    let unimplemented: Vec<&String> = spec
        .rules
        .keys()
        .filter(|id| !impls.by_id.contains_key(*id))
        .collect();
    if !unimplemented.is_empty() {
        writeln!(report, "rules with no impl reference in src/:").unwrap();
        for id in unimplemented {
            writeln!(report, "  {id} (docs/spec.md:{})", spec.rules[id]).unwrap();
        }
    }
    let unverified: Vec<&String> = spec
        .rules
        .keys()
        .filter(|id| !verifies.by_id.contains_key(*id))
        .collect();
    if !unverified.is_empty() {
        writeln!(report, "rules with no verify reference in tests/ or src/:").unwrap();
        for id in unverified {
            writeln!(report, "  {id} (docs/spec.md:{})", spec.rules[id]).unwrap();
        }
    }
    for (kind, refs) in [("impl", &impls), ("verify", &verifies)] {
        let unknown: BTreeSet<&String> = refs
            .by_id
            .keys()
            .filter(|id| !spec.rules.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            writeln!(
                report,
                "{kind} references to ids that docs/spec.md does not define:"
            )
            .unwrap();
            for id in unknown {
                let places: Vec<String> = refs.by_id[id].iter().map(|l| l.to_string()).collect();
                writeln!(report, "  {id} at {}", places.join(", ")).unwrap();
            }
        }
        if !refs.malformed.is_empty() {
            writeln!(
                report,
                "malformed {kind} references (want a rule id, then `]`):"
            )
            .unwrap();
            for (at, line) in &refs.malformed {
                writeln!(report, "  {at}: {line}").unwrap();
            }
        }
    }
    assert!(
        report.is_empty(),
        "spec coverage of {} rules is incomplete:\n{report}",
        spec.rules.len()
    );
}

#[test]
fn spec_markers_are_whole_lines_outside_code_fences() {
    let text = "\
# Title
r[a.b]
Rule text mentioning r[not.a.rule] inline.
  r[indented.is.not.a.marker]
```
r[in.a.fence]
```
r[c.d-e_f]   
r[Bad.Id]
r[a.b]
r[unclosed
";
    let spec = parse_spec(text);
    let ids: Vec<&str> = spec.rules.keys().map(String::as_str).collect();
    assert_eq!(ids, ["a.b", "c.d-e_f"]);
    assert_eq!(spec.rules["a.b"], 2, "a duplicate keeps the first line");
    assert_eq!(spec.problems.len(), 3, "{:?}", spec.problems);
}

#[test]
fn references_are_found_anywhere_on_a_line_and_malformed_ones_reported() {
    let kind = "verify";
    let open = format!("{}[{kind} ", "shm");
    let text = format!(
        "// {open}x.y] and {open}x.z]\nfn f() {{}}\n/// {open}x.w\n// {open}Not Valid]\n// {}[impl x.y]\n",
        "shm"
    );
    let (found, malformed) = parse_references(&text, kind);
    assert_eq!(
        found,
        [(1, "x.y".to_string()), (1, "x.z".to_string())],
        "the impl reference is not a verify one"
    );
    assert_eq!(
        malformed.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [3, 4]
    );
}
