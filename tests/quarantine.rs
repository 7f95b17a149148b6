//! A guest that breaks the protocol in its own part of the segment is cut
//! off, not the host (`shm.peer.quarantine`): the host reports it once,
//! goes on serving the others, refuses every send to it and receive from
//! it, and frees its entry once its process is gone.
//!
//! The first tests write into one guest's own memory from this process
//! (a state word, a descriptor, a forged drain); the last runs a live
//! hostile guest process that writes random bytes into its own entry,
//! rings and pool while two honest guest processes echo through the host.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::admin::SkipReason;
use shmhub::{
    Error, ErrorKind, Frame, MmapRegion, MsgDesc, PeerState, QuarantineReason, Region,
    SegmentConfig, ShmGuest, ShmHost,
};
use support::traffic::{Rng, fill_seeded};
use support::{Child, ChildEnv};

/// Offset of a peer entry's state word, and of its `quarantine` field.
const STATE: u64 = 0;
const QUARANTINE: u64 = 40;
/// A ring's control block: its tail (the producer's index).
const RING_TAIL: u64 = 0;
/// Bytes of a ring's control block, before its descriptors.
const RING_HEADER: u64 = 192;

fn config() -> SegmentConfig {
    SegmentConfig {
        max_guests: 4,
        ring_capacity: 16,
        slot_size: 256,
        slots_per_pool: 16,
        max_payload: 256,
        ..SegmentConfig::default()
    }
}

fn frame(id: u64, payload: &[u8]) -> Frame {
    Frame::new(MsgDesc::new(1, id), payload.to_vec())
}

/// Receives from any guest without waiting until nothing is left,
/// `rounds` times over (a guest whose entry alone is bad is found by the
/// receive's sweeps, which come every so many empty looks): the messages,
/// and the quarantines reported.
fn drain_any(host: &mut ShmHost, rounds: usize) -> (Vec<(u8, Vec<u8>)>, Vec<Error>) {
    let (mut got, mut cut) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        match host.try_recv() {
            Ok(Some((from, f))) => got.push((from, f.payload().to_vec())),
            Ok(None) => {}
            Err(e @ Error::Quarantined { .. }) => cut.push(e),
            Err(e) => panic!("a receive from any guest failed: {e}"),
        }
    }
    (got, cut)
}

// One write of a state the protocol does not know, into the guest's own
// entry: the host cuts that guest off, says so once, serves the other,
// refuses sends to it, and a reclaim skips it instead of failing.
// shm[verify shm.peer.quarantine]
#[test]
fn a_guest_that_writes_an_unknown_state_is_cut_off_and_the_other_served() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("state.shm");
    let mut host = ShmHost::create(&path, config()).unwrap();
    let mut bad = ShmGuest::attach_path(&path).unwrap();
    let mut good = ShmGuest::attach_path(&path).unwrap();
    let region = host.region();
    let entry = host.layout().peer_entry(bad.peer_id());
    bad.send(frame(1, b"before")).unwrap();
    region
        .store_u32(
            entry + STATE,
            0x1e55_0bad,
            std::sync::atomic::Ordering::Release,
        )
        .unwrap();
    good.send(frame(2, b"from the good one")).unwrap();

    let (got, cut) = drain_any(&mut host, 1000);
    // What the bad guest sent before its write is still its own message.
    assert_eq!(
        got,
        [
            (bad.peer_id(), b"before".to_vec()),
            (good.peer_id(), b"from the good one".to_vec())
        ]
    );
    assert_eq!(cut.len(), 1, "reported once: {cut:?}");
    match &cut[0] {
        Error::Quarantined {
            peer_id,
            reason: QuarantineReason::Entry,
            detail: Some(detail),
        } => {
            assert_eq!(*peer_id, bad.peer_id());
            assert!(detail.contains("unknown state"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cut[0].kind(), ErrorKind::CutOff);
    // Everyone sees it, with the reason.
    let entry_now = host.peer(bad.peer_id()).unwrap();
    assert_eq!(entry_now.state, PeerState::Quarantined);
    assert_eq!(entry_now.quarantine, Some(QuarantineReason::Entry));
    // Sends to it, receives from it and its own operations are refused.
    let refused = host.send(bad.peer_id(), frame(3, b"no"));
    assert!(
        matches!(refused, Err(Error::Quarantined { .. })),
        "{refused:?}"
    );
    let refused = host.try_recv_from(bad.peer_id());
    assert!(
        matches!(refused, Err(Error::Quarantined { .. })),
        "{refused:?}"
    );
    let refused = bad.send(frame(4, b"still here"));
    assert!(
        matches!(refused, Err(Error::Quarantined { .. })),
        "{refused:?}"
    );
    // The other goes on, both ways.
    host.send(good.peer_id(), frame(5, b"echo")).unwrap();
    assert_eq!(good.try_recv().unwrap().unwrap().payload(), b"echo");
    good.send(frame(6, b"again")).unwrap();
    let (got, cut) = drain_any(&mut host, 200);
    assert_eq!(got, [(good.peer_id(), b"again".to_vec())]);
    assert!(cut.is_empty(), "reported once only: {cut:?}");
    // Its process (this one) lives: a reclaim leaves it, and says why.
    let report = host.reclaim_dead_report().unwrap();
    assert!(report.reclaimed.is_empty());
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.peer == bad.peer_id() && s.reason == SkipReason::Quarantined)
    );
}

// A reclaim that meets a bad state word cuts that guest off and goes on
// with the others, instead of failing: a dead guest behind it is still
// reclaimed.
// shm[verify shm.peer.quarantine]
#[test]
fn a_bad_entry_does_not_stop_a_reclaim() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("reclaim.shm");
    let mut host = ShmHost::create(&path, config()).unwrap();
    let bad = ShmGuest::attach_path(&path).unwrap();
    let dead = Child::start(
        "a guest killed",
        support::cli_command(dir.path(), &["attach", path.to_str().unwrap(), "--hold"]),
        dir.path(),
        "attach",
    );
    let mut dead = dead;
    let deadline = Instant::now() + Duration::from_secs(30);
    while host
        .peers()
        .unwrap()
        .iter()
        .filter(|p| p.state == PeerState::Attached)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the held guest never attached");
        std::thread::sleep(Duration::from_millis(5));
    }
    dead.kill();
    let entry = host.layout().peer_entry(bad.peer_id());
    host.region()
        .store_u32(entry + STATE, 77, std::sync::atomic::Ordering::Release)
        .unwrap();
    let report = host.reclaim_dead_report().unwrap();
    assert_eq!(report.reclaimed.len(), 1, "{report:?}");
    assert_ne!(report.reclaimed[0], bad.peer_id());
    assert_eq!(
        host.peer(bad.peer_id()).unwrap().state,
        PeerState::Quarantined
    );
}

// A descriptor that fails validation cuts its sender off (reason:
// descriptor); the host takes nothing through it.
// shm[verify shm.peer.quarantine]
#[test]
fn a_bad_descriptor_cuts_its_sender_off() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("desc.shm");
    let mut host = ShmHost::create(&path, config()).unwrap();
    let mut bad = ShmGuest::attach_path(&path).unwrap();
    let mut good = ShmGuest::attach_path(&path).unwrap();
    // A slot message whose descriptor then claims more bytes than a slot
    // holds: the length is the descriptor's u32 at byte 4.
    bad.send(frame(1, &[7; 200])).unwrap();
    let ring = host.layout().guest_to_host_ring(bad.peer_id());
    let len_at = ring + RING_HEADER + 4;
    let region = host.region();
    let len = region
        .load_u32(len_at, std::sync::atomic::Ordering::Acquire)
        .unwrap();
    assert_eq!(len, 200, "the descriptor's length is where the spec says");
    region
        .store_u32(len_at, 100_000, std::sync::atomic::Ordering::Release)
        .unwrap();
    good.send(frame(2, b"fine")).unwrap();
    let (got, cut) = drain_any(&mut host, 100);
    assert_eq!(got, [(good.peer_id(), b"fine".to_vec())]);
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(
        matches!(
            cut[0],
            Error::Quarantined {
                reason: QuarantineReason::Descriptor,
                ..
            }
        ),
        "{:?}",
        cut[0]
    );
    // The guest learns it is cut off, and so would any other process.
    let refused = bad.try_recv();
    assert!(
        matches!(refused, Err(Error::Quarantined { .. })),
        "{refused:?}"
    );
    assert_eq!(
        region
            .load_u32(
                host.layout().peer_entry(bad.peer_id()) + QUARANTINE,
                std::sync::atomic::Ordering::Acquire
            )
            .unwrap(),
        QuarantineReason::Descriptor.to_u32()
    );
}

// A forged drain: a guest fills its own host-to-guest ring with a copy of
// a descriptor in flight to another guest, then makes its entry look held
// by a dead process. The reclaim that follows frees only what the host's
// pool says that guest held: the other guest's slot stays its own.
// shm[verify shm.peer.quarantine]
#[test]
fn a_forged_drain_frees_no_other_guests_slot() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("drain.shm");
    let mut host = ShmHost::create(&path, config()).unwrap();
    let mut honest = ShmGuest::attach_path(&path).unwrap();
    let (forger, _) = ShmGuest::attach_path(&path)
        .unwrap()
        .release_to_script()
        .unwrap();
    let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    host.send(honest.peer_id(), frame(9, &payload)).unwrap();
    let layout = *host.layout();
    let region = host.region();
    let from = layout.host_to_guest_ring(honest.peer_id());
    let to = layout.host_to_guest_ring(forger);
    let mut desc = [0u8; 64];
    region.read(from + RING_HEADER, &mut desc).unwrap();
    region.write(to + RING_HEADER, &desc).unwrap();
    region
        .store_u32(to + RING_TAIL, 1, std::sync::atomic::Ordering::Release)
        .unwrap();
    // Held (flag bit 0) by a process that has exited.
    let entry = layout.peer_entry(forger);
    let exited = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let ord = std::sync::atomic::Ordering::Release;
    region.store_u32(entry + 8, exited, ord).unwrap();
    region.store_u32(entry + 12, 1, ord).unwrap();
    assert_eq!(host.reclaim_dead().unwrap(), [forger]);
    let got = honest
        .try_recv()
        .expect("the honest guest's slot is intact")
        .expect("its message is there");
    assert_eq!(got.payload(), &payload[..]);
    drop(got);
    assert_eq!(host.header().map(|_| ()).ok(), Some(()));
}

// ---------------------------------------------------------------------------
// A live hostile guest process among honest ones
// ---------------------------------------------------------------------------

/// The seed of the hostile writer's bytes.
const SEED: &str = "SHMHUB_TEST_SEED";
/// Round trips each honest guest makes.
const ROUND_TRIPS: u64 = 2000;
/// How long the hostile guest writes.
const ATTACK: Duration = Duration::from_secs(3);
/// How long any one wait may last: only a lost message reaches it.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn child_entry() {
    support::child_main(Duration::from_secs(120), |role, env| match role {
        "honest" => honest_guest(env),
        "hostile" => hostile_guest(env),
        other => bail!("unknown role {other}"),
    });
}

/// Request `seq` of guest `p`: inline and slot sizes in turn, its bytes
/// seeded by both.
fn request(p: u8, seq: u64) -> Vec<u8> {
    let mut bytes = vec![0; if seq % 2 == 0 { 24 } else { 200 }];
    fill_seeded((u64::from(p) << 32) | seq, &mut bytes);
    bytes
}

/// Sends [`ROUND_TRIPS`] requests, each answered by its echo before the
/// next, checking that every echo is its own request; reports its rate.
fn honest_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let mut guest = ShmGuest::attach_path(&env.path).context("attach")?;
    let p = guest.peer_id();
    support::signal(&env.dir, &format!("honest-{p}"), "ready")?;
    let started = Instant::now();
    for seq in 0..ROUND_TRIPS {
        let sent = request(p, seq);
        guest.send_timeout(frame(seq, &sent), WAIT)?;
        let echo = guest
            .recv_timeout(WAIT)?
            .with_context(|| format!("no echo of request {seq} within {WAIT:?}"))?;
        ensure!(
            echo.desc.id == seq,
            "echo {} for request {seq}",
            echo.desc.id
        );
        ensure!(
            echo.payload() == &sent[..],
            "request {seq} came back changed"
        );
    }
    let rate = ROUND_TRIPS as f64 / started.elapsed().as_secs_f64();
    support::signal(&env.dir, &format!("rate-{p}"), &format!("{rate:.0}"))?;
    guest.detach()?;
    Ok(())
}

/// Writes random bytes into its own entry, rings and pool, as fast as it
/// can, for [`ATTACK`]; then exits without a goodbye.
fn hostile_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let guest = ShmGuest::attach_path(&env.path).context("attach")?;
    let p = guest.peer_id();
    let layout = *guest.layout();
    let mapped = MmapRegion::attach(&env.path)?;
    let region: Region = mapped.region();
    let mut rng = Rng::new(env.parse(SEED)?);
    // Its own memory: the entry, both rings, its pool.
    let parts = [
        (layout.peer_entry(p), 64),
        (layout.guest_to_host_ring(p), layout.ring_size),
        (layout.host_to_guest_ring(p), layout.ring_size),
        (layout.pool(p), layout.pool_stride),
    ];
    support::signal(&env.dir, "hostile", &p.to_string())?;
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < ATTACK {
        let (base, len) = parts[rng.below(parts.len() as u64) as usize];
        let at = base + rng.below(len / 4) * 4;
        region.store_u32(
            at,
            rng.next_u64() as u32,
            std::sync::atomic::Ordering::Relaxed,
        )?;
        writes += 1;
    }
    support::signal(&env.dir, "writes", &writes.to_string())?;
    // Dies as it is, holding the entry.
    std::process::exit(0);
}

// A live hostile guest: while two honest guest processes echo through the
// host, inline and in slots, a third writes random bytes into its own
// entry, rings and pool. The honest guests lose nothing and get only their
// own data back; the host reports the hostile guest once, never fails
// otherwise, and frees its entry once it has exited.
// shm[verify shm.peer.quarantine]
#[test]
fn a_live_hostile_guest_is_cut_off_and_the_honest_ones_lose_nothing() {
    let dir = support::fixtures::tmp();
    let path = dir.path().join("hostile.shm");
    let mut host = ShmHost::create(&path, config()).unwrap();
    let seed = support::fixtures::unix_ns() ^ u64::from(std::process::id());
    eprintln!("seed {seed} (set {SEED} to replay)");
    let seed = std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let mut hostile = Child::spawn("hostile", &path, dir.path(), &[(SEED, seed.to_string())]);
    let hostile_id: u8 = hostile.await_signal("hostile", WAIT).parse().unwrap();
    let mut honest: Vec<Child> = (0..2)
        .map(|_| Child::spawn("honest", &path, dir.path(), &[]))
        .collect();
    let mut cut = Vec::new();
    let mut echoed = 0u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "the run did not end");
        match host.recv_timeout(Duration::from_millis(5)) {
            Ok(Some((from, f))) if from == hostile_id => {
                // Whatever it "sent", it gets nothing back that matters.
                let _ = host.try_send(from, f);
            }
            Ok(Some((from, f))) => {
                host.send_timeout(from, f, WAIT)
                    .expect("an echo to an honest guest");
                echoed += 1;
            }
            Ok(None) => {}
            Err(e @ Error::Quarantined { .. }) => cut.push(e),
            Err(e) => panic!("the host's receive failed: {e}"),
        }
        let mut running = false;
        for child in &mut honest {
            child.check_not_failed().unwrap();
            running |= child.poll().is_none();
        }
        if !running {
            break;
        }
    }
    for child in &mut honest {
        child.expect_success(WAIT);
    }
    assert_eq!(echoed, 2 * ROUND_TRIPS);
    hostile.wait(WAIT);
    let writes = std::fs::read_to_string(dir.path().join("writes")).unwrap_or_default();
    let rates: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.starts_with("rate-")
                .then(|| std::fs::read_to_string(dir.path().join(&name)).unwrap_or_default())
        })
        .collect();
    eprintln!(
        "hostile guest {hostile_id}: {writes} writes; honest round trips/s {rates:?}; \
         reported {cut:?}"
    );
    // Reported at most once, and only the hostile guest.
    assert!(cut.len() <= 1, "{cut:?}");
    for e in &cut {
        assert!(matches!(e, Error::Quarantined { peer_id, .. } if *peer_id == hostile_id));
    }
    // Once it has exited its entry is freed, whatever it wrote.
    host.evict(hostile_id).ok();
    let _ = host.reclaim_dead_report().unwrap();
    let entry = host.peer(hostile_id).unwrap();
    assert_eq!(entry.state, PeerState::Empty, "{entry:?}");
    // And a newcomer gets a clean entry that works.
    let mut newcomer = ShmGuest::attach_path(&path).unwrap();
    newcomer.send(frame(1, b"hello")).unwrap();
    let (from, f) = host.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!((from, f.payload()), (newcomer.peer_id(), &b"hello"[..]));
}
