//! `shmhub recv` (the --follow case is in `held.rs`).

use std::time::Duration;

use crate::common::*;

#[test]
fn text_prints_payload_and_newline() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let long = slot_msg("long");
    env.send_as_host("seg", "1", "hello");
    env.send_as_host("seg", "1", &long);
    let r = env.ok(&["recv", "seg", "--as", "1"]);
    assert_eq!(r.stdout, "hello\n");
    assert!(r.stderr.is_empty(), "{:?}", r.stderr);
    assert_eq!(
        env.ok(&["recv", "seg", "--as", "1"]).stdout,
        format!("{long}\n")
    );
    // As the host.
    env.ok(&["send", "seg", "--as", "1", "to the host"]);
    assert_eq!(
        env.ok(&["recv", "seg", "--as", "host"]).stdout,
        "to the host\n"
    );
}

#[test]
fn json_has_one_object_per_message_with_every_field() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    let long = slot_msg("json");
    env.ok(&[
        "send",
        "seg",
        "--as",
        "2",
        "--msg-type",
        "response",
        "--id",
        "42",
        "--method",
        "9",
        &long,
    ]);
    let r = env.ok(&["recv", "seg", "--as", "host", "--json"]);
    assert_eq!(r.stdout.lines().count(), 1);
    let v = r.json();
    assert_eq!(v["from"], 2);
    assert_eq!(v["to"], "host");
    assert_eq!(v["msg_type"], 3);
    assert_eq!(v["msg_type_name"], "response");
    assert_eq!(v["id"], 42);
    assert_eq!(v["method_id"], 9);
    assert_eq!(v["len"], long.len());
    assert_eq!(v["placement"], "slot");
    assert_eq!(v["payload_hex"], hex(long.as_bytes()));
    assert_eq!(v["payload_utf8"], long);
    // Bytes that are not UTF-8: hex only.
    let data = binary_payload(20);
    let file = env.dir().join("bin");
    std::fs::write(&file, &data).unwrap();
    env.ok(&[
        "send",
        "seg",
        "--as",
        "host",
        "--to",
        "2",
        "--file",
        file.to_str().unwrap(),
    ]);
    let v = env.ok(&["recv", "seg", "--as", "2", "--json"]).json();
    assert_eq!(v["from"], "host");
    assert_eq!(v["to"], 2);
    assert_eq!(v["placement"], "inline");
    assert_eq!(v["payload_hex"], hex(&data));
    assert!(v.get("payload_utf8").is_none(), "{v}");
}

#[test]
fn output_writes_the_payload_bytes_to_a_file() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let data = binary_payload(4096);
    let file = env.dir().join("in");
    std::fs::write(&file, &data).unwrap();
    env.ok(&["send", "seg", "--as", "1", "--file", file.to_str().unwrap()]);
    let out = env.dir().join("out");
    std::fs::write(
        &out,
        b"old contents that must be replaced, longer than none",
    )
    .unwrap();
    let r = env.ok(&[
        "recv",
        "seg",
        "--as",
        "host",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(r.stdout.is_empty(), "{:?}", r.stdout);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Without --output, text mode writes the raw bytes and a newline.
    env.ok(&["send", "seg", "--as", "1", "--file", file.to_str().unwrap()]);
    let r = env.ok(&["recv", "seg", "--as", "host"]);
    assert_eq!(r.stdout_bytes, [&data[..], b"\n"].concat());
    // With --json the payload still goes to the file and the object to stdout.
    env.ok(&["send", "seg", "--as", "1", "abc"]);
    let out2 = env.dir().join("out2");
    let v = env
        .ok(&[
            "recv",
            "seg",
            "--as",
            "host",
            "--output",
            out2.to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(v["len"], 3);
    assert_eq!(std::fs::read(&out2).unwrap(), b"abc");
    // An output that cannot be written is an error naming it.
    env.ok(&["send", "seg", "--as", "1", "abc"]);
    let bad = env.dir().join("no/such/dir/out");
    env.run(&[
        "recv",
        "seg",
        "--as",
        "host",
        "--output",
        bad.to_str().unwrap(),
    ])
    .error(&["no/such/dir/out"]);
}

#[test]
fn nothing_to_receive_prints_nothing_and_exits_3() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    for role in [
        &["--as", "1"][..],
        &["--as", "host"],
        &["--as", "host", "--from", "1"],
    ] {
        let mut args = vec!["recv", "seg"];
        args.extend_from_slice(role);
        // --timeout 0 does not wait.
        let mut now = args.clone();
        now.extend_from_slice(&["--timeout", "0"]);
        let r = env.run(&now);
        r.code(3);
        assert!(r.stdout.is_empty(), "{now:?}: {:?}", r.stdout);
        assert!(
            r.elapsed < Duration::from_secs(2),
            "{now:?} took {:?}",
            r.elapsed
        );
        // A timeout waits that long.
        let mut wait = args.clone();
        wait.extend_from_slice(&["--timeout", "200ms", "--json"]);
        let r = env.run(&wait);
        r.code(3);
        assert!(r.stdout.is_empty(), "{wait:?}: {:?}", r.stdout);
        assert!(
            r.elapsed >= Duration::from_millis(200),
            "{wait:?} returned after {:?}",
            r.elapsed
        );
        assert!(
            r.elapsed < Duration::from_secs(5),
            "{wait:?} took {:?}",
            r.elapsed
        );
    }
}

#[test]
fn count_receives_k_and_exits_3_when_fewer_arrive() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.ok(&[
        "send", "seg", "--as", "host", "--to", "1", "m", "--count", "4", "--id", "1",
    ]);
    let got = env
        .ok(&["recv", "seg", "--as", "1", "--count", "3", "--json"])
        .json_lines();
    assert_eq!(
        got.iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let r = env.run(&[
        "recv",
        "seg",
        "--as",
        "1",
        "--count",
        "3",
        "--timeout",
        "100ms",
    ]);
    r.code(3);
    assert_eq!(r.stdout, "m\n", "what did arrive is printed");
    env.run(&["recv", "seg", "--as", "1", "--count", "0"])
        .usage();
    env.run(&["recv", "seg", "--as", "1", "--count", "2", "--follow"])
        .usage();
}

#[test]
fn host_receives_from_any_guest_or_only_from_one() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    env.ok(&["send", "seg", "--as", "1", "from one"]);
    env.ok(&["send", "seg", "--as", "2", "from two"]);
    let v = env
        .ok(&["recv", "seg", "--as", "host", "--from", "2", "--json"])
        .json();
    assert_eq!(
        (v["from"].as_u64(), v["payload_utf8"].as_str()),
        (Some(2), Some("from two"))
    );
    let report = env.inspect("seg");
    assert_eq!(
        ring_len(&report, 1, "to_host"),
        1,
        "--from 2 left guest 1's message alone"
    );
    assert_eq!(ring_len(&report, 2, "to_host"), 0);
    env.recv_as_host_from("seg", "2", "0").code(3);
    env.ok(&["send", "seg", "--as", "2", "again"]);
    let got = env
        .ok(&["recv", "seg", "--as", "host", "--count", "2", "--json"])
        .json_lines();
    let mut from: Vec<u64> = got.iter().map(|m| m["from"].as_u64().unwrap()).collect();
    from.sort();
    assert_eq!(from, [1, 2]);
}

#[test]
fn receiving_frees_the_slots() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let long = slot_msg("free");
    env.ok(&[
        "send", "seg", "--as", "host", "--to", "1", &long, "--count", "3",
    ]);
    env.ok(&["send", "seg", "--as", "1", &long, "--count", "4"]);
    let report = env.inspect("seg");
    assert_eq!(pool(&report, "host")["used"], 3);
    assert_eq!(pool(&report, "host")["free"], 1);
    assert_eq!(pool(&report, "peer 1")["used"], 4);
    assert_eq!(pool(&report, "peer 1")["free"], 0);
    env.ok(&["recv", "seg", "--as", "1", "--count", "3"]);
    env.ok(&["recv", "seg", "--as", "host", "--count", "4", "--json"]);
    let report = env.inspect("seg");
    for owner in ["host", "peer 1"] {
        assert_eq!(pool(&report, owner)["used"], 0, "{owner}");
        assert_eq!(pool(&report, owner)["free"], 4, "{owner}");
    }
    assert_eq!(ring_len(&report, 1, "to_host"), 0);
    assert_eq!(ring_len(&report, 1, "to_guest"), 0);
}

#[test]
fn role_errors() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let path = env.path("seg").display().to_string();
    env.run(&["recv", "seg", "--as", "3"])
        .error(&[&path, "peer 3"]);
    let r = env.run(&["recv", "seg", "--as", "1", "--from", "1"]);
    assert!(
        matches!(r.status.code(), Some(1 | 2)) && r.stderr.starts_with("error:"),
        "{r:?}"
    );
    for args in [
        &["recv", "seg"][..],
        &["recv", "seg", "--as", "0"],
        &["recv", "seg", "--as", "nobody"],
        &["recv", "seg", "--as", "host", "--from", "0"],
        &["recv", "seg", "--as", "1", "--timeout", "-1s"],
    ] {
        env.run(args).usage();
    }
    env.run(&["recv", "missing", "--as", "1"])
        .error(&[&env.path("missing").display().to_string()]);
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        env.run(&["recv", name, "--as", "host", "--timeout", "0"])
            .error(&[&env.path(name).display().to_string()]);
        assert_eq!(std::fs::read(env.path(name)).unwrap(), before);
    }
}

// A reader that went away (`| head` after its lines, `| true`) ends a
// receive with exit 0, as for every command, and before it takes a
// message that could only be lost: what nobody read stays queued.
#[test]
fn a_departed_reader_ends_recv_with_0_and_takes_nothing_more() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.ok(&[
        "send", "seg", "--as", "host", "--to", "1", "m", "--count", "5",
    ]);
    // The reader (`true`) is gone well before recv starts writing.
    for mode in ["--count 5", "--follow"] {
        let r = env.shell(&format!(
            "(sleep 0.3; \"$SHMHUB\" recv seg --as 1 {mode}; echo \"exit $?\" >&2) | true"
        ));
        assert!(r.stderr.ends_with("exit 0\n"), "{mode}: {r:?}");
    }
    let left = env.ok(&["recv", "seg", "--as", "1", "--count", "5"]);
    assert_eq!(left.stdout, "m\n".repeat(5), "a message was taken and lost");
}

// Issue 32, item 16: `recv --count 10 | head -2` took all ten messages
// into the pipe before `head` read its two, and the eight it never read
// were gone. On a pipe the next message is taken only once the reader has
// read the last one, so at most one is lost (the one written after the
// reader's last read), and the command still ends with exit 0, which a
// `set -o pipefail` script sees.
#[test]
fn recv_into_head_loses_at_most_one_message() {
    let env = Env::new();
    env.small("seg", &["--ring-size", "16"]);
    env.attach("seg");
    for mode in ["", "--json"] {
        env.ok(&[
            "send", "seg", "--as", "host", "--to", "1", "m", "--count", "10",
        ]);
        let r = env.shell(&format!(
            "(set -o pipefail) 2>/dev/null && set -o pipefail; \
             {{ \"$SHMHUB\" recv seg --as 1 --count 10 {mode}; echo \"recv exit $?\" >&2; }} \
             | head -2; echo \"pipeline exit $?\" >&2"
        ));
        assert_eq!(r.stdout.lines().count(), 2, "{mode}: {r:?}");
        assert_eq!(r.stderr, "recv exit 0\npipeline exit 0\n", "{mode}: {r:?}");
        // What is left, by id: the ten were sent with ids 0 to 9.
        let left = env.run(&[
            "recv",
            "seg",
            "--as",
            "1",
            "--count",
            "10",
            "--timeout",
            "0",
            "--json",
        ]);
        left.code(3);
        let ids: Vec<u64> = left
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let first = ids.first().copied().unwrap_or(10);
        assert!(
            (2..=3).contains(&first) && ids == (first..10).collect::<Vec<_>>(),
            "{mode}: left queued after `| head -2`: ids {ids:?}"
        );
    }
}

// A send or a receive that waits (for room, for a message) notices the
// segment being removed under it and says so (exit 1), rather than
// running out its timeout and saying the ring was full or nothing came.
#[test]
fn waiting_send_and_recv_notice_the_segment_removed() {
    let env = Env::new();
    for (name, waiting) in [
        (
            "full",
            "\"$SHMHUB\" send full --as host --to 1 --count 30 --timeout 20s x",
        ),
        ("quiet", "\"$SHMHUB\" recv quiet --as host --timeout 20s"),
    ] {
        env.small(name, &["--ring-size", "4"]);
        env.attach(name);
        let r = env.shell(&format!(
            "{waiting} & pid=$!; sleep 0.3; \"$SHMHUB\" rm {name} --force >/dev/null; \
             wait $pid; echo \"exit $?\""
        ));
        assert_eq!(r.stdout, "exit 1\n", "{name}: {r:?}");
        assert!(
            r.stderr.contains("segment file was removed"),
            "{name}: {r:?}"
        );
    }
}

// Every follower ends the same way when the segment is removed, by `rm`
// or by anyone: exit 0, the end of what it followed, with a note (or, for
// `events`, its event). `recv --as host --follow` used to exit 1.
#[test]
fn every_follower_ends_with_exit_0_when_the_segment_is_removed() {
    let env = Env::new();
    let rounds = [
        ("shmhub rm", false),
        ("rm(1)", false),
        ("shmhub rm", true),
        ("rm(1)", true),
    ];
    for (remove, from) in rounds {
        env.small("seg", &[]);
        let id = env.attach("seg").to_string();
        let path = env.path("seg").display().to_string();
        // One host receiver at a time: from any guest, or from this one.
        let mut host = vec!["recv", "seg", "--as", "host", "--follow"];
        if from {
            host.extend(["--from", id.as_str()]);
        }
        let mut followers = vec![
            env.spawn(&host),
            env.spawn(&["recv", "seg", "--as", &id, "--follow"]),
            env.spawn(&["events", "seg", "--interval", "50ms"]),
            env.spawn(&["inspect", "seg", "--watch", "--interval", "50ms", "--json"]),
        ];
        std::thread::sleep(std::time::Duration::from_millis(500));
        match remove {
            "shmhub rm" => {
                env.ok(&["rm", "seg"]);
            }
            _ => std::fs::remove_file(env.path("seg")).unwrap(),
        }
        for follower in &mut followers {
            let status = follower.wait();
            let stderr = follower.stderr();
            assert_eq!(
                status.code(),
                Some(0),
                "{remove}: shmhub {:?}: {status:?}; stderr {stderr:?}",
                follower.args
            );
            assert!(!stderr.contains("error:"), "{remove}: {stderr:?}");
            let said = stderr.contains(&format!("{path}: the segment was removed"))
                || stderr.contains(&format!("{path}: the host has left"))
                || follower
                    .seen
                    .iter()
                    .any(|l| l.ends_with("the segment was removed"));
            assert!(said, "{remove}: shmhub {:?}: {stderr:?}", follower.args);
        }
    }
}

// A message that could not be written out says where it was going and
// the operating system's cause, in words that count right (issue 32,
// item 11: "(1 bytes)", "writing the output file").
#[test]
fn a_failed_write_names_its_target_and_the_cause() {
    let env = Env::new();
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    env.send_as_host("seg", &id, "x");
    env.run(&["recv", "seg", "--as", &id, "--output", "/dev/full"])
        .error(&[
            "message id 0 (1 byte) from host was received but could not be written to /dev/full: ",
            "No space left on device",
        ]);
    env.send_as_host("seg", &id, "xy");
    let r = env.shell(&format!("\"$SHMHUB\" recv seg --as {id} --json >/dev/full"));
    r.error(&[
        "(2 bytes) from host was received but could not be written to standard output: ",
        "No space left on device",
    ]);
}

// A guest killed without detaching is not one that left: a host following
// it says it died, with its pid (issue 32, item 11).
#[test]
fn a_killed_guest_is_said_to_have_died_not_left() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    let id = guest.line();
    let mut host = env.spawn(&["recv", "seg", "--as", "host", "--from", &id, "--follow"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    guest.signal(libc::SIGKILL);
    guest.wait();
    host.wait_ok();
    let said = host.stderr();
    assert!(
        said.contains(&format!(
            "peer {id} died (pid {}) without detaching",
            guest.pid()
        )) && !said.contains("has left"),
        "{said:?}"
    );
}

// Issue 32, item 17: a guest killed without detaching is said to have died
// in the same words by a send to it and a receive from it, and a receive
// that only looks (`--timeout 0`) says so too rather than exiting 3 as if
// nothing had been sent yet.
#[test]
fn a_killed_guest_is_told_alike_to_a_send_and_any_receive_from_it() {
    let env = Env::new();
    env.small("seg", &[]);
    let (id, pid) = env.attach_then_kill("seg");
    let id = id.to_string();
    let sent = env.run(&["send", "seg", "--as", "host", "--to", &id, "hi"]);
    let waited = env.recv_as_host_from("seg", &id, "1s");
    let looked = env.recv_as_host_from("seg", &id, "0");
    let said = format!(
        "peer {id} died (pid {pid}) without detaching; `shmhub reclaim {}` frees its entry",
        env.path("seg").display()
    );
    for r in [&sent, &waited, &looked] {
        r.error(&[&said]);
    }
    assert_eq!(sent.stderr, looked.stderr);
    assert_eq!(waited.stderr, looked.stderr);
}
