//! `shmhub attach` without --hold (held guests are in `held.rs`), and
//! `shmhub detach`.

use crate::common::*;

#[test]
fn prints_the_peer_id_alone() {
    let env = Env::new();
    env.small("seg", &[]);
    for want in ["1\n", "2\n", "3\n"] {
        let r = env.ok(&["attach", "seg"]);
        assert_eq!(r.stdout, want);
        assert!(r.stderr.is_empty(), "{:?}", r.stderr);
    }
}

#[test]
fn json_prints_peer_id_and_epoch() {
    let env = Env::new();
    env.small("seg", &[]);
    let v = env.ok(&["attach", "seg", "--json"]).json();
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["epoch", "peer_id"], "{v}");
    assert_eq!(v["peer_id"], 1);
    assert_eq!(v["epoch"], 1);
    // The epoch counts attaches of the entry.
    env.ok(&["detach", "seg", "--peer-id", "1"]);
    let v = env.ok(&["attach", "seg", "--json"]).json();
    assert_eq!(v["peer_id"], 1);
    assert_eq!(v["epoch"], 2);
    assert_eq!(peer(&env.inspect("seg"), 1)["epoch"], 2);
}

#[test]
fn without_hold_the_claim_stays_as_scripted() {
    let env = Env::new();
    env.small("seg", &[]);
    assert_eq!(env.attach("seg"), 1);
    let report = env.inspect("seg");
    let p = peer(&report, 1);
    assert_eq!(p["state"], "attached");
    assert_eq!(p["holder"], "scripted");
    assert_eq!(peer(&report, 2)["state"], "empty");
    let text = env.ok(&["inspect", "seg"]).stdout;
    let row = text
        .lines()
        .find(|l| l.contains("attached"))
        .unwrap_or_else(|| panic!("no attached row in\n{text}"));
    assert!(row.contains("scripted"), "{row}");
    // Still there for the next command: a scripted guest can send and receive.
    env.ok(&["send", "seg", "--as", "1", "still here"]);
    assert_eq!(
        env.ok(&["recv", "seg", "--as", "host"]).stdout,
        "still here\n"
    );
}

#[test]
fn a_full_hub_is_refused_and_nothing_changes() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "2"]);
    env.attach("seg");
    env.attach("seg");
    let before = std::fs::read(env.path("seg")).unwrap();
    let r = env.run(&["attach", "seg"]);
    r.error(&[&env.path("seg").display().to_string(), "full"]);
    assert!(r.stdout.is_empty());
    env.run(&["attach", "seg", "--hold"]).error(&["full"]);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
}

#[test]
fn peer_id_must_name_a_reserved_entry() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let before = std::fs::read(env.path("seg")).unwrap();
    let path = env.path("seg").display().to_string();
    // Empty (not reserved), already attached, out of range for this segment.
    for (id, needle) in [("2", "peer 2"), ("1", "peer 1"), ("5", "5"), ("255", "255")] {
        let r = env.run(&["attach", "seg", "--peer-id", id]);
        r.error(&[&path, needle]);
        assert!(r.stdout.is_empty());
        env.run(&["attach", "seg", "--peer-id", id, "--hold"])
            .code(1);
    }
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
    for id in ["0", "256", "x", "-1"] {
        env.run(&["attach", "seg", "--peer-id", id]).usage();
    }
}

#[test]
fn missing_and_foreign_files_are_refused_untouched() {
    let env = Env::new();
    env.run(&["attach", "nope"])
        .error(&[&env.path("nope").display().to_string()]);
    assert!(!env.path("nope").exists());
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        env.run(&["attach", name])
            .error(&[&env.path(name).display().to_string()]);
        assert_eq!(std::fs::read(env.path(name)).unwrap(), before);
    }
    env.run(&["attach"]).usage();
}

#[test]
fn detach_releases_a_scripted_claim() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    let r = env.ok(&["detach", "seg", "--peer-id", "1"]);
    assert!(r.stdout.is_empty(), "{:?}", r.stdout);
    let report = env.inspect("seg");
    assert_eq!(peer(&report, 1)["state"], "empty");
    assert_eq!(peer(&report, 2)["state"], "attached");
    assert_eq!(
        env.ok(&["detach", "seg", "--peer-id", "2", "--json"])
            .json(),
        serde_json::json!({"detached": 2})
    );
    assert_eq!(peer(&env.inspect("seg"), 2)["state"], "empty");
    // The freed entry is claimed again first.
    assert_eq!(env.attach("seg"), 1);
}

#[test]
fn detach_of_an_entry_that_is_not_attached_is_an_error() {
    let env = Env::new();
    env.small("seg", &[]);
    let before = std::fs::read(env.path("seg")).unwrap();
    let path = env.path("seg").display().to_string();
    env.run(&["detach", "seg", "--peer-id", "1"])
        .error(&[&path, "peer 1"]);
    env.run(&["detach", "seg", "--peer-id", "9"])
        .error(&[&path]);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
    env.run(&["detach", "seg"]).usage();
    env.run(&["detach", "seg", "--peer-id", "0"]).usage();
    env.run(&["detach", "missing", "--peer-id", "1"])
        .error(&["missing"]);
}

#[test]
fn a_full_hub_reclaims_entries_whose_holder_died_then_attaches() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "2"]);
    let mut alive = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(alive.line(), "1");
    let (id, pid) = env.attach_then_kill("seg");
    assert_eq!(id, 2);
    assert_eq!(peer(&env.inspect("seg"), 2)["holder"], "dead");

    // No `reclaim` needed: attach reclaims the dead holder's entry itself.
    let r = env.ok(&["attach", "seg"]);
    assert_eq!(r.stdout, "2\n");
    let said = format!("reclaimed peer 2 (pid {pid}, dead)");
    assert!(r.stderr.contains(&said), "{:?}", r.stderr);
    let report = env.inspect("seg");
    let p = peer(&report, 2);
    assert_eq!(p["state"], "attached");
    assert_eq!(p["holder"], "scripted");
    assert_eq!(p["epoch"], 2, "a new claim of the entry");
    let p = peer(&report, 1);
    assert_eq!(p["holder"], "alive", "a live holder is never reclaimed");

    // Every holder alive (or scripted): refused, naming them and how to
    // free a scripted claim. The live holder is frozen while the file is
    // compared: asleep in its receive, it sets and clears its waiting flag
    // around every nap, which is its own writing, not the refused attach's.
    alive.freeze();
    let before = std::fs::read(env.path("seg")).unwrap();
    let r = env.run(&["attach", "seg"]);
    let live = format!("peer 1 (pid {}, alive)", alive.pid());
    r.error(&[
        &env.path("seg").display().to_string(),
        "hub is full",
        &live,
        "peer 2 (scripted)",
        "`shmhub detach seg --peer-id 2`",
    ]);
    assert!(r.stdout.is_empty(), "{:?}", r.stdout);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
    alive.thaw();
    // The command it names frees the entry.
    env.ok(&["detach", "seg", "--peer-id", "2"]);
    assert_eq!(env.attach("seg"), 2);
    alive.signal(libc::SIGTERM);
    alive.wait_ok();
}

#[test]
fn a_held_attach_on_a_full_hub_reclaims_too() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "1"]);
    env.attach_then_kill("seg");
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(held.line(), "1");
    let msg = "to the new holder";
    env.send_as_host("seg", "1", msg);
    assert_eq!(held.line(), msg);
    held.signal(libc::SIGTERM);
    held.wait_ok();
    let said = held.stderr();
    assert!(said.contains("reclaimed peer 1"), "{said:?}");
}

// Racing attaches on a full hub: each loser's error names every entry, from
// one look at the peer table in which all are taken, never `taken: ` with
// nothing after it or a partial list (issue 32, item 7).
#[test]
fn racing_attaches_on_a_full_hub_name_every_entry() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "2"]);
    for round in 0..8 {
        // Both entries held by dead processes: every racer reclaims.
        env.attach_then_kill("seg");
        env.attach_then_kill("seg");
        let r = env.shell(
            "for i in 1 2 3 4 5 6; do \
               (\"$SHMHUB\" attach seg >out.$i 2>err.$i; echo $? >code.$i) & \
             done; wait",
        );
        r.code(0);
        let mut won = Vec::new();
        for i in 1..=6 {
            let read =
                |what: &str| std::fs::read_to_string(env.path(&format!("{what}.{i}"))).unwrap();
            let (out, err, code) = (read("out"), read("err"), read("code"));
            match code.trim() {
                "0" => won.push(out.trim().to_string()),
                "1" => {
                    let line = err
                        .lines()
                        .find(|l| l.starts_with("error:"))
                        .unwrap_or_else(|| panic!("round {round}: {err:?}"));
                    assert!(
                        line.contains("hub is full: all 2 guest entries are taken: peer 1 (")
                            && line.contains(", peer 2 ("),
                        "round {round}: {line:?}"
                    );
                }
                other => panic!("round {round}: attach exited {other}: {err:?}"),
            }
        }
        won.sort();
        assert_eq!(won, ["1", "2"], "round {round}");
        for id in ["1", "2"] {
            env.ok(&["detach", "seg", "--peer-id", id]);
        }
    }
}
