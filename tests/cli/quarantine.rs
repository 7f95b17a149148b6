//! A guest that breaks the protocol in its own entry is cut off, not the
//! host nor the other guests (`shm.peer.quarantine`): a held host warns
//! once and serves on, `send` and `recv` give the cut-off error for that
//! guest alone, and `peek`, `events` and `inspect --raw` show the entry
//! for what it is.
//!
//! The damage is what a hostile guest can do with one write: four bytes
//! of garbage in its own entry's state word, written into the file by
//! this process as another process would (the segment stays mapped by the
//! running commands).

use std::os::unix::fs::FileExt;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A small segment "seg" with guests 1 and 2 attached (scripted).
fn two_guests(env: &Env) {
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
}

/// Writes four bytes that are no state into guest `peer`'s state word,
/// the first word of its entry in the peer table (docs/spec.md).
fn scribble_state(env: &Env, seg: &str, peer: u64) {
    let table = env.inspect(seg)["header"]["peer_table_offset"]
        .as_u64()
        .expect("inspect --json gives the peer table's offset");
    let state = table + (peer - 1) * 64;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(env.path(seg))
        .unwrap();
    file.write_all_at(&0xefbe_adde_u32.to_le_bytes(), state)
        .unwrap();
}

/// A held host on `seg` and two held guests, 1 and 2, attached in turn.
fn held_host_and_two_guests(env: &Env) -> (Held, Held, Held) {
    let mut host = env.spawn(&small_args("seg", &["--hold"]));
    assert!(host.line().starts_with("created "), "{:?}", host.seen);
    let mut first = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(first.line(), "1");
    let mut second = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(second.line(), "2");
    (host, first, second)
}

/// The lines of `stderr` that report a guest cut off.
fn cut_off_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("cut off")).collect()
}

/// Guest 1 and the held host still talk both ways, inline and in slots.
fn still_served(env: &Env, host: &mut Held, guest: &mut Held, tag: &str) {
    env.ok(&["send", "seg", "--as", "1", &format!("{tag}: up")]);
    assert_eq!(host.line(), format!("{tag}: up"));
    env.send_as_host("seg", "1", &slot_msg(tag));
    assert_eq!(guest.line(), slot_msg(tag));
    env.ok(&["send", "seg", "--as", "1", &slot_msg(tag)]);
    assert_eq!(host.line(), slot_msg(tag));
}

// Before: the held host's receive failed on the bad entry, and the host
// exited 1 and deleted the segment under guest 1.
// shm[verify shm.peer.quarantine]
#[test]
fn a_held_host_cuts_off_a_guest_that_scribbles_on_its_state_and_serves_the_other() {
    let env = Env::new();
    let (mut host, mut good, bad) = held_host_and_two_guests(&env);
    // Stopped, guest 2 cannot notice its own entry and leave: the entry
    // stays its process's, quarantined.
    bad.freeze();
    scribble_state(&env, "seg", 2);
    still_served(&env, &mut host, &mut good, "while 2 is bad");
    // The host finds the entry at a sweep of its receive, or at its
    // reclaim (every half second), and says so.
    assert!(
        wait_until(HELD_TIMEOUT, || !cut_off_lines(&host.stderr()).is_empty()),
        "no warning: {:?}",
        host.stderr()
    );
    let report = env.inspect("seg");
    assert_eq!(peer(&report, 2)["state"], "quarantined", "{report}");
    assert_eq!(peer(&report, 2)["quarantine"], "entry", "{report}");
    still_served(&env, &mut host, &mut good, "after the cut");
    assert!(host.exited().is_none(), "{:?}", host.stderr());
    assert!(env.path("seg").is_file());

    host.signal(libc::SIGINT);
    host.wait_ok();
    let stderr = host.stderr();
    let warnings = cut_off_lines(&stderr);
    assert_eq!(warnings.len(), 1, "once: {stderr}");
    let warning = warnings[0];
    assert!(warning.starts_with("warning: "), "{warning}");
    assert!(warning.contains("peer 2"), "{warning}");
    assert!(warning.contains("its entry's state"), "{warning}");
    assert!(warning.contains("serving the other guests"), "{warning}");
}

// `shmhub evict` of a guest of a held host: the host warns once, serves
// the other guest, and frees the entry once the evicted guest is gone.
// Before: the host exited 1 and deleted the segment.
// shm[verify shm.peer.quarantine]
#[test]
fn a_held_host_serves_on_when_one_of_its_guests_is_evicted() {
    let env = Env::new();
    let (mut host, mut good, mut evicted) = held_host_and_two_guests(&env);
    // Stopped, the evicted guest stays alive (its entry quarantined) until
    // the host has seen it.
    evicted.freeze();
    env.ok(&["evict", "seg", "--peer-id", "2"]);
    assert!(
        wait_until(HELD_TIMEOUT, || host
            .stderr()
            .contains("peer 2 is cut off: evicted by the host")),
        "no warning: {:?}",
        host.stderr()
    );
    still_served(&env, &mut host, &mut good, "after the eviction");
    evicted.thaw();
    assert_eq!(evicted.wait().code(), Some(1));
    assert!(
        wait_until(HELD_TIMEOUT, || host
            .stderr()
            .contains("reclaimed dead peer(s) [2]")),
        "{:?}",
        host.stderr()
    );
    assert_eq!(peer(&env.inspect("seg"), 2)["state"], "empty");
    still_served(&env, &mut host, &mut good, "after the reclaim");
    assert!(env.path("seg").is_file());
    host.signal(libc::SIGTERM);
    host.wait_ok();
    let stderr = host.stderr();
    assert_eq!(cut_off_lines(&stderr).len(), 1, "once: {stderr}");
}

// A send to the guest with the bad entry is the library's to refuse: it
// cuts the guest off and says so, exit 1. Before: `corrupt segment`, from
// the command's own look at the entry first.
// shm[verify shm.peer.quarantine]
#[test]
fn a_send_to_a_guest_with_a_bad_state_cuts_it_off() {
    let env = Env::new();
    two_guests(&env);
    scribble_state(&env, "seg", 2);
    let r = env.run(&["send", "seg", "--as", "host", "--to", "2", "hi"]);
    r.code(1).error_line(&[
        "seg: peer 2 broke the protocol (its entry's state: ",
        "unknown state 4022250974",
        ") and is cut off",
    ]);
    let report = env.inspect("seg");
    assert_eq!(peer(&report, 2)["state"], "quarantined", "{report}");
    assert_eq!(peer(&report, 2)["quarantine"], "entry", "{report}");
    // From then on the mark in the entry refuses it, in every process.
    env.run(&["send", "seg", "--as", "host", "--to", "2", "hi"])
        .code(1)
        .error_line(&["seg: peer 2 is cut off for breaking the protocol (its entry's state)"]);
    env.send_as_host("seg", "1", "the other one is served");
    assert_eq!(
        env.ok(&["recv", "seg", "--as", "1"]).stdout,
        "the other one is served\n"
    );
}

// A quarantined guest whose process has died is still refused as cut
// off, not as a dead guest to reclaim first: nothing is sent to it either
// way, and the error says what the entry is.
// shm[verify shm.peer.quarantine]
#[test]
fn a_send_to_an_evicted_guest_whose_process_died_says_it_is_cut_off() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    guest.freeze();
    env.ok(&["evict", "seg", "--peer-id", "1"]);
    guest.signal(libc::SIGKILL);
    guest.wait();
    env.run(&["send", "seg", "--as", "host", "--to", "1", "hi"])
        .code(1)
        .error_line(&["seg: peer 1 is cut off: evicted by the host"]);
}

// Receiving from the healthy guest, or from any guest, goes on past the
// bad entry; a receive from the bad guest itself is the cut-off error.
// Before: every receive as the host refused the whole segment.
// shm[verify shm.peer.quarantine]
#[test]
fn receives_as_the_host_go_on_past_a_guest_with_a_bad_state() {
    let env = Env::new();
    two_guests(&env);
    env.ok(&["send", "seg", "--as", "1", "one"]);
    env.ok(&["send", "seg", "--as", "1", "two"]);
    scribble_state(&env, "seg", 2);

    let r = env.ok(&[
        "recv",
        "seg",
        "--as",
        "host",
        "--from",
        "1",
        "--timeout",
        "0",
    ]);
    assert_eq!(r.stdout, "one\n");
    // From any guest: guest 1's message, then a wait during which the
    // receive looks at every entry, cuts guest 2 off and says so once,
    // and runs out of time (exit 3) with nothing more to receive.
    let r = env.run(&[
        "recv",
        "seg",
        "--as",
        "host",
        "--count",
        "2",
        "--timeout",
        "1s",
    ]);
    r.code(3);
    assert_eq!(r.stdout, "two\n");
    let warnings = cut_off_lines(&r.stderr);
    assert_eq!(warnings.len(), 1, "{:?}", r.stderr);
    assert!(
        warnings[0].starts_with("warning: ")
            && warnings[0].contains("peer 2 broke the protocol (its entry's state")
            && warnings[0].ends_with("serving the other guests"),
        "{:?}",
        r.stderr
    );
    assert_eq!(peer(&env.inspect("seg"), 2)["state"], "quarantined");
    env.recv_as_host_from("seg", "2", "0")
        .code(1)
        .error_line(&["seg: peer 2 is cut off for breaking the protocol (its entry's state)"]);
}

// The same with the bad entry found by a receive from the bad guest
// itself: the first look reports what it found.
#[test]
fn a_receive_from_a_guest_with_a_bad_state_cuts_it_off() {
    let env = Env::new();
    two_guests(&env);
    scribble_state(&env, "seg", 2);
    env.recv_as_host_from("seg", "2", "0").code(1).error_line(&[
        "seg: peer 2 broke the protocol (its entry's state: ",
        "is cut off",
    ]);
    assert_eq!(peer(&env.inspect("seg"), 2)["quarantine"], "entry");
}

/// `peek --json`'s ring of guest `peer` carrying messages `direction`.
fn ring<'a>(report: &'a Value, peer: u64, direction: &str) -> &'a Value {
    report["rings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["peer"] == peer && r["direction"] == direction)
        .unwrap_or_else(|| panic!("no ring {peer} {direction} in {report}"))
}

// `peek` says, per ring, that a guest's entry holds no state (a host cuts
// it off when it looks), and then that it is cut off and why: its queued
// messages are listed, but will not be received.
// shm[verify shm.inspect.peek]
#[test]
fn peek_shows_a_guest_cut_off_and_why() {
    let env = Env::new();
    two_guests(&env);
    env.ok(&["send", "seg", "--as", "1", "from one"]);
    env.ok(&["send", "seg", "--as", "2", "from two"]);
    env.send_as_host("seg", "2", "to two");
    scribble_state(&env, "seg", 2);

    let text = env.ok(&["peek", "seg"]).stdout;
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("peer ")).collect();
    assert_eq!(
        heads,
        [
            "peer 1 to host (peer 1 -> host): 1 queued (head 0, tail 1, capacity 8)",
            "peer 2 to host (peer 2 -> host): 1 queued (head 0, tail 1, capacity 8); peer 2's entry holds no known state (4022250974): a host cuts it off when it looks",
            "peer 2 to guest (host -> peer 2): 1 queued (head 0, tail 1, capacity 8); peer 2's entry holds no known state (4022250974): a host cuts it off when it looks",
        ],
        "{text}"
    );
    let report = env.ok(&["peek", "seg", "--json"]).json();
    let healthy = ring(&report, 1, "guest_to_host");
    assert_eq!(
        (
            &healthy["state"],
            &healthy["raw_state"],
            &healthy["quarantine"]
        ),
        (&"attached".into(), &2.into(), &Value::Null)
    );
    let bad = ring(&report, 2, "guest_to_host");
    assert_eq!(
        (&bad["state"], &bad["raw_state"], &bad["quarantine"]),
        (&Value::Null, &0xefbe_adde_u32.into(), &Value::Null)
    );

    // The host looks (a send to the guest), and cuts it off.
    env.run(&["send", "seg", "--as", "host", "--to", "2", "hi"])
        .code(1);
    let text = env.ok(&["peek", "seg", "--peer", "2"]).stdout;
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("peer ")).collect();
    assert_eq!(
        heads,
        [
            "peer 2 to host (peer 2 -> host): 1 queued (head 0, tail 1, capacity 8); peer 2 (quarantined: its entry's state) is cut off: nothing on this ring is received",
            "peer 2 to guest (host -> peer 2): 1 queued (head 0, tail 1, capacity 8); peer 2 (quarantined: its entry's state) is cut off: nothing on this ring is received",
        ],
        "{text}"
    );
    assert!(
        text.contains("\"from two\"") && text.contains("\"to two\""),
        "{text}"
    );
    let report = env.ok(&["peek", "seg", "--json"]).json();
    for direction in ["guest_to_host", "host_to_guest"] {
        let cut = ring(&report, 2, direction);
        assert_eq!(
            (&cut["state"], &cut["raw_state"], &cut["quarantine"]),
            (&"quarantined".into(), &4.into(), &"entry".into()),
            "{report}"
        );
    }
    assert_eq!(
        ring(&report, 1, "guest_to_host")["state"],
        "attached",
        "{report}"
    );
}

// `inspect --raw` shows a quarantined entry's state and reason, each `ok`:
// a quarantine is a state of the protocol, not damage.
// shm[verify shm.inspect.raw]
#[test]
fn inspect_raw_shows_a_quarantined_entry_and_its_reason() {
    let env = Env::new();
    two_guests(&env);
    scribble_state(&env, "seg", 2);
    env.run(&["send", "seg", "--as", "host", "--to", "2", "hi"])
        .code(1);
    let dump = env.ok(&["inspect", "seg", "--raw", "--json"]).json();
    let field = |name: &str| {
        dump["sections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == "peer 2")
            .flat_map(|s| s["fields"].as_array().unwrap())
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no peer 2.{name} in {dump}"))
            .clone()
    };
    let state = field("state");
    assert_eq!(
        (&state["raw"], &state["decoded"], &state["status"]),
        (&4.into(), &"quarantined".into(), &"ok".into()),
        "{state}"
    );
    let reason = field("quarantine");
    assert_eq!(
        (&reason["raw"], &reason["decoded"], &reason["status"]),
        (
            &1.into(),
            &"cut off: its entry's state".into(),
            &"ok".into()
        ),
        "{reason}"
    );
    let text = env.ok(&["inspect", "seg", "--raw"]).stdout;
    let row = text
        .lines()
        .find(|l| l.contains("peer 2.quarantine"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("cut off: its entry's state"), "{row}");
}

// `events` tells an entry cut off, with why, in JSON and in words.
// shm[verify shm.peer.quarantine]
#[test]
fn events_tell_a_guest_cut_off() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "16"]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    guest.freeze();
    let mut json = env.spawn(&["events", "seg", "--json", "--interval", "50ms"]);
    let mut text = env.spawn(&["events", "seg", "--interval", "50ms"]);
    // Each has had its first look once it tells a change made after it
    // started: scripted claims, one after another, until both have.
    let (mut json_looked, mut text_looked) = (false, false);
    for _ in 0..12 {
        env.attach("seg");
        json_looked |= json.line_within(Duration::from_secs(1)).is_some();
        text_looked |= text.line_within(Duration::from_secs(1)).is_some();
        if json_looked && text_looked {
            break;
        }
    }
    assert!(
        json_looked && text_looked,
        "{:?} {:?}",
        json.seen,
        text.seen
    );
    env.ok(&["evict", "seg", "--peer-id", "1"]);
    // Past the claims told late, if any.
    let cut = loop {
        let event = json.json_line();
        if event["event"] != "attached" {
            break event;
        }
    };
    assert_eq!(
        (&cut["event"], &cut["peer"], &cut["reason"]),
        (&"quarantined".into(), &1.into(), &"evicted".into()),
        "{cut}"
    );
    let line = loop {
        let line = text.line();
        if !line.contains(" attached ") {
            break line;
        }
    };
    assert!(
        line.ends_with(" peer 1 evicted by the host (cut off)"),
        "{line}"
    );
}
