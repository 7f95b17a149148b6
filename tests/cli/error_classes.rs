//! The table of error classes in docs/cli.md, walked: every example is
//! run, in order, on the fixture the document describes, and must end
//! with the exit code the table gives. A row added to the table is tested
//! without touching this file; a behaviour that drifts from the table
//! fails here.

use std::path::Path;

use crate::common::*;

/// The rows of the "Errors and their exit codes" table: (class, example,
/// exit code).
fn table_rows(doc: &str) -> Vec<(String, String, i32)> {
    let start = doc
        .find("**Errors and their exit codes.**")
        .expect("docs/cli.md has the error classes table");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in doc[start..].lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        in_table = true;
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 || cells[0] == "class" || cells[0].starts_with("---") {
            continue;
        }
        let example = cells[1].trim_matches('`').to_string();
        let code = cells[2]
            .parse()
            .unwrap_or_else(|_| panic!("exit code {:?} in {line:?}", cells[2]));
        rows.push((cells[0].to_string(), example, code));
    }
    rows
}

#[test]
fn every_error_class_in_the_docs_has_its_exit_code() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let rows = table_rows(&doc);
    assert!(rows.len() >= 10, "only {} rows found", rows.len());
    for code in [0, 1, 2, 3] {
        assert!(
            rows.iter().any(|(_, _, c)| *c == code),
            "no example for exit code {code}"
        );
    }

    // The fixture, as the document describes it.
    let env = Env::new();
    env.ok(&[
        "create",
        "seg",
        "--max-guests",
        "4",
        "--ring-size",
        "8",
        "--slot-size",
        "4KiB",
        "--slots",
        "4",
    ]);
    assert_eq!(env.attach("seg"), 1);
    let mut held = env.spawn(&["create", "held", "--hold", "--max-guests", "2"]);
    assert!(held.line().starts_with("created "));
    std::fs::write(env.path("notes.txt"), b"not a segment\n").unwrap();
    std::fs::write(env.path("big.bin"), vec![7u8; 10_000]).unwrap();

    // `shmhub` in the examples is the binary under test.
    let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
    let mut failures = Vec::new();
    for (class, example, code) in &rows {
        let r = env.shell(&format!("PATH='{bin_dir}':\"$PATH\"; {example}"));
        let got = r.status.code();
        if got != Some(*code) {
            failures.push(format!(
                "{class}: `{example}` exited {got:?}, the table says {code}; stderr: {}",
                r.stderr.trim()
            ));
            continue;
        }
        if *code == 1 {
            // An error is one line naming what it is about.
            let lines: Vec<&str> = r.stderr.lines().collect();
            if lines.len() != 1 || !lines[0].starts_with("error: ") {
                failures.push(format!("{class}: `{example}`: stderr {:?}", r.stderr));
            }
        }
    }
    held.signal(libc::SIGTERM);
    held.wait_ok();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
