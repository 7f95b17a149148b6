//! What a new user tripped over (the first-hour report): bounded input,
//! SIGHUP, a receive from an empty entry, idle limits, the progress bar
//! and errors, wrapping ids, a dead guest as receiver, permissions.

use std::time::Duration;

use crate::common::*;

/// Runs `script` under a pseudo-terminal (the `script` tool), so that the
/// command sees a terminal on stdout and stderr; `None` where the tool is
/// missing.
fn in_terminal(env: &Env, script: &str) -> Option<Run> {
    let found = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: the `script` tool is not installed");
        return None;
    }
    let quoted = script.replace('\'', r"'\''");
    Some(env.shell(&format!("script -qec '{quoted}' /dev/null")))
}

/// What a terminal shows for `raw` output: per line, what is left after
/// the last carriage return, without escape sequences.
fn rendered(raw: &str) -> Vec<String> {
    raw.split('\n')
        .map(|line| {
            let visible = line
                .rsplit('\r')
                .find(|part| !part.is_empty())
                .unwrap_or("");
            let mut out = String::new();
            let mut chars = visible.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    // CSI: ESC [ parameters final-byte.
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

// Item 1: an oversized payload is refused after reading at most one byte
// past the limit, in bounded memory, however big or endless the input.
#[test]
fn oversized_input_is_refused_without_being_read_whole() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    let seg = env.path("seg").display().to_string();
    let before = std::fs::read(env.path("seg")).unwrap();
    // 256 MiB of address space: the old code read /dev/zero until it died.
    for script in [
        format!("ulimit -v 262144; $SHMHUB send seg --as {id} --file /dev/zero"),
        format!("ulimit -v 262144; yes | $SHMHUB send seg --as {id} -"),
        format!("head -c 50M /dev/zero | $SHMHUB send seg --as {id} -"),
    ] {
        let r = env.shell(&script);
        r.error(&[&seg, "max payload of 4096 bytes"]);
        assert!(
            r.elapsed < Duration::from_secs(5),
            "{script}: took {:?}",
            r.elapsed
        );
    }
    // A regular file is judged by its size before anything is read.
    std::fs::write(env.path("big"), vec![7u8; 10_000]).unwrap();
    env.run(&["send", "seg", "--as", &id, "--file", "big"])
        .error(&[&seg, "10000 bytes", "4096"]);
    std::fs::create_dir(env.path("dir")).unwrap();
    env.run(&["send", "seg", "--as", &id, "--file", "dir"])
        .error(&["dir", "directory"]);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
}

// Item 2: a closed terminal (SIGHUP) ends held commands like SIGTERM does.
#[test]
fn sighup_ends_held_commands_with_their_cleanup() {
    let env = Env::new();
    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let scripted = env.attach("seg").to_string();
    let mut follower = env.spawn(&["recv", "seg", "--as", &scripted, "--follow"]);
    env.ok(&["send", "seg", "--as", "host", "--to", &scripted, "hello"]);
    assert_eq!(follower.line(), "hello");
    follower.signal(libc::SIGHUP);
    follower.wait_ok();
    guest.signal(libc::SIGHUP);
    guest.wait_ok();
    assert!(guest.stderr().contains("SIGHUP"), "{}", guest.stderr());
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");
    host.signal(libc::SIGHUP);
    host.wait_ok();
    assert!(!env.path("seg").exists(), "the held host left its file");
}

// Item 2, for a command waiting to send: the signal ends the wait, the
// exit code says which signal, and nothing is left half-sent.
#[test]
fn sighup_ends_a_send_waiting_for_room() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    let mut sender = env.spawn(&[
        "send",
        "seg",
        "--as",
        "host",
        "--to",
        &id,
        "--count",
        "20",
        "--timeout",
        "60s",
        &slot_msg("waits"),
    ]);
    // Four slots: the fifth message waits for one.
    assert!(wait_until(Duration::from_secs(10), || {
        pools_used(&env.inspect("seg")) == 4
    }));
    sender.signal(libc::SIGHUP);
    let status = sender.wait();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGHUP),
        "{}",
        sender.stderr()
    );
    let stderr = sender.stderr();
    assert!(
        stderr.contains("interrupted by SIGHUP") && stderr.contains("sent 4 of 20"),
        "{stderr}"
    );
    assert_eq!(
        pools_used(&env.inspect("seg")),
        4,
        "a slot was left half-sent"
    );
    assert_eq!(ring_len(&env.inspect("seg"), 1, "to_guest"), 4);
}

// Item 6: the same answer as `send --to 3`, whatever the timeout.
#[test]
fn recv_from_an_empty_entry_is_refused_like_send_to_it() {
    let env = Env::new();
    env.small("seg", &[]);
    let seg = env.path("seg").display().to_string();
    for timeout in ["0", "1s"] {
        let r = env.recv_as_host_from("seg", "3", timeout);
        r.error(&[&seg, "peer 3 is empty"]);
        assert!(
            r.elapsed < Duration::from_secs(1),
            "{timeout}: waited {:?}",
            r.elapsed
        );
    }
    env.run(&["send", "seg", "--as", "host", "--to", "3", "x"])
        .error(&[&seg, "peer 3 is empty"]);
}

// Item 9: with --follow, --timeout is the longest gap between messages.
#[test]
fn recv_follow_timeout_is_the_longest_idle_gap() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    let mut follower = env.spawn(&["recv", "seg", "--as", &id, "--follow", "--timeout", "600ms"]);
    for n in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        env.ok(&["send", "seg", "--as", "host", "--to", &id, &format!("m{n}")]);
        assert_eq!(follower.line(), format!("m{n}"));
    }
    // 1.2 s in, still following: no gap reached 600 ms. Then silence.
    assert!(
        follower.exited().is_none(),
        "follow ended while messages came"
    );
    assert_eq!(follower.wait().code(), Some(3));
    // Without --timeout, --follow has no idle limit.
    let mut endless = env.spawn(&["recv", "seg", "--as", &id, "--follow"]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(endless.exited().is_none());
    endless.signal(libc::SIGTERM);
    endless.wait_ok();
}

// Item 10: an error ends the progress bar first, so it gets its own line.
#[test]
fn a_failed_send_count_clears_its_progress_bar_first() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg");
    let Some(r) = in_terminal(
        &env,
        &format!("$SHMHUB send seg --as host --to {id} --count 100 --timeout 200ms x"),
    ) else {
        return;
    };
    let all = format!("{}{}", r.stdout, r.stderr);
    let lines = rendered(&all);
    let error = lines
        .iter()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error in {all:?}"));
    assert!(error.starts_with("error: "), "{error:?} in {all:?}");
    assert!(error.contains("sent 8 of 100"), "{error:?}");
}

// Item 12: ids never wrap.
#[test]
fn an_id_range_that_would_wrap_is_a_usage_error() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    let max = u64::MAX.to_string();
    let r = env.run(&[
        "send", "seg", "--as", &id, "--id", &max, "--count", "2", "x",
    ]);
    r.usage();
    assert!(r.stderr.contains("--id"), "{}", r.stderr);
    assert_eq!(
        ring_len(&env.inspect("seg"), 1, "to_host"),
        0,
        "something was sent"
    );
    env.ok(&["send", "seg", "--as", &id, "--id", &max, "x"]);
    let got = env.ok(&["recv", "seg", "--as", "host", "--json"]).json();
    assert_eq!(got["id"], u64::MAX);
}

// Rough edge: a send to a guest whose process died is refused, naming
// the way out.
#[test]
fn a_send_to_a_guest_whose_process_died_is_refused() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let pid = guest.pid().to_string();
    guest.signal(libc::SIGKILL);
    guest.wait();
    env.run(&["send", "seg", "--as", "host", "--to", "1", "x"])
        .error(&[&format!("peer 1 died (pid {pid})"), "shmhub reclaim"]);
    assert_eq!(ring_len(&env.inspect("seg"), 1, "to_guest"), 0);
}

// Rough edge: "Permission denied" says whose file it is.
#[test]
fn permission_denied_names_the_mode_and_the_owner() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a command as another user");
        return;
    }
    let env = Env::new();
    env.small("seg", &[]);
    let dir_mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(env.dir(), dir_mode).unwrap();
    let seg = env.path("seg").display().to_string();
    for args in ["inspect seg", "attach seg", "rm seg"] {
        let r = env.shell(&format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups $SHMHUB {args}"
        ));
        if r.stderr.contains("setpriv") {
            eprintln!("skipped: setpriv failed: {}", r.stderr);
            return;
        }
        r.error(&[&seg, "Permission denied", "mode 0600", "owner root"]);
    }
    assert!(env.path("seg").is_file());
}

// Item 5: the progress bar fits the terminal, so a redraw never leaves a
// wrapped row behind: at 60 columns, at 50 and 40 on a terminal that
// reports 0 rows (the terminal library then assumes 80 columns), and on
// one that reports no width at all (the count alone, in 20 columns).
#[test]
fn the_progress_bar_fits_the_terminal() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg");
    for (size, fits) in [
        ("cols 60 rows 24", 60),
        ("cols 50 rows 0", 50),
        ("cols 40 rows 0", 40),
        ("cols 0 rows 0", 20),
    ] {
        let Some(r) = in_terminal(
            &env,
            &format!(
                "stty {size}; $SHMHUB send seg --as host --to {id} --count 100000 --timeout 500ms x"
            ),
        ) else {
            return;
        };
        // Every state the bar was drawn in, each between two carriage
        // returns or line ends, without escape sequences.
        let raw = format!("{}{}", r.stdout, r.stderr);
        let drawn: Vec<String> = raw
            .split(['\r', '\n'])
            .flat_map(rendered)
            .filter(|line| line.contains("/100000"))
            .collect();
        assert!(!drawn.is_empty(), "{size}: no bar in {raw:?}");
        for line in &drawn {
            assert!(
                line.chars().count() <= fits,
                "{size}: {line:?} is wider than {fits}"
            );
        }
        // Empty the ring for the next size.
        let id = id.to_string();
        env.run(&[
            "recv",
            "seg",
            "--as",
            &id,
            "--count",
            "1000",
            "--timeout",
            "100ms",
        ]);
    }
}

// Item 4: `inspect --watch` on a terminal draws on the alternate screen,
// which it leaves again when stopped, and each frame fits the terminal's
// rows (what does not fit is counted on the last row): nothing scrolls
// into the scrollback.
#[test]
fn watch_frames_fit_the_terminal_on_the_alternate_screen() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "40"]);
    let Some(r) = in_terminal(
        &env,
        "stty rows 24 cols 80; timeout -s TERM 0.7 $SHMHUB inspect seg --watch --all --interval 100ms",
    ) else {
        return;
    };
    let raw = r.stdout;
    assert!(raw.contains("\x1b[?1049h"), "no alternate screen: {raw:?}");
    assert!(
        raw.trim_end().ends_with("\x1b[?1049l"),
        "the alternate screen was not left: {raw:?}"
    );
    let frames: Vec<&str> = raw.split("\x1b[1;1H").skip(1).collect();
    assert!(frames.len() >= 2, "{raw:?}");
    for frame in &frames {
        let rows = frame.split('\n').count();
        assert!(rows <= 24, "a frame of {rows} rows: {frame:?}");
        // A line wider than the terminal wraps onto the next row, which
        // the count above does not see: the peer table is far wider.
        for line in rendered(frame) {
            let width = line.chars().count();
            assert!(width <= 80, "a line of {width} columns: {line:?}");
        }
    }
    assert!(
        frames[0].contains('…'),
        "the lines cut at the width are not marked: {raw:?}"
    );
    assert!(
        raw.contains("more lines"),
        "the rows that did not fit are not counted"
    );
}

// A resized terminal gets a frame fitted to its new size at once, not at
// the next interval; and the cursor, hidden while watching, comes back.
#[test]
fn watch_redraws_at_once_when_the_terminal_is_resized() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "40"]);
    let Some(r) = in_terminal(
        &env,
        "stty rows 40 cols 80; $SHMHUB inspect seg --watch --all --interval 30s & \
         sleep 0.6; stty rows 12; sleep 0.6; kill -TERM $!; wait",
    ) else {
        return;
    };
    let raw = r.stdout;
    let frames: Vec<&str> = raw.split("\x1b[1;1H").skip(1).collect();
    assert_eq!(
        frames.len(),
        2,
        "one frame, then one for the resize: {raw:?}"
    );
    let rows: Vec<usize> = frames.iter().map(|f| f.split('\n').count()).collect();
    assert!(rows[0] > 12 && rows[1] <= 12, "rows per frame: {rows:?}");
    assert!(
        raw.contains("\x1b[?25l") && raw.contains("\x1b[?25h"),
        "{raw:?}"
    );
}
