//! Integration tests in which a real second process takes part: a guest
//! and a host in different processes, a process killed mid-way.
//!
//! The children are this test binary run again through the harness of
//! `tests/support` ([`Child::spawn`]), each in one of the roles that
//! [`child_entry`] dispatches. Nothing here waits without a deadline
//! ([`WAIT`]): the parent kills a child that overstays, and every child
//! arms a watchdog ([`CHILD_WATCHDOG`]) that ends it regardless.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::admin::{SegmentReport, SkipReason};
use shmhub::{
    Error, Frame, HolderStatus, INLINE_CAPACITY, IntoPeerId, MsgDesc, PeerId, PeerState,
    SegmentConfig, ShmGuest, ShmHost, WaitStrategy, msg_type,
};
use support::{Child, ChildEnv, signal};

const PEER_ENV: &str = "SHMHUB_TEST_PEER";
const EPOCH_ENV: &str = "SHMHUB_TEST_EPOCH";
const STRATEGY_ENV: &str = "SHMHUB_TEST_STRATEGY";
const EXPECT_ENV: &str = "SHMHUB_TEST_EXPECT";

/// How long any single wait (a message, a child's signal, its exit) may take.
const WAIT: Duration = Duration::from_secs(5);
/// A child that is still running after this long ends itself.
const CHILD_WATCHDOG: Duration = Duration::from_secs(20);

/// Payload sizes of the exchange test: empty, small inline, the largest
/// inline, the smallest slot, a mid-size slot and a full 64 KiB slot.
const SIZES: [usize; 6] = [0, 5, INLINE_CAPACITY, INLINE_CAPACITY + 1, 1000, 65536];
const EXCHANGE_COUNT: u64 = 200;
/// Id of the message that ends the exchange.
const DONE_ID: u64 = u64::MAX;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The deterministic payload of message `i` of the exchange.
fn exchange_payload(i: u64) -> Vec<u8> {
    let len = SIZES[(i % SIZES.len() as u64) as usize];
    (0..len)
        .map(|j| (i as usize * 131 + j * 7 + (j >> 8) + 1) as u8)
        .collect()
}

/// A payload of `len` bytes seeded by `seed`.
fn seeded(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| seed.wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

fn frame(msg_type: u16, id: u64, method_id: u32, payload: Vec<u8>) -> Frame {
    Frame::new(
        MsgDesc {
            msg_type,
            id,
            method_id,
            ..MsgDesc::default()
        },
        payload,
    )
}

/// Checks every field a receiver can see against what was sent.
fn check_frame(
    got: &Frame,
    msg_type: u16,
    id: u64,
    method_id: u32,
    payload: &[u8],
) -> anyhow::Result<()> {
    ensure!(
        got.desc.id == id,
        "expected message id {id}, got {} (order broken or message lost)",
        got.desc.id
    );
    ensure!(
        got.desc.msg_type == msg_type,
        "message {id}: type {} instead of {msg_type}",
        got.desc.msg_type
    );
    ensure!(
        got.desc.method_id == method_id,
        "message {id}: method {} instead of {method_id}",
        got.desc.method_id
    );
    ensure!(
        got.payload().len() == payload.len(),
        "message {id}: {} payload bytes instead of {}",
        got.payload().len(),
        payload.len()
    );
    if let Some(at) = got.payload().iter().zip(payload).position(|(a, b)| a != b) {
        bail!("message {id}: payload differs at byte {at}");
    }
    ensure!(
        got.desc.is_slot() == (payload.len() > INLINE_CAPACITY),
        "message {id} of {} bytes: placement is_slot = {}",
        payload.len(),
        got.desc.is_slot()
    );
    Ok(())
}

fn pools_used(report: &SegmentReport) -> Vec<(String, u32)> {
    report
        .pools
        .iter()
        .filter(|p| p.usage.used != 0)
        .map(|p| (p.owner_name.clone(), p.usage.used))
        .collect()
}

fn all_slots_free(path: &Path) -> anyhow::Result<()> {
    let report = shmhub::admin::inspect_path(path).context("inspect")?;
    let used = pools_used(&report);
    ensure!(used.is_empty(), "slots still in use: {used:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// The parent's side
// ---------------------------------------------------------------------------

/// Receives one message on the host, failing (with the child's output)
/// after [`WAIT`].
fn host_recv(host: &mut ShmHost, child: &mut Child) -> (PeerId, Frame) {
    match host.recv_timeout(Some(WAIT)) {
        Ok(Some(m)) => m,
        Ok(None) => child.fail("host: no message from the child in time"),
        Err(e) => child.fail(&format!("host: receive failed: {e}")),
    }
}

fn host_send(host: &mut ShmHost, peer: impl IntoPeerId, f: &Frame, child: &mut Child) {
    if let Err(e) = host.send_timeout(peer, f, Some(WAIT)) {
        child.fail(&format!("host: send of message {} failed: {e}", f.desc.id));
    }
}

fn peer_report(path: &Path, peer: impl IntoPeerId) -> shmhub::admin::PeerReport {
    let report = shmhub::admin::inspect_path(path).unwrap();
    report.peer(peer).expect("an entry of the segment").clone()
}

// ---------------------------------------------------------------------------
// The child's side
// ---------------------------------------------------------------------------

/// Runs a child role when this binary was started as a child; otherwise
/// (a normal test run) does nothing.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG, |role, env| match role {
        "echo" => child_echo(env),
        "hoard" => child_hoard(env),
        "reattach" => child_reattach(env),
        "idle" => child_idle(env),
        "sleeper" => child_sleeper(env),
        "host" => child_host(env),
        "judge" => child_judge(env),
        "hold_received" => child_hold_received(env),
        "from_env" => child_from_env(),
        "env_refused" => child_env_refused(env),
        "reserver" => child_reserver(env),
        "come_and_go" => child_come_and_go(env),
        other => bail!("unknown role {other}"),
    });
}

fn recv_within(guest: &mut ShmGuest, what: &str) -> anyhow::Result<Frame> {
    guest
        .recv_timeout(Some(WAIT))
        .with_context(|| format!("receive {what}"))?
        .with_context(|| format!("timed out waiting for {what}"))
}

/// The spawned program: attaches where its environment says, takes what
/// the host sent ahead and sends it back.
fn child_from_env() -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_from_env().context("attach from the environment")?;
    let named: u8 = std::env::var(shmhub::admin::SpawnTicket::PEER_ID_ENV)?.parse()?;
    ensure!(guest.peer_id() == named, "attached as {}", guest.peer_id());
    let got = recv_within(&mut guest, "what was sent ahead")?;
    let echo = frame(msg_type::RESPONSE, got.desc.id, 0, got.into_payload());
    guest.send_timeout(&echo, Some(WAIT)).context("echo")?;
    guest.detach().context("detach")?;
    Ok(())
}

/// A program started with a malformed environment: attaching fails with
/// the `Env` error naming the variable in `SHMHUB_TEST_EXPECT`.
fn child_env_refused(env: &ChildEnv) -> anyhow::Result<()> {
    let expected = env.var(EXPECT_ENV)?;
    match ShmGuest::attach_from_env() {
        Err(Error::Env { var, .. }) if var == expected => Ok(()),
        other => bail!("expected an Env error naming {expected}, got {other:?}"),
    }
}

/// Test 1's guest: attaches in the reserved entry, checks every message and
/// echoes it, then checks that every slot is free.
fn child_echo(env: &ChildEnv) -> anyhow::Result<()> {
    let peer: u8 = env.parse(PEER_ENV)?;
    let mut guest = ShmGuest::attach_path_with_id(&env.path, peer).context("attach")?;
    ensure!(guest.peer_id() == peer, "attached as {}", guest.peer_id());
    for i in 0..EXCHANGE_COUNT {
        let got = recv_within(&mut guest, &format!("message {i}"))?;
        let payload = exchange_payload(i);
        check_frame(&got, msg_type::DATA, i, (i * 3) as u32, &payload)?;
        let echo = frame(msg_type::RESPONSE, i, (i * 3) as u32, got.into_payload());
        guest
            .send_timeout(&echo, Some(WAIT))
            .with_context(|| format!("echo {i}"))?;
    }
    let done = recv_within(&mut guest, "the done message")?;
    check_frame(&done, msg_type::DATA, DONE_ID, 0, b"done")?;
    // The host has read every echo before it sent "done", and this side
    // has read everything the host sent.
    all_slots_free(&env.path)?;
    guest.detach().context("detach")?;
    Ok(())
}

/// Test 2's first guest: leaves messages unread both ways, then waits to
/// be killed.
fn child_hoard(env: &ChildEnv) -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    for i in 0..5u8 {
        guest
            .send_timeout(
                frame(msg_type::DATA, i.into(), 0, seeded(i, 1000)),
                Some(WAIT),
            )
            .context("send slot message")?;
    }
    for i in 5..7u8 {
        guest
            .send_timeout(frame(msg_type::DATA, i.into(), 0, vec![i; 3]), Some(WAIT))
            .context("send inline message")?;
    }
    signal(&env.dir, "hoarded", &guest.peer_id().to_string())?;
    // Receives nothing: the host's messages (and their slots) pile up
    // until this process is killed.
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Test 2's second guest: takes the reclaimed entry, then exchanges an
/// inline and a slot message each way.
fn child_reattach(env: &ChildEnv) -> anyhow::Result<()> {
    let peer: u8 = env.parse(PEER_ENV)?;
    let epoch: u32 = env.parse(EPOCH_ENV)?;
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    ensure!(
        guest.peer_id() == peer,
        "attached as peer {}, expected the reclaimed peer {peer}",
        guest.peer_id()
    );
    ensure!(
        guest.epoch() == epoch,
        "epoch {}, expected {epoch}",
        guest.epoch()
    );
    signal(&env.dir, "reattached", "")?;
    let small = recv_within(&mut guest, "the inline message")?;
    check_frame(&small, msg_type::REQUEST, 1, 7, b"hi guest")?;
    let big = recv_within(&mut guest, "the slot message")?;
    check_frame(&big, msg_type::REQUEST, 2, 7, &seeded(2, 5000))?;
    guest
        .send_timeout(
            frame(msg_type::RESPONSE, 1, 7, b"hi host".to_vec()),
            Some(WAIT),
        )
        .context("send inline reply")?;
    guest
        .send_timeout(frame(msg_type::RESPONSE, 2, 7, seeded(3, 6000)), Some(WAIT))
        .context("send slot reply")?;
    let bye = recv_within(&mut guest, "the goodbye message")?;
    check_frame(&bye, msg_type::DATA, DONE_ID, 0, b"bye")?;
    guest.detach().context("detach")?;
    Ok(())
}

/// Test 3's guest: attaches, then waits (beating) until told to quit.
fn child_idle(env: &ChildEnv) -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    signal(&env.dir, "idle", &guest.peer_id().to_string())?;
    let quit = recv_within(&mut guest, "the quit message")?;
    check_frame(&quit, msg_type::DATA, DONE_ID, 0, b"quit")?;
    guest.detach().context("detach")?;
    Ok(())
}

/// A process that reserves an entry for a program it never starts, and
/// ends without releasing it (as a `shmhub spawn` killed by SIGKILL).
fn child_reserver(env: &ChildEnv) -> anyhow::Result<()> {
    let mut host = ShmHost::open(&env.path).context("open as host")?;
    let reserved = host.reserve_peer().context("reserve")?;
    signal(&env.dir, "reserved", &reserved.to_string())?;
    Ok(())
}

/// A guest that attaches and leaves at once, before the host looks.
fn child_come_and_go(env: &ChildEnv) -> anyhow::Result<()> {
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    guest.detach().context("detach")?;
    Ok(())
}

/// Test 4's guest: blocks in `recv`, answers, blocks again and must be
/// woken by the host's goodbye.
fn child_sleeper(env: &ChildEnv) -> anyhow::Result<()> {
    let strategy = match env.var(STRATEGY_ENV)?.as_str() {
        "block" => WaitStrategy::Block,
        "adaptive" => WaitStrategy::Adaptive,
        other => bail!("unknown strategy {other}"),
    };
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    guest.set_wait_strategy(strategy);
    signal(&env.dir, "sleeping", &guest.peer_id().to_string())?;
    let started = Instant::now();
    let got = guest.recv().context("first recv")?;
    check_frame(&got, msg_type::REQUEST, 1, 0, &seeded(9, 1000))?;
    // The host waits ~100 ms before sending, so this recv really slept.
    ensure!(
        started.elapsed() >= Duration::from_millis(50),
        "recv returned after only {:?}",
        started.elapsed()
    );
    guest
        .send_timeout(
            frame(msg_type::RESPONSE, 1, 0, b"awake".to_vec()),
            Some(WAIT),
        )
        .context("reply")?;
    match guest.recv() {
        Err(Error::HostGone) => {}
        Err(e) => bail!("second recv failed with {e:?} ({e}), not HostGone"),
        Ok(f) => bail!(
            "second recv returned message {} instead of HostGone",
            f.desc.id
        ),
    }
    ensure!(
        guest.status().host_status()? == shmhub::HostStatus::Gone,
        "host status is {}",
        guest.status().host_status()?
    );
    drop(guest);
    Ok(())
}

/// Test 5's host: creates the segment, then waits to be killed.
fn child_host(env: &ChildEnv) -> anyhow::Result<()> {
    let config = SegmentConfig {
        max_guests: 2,
        ring_capacity: 16,
        slot_size: 4096,
        max_payload: 4096,
        slots_per_pool: 8,
        ..SegmentConfig::default()
    };
    let _host = ShmHost::create(&env.path, config).context("create")?;
    signal(&env.dir, "hosting", "")?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reports, from another process, how `inspect` judges the host and each
/// guest: "host=alive 1=alive 2=-".
fn child_judge(env: &ChildEnv) -> anyhow::Result<()> {
    let report = shmhub::admin::inspect_path(&env.path).context("inspect")?;
    let mut verdict = format!("host={}", report.host);
    for peer in &report.peers {
        verdict.push_str(&format!(" {}={}", peer.entry.peer_id, peer.holder));
    }
    signal(&env.dir, "judged", &verdict)
}

/// Attaches (a plain attach), receives one message in place and keeps it,
/// its slot held, until it is killed.
fn child_hold_received(env: &ChildEnv) -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    signal(&env.dir, "attached", &guest.peer_id().to_string())?;
    let received = guest
        .receiver()
        .recv(Some(WAIT))
        .context("receive")?
        .context("no message in time")?;
    signal(&env.dir, "holding", &received.payload().len().to_string())?;
    std::thread::sleep(CHILD_WATCHDOG);
    drop(received);
    Ok(())
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

// shm[verify shm.file.mmap-posix]
// shm[verify shm.file.attach]
#[test]
fn host_and_guest_process_exchange_inline_and_slot_messages_both_ways() {
    exchange_with_echo_child(&[]);
}

// The guest behaves as on a kernel that refuses `membarrier`: it publishes
// with a fence and, asleep or detaching, does not count on the barrier,
// while this host publishes without one. Nothing may be lost or left
// behind either way.
// shm[verify shm.ring.wake]
#[test]
fn the_exchange_holds_with_a_guest_that_the_kernel_refuses_the_barrier() {
    exchange_with_echo_child(&[(shmhub::sys::NO_MEMBARRIER_ENV, "1".to_string())]);
}

/// The exchange: the host sends `EXCHANGE_COUNT` messages of every size to
/// an echoing guest process (started with `child_env` besides its peer
/// id), checks every echo, and finds every slot back and the entry free
/// once the guest has detached.
fn exchange_with_echo_child(child_env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchange.shm");
    let config = SegmentConfig {
        slot_size: 64 * 1024,
        max_payload: 64 * 1024,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let peer = host.reserve_peer().unwrap();
    let mut env = vec![(PEER_ENV, peer.to_string())];
    env.extend_from_slice(child_env);
    let mut child = Child::spawn("echo", &path, dir.path(), &env);

    // Send everything, draining echoes whenever the ring or the pool is
    // full, so neither side waits for the other forever.
    let mut next_echo = 0u64;
    let check_echo = |next_echo: &mut u64, from: PeerId, got: Frame, child: &mut Child| {
        if from != peer {
            child.fail(&format!("echo from peer {from}, expected {peer}"));
        }
        let i = *next_echo;
        if let Err(e) = check_frame(
            &got,
            msg_type::RESPONSE,
            i,
            (i * 3) as u32,
            &exchange_payload(i),
        ) {
            child.fail(&format!("host: bad echo: {e:#}"));
        }
        *next_echo += 1;
    };
    for i in 0..EXCHANGE_COUNT {
        let msg = frame(msg_type::DATA, i, (i * 3) as u32, exchange_payload(i));
        let deadline = Instant::now() + WAIT;
        loop {
            match host.try_send(peer, &msg) {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {}
                Err(e) => child.fail(&format!("host: send {i} failed: {e}")),
            }
            if Instant::now() >= deadline {
                child.fail(&format!("host: could not send message {i} in time"));
            }
            // No room: take an echo (freeing one of the guest's slots so
            // it can go on), waiting briefly for one to come.
            match host.recv_timeout(Some(Duration::from_millis(1))) {
                Ok(Some((from, got))) => check_echo(&mut next_echo, from, got, &mut child),
                Ok(None) => {}
                Err(e) => child.fail(&format!("host: receive failed: {e}")),
            }
        }
        while let Some((from, got)) = host.try_recv().unwrap() {
            check_echo(&mut next_echo, from, got, &mut child);
        }
    }
    while next_echo < EXCHANGE_COUNT {
        let (from, got) = host_recv(&mut host, &mut child);
        check_echo(&mut next_echo, from, got, &mut child);
    }
    assert!(host.try_recv().unwrap().is_none(), "more echoes than sent");

    // Every slot of both pools went back.
    if let Err(e) = all_slots_free(&path) {
        child.fail(&format!("host side: {e:#}"));
    }
    let done = frame(msg_type::DATA, DONE_ID, 0, b"done".to_vec());
    host_send(&mut host, peer, &done, &mut child);
    child.expect_success(WAIT);

    let entry = peer_report(&path, peer);
    assert_eq!(entry.entry.state, PeerState::Empty, "{entry:?}");
    all_slots_free(&path).unwrap();
    drop(host);
    assert!(!path.exists());
}

// shm[verify shm.peer.reclaim]
// shm[verify shm.peer.liveness]
#[test]
fn killed_guest_is_detected_and_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reclaim.shm");
    let config = SegmentConfig {
        max_guests: 4,
        ring_capacity: 16,
        slot_size: 8192,
        max_payload: 8192,
        slots_per_pool: 16,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let mut child = Child::spawn("hoard", &path, dir.path(), &[]);
    let peer: u8 = child.await_signal("hoarded", WAIT).parse().unwrap();

    // The host sends the guest slot messages it will never read.
    for i in 0..4u8 {
        let f = frame(msg_type::DATA, i.into(), 0, seeded(i, 2000));
        host_send(&mut host, peer, &f, &mut child);
    }
    host_send(
        &mut host,
        peer,
        &frame(msg_type::DATA, 4, 0, b"inline".to_vec()),
        &mut child,
    );

    let before = shmhub::admin::inspect_path(&path).unwrap();
    let entry = &before.peers[peer as usize - 1];
    assert_eq!(entry.entry.state, PeerState::Attached);
    assert_eq!(entry.entry.pid, child.pid());
    assert_eq!(entry.holder, HolderStatus::Alive, "{entry:?}");
    assert_eq!(entry.to_host.len(), Some(7), "{entry:?}");
    assert_eq!(entry.to_guest.len(), Some(5), "{entry:?}");
    assert_eq!(before.pools[0].usage.used, 4, "{:?}", before.pools);
    assert_eq!(
        before.pools[peer as usize].usage.used, 5,
        "{:?}",
        before.pools
    );
    let old_epoch = entry.entry.epoch;

    // SIGKILL: no destructor runs, nothing is detached.
    let status = child.kill();
    assert!(!status.success());

    let dead = peer_report(&path, peer);
    assert_eq!(dead.entry.state, PeerState::Attached, "{dead:?}");
    assert_eq!(dead.holder, HolderStatus::Dead, "{dead:?}");

    assert_eq!(host.reclaim_dead().unwrap(), vec![peer]);

    let after = shmhub::admin::inspect_path(&path).unwrap();
    assert!(pools_used(&after).is_empty(), "{:?}", pools_used(&after));
    let entry = &after.peers[peer as usize - 1];
    assert_eq!(entry.entry.state, PeerState::Empty, "{entry:?}");
    assert_eq!(entry.holder, HolderStatus::NoProcess, "{entry:?}");
    assert!(entry.to_host.is_empty(), "{entry:?}");
    assert!(entry.to_guest.is_empty(), "{entry:?}");
    assert_eq!(entry.entry.epoch, old_epoch, "the epoch moves on at attach");
    // Nothing is left for the host to read, and nobody to send to: the
    // guest it held has gone, as a receive would say.
    assert!(host.try_recv().unwrap().is_none());
    let err = host
        .try_send(peer, frame(msg_type::DATA, 9, 0, b"x".to_vec()))
        .unwrap_err();
    assert!(matches!(err, Error::PeerGone { .. }), "{err}");
    // A second sweep finds nothing more.
    assert!(host.reclaim_dead().unwrap().is_empty());

    // A new process takes the same entry, one epoch on, and it works.
    let mut child = Child::spawn(
        "reattach",
        &path,
        dir.path(),
        &[
            (PEER_ENV, peer.to_string()),
            (EPOCH_ENV, (old_epoch + 1).to_string()),
        ],
    );
    child.await_signal("reattached", WAIT);
    let entry = peer_report(&path, peer);
    assert_eq!(entry.entry.epoch, old_epoch + 1);
    assert_eq!(entry.entry.pid, child.pid());
    assert_eq!(entry.holder, HolderStatus::Alive);

    host_send(
        &mut host,
        peer,
        &frame(msg_type::REQUEST, 1, 7, b"hi guest".to_vec()),
        &mut child,
    );
    host_send(
        &mut host,
        peer,
        &frame(msg_type::REQUEST, 2, 7, seeded(2, 5000)),
        &mut child,
    );
    for (id, payload) in [(1, b"hi host".to_vec()), (2, seeded(3, 6000))] {
        let (from, got) = host_recv(&mut host, &mut child);
        assert_eq!(from, peer);
        if let Err(e) = check_frame(&got, msg_type::RESPONSE, id, 7, &payload) {
            child.fail(&format!("host: bad reply: {e:#}"));
        }
    }
    host_send(
        &mut host,
        peer,
        &frame(msg_type::DATA, DONE_ID, 0, b"bye".to_vec()),
        &mut child,
    );
    child.expect_success(WAIT);

    let end = shmhub::admin::inspect_path(&path).unwrap();
    assert!(pools_used(&end).is_empty(), "{:?}", pools_used(&end));
    assert_eq!(end.peers[peer as usize - 1].entry.state, PeerState::Empty);
}

// shm[verify shm.peer.liveness]
#[test]
fn live_guest_is_not_reclaimed_and_unowned_entry_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alive.shm");
    let mut config = SegmentConfig {
        max_guests: 4,
        ring_capacity: 16,
        slot_size: 4096,
        max_payload: 4096,
        slots_per_pool: 8,
        ..SegmentConfig::default()
    };
    // Heartbeats on: a holder that stops beating for a second is stale.
    config.heartbeat_interval_ms = 100;
    let mut host = ShmHost::create(&path, config).unwrap();
    let mut child = Child::spawn("idle", &path, dir.path(), &[]);
    let live: u8 = child.await_signal("idle", WAIT).parse().unwrap();

    let entry = peer_report(&path, live);
    assert_eq!(entry.entry.state, PeerState::Attached);
    assert_eq!(entry.entry.pid, child.pid());
    assert_eq!(entry.holder, HolderStatus::Alive, "{entry:?}");
    assert!(host.reclaim_dead().unwrap().is_empty());

    // An entry claimed for scripted use belongs to no process.
    let scripted = ShmGuest::attach_path(&path).unwrap();
    let (unowned, epoch) = scripted.release_to_script().unwrap();
    assert_ne!(unowned, live);
    let entry = peer_report(&path, unowned);
    assert_eq!(entry.entry.state, PeerState::Attached);
    assert_eq!(entry.holder, HolderStatus::Scripted, "{entry:?}");

    assert!(host.reclaim_dead().unwrap().is_empty());

    // Past the stale threshold (three intervals, at least one second): the
    // child, waiting in recv, has kept beating; the unowned entry, which
    // nobody beats for, is still only unowned.
    std::thread::sleep(Duration::from_millis(1200));
    child.check_running();
    assert!(host.reclaim_dead().unwrap().is_empty());
    let report = shmhub::admin::inspect_path(&path).unwrap();
    let u = &report.peers[usize::from(unowned) - 1];
    assert_eq!(
        (u.entry.state, u.entry.epoch, u.holder),
        (PeerState::Attached, epoch, HolderStatus::Scripted)
    );
    let l = &report.peers[usize::from(live) - 1];
    assert_eq!(
        (l.entry.state, l.holder),
        (PeerState::Attached, HolderStatus::Alive),
        "{l:?}"
    );
    assert!(l.heartbeat_age_ms.is_some_and(|age| age < 1000), "{l:?}");

    // The live child still works and leaves cleanly.
    host_send(
        &mut host,
        live,
        &frame(msg_type::DATA, DONE_ID, 0, b"quit".to_vec()),
        &mut child,
    );
    child.expect_success(WAIT);
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(
        report.peers[usize::from(live) - 1].entry.state,
        PeerState::Empty
    );
    assert_eq!(
        report.peers[usize::from(unowned) - 1].holder,
        HolderStatus::Scripted
    );
    // The scripted entry goes only when released explicitly.
    assert!(host.reclaim_dead().unwrap().is_empty());
    ShmGuest::release(&path, unowned).unwrap();
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(
        report.peers[usize::from(unowned) - 1].entry.state,
        PeerState::Empty
    );
}

// shm[verify shm.host.goodbye]
// shm[verify shm.ring.wake]
#[test]
fn guest_blocked_in_recv_is_woken_by_host_message_and_by_goodbye() {
    // The second time round, the guest behaves as on a kernel that
    // refuses `membarrier`: it naps instead of counting on the barrier,
    // while this host publishes without a fence.
    let refused = [(shmhub::sys::NO_MEMBARRIER_ENV, "1".to_string())];
    for (strategy, extra_env) in [
        ("block", &[][..]),
        ("adaptive", &[][..]),
        ("block", &refused[..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("wake-{strategy}.shm"));
        let config = SegmentConfig {
            max_guests: 2,
            ring_capacity: 16,
            slot_size: 4096,
            max_payload: 4096,
            slots_per_pool: 8,
            ..SegmentConfig::default()
        };
        let mut host = ShmHost::create(&path, config).unwrap();
        let mut env = vec![(STRATEGY_ENV, strategy.to_string())];
        env.extend_from_slice(extra_env);
        let mut child = Child::spawn("sleeper", &path, dir.path(), &env);
        let peer: u8 = child.await_signal("sleeping", WAIT).parse().unwrap();

        std::thread::sleep(Duration::from_millis(100));
        child.check_running();
        host_send(
            &mut host,
            peer,
            &frame(msg_type::REQUEST, 1, 0, seeded(9, 1000)),
            &mut child,
        );
        let (from, got) = host_recv(&mut host, &mut child);
        assert_eq!(from, peer);
        if let Err(e) = check_frame(&got, msg_type::RESPONSE, 1, 0, b"awake") {
            child.fail(&format!("{strategy}: bad reply: {e:#}"));
        }

        // Let the child go back to sleep, then leave: goodbye and delete.
        std::thread::sleep(Duration::from_millis(100));
        child.check_running();
        drop(host);
        assert!(!path.exists());
        child.expect_success(WAIT);
    }
}

// A host killed with SIGKILL says no goodbye and deletes nothing; a guest
// blocked in recv must still find out, not sleep forever.
// shm[verify shm.peer.liveness]
#[test]
fn guest_blocked_in_recv_notices_a_killed_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orphan.shm");
    let mut child = Child::spawn("host", &path, dir.path(), &[]);
    child.await_signal("hosting", WAIT);
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    guest.set_wait_strategy(WaitStrategy::Block);
    assert_eq!(
        guest.status().host_status().unwrap(),
        shmhub::HostStatus::Alive
    );
    let status_pid = child.pid();

    // Kill the host while this guest sleeps in recv.
    let (status, outcome, waited) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            child.kill()
        });
        let started = Instant::now();
        let outcome = guest.recv_timeout(Some(WAIT));
        (killer.join().unwrap(), outcome, started.elapsed())
    });
    assert!(!status.success());
    match outcome {
        Err(Error::HostDied { pid }) if pid == status_pid => {}
        other => panic!("recv after the host was killed: {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
        "recv returned after {waited:?}"
    );
    assert_eq!(
        guest.status().host_status().unwrap(),
        shmhub::HostStatus::Dead
    );
    let report = shmhub::admin::inspect_path(&path).unwrap();
    assert_eq!(report.host, shmhub::HostStatus::Dead);
    // The crashed host's file stays behind, for cleanup to find.
    drop(guest);
    assert!(path.exists());
}

/// A host (rings of 8) and a guest process that has sent it a few messages
/// and never receives ("hoard"), its ring from the host filled with
/// `filler`: the host, the child, its peer id and the filler.
fn host_with_a_full_hoarder(dir: &Path, name: &str) -> (ShmHost, Child, u8, Frame) {
    let path = dir.join(name);
    let config = SegmentConfig {
        max_guests: 2,
        ring_capacity: 8,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let mut child = Child::spawn("hoard", &path, dir, &[]);
    let peer: u8 = child.await_signal("hoarded", WAIT).parse().unwrap();
    let filler = frame(msg_type::DATA, 0, 0, b"x".to_vec());
    while host.try_send(peer, &filler).is_ok() {}
    (host, child, peer, filler)
}

// A host waiting in a send to a guest whose ring is full must find out
// when that guest's process dies, and so must a guest waiting to send to
// a host that dies: `send` waits only while the other side is there.
// shm[verify shm.send.backpressure]
// shm[verify shm.peer.liveness]
#[test]
fn a_send_waiting_for_room_ends_when_the_receiver_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut host, mut child, peer, filler) = host_with_a_full_hoarder(dir.path(), "stuck.shm");

    let (status, outcome, waited) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            child.kill()
        });
        let started = Instant::now();
        let outcome = host.send(peer, &filler);
        (killer.join().unwrap(), outcome, started.elapsed())
    });
    assert!(!status.success());
    assert!(
        matches!(outcome, Err(Error::PeerDied { peer_id, .. }) if peer_id == peer),
        "send after the guest was killed: {outcome:?}"
    );
    assert!(waited < WAIT, "send returned after {waited:?}");
    assert_eq!(host.reclaim_dead().unwrap(), vec![peer]);
}

// A host that waits in short slices (as `shmhub send` and `recv` do, 100
// ms at a time) must notice a dead guest as well as one long wait does:
// its holder is judged every 100 ms counted across calls, not within one.
// (It used to be judged only once 100 ms had passed inside a single call,
// so such a host waited out its whole timeout on a dead guest.)
// shm[verify shm.send.backpressure]
// shm[verify shm.peer.liveness]
#[test]
fn a_host_waiting_in_short_slices_notices_a_dead_guest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut host, mut child, peer, filler) = host_with_a_full_hoarder(dir.path(), "slices.shm");
    host.set_wait_strategy(WaitStrategy::Block);
    assert!(!child.kill().success());
    // Calls of 50 ms, repeated while they only time out, must end with the
    // guest gone within a second.
    let slice = Duration::from_millis(50);
    let gone_within_a_second = |what: &str, mut call: Box<dyn FnMut() -> Option<Error> + '_>| {
        let started = Instant::now();
        let error = loop {
            match call() {
                None if started.elapsed() < WAIT => {}
                other => break other,
            }
        };
        assert!(
            matches!(error, Some(Error::PeerDied { peer_id, .. }) if peer_id == peer)
                && started.elapsed() < Duration::from_secs(1),
            "{what} in slices after the guest died: {error:?} after {:?}",
            started.elapsed()
        );
    };
    gone_within_a_second(
        "a send",
        Box::new(|| {
            host.send_timeout(peer, &filler, slice)
                .err()
                .filter(|e| !e.is_retryable())
        }),
    );
    // The same for a receive, once what the guest sent has been read.
    for _ in 0..7 {
        host.try_recv_from(peer)
            .unwrap()
            .expect("what the guest sent");
    }
    gone_within_a_second(
        "a receive",
        Box::new(|| host.recv_from_timeout(peer, slice).err()),
    );
    assert_eq!(host.reclaim_dead().unwrap(), vec![peer]);
}

// shm[verify shm.send.backpressure]
// shm[verify shm.peer.liveness]
#[test]
fn a_guest_send_waiting_for_room_ends_when_the_host_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck-host.shm");
    let mut child = Child::spawn("host", &path, dir.path(), &[]);
    child.await_signal("hosting", WAIT);
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    let host_pid = child.pid();
    let filler = frame(msg_type::DATA, 0, 0, b"x".to_vec());
    while guest.try_send(&filler).is_ok() {}

    let (status, outcome, waited) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            child.kill()
        });
        let started = Instant::now();
        let outcome = guest.send(&filler);
        (killer.join().unwrap(), outcome, started.elapsed())
    });
    assert!(!status.success());
    assert!(
        matches!(outcome, Err(Error::HostDied { pid }) if pid == host_pid),
        "send after the host was killed: {outcome:?}"
    );
    assert!(waited < WAIT, "send returned after {waited:?}");
}

// A host and a guest in one process keep their roles while other handles
// of the same file come and go in that process: with POSIX record locks
// (the portable path) closing any descriptor of the file would otherwise
// drop every lock the process holds on it.
// shm[verify shm.lock.portable]
// shm[verify shm.lock.roles]
#[test]
fn roles_in_one_process_survive_other_handles_closing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("same-process.shm");
    let config = SegmentConfig {
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let host = ShmHost::create(&path, config).unwrap();
    let mut guest = ShmGuest::attach_path(&path).unwrap();
    guest.receiver().take_role(None).unwrap();
    for _ in 0..3 {
        // Another guest of this process comes and goes (opening, locking,
        // unlocking and closing the file), and so does a read-only look.
        drop(ShmGuest::attach_path(&path).unwrap());
        drop(shmhub::admin::inspect_path(&path).unwrap());
        drop(ShmHost::open(&path).unwrap());
    }
    // A second handle in this process cannot take a role the first holds.
    let mut again = ShmGuest::resume(&path, guest.peer_id()).unwrap();
    assert!(matches!(again.try_recv(), Err(Error::Busy { .. })));
    drop(again);

    let mut judge = Child::spawn("judge", &path, dir.path(), &[]);
    let verdict = judge.await_signal("judged", WAIT);
    judge.expect_success(WAIT);
    assert_eq!(verdict, "host=alive 1=alive 2=no process");
    drop(guest);
    drop(host);
    assert!(!path.exists());
}

/// Runs `shmhub ARGS` in `dir` (bare names resolve there) and returns its
/// exit code and standard output, failing the test if it takes longer
/// than [`WAIT`] or prints anything on stderr unless `code` is not 0.
fn shmhub(dir: &Path, args: &[&str], code: i32) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let mut run = Child::start(
        format!("shmhub {args:?}"),
        support::cli_command(dir, args),
        dir,
        &format!("shmhub-{n}"),
    );
    let status = run.wait(WAIT);
    assert_eq!(status.code(), Some(code), "{}", run.output());
    run.stdout()
}

fn slots_json(dir: &Path) -> Vec<serde_json::Value> {
    let out = shmhub(dir, &["inspect", "seg", "--slots", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["slots"].as_array().unwrap().clone()
}

// A guest process receives a slot message in place and is killed holding
// it: `inspect --slots` flags that slot leaked (and only it: the messages
// still queued name theirs), `reclaim` frees it, and after that nothing is
// flagged and `peek` agrees. `gc` leaves a segment it keeps as it was.
// shm[verify shm.inspect.slots]
// shm[verify shm.inspect.peek]
// shm[verify shm.peer.reclaim]
#[test]
fn a_slot_held_by_a_killed_receiver_is_leaked_until_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = [
        "--max-guests",
        "4",
        "--ring-size",
        "8",
        "--slot-size",
        "4KiB",
        "--slots",
        "4",
    ];
    shmhub(d, &[&["create", "seg"][..], &small].concat(), 0);
    let mut child = Child::spawn("hold_received", &d.join("seg"), d, &[]);
    assert_eq!(child.await_signal("attached", WAIT), "1");
    assert_eq!(shmhub(d, &["attach", "seg"], 0), "2\n");
    let big = |tag: &str| {
        format!(
            "{tag}: {}",
            "a payload too long to travel inline ".repeat(2)
        )
    };
    for (to, tag) in [("1", "held"), ("1", "queued"), ("2", "scripted")] {
        shmhub(
            d,
            &["send", "seg", "--as", "host", "--to", to, &big(tag)],
            0,
        );
    }
    child.await_signal("holding", WAIT);
    let by_holder = |slots: &[serde_json::Value]| -> Vec<(u64, bool, bool, bool)> {
        slots
            .iter()
            .map(|s| {
                (
                    s["holder_party"].as_u64().unwrap(),
                    s["holder_alive"] == true,
                    !s["queued"].is_null(),
                    s["leaked"] == true,
                )
            })
            .collect()
    };
    // (holder, alive, queued, leaked), by slot: the one received and
    // held, the one queued for peer 1, the one queued for scripted peer 2.
    assert_eq!(
        by_holder(&slots_json(d)),
        [
            (1, true, false, false),
            (1, true, true, false),
            (2, false, true, false)
        ]
    );

    child.kill();
    assert_eq!(
        by_holder(&slots_json(d)),
        [
            (1, false, false, true),
            (1, false, true, false),
            (2, false, true, false)
        ]
    );
    let text = shmhub(d, &["inspect", "seg", "--slots"], 0);
    assert!(
        text.contains("leaked?") && text.contains("3 allocated, 1 look leaked"),
        "{text}"
    );
    let peek = shmhub(
        d,
        &["peek", "seg", "--peer", "1", "--direction", "to-guest"],
        0,
    );
    assert!(
        peek.contains("1 queued") && peek.contains("\"queued: a payload"),
        "{peek}"
    );

    assert_eq!(shmhub(d, &["reclaim", "seg"], 0), "1\n");
    assert_eq!(by_holder(&slots_json(d)), [(2, false, true, false)]);
    let peek = shmhub(d, &["peek", "seg", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&peek).unwrap();
    let rings: Vec<(u64, u64)> = v["rings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["peer"].as_u64().unwrap(), r["queued"].as_u64().unwrap()))
        .collect();
    assert_eq!(rings, [(2, 1)], "{peek}");

    // gc keeps a segment with a live guest, and changes nothing in it. The
    // bytes are read by another process: on the portable path (POSIX record
    // locks), closing a descriptor of the file in this one would drop the
    // presence lock of the guest it holds.
    let guest = ShmGuest::attach_path(d.join("seg")).unwrap();
    let views = || {
        let bytes = std::process::Command::new("cat")
            .arg(d.join("seg"))
            .output()
            .unwrap();
        assert!(bytes.status.success(), "{bytes:?}");
        (
            shmhub(d, &["inspect", "seg", "--slots", "--json"], 0),
            shmhub(d, &["peek", "seg", "--json"], 0),
            bytes.stdout,
        )
    };
    let before = views();
    shmhub(d, &["gc", d.to_str().unwrap()], 0);
    assert_eq!(views(), before, "gc changed a segment it kept");
    drop(guest);
}

// A host reserves an entry and starts a program with the segment's
// absolute path and the entry's id in its environment; the program
// attaches to that entry and gets what was sent ahead. A malformed
// environment is an error naming the variable.
// shm[verify shm.peer.spawn]
#[test]
fn a_spawned_program_finds_its_segment_and_entry_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spawn.shm");
    let config = SegmentConfig {
        max_guests: 2,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let ticket = host.spawn_ticket().unwrap();
    let peer = ticket.peer_id();
    let env: Vec<(&str, String)> = ticket
        .env()
        .iter()
        .map(|(k, v)| (*k, v.to_str().unwrap().to_string()))
        .collect();
    let segment = std::path::absolute(&path).unwrap();
    assert_eq!(
        env,
        [
            (
                shmhub::admin::SpawnTicket::SEGMENT_ENV,
                segment.to_str().unwrap().to_string()
            ),
            (shmhub::admin::SpawnTicket::PEER_ID_ENV, peer.to_string()),
        ]
    );
    assert_eq!(
        (
            shmhub::admin::SpawnTicket::SEGMENT_ENV,
            shmhub::admin::SpawnTicket::PEER_ID_ENV
        ),
        ("SHMHUB_SEGMENT", "SHMHUB_PEER_ID")
    );
    assert!(!ticket.claimed().unwrap());
    let ahead = frame(msg_type::REQUEST, 77, 0, b"sent ahead".to_vec());
    host.try_send(peer, &ahead).unwrap();

    let mut child = Child::spawn("from_env", &path, dir.path(), &env);
    let (from, echo) = host_recv(&mut host, &mut child);
    assert_eq!(
        (from, echo.desc.id, echo.payload()),
        (peer, 77, &b"sent ahead"[..])
    );
    child.expect_success(WAIT);
    assert!(ticket.claimed().unwrap());
    drop(ticket);
    assert_ne!(host.peers().unwrap()[0].state, PeerState::Reserved);

    let segment = segment.to_str().unwrap().to_string();
    for (name, value, expected) in [
        (
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
            "0",
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
        ),
        (
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
            "256",
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
        ),
        (
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
            "one",
            shmhub::admin::SpawnTicket::PEER_ID_ENV,
        ),
        (
            shmhub::admin::SpawnTicket::SEGMENT_ENV,
            "",
            shmhub::admin::SpawnTicket::SEGMENT_ENV,
        ),
    ] {
        let mut env = vec![
            (shmhub::admin::SpawnTicket::SEGMENT_ENV, segment.clone()),
            (shmhub::admin::SpawnTicket::PEER_ID_ENV, "2".to_string()),
            (EXPECT_ENV, expected.to_string()),
        ];
        env.retain(|(k, _)| *k != name);
        env.push((name, value.to_string()));
        Child::spawn("env_refused", &path, dir.path(), &env).expect_success(WAIT);
    }
}

// A reservation whose reserving process died (nobody will start its
// program, nobody will release it) is released by a reclaim, and its
// messages sent ahead dropped; one whose reserver lives is left alone.
// shm[verify shm.peer.reclaim]
// shm[verify shm.peer.reserve]
#[test]
fn a_reclaim_releases_a_reservation_whose_reserver_died() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reserver.shm");
    let config = SegmentConfig {
        max_guests: 3,
        ..SegmentConfig::default()
    };
    let mut host = ShmHost::create(&path, config).unwrap();
    let mine = host.reserve_peer().unwrap();
    let mut child = Child::spawn("reserver", &path, dir.path(), &[]);
    let theirs: u8 = child.await_signal("reserved", WAIT).parse().unwrap();
    let child_pid = child.pid();
    child.expect_success(WAIT);
    assert_ne!(mine, theirs);
    host.try_send(theirs, frame(msg_type::DATA, 1, 0, vec![7; 500]))
        .unwrap();
    let entry = peer_report(&path, theirs).entry;
    assert_eq!((entry.state, entry.pid), (PeerState::Reserved, child_pid));

    let report = host.reclaim_dead_report().unwrap();
    assert_eq!(report.reclaimed, [theirs]);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(
        (report.skipped[0].peer, report.skipped[0].reason),
        (mine, SkipReason::Reserved)
    );
    let entry = peer_report(&path, theirs).entry;
    assert_eq!(
        (entry.state, entry.pid, entry.held),
        (PeerState::Empty, 0, false)
    );
    // The message sent ahead went with the reservation, slot and all.
    let pools = shmhub::admin::inspect_path(&path).unwrap().pools;
    assert_eq!(pools[0].usage.used, 0);
    assert_eq!(peer_report(&path, mine).entry.state, PeerState::Reserved);
}

// A send to a side known dead fails at once, as a receive from it does,
// rather than filling its ring for nobody: the host's first send to a
// killed guest, and (through the command) a guest's first send to a
// killed host.
// shm[verify shm.send.backpressure]
// shm[verify shm.peer.liveness]
#[test]
fn a_send_to_a_killed_guest_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("void.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut child = Child::spawn("idle", &path, dir.path(), &[]);
    let peer: u8 = child.await_signal("idle", WAIT).parse().unwrap();
    let child_pid = child.pid();
    assert!(!child.kill().success());
    // Killed, not left: the error says which, with the pid.
    let sent = host.try_send(peer, frame(msg_type::DATA, 1, 0, b"hello".to_vec()));
    assert!(
        matches!(sent, Err(Error::PeerDied { peer_id, pid }) if peer_id == peer && pid == child_pid),
        "{sent:?}"
    );
    assert_eq!(
        sent.unwrap_err().to_string(),
        format!("peer {peer} died (pid {child_pid}) without detaching")
    );
    // Every later send says the same, however it waits.
    let again = host.send_timeout(peer, frame(msg_type::DATA, 2, 0, vec![1; 100]), WAIT);
    assert!(matches!(again, Err(Error::PeerDied { .. })), "{again:?}");
    assert_eq!(host.reclaim_dead().unwrap(), vec![peer]);
}

// A receive from any guest ends once every guest has gone, killed or
// detached, as an mpsc receive ends once every sender is gone; before the
// first guest it waits, and a host that serves whoever comes says so.
// shm[verify shm.host.no-guests]
#[test]
fn a_receive_from_any_guest_ends_once_every_guest_has_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let short = Duration::from_millis(300);
    // Before any guest: it waits for the first.
    assert!(host.recv_timeout(short).unwrap().is_none());
    let mut killed = Child::spawn("idle", &path, dir.path(), &[]);
    killed.await_signal("idle", WAIT);
    let left = ShmGuest::attach_path(&path).unwrap();
    assert!(host.recv_timeout(short).unwrap().is_none());
    // One killed, one still there: it waits.
    assert!(!killed.kill().success());
    assert!(host.recv_timeout(short).unwrap().is_none());
    // The last one leaves: a receive with no end in time ends.
    left.detach().unwrap();
    let started = Instant::now();
    let ended = host.recv();
    assert!(matches!(ended, Err(Error::NoGuests)), "{ended:?}");
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    assert_eq!(
        Error::NoGuests.to_string(),
        "every guest has gone: none is attached, reserved or leaving"
    );
    // A host that serves whoever comes waits for the next instead.
    host.any_receiver().wait_for_guests(true);
    assert!(host.recv_timeout(short).unwrap().is_none());
    let mut next = ShmGuest::attach_path(&path).unwrap();
    next.send(frame(msg_type::DATA, 1, 0, b"back".to_vec()))
        .unwrap();
    assert_eq!(host.recv().unwrap().1.payload(), b"back");
}

// Issue 32, item 18: a guest that attached and left before the host's
// first receive was never counted, and `recv()` then waited for good. An
// entry claimed since the host began counts as a guest seen.
// shm[verify shm.host.no-guests]
#[test]
fn a_receive_from_any_guest_ends_after_a_guest_that_left_before_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brief.shm");
    let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    let mut guest = Child::spawn("come_and_go", &path, dir.path(), &[]);
    guest.expect_success(WAIT);
    assert_eq!(host.status().peer(1).unwrap().state, PeerState::Empty);
    assert_eq!(
        host.status().peer(1).unwrap().epoch,
        1,
        "the child claimed entry 1"
    );
    // In a thread, so that a receive that never returns fails the test
    // instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(host.recv().map(|_| ()));
    });
    let ended = rx.recv_timeout(Duration::from_secs(30));
    assert!(
        matches!(ended, Ok(Err(Error::NoGuests))),
        "the host's recv() after a guest came and went: {ended:?}"
    );
}

// Issue 32, item 12: creating a segment where one is says what is there
// and how to remove it, naming the path: the stale segment a killed host
// left (`remove_unused_segment` removes it, and the create then works), a
// segment whose host lives, and a file that is no segment.
// shm[verify shm.file.create]
#[test]
fn a_create_over_an_existing_file_says_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crashed.shm");
    let mut crashed = Child::spawn("host", &path, dir.path(), &[]);
    crashed.await_signal("hosting", WAIT);
    let pid = crashed.pid();

    // While the host lives: a segment in use.
    let live = ShmHost::create(&path, SegmentConfig::default()).unwrap_err();
    assert!(matches!(live, Error::AlreadyExists { .. }), "{live:?}");
    assert_eq!(live.path(), Some(path.as_path()));
    assert_eq!(
        live.to_string(),
        format!(
            "{p}: already exists: a shmhub segment in use (its host, pid {pid}, is alive): \
             `shmhub rm {p}` asks everyone to leave and removes it (or \
             `shmhub::admin::remove_segment`)",
            p = path.display()
        )
    );

    // Killed: the segment it leaves is stale.
    assert!(!crashed.kill().success());
    let stale = ShmHost::create(&path, SegmentConfig::default()).unwrap_err();
    assert_eq!(
        stale.to_string(),
        format!(
            "{p}: already exists: a stale shmhub segment (its host, pid {pid}, is dead and no \
             guest lives): remove it with `shmhub rm {p}` (or \
             `shmhub::admin::remove_unused_segment`), then create it again",
            p = path.display()
        )
    );
    assert_eq!(stale.kind(), shmhub::ErrorKind::Io);
    shmhub::admin::remove_unused_segment(&path).unwrap();
    let host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
    drop(host);

    // Not a segment: left alone, and said so.
    std::fs::write(&path, b"notes").unwrap();
    let other = ShmHost::create(&path, SegmentConfig::default()).unwrap_err();
    assert_eq!(
        other.to_string(),
        format!(
            "{}: already exists: not a shmhub segment (a file of 5 bytes)",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"notes");
}
