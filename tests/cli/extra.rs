//! `reclaim`, `demo`, `completions`, help/version, and process-level
//! behaviour shared by every command.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;

use serde_json::json;

use crate::common::*;

#[test]
fn reclaim_prints_the_ids_of_dead_guests() {
    let env = Env::new();
    env.small("seg", &[]);
    // Guest 1: scripted (never reclaimed); guest 2: held and alive;
    // guest 3: held, then killed with SIGKILL (no cleanup).
    env.attach("seg");
    let mut alive = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(alive.line(), "2");
    let mut doomed = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(doomed.line(), "3");
    env.send_as_host("seg", "3", &slot_msg("read"));
    assert_eq!(doomed.line(), slot_msg("read"));
    doomed.signal(libc::SIGSTOP);
    env.send_as_host("seg", "3", &slot_msg("never read"));
    doomed.signal(libc::SIGKILL);
    doomed.wait();
    assert_eq!(peer(&env.inspect("seg"), 3)["holder"], "dead");

    let r = env.ok(&["reclaim", "seg"]);
    assert_eq!(r.stdout, "3\n");
    let report = env.inspect("seg");
    assert_eq!(peer(&report, 3)["state"], "empty");
    assert_eq!(ring_len(&report, 3, "to_guest"), 0, "its rings are reset");
    assert_eq!(pool(&report, "host")["used"], 0, "slots it held are freed");
    assert_eq!(
        peer(&report, 1)["state"],
        "attached",
        "scripted claims are never reclaimed"
    );
    assert_eq!(
        peer(&report, 2)["state"],
        "attached",
        "live guests are never reclaimed"
    );
    // Nothing more to reclaim; what is left alone is said, and why.
    assert_eq!(env.ok(&["reclaim", "seg"]).stdout, "");
    let v = env.ok(&["reclaim", "seg", "--json"]).json();
    assert_eq!(v["reclaimed"], json!([]), "{v}");
    let skipped: Vec<_> = v["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| (s["peer"].clone(), s["code"].clone()))
        .collect();
    assert_eq!(
        skipped,
        [(json!(1), json!("scripted")), (json!(2), json!("alive"))],
        "{v}"
    );
    // --json lists them.
    assert_eq!(env.attach_then_kill("seg").0, 3);
    assert_eq!(
        env.ok(&["reclaim", "seg", "--json"]).json()["reclaimed"],
        json!([3])
    );
    // The entry can be claimed again.
    assert_eq!(env.attach("seg"), 3);
    alive.signal(libc::SIGINT);
    alive.wait_ok();
}

#[test]
fn reclaim_says_why_it_leaves_a_stopped_stale_guest_alone() {
    let env = Env::new();
    env.small("seg", &["--heartbeat-ms", "200"]);
    env.attach("seg");
    let mut stopped = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(stopped.line(), "2");
    let holder_becomes = |status: &str| {
        let holder = || peer(&env.inspect("seg"), 2)["holder"].clone();
        wait_until(std::time::Duration::from_secs(5), || holder() == status)
    };
    stopped.signal(libc::SIGSTOP);
    // Stale once its heartbeat is three intervals (at least a second) old.
    assert!(holder_becomes("stale"), "{}", env.inspect("seg"));
    let before = std::fs::read(env.path("seg")).unwrap();

    let v = env.ok(&["reclaim", "seg", "--json"]).json();
    assert_eq!(
        v,
        json!({
            "reclaimed": [],
            "skipped": [
                {"peer": 1, "holder": "scripted", "code": "scripted",
                 "reason": "scripted; belongs to no process, freed only when released"},
                {"peer": 2, "holder": "stale", "code": "stale_holds_roles",
                 "reason": "stale but alive; holds its role locks"},
            ]
        })
    );
    // In text, stdout stays the reclaimed ids (none); stderr says why.
    let r = env.ok(&["reclaim", "seg"]);
    assert_eq!(r.stdout, "");
    for needle in [
        "skipped peer 1: scripted",
        "skipped peer 2: stale but alive; holds its role locks",
        "`shmhub detach seg --peer-id 1`",
    ] {
        assert!(
            r.stderr.contains(needle),
            "stderr lacks {needle:?}: {:?}",
            r.stderr
        );
    }
    assert_eq!(
        std::fs::read(env.path("seg")).unwrap(),
        before,
        "nothing was reclaimed"
    );

    // Resumed, the guest beats again and still holds its entry.
    stopped.signal(libc::SIGCONT);
    assert!(holder_becomes("alive"), "{}", env.inspect("seg"));
    let msg = "still yours";
    env.send_as_host("seg", "2", msg);
    assert_eq!(stopped.line(), msg);
    stopped.signal(libc::SIGTERM);
    stopped.wait_ok();
}

#[test]
fn detach_refuses_an_entry_a_live_process_holds() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    env.run(&["detach", "seg", "--peer-id", "1"])
        .error(&[&env.path("seg").display().to_string()]);
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "attached");
    // And the holder still works.
    env.send_as_host("seg", "1", "ok");
    assert_eq!(guest.line(), "ok");
    guest.signal(libc::SIGINT);
    guest.wait_ok();
}

#[test]
fn reclaim_errors() {
    let env = Env::new();
    env.run(&["reclaim", "missing"])
        .error(&[&env.path("missing").display().to_string()]);
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        env.run(&["reclaim", name])
            .error(&[&env.path(name).display().to_string()]);
        assert_eq!(std::fs::read(env.path(name)).unwrap(), before);
    }
    env.run(&["reclaim"]).usage();
}

#[test]
fn demo_runs_end_to_end_and_leaves_nothing_behind() {
    let env = Env::new();
    let r = env.ok(&["demo"]);
    assert!(r.stdout.contains("removed"), "{}", r.stdout);
    assert!(env.listing().is_empty(), "demo left {:?}", env.listing());
}

// `demo --json`: what each step did, as one document (issue 32, item 19).
#[test]
fn demo_json_says_what_each_step_did() {
    let env = Env::new();
    let r = env.ok(&["demo", "--json", "--segment", "d"]);
    let v = r.json();
    assert_eq!(v["path"], env.path("d").display().to_string());
    assert!(v["total_size"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["guest"]["peer_id"], 1);
    let trips = v["round_trips"].as_array().unwrap();
    assert_eq!(trips.len(), 2, "{v}");
    assert_eq!(trips[0]["placement"], "inline");
    assert_eq!(trips[1]["placement"], "slot");
    assert!(
        trips
            .iter()
            .all(|t| t["intact"] == true && t["round_trip_ns"].as_u64().is_some())
    );
    assert_eq!(v["inspect"]["peers"][0]["state"], "attached");
    assert_eq!(v["guest_exit_code"], 0);
    assert_eq!(v["removed"], true);
    assert!(env.listing().is_empty(), "demo left {:?}", env.listing());
}

#[test]
fn demo_with_a_named_segment_removes_it_too() {
    let env = Env::new();
    std::fs::write(env.path("unrelated"), b"keep me").unwrap();
    env.ok(&["demo", "--segment", "mydemo"]);
    assert_eq!(env.listing(), ["unrelated"]);
    assert_eq!(std::fs::read(env.path("unrelated")).unwrap(), b"keep me");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = env.ok(&["completions", shell]);
        assert!(r.stdout.contains("shmhub"), "{shell}");
        for sub in [
            "create", "attach", "send", "recv", "inspect", "rm", "detach", "reclaim",
        ] {
            assert!(r.stdout.contains(sub), "{shell} completions lack {sub}");
        }
    }
    // The bash script is valid bash.
    let script = env.ok(&["completions", "bash"]).stdout;
    let file = env.dir().join("c.bash");
    std::fs::write(&file, script).unwrap();
    let st = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status();
    if let Ok(st) = st {
        assert!(st.success(), "bash -n rejected the completion script");
    }
    env.run(&["completions", "tcsh"]).usage();
    env.run(&["completions"]).usage();
}

// Completion offers what `--help` lists, never the hidden, internal
// command (issue 32, item 8); `guest-echo`, documented since (item 12),
// is offered like any other.
#[test]
fn completions_leave_out_the_hidden_commands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.ok(&["completions", shell]).stdout;
        for hidden in ["bench-peer", "bench__subcmd__peer"] {
            assert!(
                !script.contains(hidden),
                "{shell} completions offer {hidden}"
            );
        }
        for listed in ["spawn", "guest-echo"] {
            assert!(script.contains(listed), "{shell} completions lack {listed}");
        }
    }
    // What bash offers after `shmhub `, as a user pressing Tab sees it.
    if std::process::Command::new("bash")
        .arg("-c")
        .arg("true")
        .status()
        .is_err()
    {
        eprintln!("skipped the bash run: no bash");
        return;
    }
    std::fs::write(
        env.dir().join("c.bash"),
        env.ok(&["completions", "bash"]).stdout,
    )
    .unwrap();
    std::fs::write(
        env.dir().join("tab.bash"),
        "source ./c.bash\n\
         COMP_WORDS=(shmhub '')\n\
         COMP_CWORD=1\n\
         _shmhub shmhub '' shmhub\n\
         printf '%s\\n' \"${COMPREPLY[@]}\"\n",
    )
    .unwrap();
    let r = env.shell("bash ./tab.bash");
    r.code(0);
    let offered: Vec<&str> = r.stdout.lines().collect();
    assert!(offered.contains(&"create"), "{offered:?}");
    assert!(offered.contains(&"guest-echo"), "{offered:?}");
    assert!(
        !offered.contains(&"bench-peer"),
        "bash offers bench-peer: {offered:?}"
    );
}

#[test]
fn help_version_and_usage() {
    let env = Env::new();
    let r = env.ok(&["--help"]);
    for sub in [
        "create",
        "attach",
        "send",
        "recv",
        "inspect",
        "rm",
        "Exit codes",
    ] {
        assert!(r.stdout.contains(sub), "--help lacks {sub}");
    }
    for sub in [
        "create",
        "attach",
        "send",
        "recv",
        "inspect",
        "rm",
        "detach",
        "reclaim",
        "demo",
        "completions",
    ] {
        let r = env.ok(&[sub, "--help"]);
        assert!(r.stdout.contains("Usage"), "{sub} --help");
    }
    assert!(env.ok(&["--version"]).stdout.starts_with("shmhub "));
    env.run(&[]).code(2);
    env.run(&["frobnicate"]).usage();
}

/// Runs `args` with stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(env: &Env, args: &[&str]) -> std::process::Output {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fds that we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both fds are fresh and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .env("SHMHUB_SHM_DIR", env.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + CMD_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let env = Env::new();
    env.small("seg", &[]);
    for args in [
        &["inspect", "seg"][..],
        &["inspect", "seg", "--json"],
        &["completions", "bash"],
        &["create", "other"],
    ] {
        let out = run_into_closed_pipe(&env, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
}

#[test]
fn error_lines_do_not_repeat_the_cause() {
    let env = Env::new();
    env.small("seg", &[]);
    for args in [
        &["create", "seg"][..],
        &["rm", "missing"],
        &["create", "dir/x"],
    ] {
        let r = env.run(args);
        r.code(1);
        let line = r.stderr.trim_end();
        let cause = line.rsplit(": ").next().unwrap();
        assert_eq!(line.matches(cause).count(), 1, "{args:?}: {line:?}");
    }
}
