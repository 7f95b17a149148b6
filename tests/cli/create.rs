//! `shmhub create`: flags, output, refusals, --force.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn bare_name_resolves_in_shm_dir_and_text_output_says_what_was_made() {
    let env = Env::new();
    let r = env.ok(&[
        "create",
        "seg",
        "--max-guests",
        "3",
        "--ring-size",
        "16",
        "--slot-size",
        "4KiB",
        "--slots",
        "5",
    ]);
    let path = env.path("seg");
    assert!(path.is_file());
    assert_eq!(env.listing(), ["seg"]);
    let out = r.stdout.trim();
    assert_eq!(r.stdout.lines().count(), 1, "{:?}", r.stdout);
    assert!(out.contains(&path.display().to_string()), "{out}");
    for needle in ["3 guests", "rings of 16", "5 slots", "4.0 KiB", "mode 0600"] {
        assert!(out.contains(needle), "{out:?} lacks {needle:?}");
    }
    // Total size is printed (human form); check against the JSON report.
    let total = env.inspect("seg")["header"]["total_size"].as_u64().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), total);
    assert!(r.stderr.is_empty(), "{:?}", r.stderr);
    // Without --hold the segment stays, with no host and no guests.
    let report = env.inspect("seg");
    assert_eq!(report["header"]["host_goodbye"], false);
    assert!(
        report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "empty")
    );
}

#[test]
fn json_prints_path_total_size_mode_and_config() {
    let env = Env::new();
    let r = env.ok(&[
        "create",
        "seg",
        "--max-guests",
        "3",
        "--ring-size",
        "16",
        "--slot-size",
        "4KiB",
        "--slots",
        "5",
        "--max-payload",
        "1000",
        "--heartbeat-ms",
        "250",
        "--mode",
        "660",
        "--json",
    ]);
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "one JSON object expected: {:?}",
        r.stdout
    );
    let v = r.json();
    let path = env.path("seg");
    assert_eq!(v["path"], path.display().to_string());
    assert_eq!(v["mode"], "0660");
    let c = &v["config"];
    assert_eq!(c["max_guests"], 3);
    assert_eq!(c["ring_capacity"], 16);
    assert_eq!(c["slot_size"], 4096);
    assert_eq!(c["slots_per_pool"], 5);
    assert_eq!(c["max_payload"], 1000);
    assert_eq!(c["heartbeat_interval_ms"], 250);
    let total = v["total_size"].as_u64().expect("total_size");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), total);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // inspect agrees with what create reported.
    let h = &env.inspect("seg")["header"];
    assert_eq!(h["total_size"], total);
    for (field, value) in [
        ("max_guests", 3),
        ("ring_capacity", 16),
        ("slot_size", 4096),
        ("slots_per_pool", 5),
        ("max_payload", 1000),
        ("heartbeat_interval_ms", 250),
    ] {
        assert_eq!(h[field], value, "header.{field}");
    }
}

#[test]
fn default_mode_is_0600_and_660_is_exact_whatever_the_umask() {
    let env = Env::new();
    let v = env
        .ok(&["create", "a", "--max-guests", "1", "--slots", "1", "--json"])
        .json();
    assert_eq!(v["mode"], "0600");
    assert_eq!(
        std::fs::metadata(env.path("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    env.ok(&[
        "create",
        "b",
        "--max-guests",
        "1",
        "--slots",
        "1",
        "--mode",
        "600",
    ]);
    assert_eq!(
        std::fs::metadata(env.path("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A restrictive umask must not strip the group bits asked for; a
    // permissive one must not add any.
    for (umask, mode, want) in [
        ("077", "660", 0o660),
        ("000", "600", 0o600),
        ("000", "660", 0o660),
    ] {
        let name = format!("u{umask}-{mode}");
        let script = format!(
            "umask {umask}; exec \"$0\" create {name} --max-guests 1 --slots 1 --mode {mode}"
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script, BIN])
            .env("SHMHUB_SHM_DIR", env.dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let got = std::fs::metadata(env.path(&name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, want, "umask {umask} --mode {mode}: got {got:o}");
    }
}

#[test]
fn sizes_take_plain_numbers_kib_and_mib() {
    let env = Env::new();
    for (arg, want) in [
        ("4096", 4096u64),
        ("4KiB", 4096),
        ("8KiB", 8192),
        ("1MiB", 1 << 20),
    ] {
        let name = format!("s{arg}");
        let v = env
            .ok(&[
                "create",
                &name,
                "--max-guests",
                "1",
                "--slots",
                "1",
                "--slot-size",
                arg,
                "--max-payload",
                arg,
                "--json",
            ])
            .json();
        assert_eq!(v["config"]["slot_size"], want, "--slot-size {arg}");
        assert_eq!(v["config"]["max_payload"], want, "--max-payload {arg}");
    }
    // max payload defaults to the slot size.
    let v = env
        .ok(&[
            "create",
            "d",
            "--max-guests",
            "1",
            "--slots",
            "1",
            "--slot-size",
            "8KiB",
            "--json",
        ])
        .json();
    assert_eq!(v["config"]["max_payload"], 8192);
}

#[test]
fn a_path_argument_is_used_as_given() {
    let env = Env::new();
    let sub = env.dir().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // Absolute path.
    let abs = sub.join("abs.shm");
    env.ok(&[
        "create",
        abs.to_str().unwrap(),
        "--max-guests",
        "1",
        "--slots",
        "1",
    ]);
    assert!(abs.is_file());
    // Relative path with a '/', resolved against the working directory,
    // not SHMHUB_SHM_DIR.
    let shm_dir = tempfile::tempdir().unwrap();
    let r = env
        .cmd()
        .env("SHMHUB_SHM_DIR", shm_dir.path())
        .current_dir(&sub)
        .args(["create", "./rel.shm", "--max-guests", "1", "--slots", "1"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    assert!(sub.join("rel.shm").is_file());
    assert!(listing(shm_dir.path()).is_empty());
    // The other commands take paths too.
    let p = abs.to_str().unwrap();
    assert_eq!(env.ok(&["attach", p]).stdout, "1\n");
    env.ok(&["inspect", p]);
    env.ok(&["rm", p]);
    assert!(!abs.exists());
}

#[test]
fn bare_names_cannot_escape_the_shm_dir() {
    let env = Env::new();
    let inner = env.dir().join("shm");
    std::fs::create_dir(&inner).unwrap();
    let before = listing(env.dir());
    for name in [".", ".."] {
        for cmd in [
            &["create", name][..],
            &["create", name, "--force"],
            &["attach", name],
            &["inspect", name],
            &["rm", name, "--force"],
        ] {
            let r = env
                .cmd()
                .env("SHMHUB_SHM_DIR", &inner)
                .args(cmd)
                .output()
                .unwrap();
            // A name that cannot be one is a bad value: a usage error
            // (issue 32, item 12), one line and the usage footer.
            assert_eq!(r.status.code(), Some(2), "{cmd:?}: {r:?}");
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(
                err.starts_with("error: invalid segment name ")
                    && err.lines().count() == 2
                    && err.ends_with("\nFor more information, try '--help'.\n"),
                "{cmd:?}: {err:?}"
            );
            assert!(r.stdout.is_empty(), "{cmd:?}: {r:?}");
            assert!(
                err.contains(&format!("\"{name}\"")),
                "{cmd:?}: error does not name {name:?}: {err:?}"
            );
        }
    }
    assert!(listing(&inner).is_empty());
    assert_eq!(listing(env.dir()), before);
    // The empty name is refused too, as a usage error.
    for cmd in [
        &["create", ""][..],
        &["inspect", ""],
        &["demo", "--segment", ".."],
    ] {
        let r = env.run(cmd);
        r.usage();
        assert!(r.stderr.contains("invalid segment name"), "{r:?}");
    }
}

#[test]
fn an_existing_segment_is_refused_and_left_untouched() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    env.ok(&["send", "seg", "--as", "1", "queued"]);
    let before = std::fs::read(env.path("seg")).unwrap();
    let path = env.path("seg").display().to_string();
    env.run(&["create", "seg"]).error(&[&path, "exists"]);
    env.run(&["create", "seg", "--max-guests", "2", "--hold"])
        .error(&[&path, "exists"]);
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
}

#[test]
fn an_existing_plain_file_is_refused_and_left_untouched() {
    let env = Env::new();
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        let path = env.path(name).display().to_string();
        env.run(&["create", name]).error(&[&path, "exists"]);
        assert_eq!(std::fs::read(env.path(name)).unwrap(), before, "{name}");
    }
}

#[test]
fn force_replaces_an_existing_segment() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "2"]);
    env.attach("seg");
    env.send_as_host("seg", "1", &slot_msg("stale"));
    let v = env
        .ok(&[
            "create",
            "seg",
            "--force",
            "--max-guests",
            "3",
            "--slot-size",
            "4KiB",
            "--slots",
            "2",
            "--json",
        ])
        .json();
    assert_eq!(v["config"]["max_guests"], 3);
    let report = env.inspect("seg");
    assert_eq!(report["header"]["max_guests"], 3);
    assert_eq!(report["header"]["slots_per_pool"], 2);
    assert_eq!(report["peers"].as_array().unwrap().len(), 3);
    assert!(
        report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "empty" && p["to_guest"]["len"] == 0)
    );
    assert_eq!(pools_used(&report), 0);
    // The old message is gone.
    assert_eq!(env.attach("seg"), 1);
    env.run(&["recv", "seg", "--as", "1", "--timeout", "0"])
        .code(3);
}

#[test]
fn force_on_a_missing_file_just_creates() {
    let env = Env::new();
    env.ok(&[
        "create",
        "seg",
        "--force",
        "--max-guests",
        "1",
        "--slots",
        "1",
    ]);
    assert!(env.path("seg").is_file());
}

#[test]
fn without_force_a_damaged_segment_is_refused_with_force_replaced() {
    let env = Env::new();
    env.small("cut", &[]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("cut"))
        .unwrap()
        .set_len(4096)
        .unwrap();
    let before = std::fs::read(env.path("cut")).unwrap();
    env.run(&["create", "cut"])
        .error(&[&env.path("cut").display().to_string()]);
    assert_eq!(std::fs::read(env.path("cut")).unwrap(), before);
    // It has a segment's header (magic), only damaged: --force replaces it.
    env.ok(&[
        "create",
        "cut",
        "--force",
        "--max-guests",
        "1",
        "--slots",
        "1",
    ]);
    assert_eq!(env.inspect("cut")["header"]["max_guests"], 1);
}

#[test]
fn force_never_replaces_a_file_that_is_not_a_segment() {
    let env = Env::new();
    for name in non_segments(env.dir()) {
        let before = std::fs::read(env.path(name)).unwrap();
        let path = env.path(name).display().to_string();
        env.run(&["create", name, "--force"]).error(&[&path]);
        assert_eq!(
            std::fs::read(env.path(name)).unwrap(),
            before,
            "{name} was changed"
        );
    }
    // A directory is neither replaced nor entered.
    std::fs::create_dir(env.path("dir")).unwrap();
    std::fs::write(env.path("dir").join("keep"), b"x").unwrap();
    env.run(&["create", "dir", "--force"])
        .error(&[&env.path("dir").display().to_string()]);
    assert_eq!(listing(&env.path("dir")), ["keep"]);
}

#[test]
fn force_refuses_a_symlink_and_leaves_link_and_target_alone() {
    let env = Env::new();
    env.small("target", &[]);
    let before = std::fs::read(env.path("target")).unwrap();
    std::os::unix::fs::symlink(env.path("target"), env.path("link")).unwrap();
    for args in [&["create", "link", "--force"][..], &["create", "link"]] {
        env.run(args)
            .error(&[&env.path("link").display().to_string()]);
        assert!(
            std::fs::symlink_metadata(env.path("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(env.path("target")).unwrap(), before);
    }
    // A dangling symlink is not followed to create its target either.
    std::os::unix::fs::symlink(env.path("nowhere"), env.path("dangling")).unwrap();
    env.run(&["create", "dangling"]).code(1);
    env.run(&["create", "dangling", "--force"]).code(1);
    assert!(!env.path("nowhere").exists());
}

#[test]
fn invalid_config_is_a_usage_error_naming_the_flag_and_creates_nothing() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--ring-size", "100"], "--ring-size 100"),
        (&["--ring-size", "1"], "--ring-size 1"),
        (&["--ring-size", "131072"], "--ring-size 131072"),
        (&["--max-guests", "0"], "--max-guests 0"),
        (&["--max-guests", "256"], "--max-guests 256"),
        (&["--slot-size", "100"], "--slot-size 100"),
        (&["--slot-size", "0"], "--slot-size 0"),
        (&["--slots", "0"], "--slots 0"),
        (
            &["--slot-size", "4KiB", "--max-payload", "8KiB"],
            "--max-payload 8.0 KiB",
        ),
        (&["--max-payload", "0"], "--max-payload 0"),
    ];
    for (flags, flag) in cases {
        let mut args = vec!["create", "bad"];
        args.extend_from_slice(flags);
        let r = env.run(&args);
        r.usage();
        assert!(
            r.stderr.starts_with(&format!("error: {flag}: ")),
            "{flags:?}: error {:?} does not name the flag as {flag:?}",
            r.stderr
        );
        assert!(
            env.listing().is_empty(),
            "{flags:?} left {:?}",
            env.listing()
        );
        // --hold and --force change nothing about that.
        args.push("--hold");
        args.push("--force");
        env.run(&args).usage();
        assert!(env.listing().is_empty());
    }
}

#[test]
fn invalid_config_with_force_leaves_the_existing_segment() {
    let env = Env::new();
    env.small("seg", &[]);
    env.attach("seg");
    let before = std::fs::read(env.path("seg")).unwrap();
    env.run(&["create", "seg", "--force", "--ring-size", "100"])
        .usage();
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let env = Env::new();
    for args in [
        &["create"][..],
        &["create", "x", "--mode", "644"],
        &["create", "x", "--mode", "0600"],
        &["create", "x", "--slot-size", "4XB"],
        &["create", "x", "--slot-size", "KiB"],
        &["create", "x", "--slot-size", "8GiB"],
        &["create", "x", "--max-guests", "many"],
        &["create", "x", "--ring-size", "-1"],
        &["create", "x", "--heartbeat-ms", "soon"],
        &["create", "x", "--no-such-flag"],
        &["create", "x", "y"],
    ] {
        env.run(args).usage();
    }
    assert!(env.listing().is_empty());
}

// A segment whose magic is not written yet is one that another process is
// creating (two `create`s of one name at once), or, long after, one whose
// creation was interrupted: said so, never "not a shmhub segment"
// (issue 32, item 7).
#[test]
fn a_segment_without_its_magic_is_one_being_created() {
    use std::io::{Seek, Write};
    let env = Env::new();
    env.small("seg", &[]);
    let unpublished = || {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(env.path("seg"))
            .unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.write_all(&[0; 8]).unwrap();
        file
    };
    let file = unpublished();
    let before = std::fs::read(env.path("seg")).unwrap();
    let path = env.path("seg").display().to_string();
    for force in [false, true] {
        let mut args = vec!["create", "seg"];
        if force {
            args.push("--force");
        }
        let r = env.run(&args);
        r.error(&[
            &path,
            "already exists: a segment that another process is creating",
        ]);
        assert!(!r.stderr.contains("not a shmhub segment"), "{r:?}");
    }
    // An hour later it is no longer being created: it never will be.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    file.set_modified(hour_ago).unwrap();
    let r = env.run(&["create", "seg"]);
    r.error(&[
        &path,
        "already exists: a segment whose creation never finished",
    ]);
    assert!(!r.stderr.contains("not a shmhub segment"), "{r:?}");
    assert_eq!(std::fs::read(env.path("seg")).unwrap(), before);
}

// Concurrent `create`s of one name: one makes it, every other says it
// exists as what it is (a segment, or one being created), never that it
// is not a segment.
#[test]
fn concurrent_creates_of_one_name_say_what_exists() {
    let env = Env::new();
    for round in 0..5 {
        let r = env.shell(
            "for i in 1 2 3 4 5 6; do \
               (\"$SHMHUB\" create seg --max-guests 2 --ring-size 8 --slot-size 4KiB --slots 4 \
                  >out.$i 2>err.$i; echo $? >code.$i) & \
             done; wait",
        );
        r.code(0);
        let mut made = 0;
        for i in 1..=6 {
            let read =
                |what: &str| std::fs::read_to_string(env.path(&format!("{what}.{i}"))).unwrap();
            let (err, code) = (read("err"), read("code"));
            match code.trim() {
                "0" => made += 1,
                "1" => assert!(
                    err.contains("already exists: a segment ")
                        && !err.contains("not a shmhub segment"),
                    "round {round}: {err:?}"
                ),
                other => panic!("round {round}: create exited {other}: {err:?}"),
            }
        }
        assert_eq!(made, 1, "round {round}");
        env.ok(&["rm", "seg"]);
    }
}

// A file's mode is one thing in every JSON document: the octal string
// people read, `"0660"` (issue 32, item 10: `inspect` and `ls` gave 432).
#[test]
fn mode_is_the_same_octal_string_in_every_json_document() {
    let env = Env::new();
    let made = env
        .ok(&small_args("seg", &["--mode", "660", "--json"]))
        .json();
    assert_eq!(made["mode"], "0660");
    assert_eq!(env.inspect("seg")["owner"]["mode"], "0660");
    let listed = env.ok(&["ls", "--json"]).json();
    assert_eq!(listed["segments"][0]["owner"]["mode"], "0660", "{listed}");
    let mut watch = env.spawn(&["inspect", "seg", "--watch", "--json"]);
    let frame = watch.json_line();
    assert_eq!(frame["owner"]["mode"], "0660", "{frame}");
}

// One of a thing is said in the singular (issue 32, item 11: "1 guests").
#[test]
fn one_guest_and_one_slot_are_said_in_the_singular() {
    let env = Env::new();
    let r = env.ok(&small_args("seg", &["--max-guests", "1", "--slots", "1"]));
    assert!(
        r.stdout
            .contains(", 1 guest, rings of 8, 1 slot of 4.0 KiB per pool,"),
        "{}",
        r.stdout
    );
}

// A name that starts with `-` reads as an option: the error says to put it
// after `--`, also where it looks like one of the flags or like `-h`, which
// used to print help and exit 0 having created nothing (issue 32, item 19).
#[test]
fn names_starting_with_a_dash_are_told_to_go_after_double_dash() {
    let env = Env::new();
    for name in ["-x", "--x", "--weird", "-hub", "-Vx"] {
        let r = env.run(&["create", name]);
        r.usage();
        assert!(
            r.stderr.contains(&format!(
                "tip: to pass '{name}' as a value, use '-- {name}'"
            )),
            "{name}: {r:?}"
        );
    }
    let r = env.run(&["send", "seg", "--as", "1", "-hello"]);
    r.usage();
    assert!(r.stderr.contains("use '-- -hello'"), "{r:?}");
    assert!(env.listing().is_empty(), "{:?}", env.listing());
    // After `--`, it is a name like any other.
    env.ok(&["create", "--", "-hub"]);
    assert_eq!(env.listing(), ["-hub"]);
    // Help and version still work, and the command's own mistakes keep
    // clap's words.
    assert!(
        env.ok(&["create", "-h"])
            .stdout
            .contains("Usage: shmhub create")
    );
    env.ok(&["-V"]);
    let r = env.run(&["-x"]);
    r.usage();
    assert!(!r.stderr.contains("use '--"), "{r:?}");
}
