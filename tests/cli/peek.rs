//! `shmhub peek`: the messages queued in rings, listed without taking
//! them, refused ones with their reason, and never a mix of before and
//! after on a ring in use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The rings of a `peek --json` document.
fn rings(v: &Value) -> &Vec<Value> {
    v["rings"].as_array().expect("rings array")
}

/// Offset in the file of descriptor `index` of guest `peer`'s host-to-guest
/// ring, from the layout `inspect --json` reports.
fn host_to_guest_desc(env: &Env, seg: &str, peer: u64, index: u64) -> usize {
    let h = &env.inspect(seg)["header"];
    let (rings, size, capacity) = (
        h["rings_offset"].as_u64().unwrap(),
        h["ring_size"].as_u64().unwrap(),
        h["ring_capacity"].as_u64().unwrap(),
    );
    (rings + (peer - 1) * 2 * size + size + 192 + (index % capacity) * 64) as usize
}

// shm[verify shm.inspect.peek]
#[test]
fn lists_queued_messages_without_taking_them() {
    let env = Env::new();
    let path = env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    let long = slot_msg("a");
    let to_1 = ["send", "seg", "--as", "host", "--to", "1"];
    env.ok(&[&to_1[..], &["hello", "--id", "5", "--method", "9"]].concat());
    env.ok(&[
        &to_1[..],
        &[&long[..], "--msg-type", "request", "--id", "6"],
    ]
    .concat());
    env.run_stdin(
        &[&to_1[..], &["-", "--msg-type", "700", "--id", "7"]].concat(),
        vec![0u8, 1, 2, 0xff],
    )
    .code(0);
    env.ok(&["send", "seg", "--as", "2", &long, "--id", "8"]);
    let before = std::fs::read(&path).unwrap();

    let v = env.ok(&["peek", "seg", "--json"]).json();
    assert_eq!(v["path"], path.display().to_string());
    let all = rings(&v);
    assert_eq!(all.len(), 2, "only the rings that hold something: {v}");
    let (up, down) = (&all[1], &all[0]);
    assert_eq!(
        (
            &down["peer"],
            &down["direction"],
            &down["sender"],
            &down["receiver"]
        ),
        (&1.into(), &"host_to_guest".into(), &0.into(), &1.into()),
        "{down}"
    );
    assert_eq!(
        (&down["head"], &down["tail"], &down["queued"]),
        (&0.into(), &3.into(), &3.into())
    );
    assert_eq!(down["capacity"], 8);
    let m = down["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    // An inline text message.
    assert_eq!(
        (
            &m[0]["position"],
            &m[0]["id"],
            &m[0]["msg_type_name"],
            &m[0]["method_id"]
        ),
        (&0.into(), &5.into(), &"data".into(), &9.into())
    );
    assert_eq!(
        (&m[0]["placement"], &m[0]["slot"], &m[0]["flags"]),
        (&"inline".into(), &Value::Null, &0.into())
    );
    assert_eq!(m[0]["preview"]["text"], "hello");
    assert_eq!(m[0]["preview"]["truncated"], false);
    assert_eq!(m[0]["problem"], Value::Null);
    // A slot message: a preview of its first 64 bytes, read from the slot.
    assert_eq!(
        (&m[1]["id"], &m[1]["msg_type"], &m[1]["msg_type_name"]),
        (&6.into(), &2.into(), &"request".into())
    );
    assert_eq!(
        (&m[1]["placement"], &m[1]["flags"]),
        (&"slot".into(), &1.into())
    );
    assert_eq!(m[1]["len"], long.len());
    assert_eq!(m[1]["slot"]["generation"], 1);
    assert_eq!(m[1]["slot"]["offset"], 0);
    assert_eq!(m[1]["preview"]["text"], long[..64]);
    assert_eq!(m[1]["preview"]["hex"], hex(&long.as_bytes()[..64]));
    assert_eq!(m[1]["preview"]["truncated"], true);
    // Bytes that are not text, of a type with no name.
    assert_eq!(
        (&m[2]["msg_type"], &m[2]["msg_type_name"]),
        (&700.into(), &Value::Null)
    );
    assert_eq!(
        (&m[2]["preview"]["hex"], &m[2]["preview"]["text"]),
        (&"000102ff".into(), &Value::Null)
    );
    // The guest's message to the host travels in the guest's pool.
    assert_eq!(
        (
            &up["peer"],
            &up["direction"],
            &up["sender"],
            &up["receiver"]
        ),
        (&2.into(), &"guest_to_host".into(), &2.into(), &0.into())
    );
    assert_eq!(up["messages"][0]["preview"]["text"], long[..64]);

    let text = env.ok(&["peek", "seg"]).stdout.clone();
    for needle in [
        "peer 1 to guest (host -> peer 1): 3 queued (head 0, tail 3, capacity 8)",
        "peer 2 to host (peer 2 -> host): 1 queued",
        "\"hello\"",
        "request (2)",
        "slot 0 gen 1",
        "hex 000102ff",
        "0x0001",
    ] {
        assert!(text.contains(needle), "peek lacks {needle:?}:\n{text}");
    }
    assert_eq!(tables(&text).len(), 2, "{text}");

    // --limit lists fewer but counts all; --peer shows a ring even empty;
    // --direction picks one.
    let limited = env.ok(&["peek", "seg", "--peer", "1", "--limit", "1"]);
    assert!(
        limited.stdout.contains("(2 more not listed; --limit 1"),
        "{}",
        limited.stdout
    );
    let v = env
        .ok(&["peek", "seg", "--peer", "1", "--limit", "1", "--json"])
        .json();
    assert_eq!(rings(&v).len(), 2);
    assert_eq!(
        (
            &rings(&v)[1]["queued"],
            rings(&v)[1]["messages"].as_array().unwrap().len()
        ),
        (&3.into(), 1)
    );
    let v = env.ok(&["peek", "seg", "--peer", "3", "--json"]).json();
    assert_eq!(
        rings(&v)
            .iter()
            .map(|r| r["queued"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 0]
    );
    let v = env
        .ok(&[
            "peek",
            "seg",
            "--peer",
            "2",
            "--direction",
            "to-host",
            "--json",
        ])
        .json();
    assert_eq!((rings(&v).len(), &rings(&v)[0]["queued"]), (1, &1.into()));
    let v = env
        .ok(&["peek", "seg", "--direction", "to-guest", "--json"])
        .json();
    assert_eq!(rings(&v).len(), 1);
    env.run(&["peek", "seg", "--peer", "9"])
        .error(&["peer id 9 is out of range"]);
    env.run(&["peek", "seg", "--direction", "sideways"]).usage();
    env.run(&["peek", "seg", "--peer", "0"]).usage();

    // Nothing was taken or written: every message is still there to receive.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "peek changed the file"
    );
    let got = env
        .ok(&[
            "recv",
            "seg",
            "--as",
            "1",
            "--count",
            "3",
            "--timeout",
            "0",
            "--json",
        ])
        .json_lines();
    let ids: Vec<u64> = got.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [5, 6, 7]);
    assert_eq!(got[1]["payload_utf8"], long);
    let from_2 = env.ok(&["recv", "seg", "--as", "host", "--timeout", "0"]);
    assert_eq!(from_2.stdout.strip_suffix('\n'), Some(&long[..]));
    assert_eq!(
        env.ok(&["peek", "seg"]).stdout,
        "nothing is queued in any ring\n"
    );
    assert_eq!(rings(&env.ok(&["peek", "seg", "--json"]).json()).len(), 0);
}

// shm[verify shm.inspect.peek]
// shm[verify shm.recv.validate]
#[test]
fn a_message_that_will_be_refused_is_listed_with_the_reason() {
    let env = Env::new();
    let path = env.small("seg", &[]);
    env.attach("seg");
    let long = slot_msg("b");
    for payload in ["one", &long, "three"] {
        env.send_as_host("seg", "1", payload);
    }
    // Forge two of the three queued descriptors: an unknown flag bit on
    // the first (its phase bit kept), a stale generation on the second.
    let mut bytes = std::fs::read(&path).unwrap();
    let first = host_to_guest_desc(&env, "seg", 1, 0);
    bytes[first + 2] |= 0x02;
    let second = host_to_guest_desc(&env, "seg", 1, 1);
    bytes[second + 24..second + 28].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let v = env.ok(&["peek", "seg", "--json"]).json();
    let m = rings(&v)[0]["messages"].as_array().unwrap().clone();
    assert_eq!(m.len(), 3, "a refused message is listed, not skipped: {v}");
    assert_eq!(m[0]["problem"], "unknown flags 0x0002");
    assert_eq!(
        (&m[0]["flags"], &m[0]["preview"]),
        (&2.into(), &Value::Null)
    );
    let stale = m[1]["problem"].as_str().unwrap();
    assert!(stale.contains("the descriptor says 99"), "{stale}");
    assert_eq!(
        (&m[1]["slot"]["generation"], &m[1]["preview"]),
        (&99.into(), &Value::Null)
    );
    assert_eq!(
        (&m[2]["problem"], &m[2]["preview"]["text"]),
        (&Value::Null, &"three".into())
    );
    let text = env.ok(&["peek", "seg"]).stdout.clone();
    assert!(text.contains("invalid: unknown flags 0x0002"), "{text}");
    assert!(text.contains("invalid: slot 0 has generation 1"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "peek changed the file"
    );

    // The receiver refuses exactly those, for the same reasons, and goes on.
    let recv = || env.run(&["recv", "seg", "--as", "1", "--timeout", "0"]);
    recv().error(&["bad descriptor from host: unknown flags 0x0002"]);
    recv().error(&["bad descriptor from host", "the descriptor says 99"]);
    assert_eq!(recv().stdout, "three\n");
}

// A sender and a receiver in other processes keep the ring moving while
// peek reads it: each look is either a consistent listing or "try again",
// never garbage. Consistent means: positions follow each other from the
// head, and each message is the one the sender put there (the only sender
// numbers its messages from 1000 on a fresh ring, so message `p` has id
// 1000 + p and the sender's payload). Every look runs as a process with no
// right to write the file, so it cannot have written it either.
// shm[verify shm.inspect.peek]
// shm[verify shm.inspect.read-only]
#[test]
fn racing_a_live_sender_and_receiver_gives_a_listing_or_try_again() {
    let env = Env::new();
    let path = env.small("seg", &["--slots", "8"]);
    env.attach("seg");
    let payload = slot_msg("race");
    let mut sender = env.spawn(&[
        "send",
        "seg",
        "--as",
        "host",
        "--to",
        "1",
        "--count",
        "1000000",
        "--id",
        "1000",
        "--timeout",
        "30s",
        &payload,
    ]);
    let stop = AtomicBool::new(false);
    let (listed, retried, proven) = std::thread::scope(|s| {
        // The receiver: short `recv` runs one after another, so the ring is
        // often full and often being drained.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = env.run(&[
                    "recv",
                    "seg",
                    "--as",
                    "1",
                    "--count",
                    "30",
                    "--timeout",
                    "2s",
                    "--output",
                    "/dev/null",
                ]);
                assert!(matches!(r.status.code(), Some(0 | 3)), "{r:?}");
            }
        });
        let (mut listed, mut retried, mut proven) = (0, 0, true);
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            let args = [
                "peek",
                "seg",
                "--peer",
                "1",
                "--direction",
                "to-guest",
                "--json",
            ];
            let (r, unable) = env.run_unable_to_write(&path, &args);
            proven &= unable;
            match r.status.code() {
                Some(0) => {
                    check_consistent(&r.json(), &payload);
                    listed += 1;
                }
                Some(3) => {
                    r.error_line(&["changed while reading", "try again"]);
                    assert!(r.stdout.is_empty(), "{:?}", r.stdout);
                    retried += 1;
                }
                _ => panic!("peek under traffic: {r:?}"),
            }
            // The other views, too, write nothing and never fail otherwise.
            let (r, _) = env.run_unable_to_write(&path, &["inspect", "seg", "--slots", "--json"]);
            assert!(matches!(r.status.code(), Some(0 | 3)), "{r:?}");
            let (r, _) = env.run_unable_to_write(&path, &["inspect", "seg", "--raw", "--json"]);
            assert_eq!(r.status.code(), Some(0), "{r:?}");
        }
        stop.store(true, Ordering::Relaxed);
        (listed, retried, proven)
    });
    sender.signal(libc::SIGTERM);
    sender.wait();
    eprintln!(
        "peek under traffic: {listed} listings, {retried} try-agains; unable to write: {proven}"
    );
    assert!(
        listed + retried > 10,
        "{listed} listings, {retried} try-agains"
    );
}

/// A look at guest 1's host-to-guest ring during the race is consistent.
#[track_caller]
fn check_consistent(v: &Value, payload: &str) {
    let ring = &rings(v)[0];
    let head = ring["head"].as_u64().unwrap();
    let queued = ring["queued"].as_u64().unwrap();
    assert!(queued <= 8, "{ring}");
    let messages = ring["messages"].as_array().unwrap();
    assert_eq!(messages.len() as u64, queued, "{ring}");
    for (k, m) in messages.iter().enumerate() {
        let position = m["position"].as_u64().unwrap();
        assert_eq!(position, head + k as u64, "positions do not follow: {ring}");
        assert_eq!(
            m["id"],
            1000 + position,
            "not the message sent there: {ring}"
        );
        assert_eq!(m["problem"], Value::Null, "{ring}");
        assert_eq!(
            (&m["len"], &m["placement"]),
            (&payload.len().into(), &"slot".into()),
            "{ring}"
        );
        assert_eq!(m["preview"]["text"], payload[..64], "{ring}");
    }
}
