//! The C programs in `tests/c/`, compiled with the system C compiler (`cc`,
//! or `$CC`) against the libraries this test build made, and run: a host
//! and a guest in two processes (one linked with `libshmhub_c.a`, the
//! other with `libshmhub_c.so`), a host evicting a guest of another
//! process, every error code in one process, the example in `examples/`,
//! and the error program and both kinds of guest again under valgrind.
//!
//! Valgrind missing is a visible skip, unless `SHMHUB_REQUIRE_VALGRIND` is
//! set (CI sets it), when it fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The libraries `-l` names besides `libshmhub_c.a`, as
/// `rustc --print native-static-libs` lists them on Linux.
const NATIVE_STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the libraries of this build: beside this test's own
/// executable (`target/<profile>/deps`), where a test build leaves the
/// cdylib and the staticlib of the package it tests.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test knows its path");
        let deps = exe.parent().expect("the test lies in a directory");
        for dir in [deps, deps.parent().unwrap_or(deps)] {
            if dir.join("libshmhub_c.a").exists() && dir.join("libshmhub_c.so").exists() {
                return dir.to_path_buf();
            }
        }
        panic!(
            "libshmhub_c.a and libshmhub_c.so are not in {} or its parent: build with `cargo test -p shmhub-c`",
            deps.display()
        );
    })
}

/// A directory for compiled programs and segments, removed at the end.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shmhub-c-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory")
}

#[derive(Clone, Copy)]
enum Link {
    Static,
    Shared,
}

/// Compiles `source` twice into `dir`, as `NAME-static` (the host's
/// program, linked with `libshmhub_c.a`) and `NAME-shared` (the guest's,
/// with `libshmhub_c.so`): a pair of processes covers both libraries.
fn compile_both(source: &str, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let host = dir.join(format!("{name}-static"));
    let guest = dir.join(format!("{name}-shared"));
    compile(source, &host, Link::Static);
    compile(source, &guest, Link::Shared);
    (host, guest)
}

/// Compiles `source` (relative to the crate) into `out`, warnings as
/// errors, linked with the static or the shared library.
fn compile(source: &str, out: &Path, link: Link) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut cmd = Command::new(&cc);
    cmd.args([
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
        "-g",
    ])
    .arg("-I")
    .arg(crate_dir().join("include"))
    .arg(crate_dir().join(source))
    .arg("-o")
    .arg(out);
    match link {
        Link::Static => {
            cmd.arg(lib_dir().join("libshmhub_c.a"));
            cmd.args(NATIVE_STATIC_LIBS);
        }
        Link::Shared => {
            cmd.arg("-L").arg(lib_dir()).arg("-lshmhub_c");
            cmd.arg(format!("-Wl,-rpath,{}", lib_dir().display()));
        }
    }
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed on {source}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `cmd` to its end, within `limit`; panics with its output unless it
/// exits 0 and says `ok_line` on standard output.
fn run_ok(cmd: &mut Command, ok_line: &str, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let output = wait_within(child, limit);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == ok_line),
        "{cmd:?} failed ({}):\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The output of `child` once it exits; killed if it runs past `limit`.
fn wait_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child
            .try_wait()
            .expect("the child can be waited for")
            .is_some()
        {
            return child.wait_with_output().expect("the child's output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("the child's output");
            panic!(
                "still running after {limit:?}, killed:\n--- stdout\n{}--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `exe host SEGMENT` (with `env` set), its standard streams
/// piped, and waits for it to say "ready"; its standard output from then
/// on.
fn start_host(exe: &Path, segment: &Path, env: &[(&str, &str)]) -> (Child, BufReader<ChildStdout>) {
    let mut host = Command::new(exe)
        .arg("host")
        .arg(segment)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host starts");
    let mut host_out = BufReader::new(host.stdout.take().expect("the host's stdout"));
    let mut ready = String::new();
    host_out
        .read_line(&mut ready)
        .expect("the host says it is ready");
    if ready != "ready\n" {
        let _ = host.kill();
        let output = host.wait_with_output().expect("the host's output");
        panic!(
            "the host did not get ready (said {ready:?}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (host, host_out)
}

/// Waits for `host` to exit 0 with "host ok" as the rest of `host_out`.
fn host_ends_ok(host: Child, mut host_out: BufReader<ChildStdout>, guest: &Output) {
    let host_output = wait_within(host, Duration::from_secs(60));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut host_out, &mut rest).expect("the host's last words");
    assert!(
        host_output.status.success() && rest == "host ok\n",
        "the host failed ({}): said {rest:?}\n{}\n(the guest said: {})",
        host_output.status,
        String::from_utf8_lossy(&host_output.stderr),
        String::from_utf8_lossy(&guest.stderr)
    );
}

/// `tests/c/evict.c`: the host started from `host_exe`, the guest run by
/// `guest` (to its end), then the host told the guest's process is gone.
/// The guest's output.
fn eviction(host_exe: &Path, guest: &mut Command, segment: &Path, env: &[(&str, &str)]) -> Output {
    let (mut host, host_out) = start_host(host_exe, segment, env);
    let guest = run_ok(
        guest.arg("guest").arg(segment).envs(env.iter().copied()),
        "guest ok",
        Duration::from_secs(300),
    );
    host.stdin
        .take()
        .expect("the host's stdin")
        .write_all(b"gone\n")
        .ok();
    host_ends_ok(host, host_out, &guest);
    assert!(!segment.exists(), "the host's destroy removes the file");
    guest
}

// A host process and a guest process, built against the two libraries:
// inline and slot payloads both ways, a short buffer, timeouts, leaving.
#[test]
fn a_c_host_and_a_c_guest_talk_across_two_processes() {
    let dir = scratch();
    let (host_exe, guest_exe) = compile_both("tests/c/pair.c", dir.path(), "pair");
    let segment = dir.path().join("pair.shm");

    let (host, host_out) = start_host(&host_exe, &segment, &[]);
    let guest = run_ok(
        Command::new(&guest_exe).arg("guest").arg(&segment),
        "guest ok",
        Duration::from_secs(60),
    );
    host_ends_ok(host, host_out, &guest);
    assert!(!segment.exists(), "the host's destroy removes the file");
}

// A host evicts a guest of another process (the host linked with
// `libshmhub_c.a`, the guest with `libshmhub_c.so`): the guest's waiting
// receive ends with SHMHUB_ERR_CUT_OFF, and its send, the host's send to it
// and receive from it fail so too, each with the library's line; the host's
// own guest goes on, and the entry is reclaimed once the guest's process
// has gone.
#[test]
fn an_evicted_c_guest_is_cut_off_in_its_own_process() {
    let dir = scratch();
    let (host_exe, guest_exe) = compile_both("tests/c/evict.c", dir.path(), "evict");
    eviction(
        &host_exe,
        &mut Command::new(&guest_exe),
        &dir.path().join("evict.shm"),
        &[],
    );
}

// Every error code but the internal one, with its message.
#[test]
fn every_error_code_reaches_c_with_its_message() {
    let dir = scratch();
    let exe = dir.path().join("errors");
    compile("tests/c/errors.c", &exe, Link::Static);
    run_ok(
        Command::new(&exe).arg(dir.path()),
        "errors ok",
        Duration::from_secs(60),
    );
}

// The example that README shows how to build, built that way (against the
// shared library) and run.
#[test]
fn the_example_builds_and_runs() {
    let dir = scratch();
    let exe = dir.path().join("hello");
    compile("examples/hello.c", &exe, Link::Shared);
    let output = run_ok(
        Command::new(&exe).env("SHMHUB_EXAMPLE_DIR", dir.path()),
        "done",
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("HELLO"), "{stdout}");
}

/// Valgrind, if installed (or a failure if `SHMHUB_REQUIRE_VALGRIND` is
/// set); a missing one is said on the terminal, past the test's capture.
fn valgrind() -> Option<&'static str> {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("valgrind");
    }
    assert!(
        std::env::var_os("SHMHUB_REQUIRE_VALGRIND").is_none(),
        "valgrind is not installed, and SHMHUB_REQUIRE_VALGRIND is set"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: valgrind is not installed: the C programs were not run under it"
    );
    None
}

/// Valgrind's options: any error or definitely (or indirectly) lost block
/// fails the run.
const VALGRIND: &[&str] = &[
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-leak-kinds=definite,indirect",
    "--quiet",
];

// Every error path again under valgrind (linked statically, so that every
// byte of the library is checked), a guest of the two-process test, and an
// evicted guest: no invalid access, no uninitialized read, no leak.
#[test]
fn valgrind_finds_no_errors_and_no_leaks() {
    let Some(valgrind) = valgrind() else { return };
    let dir = scratch();
    let errors = dir.path().join("errors");
    compile("tests/c/errors.c", &errors, Link::Static);
    // The kernel's membarrier is not run under valgrind: every process of
    // a segment is told so (see README), for wakes not to wait on sleeps.
    let output = run_ok(
        Command::new(valgrind)
            .args(VALGRIND)
            .arg(&errors)
            .arg(dir.path())
            .env("SHMHUB_NO_MEMBARRIER", "1"),
        "errors ok",
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "valgrind said:\n{stderr}");

    let pair = dir.path().join("pair");
    compile("tests/c/pair.c", &pair, Link::Static);
    let segment = dir.path().join("pair.shm");
    let (host, _host_out) = start_host(&pair, &segment, &[("SHMHUB_NO_MEMBARRIER", "1")]);
    let output = run_ok(
        Command::new(valgrind)
            .args(VALGRIND)
            .arg(&pair)
            .arg("guest")
            .arg(&segment)
            .env("SHMHUB_NO_MEMBARRIER", "1"),
        "guest ok",
        Duration::from_secs(300),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "valgrind said:\n{stderr}");
    assert!(wait_within(host, Duration::from_secs(60)).status.success());

    let evict = dir.path().join("evict");
    compile("tests/c/evict.c", &evict, Link::Static);
    let output = eviction(
        &evict,
        Command::new(valgrind).args(VALGRIND).arg(&evict),
        &dir.path().join("evict.shm"),
        &[("SHMHUB_NO_MEMBARRIER", "1")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "valgrind said:\n{stderr}");
}
