//! A peer entry whose state word holds no state (a guest's one 4-byte
//! write into its own entry, issue 30) hides only itself: `ls` lists the
//! segment and counts the entry as bad, `events` tells it once and follows
//! on, `rm` and `gc` judge it by its presence lock, `attach` and `spawn`
//! pass it over. (`inspect`, which exits 1 for it after printing the rest,
//! is tested in `inspect_views`.)

use std::path::Path;

use serde_json::json;

use crate::common::*;

/// What a hostile guest left in its state word in the measurement.
const GARBAGE: u32 = 509_305_860;

/// Writes `word` over the state word of entry `p` (the peer table starts
/// at byte 256, 64 bytes an entry), through the file: every mapping of it
/// sees the write, as it sees a guest's.
fn spoil(path: &Path, p: u64, word: u32) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&word.to_le_bytes(), 256 + 64 * (p - 1))
        .unwrap();
}

/// `attach SEGMENT --hold`, stopped (SIGSTOP) once it has claimed entry
/// `expected`: it holds the entry's presence lock and does nothing else,
/// whatever is written into its entry meanwhile.
fn stopped_guest(env: &Env, seg: &str, expected: &str) -> Held {
    let mut guest = env.spawn(&["attach", seg, "--hold"]);
    assert_eq!(guest.line(), expected);
    guest.freeze();
    guest
}

// `ls` lists a segment with a bad entry instead of dropping it, the entry
// counted apart, in the table and in JSON; nobody holds it, so the segment
// is orphaned as it would be without it.
#[test]
fn ls_lists_a_segment_with_a_bad_entry_and_counts_it() {
    let env = Env::new();
    let path = env.small("seg", &[]);
    assert_eq!(env.attach("seg"), 1);
    assert_eq!(env.attach("seg"), 2);
    spoil(&path, 2, GARBAGE);
    let listed = env.ok(&["ls", "--json"]).json();
    assert_eq!(listed["unlisted"], json!([]), "{listed}");
    let seg = &listed["segments"][0];
    assert_eq!(
        seg["guests"],
        json!({"live": 0, "dead": 0, "stale": 0, "scripted": 1, "reserved": 0, "goodbye": 0, "quarantined": 0, "bad": 1}),
        "{listed}"
    );
    assert_eq!(seg["orphaned"], true, "{listed}");
    let r = env.ok(&["ls"]);
    assert!(r.stdout.contains("1 scripted, 1 bad"), "{}", r.stdout);
    assert!(r.stderr.is_empty(), "nothing left unlisted: {}", r.stderr);
}

// A bad entry whose presence lock a live process holds keeps its segment
// in use: `ls` says it is not orphaned and `gc` leaves it; one nobody
// holds is no reason to keep a segment.
#[test]
fn gc_keeps_a_bad_entry_a_live_process_holds_and_removes_the_rest() {
    let env = Env::new();
    let held = env.small("held", &[]);
    let _guest = stopped_guest(&env, "held", "1");
    spoil(&held, 1, GARBAGE);
    let loose = env.small("loose", &[]);
    env.attach("loose");
    spoil(&loose, 1, GARBAGE);
    let listed = env.ok(&["ls", "--json"]).json();
    let orphaned: Vec<(String, serde_json::Value, serde_json::Value)> = listed["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["path"].as_str().unwrap().rsplit('/').next().unwrap();
            (
                name.to_string(),
                s["guests"]["bad"].clone(),
                s["orphaned"].clone(),
            )
        })
        .collect();
    assert_eq!(
        orphaned,
        [
            ("held".to_string(), json!(1), json!(false)),
            ("loose".to_string(), json!(1), json!(true)),
        ],
        "{listed}"
    );
    let r = env.ok(&["gc", "--json"]).json();
    let removed: Vec<&str> = r["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(removed, [loose.to_str().unwrap()], "{r}");
    assert!(held.exists() && !loose.exists());
}

// `rm` waits for a bad entry only while a process holds its presence
// lock: held, it refuses after its timeout naming the entry (and `--force`
// deletes the file, naming it abandoned); free, the file goes at once.
#[test]
fn rm_judges_a_bad_entry_by_its_presence_lock() {
    let env = Env::new();
    let loose = env.small("loose", &[]);
    env.attach("loose");
    spoil(&loose, 1, GARBAGE);
    env.ok(&["rm", "loose"]);
    assert!(!loose.exists());

    let held = env.small("held", &[]);
    let _guest = stopped_guest(&env, "held", "1");
    spoil(&held, 1, GARBAGE);
    env.run(&["rm", "held", "--timeout", "200ms"]).error(&[
        "held",
        "peer 1 is still attached",
        "--force",
    ]);
    assert!(held.exists(), "refused, the file stays");
    let r = env.ok(&["rm", "held", "--timeout", "200ms", "--force", "--json"]);
    assert_eq!(r.json()["abandoned"], json!([1]), "{r:?}");
    assert!(!held.exists());
}

// A held host asked to leave waits for a live guest whose entry went bad
// as it waits for any live guest: `rm` is refused and the host serves on;
// `--force` removes the file and the host leaves.
#[test]
fn a_held_host_waits_for_a_live_guest_whose_entry_is_bad() {
    let env = Env::new();
    let path = env.path("seg");
    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let _guest = stopped_guest(&env, "seg", "1");
    spoil(&path, 1, GARBAGE);
    env.run(&["rm", "seg", "--timeout", "300ms"]).error(&[
        "seg",
        "peer 1",
        "still attached",
        "--force",
    ]);
    assert!(path.is_file(), "refused, the file stays");
    assert!(host.exited().is_none(), "the held host serves on");
    env.ok(&["rm", "seg", "--timeout", "200ms", "--force"]);
    assert!(!path.exists());
    host.wait_ok();
}

// A plain `attach` passes over a bad entry to the next free one, and so
// does `spawn`'s reservation; `attach --peer-id` of the bad entry fails
// naming it and its word.
#[test]
fn attach_and_spawn_pass_over_a_bad_entry() {
    let env = Env::new();
    let path = env.small("seg", &[]);
    spoil(&path, 1, GARBAGE);
    assert_eq!(env.attach("seg"), 2);
    env.run(&["attach", "seg", "--peer-id", "1"])
        .error(&["seg", &format!("peer 1 has unknown state {GARBAGE}")]);
    let r = env.ok(&["spawn", "seg", "--", "true"]);
    assert!(
        r.stderr.contains("peer 3 reserved") && r.stderr.contains("entry 3 released"),
        "{}",
        r.stderr
    );
}

// A live `events` follower tells an entry going bad once, goes on
// following (a later attach is told, a second bad word is not), and tells
// the cut-off that follows once a host's reclaim meets the entry.
// shm[verify shm.peer.quarantine]
#[test]
fn events_tells_a_bad_state_word_once_and_follows_on() {
    let env = Env::new();
    let path = env.small("seg", &[]);
    let _guest = stopped_guest(&env, "seg", "1");
    let mut json = env.spawn(&["events", "seg", "--json", "--interval", "20ms"]);
    let mut text = env.spawn(&["events", "seg", "--interval", "20ms"]);
    // What happens once both say they watch is told by both.
    watching(&json, "seg");
    watching(&text, "seg");
    assert_eq!(env.attach("seg"), 2);
    let told = json.json_line();
    assert_eq!(
        (&told["event"], &told["peer"]),
        (&json!("attached"), &json!(2))
    );
    assert!(text.line().ends_with("peer 2 attached (scripted)"));

    spoil(&path, 1, GARBAGE);
    let told = json.json_line();
    assert_eq!(
        (&told["event"], &told["peer"], &told["raw_state"]),
        (&json!("bad_state"), &json!(1), &json!(GARBAGE)),
        "{told}"
    );
    let line = text.line();
    assert!(
        line.ends_with(&format!("peer 1 has a bad state word {GARBAGE}")),
        "{line}"
    );
    // Another bad word is the same bad entry: the next event is the attach
    // that comes after it (an entry's events come in peer order, so a
    // second report of entry 1 would come first).
    spoil(&path, 1, 77);
    assert_eq!(env.attach("seg"), 3);
    assert_eq!(json.json_line()["peer"], 3);
    assert!(text.line().ends_with("peer 3 attached (scripted)"));

    // The reclaim cuts the guest off; its process lives, so the entry stays.
    env.ok(&["reclaim", "seg"]);
    let told = json.json_line();
    assert_eq!(
        (&told["event"], &told["peer"], &told["reason"]),
        (&json!("quarantined"), &json!(1), &json!("entry")),
        "{told}"
    );
    let line = text.line();
    assert!(
        line.ends_with("peer 1 cut off for breaking the protocol (its entry's state)"),
        "{line}"
    );
    for follower in [&mut json, &mut text] {
        assert!(follower.exited().is_none(), "still following");
        follower.signal(libc::SIGTERM);
        follower.wait_ok();
    }
}
