//! What a new user trips over: a file system that fills up under a sparse
//! segment, a segment file truncated under a waiting command, a FIFO or a
//! device given as SEGMENT, bad `create` values, a file size limit, and an
//! existing segment. Each ends in one `error:` line naming the path and the
//! cause with the documented exit code: never a death by signal, never a
//! hang.
//!
//! The tests of a full file system mount a small tmpfs of their own (root
//! only) and unmount it when they end; where that cannot be done they say
//! why on stderr and check nothing.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A tmpfs mounted on a temporary directory for one test; unmounted when
/// dropped (so declare it before the [`Env`] made inside it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as mount(8) takes it, e.g. `1m`), or says
    /// why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root, so no tmpfs can be mounted".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("shmhub-tmpfs-")
            .tempdir()
            .map_err(|e| format!("making a mount point: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0777")])
            .arg("shmhub-test")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has it open (a process the test failed to
            // end): detach it now, it goes when that process does.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// An [`Env`] in a tmpfs of its own. Fields drop in order: the
/// environment's directory goes before the tmpfs is unmounted.
struct SmallFs {
    env: Env,
    _fs: Tmpfs,
}

/// An environment on a tmpfs of `size` (`1m`), or `None`, having said why
/// on stderr, where none can be mounted.
fn small_fs(size: &str) -> Option<SmallFs> {
    match Tmpfs::mount(size) {
        Ok(fs) => Some(SmallFs {
            env: Env::inside(fs.path()),
            _fs: fs,
        }),
        Err(why) => {
            let thread = std::thread::current();
            eprintln!("{}: skipped: {why}", thread.name().unwrap_or("test"));
            None
        }
    }
}

/// Fills the file system holding `dir` with one file until no space is
/// left; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).expect("creating the filler");
    let chunk = [0xa5u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    path
}

/// Requires that `r` did not die of a signal and ended with exit 1 and one
/// `error:` line naming `path` and saying the file system is full (not
/// that the file was truncated).
#[track_caller]
fn full_fs_error(r: &Run, path: &str) {
    r.error(&[path, "no space left on the file system"]);
    assert!(
        !r.stderr.contains("truncated"),
        "shmhub {:?}: a full file system is not a truncation: {:?}",
        r.args,
        r.stderr
    );
}

#[test]
fn create_refuses_a_segment_larger_than_its_free_space() {
    let Some(small) = small_fs("1m") else {
        return;
    };
    let env = &small.env;
    let path = env.path("seg").display().to_string();
    // 2.6 MiB on a 1 MiB file system: both sizes named, in binary units.
    env.run(&["create", "seg", "--slot-size", "4KiB"])
        .error(&[&path, "2.6 MiB", "1.0 MiB", "--sparse"]);
    assert!(env.listing().is_empty(), "left {:?}", env.listing());
    // The 36 GiB segment, held or not.
    for hold in [&[][..], &["--hold"]] {
        let mut args = vec!["create", "seg", "--slot-size", "1GiB", "--slots", "4"];
        args.extend_from_slice(hold);
        env.run(&args).error(&[&path, "36.0 GiB", "1.0 MiB"]);
        assert!(env.listing().is_empty(), "left {:?}", env.listing());
    }
    // --sparse creates it anyway, and says how large it is.
    let r = env.ok(&["create", "seg", "--slot-size", "4KiB", "--sparse"]);
    assert!(r.stdout.contains("2.6 MiB"), "{:?}", r.stdout);
    // A segment that fits needs no flag; --sparse and --preallocate
    // contradict each other.
    env.ok(&[
        "create",
        "small",
        "--max-guests",
        "1",
        "--slots",
        "2",
        "--slot-size",
        "4KiB",
    ]);
    env.run(&["create", "x", "--sparse", "--preallocate"])
        .usage();
    assert_eq!(env.listing(), ["seg", "small"]);
}

#[test]
fn preallocate_reserves_every_page_or_creates_nothing() {
    let Some(small) = small_fs("1m") else {
        return;
    };
    let env = &small.env;
    let path = env.path("seg").display().to_string();
    env.run(&["create", "seg", "--slot-size", "4KiB", "--preallocate"])
        .error(&[&path, "no space left on the file system for 2.6 MiB"]);
    assert!(env.listing().is_empty(), "left {:?}", env.listing());

    // One that fits is allocated in full...
    env.ok(&[
        "create",
        "seg",
        "--max-guests",
        "1",
        "--slots",
        "4",
        "--slot-size",
        "4KiB",
        "--preallocate",
    ]);
    let meta = std::fs::metadata(env.path("seg")).unwrap();
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "{} of {} bytes allocated",
        meta.blocks() * 512,
        meta.len()
    );
    // ...so every page of it can be written with the file system full.
    fill(env.dir());
    assert_eq!(env.attach("seg"), 1);
    let slot = "p".repeat(4096);
    for _ in 0..4 {
        env.send_as_host("seg", "1", &slot);
        env.ok(&["send", "seg", "--as", "1", &slot]);
    }
    env.ok(&["inspect", "seg"]);
    let r = env.ok(&["recv", "seg", "--as", "1", "--count", "4"]);
    assert_eq!(r.stdout.len(), 4 * (4096 + 1));
    env.ok(&["rm", "seg"]);
}

#[test]
fn a_full_file_system_is_one_error_line_for_every_command() {
    let Some(small) = small_fs("4m") else {
        return;
    };
    let env = &small.env;
    // 2.6 MiB, which fits in 4 MiB, until the space is taken.
    env.ok(&["create", "seg", "--slot-size", "4KiB"]);
    assert_eq!(env.attach("seg"), 1);
    let filler = fill(env.dir());
    let path = env.path("seg").display().to_string();
    let slot = "z".repeat(100);

    // Each of these touches a page of the segment never written before.
    for args in [
        &["send", "seg", "--as", "1", &slot][..],
        &["send", "seg", "--as", "host", "--to", "1", &slot],
        &["inspect", "seg"],
        &["inspect", "seg", "--json"],
    ] {
        full_fs_error(&env.run(args), &path);
    }
    // These may or may not reach a new page: either way, no death. (The
    // host's receive looks only at the rings the ready summary names.)
    for args in [
        &["attach", "seg"][..],
        &["recv", "seg", "--as", "host", "--timeout", "0"],
        &["recv", "seg", "--as", "1", "--timeout", "0"],
        &["reclaim", "seg"],
        &["detach", "seg", "--peer-id", "1"],
    ] {
        let r = env.run(args);
        match r.status.code() {
            Some(0 | 3) => {}
            _ => full_fs_error(&r, &path),
        }
    }
    // A held guest reads its ring, in a page never written.
    let mut held = env.spawn(&["attach", "seg", "--hold"]);
    let status = held.wait();
    let stderr = held.stderr();
    assert_eq!(
        status.code(),
        Some(1),
        "attach --hold: {status:?} {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(&format!("error: {path}: no space left")),
        "{stderr:?}"
    );

    // Commands that make a segment of their own: one line, nothing left.
    let r = env.run(&[
        "create",
        "new",
        "--sparse",
        "--max-guests",
        "1",
        "--slots",
        "1",
    ]);
    r.error(&[
        &env.path("new").display().to_string(),
        "no space left on the file system",
    ]);
    env.run(&["demo"])
        .error(&["no space left on the file system"]);
    env.run(&["bench", "--quick", "--no-pin"])
        .error(&["no space left on the file system"]);
    assert_eq!(env.listing(), ["filler", "seg"]);

    // With space again, the same segment works.
    std::fs::remove_file(filler).unwrap();
    env.send_as_host("seg", "1", &slot);
    env.ok(&["inspect", "seg"]);
    env.ok(&["rm", "seg"]);
}

/// A command waiting on a segment whose file is then cut to nothing: the
/// fault of its next look is reported as a truncation, exit 1.
#[test]
fn a_file_truncated_under_a_waiting_command_is_one_error_line() {
    let env = Env::new();
    let path = env.path("seg").display().to_string();
    let cases = [
        ("recv as host", "recv seg --as host --timeout 10s"),
        ("recv as guest", "recv seg --as 1 --timeout 10s"),
        (
            "send into a full ring",
            "send seg --as host --to 1 --count 100 --timeout 10s hello",
        ),
    ];
    for (what, command) in cases {
        let args: Vec<&str> = command.split(' ').collect();
        env.small("seg", &[]);
        assert_eq!(env.attach("seg"), 1);
        let mut held = env.spawn(&args);
        // Let it start waiting: for the send, until the ring is full.
        assert!(wait_until(HELD_TIMEOUT, || {
            !what.starts_with("send") || ring_len(&env.inspect("seg"), 1, "to_guest") == 8
        }));
        std::thread::sleep(Duration::from_millis(300));
        File::options()
            .write(true)
            .open(env.path("seg"))
            .unwrap()
            .set_len(0)
            .unwrap();
        let status = held.wait();
        let stderr = held.stderr();
        assert_eq!(
            status.code(),
            Some(1),
            "{what}: {status:?}, stderr {stderr:?}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("error: {path}: ")) && lines[0].contains("truncated"),
            "{what}: {stderr:?}"
        );
        std::fs::remove_file(env.path("seg")).unwrap();
    }
}

/// A FIFO with no writer, a directory and a character device, each given as
/// SEGMENT to every command: refused at once, the file left as it was.
#[test]
fn special_files_are_refused_at_once_by_every_command() {
    let env = Env::new();
    let fifo = env.path("fifo");
    let c_fifo = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
    let dir = env.path("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"x").unwrap();
    // A copy of /dev/zero in the test's directory where mknod is allowed,
    // else /dev/zero itself (which nobody but root could delete).
    let device = env.path("zero");
    let c_device = CString::new(device.as_os_str().as_bytes()).unwrap();
    // SAFETY: mknod reads a NUL-terminated path that outlives the call.
    let made = unsafe {
        libc::mknod(
            c_device.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(1, 5),
        )
    } == 0;
    let device = if made {
        device
    } else {
        PathBuf::from("/dev/zero")
    };

    for target in [&fifo, &dir, &device] {
        let p = target.to_str().unwrap();
        let commands: [&[&str]; 15] = [
            &["inspect", p],
            &["inspect", p, "--json"],
            &["create", p],
            &["create", p, "--force"],
            &["attach", p],
            &["send", p, "--as", "1", "hi"],
            &["send", p, "--as", "host", "--to", "1", "hi"],
            &["recv", p, "--as", "1", "--timeout", "0"],
            &["recv", p, "--as", "host", "--timeout", "0"],
            &["rm", p],
            &["rm", p, "--force"],
            &["detach", p, "--peer-id", "1"],
            &["reclaim", p],
            &["demo", "--segment", p],
            &["bench", "--quick", "--segment", p],
        ];
        for args in commands {
            let r = env.run(args);
            assert!(
                r.elapsed < Duration::from_secs(5),
                "shmhub {args:?} took {:?}",
                r.elapsed
            );
            r.error(&[p]);
            let is_dir = target == &dir;
            assert!(
                r.stderr.contains("not a regular file")
                    || (is_dir && r.stderr.contains("Is a directory")),
                "shmhub {args:?}: {:?}",
                r.stderr
            );
        }
    }
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(listing(&dir), ["keep"]);
    assert!(
        std::fs::symlink_metadata(&device)
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

#[test]
fn every_bad_create_value_is_a_usage_error_naming_the_flag() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-guests", "0"],
            "--max-guests 0: must be from 1 to 255",
        ),
        (
            &["--max-guests", "100000"],
            "--max-guests 100000: must be from 1 to 255",
        ),
        (
            &["--ring-size", "3"],
            "--ring-size 3: must be a power of two from 2 to 65536",
        ),
        (&["--slots", "0"], "--slots 0: must be from 1 to 65536"),
        (
            &["--slot-size", "100"],
            "--slot-size 100: must be a multiple of 64",
        ),
        (
            &["--slot-size", "4KiB", "--max-payload", "8KiB"],
            "--max-payload 8.0 KiB: must be from 1 byte to the slot size (4.0 KiB)",
        ),
        (
            &["--heartbeat-ms", "3600001"],
            "--heartbeat-ms 3600001: must be at most 3600000",
        ),
        (
            &[
                "--max-guests",
                "255",
                "--slots",
                "65536",
                "--slot-size",
                "1GiB",
            ],
            "--max-guests 255, --slots 65536 and --slot-size 1.0 GiB: the segment would be 16.0 PiB",
        ),
    ];
    for (flags, message) in cases {
        for extra in [&[][..], &["--hold", "--force"]] {
            let mut args = vec!["create", "bad"];
            args.extend_from_slice(flags);
            args.extend_from_slice(extra);
            let r = env.run(&args);
            r.usage();
            let first = r.stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with(&format!("error: {message}")),
                "{args:?}: {first:?}"
            );
            // Flags, not the library's field names; sizes in binary units.
            for internal in [
                "max_guests",
                "ring_capacity",
                "slot_size",
                "slots_per_pool",
                "max_payload",
                "total_size",
            ] {
                assert!(!first.contains(internal), "{args:?}: {first:?}");
            }
            assert!(
                !first
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|n| n.len() > 10),
                "{args:?}: a raw byte count in {first:?}"
            );
            assert!(
                env.listing().is_empty(),
                "{args:?} left {:?}",
                env.listing()
            );
        }
    }
}

#[test]
fn create_on_an_existing_path_says_what_is_there_and_what_to_do() {
    let env = Env::new();
    let shown = |name: &str| env.path(name).display().to_string();

    env.small("plain", &[]);
    let before = std::fs::read(env.path("plain")).unwrap();
    env.run(&["create", "plain"]).error(&[
        &shown("plain"),
        "already exists",
        "no host process",
        "--force",
        &format!("shmhub rm {}", shown("plain")),
    ]);
    assert_eq!(std::fs::read(env.path("plain")).unwrap(), before);

    let mut host = env.spawn(&[
        "create",
        "held",
        "--hold",
        "--max-guests",
        "1",
        "--slots",
        "1",
    ]);
    host.line();
    env.run(&["create", "held"]).error(&[
        &shown("held"),
        "already exists",
        &format!("host (pid {}) is alive", host.pid()),
        "--force",
        "shmhub rm",
    ]);
    host.signal(libc::SIGKILL);
    host.wait();
    env.run(&["create", "held"]).error(&[
        &shown("held"),
        &format!("host (pid {}) is dead", host.pid()),
        "--force",
    ]);

    std::fs::write(env.path("notes"), b"not a segment at all\n").unwrap();
    for force in [&[][..], &["--force"]] {
        let mut args = vec!["create", "notes"];
        args.extend_from_slice(force);
        env.run(&args).error(&[
            &shown("notes"),
            "already exists",
            "not a shmhub segment",
            "never replaced",
        ]);
    }
    assert_eq!(
        std::fs::read(env.path("notes")).unwrap(),
        b"not a segment at all\n"
    );
}

/// `ulimit -f` below the segment's size: growing the file is refused
/// (EFBIG) rather than the command being killed by SIGXFSZ.
#[test]
fn a_file_size_limit_is_an_error_not_a_signal() {
    let env = Env::new();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" create seg")
        .arg(BIN)
        .env("SHMHUB_SHM_DIR", env.dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?} {stderr:?}", out.status);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with(&format!("error: {}: ", env.path("seg").display()))
            && stderr.contains("too large"),
        "{stderr:?}"
    );
    assert!(env.listing().is_empty(), "left {:?}", env.listing());
}
