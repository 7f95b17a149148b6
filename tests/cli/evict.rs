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
