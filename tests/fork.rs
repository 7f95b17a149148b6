//! A process that forks while it holds a host, a guest and a received
//! message: the copies, dropped in the child, leave all three to the parent
//! (`shm.file.fork`). The forking runs in a fresh child process of its own
//! (this test binary run again), which has one thread, as `fork` wants.

mod support;

use std::time::Duration;

use anyhow::{Context, ensure};
use shmhub::{Frame, MsgDesc, PeerState, SegmentConfig, ShmGuest, ShmHost};
use support::{Child, ChildEnv};

#[test]
fn child_entry() {
    support::child_main(Duration::from_secs(60), |role, env| match role {
        "forker" => forker(env),
        other => anyhow::bail!("unknown role {other}"),
    });
}

/// Creates a segment, attaches a guest, receives a slot message, forks;
/// the forked copy drops everything and exits; then everything must still
/// be the parent's.
fn forker(env: &ChildEnv) -> anyhow::Result<()> {
    let mut host = ShmHost::create(&env.path, SegmentConfig::default())?;
    let mut guest = ShmGuest::attach_path(&env.path)?;
    let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    host.send(
        guest.peer_id(),
        Frame::new(MsgDesc::new(1, 1), payload.clone()),
    )?;
    let message = guest
        .receiver()
        .recv(Duration::from_secs(5))?
        .context("the message")?;
    // SAFETY: this process has one thread (the harness runs the child's
    // one test on it), so the copy holds no lock another thread held; it
    // only drops values and leaves with _exit.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(message);
        drop(guest);
        drop(host);
        // SAFETY: ends the forked copy at once, running none of the
        // parent's exit handlers or destructors twice.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked, into an owned int.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        waited == pid && status == 0,
        "the forked child: status {status}"
    );
    ensure!(
        env.path.exists(),
        "the forked copy of the host deleted the file"
    );
    ensure!(
        !host.status().header()?.host_goodbye,
        "the forked copy said goodbye"
    );
    let entry = host.status().peer(guest.peer_id())?;
    ensure!(
        entry.state == PeerState::Attached,
        "the forked copy detached: {entry:?}"
    );
    ensure!(
        message.payload() == &payload[..],
        "the lent slot changed under the parent"
    );
    let used = shmhub::admin::inspect_path(&env.path)?.pools[0].usage.used;
    ensure!(
        used == 1,
        "the forked copy freed the lent slot ({used} in use)"
    );
    drop(message);
    let used = shmhub::admin::inspect_path(&env.path)?.pools[0].usage.used;
    ensure!(used == 0, "the parent's drop freed it ({used} in use)");
    // And everything works on.
    guest.send(Frame::new(MsgDesc::new(1, 2), b"still here".to_vec()))?;
    let (_, got) = host
        .recv_timeout(Duration::from_secs(5))?
        .context("the reply")?;
    ensure!(got.payload() == b"still here");
    guest.detach()?;
    drop(host);
    ensure!(!env.path.exists(), "the parent's host deletes its file");
    Ok(())
}

// shm[verify shm.file.fork]
#[test]
fn handles_copied_by_fork_leave_everything_to_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fork.shm");
    let mut child = Child::spawn("forker", &path, dir.path(), &[]);
    child.expect_success(Duration::from_secs(60));
}
