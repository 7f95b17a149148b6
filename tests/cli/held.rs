//! Long-running commands: `create --hold`, `attach --hold`, `recv --follow`,
//! receiving live while other invocations send, and real SIGINT/SIGTERM
//! with the promised cleanup.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn hold_host(env: &Env, json: bool) -> Held {
    let mut args = vec!["create", "seg", "--hold"];
    args.extend_from_slice(SMALL);
    if json {
        args.push("--json");
    }
    let mut host = env.spawn(&args);
    let first = host.line();
    if json {
        let v: Value =
            serde_json::from_str(&first).expect("create --hold --json prints JSON first");
        assert_eq!(v["path"], env.path("seg").display().to_string());
        assert_eq!(v["config"]["max_guests"], 4);
    } else {
        assert!(
            first.contains(&env.path("seg").display().to_string()),
            "{first}"
        );
    }
    assert!(env.path("seg").is_file());
    host
}

fn create_hold_receives_live_then_cleans_up_on(signal: libc::c_int) {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    let report = env.inspect("seg");
    assert_eq!(report["host"], "alive");
    assert_eq!(report["header"]["host_pid"], host.pid());
    let id = env.attach("seg");
    let long = slot_msg("to the held host");
    env.ok(&["send", "seg", "--as", &id.to_string(), "first, inline"]);
    assert_eq!(host.line(), "first, inline");
    env.ok(&["send", "seg", "--as", &id.to_string(), &long]);
    assert_eq!(host.line(), long);
    env.ok(&["send", "seg", "--as", &id.to_string(), "a", "--count", "3"]);
    for _ in 0..3 {
        assert_eq!(host.line(), "a");
    }
    // What the host received is freed.
    assert!(wait_until(Duration::from_secs(5), || pools_used(
        &env.inspect("seg")
    ) == 0));
    assert_eq!(ring_len(&env.inspect("seg"), id, "to_host"), 0);
    host.signal(signal);
    host.wait_ok();
    assert!(
        !env.path("seg").exists(),
        "the held host must delete its file"
    );
    assert!(env.listing().is_empty(), "{:?}", env.listing());
    assert!(host.stderr().contains("goodbye"), "{:?}", host.stderr());
}

#[test]
fn create_hold_prints_what_guests_send_and_sigint_removes_the_file() {
    create_hold_receives_live_then_cleans_up_on(libc::SIGINT);
}

#[test]
fn create_hold_prints_what_guests_send_and_sigterm_removes_the_file() {
    create_hold_receives_live_then_cleans_up_on(libc::SIGTERM);
}

#[test]
fn create_hold_json_prints_one_object_per_message() {
    let env = Env::new();
    let mut host = hold_host(&env, true);
    env.attach("seg");
    env.attach("seg");
    let long = slot_msg("json");
    env.ok(&[
        "send",
        "seg",
        "--as",
        "2",
        "--msg-type",
        "request",
        "--id",
        "5",
        &long,
    ]);
    let v = host.json_line();
    assert_eq!(v["from"], 2);
    assert_eq!(v["to"], "host");
    assert_eq!(v["id"], 5);
    assert_eq!(v["msg_type_name"], "request");
    assert_eq!(v["placement"], "slot");
    assert_eq!(v["payload_hex"], hex(long.as_bytes()));
    host.signal(libc::SIGINT);
    host.wait_ok();
    assert!(!env.path("seg").exists());
}

fn attach_hold_receives_live_then_detaches_on(signal: libc::c_int, json: bool) {
    let env = Env::new();
    env.small("seg", &[]);
    let mut args = vec!["attach", "seg", "--hold"];
    if json {
        args.push("--json");
    }
    let mut guest = env.spawn(&args);
    let first = guest.line();
    let id = if json {
        let v: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["epoch"], 1);
        v["peer_id"].as_u64().unwrap()
    } else {
        first
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("attach --hold printed {first:?}"))
    };
    assert_eq!(id, 1);
    let report = env.inspect("seg");
    let p = peer(&report, id);
    assert_eq!(
        (p["state"].as_str(), p["holder"].as_str()),
        (Some("attached"), Some("alive"))
    );
    assert_eq!(p["pid"], guest.pid());

    let to = id.to_string();
    let long = slot_msg("to the held guest");
    env.ok(&["send", "seg", "--as", "host", "--to", &to, "hi guest"]);
    env.ok(&["send", "seg", "--as", "host", "--to", &to, &long]);
    if json {
        let a = guest.json_line();
        assert_eq!(
            (
                a["from"].as_str(),
                a["to"].as_u64(),
                a["payload_utf8"].as_str()
            ),
            (Some("host"), Some(id), Some("hi guest"))
        );
        assert_eq!(a["placement"], "inline");
        let b = guest.json_line();
        assert_eq!(
            (b["placement"].as_str(), b["payload_utf8"].as_str()),
            (Some("slot"), Some(long.as_str()))
        );
    } else {
        assert_eq!(guest.line(), "hi guest");
        assert_eq!(guest.line(), long);
    }
    assert!(wait_until(Duration::from_secs(5), || pools_used(
        &env.inspect("seg")
    ) == 0));

    guest.signal(signal);
    guest.wait_ok();
    let report = env.inspect("seg");
    let p = peer(&report, id);
    assert_eq!(p["state"], "empty", "the held guest must detach: {p}");
    assert_eq!(p["pid"], 0, "{p}");
    assert!(
        env.path("seg").is_file(),
        "a guest leaving does not remove the segment"
    );
    // The entry is free again.
    assert_eq!(env.attach("seg"), id);
    assert_eq!(peer(&env.inspect("seg"), id)["epoch"], 2);
}

#[test]
fn attach_hold_prints_what_the_host_sends_and_sigint_detaches() {
    attach_hold_receives_live_then_detaches_on(libc::SIGINT, false);
}

#[test]
fn attach_hold_json_and_sigterm_detaches() {
    attach_hold_receives_live_then_detaches_on(libc::SIGTERM, true);
}

// Issue 32, item 12: while `attach --hold` holds peer 1 (and its
// receiving end, which it keeps while it runs), `recv --as 1` is refused
// at once, naming the process, rather than after its whole timeout (an
// hour here: the command's deadline would end it first).
#[test]
fn a_receive_as_a_held_guest_is_refused_at_once() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let r = env.run(&["recv", "seg", "--as", "1", "--timeout", "1h"]);
    r.code(1);
    r.error_line(&[
        "seg: the receiving end of peer 1 is in use by process",
        &format!(
            "process {}, which holds the entry (a held guest)",
            guest.pid()
        ),
    ]);
    // The held guest is untouched: it still receives.
    env.send_as_host("seg", "1", "still mine");
    assert_eq!(guest.line(), "still mine");
    guest.signal(libc::SIGTERM);
    guest.wait_ok();
}

// Issue 32, item 12, the sending side: an echo guest keeps its sending
// end once it has echoed, for as long as it runs, so `send --as 1` is
// refused at once, naming it, rather than after its whole timeout.
#[test]
fn a_send_as_a_guest_that_keeps_its_sending_end_is_refused_at_once() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut echo = env.spawn(&["spawn", "seg", "--", BIN, "guest-echo"]);
    assert!(wait_until(Duration::from_secs(10), || {
        env.inspect("seg")["peers"][0]["state"] == "attached"
    }));
    let program = env.inspect("seg")["peers"][0]["pid"].clone();
    env.send_as_host("seg", "1", "ping");
    let back = env.ok(&["recv", "seg", "--as", "host", "--from", "1"]);
    assert_eq!(back.stdout, "ping\n", "the echo took its sending end");
    let r = env.run(&["send", "seg", "--as", "1", "hi", "--timeout", "1h"]);
    r.code(1);
    r.error_line(&[
        "seg: the sending end of peer 1 is in use by process",
        &format!("process {program}, which holds the entry (a held guest)"),
    ]);
    // The echo guest is untouched: it still answers.
    env.send_as_host("seg", "1", "again");
    let back = env.ok(&["recv", "seg", "--as", "host", "--from", "1"]);
    assert_eq!(back.stdout, "again\n");
    env.ok(&["rm", "seg"]);
    echo.wait_ok();
}

#[test]
fn held_host_and_held_guest_talk_and_the_guest_leaves_when_the_host_does() {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    env.send_as_host("seg", "1", &slot_msg("down"));
    assert_eq!(guest.line(), slot_msg("down"));
    env.ok(&["send", "seg", "--as", "1", "up"]);
    assert_eq!(host.line(), "up");
    host.signal(libc::SIGINT);
    host.wait_ok();
    assert!(!env.path("seg").exists());
    // The guest sees the goodbye, detaches and exits cleanly.
    guest.wait_ok();
    assert!(env.listing().is_empty());
}

#[test]
fn rm_while_create_hold_runs_ends_the_host_cleanly() {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    env.attach("seg");
    env.ok(&["send", "seg", "--as", "1", "before rm"]);
    assert_eq!(host.line(), "before rm");
    let r = env.ok(&["rm", "seg", "--timeout", "5s"]);
    assert!(
        r.elapsed < Duration::from_secs(5),
        "rm took {:?}",
        r.elapsed
    );
    host.wait_ok();
    assert!(!env.path("seg").exists());
    assert!(env.listing().is_empty());
}

#[test]
fn rm_while_create_hold_and_attach_hold_run_ends_both_cleanly() {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    env.ok(&["rm", "seg", "--timeout", "5s"]);
    host.wait_ok();
    guest.wait_ok();
    assert!(env.listing().is_empty());
}

#[test]
fn recv_follow_prints_messages_sent_meanwhile_and_sigint_exits_0() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    // One message already queued: once it is printed, the follower is in
    // its loop (and handles signals).
    env.send_as_host("seg", "1", "queued before");
    let mut follower = env.spawn(&["recv", "seg", "--as", "1", "--follow"]);
    assert_eq!(follower.line(), "queued before");
    let long = slot_msg("follow");
    env.send_as_host("seg", "1", "while following");
    assert_eq!(follower.line(), "while following");
    env.send_as_host("seg", "1", &long);
    assert_eq!(follower.line(), long);
    env.ok(&[
        "send", "seg", "--as", "host", "--to", "1", "n", "--count", "5",
    ]);
    for _ in 0..5 {
        assert_eq!(follower.line(), "n");
    }
    assert!(wait_until(Duration::from_secs(5), || pools_used(
        &env.inspect("seg")
    ) == 0));
    follower.signal(libc::SIGINT);
    follower.wait_ok();
    assert_eq!(follower.seen.len(), 8, "{:?}", follower.seen);
    // The scripted claim is still there after following.
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "attached");
}

#[test]
fn recv_follow_as_host_with_json_and_sigterm_exits_0() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    env.ok(&["send", "seg", "--as", "2", "queued"]);
    let mut follower = env.spawn(&["recv", "seg", "--as", "host", "--follow", "--json"]);
    assert_eq!(follower.json_line()["payload_utf8"], "queued");
    env.ok(&["send", "seg", "--as", "1", &slot_msg("one")]);
    let v = follower.json_line();
    assert_eq!(
        (v["from"].as_u64(), v["placement"].as_str()),
        (Some(1), Some("slot"))
    );
    env.ok(&["send", "seg", "--as", "2", "two"]);
    assert_eq!(follower.json_line()["from"], 2);
    follower.signal(libc::SIGTERM);
    follower.wait_ok();
    assert_eq!(pools_used(&env.inspect("seg")), 0);
}

#[test]
fn recv_follow_as_a_guest_ends_when_the_host_leaves() {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    env.attach("seg");
    env.send_as_host("seg", "1", "first");
    let mut follower = env.spawn(&["recv", "seg", "--as", "1", "--follow"]);
    assert_eq!(follower.line(), "first");
    host.signal(libc::SIGTERM);
    host.wait_ok();
    follower.wait_ok();
    assert!(env.listing().is_empty());
}

#[test]
fn a_receiving_end_in_use_by_a_live_process_is_not_shared() {
    let env = Env::new();
    let mut host = hold_host(&env, false);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let path = env.path("seg").display().to_string();
    // Each ring has a single consumer: the held guest and the held host own
    // theirs, so a second receiver is refused instead of racing them: a
    // role still busy when its --timeout is up is a timeout (exit 3); one
    // the held guest keeps while it runs is refused at once (exit 1).
    env.run(&["recv", "seg", "--as", "1", "--timeout", "0"])
        .code(1)
        .error_line(&[&path, "which holds the entry (a held guest)"]);
    env.run(&["recv", "seg", "--as", "host", "--timeout", "0"])
        .code(3)
        .error_line(&[&path, "in use by another process"]);
    env.recv_as_host_from("seg", "1", "0")
        .code(3)
        .error_line(&[&path, "in use by another process"]);
    // Nothing was taken from them.
    env.send_as_host("seg", "1", "for the guest");
    assert_eq!(guest.line(), "for the guest");
    env.ok(&["send", "seg", "--as", "1", "for the host"]);
    assert_eq!(host.line(), "for the host");
    guest.signal(libc::SIGINT);
    guest.wait_ok();
    host.signal(libc::SIGINT);
    host.wait_ok();
}
