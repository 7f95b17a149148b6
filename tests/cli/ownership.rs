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
