//! No loss under load: several guest processes and the host exchange tens of
//! thousands of messages each way, and nothing is lost, duplicated,
//! corrupted or reordered, and every slot goes back.
//!
//! The parent process is the host. It creates a small segment (rings of
//! [`RING`] descriptors, [`SLOTS`] slots of 4 KiB per pool) so that full rings
//! and exhausted pools really happen, reserves [`GUESTS`] entries, and starts
//! one guest process per entry by re-running this test binary through the
//! harness of `tests/support` ([`Child::spawn`], [`child_entry`]).
//!
//! Every message of a stream (one guest, one direction) carries:
//! - `id` = its sequence number, `0..N`;
//! - a payload whose length (0..=32 bytes inline, 33..=4096 in a slot) and
//!   bytes are derived from (guest, direction, sequence number);
//! - `method_id` = the FNV-1a checksum of the payload.
//!
//! The receiver regenerates the expected payload and checks the id (a gap is
//! counted as lost, an id already seen as duplicated or reordered), the
//! length, the placement (inline or slot), the checksum and every byte.
//!
//! Each side runs one thread that interleaves sending and receiving (a
//! `ShmHost` or `ShmGuest` is used through `&mut self`), with short waits
//! only, so neither side can block the other for long. Sends rotate
//! through `try_send`, `send_timeout`, `send_with`, `send_batch` and
//! `loan` + `commit`; receives through `try_recv`, `recv_timeout`,
//! `recv_*_in_place` and `recv_batch*`. A full ring or an exhausted pool is counted and retried,
//! never treated as an error.
//!
//! Three runs, one at a time (each loads both cores of a small machine):
//! - full speed: [`GUESTS`] guests x 10 000 messages each way, so 30 000 from
//!   the host to the guests and 30 000 back;
//! - slow guests: the guests sleep 1 ms every 8 messages they receive
//!   (3 x 4 000 each way); the host's rings to them fill and its pool runs
//!   out;
//! - slow host: the host receives as slowly; the guests' rings fill and
//!   their pools run out.
//!
//! Every run checks, for every stream, that ids `0..N` arrived exactly once
//! and in order with intact payloads (the receiver's counts; each child
//! reports its own as JSON and exits 0), that each side used every send and
//! receive API, and at the end that every ring is empty, every entry Empty
//! and every slot free (`shmhub::admin::inspect_path`). The slow runs also check
//! that backpressure really happened and was waited out: a thread sampling
//! the segment with `inspect_path` saw full rings and exhausted pools, and
//! senders were refused (`RingFull`, `PoolExhausted`) and then got through
//! with `send_timeout`.
//!
//! Nothing waits without a bound: every library wait is a few milliseconds,
//! a side that makes no progress for [`STALL`] fails, children arm a
//! watchdog, and the parent kills its children when it fails.

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::{
    Error, Frame, INLINE_CAPACITY, MsgDesc, PeerId, PeerState, SegmentConfig, ShmGuest, ShmHost,
};
use support::traffic::{HostTo, Sender, fill_seeded, fnv1a, splitmix};
use support::{Child, ChildEnv, fail_all, signal};

const PEER_ENV: &str = "SHMHUB_TEST_PEER";
const PROFILE_ENV: &str = "SHMHUB_TEST_PROFILE";

/// Guest processes per run.
const GUESTS: u8 = 3;
/// Descriptors per ring: small, so rings fill.
const RING: u32 = 16;
/// Slots per pool (the host's pool is shared by its sends to every guest).
const SLOTS: u32 = 6;
const SLOT_SIZE: u32 = 4096;
/// Most messages one `send_batch` call carries.
const SEND_BATCH: u64 = 8;
/// Most messages one `recv_batch*` call takes.
const RECV_BATCH: usize = 16;
/// Most messages sent (per stream) or received in one turn of a loop.
const BUDGET: u64 = 32;

/// A side that makes no progress for this long fails.
const STALL: Duration = Duration::from_secs(10);
/// How long children get to attach, and to exit once done.
const CHILD_WAIT: Duration = Duration::from_secs(10);
/// A child still running after this long ends itself. Only a last resort
/// (a busy machine may make a run slow, but not stuck): a guest also ends
/// itself when the host process is gone or when it makes no progress for
/// [`STALL`].
const CHILD_WATCHDOG: Duration = Duration::from_secs(600);

/// Direction codes, mixed into the payload seed and the message type.
const H2G: u8 = 1;
const G2H: u8 = 2;

/// The send APIs, in the order of [`TxStats::by_api`].
const TX_APIS: [&str; 5] = [
    "try_send",
    "send_timeout",
    "send_with",
    "send_batch",
    "loan+commit",
];
/// The receive APIs, in the order of [`RxStats::by_api`].
const RX_APIS: [&str; 4] = ["try_recv", "recv_timeout", "recv_in_place", "recv_batch"];

// ---------------------------------------------------------------------------
// Run profiles
// ---------------------------------------------------------------------------

/// A receiver that sleeps `sleep` after every `every` messages it takes.
#[derive(Debug, Clone, Copy)]
struct Pause {
    every: u64,
    sleep: Duration,
}

/// How one run behaves; children find theirs by name.
#[derive(Debug, Clone, Copy)]
struct Profile {
    name: &'static str,
    /// Messages per guest in each direction.
    per_guest: u64,
    /// Timeout of the host's waiting sends.
    host_send_wait: Duration,
    /// Timeout of the guests' waiting sends.
    guest_send_wait: Duration,
    /// Timeout of the first receive of a turn in which nothing was sent.
    recv_wait: Duration,
    /// The host receives slowly.
    host_pause: Option<Pause>,
    /// The guests receive slowly.
    guest_pause: Option<Pause>,
}

const FULL_SPEED: Profile = Profile {
    name: "full-speed",
    per_guest: 10_000,
    host_send_wait: Duration::from_millis(2),
    guest_send_wait: Duration::from_millis(2),
    recv_wait: Duration::from_millis(1),
    host_pause: None,
    guest_pause: None,
};

const SLOW_GUESTS: Profile = Profile {
    name: "slow-guests",
    per_guest: 4_000,
    host_send_wait: Duration::from_millis(20),
    guest_send_wait: Duration::from_millis(2),
    recv_wait: Duration::from_millis(1),
    host_pause: None,
    guest_pause: Some(Pause {
        every: 8,
        sleep: Duration::from_millis(1),
    }),
};

const SLOW_HOST: Profile = Profile {
    name: "slow-host",
    per_guest: 4_000,
    host_send_wait: Duration::from_millis(2),
    guest_send_wait: Duration::from_millis(20),
    recv_wait: Duration::from_millis(1),
    host_pause: Some(Pause {
        every: 8,
        sleep: Duration::from_millis(1),
    }),
    guest_pause: None,
};

const PROFILES: [Profile; 3] = [FULL_SPEED, SLOW_GUESTS, SLOW_HOST];

fn profile(name: &str) -> anyhow::Result<Profile> {
    PROFILES
        .into_iter()
        .find(|p| p.name == name)
        .with_context(|| format!("unknown profile {name}"))
}

fn config() -> SegmentConfig {
    SegmentConfig {
        max_guests: u32::from(GUESTS),
        ring_capacity: RING,
        slot_size: SLOT_SIZE,
        max_payload: SLOT_SIZE,
        slots_per_pool: SLOTS,
        ..SegmentConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Messages: sizes, bytes, checksum
// ---------------------------------------------------------------------------

fn seed(guest: u8, dir: u8, seq: u64) -> u64 {
    (u64::from(guest) << 56) | (u64::from(dir) << 48) | seq
}

fn msg_type(dir: u8) -> u16 {
    0x5300 | u16::from(dir)
}

/// Length of message `seq`: runs of 24 inline messages (which fill a ring)
/// alternate with runs of mostly slot messages (which exhaust a pool); the
/// edge sizes 0, 32, 33 and 4096 come up regularly.
fn msg_len(guest: u8, dir: u8, seq: u64) -> usize {
    match seq % 101 {
        0 => return 0,
        1 => return INLINE_CAPACITY,
        2 => return INLINE_CAPACITY + 1,
        3 => return SLOT_SIZE as usize,
        _ => {}
    }
    let h = splitmix(&mut (seed(guest, dir, seq) ^ 0xA5A5_5A5A_0F0F_F0F0)) as usize;
    let inline = h % (INLINE_CAPACITY + 1);
    if (seq / 24) % 2 == 0 || h % 5 == 0 {
        inline
    } else {
        INLINE_CAPACITY + 1 + (h >> 8) % (SLOT_SIZE as usize - INLINE_CAPACITY)
    }
}

/// Fills `buf` with the payload bytes of message `seq`.
fn fill(guest: u8, dir: u8, seq: u64, buf: &mut [u8]) {
    fill_seeded(seed(guest, dir, seq), buf);
}

fn payload(guest: u8, dir: u8, seq: u64) -> Vec<u8> {
    let mut buf = vec![0; msg_len(guest, dir, seq)];
    fill(guest, dir, seq, &mut buf);
    buf
}

fn desc(dir: u8, seq: u64, payload: &[u8]) -> MsgDesc {
    MsgDesc {
        msg_type: msg_type(dir),
        id: seq,
        method_id: fnv1a(payload),
        ..MsgDesc::default()
    }
}

fn dir_name(dir: u8) -> &'static str {
    if dir == H2G {
        "host-to-guest"
    } else {
        "guest-to-host"
    }
}

// ---------------------------------------------------------------------------
// Counters (a child reports its own as JSON)
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct TxStats {
    sent: u64,
    /// Refusals and timeouts because the ring was full.
    ring_full: u64,
    /// Refusals and timeouts because the pool had no free slot.
    pool_exhausted: u64,
    /// Refusals and timeouts because the receiver held its share of the
    /// host's slots (host sends only).
    share_exhausted: u64,
    /// Other retryable refusals.
    timed_out: u64,
    /// `send_batch` calls that sent only part of their frames in time.
    partial_batches: u64,
    /// Messages a non-waiting `try_send` refused (full ring or no slot) and a
    /// following `send_timeout` then sent: backpressure waited out.
    waited_out: u64,
    /// Messages sent through each API of [`TX_APIS`].
    by_api: [u64; 5],
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct RxStats {
    received: u64,
    lost: u64,
    duplicated: u64,
    unexpected: u64,
    corrupted: u64,
    inline_msgs: u64,
    slot_msgs: u64,
    bytes: u64,
    /// Messages taken through each API of [`RX_APIS`].
    by_api: [u64; 4],
}

/// What one side reports about its two streams with one peer.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct StreamReport {
    guest: u8,
    tx: TxStats,
    rx: RxStats,
    rx_next: u64,
    notes: Vec<String>,
}

/// A guest's report, written to `guest-N.json`.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct GuestReport {
    stream: StreamReport,
    pauses: u64,
    elapsed_ms: u64,
}

// ---------------------------------------------------------------------------
// Receiving: checking every message of a stream
// ---------------------------------------------------------------------------

/// Checks the messages of one stream as they arrive.
struct Checker {
    guest: u8,
    dir: u8,
    n: u64,
    /// The id expected next.
    next: u64,
    stats: RxStats,
    notes: Vec<String>,
    expected: Vec<u8>,
}

impl Checker {
    fn new(guest: u8, dir: u8, n: u64) -> Self {
        Checker {
            guest,
            dir,
            n,
            next: 0,
            stats: RxStats::default(),
            notes: Vec::new(),
            expected: Vec::with_capacity(SLOT_SIZE as usize),
        }
    }

    fn note(&mut self, what: String) {
        if self.notes.len() < 20 {
            self.notes.push(format!(
                "guest {} {}: {what}",
                self.guest,
                dir_name(self.dir)
            ));
        }
    }

    fn check(&mut self, api: usize, desc: &MsgDesc, payload: &[u8]) {
        self.stats.received += 1;
        self.stats.by_api[api] += 1;
        let id = desc.id;
        if id >= self.n {
            self.stats.unexpected += 1;
            self.note(format!("id {id} is outside 0..{}", self.n));
            return;
        }
        if id < self.next {
            self.stats.duplicated += 1;
            self.note(format!(
                "id {id} again (or out of order) after {}",
                self.next - 1
            ));
            return;
        }
        if id > self.next {
            self.stats.lost += id - self.next;
            self.note(format!("ids {}..{id} never came", self.next));
        }
        self.next = id + 1;

        let len = msg_len(self.guest, self.dir, id);
        let problem = if desc.msg_type != msg_type(self.dir) {
            Some(format!("type {:#x}", desc.msg_type))
        } else if payload.len() != len || desc.payload_len as usize != len {
            Some(format!(
                "length {} (descriptor {}), expected {len}",
                payload.len(),
                desc.payload_len
            ))
        } else if desc.is_slot() != (len > INLINE_CAPACITY) {
            Some(format!(
                "{len} bytes travelled {}",
                if desc.is_slot() {
                    "in a slot"
                } else {
                    "inline"
                }
            ))
        } else if fnv1a(payload) != desc.method_id {
            Some(format!(
                "checksum {:#010x}, descriptor says {:#010x}",
                fnv1a(payload),
                desc.method_id
            ))
        } else {
            self.expected.resize(len, 0);
            fill(self.guest, self.dir, id, &mut self.expected);
            payload
                .iter()
                .zip(&self.expected)
                .position(|(a, b)| a != b)
                .map(|at| format!("payload differs from the one sent at byte {at}"))
        };
        if let Some(problem) = problem {
            self.stats.corrupted += 1;
            self.note(format!("message {id}: {problem}"));
        }
        if desc.is_slot() {
            self.stats.slot_msgs += 1;
        } else {
            self.stats.inline_msgs += 1;
        }
        self.stats.bytes += payload.len() as u64;
    }

    fn done(&self) -> bool {
        self.next >= self.n
    }
}

/// Sleeps every so many received messages (a slow receiver).
struct Pacer {
    pause: Option<Pause>,
    count: u64,
    pauses: u64,
}

impl Pacer {
    fn new(pause: Option<Pause>) -> Self {
        Pacer {
            pause,
            count: 0,
            pauses: 0,
        }
    }

    fn tick(&mut self) {
        if let Some(p) = self.pause {
            self.count += 1;
            if self.count % p.every == 0 {
                self.pauses += 1;
                std::thread::sleep(p.sleep);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Sending: one stream, through every send API
// ---------------------------------------------------------------------------

/// The sending half of one stream.
struct TxStream {
    guest: u8,
    dir: u8,
    n: u64,
    next: u64,
    stats: TxStats,
}

impl TxStream {
    fn new(guest: u8, dir: u8, n: u64) -> Self {
        TxStream {
            guest,
            dir,
            n,
            next: 0,
            stats: TxStats::default(),
        }
    }

    fn done(&self) -> bool {
        self.next >= self.n
    }

    fn frame(&self, seq: u64) -> Frame {
        let payload = payload(self.guest, self.dir, seq);
        Frame::new(desc(self.dir, seq, &payload), payload)
    }

    /// Counts a retryable refusal; any other error ends the run.
    fn refused(&mut self, seq: u64, e: Error) -> anyhow::Result<()> {
        match e {
            Error::RingFull { .. } => self.stats.ring_full += 1,
            Error::PoolExhausted { .. } => self.stats.pool_exhausted += 1,
            Error::ShareExhausted { .. } => self.stats.share_exhausted += 1,
            e if e.is_retryable() => self.stats.timed_out += 1,
            e => bail!(
                "guest {} {}: sending message {seq} failed: {e} ({e:?})",
                self.guest,
                dir_name(self.dir)
            ),
        }
        Ok(())
    }

    /// Sends up to [`BUDGET`] messages, stopping at the first one that does
    /// not go in time (a full ring or an exhausted pool). Returns how many
    /// were sent.
    fn pump(&mut self, tx: &mut impl Sender, wait: Duration) -> anyhow::Result<u64> {
        let mut sent = 0;
        while !self.done() && sent < BUDGET {
            let seq = self.next;
            let len = msg_len(self.guest, self.dir, seq);
            let api = match seq % 7 {
                0 => 0,
                2 => 2,
                3 => 3,
                4 | 6 if len > INLINE_CAPACITY => 4,
                _ => 1,
            };
            let result = match api {
                0 => tx.try_send(&self.frame(seq)).map(|()| 1),
                1 => {
                    // Try without waiting first; when that is refused, wait
                    // for room and a slot.
                    let frame = self.frame(seq);
                    match tx.try_send(&frame) {
                        Ok(()) => Ok(1),
                        Err(e) if e.is_retryable() => {
                            self.refused(seq, e)?;
                            tx.send_timeout(&frame, wait).map(|()| {
                                self.stats.waited_out += 1;
                                1
                            })
                        }
                        Err(e) => Err(e),
                    }
                }
                2 => {
                    let payload = payload(self.guest, self.dir, seq);
                    tx.send_with(desc(self.dir, seq, &payload), &payload, wait)
                        .map(|()| 1)
                }
                3 => {
                    let frames: Vec<Frame> = (seq..(seq + SEND_BATCH).min(self.n))
                        .map(|s| self.frame(s))
                        .collect();
                    tx.send_batch(&frames, wait).map(|k| {
                        if k < frames.len() {
                            self.stats.partial_batches += 1;
                        }
                        k as u64
                    })
                }
                _ => match tx.loan(len, wait) {
                    Ok(mut loan) => {
                        let slot = loan.as_mut_slice();
                        assert_eq!(slot.len(), len, "loan of {len} bytes");
                        fill(self.guest, self.dir, seq, slot);
                        loan.desc = desc(self.dir, seq, slot);
                        tx.commit(loan).map(|()| 1)
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(k) => {
                    self.next += k;
                    self.stats.sent += k;
                    self.stats.by_api[api] += k;
                    sent += k;
                }
                Err(e) if e.is_retryable() => {
                    self.refused(seq, e)?;
                    break;
                }
                Err(e) => self.refused(seq, e)?,
            }
        }
        Ok(sent)
    }
}

// ---------------------------------------------------------------------------
// The host's loop
// ---------------------------------------------------------------------------

/// Takes up to [`BUDGET`] messages from the guests, using one receive API
/// per turn; only the first receive may wait (`wait`). Returns how many.
fn host_receive(
    host: &mut ShmHost,
    guests: &[PeerId],
    rx: &mut [Checker],
    pacer: &mut Pacer,
    turn: u64,
    wait: Duration,
) -> anyhow::Result<u64> {
    let index = |from: PeerId| {
        guests
            .iter()
            .position(|&g| g == from)
            .with_context(|| format!("message from peer {from}, which is none of {guests:?}"))
    };
    let mut got = 0u64;
    match turn % 4 {
        0 => {
            while got < BUDGET {
                let Some((from, frame)) = host.try_recv().context("try_recv")? else {
                    break;
                };
                rx[index(from)?].check(0, &frame.desc, frame.payload());
                got += 1;
                pacer.tick();
            }
        }
        1 => {
            while got < BUDGET {
                let w = if got == 0 { wait } else { Duration::ZERO };
                let Some((from, frame)) = host.recv_timeout(Some(w)).context("recv_timeout")?
                else {
                    break;
                };
                rx[index(from)?].check(1, &frame.desc, frame.payload());
                got += 1;
                pacer.tick();
            }
        }
        2 => {
            let mut w = wait;
            for (i, &g) in guests.iter().enumerate() {
                let mut from_this = 0;
                while !rx[i].done() && from_this < BUDGET / u64::from(GUESTS) {
                    let received = host
                        .recv_from_in_place(g, Some(w))
                        .with_context(|| format!("recv_from_in_place({g})"))?;
                    w = Duration::ZERO;
                    let Some(received) = received else { break };
                    rx[i].check(2, received.desc(), received.payload());
                    drop(received);
                    from_this += 1;
                    pacer.tick();
                }
                got += from_this;
            }
        }
        _ => {
            let mut w = wait;
            for (i, &g) in guests.iter().enumerate() {
                if rx[i].done() {
                    continue;
                }
                let checker = &mut rx[i];
                let n = host
                    .receiver(g)
                    .unwrap()
                    .recv_batch(RECV_BATCH, Some(w), |received| {
                        checker.check(3, received.desc(), received.payload());
                        drop(received);
                        pacer.tick();
                    })
                    .with_context(|| format!("recv_batch_from({g})"))?;
                w = Duration::ZERO;
                got += n as u64;
            }
        }
    }
    Ok(got)
}

struct HostOutcome {
    streams: Vec<StreamReport>,
    pauses: u64,
    elapsed: Duration,
}

/// Sends every guest its messages and takes theirs, interleaved, until all
/// streams are complete. `watch` is called now and then (it checks that no
/// child has failed).
fn run_host(
    host: &mut ShmHost,
    profile: &Profile,
    guests: &[PeerId],
    watch: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<HostOutcome> {
    let n = profile.per_guest;
    let mut tx: Vec<TxStream> = guests
        .iter()
        .map(|&g| TxStream::new(g.get(), H2G, n))
        .collect();
    let mut rx: Vec<Checker> = guests
        .iter()
        .map(|&g| Checker::new(g.get(), G2H, n))
        .collect();
    let mut pacer = Pacer::new(profile.host_pause);
    let started = Instant::now();
    let mut last_progress = started;
    let mut last_watch = started;
    let mut turn = 0u64;
    loop {
        let mut progress = 0;
        for k in 0..guests.len() {
            let i = (turn as usize + k) % guests.len();
            if !tx[i].done() {
                let mut to = HostTo {
                    host: &mut *host,
                    peer: guests[i].get(),
                };
                progress += tx[i].pump(&mut to, profile.host_send_wait)?;
            }
        }
        let wait = if progress > 0 {
            Duration::ZERO
        } else {
            profile.recv_wait
        };
        progress += host_receive(host, guests, &mut rx, &mut pacer, turn, wait)?;
        if tx.iter().all(TxStream::done) && rx.iter().all(Checker::done) {
            break;
        }
        let now = Instant::now();
        if progress > 0 {
            last_progress = now;
        } else if now - last_progress > STALL {
            let state: Vec<String> = tx
                .iter()
                .zip(&rx)
                .map(|(t, r)| {
                    format!(
                        "guest {}: sent {}/{n}, received up to {}/{n}",
                        t.guest, t.next, r.next
                    )
                })
                .collect();
            bail!("no progress for {STALL:?}: {state:?}");
        }
        if now - last_watch > Duration::from_millis(20) {
            last_watch = now;
            watch()?;
        }
        turn += 1;
    }
    Ok(HostOutcome {
        streams: tx
            .into_iter()
            .zip(rx)
            .map(|(t, r)| StreamReport {
                guest: t.guest,
                tx: t.stats,
                rx_next: r.next,
                rx: r.stats,
                notes: r.notes,
            })
            .collect(),
        pauses: pacer.pauses,
        elapsed: started.elapsed(),
    })
}

// ---------------------------------------------------------------------------
// The guest process
// ---------------------------------------------------------------------------

/// Runs a child role when this binary was started as a child; otherwise
/// (a normal test run) does nothing.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG, |role, env| match role {
        "guest" => run_guest(env),
        other => bail!("unknown role {other}"),
    });
}

/// Takes up to [`BUDGET`] messages from the host with one receive API per
/// turn; only the first receive may wait. Returns how many.
fn guest_receive(
    guest: &mut ShmGuest,
    rx: &mut Checker,
    pacer: &mut Pacer,
    turn: u64,
    wait: Duration,
) -> anyhow::Result<u64> {
    let mut got = 0u64;
    match turn % 4 {
        0 => {
            while got < BUDGET {
                let Some(frame) = guest.try_recv().context("try_recv")? else {
                    break;
                };
                rx.check(0, &frame.desc, frame.payload());
                got += 1;
                pacer.tick();
            }
        }
        1 => {
            while got < BUDGET {
                let w = if got == 0 { wait } else { Duration::ZERO };
                let Some(frame) = guest.recv_timeout(Some(w)).context("recv_timeout")? else {
                    break;
                };
                rx.check(1, &frame.desc, frame.payload());
                got += 1;
                pacer.tick();
            }
        }
        2 => {
            while got < BUDGET {
                let w = if got == 0 { wait } else { Duration::ZERO };
                let Some(received) = guest.receiver().recv(Some(w)).context("recv_in_place")?
                else {
                    break;
                };
                rx.check(2, received.desc(), received.payload());
                drop(received);
                got += 1;
                pacer.tick();
            }
        }
        _ => {
            let n = guest
                .receiver()
                .recv_batch(RECV_BATCH, Some(wait), |received| {
                    rx.check(3, received.desc(), received.payload());
                    drop(received);
                    pacer.tick();
                })
                .context("recv_batch")?;
            got += n as u64;
        }
    }
    Ok(got)
}

fn run_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let peer: u8 = env.parse(PEER_ENV)?;
    let profile = profile(&env.var(PROFILE_ENV)?)?;
    let n = profile.per_guest;
    let started = Instant::now();
    let mut guest = ShmGuest::attach_path_with_id(&env.path, peer).context("attach")?;
    ensure!(guest.peer_id() == peer, "attached as {}", guest.peer_id());

    let mut tx = TxStream::new(peer, G2H, n);
    let mut rx = Checker::new(peer, H2G, n);
    let mut pacer = Pacer::new(profile.guest_pause);
    let mut last_progress = Instant::now();
    let mut last_host_check = Instant::now();
    let mut turn = 0u64;
    while !(tx.done() && rx.done()) {
        let mut progress = 0;
        if !tx.done() {
            progress += tx.pump(&mut guest, profile.guest_send_wait)?;
        }
        if !rx.done() {
            let wait = if progress > 0 {
                Duration::ZERO
            } else {
                profile.recv_wait
            };
            progress += guest_receive(&mut guest, &mut rx, &mut pacer, turn, wait)?;
        }
        let now = Instant::now();
        if now - last_host_check > Duration::from_millis(100) {
            // Receives that find a message and sends that find room never
            // look at the host; a guest must not outlive its test.
            last_host_check = now;
            let status = guest.status().host_status().context("host status")?;
            ensure!(
                status == shmhub::HostStatus::Alive,
                "guest {peer}: the host is {status}"
            );
        }
        if progress > 0 {
            last_progress = now;
        } else if now - last_progress > STALL {
            bail!(
                "guest {peer}: no progress for {STALL:?}: sent {}/{n}, received up to {}/{n}",
                tx.next,
                rx.next
            );
        }
        turn += 1;
    }
    // The host sends exactly n messages: nothing more may come.
    if let Some(extra) = guest.try_recv().context("final try_recv")? {
        rx.stats.unexpected += 1;
        rx.note(format!("extra message {} after all {n}", extra.desc.id));
    }

    let report = GuestReport {
        stream: StreamReport {
            guest: peer,
            tx: tx.stats,
            rx: rx.stats,
            rx_next: rx.next,
            notes: rx.notes,
        },
        pauses: pacer.pauses,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    let json = serde_json::to_string_pretty(&report)?;
    signal(&env.dir, &format!("guest-{peer}.json"), &json).context("report")?;
    let rx = &report.stream.rx;
    ensure!(
        rx.lost + rx.duplicated + rx.unexpected + rx.corrupted == 0,
        "bad messages from the host: {:?}",
        report.stream.notes
    );
    guest.detach().context("detach")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The parent's side: the monitor, one run
// ---------------------------------------------------------------------------

/// What a thread sampling the segment with `inspect_path` saw while a run
/// went on: the fullest each ring and pool ever was.
#[derive(Debug, Default, Clone)]
struct Observed {
    samples: u64,
    errors: u64,
    /// Per guest, the most descriptors its host-to-guest ring held.
    max_to_guest: Vec<u32>,
    /// Per guest, the most descriptors its guest-to-host ring held.
    max_to_host: Vec<u32>,
    /// Per pool (host first), the most slots in use.
    max_pool_used: Vec<u32>,
    /// Samples with some host-to-guest ring full.
    full_to_guest: u64,
    /// Samples with some guest-to-host ring full.
    full_to_host: u64,
    /// Samples with the host's pool exhausted.
    host_pool_exhausted: u64,
    /// Samples with some guest's pool exhausted.
    guest_pool_exhausted: u64,
    /// Per guest, the most host slots it was counted holding.
    max_host_slots_held: Vec<u32>,
    /// Samples where a guest was counted holding more host slots than its
    /// share (`shm.pool.share`).
    over_share: u64,
}

/// Samples the segment every millisecond until dropped or stopped.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Observed>>,
}

impl Monitor {
    fn start(path: PathBuf) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let guests = usize::from(GUESTS);
            let mut seen = Observed {
                max_to_guest: vec![0; guests],
                max_to_host: vec![0; guests],
                max_pool_used: vec![0; guests + 1],
                max_host_slots_held: vec![0; guests],
                ..Observed::default()
            };
            while !flag.load(Ordering::Relaxed) {
                match shmhub::admin::inspect_path(&path) {
                    Ok(report) => {
                        seen.samples += 1;
                        let (mut to_guest_full, mut to_host_full) = (false, false);
                        for (i, p) in report.peers.iter().enumerate() {
                            let to_guest = p.to_guest.len().unwrap_or(0);
                            let to_host = p.to_host.len().unwrap_or(0);
                            seen.max_to_guest[i] = seen.max_to_guest[i].max(to_guest);
                            seen.max_to_host[i] = seen.max_to_host[i].max(to_host);
                            to_guest_full |= to_guest == RING;
                            to_host_full |= to_host == RING;
                            let held = p.entry.host_slots_held;
                            seen.max_host_slots_held[i] = seen.max_host_slots_held[i].max(held);
                            seen.over_share +=
                                u64::from(report.host_slot_share.is_some_and(|share| held > share));
                        }
                        seen.full_to_guest += u64::from(to_guest_full);
                        seen.full_to_host += u64::from(to_host_full);
                        for (i, pool) in report.pools.iter().enumerate() {
                            seen.max_pool_used[i] = seen.max_pool_used[i].max(pool.usage.used);
                        }
                        seen.host_pool_exhausted += u64::from(report.pools[0].usage.free == 0);
                        seen.guest_pool_exhausted +=
                            u64::from(report.pools[1..].iter().any(|p| p.usage.free == 0));
                    }
                    Err(_) => seen.errors += 1,
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Monitor {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Observed {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("monitor thread")
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Everything one run produced, checked.
struct RunOutcome {
    host: HostOutcome,
    guests: Vec<GuestReport>,
    observed: Observed,
}

/// Runs are serialized: each already loads both cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn check_stream(who: &str, s: &StreamReport, n: u64) -> Result<(), String> {
    let rx = &s.rx;
    let tx = &s.tx;
    let mut problems = Vec::new();
    if tx.sent != n {
        problems.push(format!("sent {} of {n}", tx.sent));
    }
    if rx.received != n || s.rx_next != n {
        problems.push(format!(
            "received {} (up to id {}) of {n}",
            rx.received, s.rx_next
        ));
    }
    if rx.lost + rx.duplicated + rx.unexpected + rx.corrupted != 0 {
        problems.push(format!(
            "lost {}, duplicated {}, unexpected {}, corrupted {}: {:?}",
            rx.lost, rx.duplicated, rx.unexpected, rx.corrupted, s.notes
        ));
    }
    if rx.inline_msgs == 0 || rx.slot_msgs == 0 {
        problems.push(format!(
            "{} inline and {} slot messages: not a mix",
            rx.inline_msgs, rx.slot_msgs
        ));
    }
    for (api, count) in TX_APIS.iter().zip(tx.by_api) {
        if count == 0 {
            problems.push(format!("sent nothing through {api}"));
        }
    }
    for (api, count) in RX_APIS.iter().zip(rx.by_api) {
        if count == 0 {
            problems.push(format!("received nothing through {api}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{who}, stream with guest {}: {}",
            s.guest,
            problems.join("; ")
        ))
    }
}

fn run(profile: Profile) -> RunOutcome {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let n = profile.per_guest;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{}.shm", profile.name));
    let mut host = ShmHost::create(&path, config()).unwrap();
    let guests: Vec<PeerId> = (0..GUESTS).map(|_| host.reserve_peer().unwrap()).collect();
    let mut children: Vec<Child> = guests
        .iter()
        .map(|&g| {
            let env = [
                (PEER_ENV, g.to_string()),
                (PROFILE_ENV, profile.name.to_string()),
            ];
            Child::spawn("guest", &path, dir.path(), &env).named(format!("guest {g}"))
        })
        .collect();

    // Start once every guest has attached, so that the exchange runs with
    // all of them from its first message.
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        let peers = host.peers().unwrap();
        if guests
            .iter()
            .all(|&g| peers[usize::from(g) - 1].state == PeerState::Attached)
        {
            break;
        }
        for c in children.iter_mut() {
            if let Err(e) = c.check_not_failed() {
                fail_all(&mut children, &format!("before attaching: {e:#}"));
            }
        }
        if Instant::now() >= deadline {
            fail_all(&mut children, "the guests did not all attach in time");
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let monitor = Monitor::start(path.clone());
    let outcome = run_host(&mut host, &profile, &guests, &mut || {
        children.iter_mut().try_for_each(Child::check_not_failed)
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => fail_all(&mut children, &format!("host: {e:#}")),
    };

    // The counts, both ways: the host's, then each child's own, which it
    // reports (even when it fails) before exiting; every child exits
    // successfully.
    let mut problems = Vec::new();
    for s in &outcome.streams {
        if let Err(p) = check_stream("host", s, n) {
            problems.push(p);
        }
    }
    let deadline = Instant::now() + CHILD_WAIT;
    let mut reports = Vec::new();
    for (i, &g) in guests.iter().enumerate() {
        match children[i].wait_until(deadline) {
            Ok(status) if status.success() => {}
            Ok(status) => problems.push(format!("guest {g} exited with {status}")),
            Err(e) => problems.push(format!("{e:#}")),
        }
        let file = dir.path().join(format!("guest-{g}.json"));
        let report = std::fs::read_to_string(&file)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(serde_json::from_str::<GuestReport>(&s)?));
        match report {
            Ok(r) => {
                if r.stream.guest != g {
                    problems.push(format!(
                        "report of guest {g} names guest {}",
                        r.stream.guest
                    ));
                }
                if let Err(p) = check_stream(&format!("guest {g}"), &r.stream, n) {
                    problems.push(p);
                }
                reports.push(r);
            }
            Err(e) => problems.push(format!("no report from guest {g}: {e:#}")),
        }
    }
    let observed = monitor.finish();
    if !problems.is_empty() {
        fail_all(&mut children, &problems.join("\n"));
    }

    // Nothing more to read (this also lets the host finish the goodbye of
    // a guest that left with messages still queued), every ring empty,
    // every entry free, every slot back in its pool.
    if let Some((from, f)) = host.try_recv().unwrap() {
        panic!(
            "extra message {} from guest {from} after all {n}",
            f.desc.id
        );
    }
    let report = shmhub::admin::inspect_path(&path).unwrap();
    for p in &report.peers {
        assert!(
            p.to_guest.is_empty() && p.to_host.is_empty(),
            "rings of peer {} not empty: {p:?}",
            p.entry.peer_id
        );
        assert_eq!(p.entry.state, PeerState::Empty, "{p:?}");
    }
    for pool in &report.pools {
        assert_eq!(
            pool.usage.used, 0,
            "{} still uses slots: {pool:?}",
            pool.owner_name
        );
    }
    // Every guest's count of the host's slots is back to 0, and no sample
    // saw one over its share.
    assert!(
        report.peers.iter().all(|p| p.entry.host_slots_held == 0),
        "host slots still counted: {:?}",
        report.peers
    );
    assert_eq!(
        observed.over_share, 0,
        "a guest held more than its share: {observed:?}"
    );
    drop(host);
    assert!(!path.exists(), "the host removes its segment file");

    let outcome = RunOutcome {
        host: outcome,
        guests: reports,
        observed,
    };
    print_summary(&profile, &outcome, started.elapsed());
    outcome
}

fn print_summary(profile: &Profile, o: &RunOutcome, total: Duration) {
    let n = profile.per_guest;
    let sum = |f: &dyn Fn(&StreamReport) -> u64, host: bool| -> u64 {
        if host {
            o.host.streams.iter().map(f).sum()
        } else {
            o.guests.iter().map(|g| f(&g.stream)).sum()
        }
    };
    println!(
        "stress `{}`: {} guests x {n} messages each way ({} each way in all): exchange \
         {:.2?}, whole run {total:.2?}",
        profile.name,
        GUESTS,
        u64::from(GUESTS) * n,
        o.host.elapsed,
    );
    for (side, host) in [("host -> guests", true), ("guests -> host", false)] {
        println!(
            "  {side}: sent {}, ring full {}, pool exhausted {}, other timeouts {}, \
             partial batches {}, waited out {}",
            sum(&|s| s.tx.sent, host),
            sum(&|s| s.tx.ring_full, host),
            sum(&|s| s.tx.pool_exhausted, host),
            sum(&|s| s.tx.timed_out, host),
            sum(&|s| s.tx.partial_batches, host),
            sum(&|s| s.tx.waited_out, host),
        );
        // What the other side received of it.
        let rx = |f: &dyn Fn(&RxStats) -> u64| sum(&|s| f(&s.rx), !host);
        println!(
            "    received {} ({} inline, {} slot, {} bytes); lost {}, duplicated {}, \
             unexpected {}, corrupted {}",
            rx(&|r| r.received),
            rx(&|r| r.inline_msgs),
            rx(&|r| r.slot_msgs),
            rx(&|r| r.bytes),
            rx(&|r| r.lost),
            rx(&|r| r.duplicated),
            rx(&|r| r.unexpected),
            rx(&|r| r.corrupted),
        );
    }
    println!(
        "  pauses: host {}, guests {}; guest run times {:?} ms",
        o.host.pauses,
        o.guests.iter().map(|g| g.pauses).sum::<u64>(),
        o.guests.iter().map(|g| g.elapsed_ms).collect::<Vec<_>>()
    );
    let ob = &o.observed;
    println!(
        "  monitor: {} samples ({} failed); fullest rings to guests {:?}, to host {:?} \
         (capacity {RING}); most slots used {:?} (of {SLOTS}, host first); samples with a \
         full ring to a guest {}, to the host {}, host pool exhausted {}, a guest pool \
         exhausted {}",
        ob.samples,
        ob.errors,
        ob.max_to_guest,
        ob.max_to_host,
        ob.max_pool_used,
        ob.full_to_guest,
        ob.full_to_host,
        ob.host_pool_exhausted,
        ob.guest_pool_exhausted,
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

// shm[verify shm.ring.spsc]
// shm[verify shm.send.placement]
// shm[verify shm.send.batch]
// shm[verify shm.send.zero-copy]
// shm[verify shm.recv.zero-copy]
// shm[verify shm.pool.bitmap]
#[test]
fn guests_and_host_exchange_tens_of_thousands_of_messages_each_way_without_loss() {
    run(FULL_SPEED);
}

/// The guests receive slowly: the host's rings to them fill and its pool
/// runs out, and the host waits that out.
// shm[verify shm.send.backpressure]
#[test]
fn slow_guests_make_the_host_wait_out_full_rings_and_an_exhausted_pool() {
    let o = run(SLOW_GUESTS);
    let ob = &o.observed;
    assert!(
        ob.full_to_guest > 0 && ob.max_to_guest.contains(&RING),
        "no host-to-guest ring was ever seen full: {ob:?}"
    );
    // Each slow guest is held to its share of the host's slots (6 / 3):
    // together they can still take the whole pool.
    let share = SLOTS / u32::from(GUESTS);
    assert!(
        ob.max_host_slots_held.contains(&share),
        "no guest was ever seen holding its share: {ob:?}"
    );
    assert!(
        ob.max_host_slots_held.iter().all(|&held| held <= share),
        "a guest held more than its share: {ob:?}"
    );
    let tx = |f: fn(&TxStats) -> u64| o.host.streams.iter().map(|s| f(&s.tx)).sum::<u64>();
    assert!(tx(|t| t.ring_full) > 0, "the host never met a full ring");
    assert!(
        tx(|t| t.pool_exhausted + t.share_exhausted) > 0,
        "the host never met an exhausted pool or share"
    );
    assert!(
        tx(|t| t.waited_out) > 0,
        "no refused send of the host was waited out by send_timeout"
    );
}

/// The host receives slowly: the guests' rings to it fill and their pools
/// run out, and the guests wait that out.
// shm[verify shm.send.backpressure]
#[test]
fn slow_host_makes_the_guests_wait_out_full_rings_and_exhausted_pools() {
    let o = run(SLOW_HOST);
    let ob = &o.observed;
    assert!(
        ob.full_to_host > 0 && ob.max_to_host.contains(&RING),
        "no guest-to-host ring was ever seen full: {ob:?}"
    );
    assert!(
        ob.guest_pool_exhausted > 0 && ob.max_pool_used[1..].contains(&SLOTS),
        "no guest's pool was ever seen exhausted: {ob:?}"
    );
    let tx = |f: fn(&TxStats) -> u64| o.guests.iter().map(|g| f(&g.stream.tx)).sum::<u64>();
    assert!(tx(|t| t.ring_full) > 0, "no guest ever met a full ring");
    assert!(
        tx(|t| t.pool_exhausted) > 0,
        "no guest ever met an exhausted pool"
    );
    assert!(
        tx(|t| t.waited_out) > 0,
        "no refused send of a guest was waited out by send_timeout"
    );
}
