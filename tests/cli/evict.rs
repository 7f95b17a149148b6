//! `shmhub evict`: a guest cut off on purpose (`shm.peer.quarantine`).

use crate::common::*;

fn peer(report: &serde_json::Value, id: u64) -> &serde_json::Value {
    report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == id)
        .unwrap_or_else(|| panic!("no peer {id} in {report}"))
}

// A live guest evicted learns it at once and ends with one error line; its
// entry stays quarantined, shown with why, until its process is gone,
// when a reclaim frees it. A scripted claim (no process) is freed at once.
// shm[verify shm.peer.quarantine]
#[test]
fn a_live_guest_is_cut_off_and_its_entry_freed_once_it_is_gone() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(held.line(), "1");
    held.freeze();
    let r = env.ok(&["evict", "seg", "--peer-id", "1", "--json"]);
    assert_eq!(r.json(), serde_json::json!({"evicted": 1, "freed": false}));
    let p = peer(&env.inspect("seg"), 1).clone();
    assert_eq!(p["state"], "quarantined");
    assert_eq!(p["quarantine"], "evicted");
    let table = env.ok(&["inspect", "seg"]).stdout;
    assert!(
        table.contains("quarantined (evicted by the host)"),
        "{table}"
    );
    // Sends to it are refused, naming why.
    env.run(&["send", "seg", "--as", "host", "--to", "1", "hi"])
        .error_line(&["peer 1 is cut off: evicted by the host"]);
    // The guest, woken, says so and ends.
    held.thaw();
    let status = held.wait();
    assert_eq!(status.code(), Some(1));
    let stderr = held.stderr();
    assert!(
        stderr.contains("peer 1 is cut off: evicted by the host"),
        "{stderr}"
    );
    assert_eq!(env.ok(&["reclaim", "seg"]).stdout, "1\n");
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");
    // A scripted claim: freed at once, nothing printed.
    assert_eq!(env.attach("seg"), 1);
    let r = env.ok(&["evict", "seg", "--peer-id", "1"]);
    assert!(r.stdout.is_empty() && r.stderr.is_empty(), "{r:?}");
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");
}

// A guest killed while it held the host's slots, cut off before: the
// reclaim that frees its entry gives the slots back and counts none held.
// The frees count `host_slots_returned` up after the rings were zeroed,
// so the count is taken again (without that, 2 slots freed showed as
// 4294967294 held by an Empty entry until its next claim).
// shm[verify shm.peer.quarantine]
// shm[verify shm.pool.share]
#[test]
fn a_freed_quarantined_entry_holds_none_of_the_hosts_slots() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(held.line(), "1");
    // Stopped, it reads nothing: the two slot messages stay its to free.
    held.freeze();
    for tag in ["one", "two"] {
        env.send_as_host("seg", "1", &slot_msg(tag));
    }
    assert_eq!(peer(&env.inspect("seg"), 1)["host_slots_held"], 2);
    let r = env.ok(&["evict", "seg", "--peer-id", "1", "--json"]);
    assert_eq!(r.json(), serde_json::json!({"evicted": 1, "freed": false}));
    held.signal(libc::SIGKILL);
    held.wait();
    assert_eq!(env.ok(&["reclaim", "seg"]).stdout, "1\n");
    let report = env.inspect("seg");
    let p = peer(&report, 1);
    assert_eq!(p["state"], "empty");
    assert_eq!(p["host_slots_held"], 0, "{p}");
    assert_eq!(pool(&report, "host")["used"], 0);
}

#[test]
fn what_cannot_be_evicted_is_refused_and_nothing_changes() {
    let env = Env::new();
    env.small("seg", &[]);
    let before = std::fs::read(env.path("seg")).unwrap();
    env.run(&["evict", "seg", "--peer-id", "1"])
        .error_line(&["seg", "peer 1 is empty"]);
    env.run(&["evict", "seg", "--peer-id", "200"])
        .error_line(&["seg", "out of range"]);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
    env.run(&["evict", "seg"]).usage();
    env.run(&["evict", "seg", "--peer-id", "0"]).usage();
    env.run(&["evict", "missing", "--peer-id", "1"])
        .error_line(&["missing"]);
}

// `ls` counts a quarantined entry as such, whatever its holder.
#[test]
fn ls_counts_quarantined_entries() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(held.line(), "1");
    held.freeze();
    env.ok(&["evict", "seg", "--peer-id", "1"]);
    let listed = env.ok(&["ls", "--json"]).json();
    assert_eq!(
        listed["segments"][0]["guests"]["quarantined"], 1,
        "{listed}"
    );
    let table = env.ok(&["ls"]).stdout;
    assert!(table.contains("1 quarantined"), "{table}");
    held.thaw();
    held.wait();
}
