//! A segment another user owns is refused by every command that would
//! trust it, unless told otherwise; the commands that only look show the
//! owner instead.

use crate::common::*;

/// Makes `name` belong to `nobody`, as a squatter's file would.
fn give_to_nobody(env: &Env, name: &str) -> bool {
    give_to(env, name, 65534, u32::MAX)
}

/// Makes `name` belong to user `uid` and group `gid` (`u32::MAX`: the
/// group stays); false (the test skips the rest) when not root.
fn give_to(env: &Env, name: &str, uid: u32, gid: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: changing a file's owner needs root");
        return false;
    }
    let path = std::ffi::CString::new(env.path(name).to_str().unwrap()).unwrap();
    // SAFETY: chown reads the NUL-terminated path we own for the call.
    assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, gid) }, 0);
    true
}

/// What `ls` and `inspect` say owns `name`: the owner cell of its `ls`
/// row and the owner row of `inspect`'s header table, which must agree.
#[track_caller]
fn owner_shown(env: &Env, name: &str) -> String {
    let ls = env.ok(&["ls"]);
    let path = env.path(name).display().to_string();
    let row = tables(&ls.stdout)
        .iter()
        .flat_map(|t| cell_lines(t))
        .find(|cells| cells[0] == path)
        .unwrap_or_else(|| panic!("no row for {path} in\n{}", ls.stdout));
    let inspected = env.ok(&["inspect", name]);
    let header = cell_lines(&tables(&inspected.stdout)[0]);
    let owner = header
        .iter()
        .find(|cells| cells[0] == "owner")
        .unwrap_or_else(|| panic!("no owner row in\n{}", inspected.stdout));
    assert_eq!(owner[1], row[1], "ls and inspect disagree");
    row[1].clone()
}

/// What `getent DATABASE KEY` prints, if it finds an entry.
fn getent(database: &str, key: &str) -> Option<String> {
    let out = std::process::Command::new("getent")
        .args([database, key])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A user and a group of their own, known only to systemd-userdb through
/// drop-in records in /run/userdb (never /etc/passwd or /etc/group), as a
/// directory service's users are; removed on drop.
struct UserdbAccount {
    files: Vec<std::path::PathBuf>,
    made_dir: bool,
}

impl UserdbAccount {
    const DIR: &str = "/run/userdb";

    /// `name` with `id` as its uid and gid, if this machine's user
    /// database reads drop-in records (root, and NSS through systemd);
    /// else `None`, saying why.
    fn add(name: &str, id: u32) -> Option<UserdbAccount> {
        if getent("passwd", &id.to_string()).is_some() || getent("group", &id.to_string()).is_some()
        {
            eprintln!("skipped: id {id} is taken");
            return None;
        }
        let dir = std::path::Path::new(Self::DIR);
        let made_dir = !dir.exists();
        if std::fs::create_dir_all(dir).is_err() {
            eprintln!("skipped: cannot make {} (not root?)", Self::DIR);
            return None;
        }
        let mut account = UserdbAccount {
            files: Vec::new(),
            made_dir,
        };
        for (kind, record) in [
            (
                "user",
                format!(r#"{{"userName":"{name}","uid":{id},"gid":{id},"disposition":"regular"}}"#),
            ),
            ("group", format!(r#"{{"groupName":"{name}","gid":{id}}}"#)),
        ] {
            let file = dir.join(format!("{name}.{kind}"));
            // Looked up by id through a link named after it.
            let link = dir.join(format!("{id}.{kind}"));
            account.files.push(file.clone());
            std::fs::write(&file, record).ok()?;
            account.files.push(link.clone());
            std::os::unix::fs::symlink(format!("{name}.{kind}"), &link).ok()?;
        }
        let known = getent("passwd", &id.to_string()).is_some_and(|e| e.starts_with(name))
            && getent("group", &id.to_string()).is_some_and(|e| e.starts_with(name));
        if !known {
            eprintln!(
                "skipped: this machine's user database does not read {}",
                Self::DIR
            );
            return None;
        }
        Some(account)
    }
}

impl Drop for UserdbAccount {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        if self.made_dir {
            // Fails, harmlessly, if another test's records are there.
            let _ = std::fs::remove_dir(Self::DIR);
        }
    }
}

/// A user and a group of their own added with groupadd and useradd, where
/// this machine has them and the test runs as root: in /etc/passwd and
/// /etc/group then, but made for the test, so found through the user
/// database like any other; both deleted on drop, also when the test
/// fails.
struct AddedAccount {
    name: String,
    user: bool,
}

impl AddedAccount {
    /// `name` with `id` as its uid and gid; `None`, saying why, where
    /// the tools are missing, this is not root, or they fail.
    fn add(name: &str, id: u32) -> Option<AddedAccount> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: adding a user needs root");
            return None;
        }
        let run = |tool: &str, args: &[&str]| match std::process::Command::new(tool)
            .args(args)
            .output()
        {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                let said = String::from_utf8_lossy(&out.stderr);
                eprintln!("skipped: {tool} {args:?} failed: {}", said.trim());
                false
            }
            Err(e) => {
                eprintln!("skipped: {tool} cannot run: {e}");
                false
            }
        };
        let id = id.to_string();
        if !run("groupadd", &["--gid", &id, name]) {
            return None;
        }
        let mut account = AddedAccount {
            name: name.to_owned(),
            user: false,
        };
        // No home, no group of its own (it has the one above), and no
        // lastlog or faillog record, which for an id this large would be
        // a sparse file of hundreds of gigabytes.
        let user_args = [
            "--uid",
            &id,
            "--gid",
            &id,
            "--no-create-home",
            "--no-user-group",
            "--no-log-init",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ];
        account.user = run("useradd", &user_args);
        account.user.then_some(account)
    }
}

impl Drop for AddedAccount {
    fn drop(&mut self) {
        let quiet = |tool: &str| {
            let _ = std::process::Command::new(tool).arg(&self.name).output();
        };
        if self.user {
            quiet("userdel");
        }
        quiet("groupdel");
    }
}

/// A user and group known only to the test: a systemd-userdb record, or,
/// where the machine does not read those, an account added with useradd.
/// Held only to be dropped (which removes it), never read.
#[expect(dead_code, reason = "held for its Drop")]
enum TestAccount {
    Userdb(UserdbAccount),
    Added(AddedAccount),
}

#[test]
fn owners_are_named_as_the_user_database_names_them() {
    let env = Env::new();
    env.small("seg", &[]);
    let id = |flag: &str| {
        let out = std::process::Command::new("id").arg(flag).output().unwrap();
        assert!(out.status.success(), "id {flag}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(
        owner_shown(&env, "seg"),
        format!("{}:{} 0600", id("-un"), id("-gn"))
    );
    // An owner the database has no entry for is shown as its number.
    let unknown = 2_000_000_000 + std::process::id() % 1_000_000;
    if getent("passwd", &unknown.to_string()).is_some()
        || getent("group", &unknown.to_string()).is_some()
        || !give_to(&env, "seg", unknown, unknown)
    {
        return;
    }
    assert_eq!(
        owner_shown(&env, "seg"),
        format!("{unknown}:{unknown} 0600")
    );
}

// A user from a directory service (LDAP, SSSD, systemd-userdb) is named
// like one in /etc/passwd: this one exists only as a systemd-userdb
// record, where the machine reads them; elsewhere it is a user added for
// the test (useradd, as root), still looked up through the user database.
#[test]
fn an_owner_outside_etc_passwd_is_named() {
    let env = Env::new();
    env.small("seg", &[]);
    let pid = std::process::id();
    let id = 2_100_000_000 + pid % 1_000_000;
    let name = format!("shmhub-test-{pid}");
    let account = UserdbAccount::add(&name, id)
        .map(TestAccount::Userdb)
        .or_else(|| AddedAccount::add(&name, id).map(TestAccount::Added));
    let Some(_account) = account else {
        eprintln!("skipped: no user could be made for the test (reasons above)");
        return;
    };
    assert!(give_to(&env, "seg", id, id));
    assert_eq!(owner_shown(&env, "seg"), format!("{name}:{name} 0600"));
    // The refusal names the owner too.
    env.run(&["attach", "seg"])
        .error(&[&format!("owner {name}, group {name}")]);
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
    assert_eq!(report["owner"]["mode"], "0600");
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
