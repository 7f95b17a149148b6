//! Names that do not print as themselves: a segment named with an escape
//! sequence, a newline or bytes that are not UTF-8 (anyone can make such
//! a file in /dev/shm) is printed escaped in every table, line and error,
//! so that listing a directory never sends its names' control characters
//! to the terminal; JSON keeps the exact name.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::common::*;

/// A name with an escape sequence that would turn the terminal red.
const RED: &str = "esc\x1b[31mred";
/// How it is printed.
const RED_SHOWN: &str = "esc\\e[31mred";
/// A name with a newline, which would split a row or a line.
const SPLIT: &str = "new\nline";
/// How it is printed.
const SPLIT_SHOWN: &str = "new\\nline";

/// Requires that nothing in what `r` printed is a control character but
/// the newline that ends each line (no escape, no carriage return, no C1
/// control), so that the terminal only ever prints it.
#[track_caller]
fn assert_printable(r: &Run) {
    for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let bad: Vec<char> = text
            .chars()
            .filter(|&c| c.is_control() && c != '\n')
            .collect();
        assert!(
            bad.is_empty(),
            "shmhub {:?}: {stream} has control characters {bad:?}: {text:?}",
            r.args
        );
    }
}

/// Where bare name `name` resolves, as the command prints it (the
/// directory is an ordinary one).
fn shown_path(env: &Env, name: &str) -> String {
    format!("{}/{name}", env.dir().display())
}

/// The one row of `ls`'s table that names `shown`: the table is drawn
/// whole, and the name takes one line of it.
#[track_caller]
fn ls_row(r: &Run, shown: &str) -> Vec<String> {
    let tables = tables(&r.stdout);
    assert_eq!(tables.len(), 1, "{}", r.stdout);
    assert_well_formed(&tables[0]);
    let rows: Vec<Vec<String>> = cell_lines(&tables[0])
        .into_iter()
        .filter(|cells| cells[0].contains(shown))
        .collect();
    assert_eq!(rows.len(), 1, "{shown:?} in\n{}", r.stdout);
    rows.into_iter().next().unwrap()
}

#[test]
fn names_with_control_characters_are_printed_escaped() {
    let env = Env::new();
    for (name, shown) in [(RED, RED_SHOWN), (SPLIT, SPLIT_SHOWN)] {
        let path = shown_path(&env, shown);
        let created = env.run(&small_args(name, &["--max-guests", "1"]));
        created.code(0);
        assert_printable(&created);
        assert_eq!(created.stdout.lines().count(), 1, "{created:?}");
        assert!(
            created.stdout.starts_with(&format!("created {path}: ")),
            "{created:?}"
        );

        let inspected = env.ok(&["inspect", name]);
        assert_printable(&inspected);
        let header = &tables(&inspected.stdout)[0];
        assert_well_formed(header);
        assert!(
            cell_lines(header).contains(&vec!["path".to_string(), path.clone()]),
            "{}",
            inspected.stdout
        );
        assert_eq!(env.inspect(name)["path"], env.path(name).to_str().unwrap());

        // A hub that is full says so naming the segment, and the command
        // that frees the claim quotes the name as bash reads it back.
        assert_eq!(env.attach(name), 1);
        let full = env.run(&["attach", name]);
        full.error(&[
            &format!("error: {path}: hub is full"),
            &format!("`shmhub detach $'{shown}' --peer-id 1`"),
        ]);
        assert_printable(&full);
        // ... and bash runs that command as printed.
        let detach = format!("$SHMHUB detach $'{shown}' --peer-id 1");
        let mut bash = assert_cmd::Command::new("bash");
        bash.arg("-c")
            .arg(&detach)
            .env("SHMHUB", BIN)
            .env("SHMHUB_SHM_DIR", env.dir())
            .timeout(CMD_TIMEOUT)
            .assert()
            .success();
        assert_eq!(peer(&env.inspect(name), 1)["state"], "empty");

        let missing = format!("{}\x1b[2J", env.path(name).display());
        let refused = env.run(&["rm", &missing]);
        refused.error(&[&format!("error: {path}\\e[2J: No such file or directory")]);
        assert_printable(&refused);
    }

    let listed = env.ok(&["ls"]);
    assert_printable(&listed);
    for shown in [RED_SHOWN, SPLIT_SHOWN] {
        let row = ls_row(&listed, shown);
        assert_eq!(row[0], shown_path(&env, shown));
    }
    let json = env.ok(&["ls", "--json"]).json();
    let mut paths: Vec<&str> = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    paths.sort();
    let mut exact = [RED, SPLIT].map(|name| env.path(name).to_str().unwrap().to_string());
    exact.sort();
    assert_eq!(paths, exact);

    for name in [RED, SPLIT] {
        let removed = env.ok(&["rm", name]);
        assert_printable(&removed);
    }
    assert!(env.listing().is_empty());
}

#[test]
fn a_name_that_is_not_utf8_is_printed_byte_by_byte() {
    let env = Env::new();
    env.small("seg", &[]);
    let name = OsStr::from_bytes(b"bad\xff");
    std::fs::rename(env.path("seg"), env.dir().join(name)).unwrap();
    let path = shown_path(&env, "bad\\xff");

    let listed = env.ok(&["ls"]);
    assert_printable(&listed);
    assert_eq!(ls_row(&listed, "bad\\xff")[0], path);
    // JSON strings hold only Unicode: the name is there as it is printed.
    let json = env.ok(&["ls", "--json"]).json();
    assert_eq!(json["segments"][0]["path"], path.as_str());

    let dry = env.ok(&["gc", "--dry-run"]);
    assert_eq!(dry.stdout, format!("would remove {path}\n"));
    let json = env.ok(&["gc", "--dry-run", "--json"]).json();
    assert_eq!(json["removed"], serde_json::json!([path]));

    // A directory named so, in an error line.
    let dir = env.dir().join(OsStr::from_bytes(b"gone\xfe\x1b"));
    let refused = env.run_os(&[OsStr::new("ls"), dir.as_os_str()]);
    refused.error(&[&format!(
        "error: {}: No such file",
        shown_path(&env, "gone\\xfe\\e")
    )]);
    assert_printable(&refused);
}

#[test]
fn a_file_that_is_not_a_segment_is_named_escaped_in_ls_verbose_and_rm() {
    let env = Env::new();
    std::fs::write(env.path(RED), b"not a segment").unwrap();
    let listed = env.ok(&["ls", "--verbose"]);
    assert_printable(&listed);
    assert_eq!(
        listed.stderr,
        format!(
            "no segments\nnot listed: {}: smaller than a segment header\n",
            shown_path(&env, RED_SHOWN)
        )
    );
    let refused = env.run(&["rm", RED]);
    refused.error(&[
        &shown_path(&env, RED_SHOWN),
        "never deletes a file that is not a segment",
    ]);
    assert_printable(&refused);
}
