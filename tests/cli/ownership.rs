//! A segment another user owns is refused by every command that would
//! trust it, unless told otherwise; the commands that only look show the
//! owner instead.

use crate::common::*;

/// Makes `name` belong to `nobody`, as a squatter's file would.
fn give_to_nobody(env: &Env, name: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: changing a file's owner needs root");
        return false;
    }
    let path = std::ffi::CString::new(env.path(name).to_str().unwrap()).unwrap();
    // SAFETY: chown reads the NUL-terminated path we own for the call.
    assert_eq!(unsafe { libc::chown(path.as_ptr(), 65534, u32::MAX) }, 0);
    true
}

// shm[verify shm.file.owner]
#[test]
fn a_segment_another_user_owns_is_refused_unless_allowed() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = env.attach("seg").to_string();
    if !give_to_nobody(&env, "seg") {
        return;
    }
    let before = std::fs::read(env.path("seg")).unwrap();
    let seg = env.path("seg").display().to_string();
    for args in [
        vec!["attach", "seg"],
        vec!["send", "seg", "--as", &id, "hello"],
        vec!["recv", "seg", "--as", "host", "--timeout", "0"],
        vec!["detach", "seg", "--peer-id", &id],
        vec!["reclaim", "seg"],
        vec!["rm", "seg"],
        vec!["spawn", "seg", "--", "true"],
    ] {
        env.run(&args).error(&[
            &seg,
            "owned by another user",
            "owner nobody",
            "mode 0600",
            "--allow-foreign-owner",
        ]);
    }
    assert_eq!(
        std::fs::read(env.path("seg")).unwrap(),
        before,
        "a refusal changed it"
    );
    // gc never removes another user's segment either.
    env.ok(&["gc"]);
    assert!(env.path("seg").exists());
    // Looking is fine, and shows whose it is.
    let report = env.inspect("seg");
    assert_eq!(report["owner"]["uid"], 65534);
    assert_eq!(report["owner"]["mode"], 0o600);
    let ls = env.ok(&["ls"]);
    assert!(ls.stdout.contains("nobody:"), "{}", ls.stdout);
    // Someone who really means it.
    let other = env.ok(&["attach", "seg", "--allow-foreign-owner"]).stdout;
    env.ok(&[
        "send",
        "seg",
        "--as",
        other.trim(),
        "--allow-foreign-owner",
        "hi",
    ]);
    env.ok(&["rm", "seg", "--allow-foreign-owner"]);
    assert!(!env.path("seg").exists());
}

// One stalled guest never starves another: it holds at most its share of
// the host's slots, and the host's sends to the others go on.
// shm[verify shm.pool.share]
#[test]
fn a_stalled_guest_holds_its_share_of_the_host_slots_and_no_more() {
    let env = Env::new();
    env.ok(&[
        "create",
        "seg",
        "--slots",
        "8",
        "--slot-size",
        "4KiB",
        "--max-guests",
        "2",
    ]);
    let stalled = env.attach("seg").to_string();
    let mut busy = env.spawn(&["attach", "seg", "--hold"]);
    let busy_id = busy.line();
    let seg = env.path("seg").display().to_string();
    let r = env.run(&[
        "send",
        "seg",
        "--as",
        "host",
        "--to",
        &stalled,
        "--count",
        "10",
        "--timeout",
        "300ms",
        &slot_msg("for the stalled one"),
    ]);
    r.code(3).error_line(&[
        &seg,
        &format!("peer {stalled} holds its share of the host's slots (4)"),
        "sent 4 of 10",
    ]);
    env.ok(&[
        "send",
        "seg",
        "--as",
        "host",
        "--to",
        &busy_id,
        "--count",
        "500",
        &slot_msg("for the busy one"),
    ]);
    for _ in 0..500 {
        assert!(busy.line().starts_with("for the busy one"));
    }
    let report = env.inspect("seg");
    assert_eq!(report["host_slot_share"], 4);
    assert_eq!(
        peer(&report, stalled.parse().unwrap())["host_slots_held"],
        4
    );
    assert_eq!(
        peer(&report, busy_id.parse().unwrap())["host_slots_held"],
        0
    );
    let table = env.ok(&["inspect", "seg"]).stdout;
    assert!(
        table.contains("4/4") && table.contains("(the fair share)"),
        "{table}"
    );
    // A fixed share, and values it cannot take.
    env.ok(&[
        "create",
        "fixed",
        "--slots",
        "8",
        "--host-slots-per-guest",
        "2",
    ]);
    assert_eq!(env.inspect("fixed")["header"]["host_slots_per_guest"], 2);
    for bad in ["0", "9"] {
        env.run(&[
            "create",
            "other",
            "--slots",
            "8",
            "--host-slots-per-guest",
            bad,
        ])
        .usage();
    }
    busy.signal(libc::SIGTERM);
    busy.wait_ok();
}
