//! A host that dies without saying goodbye: guests and `inspect` can tell,
//! and `create --force` and `rm` clean up after it.

use std::time::Duration;

use crate::common::Env;

fn killed_host(env: &Env, name: &str) {
    let mut host = env.spawn(&[
        "create",
        name,
        "--hold",
        "--max-guests",
        "2",
        "--slot-size",
        "4KiB",
    ]);
    assert!(host.line().starts_with("created "));
    host.signal(libc::SIGKILL);
    host.wait();
    assert!(
        env.path(name).exists(),
        "a killed host leaves its file behind"
    );
}

#[test]
fn inspect_and_a_held_guest_tell_that_the_host_died() {
    let env = Env::new();
    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    assert_eq!(env.inspect("seg")["host"], "alive");
    let host_pid = host.pid();
    host.signal(libc::SIGKILL);
    host.wait();
    assert_eq!(env.inspect("seg")["host"], "dead");
    // The held guest notices within its host check interval, tells a crash
    // from a goodbye (exit 1, naming the dead process), and still releases
    // its entry.
    assert_eq!(guest.wait().code(), Some(1));
    let stderr = guest.stderr();
    assert!(
        stderr.contains(&format!("host process {host_pid} died")) && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(env.inspect("seg")["peers"][0]["state"], "empty");
}

#[test]
fn rm_removes_a_segment_whose_host_died_without_waiting() {
    let env = Env::new();
    killed_host(&env, "seg");
    let started = std::time::Instant::now();
    env.ok(&["rm", "seg", "--timeout", "10s"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "rm waited for a dead host"
    );
    assert!(!env.path("seg").exists());
}

#[test]
fn create_force_replaces_a_segment_whose_host_died() {
    let env = Env::new();
    killed_host(&env, "seg");
    // A guest that was attached when the host died is gone too.
    env.ok(&["create", "seg", "--force", "--max-guests", "3"]);
    let report = env.inspect("seg");
    assert_eq!(report["header"]["max_guests"], 3);
    assert_eq!(report["host"], "no_process");
}

// Issue 32, item 17: after the host was killed, a guest's send went into
// the void and exited 0. It fails as a receive does: exit 1, naming the
// dead process, and nothing is queued.
#[test]
fn a_send_to_a_killed_host_fails_as_a_receive_does() {
    let env = Env::new();
    killed_host(&env, "seg");
    let id = env.attach("seg").to_string();
    let r = env.run(&["send", "seg", "--as", &id, "hi"]);
    r.code(1).error_line(&["died without saying goodbye"]);
    let report = env.inspect("seg");
    assert_eq!(report["peers"][0]["to_host"]["len"], 0, "{report}");
}

// Issue 32, item 17: a guest's receive that looks only once (`--timeout
// 0`) after the host was killed exited 3 silently, as if nothing had been
// sent yet, while a longer wait said the host died: both say it, exit 1.
#[test]
fn a_receive_without_waiting_from_a_killed_host_says_it_died() {
    let env = Env::new();
    killed_host(&env, "seg");
    let id = env.attach("seg").to_string();
    let waited = env.run(&["recv", "seg", "--as", &id, "--timeout", "1s"]);
    let looked = env.run(&["recv", "seg", "--as", &id, "--timeout", "0"]);
    for r in [&waited, &looked] {
        r.error(&["died without saying goodbye"]);
    }
    assert_eq!(waited.stderr, looked.stderr);
}
