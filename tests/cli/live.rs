//! Debugging live segments: `ls`, `gc`, `inspect --watch`, `events` and
//! `spawn`, with real processes. The three that only look (`ls`, `watch`,
//! `events`) are checked to leave the file's bytes exactly as they were.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// A segment nobody is in (host: none, guests: scripted claims), whose
/// bytes stay the same unless someone writes them.
fn idle_segment(env: &Env, name: &str) -> Vec<u8> {
    env.small(name, &[]);
    env.attach(name);
    std::fs::read(env.path(name)).unwrap()
}

fn segment_row<'a>(listing: &'a Value, env: &Env, name: &str) -> &'a Value {
    let path = env.path(name).display().to_string();
    listing["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == path.as_str())
        .unwrap_or_else(|| panic!("{name} not listed: {listing}"))
}

#[test]
fn ls_lists_segments_with_their_liveness_and_skips_everything_else() {
    let env = Env::new();
    let before = idle_segment(&env, "idle");
    let mut host = env.spawn(&["create", "live", "--hold", "--max-guests", "4"]);
    assert!(host.line().starts_with("created "));
    let (dead_peer, _) = env.attach_then_kill("live");
    let mut guest = env.spawn(&["attach", "live", "--hold"]);
    let live_peer = guest.line();
    assert_ne!(live_peer, dead_peer.to_string());
    env.ok(&[
        "send", "live", "--as", "host", "--to", &live_peer, "queued?",
    ]);
    std::fs::write(env.path("notes.txt"), "not a segment").unwrap();
    std::fs::write(env.path("zeros"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir(env.path("dir")).unwrap();
    let fifo = env.path("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path we own for the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let r = env.ok(&["ls", "--json"]);
    assert!(
        r.elapsed < Duration::from_secs(5),
        "a FIFO blocked the listing"
    );
    let listing = r.json();
    let idle = segment_row(&listing, &env, "idle");
    assert_eq!(idle["host"], "no_process");
    assert_eq!(idle["guests"]["scripted"], 1);
    assert_eq!(idle["orphaned"], true);
    let live = segment_row(&listing, &env, "live");
    assert_eq!(live["host"], "alive");
    assert_eq!(live["host_pid"], host.pid());
    assert_eq!(live["orphaned"], false);
    // The held host may already have reclaimed the dead guest.
    let guests = &live["guests"];
    assert_eq!(guests["live"], 1, "{live}");
    assert!(guests["dead"] == 1 || guests["dead"] == 0, "{live}");
    let unlisted: Vec<&str> = listing["unlisted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert_eq!(unlisted.len(), 4, "{listing}");

    // Text: one row per segment, and one footer line for the rest.
    let text = env.ok(&["ls"]);
    assert!(text.stdout.contains("alive (pid"), "{}", text.stdout);
    assert!(
        text.stderr.contains("4 other file(s) not listed"),
        "{}",
        text.stderr
    );
    let verbose = env.ok(&["ls", "--verbose"]);
    for name in ["notes.txt", "zeros", "dir", "fifo"] {
        assert!(verbose.stderr.contains(name), "{}", verbose.stderr);
    }
    // --dead: the held host's segment is not among them.
    let dead = env.ok(&["ls", "--dead", "--json"]).json();
    let paths: Vec<&str> = dead["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [env.path("idle").display().to_string()]);
    // Listing is looking: nothing changed.
    assert_eq!(std::fs::read(env.path("idle")).unwrap(), before);
    guest.signal(libc::SIGTERM);
    guest.wait_ok();
    host.signal(libc::SIGTERM);
    host.wait_ok();
}

#[test]
fn gc_removes_what_nobody_can_use_and_nothing_else() {
    let env = Env::new();
    // Orphaned: a host that died, its only guest dead too.
    let mut dead_host = env.spawn(&["create", "orphan", "--hold", "--max-guests", "2"]);
    assert!(dead_host.line().starts_with("created "));
    env.attach_then_kill("orphan");
    dead_host.signal(libc::SIGKILL);
    dead_host.wait();
    // Orphaned: a plain create with a scripted claim.
    idle_segment(&env, "scripted");
    // In use: a live guest on a segment whose host is gone.
    env.small("used", &[]);
    let mut guest = env.spawn(&["attach", "used", "--hold"]);
    assert_eq!(guest.line(), "1");
    std::fs::write(env.path("notes.txt"), "not a segment").unwrap();

    let dry = env.ok(&["gc", "--dry-run"]);
    assert!(dry.stdout.contains("would remove"), "{}", dry.stdout);
    assert_eq!(env.listing(), ["notes.txt", "orphan", "scripted", "used"]);

    let r = env.ok(&["gc", "--json"]).json();
    let mut removed: Vec<String> = r["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            env.path("orphan").display().to_string(),
            env.path("scripted").display().to_string()
        ]
    );
    assert_eq!(env.listing(), ["notes.txt", "used"]);
    // The live guest never noticed.
    env.send_as_host("used", "1", "still here");
    assert_eq!(guest.line(), "still here");
    guest.signal(libc::SIGTERM);
    guest.wait_ok();
    // Once it has gone, the segment is garbage too.
    let again = env.ok(&["gc"]);
    assert!(again.stdout.contains("removed"), "{}", again.stdout);
    assert_eq!(env.listing(), ["notes.txt"]);
}

/// Runs `gc --dry-run` (as text and as JSON), then `gc --json`, each
/// with `run`, and requires the dry run to have said what the real one
/// did: the same segments removed, the same kept with the same reasons.
/// Returns the real run's JSON and the dry run's text.
#[track_caller]
fn dry_run_then_gc(run: impl Fn(&[&str]) -> Run) -> (Value, Run) {
    let text = run(&["gc", "--dry-run"]);
    text.code(0);
    let dry = run(&["gc", "--dry-run", "--json"]);
    dry.code(0);
    let real = run(&["gc", "--json"]);
    real.code(0);
    let (dry, real) = (dry.json(), real.json());
    assert_eq!(dry["removed"], real["removed"], "dry run {dry}, gc {real}");
    assert_eq!(dry["kept"], real["kept"], "dry run {dry}, gc {real}");
    (real, text)
}

/// The name of user `uid` in the system's user database (as `id -nu`
/// finds it), else the number.
fn user_name(uid: u32) -> String {
    std::process::Command::new("id")
        .args(["-nu", &uid.to_string()])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| uid.to_string())
}

#[test]
fn gc_dry_run_keeps_what_gc_keeps_and_says_why() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.small("mine", &[]);
    env.small("theirs", &[]);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving a segment to another user needs root");
        return;
    }
    std::os::unix::fs::chown(env.path("theirs"), Some(65534), Some(65534)).unwrap();
    let (real, dry) = dry_run_then_gc(|args| env.run(args));
    assert_eq!(real["removed"], serde_json::json!([env.path("mine")]));
    let theirs = env.path("theirs").display().to_string();
    assert_eq!(real["kept"][0]["path"], theirs.as_str());
    assert_eq!(
        dry.stdout,
        format!("would remove {}\n", env.path("mine").display())
    );
    // The reason follows the path once, and names the owner as the user
    // database does (issue 32, item 11: the path twice, "user 65534").
    assert_eq!(
        dry.stderr,
        format!(
            "would keep {theirs}: owned by user {} (mode 0600), not by this user: \
             gc never removes another user's segment\n",
            user_name(65534)
        ),
    );
    assert_eq!(env.listing(), ["theirs"]);

    // As nobody, in a sticky directory open to all (as /dev/shm is): a
    // segment of root's that anyone may write is trusted and opened, but
    // only root may delete it; nobody's own is removed.
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    env.small("roots", &[]);
    std::fs::set_permissions(env.path("roots"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (real, dry) = dry_run_then_gc(|args| env.run_as_nobody(args).unwrap());
    assert_eq!(real["removed"], serde_json::json!([theirs]));
    let roots = env.path("roots").display().to_string();
    assert_eq!(
        real["kept"],
        serde_json::json!([{
            "path": roots,
            "reason": "Operation not permitted (os error 1)",
        }])
    );
    assert_eq!(dry.stdout, format!("would remove {theirs}\n"));
    assert_eq!(
        dry.stderr,
        format!("would keep {roots}: Operation not permitted (os error 1)\n")
    );
    assert_eq!(env.listing(), ["roots"]);
    // The segment gc kept is as it was: no goodbye left set on it, which
    // would turn away every guest that attaches afterwards.
    let header = env.run(&["inspect", "roots", "--json"]).json();
    assert_eq!(header["header"]["host_goodbye"], false, "{header}");
}

#[test]
fn watch_writes_json_lines_with_rates_and_changes_and_changes_nothing() {
    let env = Env::new();
    let before = idle_segment(&env, "quiet");
    // An interval means nothing without --watch.
    env.run(&["inspect", "quiet", "--interval", "1s"]).usage();
    let mut watch = env.spawn(&["inspect", "quiet", "--watch", "--interval", "100ms"]);
    let frames: Vec<Value> = (0..3).map(|_| watch.json_line()).collect();
    for frame in &frames {
        assert!(frame["time_unix_ms"].as_u64().is_some(), "{frame}");
        assert_eq!(frame["rates"][0]["to_guest_per_s"], 0.0);
        assert_eq!(frame["changes"], serde_json::json!([]));
    }
    watch.signal(libc::SIGTERM);
    watch.wait_ok();
    assert_eq!(std::fs::read(env.path("quiet")).unwrap(), before);

    // Traffic shows as a rate; a death shows as a change; removal ends it.
    env.small("busy", &[]);
    let id = env.attach("busy").to_string();
    let mut watch = env.spawn(&["inspect", "busy", "--watch", "--interval", "300ms"]);
    watch.json_line();
    env.ok(&[
        "send", "busy", "--as", "host", "--to", &id, "--count", "3", "x",
    ]);
    let frame = watch.json_line();
    let rate = frame["rates"][0]["to_guest_per_s"].as_f64().unwrap();
    assert!(rate > 0.0, "{frame}");
    let mut dying = env.spawn(&["attach", "busy", "--hold"]);
    let dying_id: u64 = dying.line().parse().unwrap();
    dying.signal(libc::SIGKILL);
    dying.wait();
    let died = (0..10).map(|_| watch.json_line()).find(|f| {
        f["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["event"] == "holder_died" && c["peer"] == dying_id)
    });
    assert!(died.is_some(), "the death never showed");
    std::fs::remove_file(env.path("busy")).unwrap();
    watch.wait_ok();
    assert!(watch.stderr().contains("removed"), "{}", watch.stderr());
}

#[test]
fn watch_on_a_terminal_redraws_in_place() {
    let env = Env::new();
    idle_segment(&env, "seg");
    let r = env.shell(
        "script -qec 'timeout --preserve-status -s INT 1 $SHMHUB inspect seg --watch --interval 200ms' /dev/null",
    );
    // Several frames, each starting at the top left, none scrolling.
    let homes = r.stdout.matches("\u{1b}[1;1H").count();
    assert!(homes >= 3, "{homes} frames: {:?}", r.stdout);
    assert!(r.stdout.contains("to guest/s"), "{:?}", r.stdout);
    // SIGINT ends it with the terminal as it was: after the last frame,
    // the cursor is shown again and the alternate screen left.
    r.code(0);
    let after_frames = &r.stdout[r.stdout.rfind("\u{1b}[1;1H").unwrap()..];
    assert!(after_frames.contains(SHOW_CURSOR), "{:?}", r.stdout);
    assert!(after_frames.contains(LEAVE_SCREEN), "{:?}", r.stdout);
}

/// What leaves the alternate screen, and what shows the cursor again.
const LEAVE_SCREEN: &str = "\u{1b}[?1049l";
const SHOW_CURSOR: &str = "\u{1b}[?25h";

/// Runs `inspect seg --watch` on a pseudo-terminal (util-linux `script`)
/// in `env`, waits for its first frame, runs `then` (a shell command on
/// `seg`), and returns the run once the watch has ended: the terminal's
/// output (stdout and stderr both) with the watch's exit status. `None`
/// where `script` is missing.
fn watch_on_a_terminal_then(env: &Env, then: &str) -> Option<Run> {
    let found = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: the `script` tool is not installed");
        return None;
    }
    // `script -f` writes the terminal's output to `typescript` as it comes:
    // a frame is there once drawn. The wait is bounded (15 s, under the
    // command's timeout) so that a watch that never draws fails the test
    // rather than hanging it.
    let inner = format!(
        "$SHMHUB inspect seg --watch --interval 100ms & \
         i=0; until grep -q 'to guest/s' typescript || [ $i -ge 300 ]; do sleep 0.05; i=$((i+1)); done; \
         {then}; wait $!"
    );
    let quoted = inner.replace('\'', r"'\''");
    Some(env.shell(&format!("script -qfec '{quoted}' typescript")))
}

// The note of a removal outlives the alternate screen: it is written once
// the screen is left, so it stays on the terminal (the scrollback) and the
// watch ends with exit 0.
#[test]
fn watch_on_a_terminal_says_the_segment_was_removed_after_leaving_the_screen() {
    let env = Env::new();
    idle_segment(&env, "seg");
    let Some(r) = watch_on_a_terminal_then(&env, "rm seg") else {
        return;
    };
    r.code(0);
    let raw = &r.stdout;
    assert!(raw.contains("to guest/s"), "no frame: {raw:?}");
    let left = raw
        .rfind(LEAVE_SCREEN)
        .expect("the alternate screen was left");
    let note = raw.rfind("seg: the segment was removed").expect("the note");
    assert!(
        left < note,
        "the note was said on the alternate screen: {raw:?}"
    );
    let after_frames = &raw[raw.rfind("\u{1b}[1;1H").unwrap()..];
    assert!(after_frames.contains(SHOW_CURSOR), "{raw:?}");
}

// An error while watching (here the file's magic overwritten) is said
// after the alternate screen is left, with exit 1.
#[test]
fn watch_on_a_terminal_says_an_error_after_leaving_the_screen() {
    let env = Env::new();
    idle_segment(&env, "seg");
    let corrupt = "printf NOTSHMHB | dd of=seg bs=8 count=1 conv=notrunc 2>/dev/null";
    let Some(r) = watch_on_a_terminal_then(&env, corrupt) else {
        return;
    };
    r.code(1);
    let raw = &r.stdout;
    assert!(raw.contains("to guest/s"), "no frame: {raw:?}");
    let left = raw
        .rfind(LEAVE_SCREEN)
        .expect("the alternate screen was left");
    let error = raw.rfind("error: ").expect("an error line");
    assert!(
        left < error,
        "the error was said on the alternate screen: {raw:?}"
    );
    assert!(
        raw[error..].contains("not a shmhub segment"),
        "{:?}",
        &raw[error..]
    );
}

#[test]
fn events_tell_attaches_deaths_reclaims_and_removal() {
    let env = Env::new();
    let before = idle_segment(&env, "quiet");
    // Nothing happens: --timeout ends with exit 3, and the file is as it was.
    let r = env.run(&[
        "events",
        "quiet",
        "--timeout",
        "300ms",
        "--interval",
        "50ms",
    ]);
    r.code(3);
    assert_eq!(std::fs::read(env.path("quiet")).unwrap(), before);

    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let mut events = env.spawn(&["events", "seg", "--json", "--interval", "50ms"]);
    watching(&events, "seg");
    let scripted = env.attach("seg");
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    let held: u64 = guest.line().parse().unwrap();
    let pid = guest.pid();
    guest.signal(libc::SIGKILL);
    guest.wait();
    let mut seen = Vec::new();
    let mut want = |event: Value| loop {
        let got = events.json_line();
        seen.push(got.clone());
        let matches = event.as_object().unwrap().iter().all(|(k, v)| &got[k] == v);
        if matches {
            assert!(got["time_unix_ms"].as_u64().is_some());
            return got;
        }
        assert!(seen.len() < 20, "never saw {event}: {seen:?}");
    };
    // A scripted attach holds its entry for a moment before it hands it
    // to scripts (holder 0): a look in that moment reports the attaching
    // command's pid, a later one 0. Either is what was there; the held
    // guest's pid is not.
    let first = want(serde_json::json!({"event": "attached", "peer": scripted}));
    let scripted_pid = first["pid"].as_u64().expect("an attach names a pid");
    assert_ne!(scripted_pid, u64::from(pid), "{first}");
    want(serde_json::json!({"event": "attached", "peer": held, "pid": pid}));
    want(serde_json::json!({"event": "holder_died", "peer": held}));
    want(serde_json::json!({"event": "reclaimed", "peer": held}));
    env.ok(&["detach", "seg", "--peer-id", &scripted.to_string()]);
    want(serde_json::json!({"event": "detached", "peer": scripted}));
    host.signal(libc::SIGKILL);
    host.wait();
    want(serde_json::json!({"event": "host_died", "pid": host.pid()}));
    std::fs::remove_file(env.path("seg")).unwrap();
    want(serde_json::json!({"event": "removed"}));
    events.wait_ok();

    // --count: the next event, then exit 0.
    idle_segment(&env, "next");
    let mut one = env.spawn(&["events", "next", "--count", "1", "--timeout", "10s"]);
    watching(&one, "next");
    let attached = env.attach("next");
    // As above: the look may fall in the moment the attaching command
    // still holds the entry, so it names that pid or says "scripted".
    let line = one.line();
    assert!(
        line.contains(&format!("peer {attached} attached (")),
        "{line:?}"
    );
    one.wait_ok();
}

// A death is told when the process ends, not at the next look: with
// looks a minute apart, a SIGKILLed holder and then a SIGKILLed host are
// each told at once (on Linux, through their pidfds).
// shm[verify shm.ready.death]
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
#[test]
fn events_tells_a_death_at_once_whatever_the_interval() {
    let env = Env::new();
    let mut host = env.spawn(&["create", "seg", "--hold", "--max-guests", "2"]);
    assert!(host.line().starts_with("created "));
    let mut guest = env.spawn(&["attach", "seg", "--hold"]);
    let held: u64 = guest.line().parse().unwrap();
    let mut events = env.spawn(&["events", "seg", "--json", "--interval", "60s"]);
    // The first look must have seen the guest: wait until `events` has
    // opened its pidfd, then kill.
    let pidfds = || {
        std::fs::read_dir(format!("/proc/{}/fd", events.pid()))
            .map(|fds| {
                fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                    .filter(|target| target.to_string_lossy().contains("pidfd"))
                    .count()
            })
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while pidfds() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "events never watched both processes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    guest.signal(libc::SIGKILL);
    guest.wait();
    let died = events.json_line();
    assert_eq!(died["event"], "holder_died", "{died}");
    assert_eq!(died["peer"], held, "{died}");
    host.signal(libc::SIGKILL);
    host.wait();
    // The host's own reclaim of the guest may come first, if it ran.
    let mut next = events.json_line();
    while next["event"] != "host_died" {
        assert!(
            ["reclaimed", "detached"].contains(&next["event"].as_str().unwrap_or("")),
            "{next}"
        );
        next = events.json_line();
    }
    assert_eq!(next["pid"], host.pid(), "{next}");
}

// A script that backgrounds `spawn` needs a sign that the entry is
// reserved (then a send to it is queued, not refused), and to hear when the
// program never attached; `--json` says both as JSON lines (issue 32,
// items 12 and 19).
#[test]
fn spawn_says_when_the_entry_is_reserved_and_if_it_was_never_claimed() {
    let env = Env::new();
    env.small("seg", &[]);
    let seg = env.path("seg").display().to_string();
    // Never attaches, exits 0: spawn exits 0 too, and says so.
    let r = env.ok(&["spawn", "seg", "--", "true"]);
    assert!(r.stdout.is_empty(), "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0].starts_with(&format!("{seg}: peer 1 reserved for true (pid ")),
        "{r:?}"
    );
    assert!(
        lines[1].starts_with(&format!("{seg}: true (pid "))
            && lines[1].ends_with(" ended (exit status: 0) without attaching; entry 1 released"),
        "{r:?}"
    );
    // As JSON: reserved, then exited, with the program's status.
    let r = env.run(&["spawn", "seg", "--json", "--", "sh", "-c", "exit 3"]);
    r.code(3);
    let events = r.json_lines();
    assert_eq!(events.len(), 2, "{r:?}");
    assert_eq!(events[0]["event"], "reserved");
    assert_eq!(events[0]["peer_id"], 1);
    assert_eq!(events[0]["segment"], seg.as_str());
    let pid = events[0]["pid"].as_u64().unwrap();
    assert_eq!(
        events[1],
        serde_json::json!({
            "event": "exited", "segment": seg, "peer_id": 1, "pid": pid,
            "attached": false, "exit_code": 3, "signal": null, "reclaimed": false,
        })
    );
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");
    // The reserved line is the moment a script can send: the message waits
    // for the program, which echoes it once it attaches.
    let mut echo = env.spawn(&["spawn", "seg", "--json", "--", BIN, "guest-echo"]);
    let reserved = echo.json_line();
    assert_eq!(reserved["event"], "reserved");
    env.send_as_host("seg", "1", "sent at once");
    let back = env.ok(&["recv", "seg", "--as", "host", "--from", "1"]);
    assert_eq!(back.stdout, "sent at once\n");
    env.ok(&["rm", "seg"]);
    echo.wait_ok();
    let exited: Value = serde_json::from_str(echo.seen.last().unwrap()).unwrap();
    assert_eq!(exited["event"], "exited");
    assert_eq!(exited["attached"], true);
    assert_eq!(exited["exit_code"], 0);
}

// Issue 32, item 14: `spawn` on a full hub does what `attach` does: it
// reclaims a dead guest's entry and releases a reservation whose `spawn`
// was killed, saying so; when nothing can be freed it names every entry
// and how to free each kind, and the hint it gives works.
#[test]
fn spawn_on_a_full_hub_frees_dead_entries_and_says_how_to_free_the_rest() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "1"]);

    // A dead attached guest.
    let (_, pid) = env.attach_then_kill("seg");
    let r = env.ok(&["spawn", "seg", "--", "true"]);
    let said = format!("the hub was full; reclaimed peer 1 (pid {pid}, dead)");
    assert!(r.stderr.contains(&said), "{:?}", r.stderr);

    // A reservation whose spawn was killed (its program ends on its own).
    let mut killed = env.spawn(&["spawn", "seg", "--json", "--", "sleep", "1"]);
    assert_eq!(killed.json_line()["event"], "reserved");
    killed.signal(libc::SIGKILL);
    killed.wait();
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "reserved");
    let r = env.ok(&["spawn", "seg", "--", "true"]);
    let said = format!("reclaimed peer 1 (pid {}, reserved)", killed.pid());
    assert!(r.stderr.contains(&said), "{:?}", r.stderr);

    // A guest that left a message unread: nothing to reclaim.
    let id = env.attach("seg").to_string();
    env.ok(&["send", "seg", "--as", &id, "left behind"]);
    env.ok(&["detach", "seg", "--peer-id", &id]);
    env.run(&["spawn", "seg", "--", "true"]).error(&[
        "hub is full: the 1 guest entry is taken: peer 1 (goodbye)",
        "; `shmhub recv seg --as host --from 1` reads what its guest left, which frees it",
    ]);
    assert_eq!(
        env.ok(&["recv", "seg", "--as", "host", "--from", "1"])
            .stdout,
        "left behind\n"
    );
    env.ok(&["spawn", "seg", "--", "true"]);

    // A scripted claim.
    env.attach("seg");
    env.run(&["spawn", "seg", "--", "true"]).error(&[
        "hub is full: the 1 guest entry is taken: peer 1 (scripted); \
         free the scripted claim with `shmhub detach seg --peer-id 1`",
    ]);
}

#[test]
fn spawn_runs_a_guest_program_on_a_reserved_entry() {
    let env = Env::new();
    env.small("seg", &[]);
    // A program that attaches from its environment and echoes.
    let mut echo = env.spawn(&["spawn", "seg", "--", BIN, "guest-echo"]);
    assert!(wait_until(Duration::from_secs(10), || {
        peer(&env.inspect("seg"), 1)["state"] == "attached"
    }));
    let entry = env.inspect("seg");
    assert_ne!(
        peer(&entry, 1)["pid"],
        echo.pid(),
        "the program holds it, not spawn"
    );
    env.send_as_host("seg", "1", "ping");
    let back = env.ok(&["recv", "seg", "--as", "host", "--from", "1"]);
    assert_eq!(back.stdout, "ping\n");
    // The host leaving ends the program (exit 0), and spawn with it.
    env.ok(&["rm", "seg"]);
    echo.wait_ok();

    // A program that never attaches: the entry goes back; its status is
    // spawn's, and {segment}/{peer} were filled in.
    env.small("seg", &[]);
    let r = env.run(&[
        "spawn",
        "seg",
        "--",
        "sh",
        "-c",
        "echo \"$SHMHUB_PEER_ID {peer} {segment}\"; exit 7",
    ]);
    r.code(7);
    let seg = env.path("seg").display().to_string();
    assert_eq!(r.stdout.trim(), format!("1 1 {seg}"));
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");

    // A program killed while attached: its entry is reclaimed, its slots
    // freed, and spawn exits 128 + 9.
    let mut doomed = env.spawn(&["spawn", "seg", "--", BIN, "guest-echo"]);
    assert!(wait_until(Duration::from_secs(10), || {
        peer(&env.inspect("seg"), 1)["state"] == "attached"
    }));
    env.send_as_host("seg", "1", &slot_msg("echoed into its pool"));
    let pid = peer(&env.inspect("seg"), 1)["pid"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        ring_len(&env.inspect("seg"), 1, "to_host") == 1
    }));
    // SAFETY: kill sends SIGKILL to the program spawn started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(doomed.wait().code(), Some(128 + libc::SIGKILL));
    assert!(doomed.stderr().contains("reclaimed"), "{}", doomed.stderr());
    let after = env.inspect("seg");
    assert_eq!(peer(&after, 1)["state"], "empty");
    assert_eq!(pools_used(&after), 0);

    // A program that does not exist: a clear error, the entry given back.
    env.run(&["spawn", "seg", "--", "/no/such/program"])
        .error(&[&seg, "/no/such/program", "released"]);
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");

    // spawn itself killed before its program attached: the reservation
    // would stay for good; `reclaim` releases it, its reserver being dead.
    // (The program lets go of spawn's output, which it would otherwise
    // keep open after spawn dies.)
    let mut killed = env.spawn(&[
        "spawn",
        "seg",
        "--",
        "sh",
        "-c",
        "exec sleep 30 >/dev/null 2>&1",
    ]);
    assert!(wait_until(Duration::from_secs(10), || {
        peer(&env.inspect("seg"), 1)["state"] == "reserved"
    }));
    killed.signal(libc::SIGKILL);
    killed.wait();
    let reclaimed = env.ok(&["reclaim", "seg", "--json"]).json();
    assert_eq!(
        reclaimed["reclaimed"],
        serde_json::json!([1]),
        "{reclaimed}"
    );
    assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty");
    // The program spawn started (never attached) outlives it: end it.
    let _ = std::process::Command::new("pkill")
        .args(["-f", "^sleep 30$"])
        .status();
}

// Issue 32, item 2: a guest that detached while its last message was
// unread leaves its entry Goodbye until that message is read, and `ls`
// counts it so; the `recv --as host` that reads the last message frees
// the entry before it exits, whether it receives from any guest or from
// that one, so that `spawn --peer-id` can take it at once.
// shm[verify shm.peer.detach]
#[test]
fn a_read_goodbye_does_not_keep_its_entry() {
    let env = Env::new();
    env.small("seg", &["--max-guests", "1"]);
    for recv in [
        &["recv", "seg", "--as", "host"][..],
        &["recv", "seg", "--as", "host", "--from", "1"][..],
    ] {
        let id = env.attach("seg").to_string();
        env.ok(&["send", "seg", "--as", &id, "first"]);
        env.ok(&["send", "seg", "--as", &id, "bye"]);
        env.ok(&["detach", "seg", "--peer-id", &id]);
        assert_eq!(peer(&env.inspect("seg"), 1)["state"], "goodbye");
        let listed = env.ok(&["ls", "--json"]).json();
        assert_eq!(listed["segments"][0]["guests"]["goodbye"], 1, "{listed}");
        let table = env.ok(&["ls"]).stdout;
        assert!(table.contains("1 goodbye"), "{table}");
        // A message is left: the entry stays Goodbye.
        assert_eq!(env.ok(recv).stdout, "first\n");
        assert_eq!(peer(&env.inspect("seg"), 1)["state"], "goodbye", "{recv:?}");
        // The last one read: free, as the receive that read it exits.
        assert_eq!(env.ok(recv).stdout, "bye\n");
        assert_eq!(peer(&env.inspect("seg"), 1)["state"], "empty", "{recv:?}");
        let listed = env.ok(&["ls", "--json"]).json();
        assert_eq!(listed["segments"][0]["guests"]["goodbye"], 0, "{listed}");
        env.ok(&["spawn", "seg", "--peer-id", "1", "--", "true"]);
    }
}

#[test]
fn times_are_rfc3339_in_local_time_or_utc_and_always_utc_in_json() {
    let env = Env::new();
    idle_segment(&env, "seg");
    let created = |args: &[&str], tz: &str| {
        let out = env.cmd().args(args).env("TZ", tz).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let row = text.lines().find(|l| l.contains("created")).unwrap();
        row.split('┆').nth(1).unwrap().trim().to_string()
    };
    // A POSIX TZ string: no time zone database needed.
    let local = created(&["inspect", "seg"], "IST-5:30");
    let utc = created(&["inspect", "seg", "--utc"], "IST-5:30");
    assert!(local.contains("+05:30 ("), "{local}");
    assert!(utc.contains("Z ("), "{utc}");
    let report = env.inspect("seg");
    let json_time = report["header"]["created"].as_str().unwrap();
    assert!(json_time.ends_with('Z'), "{report}");
    assert!(utc.starts_with(json_time), "{utc} vs {json_time}");
    let ms = report["header"]["created_unix_ns"].as_u64().unwrap() / 1_000_000;
    let secs = ms / 1000;
    // The same instant: the local time is the UTC one moved 5:30 ahead.
    let (utc_clock, local_clock) = (&utc[11..23], &local[11..23]);
    let seconds_of_day = |clock: &str| -> u64 {
        let parts: Vec<u64> = clock[..8].split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600 + parts[1] * 60 + parts[2]
    };
    assert_eq!(seconds_of_day(utc_clock), secs % 86_400, "{utc}");
    assert_eq!(
        seconds_of_day(local_clock),
        (secs + 5 * 3600 + 1800) % 86_400,
        "{local}"
    );

    // events: the same clock, --utc, and "time" in JSON.
    let r = env.shell(
        "TZ=IST-5:30 $SHMHUB events seg --count 1 --timeout 10s --interval 20ms > local.txt & \
         TZ=IST-5:30 $SHMHUB events seg --count 1 --timeout 10s --interval 20ms --utc > utc.txt & \
         $SHMHUB events seg --count 1 --timeout 10s --interval 20ms --json > json.txt & \
         sleep 0.5; $SHMHUB attach seg >/dev/null; wait",
    );
    r.code(0);
    let read = |name: &str| std::fs::read_to_string(env.dir().join(name)).unwrap();
    let (local, utc, json) = (read("local.txt"), read("utc.txt"), read("json.txt"));
    assert!(local.contains("+05:30 peer "), "{local}");
    assert!(utc.contains("Z peer "), "{utc}");
    let event: Value = serde_json::from_str(json.trim()).unwrap();
    let time = event["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.starts_with("20"), "{event}");
    let ms = event["time_unix_ms"].as_u64().unwrap();
    assert_eq!(&time[20..23], format!("{:03}", ms % 1000), "{event}");
}

// A terminal too narrow for `ls`'s table gets each segment as a block of
// `column  value` lines; one that reports 0 columns, the table as it is.
#[test]
fn ls_stacks_its_rows_on_a_narrow_terminal() {
    let env = Env::new();
    env.small("one", &[]);
    env.small("two", &[]);
    let narrow = env.in_terminal(60, &["ls"]);
    narrow.code(0);
    let text = narrow.stdout.replace('\r', "");
    assert!(!text.contains('│'), "{text}");
    let blocks: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{text}");
    for (block, name) in blocks.iter().zip(["one", "two"]) {
        let lines: Vec<&str> = block.lines().collect();
        assert!(
            lines[0].starts_with("segment  ") && lines[0].ends_with(name),
            "{block}"
        );
        let names: Vec<&str> = lines
            .iter()
            .map(|l| l.split("  ").next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "segment", "owner", "size", "age", "host", "guests", "queued", "slots"
            ],
            "{block}"
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{block}");
    }
    let widthless = env.in_terminal(0, &["ls"]);
    widthless.code(0);
    assert!(widthless.stdout.contains('│'), "{}", widthless.stdout);
}
