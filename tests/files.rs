//! The segment as a file: bare names resolved in the shm directory (and
//! `SHMHUB_SHM_DIR`), removal with and without force, read-only
//! inspection that changes nothing, and the platforms the mapping exists
//! on.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use shmhub::admin::resolve_segment;
use shmhub::admin::{inspect_path, remove_segment, shm_dir};
use shmhub::{Error, PeerState, SegmentConfig, ShmGuest, ShmHost};
use support::fixtures::{data, remove_options, tmp, unix_ns};
use support::{Child, ChildEnv};

/// How long the child of [`shm_dir_env_overrides_the_default`] may take.
const CHILD_WAIT: Duration = Duration::from_secs(10);
/// A child still running after this long ends itself.
const CHILD_WATCHDOG: Duration = Duration::from_secs(20);

/// A copy of `src` at a new path in the same directory, for corrupting.
fn copy_to(src: &Path, name: &str) -> PathBuf {
    let dst = src.with_file_name(name);
    std::fs::write(&dst, std::fs::read(src).unwrap()).unwrap();
    dst
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

// shm[verify shm.file.path]
#[test]
fn bare_names_resolve_in_the_shm_dir_and_paths_are_kept() {
    let expected_dir = match std::env::var_os("SHMHUB_SHM_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    assert_eq!(shm_dir(), expected_dir);
    assert_eq!(
        resolve_segment("app.shm").unwrap(),
        expected_dir.join("app.shm")
    );
    for kept in ["./a.shm", "/tmp/x/y.shm", "../up.shm", "dir/"] {
        assert_eq!(resolve_segment(kept).unwrap(), PathBuf::from(kept));
    }
    let long = "n".repeat(256);
    for refused in ["", ".", "..", "a\0b", "/tmp/a\0b", long.as_str()] {
        assert!(resolve_segment(refused).is_err(), "{refused:?}");
    }
    assert!(resolve_segment(&"n".repeat(255)).is_ok());

    // A bare name is usable end to end: the file lands in the directory.
    let name = format!("shmhub-files-{}-{}.shm", std::process::id(), unix_ns());
    let path = resolve_segment(&name).unwrap();
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    assert!(expected_dir.join(&name).is_file());
    let guest = ShmGuest::attach_path(resolve_segment(&name).unwrap()).unwrap();
    drop(guest);
    drop(host);
    assert!(!expected_dir.join(&name).exists());
}

/// Runs a child role when this binary was started as a child (by
/// [`shm_dir_env_overrides_the_default`]); does nothing in a normal run.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG, |role, env| match role {
        "bare-name" => child_bare_name(env),
        other => bail!("unknown role {other}"),
    });
}

/// In a process whose environment sets the shm directory to `env.dir`:
/// the bare name `child.shm` resolves to `env.path`, and a segment is
/// created there.
fn child_bare_name(env: &ChildEnv) -> anyhow::Result<()> {
    ensure!(shm_dir() == env.dir, "shm_dir() is {}", shm_dir().display());
    let path = resolve_segment("child.shm")?;
    ensure!(path == env.path, "child.shm resolves to {}", path.display());
    ShmHost::create(&path, SegmentConfig::default())?.persist()?;
    Ok(())
}

// shm[verify shm.file.path]
#[test]
fn shm_dir_env_overrides_the_default() {
    let dir = tmp();
    let made = dir.path().join("child.shm");
    let shm_dir = dir.path().to_str().unwrap().to_string();
    let mut child = Child::spawn(
        "bare-name",
        &made,
        dir.path(),
        &[("SHMHUB_SHM_DIR", shm_dir)],
    );
    child.expect_success(CHILD_WAIT);
    // The child created its segment by bare name inside the directory.
    assert!(made.is_file());
    remove_segment(&made, remove_options(false, 1000), &mut |_| {}).unwrap();
}

// ---------------------------------------------------------------------------
// Removal
// ---------------------------------------------------------------------------

// shm[verify shm.file.remove]
#[test]
fn remove_refuses_what_is_not_a_segment_even_with_force() {
    let dir = tmp();
    let foreign = dir.path().join("foreign.bin");
    std::fs::write(&foreign, vec![0xABu8; 8192]).unwrap();
    let zeros = dir.path().join("zeros.bin");
    std::fs::write(&zeros, vec![0u8; 8192]).unwrap();
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"not a segment").unwrap();
    for force in [false, true] {
        let opts = remove_options(force, 0);
        assert!(matches!(
            remove_segment(&foreign, opts, &mut |_| {}),
            Err(Error::NotASegment { .. })
        ));
        assert!(matches!(
            remove_segment(&zeros, opts, &mut |_| {}),
            Err(Error::NotReady)
        ));
        assert!(matches!(
            remove_segment(&small, opts, &mut |_| {}),
            Err(Error::TooSmall { .. })
        ));
        assert!(matches!(
            remove_segment(dir.path(), opts, &mut |_| {}),
            Err(Error::Io { .. } | Error::NotAFile { .. })
        ));
    }
    assert_eq!(std::fs::read(&foreign).unwrap(), vec![0xABu8; 8192]);
    assert_eq!(std::fs::read(&zeros).unwrap(), vec![0u8; 8192]);
    assert_eq!(std::fs::read(&small).unwrap(), b"not a segment");

    // A symlink is refused, and neither it nor its target is removed.
    let seg = dir.path().join("real.shm");
    ShmHost::create(&seg, SegmentConfig::default())
        .unwrap()
        .persist()
        .unwrap();
    let link = dir.path().join("link.shm");
    std::os::unix::fs::symlink(&seg, &link).unwrap();
    assert!(matches!(
        remove_segment(&link, remove_options(true, 0), &mut |_| {}),
        Err(Error::Symlink { .. })
    ));
    assert!(link.symlink_metadata().is_ok() && seg.is_file());
    assert!(!inspect_path(&seg).unwrap().header.host_goodbye);
}

// shm[verify shm.file.remove]
#[test]
fn remove_deletes_a_segment_nobody_holds() {
    let dir = tmp();
    let path = dir.path().join("idle.shm");
    ShmHost::create(&path, SegmentConfig::default())
        .unwrap()
        .persist()
        .unwrap();
    // A scripted guest belongs to no process: it does not hold the file.
    ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let mut waits = 0;
    let report = remove_segment(&path, remove_options(false, 1000), &mut |_| waits += 1).unwrap();
    assert!(!path.exists());
    assert!(!report.removed_by_host);
    assert!(report.abandoned.is_empty());
    assert_eq!(waits, 0);
}

// shm[verify shm.file.remove]
#[test]
fn remove_waits_for_live_guests_and_gives_up_or_forces() {
    let dir = tmp();
    let path = dir.path().join("busy.shm");
    ShmHost::create(&path, SegmentConfig::default())
        .unwrap()
        .persist()
        .unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    let p = guest.peer_id();

    // Without force: it waits, then gives up, naming the guest, and takes
    // its goodbye back.
    let mut seen = Vec::new();
    let start = Instant::now();
    let err = remove_segment(&path, remove_options(false, 100), &mut |g| {
        seen.push(g.to_vec())
    })
    .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(100));
    match &err {
        Error::StillAttached { host, peers, .. } => {
            assert_eq!((*host, peers.as_slice()), (false, &[p][..]));
            assert!(
                err.to_string()
                    .contains(&format!("peer {p} is still attached")),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!seen.is_empty() && seen.iter().all(|g| g == &[p]));
    assert!(path.exists());
    assert!(!inspect_path(&path).unwrap().header.host_goodbye);
    guest.try_send(data(1, b"still here")).unwrap();

    // With force: deleted anyway, the guest reported as abandoned, and the
    // guest sees the goodbye.
    let report = remove_segment(&path, remove_options(true, 100), &mut |_| {}).unwrap();
    assert!(!path.exists());
    assert_eq!(report.abandoned, [p]);
    assert!(matches!(
        guest.try_send(data(2, b"hello?")),
        Err(Error::HostGone)
    ));
}

// shm[verify shm.file.remove]
#[test]
fn remove_lets_a_live_host_delete_its_own_file() {
    let dir = tmp();
    let path = dir.path().join("hosted.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let remover_path = path.clone();
    let remover = std::thread::spawn(move || {
        remove_segment(&remover_path, remove_options(false, 10_000), &mut |_| {})
    });
    // The host is alive (presence lock and pid): the remover waits, and
    // has asked it to leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !host.status().header().unwrap().host_goodbye {
        assert!(Instant::now() < deadline, "the remover never said goodbye");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(path.exists() && !remover.is_finished());
    drop(host);
    let report = remover.join().unwrap().unwrap();
    assert!(report.removed_by_host);
    assert!(!path.exists());
}

// shm[verify shm.file.remove]
#[test]
fn remove_deletes_a_damaged_segment_only_with_force() {
    let dir = tmp();
    let path = dir.path().join("v.shm");
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let copy = copy_to(&path, "v2.shm");
    let mut bytes = std::fs::read(&copy).unwrap();
    let future = shmhub::format::VERSION + 1;
    bytes[8..12].copy_from_slice(&future.to_le_bytes());
    std::fs::write(&copy, &bytes).unwrap();
    assert!(matches!(
        remove_segment(&copy, remove_options(false, 0), &mut |_| {}),
        Err(Error::VersionMismatch { found, .. }) if found == future
    ));
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    remove_segment(&copy, remove_options(true, 0), &mut |_| {}).unwrap();
    assert!(!copy.exists());
    drop(host);
}

// ---------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------

// shm[verify shm.inspect.read-only]
#[test]
fn inspect_reads_a_read_only_file_and_changes_nothing() {
    let dir = tmp();
    let path = dir.path().join("ro.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    let p = guest.peer_id();
    guest.try_send(data(1, &[5u8; 300])).unwrap();
    host.try_send(p, data(2, &[6u8; 300])).unwrap();
    drop(guest); // leaves its message behind: the entry is in Goodbye
    let other = ShmGuest::attach_path(&path).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let report = inspect_path(&path).unwrap();
    let again = inspect_path(&path).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "inspect wrote to the file"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o400
    );

    let first = &report.peers[usize::from(p) - 1];
    assert_eq!(first.entry.state, PeerState::Goodbye);
    assert_eq!(first.to_host.len(), Some(1));
    assert_eq!(first.to_guest.len(), Some(0), "detach drained it");
    assert_eq!(report.pools[usize::from(p)].usage.used, 1);
    assert_eq!(report.pools[0].usage.used, 0);
    let second = &report.peers[usize::from(other.peer_id()) - 1];
    assert_eq!(second.entry.state, PeerState::Attached);
    assert_eq!(second.holder, shmhub::HolderStatus::Alive);
    assert_eq!(report.host, shmhub::HostStatus::Alive);
    // Inspecting twice sees the same: it completed no goodbye.
    assert_eq!(
        again.peers[usize::from(p) - 1].entry.state,
        PeerState::Goodbye
    );

    // It took no lock: a new guest and the host still act on every role.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (from, frame) = host.try_recv().unwrap().unwrap();
    assert_eq!((from, frame.payload()), (p, &[5u8; 300][..]));
    drop(other);
}

// ---------------------------------------------------------------------------
// Space on the file system
// ---------------------------------------------------------------------------

/// Blocks allocated to the file at `path`, in bytes.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

// A sparse segment has its header's page reserved (writing the header can
// never fault); a preallocated one every page; a segment is usable either way.
// shm[verify shm.file.create]
#[test]
fn preallocated_segments_have_every_page() {
    let dir = tmp();
    let config = SegmentConfig {
        max_guests: 2,
        slot_size: 4096,
        slots_per_pool: 16,
        max_payload: 4096,
        ..SegmentConfig::default()
    };
    let sparse = dir.path().join("sparse.shm");
    let host = ShmHost::create(&sparse, config).unwrap();
    let len = host.layout().total_size;
    assert!(allocated(&sparse) >= 4096, "the header's page is reserved");
    assert!(allocated(&sparse) < len, "the rest is left sparse");

    let full = dir.path().join("full.shm");
    let options = shmhub::CreateOptions {
        preallocate: true,
        ..Default::default()
    };
    let mut host = ShmHost::create_with(&full, config, options).unwrap();
    assert!(allocated(&full) >= len, "{} of {len}", allocated(&full));
    let mut guest = ShmGuest::attach_path(&full).unwrap();
    host.send(
        guest.peer_id(),
        shmhub::Frame::new(Default::default(), vec![7; 4096]),
    )
    .unwrap();
    assert_eq!(guest.recv().unwrap().payload(), &[7; 4096][..]);
}

// ---------------------------------------------------------------------------
// Platforms
// ---------------------------------------------------------------------------

// This build cannot run on Windows, so the rule (no Windows backend: the
// crate refuses to compile there rather than misbehave) is checked on the
// source: the guard must sit in the crate root and be a compile error.
// shm[verify shm.file.mmap-windows]
#[test]
fn non_unix_targets_are_refused_at_compile_time() {
    let lib =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib/lib.rs")).unwrap();
    let guard = lib
        .find("#[cfg(not(unix))]")
        .expect("a #[cfg(not(unix))] guard in src/lib/lib.rs");
    let after = lib[guard + "#[cfg(not(unix))]".len()..].trim_start();
    assert!(
        after.starts_with("compile_error!"),
        "the guard must be a compile_error!, found {:?}",
        &after[..40.min(after.len())]
    );
}

/// Gives the file at `path` to user `nobody` (and `gid`) with `mode`;
/// false where that needs root and this is not.
fn give_away(path: &Path, gid: u32, mode: u32) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: changing a file's owner needs root");
        return false;
    }
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: chown reads the NUL-terminated path we own for the call.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, gid) }, 0);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    true
}

// shm[verify shm.file.owner]
#[test]
fn a_segment_another_user_owns_is_trusted_only_when_shared_or_allowed() {
    let dir = tmp();
    let path = dir.path().join("squatted.shm");
    ShmHost::create(&path, SegmentConfig::default())
        .unwrap()
        .persist()
        .unwrap();
    if !give_away(&path, 65534, 0o600) {
        return;
    }
    match ShmGuest::attach_path(&path) {
        Err(Error::ForeignOwner { uid, mode, .. }) => assert_eq!((uid, mode), (65534, 0o600)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ShmHost::open(&path),
        Err(Error::ForeignOwner { .. })
    ));
    let report = inspect_path(&path).unwrap();
    assert_eq!(report.owner.map(|o| o.uid), Some(65534));
    let allowed = shmhub::OpenOptions::new().allow_foreign_owner(true);
    let guest = allowed.attach(&path).unwrap();
    drop(guest);
    // Shared with a group this process is in (root's), on purpose: 0660.
    give_away(&path, 0, 0o660);
    drop(ShmGuest::attach_path(&path).unwrap());
    // The same group, but not shared on purpose: refused.
    give_away(&path, 0, 0o640);
    assert!(matches!(
        ShmGuest::attach_path(&path),
        Err(Error::ForeignOwner { .. })
    ));
}

/// One `fcntl` lock call of the shape `shm.lock.shape` gives, on `file`:
/// `command` with `l_type` `kind` on byte `byte`, `l_pid` 0. Returns the
/// call's result and the `flock` as the kernel left it.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
fn lock_call(
    file: &std::fs::File,
    command: libc::c_int,
    kind: libc::c_int,
    byte: u64,
) -> (std::io::Result<()>, libc::flock) {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; all zeroes is a valid value (l_pid 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // SAFETY: the lock commands read (and, for a test, rewrite) only the
    // flock we own, for the duration of the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), command, &mut fl as *mut libc::flock) };
    let result = if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    };
    (result, fl)
}

// A lock taken as the spec writes it, from an open file of another
// implementation, keeps the library out of that role, and the library's
// own locks show to such a test: the two agree byte for byte.
// shm[verify shm.lock.shape]
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
#[test]
fn role_locks_of_the_documented_shape_exclude_the_library_and_show_its_own() {
    const BASE: u64 = 1 << 40;
    let dir = tmp();
    let path = dir.path().join("shape.shm");
    let config = SegmentConfig {
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let foreign = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // The foreign process holds guest 1's presence: a claim passes it over.
    let (taken, _) = lock_call(&foreign, libc::F_OFD_SETLK, libc::F_WRLCK, BASE + 1);
    taken.unwrap();
    let guest = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(guest.peer_id(), 2);
    // The library's presence lock of entry 2 shows to a test, and refuses
    // a take, from the foreign file.
    let (tested, fl) = lock_call(&foreign, libc::F_OFD_GETLK, libc::F_WRLCK, BASE + 2);
    tested.unwrap();
    assert_eq!(fl.l_type, libc::F_WRLCK as libc::c_short);
    let (refused, _) = lock_call(&foreign, libc::F_OFD_SETLK, libc::F_WRLCK, BASE + 2);
    let code = refused.unwrap_err().raw_os_error();
    assert!(
        matches!(code, Some(libc::EAGAIN) | Some(libc::EACCES)),
        "{code:?}"
    );
    // A free byte tests as free.
    let (tested, fl) = lock_call(&foreign, libc::F_OFD_GETLK, libc::F_WRLCK, BASE + 3);
    tested.unwrap();
    assert_eq!(fl.l_type, libc::F_UNLCK as libc::c_short);
    // The foreign guest-to-host consumer lock of guest 2 (kind 4) keeps
    // the host from receiving as that guest's consumer.
    let (taken, _) = lock_call(
        &foreign,
        libc::F_OFD_SETLK,
        libc::F_WRLCK,
        BASE + 4 * 1024 + 2,
    );
    taken.unwrap();
    assert!(matches!(
        host.recv_from_timeout(2, std::time::Duration::from_millis(20)),
        Err(Error::Busy { .. })
    ));
    // Released, entry 1 is free to claim.
    let (released, _) = lock_call(&foreign, libc::F_OFD_SETLK, libc::F_UNLCK, BASE + 1);
    released.unwrap();
    let first = ShmGuest::attach_path(&path).unwrap();
    assert_eq!(first.peer_id(), 1);
    drop((first, guest));
}

// A slot is called leaked only when nothing alive can free it: a command
// acting as a scripted guest (which belongs to no process) and holding a
// message it received is alive in that guest's receiving role, so the
// slot is not leaked; once nobody acts as the guest, the same slot is.
// shm[verify shm.inspect.slots]
#[test]
fn a_slot_held_in_a_live_role_of_a_scripted_guest_is_not_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roles.shm");
    let mut host = shmhub::ShmHost::create(&path, shmhub::SegmentConfig::default()).unwrap();
    let (p, _) = shmhub::ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let payload = vec![7u8; 500];
    host.send(p, shmhub::Frame::new(shmhub::MsgDesc::default(), payload))
        .unwrap();
    let mut acting = shmhub::ShmGuest::resume(&path, p).unwrap();
    let held = acting
        .receiver()
        .recv(std::time::Duration::ZERO)
        .unwrap()
        .expect("queued");
    let report = shmhub::admin::inspect_slots(&path).unwrap();
    let slot = &report.slots[0];
    assert_eq!(
        (slot.holder_party, slot.holder_alive, slot.leaked),
        (Some(p.get()), Some(false), false),
        "{slot:?}"
    );
    // Nobody acts as the guest any more, and nobody will free the slot.
    std::mem::forget(held);
    drop(acting);
    let report = shmhub::admin::inspect_slots(&path).unwrap();
    assert!(report.slots[0].leaked, "{:?}", report.slots[0]);
}
