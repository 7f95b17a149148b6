//! `shmhub inspect`: tables, JSON document, strictly read-only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;

use crate::common::*;

/// A segment with a scripted guest, messages queued both ways and slots in
/// use, so that there is something to see.
fn busy(env: &Env) {
    env.small("seg", &[]);
    env.attach("seg");
    env.attach("seg");
    env.ok(&["detach", "seg", "--peer-id", "2"]);
    env.send_as_host("seg", "1", "inline");
    env.send_as_host("seg", "1", &slot_msg("a"));
    env.ok(&["send", "seg", "--as", "1", &slot_msg("b"), "--count", "3"]);
}

#[test]
fn tables_show_header_peers_and_pools() {
    let env = Env::new();
    busy(&env);
    let r = env.ok(&["inspect", "seg"]);
    let out = &r.stdout;
    for needle in [
        &env.path("seg").display().to_string()[..],
        "max guests",
        "ring capacity",
        "slot size",
        "slots per pool",
        "max payload",
        "heartbeat",
        "total size",
        "state",
        "epoch",
        "holder",
        "to host",
        "to guest",
        "scripted",
        "3/8",
        "2/8",
        "pool",
        "used",
        "free",
    ] {
        assert!(
            out.contains(needle),
            "inspect output lacks {needle:?}:\n{out}"
        );
    }
    // Empty entries are hidden unless --all.
    let rows = |s: &str| {
        s.lines()
            .filter(|l| l.contains("│") && l.contains("empty"))
            .count()
    };
    assert_eq!(rows(out), 0, "{out}");
    assert!(out.contains("--all"), "{out}");
    let all = env.ok(&["inspect", "seg", "--all"]).stdout;
    assert_eq!(rows(&all), 3, "peers 2, 3, 4 are empty:\n{all}");
    for owner in ["peer 2", "peer 3", "peer 4"] {
        assert!(all.contains(owner), "--all lacks pool {owner}:\n{all}");
    }
    assert!(r.stderr.is_empty(), "{:?}", r.stderr);
}

// With hundreds of plugins the table shows the guests doing something:
// past 16 entries in use, the quiet ones are one line of ids (issue 25).
#[test]
fn many_quiet_guests_are_summed_up_in_one_line() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "40"]);
    for _ in 0..20 {
        env.attach("seg");
    }
    env.send_as_host("seg", "7", "to seven");
    env.ok(&["send", "seg", "--as", "12", "from twelve"]);
    let out = env.ok(&["inspect", "seg"]).stdout;
    let peer_rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('│') && l.contains("attached"))
        .collect();
    assert_eq!(peer_rows.len(), 2, "{out}");
    assert!(peer_rows[0].starts_with("│ 7 "), "{out}");
    assert!(peer_rows[1].starts_with("│ 12 "), "{out}");
    assert!(
        out.contains("(18 quiet guests hidden, peers 1-6, 8-11, 13-20: attached, alive or scripted, nothing queued, no host slot held; --all shows them)"),
        "{out}"
    );
    assert!(
        out.contains("(20 empty entries hidden; --all shows them)"),
        "{out}"
    );
    // --all lists them all; 16 in use or fewer are always listed.
    let all = env.ok(&["inspect", "seg", "--all"]).stdout;
    let rows = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with('│') && l.contains("attached"))
            .count()
    };
    assert_eq!(rows(&all), 20, "{all}");
    for p in 17..=20 {
        env.ok(&["detach", "seg", "--peer-id", &p.to_string()]);
    }
    let out = env.ok(&["inspect", "seg"]).stdout;
    assert_eq!(rows(&out), 16, "{out}");
    assert!(!out.contains("quiet"), "{out}");
}

#[test]
fn json_is_one_document_with_header_peers_pools_and_host() {
    let env = Env::new();
    busy(&env);
    let r = env.ok(&["inspect", "seg", "--json"]);
    let v = r.json();
    let h = &v["header"];
    for (field, want) in [
        ("max_guests", 4u64),
        ("ring_capacity", 8),
        ("slot_size", 4096),
        ("slots_per_pool", 4),
        ("max_payload", 4096),
        ("heartbeat_interval_ms", 0),
    ] {
        assert_eq!(h[field], want, "header.{field} in {h}");
    }
    assert_eq!(
        h["total_size"],
        std::fs::metadata(env.path("seg")).unwrap().len()
    );
    assert!(h["version"].is_u64(), "{h}");
    assert!(v.get("host").is_some(), "{v}");
    let peers = v["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 4, "--json always includes every entry");
    for (i, p) in peers.iter().enumerate() {
        assert_eq!(p["peer_id"], i as u64 + 1);
        for key in [
            "state",
            "epoch",
            "pid",
            "holder",
            "heartbeat_age_ms",
            "to_host",
            "to_guest",
        ] {
            assert!(p.get(key).is_some(), "peer lacks {key}: {p}");
        }
        for ring in ["to_host", "to_guest"] {
            assert_eq!(p[ring]["capacity"], 8, "{p}");
            assert!(p[ring]["len"].is_u64(), "{p}");
        }
    }
    let p1 = peer(&v, 1);
    assert_eq!(
        (
            p1["state"].as_str(),
            p1["holder"].as_str(),
            p1["epoch"].as_u64()
        ),
        (Some("attached"), Some("scripted"), Some(1))
    );
    assert_eq!(
        (
            p1["to_guest"]["len"].as_u64(),
            p1["to_host"]["len"].as_u64()
        ),
        (Some(2), Some(3))
    );
    let p2 = peer(&v, 2);
    assert_eq!(
        (p2["state"].as_str(), p2["epoch"].as_u64()),
        (Some("empty"), Some(1))
    );
    assert_eq!(peer(&v, 3)["epoch"], 0);
    let pools = v["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 5, "host + one per guest");
    assert_eq!(
        (&pools[0]["owner"], &pools[0]["owner_name"]),
        (&0.into(), &"host".into())
    );
    for (i, p) in pools.iter().enumerate() {
        assert_eq!(p["owner"], i as u64, "{p}");
        for key in ["owner", "owner_name", "slot_size", "slots", "used", "free"] {
            assert!(p.get(key).is_some(), "pool lacks {key}: {p}");
        }
        assert_eq!(p["slots"], 4);
        assert_eq!(p["slot_size"], 4096);
        assert_eq!(
            p["used"].as_u64().unwrap() + p["free"].as_u64().unwrap(),
            4,
            "{p}"
        );
    }
    assert_eq!(pool(&v, "host")["used"], 1);
    assert_eq!(pool(&v, "peer 1")["used"], 3);
    assert_eq!(pool(&v, "peer 2")["used"], 0);
    // --all changes nothing in JSON.
    assert_eq!(
        env.ok(&["inspect", "seg", "--json", "--all"]).json()["peers"]
            .as_array()
            .unwrap()
            .len(),
        peers.len()
    );
}

#[test]
fn inspect_is_strictly_read_only() {
    let env = Env::new();
    busy(&env);
    let path = env.path("seg");
    let before = std::fs::read(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    for args in [
        &["inspect", "seg"][..],
        &["inspect", "seg", "--all"],
        &["inspect", "seg", "--json"],
    ] {
        env.ok(args);
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "inspect changed the file"
    );
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (meta.mtime(), meta.mtime_nsec()),
        "inspect touched the mtime"
    );
    assert_eq!(after.mode(), meta.mode());
}

#[test]
fn works_on_a_read_only_file() {
    let env = Env::new();
    busy(&env);
    let path = env.path("seg");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let v = env.ok(&["inspect", "seg", "--json"]).json();
    assert_eq!(ring_len(&v, 1, "to_host"), 3);
    env.ok(&["inspect", "seg"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Root ignores mode bits, so also run as an unprivileged user that owns
    // a 0400 file: it may only read, and inspect must still work (while a
    // command that writes is refused).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let nobody = 65534;
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&path, Some(nobody), Some(nobody)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new(BIN);
        c.args(args)
            .env("SHMHUB_SHM_DIR", env.dir())
            .current_dir("/")
            .uid(nobody)
            .gid(nobody);
        c.output()
    };
    let out = match as_nobody(&["inspect", "seg", "--json"]) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping the unprivileged part: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "inspect as an unprivileged reader: {out:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pool(&v, "peer 1")["used"], 3);
    let out = as_nobody(&["inspect", "seg", "--all"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(&["attach", "seg"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "attach needs write access: {out:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn works_while_other_processes_use_the_segment() {
    let env = Env::new();
    let mut host = env.spawn(&[
        "create",
        "seg",
        "--hold",
        "--json",
        "--max-guests",
        "2",
        "--slots",
        "4",
        "--slot-size",
        "4KiB",
        "--heartbeat-ms",
        "100",
    ]);
    host.line();
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(guest.line(), "1");
    let v = env.inspect("seg");
    assert_eq!(v["host"], "alive");
    assert_eq!(v["header"]["host_pid"], host.pid());
    let p = peer(&v, 1);
    assert_eq!(
        (p["state"].as_str(), p["holder"].as_str()),
        (Some("attached"), Some("alive"))
    );
    assert_eq!(p["pid"], guest.pid());
    assert!(p["heartbeat_age_ms"].as_u64().is_some(), "{p}");
    // Both keep working after being inspected, and inspect (text) works too.
    env.ok(&["inspect", "seg"]);
    env.send_as_host("seg", "1", "still working");
    assert_eq!(guest.line(), "still working");
    guest.signal(libc::SIGTERM);
    guest.wait_ok();
    host.signal(libc::SIGTERM);
    host.wait_ok();
    assert!(!env.path("seg").exists());
}

#[test]
fn non_segments_are_errors_and_untouched() {
    let env = Env::new();
    let mut names = non_segments(env.dir());
    env.small("cut", &[]);
    let full_len = std::fs::metadata(env.path("cut")).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.path("cut"))
        .unwrap()
        .set_len(full_len / 2)
        .unwrap();
    names.push("cut");
    for name in names {
        let before = std::fs::read(env.path(name)).unwrap();
        for args in [&["inspect", name][..], &["inspect", name, "--json"]] {
            let r = env.run(args);
            r.error(&[&env.path(name).display().to_string()]);
            assert!(r.stdout.is_empty(), "{args:?}: {:?}", r.stdout);
        }
        assert_eq!(std::fs::read(env.path(name)).unwrap(), before, "{name}");
    }
    env.run(&["inspect", "missing"])
        .error(&[&env.path("missing").display().to_string()]);
    std::fs::create_dir(env.path("dir")).unwrap();
    env.run(&["inspect", "dir"])
        .error(&[&env.path("dir").display().to_string()]);
    env.run(&["inspect"]).usage();
}

/// A segment whose peer table is wider than 60 columns: a scripted guest,
/// a held one (pid, heartbeat age) and empty entries. Returns the held
/// guest.
fn wide(env: &Env) -> Held {
    env.small("seg", &["--heartbeat-ms", "200"]);
    env.attach("seg");
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(held.line(), "2");
    held
}

#[test]
fn tables_keep_words_whole_on_a_narrow_or_widthless_terminal() {
    let env = Env::new();
    let mut held = wide(&env);
    let args = ["inspect", "seg", "--all"];
    // Through a pipe: no width limit, every row on one line.
    let piped = env.ok(&args).stdout.clone();
    let natural = tables(&piped);
    assert_eq!(natural.len(), 3, "{piped}");
    for cols in [0u16, 60] {
        let r = env.in_terminal(cols, &args);
        r.code(0);
        let drawn = tables(&r.stdout);
        assert_eq!(
            drawn.len(),
            natural.len(),
            "stty cols {cols}:\n{}",
            r.stdout
        );
        for (t, n) in drawn.iter().zip(&natural) {
            let shown = t.join("\n");
            assert_well_formed(t);
            // No word split: the same words as through the pipe.
            assert_eq!(
                cell_words(t),
                cell_words(n),
                "stty cols {cols}: words split in\n{shown}"
            );
            // 0 columns: no limit. 60: within the terminal when the table
            // fits it without splitting a word, else no limit.
            let fits = t.iter().all(|l| l.chars().count() <= usize::from(cols));
            if cols == 0 || !fits {
                assert_eq!(
                    t.len(),
                    n.len(),
                    "stty cols {cols}: rows wrapped in\n{shown}"
                );
            }
        }
    }
    held.signal(libc::SIGTERM);
    held.wait_ok();
}

/// The row of peer `id` in `inspect --all`'s peer table, by column name.
fn peer_row(text: &str, id: u64) -> std::collections::BTreeMap<String, String> {
    let all = tables(text);
    let peers = all
        .iter()
        .find(|t| cell_lines(t)[0][0] == "peer")
        .unwrap_or_else(|| panic!("no peer table in\n{text}"));
    let lines = cell_lines(peers);
    let row = lines
        .iter()
        .find(|l| l[0] == id.to_string())
        .unwrap_or_else(|| panic!("no row for peer {id} in\n{text}"));
    lines[0].iter().cloned().zip(row.iter().cloned()).collect()
}

#[test]
fn tables_and_json_use_the_same_words() {
    let env = Env::new();
    // Heartbeats on: 1 scripted, 2 held and alive, 3 held and killed
    // (dead), 4 empty.
    env.small("seg", &["--heartbeat-ms", "200"]);
    env.attach("seg");
    let mut alive = env.spawn(&["attach", "seg", "--hold"]);
    assert_eq!(alive.line(), "2");
    assert_eq!(env.attach_then_kill("seg").0, 3);
    let text = env.ok(&["inspect", "seg", "--all"]).stdout.clone();
    let v = env.inspect("seg");
    for (id, holder, beats) in [
        (1, "scripted", false),
        (2, "alive", true),
        (3, "dead", true),
        (4, "no_process", false),
    ] {
        let p = peer(&v, id);
        let row = peer_row(&text, id);
        assert_eq!(p["holder"], holder, "{p}");
        assert_eq!(
            row["holder"],
            holder.replace('_', " "),
            "peer {id}:\n{text}"
        );
        // A heartbeat age only where a process holds the entry.
        assert_eq!(p["heartbeat_age_ms"].is_u64(), beats, "{p}");
        assert_eq!(
            !row["heartbeat age"].is_empty(),
            beats,
            "peer {id}:\n{text}"
        );
    }
    // A pool's owner is a number (0 = the host) and a name.
    let pools = v["pools"].as_array().expect("pools");
    for (i, p) in pools.iter().enumerate() {
        let name = if i == 0 {
            "host".to_string()
        } else {
            format!("peer {i}")
        };
        assert_eq!(
            (&p["owner"], p["owner_name"].as_str()),
            (&i.into(), Some(&name[..])),
            "{p}"
        );
        assert!(text.contains(&format!("│ {name} ")), "pool {name}:\n{text}");
    }
    alive.signal(libc::SIGTERM);
    alive.wait_ok();

    // Heartbeats off: a held guest has no heartbeat age to show.
    env.small("quiet", &[]);
    let mut held = env.spawn(&["attach", "quiet", "--hold"]);
    assert_eq!(held.line(), "1");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let p = peer(&env.inspect("quiet"), 1).clone();
    assert_eq!(
        (p["holder"].as_str(), p["heartbeat_age_ms"].is_null()),
        (Some("alive"), true),
        "{p}"
    );
    let text = env.ok(&["inspect", "quiet"]).stdout.clone();
    assert_eq!(peer_row(&text, 1)["heartbeat age"], "", "{text}");
    held.signal(libc::SIGTERM);
    held.wait_ok();
}
