//! Chaos through the command: a held host and three held guests receiving,
//! `send --count` loops both ways, and `kill -9` of one guest in the middle
//! of its stream. The held host reclaims the dead guest (and says so), its
//! slots come back, the other guests get everything, and the freed entry is
//! the next one `attach` hands out.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// Messages each surviving stream carries.
const COUNT: usize = 300;
/// The host's stream to the guest that dies: long enough that the guest
/// dies in the middle of it.
const ENDLESS: &str = "100000";

fn to_guest(n: u64) -> String {
    slot_msg(&format!("to guest {n}"))
}

fn from_guest(n: u64) -> String {
    format!("from guest {n}")
}

/// The ids and payloads of the messages in `lines` (JSON) sent by `from`.
fn stream(lines: &[String], from: &Value) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| &v["from"] == from)
        .map(|v| {
            let id = v["id"].as_u64().expect("an id");
            (id, v["payload_utf8"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// Whether `got` is messages `0..k` of a stream of `payload`, in order.
fn is_prefix(got: &[(u64, String)], payload: &str) -> bool {
    got.iter()
        .enumerate()
        .all(|(i, (id, p))| *id == i as u64 && p == payload)
}

// shm[verify shm.peer.reclaim]
#[test]
fn a_guest_killed_mid_stream_is_reclaimed_and_the_others_get_everything() {
    let env = Env::new();
    let mut args = vec!["create", "seg", "--hold", "--json"];
    args.extend_from_slice(SMALL);
    let mut host = env.spawn(&args);
    host.json_line();
    let mut guests: Vec<Held> = (1..=3u64)
        .map(|n| {
            let mut g = env.spawn(&["attach", "seg", "--hold", "--json"]);
            assert_eq!(g.json_line()["peer_id"], n);
            g
        })
        .collect();

    // Loops both ways with every guest; the one to guest 2 never ends by
    // itself.
    let count = COUNT.to_string();
    let mut senders = Vec::new();
    for n in 1..=3u64 {
        let id = n.to_string();
        let to_n = to_guest(n);
        let n_count = if n == 2 { ENDLESS } else { &count };
        let host_to = [
            "send", "seg", "--as", "host", "--to", &id, "--count", n_count,
        ];
        senders.push((
            n,
            "host",
            env.spawn(&[&host_to[..], &["--timeout", "10s", &to_n]].concat()),
        ));
        let from_n = from_guest(n);
        let guest_to = [
            "send",
            "seg",
            "--as",
            &id,
            "--count",
            &count,
            "--timeout",
            "10s",
        ];
        senders.push((
            n,
            "guest",
            env.spawn(&[&guest_to[..], &[from_n.as_str()]].concat()),
        ));
    }

    // Guest 2 dies with SIGKILL once its stream is well under way.
    for _ in 0..20 {
        guests[1].json_line();
    }
    let victim = guests[1].pid();
    env.shell(&format!("kill -9 {victim}")).code(0);
    let status = guests[1].wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    // The loops with guests 1 and 3 complete. The host's loop to guest 2
    // fails, naming it, once it finds the guest dead; guest 2's own loop,
    // a process of its own, may finish or find its entry reclaimed.
    for (n, side, s) in &mut senders {
        let status = s.wait();
        let code = status.code();
        match (*n, *side) {
            (2, "host") => {
                assert_eq!(code, Some(1), "send to the dead guest: {:?}", s.stderr());
                let err = s.stderr();
                assert!(
                    err.starts_with("error: ") && err.contains("peer 2"),
                    "{err}"
                );
            }
            (2, _) => assert!(
                matches!(code, Some(0 | 1)),
                "guest 2's own loop: {status:?} {:?}",
                s.stderr()
            ),
            _ => assert_eq!(code, Some(0), "{side} loop of guest {n}: {:?}", s.stderr()),
        }
    }

    // The held host reclaims the dead guest and says so; every slot of the
    // host's is back, and the entry is free.
    assert!(
        wait_until(Duration::from_secs(10), || host
            .stderr()
            .contains("reclaimed dead peer(s) [2]")),
        "the held host did not log the reclaim: {:?}",
        host.stderr()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let report = env.inspect("seg");
            pool(&report, "host")["used"] == 0 && peer(&report, 2)["state"] == "empty"
        }),
        "{}",
        env.inspect("seg")
    );

    // The surviving guests received everything the host sent them, in order.
    for n in [1u64, 3] {
        let g = &mut guests[n as usize - 1];
        for _ in 0..COUNT {
            g.json_line();
        }
        let got = stream(&g.seen, &Value::from("host"));
        assert_eq!(got.len(), COUNT, "guest {n}");
        assert!(is_prefix(&got, &to_guest(n)), "guest {n}: {got:?}");
    }

    // A new guest gets the freed entry.
    assert_eq!(env.attach("seg"), 2);
    env.ok(&["detach", "seg", "--peer-id", "2"]);

    // The host received everything from guests 1 and 3, and an intact
    // prefix of guest 2's stream.
    for n in [1, 3] {
        let g = &mut guests[n - 1];
        g.signal(libc::SIGTERM);
        g.wait_ok();
    }
    host.signal(libc::SIGTERM);
    host.wait_ok();
    assert!(!env.path("seg").exists());
    for n in 1..=3u64 {
        let got = stream(&host.seen, &Value::from(n));
        assert!(is_prefix(&got, &from_guest(n)), "from guest {n}: {got:?}");
        if n != 2 {
            assert_eq!(got.len(), COUNT, "from guest {n}");
        }
    }
}
