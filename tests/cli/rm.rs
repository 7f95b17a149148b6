//! `shmhub rm` (rm against held hosts and guests is also in `held.rs`).

use std::time::Duration;

use crate::common::*;

#[test]
fn removes_a_segment() {
    let env = Env::new();
    env.small("a", &[]);
    env.small("b", &[]);
    let r = env.ok(&["rm", "a"]);
    assert!(r.stdout.is_empty() && r.stderr.is_empty(), "{r:?}");
    assert_eq!(env.listing(), ["b"]);
    let v = env.ok(&["rm", "b", "--json"]).json();
    assert_eq!(v["path"], env.path("b").display().to_string());
    assert!(env.listing().is_empty());
    // Gone means gone: a second rm is an error.
    env.run(&["rm", "b"])
        .error(&[&env.path("b").display().to_string()]);
}

#[test]
fn scripted_guests_and_queued_messages_do_not_block_removal() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    env.send_as_host("seg", "1", &slot_msg("left behind"));
    env.ok(&["send", "seg", "--as", "2", "left behind"]);
    let r = env.ok(&["rm", "seg", "--timeout", "2s"]);
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
    assert!(env.listing().is_empty());
}

#[test]
fn a_held_guest_leaves_on_goodbye_and_rm_deletes() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let v = env.ok(&["rm", "seg", "--timeout", "5s", "--json"]).json();
    assert_eq!(v["abandoned"], serde_json::json!([]));
    assert!(!env.path("seg").exists());
    guest.wait_ok();
}

#[test]
fn a_live_guest_that_stays_makes_rm_fail_unless_forced() {
    let env = Env::new();
    env.small("seg", &[]);
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    // A stopped process is alive but cannot leave.
    guest.signal(libc::SIGSTOP);
    let r = env.run(&["rm", "seg", "--timeout", "300ms"]);
    r.error(&[&env.path("seg").display().to_string(), "--force"]);
    assert!(
        r.elapsed >= Duration::from_millis(300),
        "gave up after {:?}",
        r.elapsed
    );
    assert!(env.path("seg").is_file(), "refused rm must keep the file");
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "attached");
    let v = env
        .ok(&["rm", "seg", "--timeout", "100ms", "--force", "--json"])
        .json();
    assert_eq!(v["abandoned"], serde_json::json!([1]));
    assert!(!env.path("seg").exists());
    guest.signal(libc::SIGCONT);
}

// One rule with or without a held host: rm deletes the segment once no
// live guest remains. A held host asked to leave waits for its live guests
// too, and serves on if rm gives up.
#[test]
fn a_live_guest_that_stays_makes_rm_fail_with_a_held_host_too() {
    let env = Env::new();
    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let mut stuck = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(stuck.line(), "1");
    stuck.signal(libc::SIGSTOP);
    let r = env.run(&["rm", "seg", "--timeout", "500ms"]);
    r.error(&[
        &env.path("seg").display().to_string(),
        "peer 1",
        "still attached",
        "--force",
    ]);
    assert!(env.path("seg").is_file(), "refused rm must keep the file");
    // The host took the refusal back and goes on serving.
    assert!(host.exited().is_none(), "the held host left");
    let report = env.inspect("seg");
    assert_eq!(report["host"], "alive");
    assert_eq!(report["header"]["host_goodbye"], false);
    let id = env.attach("seg");
    env.ok(&["send", "seg", "--as", &id.to_string(), "still served"]);
    assert_eq!(host.line(), "still served");
    // --force deletes it, and the host leaves quietly.
    env.ok(&["rm", "seg", "--timeout", "200ms", "--force"]);
    assert!(!env.path("seg").exists());
    host.wait_ok();
    assert!(
        host.stderr().contains("removed by rm --force"),
        "{}",
        host.stderr()
    );
    stuck.signal(libc::SIGCONT);
}

#[test]
fn a_file_that_is_not_a_segment_is_never_deleted() {
    let env = Env::new();
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        for args in [
            &["rm", name][..],
            &["rm", name, "--force"],
            &["rm", name, "--force", "--json"],
        ] {
            let r = env.run(args);
            r.error(&[
                &env.path(name).display().to_string(),
                "never deletes a file that is not a segment",
                "rm(1)",
            ]);
            assert!(r.stdout.is_empty(), "{args:?}: {:?}", r.stdout);
            assert_eq!(
                std::fs::read(env.path(name)).unwrap(),
                before,
                "{args:?} changed it"
            );
        }
    }
    std::fs::create_dir(env.path("dir")).unwrap();
    std::fs::write(env.path("dir").join("keep"), b"x").unwrap();
    env.run(&["rm", "dir", "--force"])
        .error(&[&env.path("dir").display().to_string()]);
    assert_eq!(listing(&env.path("dir")), ["keep"]);
}

#[test]
fn a_damaged_segment_needs_force() {
    let env = Env::new();
    env.small("cut", &[]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("cut"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let before = std::fs::read(env.path("cut")).unwrap();
    env.run(&["rm", "cut"])
        .error(&[&env.path("cut").display().to_string()]);
    assert_eq!(std::fs::read(env.path("cut")).unwrap(), before);
    // A segment header (magic) on a truncated file: --force deletes it.
    env.ok(&["rm", "cut", "--force"]);
    assert!(env.listing().is_empty());
}

#[test]
fn a_missing_file_is_an_error() {
    let env = Env::new();
    env.run(&["rm", "nope"])
        .error(&[&env.path("nope").display().to_string()]);
    env.run(&["rm", "nope", "--force"])
        .error(&[&env.path("nope").display().to_string()]);
}

#[test]
fn a_symlink_is_refused_and_its_target_untouched() {
    let env = Env::new();
    env.small("target", &[]);
    env.attach("target");
    let before = std::fs::read(env.path("target")).unwrap();
    std::os::unix::fs::symlink(env.path("target"), env.path("link")).unwrap();
    for args in [&["rm", "link"][..], &["rm", "link", "--force"]] {
        env.run(args)
            .error(&[&env.path("link").display().to_string()]);
        assert!(
            std::fs::symlink_metadata(env.path("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read(env.path("target")).unwrap(),
            before,
            "{args:?} touched the target (goodbye flag?)"
        );
    }
    // The other commands do not follow it either.
    env.run(&["attach", "link"]).code(1);
    env.run(&["send", "link", "--as", "1", "x"]).code(1);
    assert_eq!(std::fs::read(env.path("target")).unwrap(), before);
}

#[test]
fn usage_errors() {
    let env = Env::new();
    env.small("seg", &[]);
    env.run(&["rm"]).usage();
    env.run(&["rm", "seg", "--timeout", "later"]).usage();
    env.run(&["rm", "seg", "--timeout", "-1s"]).usage();
    assert!(env.path("seg").is_file());
}
