//! One host and a full table of guest processes at once, in both
//! directions: every message arrives once, intact and in order per guest,
//! service is round-robin, and the table ends as it began.
//!
//! The parent process is the host. Each test creates a segment of
//! [`GUESTS`] entries (the most a segment has) with small rings and pools,
//! so that rings fill and pools run out and both sides wait on them,
//! reserves every entry and starts one guest process per entry by
//! re-running this test binary through the harness of `tests/support`
//! ([`Child::spawn`], [`child_entry`]). Once every guest has attached, the
//! host sends each a "go".
//!
//! - **Fan-in**: each guest sends [`MESSAGES`] messages and leaves; the
//!   host receives from any guest and checks each message against the one
//!   its guest must have sent next.
//! - **Fan-out**: the host sends each guest its own stream of
//!   [`MESSAGES`], going round the guests, never waiting on one while
//!   another has room; each guest checks what it receives and leaves.
//! - **Fairness**: each guest fills its ring and waits; the host then
//!   receives everything, and no guest is ever served twice more than
//!   another (round robin over full rings: a bound that needs no clock).
//!
//! A message (guest `p`, number `seq`) is 1 to 64 bytes, inline up to 32
//! and in a slot beyond, its bytes seeded by `(p, seq)`, its id `seq` and
//! its checksum in `method_id`. Nothing is timed: every wait is bounded
//! only so that a lost message or wake-up fails the test instead of
//! hanging it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::{Frame, MsgDesc, PeerState, SegmentConfig, ShmGuest, ShmHost, msg_type};
use support::Child;
use support::traffic::{fill_seeded, fnv1a};

/// The entry a child plays the guest of.
const PEER_ENV: &str = "SHMHUB_TEST_PEER";

/// Guest processes: the whole table.
const GUESTS: u8 = 255;
/// Messages each guest sends (fan-in) or receives (fan-out).
const MESSAGES: u64 = 100;
/// Descriptors per ring: small, so that rings fill.
const RING: u32 = 8;
/// Slots per pool, of [`SLOT_SIZE`] bytes: few, so that a guest's pool
/// runs out, and the host's share per guest is 1 (`shm.pool.share`).
const SLOTS: u32 = 4;
const SLOT_SIZE: u32 = 64;

/// How long any one wait may last: far past what a busy machine needs,
/// so that only a lost message or wake-up reaches it.
const WAIT: Duration = Duration::from_secs(60);
/// A child still running after this long ends itself.
const CHILD_WATCHDOG: Duration = Duration::from_secs(300);

/// "go" and "done", from the host to each guest.
const GO: u64 = u64::MAX - 1;
const DONE: u64 = u64::MAX;

/// Message `seq` of guest `p`'s stream (either direction).
fn message(p: u8, seq: u64) -> Frame {
    let seed = (u64::from(p) << 32) | seq;
    let len = if seq % 2 == 0 {
        1 + (seq % 32)
    } else {
        33 + (seq % 32)
    };
    let mut payload = vec![0u8; len as usize];
    fill_seeded(seed, &mut payload);
    let mut desc = MsgDesc::new(msg_type::DATA, seq);
    desc.method_id = fnv1a(&payload);
    Frame::new(desc, payload)
}

/// What is wrong with a message of guest `p`'s stream that was expected
/// to be number `seq`, if anything.
fn check(p: impl Into<u8>, seq: u64, desc: &MsgDesc, payload: &[u8]) -> Option<String> {
    let p: u8 = p.into();
    let expected = message(p, seq);
    if desc.id != seq {
        return Some(format!(
            "guest {p}: message {} arrived where {seq} was due",
            desc.id
        ));
    }
    if payload != expected.payload() || desc.method_id != expected.desc.method_id {
        return Some(format!("guest {p}: message {seq} arrived changed"));
    }
    if desc.is_slot() != (payload.len() > shmhub::INLINE_CAPACITY) {
        return Some(format!(
            "guest {p}: message {seq} of {} bytes arrived placed wrong",
            payload.len()
        ));
    }
    None
}

/// A control message from the host: "go" or "done".
fn control(id: u64) -> Frame {
    Frame::new(MsgDesc::new(msg_type::REQUEST, id), vec![])
}

/// Runs a child role when this binary was started as a child; otherwise
/// (a normal test run) does nothing.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG, |role, env| {
        let p: u8 = env.parse(PEER_ENV)?;
        let mut guest = ShmGuest::attach_path_with_id(&env.path, p).context("attach")?;
        await_control(&mut guest, GO)?;
        match role {
            "sender" => run_sender(&mut guest, p)?,
            "receiver" => run_receiver(&mut guest, p)?,
            "filler" => run_filler(&mut guest, p)?,
            other => bail!("unknown role {other}"),
        }
        guest.detach().context("detach")?;
        Ok(())
    });
}

/// Waits for the host's control message `want`.
fn await_control(guest: &mut ShmGuest, want: u64) -> anyhow::Result<()> {
    let got = guest
        .recv_timeout(WAIT)
        .context("waiting for the host")?
        .with_context(|| format!("nothing from the host within {WAIT:?}"))?;
    ensure!(got.desc.id == want, "expected {want}, got {}", got.desc.id);
    Ok(())
}

/// Fan-in: sends the guest's stream, waiting whenever its ring is full or
/// its pool empty, and leaves at once (what it sent is read after).
fn run_sender(guest: &mut ShmGuest, p: u8) -> anyhow::Result<()> {
    for seq in 0..MESSAGES {
        guest
            .send_timeout(message(p, seq), WAIT)
            .with_context(|| format!("sending message {seq}"))?;
    }
    Ok(())
}

/// Fan-out: receives the guest's stream, in place and copied in turn,
/// and checks every message.
fn run_receiver(guest: &mut ShmGuest, p: u8) -> anyhow::Result<()> {
    for seq in 0..MESSAGES {
        let wrong = if seq % 2 == 0 {
            let got = guest
                .receiver()
                .recv(WAIT)
                .with_context(|| format!("receiving message {seq}"))?
                .with_context(|| format!("message {seq} did not come within {WAIT:?}"))?;
            check(p, seq, got.desc(), got.payload())
        } else {
            let got = guest
                .recv_timeout(WAIT)
                .with_context(|| format!("receiving message {seq}"))?
                .with_context(|| format!("message {seq} did not come within {WAIT:?}"))?;
            check(p, seq, &got.desc, got.payload())
        };
        if let Some(wrong) = wrong {
            bail!(wrong);
        }
    }
    Ok(())
}

/// Fairness: fills the guest's ring with inline messages (the host
/// receives nothing until every ring is full) and waits for "done".
fn run_filler(guest: &mut ShmGuest, p: u8) -> anyhow::Result<()> {
    for seq in (0..).step_by(2).take(RING as usize) {
        guest
            .send_timeout(message(p, seq), WAIT)
            .with_context(|| format!("sending message {seq}"))?;
    }
    await_control(guest, DONE)
}

/// The host of a full table of guest processes, each attached.
struct Table {
    host: ShmHost,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Table {
    /// Creates the segment, reserves every entry, starts a child in `role`
    /// on each, and waits until all have attached.
    fn start(role: &str) -> Table {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.shm");
        let config = SegmentConfig {
            max_guests: u32::from(GUESTS),
            ring_capacity: RING,
            slot_size: SLOT_SIZE,
            slots_per_pool: SLOTS,
            max_payload: SLOT_SIZE,
            heartbeat_interval_ms: 0,
        };
        let mut host = ShmHost::create(&path, config).unwrap();
        let children = (1..=GUESTS)
            .map(|_| {
                let p = host.reserve_peer().unwrap();
                Child::spawn(role, &path, dir.path(), &[(PEER_ENV, p.to_string())])
                    .named(format!("guest {p}"))
            })
            .collect();
        let mut table = Table {
            host,
            children,
            _dir: dir,
            path,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let peers = table.host.peers().unwrap();
            if peers.iter().all(|e| e.state == PeerState::Attached) {
                break;
            }
            if Instant::now() > deadline {
                table.fail("not every guest attached");
            }
            if table.children.iter_mut().any(|c| c.poll().is_some()) {
                table.fail("a guest exited before every guest attached");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        table
    }

    /// Sends every guest the control message `id`.
    fn tell_all(&mut self, id: u64) {
        for p in 1..=GUESTS {
            if let Err(e) = self.host.send_timeout(p, control(id), WAIT) {
                self.fail(&format!("telling guest {p} {id}: {e}"));
            }
        }
    }

    /// Every guest exits successfully; then nothing is left to read, every
    /// entry is Empty, every ring empty and every slot free.
    fn finish(mut self) {
        let deadline = Instant::now() + WAIT;
        for i in 0..self.children.len() {
            match self.children[i].wait_until(deadline) {
                Ok(status) if status.success() => {}
                Ok(_) => self.fail("a guest failed"),
                Err(e) => self.fail(&e.to_string()),
            }
        }
        // A receive finishes the goodbyes of guests that left with
        // messages the host has read since.
        assert!(self.host.try_recv().unwrap().is_none());
        let report = shmhub::admin::inspect_path(&self.path).unwrap();
        for p in &report.peers {
            assert!(
                p.to_guest.is_empty() && p.to_host.is_empty(),
                "rings of peer {} not empty: {p:?}",
                p.entry.peer_id
            );
            assert_eq!(p.entry.state, PeerState::Empty, "{p:?}");
        }
        for pool in &report.pools {
            assert_eq!(pool.usage.used, 0, "{pool:?}");
        }
    }

    /// Fails the test with `msg`, every child killed, and the output of
    /// those that failed (at most a few: 255 of them would bury `msg`).
    fn fail(&mut self, msg: &str) -> ! {
        let failed: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|c| match c.poll() {
                Some(status) if !status.success() => Some(c.output()),
                _ => None,
            })
            .take(3)
            .collect();
        for c in &mut self.children {
            c.stop();
        }
        panic!("{msg}\n{}", failed.join("\n"));
    }
}

/// The message of a failed receive of message `n` of `total`, or of none.
fn nothing_within(next: &[u64], n: u64, total: u64) -> String {
    let behind: Vec<usize> = (1..=next.len())
        .filter(|&p| next[p - 1] < MESSAGES)
        .collect();
    format!("nothing within {WAIT:?} after {n} of {total}; guests not done: {behind:?}")
}

// Every guest of a full table sends at once, and the host receiving from
// any guest gets every message once, intact, in order per guest, also
// those a guest left behind when it detached.
// shm[verify shm.host.ready]
// shm[verify shm.host.doorbell]
#[test]
fn fan_in_from_a_full_table_loses_nothing() {
    let mut table = Table::start("sender");
    table.tell_all(GO);
    let total = u64::from(GUESTS) * MESSAGES;
    let mut next = vec![0u64; usize::from(GUESTS)];
    for n in 0..total {
        // In place and copied in turn.
        let checked = if n % 2 == 0 {
            table.host.any_receiver().recv_with(WAIT, |from, m| {
                let seq = next[usize::from(from) - 1];
                (from, check(from, seq, m.desc(), m.payload()))
            })
        } else {
            table.host.recv_timeout(WAIT).map(|got| {
                got.map(|(from, f)| {
                    let seq = next[usize::from(from) - 1];
                    (from, check(from, seq, &f.desc, f.payload()))
                })
            })
        };
        match checked {
            Ok(Some((from, None))) => next[usize::from(from) - 1] += 1,
            Ok(Some((_, Some(wrong)))) => table.fail(&wrong),
            Ok(None) => table.fail(&nothing_within(&next, n, total)),
            Err(e) => table.fail(&format!("receive {n} of {total}: {e}")),
        }
    }
    assert!(next.iter().all(|&n| n == MESSAGES), "{next:?}");
    table.finish();
}

// The host sends each guest of a full table its own stream, going round
// the guests and never waiting on one while another has room; each guest
// gets its stream once, intact, in order.
#[test]
fn fan_out_to_a_full_table_loses_nothing() {
    let mut table = Table::start("receiver");
    table.tell_all(GO);
    let mut next = vec![0u64; usize::from(GUESTS)];
    let mut open: Vec<u8> = (1..=GUESTS).collect();
    while !open.is_empty() {
        let mut sent = false;
        open.retain(|&p| next[usize::from(p) - 1] < MESSAGES);
        for &p in &open {
            let seq = &mut next[usize::from(p) - 1];
            match table.host.try_send(p, message(p, *seq)) {
                Ok(()) => {
                    *seq += 1;
                    sent = true;
                }
                // A full ring, an empty pool, a share taken.
                Err(e) if e.is_retryable() => {}
                Err(e) => table.fail(&format!("send {seq} to guest {p}: {e}")),
            }
        }
        // Every ring full or share taken: wait for the first guest that
        // has anything left to take, rather than spin.
        if !sent && let Some(&p) = open.first() {
            let seq = next[usize::from(p) - 1];
            match table.host.send_timeout(p, message(p, seq), WAIT) {
                Ok(()) => next[usize::from(p) - 1] += 1,
                Err(e) => table.fail(&format!("send {seq} to guest {p}: {e}")),
            }
        }
    }
    table.finish();
}

// Service is round-robin: with every guest's ring full before the host
// receives anything, no guest is served a second time before every other
// has been served once, at every point of the run, however the guests'
// processes are scheduled.
// shm[verify shm.host.fair]
#[test]
fn a_full_table_is_served_round_robin() {
    let mut table = Table::start("filler");
    table.tell_all(GO);
    // Every ring full.
    let deadline = Instant::now() + WAIT;
    while !every_ring_full(&table.path) {
        if Instant::now() > deadline {
            table.fail("not every guest filled its ring");
        }
        if table.children.iter_mut().any(|c| c.poll().is_some()) {
            table.fail("a guest exited before every ring was full");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total = u64::from(GUESTS) * u64::from(RING);
    let mut served = vec![0u64; usize::from(GUESTS)];
    for n in 0..total {
        let from = match table.host.try_recv() {
            Ok(Some((from, f))) => {
                let seq = 2 * served[usize::from(from) - 1];
                if let Some(wrong) = check(from, seq, &f.desc, f.payload()) {
                    table.fail(&wrong);
                }
                from
            }
            Ok(None) => table.fail(&format!("nothing queued after {n} of {total}")),
            Err(e) => table.fail(&format!("receive {n} of {total}: {e}")),
        };
        served[usize::from(from) - 1] += 1;
        let least = *served.iter().min().unwrap();
        let most = *served.iter().max().unwrap();
        assert!(
            most - least <= 1,
            "after {} receives guest {from} has been served {most} times \
             and some guest only {least}",
            n + 1
        );
    }
    assert!(served.iter().all(|&s| s == u64::from(RING)), "{served:?}");
    table.tell_all(DONE);
    table.finish();
}

/// Whether every guest→host ring of the segment at `path` holds
/// [`RING`] messages.
fn every_ring_full(path: &Path) -> bool {
    let report = shmhub::admin::inspect_path(path).unwrap();
    report.peers.len() == usize::from(GUESTS)
        && report.peers.iter().all(|p| p.to_host.len() == Some(RING))
}
