//! A shell-style session, the way a script or an engineer at a prompt
//! uses the tool: every step a separate invocation.

use crate::common::*;

#[test]
fn create_attach_send_both_ways_recv_inspect_rm() {
    let env = Env::new();
    // create
    let made = env
        .ok(&[
            "create",
            "demo",
            "--max-guests",
            "2",
            "--ring-size",
            "4",
            "--slot-size",
            "4KiB",
            "--slots",
            "2",
            "--json",
        ])
        .json();
    assert_eq!(made["config"]["ring_capacity"], 4);
    // attach (the id is what a script captures with $(...))
    let id = env.ok(&["attach", "demo"]).stdout;
    assert_eq!(id, "1\n");
    let id = id.trim();
    // send both ways, inline (<= 32 bytes) and through slots (> 32 bytes)
    let down_small = "hello guest";
    let down_big = slot_msg("host to guest");
    let up_small = "hello host";
    let up_big = slot_msg("guest to host");
    env.ok(&["send", "demo", "--as", "host", "--to", id, down_small]);
    env.ok(&["send", "demo", "--as", "host", "--to", id, &down_big]);
    env.ok(&["send", "demo", "--as", id, up_small]);
    env.ok(&["send", "demo", "--as", id, &up_big]);
    env.ok(&["send", "demo", "--as", id, &up_big]);
    // inspect: ring fill levels and pool usage
    let v = env.inspect("demo");
    assert_eq!(v["header"]["ring_capacity"], 4);
    assert_eq!(ring_len(&v, 1, "to_guest"), 2);
    assert_eq!(ring_len(&v, 1, "to_host"), 3);
    assert_eq!(ring_len(&v, 2, "to_host"), 0);
    assert_eq!(pool(&v, "host")["used"], 1);
    assert_eq!(pool(&v, "host")["free"], 1);
    assert_eq!(pool(&v, "peer 1")["used"], 2);
    assert_eq!(pool(&v, "peer 1")["free"], 0);
    assert_eq!(pool(&v, "peer 2")["used"], 0);
    assert_eq!(peer(&v, 1)["state"], "attached");
    let text = env.ok(&["inspect", "demo"]).stdout;
    assert!(text.contains("3/4") && text.contains("2/4"), "{text}");
    // recv: the guest gets the host's messages in order, the host the guest's
    assert_eq!(
        env.ok(&["recv", "demo", "--as", id, "--count", "2"]).stdout,
        format!("{down_small}\n{down_big}\n")
    );
    let got = env
        .ok(&["recv", "demo", "--as", "host", "--count", "3", "--json"])
        .json_lines();
    let payloads: Vec<&str> = got
        .iter()
        .map(|m| m["payload_utf8"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, [up_small, up_big.as_str(), up_big.as_str()]);
    assert_eq!(
        got.iter()
            .map(|m| m["placement"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["inline", "slot", "slot"]
    );
    assert!(got.iter().all(|m| m["from"] == 1 && m["to"] == "host"));
    // nothing left: rings empty, every slot free
    env.run(&["recv", "demo", "--as", id, "--timeout", "0"])
        .code(3);
    env.run(&["recv", "demo", "--as", "host", "--timeout", "0"])
        .code(3);
    let v = env.inspect("demo");
    assert_eq!(ring_len(&v, 1, "to_guest"), 0);
    assert_eq!(ring_len(&v, 1, "to_host"), 0);
    assert_eq!(pools_used(&v), 0);
    // rm
    env.ok(&["rm", "demo"]);
    assert!(env.listing().is_empty());
    env.run(&["inspect", "demo"]).code(1);
}
