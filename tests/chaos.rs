//! Chaos under load: processes die (SIGKILL) and leave at random moments
//! while a host and its guests exchange messages through a small segment,
//! and nothing is lost, duplicated, corrupted or delivered to the wrong
//! guest; every slot, ring and waiting flag comes back.
//!
//! Four tests, one at a time (each loads both cores of a small machine):
//!
//! - **Guest chaos** ([`killed_and_departing_guests_lose_nothing_and_leave_nothing_behind`]).
//!   The test process is the host; four guest processes (this binary
//!   re-run through `tests/support`) exchange mixed inline and slot
//!   messages with it, through every send call (`try_send`,
//!   `send_timeout`, `send_with`, `send_batch` longer than a ring,
//!   `loan` + `commit`) and every receive call, with rings of [`RING`]
//!   descriptors and pools of [`SLOTS`] slots so that backpressure is
//!   constant. A controller in the host's loop kills a random guest with
//!   SIGKILL [`KILLS_PER_ROUND`] times per round: at any moment, while it
//!   holds a loaned slot, in the middle of a `send_batch`, asleep on a futex
//!   in a waiting receive or send (`WaitStrategy::Block`: its ring's or
//!   pool's waiting flag is set in the segment), or while it detaches. It
//!   also makes a guest leave (detach) under load [`LEAVES_PER_ROUND`]
//!   times. After a kill the host reclaims the entry (`reclaim_dead`) and
//!   checks it is clean (entry Empty, both rings empty, flags and waiter
//!   count 0, no slot of any pool held by the dead guest); after a kill or
//!   a departure a replacement process attaches to the same entry (a plain
//!   attach, or one the host reserved) and starts a stream of its own.
//!
//!   Every message carries its stream (one guest process's life in one
//!   entry) in `method_id` and its sequence number in `id`, and its length
//!   and bytes derive from (stream, direction, id): a message of an old
//!   stream reaching a new one is caught. Each guest appends every message
//!   it receives to `rx-STREAM.log` (one `write(2)` per message, so a
//!   killed guest's file still holds what it got). At the end: every
//!   surviving stream received all its ids in order, intact, both ways
//!   (counts confirmed by an end message each way); every killed stream
//!   received an intact prefix both ways; every departed stream's messages
//!   all reached the host (a departing guest's messages wait for the host);
//!   every pool has 0 slots used, every ring is empty, every entry Empty,
//!   and no waiting flag or waiter count is left set (read from the file's
//!   bytes at the offsets of `docs/spec.md`).
//!
//! - **Host chaos** ([`guests_notice_a_killed_host_from_whatever_call_they_are_in`]).
//!   The host is a child process under the same load. It is killed with
//!   SIGKILL: at a random moment, and with guests parked in each kind of
//!   wait (one asleep in `recv`, one asleep in a send on a full ring, one
//!   waiting for a slot of its exhausted pool, the fourth running at full
//!   load), with heartbeats off and on. Every guest returns
//!   `Error::HostDied` naming the host's pid from the call it was in,
//!   within 1 s (3 heartbeats when heartbeats are on), and exits cleanly.
//!   Then `shmhub create --force` on the same path gives a working segment
//!   (attach, messages both ways).
//!
//! - **Fan chaos** ([`a_third_of_the_guests_killed_during_fan_in_lose_nothing_else`],
//!   [`a_third_of_the_guests_killed_during_fan_out_lose_nothing_else`]).
//!   The test process hosts [`FAN_GUESTS`] guest processes, one per
//!   reserved entry, each with a numbered stream of [`FAN_MESSAGES`]
//!   messages of [`FAN_SMALL`] (inline) or [`FAN_LARGE`] (slot) bytes and
//!   an end message. Fan-in: every guest sends its stream as fast as it
//!   can, the host receives from any guest. Fan-out: the host sends every
//!   guest its stream round-robin, without waiting while any guest has
//!   room, and waits a moment on one guest when none has; each guest
//!   checks its stream as it comes and reports its count. A random third
//!   of the guests, each at a random point of its stream, is killed with
//!   SIGKILL, and the host reclaims the dead (`reclaim_dead`) a random
//!   moment later, as it goes (in the fan-in, half the victims die after
//!   the host stopped receiving a moment, and are reclaimed at once, with
//!   their messages still queued). Every survivor's stream arrives whole,
//!   once, in order; every victim's arrived part is a gapless prefix; each
//!   reclaim lists exactly the guests killed since the last, leaves their
//!   entries Empty, their rings empty and their waiting flags and pool
//!   waiter count clear, and after it no slot is held by or for them and
//!   none anywhere looks leaked (`inspect_slots`); every host send to a
//!   killed guest ends in a `Gone` error, never a hang; at the end every
//!   pool is unused and every entry Empty.
//!
//! The controller's choices (victims, kinds, delays) come from a seeded
//! RNG: the seed is printed, and `CHAOS_SEED=N` replays the same choices
//! (the interleavings are the machine's). `CHAOS_ROUNDS=N` runs N rounds
//! (default 1): N x [`KILLS_PER_ROUND`] kills and N x [`LEAVES_PER_ROUND`]
//! departures in one continuous guest run, N x 4 host kills, N fan-in and
//! N fan-out runs.
//!
//! Nothing waits without a bound: every library wait has a deadline,
//! a run that makes no progress for [`STALL`] or outlasts its deadline
//! fails, children arm a watchdog, and the parent kills its children when
//! it fails.

mod support;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use shmhub::{
    Error, Frame, HolderStatus, HostStatus, INLINE_CAPACITY, MsgDesc, PeerState, SegmentConfig,
    SegmentLayout, ShmGuest, ShmHost, Timeout, WaitStrategy, msg_type,
};
use support::fixtures::{id, pool_owner};
use support::traffic::{HostTo, Rng, Sender, fill_seeded, fnv1a};
use support::{BIN, Child, ChildEnv, fail_all, signal};

/// Replays a run: its value seeds every random choice (decimal or `0x` hex).
const SEED_ENV: &str = "CHAOS_SEED";
/// How many rounds to run (default 1).
const ROUNDS_ENV: &str = "CHAOS_ROUNDS";
/// A child's stream id.
const STREAM_ENV: &str = "CHAOS_STREAM";
/// A child's entry: the reserved peer id to attach to, or 0 for a plain
/// attach (host chaos: the entry its host reserved).
const PEER_ENV: &str = "CHAOS_PEER";
/// A child's own seed.
const RNG_ENV: &str = "CHAOS_RNG";
/// Host chaos: the segment's heartbeat interval.
const HEARTBEAT_ENV: &str = "CHAOS_HEARTBEAT_MS";

const GUESTS: u8 = 4;
/// Descriptors per ring: small, so rings fill.
const RING: u32 = 8;
/// Slots per pool, fewer than a ring holds, so pools run out first.
const SLOTS: u32 = 4;
const SLOT_SIZE: u32 = 2048;
/// Guest kills per round of the guest test.
const KILLS_PER_ROUND: usize = 36;
/// Departures (detach under load) per round of the guest test.
const LEAVES_PER_ROUND: usize = 12;
/// Most messages one receive turn takes.
const BUDGET: u64 = 16;
/// A run with no message moving for this long fails.
const STALL: Duration = Duration::from_secs(10);
/// How long one round of the guest test may take at most.
const ROUND_DEADLINE: Duration = Duration::from_secs(90);
/// How long a controller waits for the moment it wants to kill in.
const ARM_LIMIT: Duration = Duration::from_secs(3);
/// How long children get to attach, to leave and to exit.
const CHILD_WAIT: Duration = Duration::from_secs(10);
/// A child still running after this long (per round) ends itself (a last
/// resort: a chaos guest fails on its own when the host dies, a host child
/// is always killed by its test).
const CHILD_WATCHDOG: Duration = Duration::from_secs(600);

/// Direction codes, part of a message's type and payload seed.
const H2G: u8 = 1;
const G2H: u8 = 2;

fn data_type(dir: u8) -> u16 {
    0x4300 | u16::from(dir)
}

fn end_type(dir: u8) -> u16 {
    0x43E0 | u16::from(dir)
}

fn config(heartbeat_ms: u32) -> SegmentConfig {
    SegmentConfig {
        max_guests: u32::from(GUESTS),
        ring_capacity: RING,
        slot_size: SLOT_SIZE,
        max_payload: SLOT_SIZE,
        slots_per_pool: SLOTS,
        heartbeat_interval_ms: heartbeat_ms,
    }
}

/// Chaos runs are serialized: each loads both cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run_seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => {
            let t = text.trim();
            let parsed = match t.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a number"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

fn rounds() -> usize {
    std::env::var(ROUNDS_ENV)
        .ok()
        .map(|r| {
            r.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{ROUNDS_ENV}={r:?} is not a number"))
        })
        .unwrap_or(1)
        .max(1)
}

// ---------------------------------------------------------------------------
// Messages: every one names its stream and says what it should be
// ---------------------------------------------------------------------------

/// What sizes a stream's messages have: mixed (runs of inline messages
/// that fill a ring, runs of slot messages that drain a pool, and the edge
/// sizes), or all inline, or all in slots. Host chaos gives one guest
/// inline messages (it fills its ring) and one slot messages (it runs out
/// of slots); the shape is part of the stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Mixed,
    Inline,
    Slots,
}

const SHAPE_SHIFT: u32 = 24;

fn shape_of(stream: u32) -> Shape {
    match stream >> SHAPE_SHIFT {
        1 => Shape::Inline,
        2 => Shape::Slots,
        _ => Shape::Mixed,
    }
}

fn shaped(stream: u32, shape: Shape) -> u32 {
    let tag = match shape {
        Shape::Mixed => 0,
        Shape::Inline => 1,
        Shape::Slots => 2,
    };
    stream | (tag << SHAPE_SHIFT)
}

fn seed(stream: u32, dir: u8, seq: u64) -> u64 {
    (u64::from(stream) << 34) ^ (u64::from(dir) << 32) ^ seq
}

fn msg_len(stream: u32, dir: u8, seq: u64) -> usize {
    let h = Rng::new(seed(stream, dir, seq) ^ 0xC3A5_C85C_97CB_3127).next_u64() as usize;
    let inline = h % (INLINE_CAPACITY + 1);
    let slot = INLINE_CAPACITY + 1 + (h >> 8) % (SLOT_SIZE as usize - INLINE_CAPACITY);
    match shape_of(stream) {
        Shape::Inline => inline,
        Shape::Slots => slot,
        Shape::Mixed => match seq % 97 {
            0 => 0,
            1 => INLINE_CAPACITY,
            2 => INLINE_CAPACITY + 1,
            3 => SLOT_SIZE as usize,
            _ if (seq / 12) % 2 == 0 || h % 5 == 0 => inline,
            _ => slot,
        },
    }
}

fn fill(stream: u32, dir: u8, seq: u64, buf: &mut [u8]) {
    fill_seeded(seed(stream, dir, seq), buf);
}

fn payload(stream: u32, dir: u8, seq: u64) -> Vec<u8> {
    let mut buf = vec![0; msg_len(stream, dir, seq)];
    fill(stream, dir, seq, &mut buf);
    buf
}

fn data_desc(stream: u32, dir: u8, seq: u64) -> MsgDesc {
    MsgDesc {
        msg_type: data_type(dir),
        id: seq,
        method_id: stream,
        ..MsgDesc::default()
    }
}

fn data_frame(stream: u32, dir: u8, seq: u64) -> Frame {
    Frame::new(data_desc(stream, dir, seq), payload(stream, dir, seq))
}

/// The end of a stream's data in one direction: `id` counts the messages
/// sent before it.
fn end_frame(stream: u32, dir: u8, count: u64) -> Frame {
    let desc = MsgDesc {
        msg_type: end_type(dir),
        id: count,
        method_id: stream,
        ..MsgDesc::default()
    };
    Frame::new(desc, Vec::new())
}

/// What is wrong with a data message received on stream `stream`, if
/// anything: another stream's message, a wrong type, length, placement or
/// byte. (The order is the receiver's to check.)
fn check_data(stream: u32, dir: u8, desc: &MsgDesc, payload: &[u8]) -> Result<(), String> {
    if desc.method_id != stream {
        return Err(format!(
            "message {} of stream {} reached stream {stream}",
            desc.id, desc.method_id
        ));
    }
    if desc.msg_type != data_type(dir) {
        return Err(format!("message {}: type {:#x}", desc.id, desc.msg_type));
    }
    let len = msg_len(stream, dir, desc.id);
    if payload.len() != len || desc.payload_len as usize != len {
        return Err(format!(
            "message {}: length {} (descriptor {}), expected {len}",
            desc.id,
            payload.len(),
            desc.payload_len
        ));
    }
    if desc.is_slot() != (len > INLINE_CAPACITY) {
        return Err(format!(
            "message {}: {len} bytes travelled {}",
            desc.id,
            if desc.is_slot() {
                "in a slot"
            } else {
                "inline"
            }
        ));
    }
    let expected = self::payload(stream, dir, desc.id);
    if let Some(at) = payload.iter().zip(&expected).position(|(a, b)| a != b) {
        return Err(format!(
            "message {}: byte {at} differs from the one sent",
            desc.id
        ));
    }
    Ok(())
}

/// A line of a guest's receive log.
fn log_line(desc: &MsgDesc, payload: &[u8]) -> String {
    if desc.msg_type == end_type(H2G) {
        return format!("end {} {}\n", desc.id, desc.method_id);
    }
    format!(
        "{} {} {} {:08x} {}\n",
        desc.id,
        desc.method_id,
        payload.len(),
        fnv1a(payload),
        u8::from(desc.is_slot())
    )
}

/// What a guest's receive log says: the ids it holds (checked to be an
/// intact run `0..k` of `stream`) and the end message, if one came.
#[derive(Debug, Default)]
struct RxLog {
    received: u64,
    end: Option<u64>,
    /// A last line cut short (only a killed guest may leave one).
    torn: bool,
}

fn read_rx_log(path: &Path, stream: u32) -> Result<RxLog, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = RxLog::default();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if i + 1 == lines.len() && !complete {
            log.torn = true;
            break;
        }
        if log.end.is_some() {
            return Err(format!("line {line:?} after the end message"));
        }
        let f: Vec<&str> = line.split(' ').collect();
        if f[0] == "end" {
            let (n, s): (u64, u32) =
                match (f.get(1).map(|v| v.parse()), f.get(2).map(|v| v.parse())) {
                    (Some(Ok(n)), Some(Ok(s))) => (n, s),
                    _ => return Err(format!("bad end line {line:?}")),
                };
            if s != stream || n != log.received {
                return Err(format!(
                    "end message of stream {s} says {n}, after {} messages of stream {stream}",
                    log.received
                ));
            }
            log.end = Some(n);
            continue;
        }
        let parsed = (|| -> Option<(u64, u32, usize, u32, u8)> {
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                u32::from_str_radix(f.get(3)?, 16).ok()?,
                f.get(4)?.parse().ok()?,
            ))
        })();
        let Some((id, method, len, sum, slot)) = parsed else {
            return Err(format!("bad line {line:?}"));
        };
        if method != stream {
            return Err(format!(
                "message {id} of stream {method} reached stream {stream}"
            ));
        }
        if id != log.received {
            return Err(format!("id {id} after {} messages", log.received));
        }
        let expected = payload(stream, H2G, id);
        if len != expected.len()
            || sum != fnv1a(&expected)
            || (slot == 1) != (len > INLINE_CAPACITY)
        {
            return Err(format!(
                "message {id} arrived as {line:?}: expected length {} and checksum {:08x}",
                expected.len(),
                fnv1a(&expected)
            ));
        }
        log.received += 1;
    }
    Ok(log)
}

// ---------------------------------------------------------------------------
// Sending: one turn of one stream, through a send call chosen at random
// ---------------------------------------------------------------------------

/// Where a guest is, as it tells its parent through its state file (one
/// byte, rewritten in place; it outlives a killed guest, so the parent
/// knows where it died).
const S_OTHER: u8 = b'o';
/// In a send call that may wait (`send_timeout`, `send_with`, `try_send`,
/// the wait of `loan`).
const S_SEND: u8 = b's';
/// In `send_batch`.
const S_BATCH: u8 = b'b';
/// Holding a loaned slot, not committed yet.
const S_LOAN: u8 = b'l';
/// In a receive call that may wait.
const S_RECV: u8 = b'r';
/// Detaching (told to leave).
const S_LEAVING: u8 = b'd';

/// How long a stream's calls may wait, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Waits {
    send: (u64, u64),
    recv: (u64, u64),
    /// Whether to hold a loan a moment before committing it.
    hold_loans: bool,
}

/// Sends the next messages of `stream` in direction `dir` through one send
/// call chosen at random (a batch longer than a ring, a loan, or a few
/// single sends); returns how many went. A full ring or an exhausted pool
/// ends the turn; other errors are the caller's to judge, and `unsure` is
/// then set to how many messages the failed call may have sent all the
/// same (a batch that fails returns no count, though its earlier rounds
/// went). `mark` hears where the turn is ([`S_SEND`] and so on, and the
/// call's name).
#[allow(clippy::too_many_arguments)]
fn send_turn(
    tx: &mut impl Sender,
    rng: &mut Rng,
    stream: u32,
    dir: u8,
    next: &mut u64,
    waits: Waits,
    unsure: &mut u64,
    mark: &mut dyn FnMut(u8, &'static str),
) -> shmhub::Result<u64> {
    let wait = rng.millis(waits.send.0, waits.send.1);
    let start = *next;
    let len = msg_len(stream, dir, start);
    *unsure = 1;
    let outcome = match rng.below(10) {
        0 | 1 => {
            // Longer than the ring: published round by round, each round
            // waiting for the receiver to make room.
            let n = rng.between(u64::from(RING) + 1, 3 * u64::from(RING));
            let frames: Vec<Frame> = (start..start + n)
                .map(|s| data_frame(stream, dir, s))
                .collect();
            mark(S_BATCH, "send_batch");
            *unsure = n;
            tx.send_batch(&frames, wait).map(|k| *next += k as u64)
        }
        2 | 3 if len > INLINE_CAPACITY => {
            mark(S_SEND, "loan");
            tx.loan(len, wait).and_then(|mut loan| {
                mark(S_LOAN, "holding a loan");
                if waits.hold_loans {
                    std::thread::sleep(rng.millis(1, 6));
                }
                fill(stream, dir, start, loan.as_mut_slice());
                loan.desc = data_desc(stream, dir, start);
                mark(S_SEND, "commit");
                tx.commit(loan).map(|()| *next += 1)
            })
        }
        _ => {
            let mut result = Ok(());
            for _ in 0..rng.between(1, 8) {
                let frame = data_frame(stream, dir, *next);
                result = match *next % 3 {
                    0 => {
                        mark(S_SEND, "send_timeout");
                        tx.send_timeout(&frame, wait)
                    }
                    1 => {
                        mark(S_SEND, "send_with");
                        tx.send_with(frame.desc, frame.payload(), wait)
                    }
                    _ => {
                        mark(S_SEND, "try_send");
                        tx.try_send(&frame)
                    }
                };
                if result.is_err() {
                    break;
                }
                *next += 1;
            }
            result
        }
    };
    match outcome {
        // The state still says which call failed.
        Err(e) if !e.is_retryable() => Err(e),
        _ => {
            mark(S_OTHER, "");
            Ok(*next - start)
        }
    }
}

// ---------------------------------------------------------------------------
// The guest process
// ---------------------------------------------------------------------------

/// Runs a child role when this binary was started as a child; otherwise
/// (a normal test run) does nothing.
#[test]
fn child_entry() {
    support::child_main(CHILD_WATCHDOG * rounds() as u32, |role, env| match role {
        "guest" => run_chaos_guest(env),
        "host" => run_host_child(env),
        "host-guest" => run_host_chaos_guest(env),
        "fan-in" => run_fan_in_guest(env),
        "fan-out" => run_fan_out_guest(env),
        other => bail!("unknown role {other}"),
    });
}

/// The guest's side of the state file ([`S_OTHER`] and so on).
struct StateCell {
    file: File,
    now: u8,
    call: &'static str,
}

impl StateCell {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut cell = StateCell {
            file,
            now: 0,
            call: "",
        };
        cell.set(S_OTHER, "");
        Ok(cell)
    }

    fn set(&mut self, state: u8, call: &'static str) {
        self.call = call;
        if state != self.now {
            self.file
                .write_all_at(&[state], 0)
                .expect("write the state file");
            self.now = state;
        }
    }
}

/// What the parent reads of a guest's state file.
fn read_state(path: &Path) -> u8 {
    let mut b = [b'?'];
    match File::open(path).and_then(|f| f.read_at(&mut b, 0)) {
        Ok(1) => b[0],
        _ => b'?',
    }
}

/// A guest process's run: its stream both ways.
struct GuestRun {
    guest: ShmGuest,
    stream: u32,
    rng: Rng,
    state: StateCell,
    log: Option<File>,
    waits: Waits,
    /// The next id this guest sends.
    sent: u64,
    /// The next id it expects from the host.
    next: u64,
}

/// A call that failed, and which call it was.
#[derive(Debug)]
struct CallFailed {
    call: &'static str,
    state: u8,
    error: Error,
}

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {} ({:?})", self.call, self.error, self.error)
    }
}

impl std::error::Error for CallFailed {}

impl GuestRun {
    fn attach(env: &ChildEnv, waits: Waits) -> anyhow::Result<Self> {
        let stream: u32 = env.parse(STREAM_ENV)?;
        let peer: u8 = env.parse(PEER_ENV)?;
        let mut rng = Rng::new(env.parse(RNG_ENV)?);
        let mut guest = if peer == 0 {
            ShmGuest::attach_path(&env.path)
        } else {
            ShmGuest::attach_path_with_id(&env.path, peer)
        }
        .context("attach")?;
        // Mostly futex sleeps; now and then the default (spin, then sleep).
        guest.set_wait_strategy(if rng.chance(1, 4) {
            WaitStrategy::Adaptive
        } else {
            WaitStrategy::Block
        });
        let state = StateCell::create(&env.dir.join(format!("state-{stream}")))?;
        Ok(GuestRun {
            guest,
            stream,
            rng,
            state,
            log: None,
            waits,
            sent: 0,
            next: 0,
        })
    }

    fn failed(&self, error: Error) -> anyhow::Error {
        anyhow::Error::new(CallFailed {
            call: self.state.call,
            state: self.state.now,
            error,
        })
    }

    fn send_turn(&mut self) -> anyhow::Result<u64> {
        let state = &mut self.state;
        let sent = send_turn(
            &mut self.guest,
            &mut self.rng,
            self.stream,
            G2H,
            &mut self.sent,
            self.waits,
            &mut 0,
            &mut |s, call| state.set(s, call),
        );
        sent.map_err(|e| self.failed(e))
    }

    /// Takes one message from the host: checks and logs it. Returns the
    /// host's count if it was the end message.
    fn take(&mut self, desc: &MsgDesc, payload: &[u8]) -> anyhow::Result<Option<u64>> {
        if let Some(log) = &mut self.log {
            log.write_all(log_line(desc, payload).as_bytes())
                .context("write the receive log")?;
        }
        if desc.msg_type == end_type(H2G) && desc.method_id == self.stream {
            return Ok(Some(desc.id));
        }
        check_data(self.stream, H2G, desc, payload).map_err(|e| anyhow::anyhow!(e))?;
        ensure!(
            desc.id == self.next,
            "stream {}: message {} after {} (lost or repeated)",
            self.stream,
            desc.id,
            self.next
        );
        self.next += 1;
        Ok(None)
    }

    /// Receives through one receive call chosen at random; only the first
    /// receive may wait. Returns the host's count if its end message came.
    fn recv_turn(&mut self) -> anyhow::Result<Option<u64>> {
        let wait = self.rng.millis(self.waits.recv.0, self.waits.recv.1);
        let mut end = None;
        let mut got = 0;
        match self.rng.below(4) {
            0 => {
                self.state.set(S_RECV, "recv_batch");
                let mut frames = Vec::new();
                let n = self
                    .guest
                    .receiver()
                    .recv_batch(RECV_BATCH, wait, |received| {
                        frames.push(received.into_frame());
                    });
                n.map_err(|e| self.failed(e))?;
                self.state.set(S_OTHER, "");
                for f in frames {
                    end = end.or(self.take(&f.desc, f.payload())?);
                }
            }
            api => {
                while got < BUDGET && end.is_none() {
                    let w = if got == 0 { wait } else { Duration::ZERO };
                    let frame = match api {
                        1 => {
                            self.state.set(S_RECV, "recv_timeout");
                            self.guest.recv_timeout(w)
                        }
                        2 => {
                            self.state.set(S_RECV, "recv_in_place");
                            let received = self.guest.receiver().recv(w);
                            // The check reads the payload where it lies.
                            match received {
                                Ok(Some(r)) => {
                                    self.state.set(S_OTHER, "");
                                    end = self.take(r.desc(), r.payload())?;
                                    got += 1;
                                    continue;
                                }
                                other => other.map(|o| o.map(|r| r.into_frame())),
                            }
                        }
                        _ => {
                            self.state.set(S_RECV, "try_recv");
                            self.guest.try_recv()
                        }
                    };
                    let frame = frame.map_err(|e| self.failed(e))?;
                    self.state.set(S_OTHER, "");
                    match frame {
                        Some(f) => end = self.take(&f.desc, f.payload())?,
                        None => break,
                    }
                    got += 1;
                }
            }
        }
        Ok(end)
    }
}

/// Most messages one `recv_batch` takes.
const RECV_BATCH: usize = 8;

/// A guest of the guest chaos test: exchanges its stream with the host
/// until the host ends it (then ends its own and detaches) or it is told
/// to leave (then detaches at once, under load), unless it is killed
/// first.
fn run_chaos_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let waits = Waits {
        send: (1, 20),
        recv: (0, 20),
        hold_loans: true,
    };
    let mut run = GuestRun::attach(env, waits)?;
    let stream = run.stream;
    let log = env.dir.join(format!("rx-{stream}.log"));
    run.log = Some(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("open {}", log.display()))?,
    );
    signal(
        &env.dir,
        &format!("attached-{stream}"),
        &format!("{} {}", run.guest.peer_id(), run.guest.epoch()),
    )?;
    let leave = env.dir.join(format!("leave-{stream}"));
    loop {
        if leave.exists() {
            run.state.set(S_LEAVING, "detach");
            signal(&env.dir, &format!("left-{stream}"), &run.sent.to_string())?;
            return run.guest.detach().context("detach");
        }
        run.send_turn()?;
        if let Some(count) = run.recv_turn()? {
            ensure!(
                count == run.next,
                "stream {stream}: the host says it sent {count}, {} came",
                run.next
            );
            run.state.set(S_SEND, "send_timeout");
            let end = end_frame(stream, G2H, run.sent);
            run.guest
                .send_timeout(&end, Duration::from_secs(10))
                .context("send the end message")?;
            run.state.set(S_OTHER, "");
            signal(
                &env.dir,
                &format!("done-{stream}"),
                &format!("{} {}", run.sent, run.next),
            )?;
            return run.guest.detach().context("detach");
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the segment's bytes at the offsets of docs/spec.md
// ---------------------------------------------------------------------------

/// Ring control block: producer's tail, consumer's head, waiting flags.
const RING_TAIL: u64 = 0;
const RING_HEAD: u64 = 64;
const RING_PRODUCER_WAITING: u64 = 128;
const RING_CONSUMER_WAITING: u64 = 132;
/// The producer's sleepers that wait for room to reach `room_at`.
const RING_ROOM_SLEEPERS: u64 = 144;
/// The descriptors, 64 bytes each, after the control block.
const RING_DESCS: u64 = 192;
/// Pool control block: the count of sleeping allocators.
const POOL_WAITERS: u64 = 4;
/// Header: the host's sleep flag.
const HOST_WAITING: u64 = 196;
/// Peer entry: its state.
const ENTRY_STATE: u64 = 0;
/// Slot metadata: 16 bytes per slot, the state word first (generation in
/// the low half, holder code in the high half: 1 + p for guest p).
const SLOT_META: u64 = 16;

/// What a departed guest's entry may still hold until it is next taken
/// (whose claim or reservation drops it all; checked then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MayLeave {
    /// Nothing (a reclaimed entry; the end of a run).
    Nothing,
    /// Descriptors in its to-guest ring that hold no slot: host sends that
    /// raced its departure (the host freed their slots).
    Descriptors,
    /// Those descriptors and the host slots they name: the guest died in
    /// the middle of its detach, before its last look at the ring.
    SlotsWaiting,
}

/// Reads words of a segment file with `pread` (the bytes of the shared
/// mapping), independently of any library view.
struct Peek {
    file: File,
    layout: SegmentLayout,
}

impl Peek {
    fn open(path: &Path) -> Self {
        let layout = shmhub::admin::inspect_path(path)
            .expect("inspect")
            .header
            .layout;
        Peek {
            file: File::open(path).expect("open the segment read-only"),
            layout,
        }
    }

    fn u32_at(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.file.read_exact_at(&mut b, offset).expect("pread");
        u32::from_le_bytes(b)
    }

    fn u64_at(&self, offset: u64) -> u64 {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, offset).expect("pread");
        u64::from_le_bytes(b)
    }

    /// Guest `p`'s ring in direction `dir`.
    fn ring(&self, p: u8, dir: u8) -> u64 {
        if dir == G2H {
            self.layout.guest_to_host_ring(id(p))
        } else {
            self.layout.host_to_guest_ring(id(p))
        }
    }

    fn consumer_waiting(&self, p: u8, dir: u8) -> u32 {
        self.u32_at(self.ring(p, dir) + RING_CONSUMER_WAITING)
    }

    /// The producer's sleepers of both kinds: those woken by any move of
    /// the head, and a send waiting for room (`shm.ring.room`).
    fn producer_waiting(&self, p: u8, dir: u8) -> u32 {
        let base = self.ring(p, dir);
        self.u32_at(base + RING_PRODUCER_WAITING)
            .saturating_add(self.u32_at(base + RING_ROOM_SLEEPERS))
    }

    fn ring_fill(&self, p: u8, dir: u8) -> u32 {
        let base = self.ring(p, dir);
        self.u32_at(base + RING_TAIL)
            .wrapping_sub(self.u32_at(base + RING_HEAD))
    }

    fn pool_waiters(&self, pool: u8) -> u32 {
        self.u32_at(self.layout.pool(pool_owner(pool)) + POOL_WAITERS)
    }

    fn pool_used(&self, pool: u8) -> u32 {
        let base = self.layout.pool(pool_owner(pool)) + self.layout.pool_bitmap_offset;
        (0..SLOTS.div_ceil(64))
            .map(|w| self.u64_at(base + 8 * u64::from(w)).count_ones())
            .sum()
    }

    /// The slots (pool, slot) whose holder is guest `p`.
    fn held_by(&self, p: u8) -> Vec<(u8, u32)> {
        let mut held = Vec::new();
        for pool in 0..=GUESTS {
            let meta = self.layout.pool(pool_owner(pool)) + self.layout.pool_meta_offset;
            for slot in 0..SLOTS {
                let state = self.u64_at(meta + SLOT_META * u64::from(slot));
                if (state >> 32) as u32 == u32::from(p) + 1 {
                    held.push((pool, slot));
                }
            }
        }
        held
    }

    fn entry_state(&self, p: u8) -> u32 {
        self.u32_at(self.layout.peer_entry(id(p)) + ENTRY_STATE)
    }

    /// The host slots named by the descriptors waiting in guest `p`'s
    /// to-guest ring (descriptor: flags at 2, slot index at 20).
    fn slots_waiting_for(&self, p: u8) -> Vec<(u8, u32)> {
        let ring = self.ring(p, H2G);
        let (head, tail) = (self.u32_at(ring + RING_HEAD), self.u32_at(ring + RING_TAIL));
        let mut named = Vec::new();
        let mut i = head;
        while i != tail && tail.wrapping_sub(i) <= RING {
            let desc = ring + RING_DESCS + u64::from(i % RING) * 64;
            let mut flags = [0u8; 2];
            self.file
                .read_exact_at(&mut flags, desc + 2)
                .expect("pread");
            if u16::from_le_bytes(flags) & shmhub::format::FLAG_SLOT != 0 {
                named.push((0, self.u32_at(desc + 20)));
            }
            i = i.wrapping_add(1);
        }
        named
    }

    /// Everything guest `p` could have left behind: what is wrong, if
    /// anything, with its entry after a reclaim or a departure, given what
    /// a departure may leave (`may`).
    fn leftovers(&self, p: u8, may: MayLeave) -> Vec<String> {
        let mut wrong = Vec::new();
        for dir in [G2H, H2G] {
            let name = if dir == G2H { "to-host" } else { "to-guest" };
            if self.ring_fill(p, dir) != 0 && !(may != MayLeave::Nothing && dir == H2G) {
                wrong.push(format!("{name} ring holds {}", self.ring_fill(p, dir)));
            }
            let flags = (self.producer_waiting(p, dir), self.consumer_waiting(p, dir));
            if flags != (0, 0) {
                wrong.push(format!("{name} ring waiting flags {flags:?}"));
            }
        }
        if self.pool_used(p) != 0 {
            wrong.push(format!("its pool has {} slots used", self.pool_used(p)));
        }
        if self.pool_waiters(p) != 0 {
            wrong.push(format!("its pool has {} waiters", self.pool_waiters(p)));
        }
        let mut held = self.held_by(p);
        if may == MayLeave::SlotsWaiting {
            let waiting = self.slots_waiting_for(p);
            held.retain(|s| !waiting.contains(s));
        }
        if !held.is_empty() {
            wrong.push(format!("it still holds slots (pool, slot) {held:?}"));
        }
        wrong
    }

    /// What is wrong with the whole segment at the end of a run, if
    /// anything: every entry Empty, every ring empty with its flags clear,
    /// every pool unused with no waiter, the host not asleep.
    fn at_rest(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        for p in 1..=GUESTS {
            if self.entry_state(p) != 0 {
                wrong.push(format!("entry {p} is in state {}", self.entry_state(p)));
            }
            for w in self.leftovers(p, MayLeave::Nothing) {
                wrong.push(format!("guest {p}: {w}"));
            }
        }
        if self.pool_used(0) != 0 || self.pool_waiters(0) != 0 {
            wrong.push(format!(
                "host pool: {} used, {} waiters",
                self.pool_used(0),
                self.pool_waiters(0)
            ));
        }
        if self.u32_at(HOST_WAITING) != 0 {
            wrong.push("host_waiting is set".to_string());
        }
        wrong
    }
}

// ---------------------------------------------------------------------------
// Guest chaos: the host's side and the controller
// ---------------------------------------------------------------------------

/// How a guest is made to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// SIGKILL at once, wherever it is.
    KillAnytime,
    /// SIGKILL while it holds a loaned slot.
    KillHoldingLoan,
    /// SIGKILL inside `send_batch` (the host stops reading from it if no
    /// batch comes, so that one stalls between rounds).
    KillMidBatch,
    /// SIGKILL asleep on a futex in a receive (the host stops sending to it).
    KillAsleepInRecv,
    /// SIGKILL asleep on a futex in a send, for room or for a slot (the
    /// host stops reading from it).
    KillAsleepInSend,
    /// SIGKILL as soon as it starts to detach.
    KillWhileLeaving,
    /// Detach under load, the host still sending to it.
    Leave,
}

impl Event {
    const KILLS: [Event; 6] = [
        Event::KillAnytime,
        Event::KillHoldingLoan,
        Event::KillMidBatch,
        Event::KillAsleepInRecv,
        Event::KillAsleepInSend,
        Event::KillWhileLeaving,
    ];
}

/// The events of `rounds` rounds, in a seeded order: every kind of kill
/// comes up several times a round.
fn schedule(rng: &mut Rng, rounds: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for _ in 0..rounds {
        let mut round: Vec<Event> = (0..KILLS_PER_ROUND)
            .map(|i| Event::KILLS[i % Event::KILLS.len()])
            .chain(std::iter::repeat_n(Event::Leave, LEAVES_PER_ROUND))
            .collect();
        for i in (1..round.len()).rev() {
            round.swap(i, rng.below(i as u64 + 1) as usize);
        }
        events.extend(round);
    }
    events
}

/// Where a killed guest was when it died, read after it was reaped and
/// before the host reclaimed its entry.
#[derive(Debug, Clone)]
struct Death {
    event: Event,
    /// Whether the moment the event waited for came (else it was killed
    /// when the wait ran out).
    armed: bool,
    /// Its state file's last word.
    state: u8,
    /// Waiting flags of its rings: to-guest consumer, to-host producer.
    recv_flag: u32,
    send_flag: u32,
    pool_waiters: u32,
    /// Slots used in its own pool.
    pool_used: u32,
    /// What it had done: still Attached (reclaimed), or already departed.
    reclaimed: bool,
}

impl Death {
    fn asleep_in_recv(&self) -> bool {
        self.state == S_RECV && self.recv_flag != 0
    }

    fn asleep_in_send(&self) -> bool {
        matches!(self.state, S_SEND | S_BATCH) && (self.send_flag != 0 || self.pool_waiters != 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Running,
    Killed,
    /// Left of its own accord, having sent this many.
    Left(u64),
    /// Ended normally.
    Done,
}

/// One stream: one guest process's life in one entry.
struct Stream {
    id: u32,
    peer: u8,
    child: Child,
    /// Attached (plain attach: the host waits for this before it sends).
    attached: bool,
    /// The host reserved the entry for it (the host may send ahead).
    reserved: bool,
    fate: Fate,
    /// The next id the host sends; `tx_open` false once it stopped.
    tx_next: u64,
    tx_open: bool,
    /// How many messages past `tx_next` the host's last, failed send call
    /// may have sent (a failed batch gives no count).
    tx_unsure: u64,
    end_sent: bool,
    /// The next id the host expects.
    rx_next: u64,
    end_got: Option<u64>,
    pause_tx: bool,
    pause_rx: bool,
}

/// What the controller is doing.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Nothing until then.
    Calm(Instant),
    /// Waiting for the moment to carry out `event` on stream `victim`.
    Armed {
        victim: usize,
        event: Event,
        since: Instant,
    },
    /// Waiting for departed stream `victim`'s process to exit and its
    /// entry to empty (the host reads what it left).
    Departing { victim: usize, since: Instant },
    /// Waiting for stream `new` to attach.
    Replacing { new: usize, since: Instant },
    /// Every event done.
    Finished,
}

#[derive(Debug, Default)]
struct Tally {
    deaths: Vec<Death>,
    leaves: u64,
    /// Messages from the guests that the host received and checked.
    to_host: u64,
    /// Descriptors a host send left in a departed guest's ring (dropped
    /// by the entry's next claim).
    stranded: u64,
    plain_attaches: u64,
    reserved_attaches: u64,
}

struct GuestChaos {
    host: ShmHost,
    path: PathBuf,
    dir: PathBuf,
    peek: Peek,
    seed: u64,
    rng: Rng,
    events: Vec<Event>,
    plan: Plan,
    streams: Vec<Stream>,
    /// The stream that owns each entry (index into `streams`).
    owner: Vec<usize>,
    turn: u64,
    tally: Tally,
    ending: bool,
}

fn state_name(s: u8) -> &'static str {
    match s {
        S_SEND => "send",
        S_BATCH => "send_batch",
        S_LOAN => "holding a loan",
        S_RECV => "recv",
        S_LEAVING => "detaching",
        S_OTHER => "between calls",
        _ => "unknown",
    }
}

impl GuestChaos {
    fn start(seed: u64, rounds: usize, dir: &Path) -> Self {
        let path = dir.join("chaos.shm");
        let mut host = ShmHost::create(&path, config(0)).expect("create the segment");
        host.set_wait_strategy(WaitStrategy::Block);
        // Guests die and come back: the host serves whoever is there.
        host.any_receiver().wait_for_guests(true);
        let peek = Peek::open(&path);
        let mut rng = Rng::new(seed);
        let events = schedule(&mut rng, rounds);
        let mut chaos = GuestChaos {
            host,
            path,
            dir: dir.to_path_buf(),
            peek,
            seed,
            rng,
            events,
            plan: Plan::Finished,
            streams: Vec::new(),
            owner: Vec::new(),
            turn: 0,
            tally: Tally::default(),
            ending: false,
        };
        for p in 1..=GUESTS {
            let i = chaos.spawn(p, true);
            chaos.owner.push(i);
        }
        chaos
    }

    /// Starts a guest process for entry `p` with a new stream (reserving
    /// the entry for it, or letting it attach plainly to the only free one).
    fn spawn(&mut self, p: u8, reserve: bool) -> usize {
        let id = self.streams.len() as u32 + 1;
        if reserve {
            let got = self.host.reserve_peer().expect("reserve an entry");
            assert_eq!(got, p, "reserved entry {got}, not the free entry {p}");
            self.expect_nothing_for(p, "reserved");
            self.tally.reserved_attaches += 1;
        } else {
            self.tally.plain_attaches += 1;
        }
        let env = [
            (STREAM_ENV, id.to_string()),
            (PEER_ENV, if reserve { p } else { 0 }.to_string()),
            (RNG_ENV, self.rng.next_u64().to_string()),
        ];
        let child = Child::spawn("guest", &self.path, &self.dir, &env)
            .named(format!("stream {id} (guest {p})"));
        self.streams.push(Stream {
            id,
            peer: p,
            child,
            attached: false,
            reserved: reserve,
            fate: Fate::Running,
            tx_next: 0,
            tx_open: true,
            tx_unsure: 0,
            end_sent: false,
            rx_next: 0,
            end_got: None,
            pause_tx: false,
            pause_rx: false,
        });
        self.streams.len() - 1
    }

    /// Kills every child and fails with `msg`, the seed, and the output of
    /// the children that said something.
    fn fail(&mut self, msg: &str) -> ! {
        for s in &mut self.streams {
            s.child.stop();
        }
        let outputs: Vec<String> = self
            .streams
            .iter()
            .filter(|s| !s.child.stderr().is_empty())
            .map(|s| s.child.output())
            .collect();
        let running: Vec<String> = (1..=GUESTS)
            .map(|p| {
                let s = &self.streams[self.owner_of(p)];
                format!(
                    "guest {p}: stream {} {:?} attached {} tx {} open {} end sent {} rx {} end {:?} paused tx {} rx {}",
                    s.id, s.fate, s.attached, s.tx_next, s.tx_open, s.end_sent, s.rx_next,
                    s.end_got, s.pause_tx, s.pause_rx
                )
            })
            .collect();
        panic!(
            "guest chaos (seed {:#x}, {SEED_ENV} replays it): {msg}\nplan {:?}, {} deaths, {} leaves, ending {}\n{}\n{}",
            self.seed,
            self.plan,
            self.tally.deaths.len(),
            self.tally.leaves,
            self.ending,
            running.join("\n"),
            outputs.join("\n")
        );
    }

    fn owner_of(&self, p: u8) -> usize {
        self.owner[usize::from(p) - 1]
    }

    /// Checks one message the host received from entry `p`.
    fn host_took(&mut self, p: u8, desc: &MsgDesc, payload: &[u8]) -> Result<(), String> {
        let i = self.owner_of(p);
        let s = &mut self.streams[i];
        if desc.msg_type == end_type(G2H) && desc.method_id == s.id {
            if desc.id != s.rx_next || s.end_got.is_some() {
                return Err(format!(
                    "stream {}: end message says {}, the host got {}",
                    s.id, desc.id, s.rx_next
                ));
            }
            s.end_got = Some(desc.id);
            return Ok(());
        }
        check_data(s.id, G2H, desc, payload)
            .map_err(|e| format!("from guest {p} (stream {}): {e}", s.id))?;
        if desc.id != s.rx_next || s.end_got.is_some() {
            return Err(format!(
                "stream {}: message {} after {} (lost or repeated)",
                s.id, desc.id, s.rx_next
            ));
        }
        s.rx_next += 1;
        self.tally.to_host += 1;
        Ok(())
    }

    /// The host sends to every running stream it may send to; returns how
    /// many messages went.
    fn host_send(&mut self) -> u64 {
        let mut sent = 0;
        for k in 0..GUESTS {
            let p = ((self.turn % u64::from(GUESTS)) as u8 + k) % GUESTS + 1;
            let i = self.owner_of(p);
            let s = &mut self.streams[i];
            if s.fate != Fate::Running
                || !s.tx_open
                || s.pause_tx
                || s.end_sent
                || !(s.attached || s.reserved)
            {
                continue;
            }
            let mut to = HostTo {
                host: &mut self.host,
                peer: p,
            };
            let result = if self.ending {
                to.send_timeout(&end_frame(s.id, H2G, s.tx_next), Duration::from_millis(2))
                    .map(|()| {
                        s.end_sent = true;
                        0
                    })
            } else {
                let waits = Waits {
                    send: (0, 2),
                    recv: (0, 0),
                    hold_loans: false,
                };
                send_turn(
                    &mut to,
                    &mut self.rng,
                    s.id,
                    H2G,
                    &mut s.tx_next,
                    waits,
                    &mut s.tx_unsure,
                    &mut |_, _| {},
                )
            };
            match result {
                Ok(n) => {
                    sent += n;
                    s.tx_unsure = 0;
                }
                Err(e) if e.is_retryable() => s.tx_unsure = 0,
                // The guest left: it takes nothing more.
                Err(Error::PeerState { .. } | Error::PeerGone { .. }) => s.tx_open = false,
                Err(e) => {
                    let msg = format!("host sending to guest {p} (stream {}): {e}", s.id);
                    self.fail(&msg)
                }
            }
        }
        sent
    }

    /// The host receives through one receive call (rotating), from every
    /// guest or, while one is paused, from the others one by one; only the
    /// first receive may wait. Returns how many messages came.
    fn host_receive(&mut self, wait: Duration) -> Result<u64, String> {
        let paused = (1..=GUESTS).any(|p| self.streams[self.owner_of(p)].pause_rx);
        let mut api = self.turn % 4;
        if paused && api < 2 {
            api += 2;
        }
        let mut taken: Vec<(u8, Frame)> = Vec::new();
        if api < 2 {
            let mut w = if api == 1 { wait } else { Duration::ZERO };
            while (taken.len() as u64) < BUDGET {
                let next = if api == 0 {
                    self.host.try_recv()
                } else {
                    self.host.recv_timeout(w)
                };
                w = Duration::ZERO;
                match next {
                    Ok(Some((p, frame))) => taken.push((p.get(), frame)),
                    Ok(None) => break,
                    Err(e) => return Err(format!("host receive: {e}")),
                }
            }
        } else {
            let mut w = wait;
            for p in 1..=GUESTS {
                if self.streams[self.owner_of(p)].pause_rx {
                    continue;
                }
                let result = if api == 2 {
                    self.host.recv_from_in_place(p, w).map(|received| {
                        taken.extend(received.map(|r| (p, r.into_frame())));
                    })
                } else {
                    let n = self
                        .host
                        .receiver(p)
                        .unwrap()
                        .recv_batch(RECV_BATCH, w, |r| {
                            taken.push((p, r.into_frame()));
                        });
                    n.map(drop)
                };
                w = Duration::ZERO;
                match result {
                    Ok(()) => {}
                    // An entry nobody holds, with nothing left to read.
                    Err(Error::PeerState { .. } | Error::PeerGone { .. }) => {}
                    Err(e) => return Err(format!("host receive from guest {p}: {e}")),
                }
            }
        }
        let got = taken.len() as u64;
        for (p, frame) in taken {
            self.host_took(p, &frame.desc, frame.payload())?;
        }
        Ok(got)
    }

    /// Whether the moment `event` waits for has come for stream `i`
    /// (pausing the host's traffic with it where that is what brings the
    /// moment about).
    fn moment_came(&mut self, i: usize, event: Event, since: Instant) -> bool {
        let state = read_state(&self.dir.join(format!("state-{}", self.streams[i].id)));
        let s = &mut self.streams[i];
        let p = s.peer;
        match event {
            Event::KillAnytime | Event::Leave => true,
            Event::KillHoldingLoan => state == S_LOAN,
            Event::KillMidBatch => {
                // A batch that stalls between rounds if none comes soon.
                s.pause_rx |= since.elapsed() > Duration::from_millis(300);
                state == S_BATCH
            }
            Event::KillAsleepInRecv => {
                s.pause_tx = true;
                state == S_RECV && self.peek.consumer_waiting(p, H2G) != 0
            }
            Event::KillAsleepInSend => {
                s.pause_rx = true;
                matches!(state, S_SEND | S_BATCH)
                    && (self.peek.producer_waiting(p, G2H) != 0 || self.peek.pool_waiters(p) != 0)
            }
            Event::KillWhileLeaving => {
                let flag = self.dir.join(format!("leave-{}", s.id));
                if !flag.exists() {
                    File::create(&flag).expect("create the leave flag");
                }
                state == S_LEAVING || s.child.poll().is_some()
            }
        }
    }

    /// Kills stream `i`'s guest, notes where it died, reclaims its entry
    /// (if it had not left already) and checks that nothing of it is left.
    fn kill(&mut self, i: usize, event: Event, armed: bool) {
        let (p, id) = (self.streams[i].peer, self.streams[i].id);
        let status = self.streams[i].child.kill();
        let attached = self.peek.entry_state(p) == PeerState::Attached as u32;
        let death = Death {
            event,
            armed,
            state: read_state(&self.dir.join(format!("state-{id}"))),
            recv_flag: self.peek.consumer_waiting(p, H2G),
            send_flag: self.peek.producer_waiting(p, G2H),
            pool_waiters: self.peek.pool_waiters(p),
            pool_used: self.peek.pool_used(p),
            reclaimed: attached,
        };
        let s = &mut self.streams[i];
        s.fate = Fate::Killed;
        s.tx_open = false;
        s.pause_rx = false;
        s.pause_tx = false;
        let reclaimed = self.host.reclaim_dead().expect("reclaim_dead");
        let expected = if attached { vec![p] } else { Vec::new() };
        if reclaimed != expected {
            let msg = format!(
                "guest {p} (stream {id}) killed ({status}) {} (entry {} attached): reclaim_dead gave {reclaimed:?}; {:?}",
                state_name(death.state),
                if attached { "still" } else { "no longer" },
                self.host.peers().expect("peers")[usize::from(p) - 1]
            );
            self.fail(&msg);
        }
        let left = self.peek.leftovers(p, MayLeave::Nothing);
        if attached && (!left.is_empty() || self.peek.entry_state(p) != 0) {
            let msg = format!(
                "guest {p} (stream {id}) killed {} and reclaimed, but: {left:?}, entry state {}",
                state_name(death.state),
                self.peek.entry_state(p)
            );
            self.fail(&msg);
        }
        self.tally.deaths.push(death);
    }

    /// One step of the controller.
    fn control(&mut self) {
        let now = Instant::now();
        match self.plan {
            Plan::Calm(until) if now >= until => self.next_event(now),
            Plan::Armed {
                victim,
                event,
                since,
            } => {
                let came = self.moment_came(victim, event, since);
                if came || since.elapsed() > ARM_LIMIT {
                    self.kill(victim, event, came);
                    self.plan = Plan::Departing { victim, since: now };
                }
            }
            Plan::Departing { victim, since } => self.departing(victim, since),
            Plan::Replacing { new, since } => self.replacing(new, since, now),
            Plan::Calm(_) | Plan::Finished => {}
        }
    }

    /// Picks a victim for the next event and starts it.
    fn next_event(&mut self, now: Instant) {
        let Some(event) = self.events.pop() else {
            self.plan = Plan::Finished;
            return;
        };
        let p = self.rng.between(1, u64::from(GUESTS)) as u8;
        let victim = self.owner_of(p);
        if event == Event::Leave {
            let flag = self.dir.join(format!("leave-{}", self.streams[victim].id));
            File::create(&flag).expect("create the leave flag");
            self.tally.leaves += 1;
            self.plan = Plan::Departing { victim, since: now };
        } else {
            self.plan = Plan::Armed {
                victim,
                event,
                since: now,
            };
        }
    }

    /// A departed (left or killed) stream: once its process is gone and the
    /// host has read what it left (its entry is Empty), checks that nothing
    /// of it is left and starts a replacement in its entry.
    fn departing(&mut self, victim: usize, since: Instant) {
        let (id, p) = (self.streams[victim].id, self.streams[victim].peer);
        if self.streams[victim].fate == Fate::Running {
            match self.streams[victim].child.poll() {
                None => {}
                Some(status) if status.success() => {
                    let left = std::fs::read_to_string(self.dir.join(format!("left-{id}")));
                    let Some(sent) = left.ok().and_then(|t| t.trim().parse().ok()) else {
                        self.fail(&format!("stream {id} exited without leaving"))
                    };
                    let s = &mut self.streams[victim];
                    s.fate = Fate::Left(sent);
                    s.tx_open = false;
                }
                Some(status) => self.fail(&format!("stream {id} failed while leaving: {status}")),
            }
        }
        let fate = self.streams[victim].fate.clone();
        if fate != Fate::Running && self.peek.entry_state(p) == PeerState::Empty as u32 {
            let got = self.streams[victim].rx_next;
            match fate {
                Fate::Left(sent) if sent != got => self.fail(&format!(
                    "stream {id} left having sent {sent}; the host got {got}"
                )),
                _ => {}
            }
            // A guest that left cleanly looked at its ring after leaving,
            // or the host saw it gone and freed the slots; one killed in
            // the middle of its detach may have missed that last look.
            let may = if fate == Fate::Killed {
                MayLeave::SlotsWaiting
            } else {
                MayLeave::Descriptors
            };
            let left = self.peek.leftovers(p, may);
            if !left.is_empty() {
                self.fail(&format!("stream {id} departed ({fate:?}), but: {left:?}"));
            }
            self.tally.stranded += u64::from(self.peek.ring_fill(p, H2G));
            self.replace(p);
        } else if since.elapsed() > CHILD_WAIT {
            self.fail(&format!("stream {id} did not depart in time"));
        }
    }

    /// A replacement stream: waits until it has attached, to the freed entry.
    fn replacing(&mut self, new: usize, since: Instant, now: Instant) {
        let (id, p) = (self.streams[new].id, self.streams[new].peer);
        let signal = self.dir.join(format!("attached-{id}"));
        if let Ok(text) = std::fs::read_to_string(&signal) {
            let peer: Option<u8> = text.split(' ').next().and_then(|t| t.parse().ok());
            if peer != Some(p) {
                self.fail(&format!(
                    "stream {id} attached as {text:?}, not to the freed entry {p}"
                ));
            }
            if !self.streams[new].reserved {
                self.expect_nothing_for(p, "attached");
            }
            self.streams[new].attached = true;
            self.plan = Plan::Calm(now + self.rng.millis(10, 150));
        } else if let Some(status) = self.streams[new].child.poll() {
            self.fail(&format!(
                "stream {id} exited with {status} before attaching"
            ));
        } else if since.elapsed() > CHILD_WAIT {
            self.fail(&format!("stream {id} did not attach in time"));
        }
    }

    /// Once entry `p` has been taken again (`how`), and before the host
    /// sends to it: nothing is waiting for its new guest, and no slot of
    /// the host's is held for it.
    fn expect_nothing_for(&mut self, p: u8, how: &str) {
        let waiting = self.peek.ring_fill(p, H2G);
        let held: Vec<_> = self
            .peek
            .held_by(p)
            .into_iter()
            .filter(|&(pool, _)| pool == 0)
            .collect();
        if waiting != 0 || !held.is_empty() {
            self.fail(&format!(
                "entry {p} {how}: {waiting} messages wait for its new guest; host slots held for it {held:?}"
            ));
        }
    }

    /// Starts a new stream in the freed entry `p`: reserved by the host, or
    /// by a plain attach (the only free entry is `p`).
    fn replace(&mut self, p: u8) {
        let reserve = self.rng.chance(1, 2);
        let new = self.spawn(p, reserve);
        self.owner[usize::from(p) - 1] = new;
        self.plan = Plan::Replacing {
            new,
            since: Instant::now(),
        };
    }

    /// Waits until the first guests have attached.
    fn await_first_guests(&mut self) {
        let deadline = Instant::now() + CHILD_WAIT;
        for i in 0..self.streams.len() {
            let name = format!("attached-{}", self.streams[i].id);
            let left = deadline.saturating_duration_since(Instant::now());
            self.streams[i].child.await_signal(&name, left);
            self.streams[i].attached = true;
        }
    }

    /// Runs the exchange until every event has happened and every
    /// surviving stream has ended both ways.
    fn run(&mut self, deadline: Instant) {
        self.await_first_guests();
        self.plan = Plan::Calm(Instant::now() + self.rng.millis(20, 150));
        let mut last_progress = Instant::now();
        let mut finished_at = None;
        loop {
            let sent = self.host_send();
            let wait = if sent > 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(1)
            };
            let got = match self.host_receive(wait) {
                Ok(n) => n,
                Err(e) => self.fail(&e),
            };
            self.control();
            self.turn += 1;
            let now = Instant::now();
            if sent + got > 0 {
                last_progress = now;
            } else if now - last_progress > STALL {
                self.fail(&format!("no message moved for {STALL:?}"));
            }
            if now > deadline {
                self.fail("the run outlasted its deadline");
            }
            if self.turn % 16 == 0 {
                let failed = self.streams.iter_mut().find_map(|s| {
                    (s.fate == Fate::Running && !s.end_sent)
                        .then(|| s.child.check_not_failed().err())
                        .flatten()
                });
                if let Some(e) = failed {
                    self.fail(&format!("{e:#}"));
                }
            }
            if matches!(self.plan, Plan::Finished) {
                let at = *finished_at.get_or_insert(now);
                // A little more traffic after the last event, then the end.
                self.ending |= now - at > Duration::from_millis(200);
            }
            if self.ending && self.all_ended() {
                break;
            }
        }
    }

    /// Whether every running stream has ended both ways and its process
    /// has exited successfully.
    fn all_ended(&mut self) -> bool {
        let mut all = true;
        for i in 0..self.streams.len() {
            let s = &mut self.streams[i];
            if s.fate != Fate::Running {
                continue;
            }
            if !(s.end_sent && s.end_got.is_some()) {
                all = false;
                continue;
            }
            match s.child.poll() {
                None => all = false,
                Some(status) if status.success() => s.fate = Fate::Done,
                Some(status) => {
                    let msg = format!("stream {} ended, then exited with {status}", s.id);
                    self.fail(&msg)
                }
            }
        }
        all
    }

    /// The checks after the run: every stream's messages both ways, and the
    /// segment at rest.
    fn check(&mut self) {
        // Nothing more to read; this also ends the goodbye of a guest that
        // left with messages queued.
        for _ in 0..GUESTS {
            if let Some((from, f)) = self.host.try_recv().expect("final try_recv") {
                let msg = format!("message {} from guest {from} after the end", f.desc.id);
                self.fail(&msg);
            }
        }
        let mut problems = Vec::new();
        for s in &self.streams {
            let log = read_rx_log(&self.dir.join(format!("rx-{}.log", s.id)), s.id);
            let log = match log {
                Ok(log) => log,
                Err(e) => {
                    problems.push(format!("stream {} ({:?}) to the guest: {e}", s.id, s.fate));
                    continue;
                }
            };
            if log.torn && s.fate != Fate::Killed {
                problems.push(format!("stream {}: a torn receive log", s.id));
            }
            let sent = s.tx_next + if s.tx_open { 0 } else { s.tx_unsure };
            if log.received > sent {
                problems.push(format!(
                    "stream {}: the guest logged {} messages, the host sent {} (and perhaps {} more)",
                    s.id, log.received, s.tx_next, s.tx_unsure
                ));
            }
            match &s.fate {
                Fate::Done if log.end != Some(s.tx_next) || s.end_got != Some(s.rx_next) => {
                    problems.push(format!(
                        "stream {}: to the guest {} of {} (end {:?}); to the host {} (end {:?})",
                        s.id, log.received, s.tx_next, log.end, s.rx_next, s.end_got
                    ))
                }
                Fate::Left(sent) if *sent != s.rx_next => problems.push(format!(
                    "stream {} left having sent {sent}, the host got {}",
                    s.id, s.rx_next
                )),
                Fate::Running => problems.push(format!("stream {} never ended", s.id)),
                _ => {}
            }
        }
        let report = shmhub::admin::inspect_path(&self.path).expect("inspect");
        for p in &report.peers {
            if !(p.to_guest.is_empty() && p.to_host.is_empty()) || p.entry.state != PeerState::Empty
            {
                problems.push(format!("inspect: {p:?}"));
            }
        }
        for pool in &report.pools {
            if pool.usage.used != 0 {
                problems.push(format!(
                    "inspect: {} uses {} slots",
                    pool.owner, pool.usage.used
                ));
            }
        }
        problems.extend(self.peek.at_rest());
        if !problems.is_empty() {
            self.fail(&problems.join("\n"));
        }
    }
}

/// Everything the guest test needs of its deaths: each kind of moment was
/// really hit.
fn check_deaths(tally: &Tally, rounds: usize) -> Result<(), String> {
    let deaths = &tally.deaths;
    let count = |f: &dyn Fn(&Death) -> bool| deaths.iter().filter(|d| f(d)).count();
    let mut missing = Vec::new();
    if deaths.len() < 20 * rounds {
        missing.push(format!("only {} kills", deaths.len()));
    }
    if count(&|d| d.state == S_LOAN) == 0 {
        missing.push("no guest was killed holding a loan".to_string());
    }
    if count(&|d| d.state == S_BATCH) == 0 {
        missing.push("no guest was killed inside send_batch".to_string());
    }
    if count(&|d| d.asleep_in_recv()) == 0 {
        missing.push("no guest was killed asleep in a receive".to_string());
    }
    if count(&|d| d.asleep_in_send()) == 0 {
        missing.push("no guest was killed asleep in a send".to_string());
    }
    if tally.leaves < LEAVES_PER_ROUND as u64 * rounds as u64 {
        missing.push(format!("only {} departures", tally.leaves));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

fn print_guest_summary(chaos: &GuestChaos, elapsed: Duration) {
    let t = &chaos.tally;
    let deaths = &t.deaths;
    let count = |f: &dyn Fn(&Death) -> bool| deaths.iter().filter(|d| f(d)).count();
    println!(
        "guest chaos (seed {:#x}): {} kills, {} departures, {} streams, {elapsed:.2?}",
        chaos.seed,
        deaths.len(),
        t.leaves,
        chaos.streams.len()
    );
    let planned: Vec<String> = Event::KILLS
        .iter()
        .map(|&e| {
            let of = |d: &Death| d.event == e;
            format!(
                "{e:?} {} ({} hit)",
                count(&of),
                count(&|d| of(d) && d.armed)
            )
        })
        .collect();
    println!("  kills planned: {}", planned.join(", "));
    println!(
        "  where they died: holding a loan {}, inside send_batch {}, asleep in recv {}, asleep \
         in a send {} (full ring {}, no slot {}), after detaching {}, with slots of their own \
         pool in use {}",
        count(&|d| d.state == S_LOAN),
        count(&|d| d.state == S_BATCH),
        count(&|d| d.asleep_in_recv()),
        count(&|d| d.asleep_in_send()),
        count(&|d| d.asleep_in_send() && d.send_flag != 0),
        count(&|d| d.asleep_in_send() && d.pool_waiters != 0),
        count(&|d| !d.reclaimed),
        count(&|d| d.pool_used > 0),
    );
    let logged: u64 = chaos
        .streams
        .iter()
        .map(|s| {
            read_rx_log(&chaos.dir.join(format!("rx-{}.log", s.id)), s.id)
                .map(|l| l.received)
                .unwrap_or(0)
        })
        .sum();
    println!(
        "  replacements: {} plain attaches, {} reserved; host sends left in a departed \
         guest's ring until its entry was taken again: {}",
        t.plain_attaches,
        t.reserved_attaches - u64::from(GUESTS),
        t.stranded
    );
    println!(
        "  messages checked: {} to the host, {logged} to the guests; lost 0, duplicated 0, \
         corrupted 0, from another stream 0",
        t.to_host,
    );
}

// ---------------------------------------------------------------------------
// Host chaos: the host child and its guests
// ---------------------------------------------------------------------------

/// How long the calls of host chaos guests may wait (ms): longer than
/// [`ARM_LIMIT`] and the bound on noticing the host's death together, so
/// that a parked guest is still in the call it parked in when it notices.
const PARKED_WAIT_MS: u64 = 6000;

/// Which guest of the host chaos test waits for what once the host
/// freezes (guest ids are the entries the host reserves, 1..=4).
const RECV_PARKED: u8 = 1;
const RING_PARKED: u8 = 2;
const POOL_PARKED: u8 = 3;

/// The stream of host chaos guest `p`: guest 2 sends inline messages only
/// (its ring fills), guest 3 slot messages only (its pool runs out).
fn host_chaos_stream(p: u8) -> u32 {
    let shape = match p {
        RING_PARKED => Shape::Inline,
        POOL_PARKED => Shape::Slots,
        _ => Shape::Mixed,
    };
    shaped(u32::from(p), shape)
}

/// The host child: creates the segment, reserves an entry per guest and
/// exchanges messages with them until it is killed. Once `freeze` exists,
/// it stops sending to guest 1 and stops reading from guests 2 and 3.
fn run_host_child(env: &ChildEnv) -> anyhow::Result<()> {
    let heartbeat: u32 = env.parse(HEARTBEAT_ENV)?;
    let mut rng = Rng::new(env.parse(RNG_ENV)?);
    let mut host = ShmHost::create(&env.path, config(heartbeat)).context("create")?;
    host.set_wait_strategy(WaitStrategy::Block);
    for p in 1..=GUESTS {
        ensure!(host.reserve_peer()? == p, "reserved entries in order");
    }
    signal(&env.dir, "hosting", "")?;
    let freeze = env.dir.join("freeze");
    let mut frozen = false;
    let mut tx = [0u64; GUESTS as usize];
    let mut rx = [0u64; GUESTS as usize];
    let mut last_beat = Instant::now();
    let waits = Waits {
        send: (0, 2),
        recv: (0, 0),
        hold_loans: false,
    };
    for turn in 0u64.. {
        if turn % 32 == 0 && !frozen && freeze.exists() {
            frozen = true;
            signal(&env.dir, "frozen", "")?;
        }
        if heartbeat > 0 && last_beat.elapsed() >= Duration::from_millis(u64::from(heartbeat)) {
            host.beat()?;
            last_beat = Instant::now();
        }
        for p in 1..=GUESTS {
            if frozen && p == RECV_PARKED {
                continue;
            }
            let stream = host_chaos_stream(p);
            let mut to = HostTo {
                host: &mut host,
                peer: p,
            };
            let next = &mut tx[usize::from(p) - 1];
            send_turn(
                &mut to,
                &mut rng,
                stream,
                H2G,
                next,
                waits,
                &mut 0,
                &mut |_, _| {},
            )
            .with_context(|| format!("send to guest {p}"))?;
        }
        for p in 1..=GUESTS {
            if frozen && (p == RING_PARKED || p == POOL_PARKED) {
                continue;
            }
            let stream = host_chaos_stream(p);
            let next = &mut rx[usize::from(p) - 1];
            let mut bad = None;
            host.receiver(p)
                .unwrap()
                .recv_batch(RECV_BATCH, Duration::ZERO, |r| {
                    let problem = check_data(stream, G2H, r.desc(), r.payload())
                        .err()
                        .or_else(|| {
                            (r.desc().id != *next)
                                .then(|| format!("id {} after {next}", r.desc().id))
                        });
                    *next += 1;
                    bad = bad.take().or(problem);
                })
                .with_context(|| format!("receive from guest {p}"))?;
            if let Some(problem) = bad {
                bail!("from guest {p}: {problem}");
            }
        }
    }
    Ok(())
}

/// A guest of the host chaos test: exchanges its stream until the host
/// dies, then reports the call that said so, and when.
fn run_host_chaos_guest(env: &ChildEnv) -> anyhow::Result<()> {
    // Long waits, well past the time the test gives the guests to park
    // (ARM_LIMIT): a guest the host stops serving stays in one call until
    // the host's death ends it.
    let waits = Waits {
        send: (PARKED_WAIT_MS, PARKED_WAIT_MS),
        recv: (PARKED_WAIT_MS, PARKED_WAIT_MS),
        hold_loans: false,
    };
    let mut run = GuestRun::attach(env, waits)?;
    let p = run.guest.peer_id();
    let host_pid = run.guest.status().header()?.host_pid;
    signal(&env.dir, &format!("attached-{p}"), "")?;
    let failure = loop {
        if let Err(e) = run.send_turn().and_then(|_| run.recv_turn().map(drop)) {
            break e;
        }
    };
    let at = shmhub::sys::monotonic_ns();
    let Some(failed) = failure.downcast_ref::<CallFailed>() else {
        return Err(failure);
    };
    match failed.error {
        Error::HostDied { pid } if pid == host_pid => {}
        _ => return Err(failure),
    }
    signal(
        &env.dir,
        &format!("died-{p}"),
        &format!("{at} {} {}", failed.state as char, failed.call),
    )?;
    // Dropping the guest detaches it.
    Ok(())
}

/// What one host kill showed.
#[derive(Debug)]
struct HostKill {
    parked: bool,
    heartbeat_ms: u32,
    /// Per guest: the call HostDied came from, its state letter, and how
    /// long after the kill.
    noticed: Vec<(u8, String, char, Duration)>,
}

/// Runs one host chaos round at `path`: a host child and four guests under
/// load; the host killed at a random moment or (`parked`) once guests wait
/// in each way; then `create --force` on the path and a check that the new
/// segment works.
fn host_kill_round(
    dir: &Path,
    path: &Path,
    rng: &mut Rng,
    parked: bool,
    heartbeat_ms: u32,
) -> HostKill {
    let env = [
        (HEARTBEAT_ENV, heartbeat_ms.to_string()),
        (RNG_ENV, rng.next_u64().to_string()),
    ];
    // The host first, then guests 1..=4: children[p] is guest p.
    let mut children = vec![Child::spawn("host", path, dir, &env)];
    children[0].await_signal("hosting", CHILD_WAIT);
    for p in 1..=GUESTS {
        let env = [
            (STREAM_ENV, host_chaos_stream(p).to_string()),
            (PEER_ENV, p.to_string()),
            (RNG_ENV, rng.next_u64().to_string()),
        ];
        let guest = Child::spawn("host-guest", path, dir, &env).named(format!("guest {p}"));
        children.push(guest);
    }
    for p in 1..=GUESTS {
        children[usize::from(p)].await_signal(&format!("attached-{p}"), CHILD_WAIT);
    }
    // Load for a while.
    std::thread::sleep(rng.millis(100, 500));
    let peek = Peek::open(path);
    if parked {
        signal(dir, "freeze", "").unwrap();
        // The host has stopped serving them before their waits can count.
        children[0].await_signal("frozen", CHILD_WAIT);
        let deadline = Instant::now() + ARM_LIMIT;
        loop {
            // Nothing queued for it first, then its flag: a flag read before
            // it could still be that of a nap that the last message sent
            // before the freeze is about to end (on the portable build a
            // sleeper notices a wake only at its next poll). With nothing
            // queued and the host frozen, a guest whose flag is up after
            // that stays in its receive.
            let recv = peek.ring_fill(RECV_PARKED, H2G) == 0
                && peek.consumer_waiting(RECV_PARKED, H2G) != 0;
            let ring = peek.producer_waiting(RING_PARKED, G2H) != 0
                && peek.ring_fill(RING_PARKED, G2H) == RING;
            let pool = peek.pool_waiters(POOL_PARKED) != 0 && peek.pool_used(POOL_PARKED) == SLOTS;
            if recv && ring && pool {
                break;
            }
            if Instant::now() > deadline {
                let msg = format!(
                    "guests never all parked: asleep in recv {recv}, on a full ring {ring}, \
                     for a slot {pool}"
                );
                fail_all(&mut children, &msg);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Err(e) = children.iter_mut().try_for_each(Child::check_not_failed) {
        fail_all(&mut children, &format!("before the kill: {e:#}"));
    }
    let killed_at = shmhub::sys::monotonic_ns();
    children[0].kill();
    // Every guest notices and exits cleanly, well within the bound.
    let bound = if heartbeat_ms > 0 {
        Duration::from_millis(3 * u64::from(heartbeat_ms))
    } else {
        Duration::from_secs(1)
    };
    let mut noticed = Vec::new();
    for p in 1..=GUESTS {
        let g = &mut children[usize::from(p)];
        let status = match g.wait_until(Instant::now() + CHILD_WAIT) {
            Ok(s) => s,
            Err(e) => g.fail(&format!("after the host was killed: {e:#}")),
        };
        if !status.success() {
            g.fail(&format!(
                "guest {p} did not end cleanly after the host died: {status}"
            ));
        }
        let report = std::fs::read_to_string(dir.join(format!("died-{p}"))).expect("a died report");
        let mut f = report.split(' ');
        let at: u64 = f.next().and_then(|t| t.parse().ok()).expect("a time");
        let state = f.next().and_then(|t| t.chars().next()).expect("a state");
        let call = f.next().unwrap_or("").to_string();
        let after = Duration::from_nanos(at.saturating_sub(killed_at));
        if after > bound {
            g.fail(&format!(
                "guest {p} noticed the host's death after {after:?} (bound {bound:?})"
            ));
        }
        noticed.push((p, call, state, after));
        std::fs::remove_file(dir.join(format!("died-{p}"))).unwrap();
        std::fs::remove_file(dir.join(format!("attached-{p}"))).unwrap();
    }
    if parked {
        let by = |p: u8| noticed[usize::from(p) - 1].2 as u8;
        assert_eq!(
            by(RECV_PARKED),
            S_RECV,
            "guest {RECV_PARKED} was parked in recv: {noticed:?}"
        );
        for p in [RING_PARKED, POOL_PARKED] {
            assert!(
                matches!(by(p), S_SEND | S_BATCH),
                "guest {p} was parked in a send: {noticed:?}"
            );
        }
        std::fs::remove_file(dir.join("freeze")).unwrap();
        std::fs::remove_file(dir.join("frozen")).unwrap();
    }
    std::fs::remove_file(dir.join("hosting")).unwrap();
    // The crashed host's file is left: inspect says so, and the guests
    // have let go of their entries (Goodbye where they left messages the
    // host will never read).
    let report = shmhub::admin::inspect_path(path).expect("inspect the abandoned segment");
    assert_eq!(report.host, HostStatus::Dead);
    assert!(
        report
            .peers
            .iter()
            .all(|p| p.holder == HolderStatus::NoProcess
                && matches!(p.entry.state, PeerState::Empty | PeerState::Goodbye)),
        "{:?}",
        report.peers
    );
    replace_and_use(dir, path);
    HostKill {
        parked,
        heartbeat_ms,
        noticed,
    }
}

/// `shmhub create --force` on the dead host's path, then a guest and a
/// host (opened, not created) exchange an inline and a slot message each
/// way through it, and `shmhub rm` removes it.
fn replace_and_use(dir: &Path, path: &Path) {
    let out = Command::new(BIN)
        .args([
            "create",
            &path.to_string_lossy(),
            "--force",
            "--max-guests",
            "2",
            "--slot-size",
            "4KiB",
            "--slots",
            "4",
            "--ring-size",
            "8",
        ])
        .current_dir(dir)
        .output()
        .expect("run shmhub create --force");
    assert!(
        out.status.success(),
        "create --force: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut host = ShmHost::open(path).expect("open the new segment");
    let mut guest = ShmGuest::attach_path(path).expect("attach to the new segment");
    let wait = Some(Duration::from_secs(5));
    let small = Frame::new(
        MsgDesc::new(msg_type::REQUEST, 1),
        b"after the crash".to_vec(),
    );
    let big = Frame::new(MsgDesc::new(msg_type::REQUEST, 2), vec![0xA5; 3000]);
    for f in [&small, &big] {
        host.send_timeout(guest.peer_id(), f, wait)
            .expect("host send");
        let got = guest
            .recv_timeout(wait)
            .expect("guest recv")
            .expect("a message");
        assert_eq!((got.desc.id, got.payload()), (f.desc.id, f.payload()));
        guest.send_timeout(f, wait).expect("guest send");
        let back = host
            .recv_from_timeout(guest.peer_id(), wait)
            .expect("host recv")
            .expect("a message");
        assert_eq!((back.desc.id, back.payload()), (f.desc.id, f.payload()));
    }
    guest.detach().expect("detach");
    drop(host);
    let out = Command::new(BIN)
        .args(["rm", &path.to_string_lossy()])
        .output()
        .expect("run shmhub rm");
    assert!(
        out.status.success(),
        "rm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Fan chaos: a third of a crowd of guests killed in a fan-in and a fan-out
// ---------------------------------------------------------------------------

/// Guest processes of a fan test, one per entry.
const FAN_GUESTS: u8 = 24;
/// How many of them are killed: a third.
const FAN_KILLS: usize = FAN_GUESTS as usize / 3;
/// Data messages in each guest's stream (then an end message).
const FAN_MESSAGES: u64 = 2000;
/// Descriptors per ring: few, so that the rings of a crowd stay full.
const FAN_RING: u32 = 16;
/// Slots per pool: fewer than a ring holds, so that a fan-in guest's pool
/// runs out too, and fewer than there are guests, so that the host's are
/// shared out one per guest (`shm.pool.share`) and those a killed guest
/// holds are missed by the others until it is reclaimed.
const FAN_SLOTS: u32 = 12;
const FAN_SLOT_SIZE: u32 = 1024;
/// The two sizes of a stream's messages: inline, and in a slot.
const FAN_SMALL: usize = 8;
const FAN_LARGE: usize = 1000;
/// The longest any one library call of a fan test waits: far past what a
/// loaded machine needs, so that only a lost message or wake reaches it.
const FAN_WAIT: Duration = Duration::from_secs(10);
/// How long the host of a fan-out waits on one guest when no guest has
/// room, before it goes round the others again.
const FAN_OUT_NAP: Duration = Duration::from_millis(20);
/// How long the host of a fan-in waits for a message from any guest
/// before it looks at its kills and reclaims again.
const FAN_IN_NAP: Duration = Duration::from_millis(5);
/// The most a reclaim comes after the kill that calls for it.
const FAN_RECLAIM_DELAY_MS: u64 = 40;
/// How long one fan run may take at most.
const FAN_DEADLINE: Duration = Duration::from_secs(120);

const FAN_GO: u16 = 0x4600;
const FAN_DATA: u16 = 0x4601;
const FAN_END: u16 = 0x4602;

fn fan_config() -> SegmentConfig {
    SegmentConfig {
        max_guests: u32::from(FAN_GUESTS),
        ring_capacity: FAN_RING,
        slot_size: FAN_SLOT_SIZE,
        max_payload: FAN_SLOT_SIZE,
        slots_per_pool: FAN_SLOTS,
        heartbeat_interval_ms: 0,
    }
}

fn fan_seed(p: u8, seq: u64) -> u64 {
    (u64::from(p) << 40) ^ seq ^ 0x46A1_0000_0000_0000
}

/// Message `seq` of guest `p`'s stream: a third in slots, the rest inline,
/// in a seeded order; the bytes seeded by `(p, seq)`.
fn fan_frame(p: u8, seq: u64) -> Frame {
    let len = if Rng::new(fan_seed(p, seq)).below(3) == 0 {
        FAN_LARGE
    } else {
        FAN_SMALL
    };
    let mut payload = vec![0; len];
    fill_seeded(fan_seed(p, seq), &mut payload);
    let desc = MsgDesc {
        msg_type: FAN_DATA,
        id: seq,
        method_id: u32::from(p),
        ..MsgDesc::default()
    };
    Frame::new(desc, payload)
}

/// The end of guest `p`'s stream, after `count` data messages.
fn fan_end(p: u8, count: u64) -> Frame {
    let desc = MsgDesc {
        msg_type: FAN_END,
        id: count,
        method_id: u32::from(p),
        ..MsgDesc::default()
    };
    Frame::new(desc, Vec::new())
}

/// Checks the messages of guest `p`'s stream in the order they arrive:
/// each the next data message, intact and placed by its size, then the end
/// message, then nothing.
#[derive(Debug)]
struct FanStream {
    p: u8,
    /// Data messages taken so far: the next one due.
    next: u64,
    ended: bool,
}

impl FanStream {
    fn new(p: u8) -> Self {
        FanStream {
            p,
            next: 0,
            ended: false,
        }
    }

    /// Takes one message; what is wrong with it, if anything.
    fn take(&mut self, desc: &MsgDesc, payload: &[u8]) -> Result<(), String> {
        let p = self.p;
        if desc.method_id != u32::from(p) {
            return Err(format!(
                "message {} of guest {}'s stream reached guest {p}'s",
                desc.id, desc.method_id
            ));
        }
        if self.ended {
            return Err(format!(
                "guest {p}: message {} (type {:#x}) after the end",
                desc.id, desc.msg_type
            ));
        }
        match desc.msg_type {
            FAN_END if desc.id == self.next && self.next == FAN_MESSAGES => {
                self.ended = true;
                Ok(())
            }
            FAN_END => Err(format!(
                "guest {p}: the end says {} after {} messages of {FAN_MESSAGES}",
                desc.id, self.next
            )),
            FAN_DATA if desc.id != self.next => Err(format!(
                "guest {p}: message {} where {} was due (lost or repeated)",
                desc.id, self.next
            )),
            FAN_DATA => {
                let expected = fan_frame(p, desc.id);
                if payload != expected.payload() {
                    return Err(format!(
                        "guest {p}: message {} arrived changed ({} bytes, {} sent)",
                        desc.id,
                        payload.len(),
                        expected.payload().len()
                    ));
                }
                if desc.is_slot() != (payload.len() > INLINE_CAPACITY) {
                    return Err(format!(
                        "guest {p}: message {} of {} bytes arrived placed wrong",
                        desc.id,
                        payload.len()
                    ));
                }
                self.next += 1;
                Ok(())
            }
            other => Err(format!("guest {p}: message {} of type {other:#x}", desc.id)),
        }
    }
}

/// A fan guest attaches to the entry its host reserved for it; mostly it
/// sleeps on a futex when it waits, now and then it spins first.
fn attach_fan_guest(env: &ChildEnv) -> anyhow::Result<(ShmGuest, u8, Rng)> {
    let p: u8 = env.parse(PEER_ENV)?;
    let mut rng = Rng::new(env.parse(RNG_ENV)?);
    let mut guest = ShmGuest::attach_path_with_id(&env.path, p).context("attach")?;
    guest.set_wait_strategy(if rng.chance(1, 4) {
        WaitStrategy::Adaptive
    } else {
        WaitStrategy::Block
    });
    Ok((guest, p, rng))
}

/// A fan-in guest: once the host says go, sends its stream as fast as it
/// can (single sends and batches up to two rings long, each waiting for
/// room), then the end message, and detaches at once (what it sent is read
/// after it left).
fn run_fan_in_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let (mut guest, p, mut rng) = attach_fan_guest(env)?;
    let go = guest
        .recv_timeout(FAN_WAIT)
        .context("wait for go")?
        .with_context(|| format!("no go within {FAN_WAIT:?}"))?;
    ensure!(go.desc.msg_type == FAN_GO, "expected go, got {:?}", go.desc);
    let mut next = 0;
    while next < FAN_MESSAGES {
        if rng.chance(1, 3) {
            let n = rng
                .between(2, 2 * u64::from(FAN_RING))
                .min(FAN_MESSAGES - next);
            let frames: Vec<Frame> = (next..next + n).map(|s| fan_frame(p, s)).collect();
            let sent = guest
                .send_batch(&frames, FAN_WAIT)
                .with_context(|| format!("send_batch of {n} from message {next}"))?;
            next += sent as u64;
        } else {
            guest
                .send_timeout(fan_frame(p, next), FAN_WAIT)
                .with_context(|| format!("send message {next}"))?;
            next += 1;
        }
    }
    guest
        .send_timeout(fan_end(p, next), FAN_WAIT)
        .context("send the end")?;
    guest.detach().context("detach")
}

/// A fan-out guest: receives its stream (copied, in place, and in
/// batches, in turn), checking each message as it comes and writing its
/// count to `fan-out-P.count` after each receive (the count of a killed
/// guest stays there); at the end message it reports the count in
/// `fan-out-done-P` and detaches. A wrong message fails it at once, so a
/// guest that was to be killed is found to have exited first.
fn run_fan_out_guest(env: &ChildEnv) -> anyhow::Result<()> {
    let (mut guest, p, mut rng) = attach_fan_guest(env)?;
    let count_path = env.dir.join(format!("fan-out-{p}.count"));
    let count = File::create(&count_path).with_context(|| format!("create {count_path:?}"))?;
    let mut stream = FanStream::new(p);
    let mut wrong = None;
    while !stream.ended {
        let before = stream.next;
        let got = match rng.below(3) {
            0 => guest.recv_timeout(FAN_WAIT).map(|m| {
                m.map(|f| wrong = wrong.take().or(stream.take(&f.desc, f.payload()).err()))
                    .is_some()
            }),
            1 => guest.receiver().recv(FAN_WAIT).map(|m| {
                m.map(|r| wrong = wrong.take().or(stream.take(r.desc(), r.payload()).err()))
                    .is_some()
            }),
            _ => guest
                .receiver()
                .recv_batch(FAN_RING as usize, FAN_WAIT, |r| {
                    wrong = wrong.take().or(stream.take(r.desc(), r.payload()).err());
                })
                .map(|n| n > 0),
        };
        let got = got.with_context(|| format!("receive after message {before}"))?;
        if let Some(wrong) = wrong {
            bail!(wrong);
        }
        ensure!(
            got,
            "nothing from the host within {FAN_WAIT:?} after message {before}"
        );
        count
            .write_all_at(&stream.next.to_le_bytes(), 0)
            .context("write the count")?;
    }
    signal(
        &env.dir,
        &format!("fan-out-done-{p}"),
        &stream.next.to_string(),
    )?;
    guest.detach().context("detach")
}

/// What became of one guest of a fan test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FanFate {
    Running,
    /// Killed, not yet reclaimed.
    Killed,
    Reclaimed,
    /// Ended its stream and exited cleanly.
    Done,
}

/// What one reclaim found of a guest killed before it.
#[derive(Debug, Clone)]
struct FanReclaim {
    p: u8,
    /// How long after the kill it came.
    after_kill: Duration,
    /// Whether it died asleep: a waiting flag of its rings or the waiter
    /// count of its pool was still set.
    asleep: bool,
    /// Messages waiting in the dead guest's rings (both ways), dropped.
    queued: u32,
    /// Slots of its own pool in use (its queued or half-sent messages).
    own_slots: usize,
    /// Slots of the host's pool it held (the host's messages to it).
    host_slots: usize,
}

/// One fan run: the host (this process) and [`FAN_GUESTS`] guest
/// processes, the victims, their kills and the reclaims.
struct FanChaos {
    name: &'static str,
    host: ShmHost,
    path: PathBuf,
    dir: PathBuf,
    seed: u64,
    rng: Rng,
    /// Guest `p` at `p - 1`.
    children: Vec<Child>,
    /// The point of its stream (messages the host received from it, or
    /// sent to it) at which each victim is killed; `None` for a survivor.
    kill_at: Vec<Option<u64>>,
    /// The victims before whose kill the host stops receiving a moment,
    /// and which it reclaims at once after: they die with messages
    /// waiting, which the reclaim drops (fan-in).
    held: Vec<bool>,
    peek: Peek,
    fate: Vec<FanFate>,
    killed_at: Vec<Option<Instant>>,
    /// When the next reclaim is due: some moment after a kill.
    reclaim_due: Option<Instant>,
    reclaims: Vec<FanReclaim>,
    started: Instant,
}

impl FanChaos {
    /// Creates the segment, reserves every entry for a guest process in
    /// `role`, picks the victims and where in their streams they die (and,
    /// with `hold`, every other victim to die with messages waiting), and
    /// waits until every guest has attached.
    fn start(name: &'static str, role: &str, seed: u64, dir: &Path, hold: bool) -> Self {
        let path = dir.join(format!("{name}.shm"));
        let mut host = ShmHost::create(&path, fan_config()).expect("create the segment");
        host.set_wait_strategy(WaitStrategy::Block);
        // The last guests' end may come after every guest has gone, some
        // killed: the loop ends the run, not NoGuests.
        host.any_receiver().wait_for_guests(true);
        let mut rng = Rng::new(seed);
        let mut children = Vec::new();
        for p in 1..=FAN_GUESTS {
            let got = host.reserve_peer().expect("reserve an entry");
            assert_eq!(got, p, "entries are reserved in order");
            let env = [
                (PEER_ENV, p.to_string()),
                (RNG_ENV, rng.next_u64().to_string()),
            ];
            children.push(Child::spawn(role, &path, dir, &env).named(format!("{name} guest {p}")));
        }
        let mut order: Vec<usize> = (0..usize::from(FAN_GUESTS)).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        // Far enough from the end that a killed guest's ring fills before
        // the rest of its stream could go: a fan-in victim is still
        // sending, and a fan-out host cannot finish a victim's stream.
        let latest = FAN_MESSAGES - 2 * u64::from(FAN_RING) - 2;
        let mut kill_at = vec![None; usize::from(FAN_GUESTS)];
        let mut held = vec![false; usize::from(FAN_GUESTS)];
        for (k, &i) in order[..FAN_KILLS].iter().enumerate() {
            kill_at[i] = Some(rng.between(0, latest));
            held[i] = hold && k % 2 == 0;
        }
        let peek = Peek::open(&path);
        let mut fan = FanChaos {
            name,
            host,
            path,
            dir: dir.to_path_buf(),
            seed,
            rng,
            children,
            kill_at,
            held,
            peek,
            fate: vec![FanFate::Running; usize::from(FAN_GUESTS)],
            killed_at: vec![None; usize::from(FAN_GUESTS)],
            reclaim_due: None,
            reclaims: Vec::new(),
            started: Instant::now(),
        };
        fan.await_attached();
        fan
    }

    fn await_attached(&mut self) {
        let deadline = Instant::now() + FAN_WAIT;
        loop {
            let peers = self.host.peers().expect("peers");
            if peers.iter().all(|e| e.state == PeerState::Attached) {
                return;
            }
            if Instant::now() > deadline {
                self.fail("not every guest attached");
            }
            if let Some(c) = self.children.iter_mut().find_map(|c| c.poll().and(Some(c))) {
                let msg = format!("a guest exited before every guest attached\n{}", c.output());
                self.fail(&msg);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills every child and fails with `msg`, the seed, the fates and the
    /// output of a few children that said something.
    fn fail(&mut self, msg: &str) -> ! {
        for c in &mut self.children {
            c.stop();
        }
        let outputs: Vec<String> = self
            .children
            .iter()
            .filter(|c| !c.stderr().is_empty())
            .take(4)
            .map(Child::output)
            .collect();
        panic!(
            "{} (seed {:#x}, {SEED_ENV} replays it): {msg}\nvictims {:?}\nfates {:?}\n{}",
            self.name,
            self.seed,
            self.kill_at,
            self.fate,
            outputs.join("\n")
        );
    }

    /// Kills guest `p` if it is a victim whose point has come (`progress`
    /// of its stream done).
    fn kill_if_due(&mut self, p: u8, progress: u64) {
        let i = usize::from(p) - 1;
        if self.fate[i] != FanFate::Running || self.kill_at[i].is_none_or(|at| progress < at) {
            return;
        }
        if self.held[i] {
            self.let_queue(p);
        }
        let status = self.children[i].kill();
        if status.signal() != Some(libc::SIGKILL) {
            let msg = format!(
                "guest {p} exited with {status} before it was killed\n{}",
                self.children[i].output()
            );
            self.fail(&msg);
        }
        let now = Instant::now();
        self.fate[i] = FanFate::Killed;
        self.killed_at[i] = Some(now);
        // Now and then at once, while what it was sending or being sent
        // is still queued; otherwise once the host has gone on a while
        // (and other guests may have died meanwhile).
        let delay = if self.held[i] || self.rng.chance(1, 3) {
            Duration::ZERO
        } else {
            self.rng.millis(1, FAN_RECLAIM_DELAY_MS)
        };
        let due = now + delay;
        self.reclaim_due = Some(self.reclaim_due.map_or(due, |d| d.min(due)));
    }

    /// Stops the host's traffic a moment before victim `p` is killed, so
    /// that it dies with messages waiting in its ring: until the ring is
    /// full, or a random few milliseconds have passed.
    fn let_queue(&mut self, p: u8) {
        let until = Instant::now() + self.rng.millis(2, 20);
        while self.peek.ring_fill(p, G2H) < FAN_RING && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Whether a waiting flag of guest `p`'s rings or the waiter count of
    /// its pool is set.
    fn waits_marked(&self, p: u8) -> bool {
        [G2H, H2G].iter().any(|&dir| {
            self.peek.producer_waiting(p, dir) != 0 || self.peek.consumer_waiting(p, dir) != 0
        }) || self.peek.pool_waiters(p) != 0
    }

    /// Reclaims the dead if a reclaim is due.
    fn reclaim_if_due(&mut self) {
        if self.reclaim_due.is_some_and(|due| Instant::now() >= due) {
            self.reclaim_due = None;
            self.reclaim();
        }
    }

    /// Every slot of every pool, retrying a look that found the segment
    /// changing under it.
    fn slots(&mut self) -> shmhub::admin::SlotsReport {
        let mut tries = 0;
        loop {
            match shmhub::admin::inspect_slots(&self.path) {
                Ok(report) => return report,
                Err(e) if e.is_retryable() && tries < 100 => tries += 1,
                Err(e) => self.fail(&format!("inspect_slots: {e}")),
            }
        }
    }

    fn inspect(&mut self) -> shmhub::admin::SegmentReport {
        match shmhub::admin::inspect_path(&self.path) {
            Ok(report) => report,
            Err(e) => self.fail(&format!("inspect: {e}")),
        }
    }

    /// `reclaim_dead` now: it must reclaim exactly the guests killed since
    /// the last reclaim (their holders are dead: each was reaped), and leave
    /// of them nothing behind: entries Empty, rings empty, no slot of their
    /// pools in use, none of the host's held for them; and with every dead
    /// guest reclaimed, no slot anywhere looks leaked.
    fn reclaim(&mut self) {
        let dead: Vec<u8> = (1..=FAN_GUESTS)
            .filter(|&p| self.fate[usize::from(p) - 1] == FanFate::Killed)
            .collect();
        // The dead cannot change anything, and this process is the only
        // other user of their parts: what is seen now is what the reclaim
        // finds.
        let report = self.inspect();
        let slots = self.slots();
        let mut seen = Vec::new();
        for &p in &dead {
            let entry = report.peer(p).expect("every entry reads");
            let queued = entry.to_host.len().unwrap_or(0) + entry.to_guest.len().unwrap_or(0);
            let own_slots = slots.slots.iter().filter(|s| s.pool == p).count();
            let host_slots = slots
                .slots
                .iter()
                .filter(|s| s.pool == 0 && s.holder_party == Some(p))
                .count();
            let killed_at = self.killed_at[usize::from(p) - 1].expect("killed");
            seen.push(FanReclaim {
                p,
                after_kill: killed_at.elapsed(),
                asleep: self.waits_marked(p),
                queued,
                own_slots,
                host_slots,
            });
        }
        let mut reclaimed = match self.host.reclaim_dead() {
            Ok(r) => r,
            Err(e) => self.fail(&format!("reclaim_dead: {e}")),
        };
        reclaimed.sort_unstable();
        if reclaimed != dead {
            self.fail(&format!(
                "reclaim_dead reclaimed {reclaimed:?}; the guests killed since the last reclaim are {dead:?}"
            ));
        }
        let report = self.inspect();
        let slots = self.slots();
        let mut wrong = Vec::new();
        for &p in &dead {
            let entry = report.peer(p).expect("every entry reads");
            if entry.entry.state != PeerState::Empty {
                wrong.push(format!("entry {p} is {:?}", entry.entry.state));
            }
            if !(entry.to_host.is_empty() && entry.to_guest.is_empty()) {
                wrong.push(format!(
                    "guest {p}'s rings hold {:?} and {:?}",
                    entry.to_host, entry.to_guest
                ));
            }
            let held: Vec<_> = slots
                .slots
                .iter()
                .filter(|s| s.pool == p || s.holder_party == Some(p))
                .collect();
            if !held.is_empty() {
                wrong.push(format!("slots of or for guest {p} still in use: {held:?}"));
            }
            if self.waits_marked(p) {
                wrong.push(format!(
                    "a waiting flag or waiter count of guest {p} is set"
                ));
            }
            self.fate[usize::from(p) - 1] = FanFate::Reclaimed;
        }
        let leaked: Vec<_> = slots.slots.iter().filter(|s| s.leaked).collect();
        if !leaked.is_empty() {
            wrong.push(format!("leaked slots after the reclaim: {leaked:?}"));
        }
        if !wrong.is_empty() {
            self.fail(&format!("after reclaiming {dead:?}: {}", wrong.join("; ")));
        }
        self.reclaims.extend(seen);
    }

    fn victims(&self) -> impl Iterator<Item = u8> + '_ {
        (1..=FAN_GUESTS).filter(|&p| self.kill_at[usize::from(p) - 1].is_some())
    }

    fn survivors(&self) -> impl Iterator<Item = u8> + '_ {
        (1..=FAN_GUESTS).filter(|&p| self.kill_at[usize::from(p) - 1].is_none())
    }

    fn all_reclaimed(&self) -> bool {
        self.victims()
            .all(|p| self.fate[usize::from(p) - 1] == FanFate::Reclaimed)
    }

    /// Fails the run if a guest that is to go on running has failed.
    fn check_running(&mut self) {
        for p in 1..=FAN_GUESTS {
            let i = usize::from(p) - 1;
            if self.fate[i] != FanFate::Running {
                continue;
            }
            if let Err(e) = self.children[i].check_not_failed() {
                let msg = format!("{e:#}\n{}", self.children[i].output());
                self.fail(&msg);
            }
        }
    }

    /// Fails the run once it makes no progress for [`STALL`] or outlasts
    /// [`FAN_DEADLINE`].
    fn check_time(&mut self, last_progress: Instant) {
        if last_progress.elapsed() > STALL {
            self.fail(&format!("nothing moved for {STALL:?}"));
        }
        if self.started.elapsed() > FAN_DEADLINE {
            self.fail(&format!("the run outlasted {FAN_DEADLINE:?}"));
        }
    }

    /// The end of a run: every survivor exits cleanly; nothing is left to
    /// read; a last reclaim finds nobody (and frees the entries of
    /// survivors that left with messages the host has read since); every
    /// entry is Empty, every ring empty, every pool unused, and no slot is
    /// allocated anywhere.
    fn finish(&mut self) {
        let deadline = Instant::now() + FAN_WAIT;
        for p in self.survivors().collect::<Vec<_>>() {
            let i = usize::from(p) - 1;
            match self.children[i].wait_until(deadline) {
                Ok(status) if status.success() => self.fate[i] = FanFate::Done,
                Ok(status) => {
                    let msg = format!(
                        "guest {p} exited with {status}\n{}",
                        self.children[i].output()
                    );
                    self.fail(&msg);
                }
                Err(e) => self.fail(&format!("{e:#}")),
            }
        }
        match self.host.try_recv() {
            Ok(None) => {}
            Ok(Some((p, f))) => {
                let msg = format!("message {} from guest {p} after the end", f.desc.id);
                self.fail(&msg);
            }
            Err(e) => self.fail(&format!("last try_recv: {e}")),
        }
        match self.host.reclaim_dead() {
            Ok(r) if r.is_empty() => {}
            other => self.fail(&format!("the last reclaim_dead: {other:?}")),
        }
        let report = self.inspect();
        let mut wrong = Vec::new();
        for p in &report.peers {
            if p.entry.state != PeerState::Empty || !p.to_host.is_empty() || !p.to_guest.is_empty()
            {
                wrong.push(format!("{p:?}"));
            }
        }
        for pool in &report.pools {
            if pool.usage.used != 0 {
                wrong.push(format!(
                    "{} uses {} slots",
                    pool.owner_name, pool.usage.used
                ));
            }
        }
        let slots = self.slots();
        if !slots.slots.is_empty() {
            wrong.push(format!("slots still allocated: {:?}", slots.slots));
        }
        if !wrong.is_empty() {
            self.fail(&format!("at the end: {}", wrong.join("\n")));
        }
    }

    /// Something of the reclaims for the summary: each victim's point, how
    /// long after its kill it was reclaimed, and what the reclaim dropped
    /// and freed.
    fn reclaim_summary(&self) -> String {
        self.reclaims
            .iter()
            .map(|r| {
                format!(
                    "{}: killed at {}{}, reclaimed after {:.0?} ({} queued, {} own slots, {} host slots)",
                    r.p,
                    self.kill_at[usize::from(r.p) - 1].unwrap_or(0),
                    if r.asleep { " asleep" } else { "" },
                    r.after_kill,
                    r.queued,
                    r.own_slots,
                    r.host_slots
                )
            })
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

/// A fan-in run: the host tells every guest to go and receives from any
/// guest, checking each message against its guest's stream, killing each
/// victim once its point of the stream has arrived and reclaiming the dead
/// a random moment later, until every survivor's end has come and every
/// victim is reclaimed.
fn fan_in_run(seed: u64, dir: &Path) {
    let mut fan = FanChaos::start("fan-in", "fan-in", seed, dir, true);
    let go = Frame::new(MsgDesc::new(FAN_GO, 0), Vec::new());
    for p in 1..=FAN_GUESTS {
        if let Err(e) = fan.host.send_timeout(p, &go, FAN_WAIT) {
            fan.fail(&format!("go to guest {p}: {e}"));
        }
    }
    let mut streams: Vec<FanStream> = (1..=FAN_GUESTS).map(FanStream::new).collect();
    let mut last_progress = Instant::now();
    for turn in 0u64.. {
        for p in 1..=FAN_GUESTS {
            fan.kill_if_due(p, streams[usize::from(p) - 1].next);
        }
        fan.reclaim_if_due();
        let got = fan.host.any_receiver().recv(FAN_IN_NAP);
        match got {
            Ok(Some((p, m))) => {
                let i = usize::from(p) - 1;
                let checked = if fan.fate[i] == FanFate::Reclaimed {
                    Err(format!(
                        "message {} from guest {p} after its reclaim",
                        m.desc().id
                    ))
                } else {
                    streams[i].take(m.desc(), m.payload())
                };
                drop(m);
                if let Err(e) = checked {
                    fan.fail(&e);
                }
                last_progress = Instant::now();
            }
            Ok(None) => {}
            Err(e) => fan.fail(&format!("receive from any guest: {e}")),
        }
        if turn % 64 == 0 {
            fan.check_running();
        }
        let survivors_ended = fan.survivors().all(|p| streams[usize::from(p) - 1].ended);
        if survivors_ended && fan.all_reclaimed() {
            break;
        }
        fan.check_time(last_progress);
    }
    for p in fan.victims().collect::<Vec<_>>() {
        if streams[usize::from(p) - 1].ended {
            fan.fail(&format!(
                "victim {p}'s whole stream arrived: it died too late"
            ));
        }
    }
    fan.finish();
    // The run must have tested what it claims: some reclaim dropped
    // messages a dead guest had queued, in slots of its pool.
    if !fan.reclaims.iter().any(|r| r.queued > 0 && r.own_slots > 0) {
        fan.fail("no reclaim found a dead guest's messages queued");
    }
    let received: Vec<u64> = streams.iter().map(|s| s.next).collect();
    println!(
        "fan-in (seed {:#x}): {} guests, {} killed, {} messages received, {:.2?}\n  victims (guest: messages received):  {}\n  reclaims:\n    {}",
        seed,
        FAN_GUESTS,
        FAN_KILLS,
        received.iter().sum::<u64>(),
        fan.started.elapsed(),
        fan.victims()
            .map(|p| format!("{p}: {}", received[usize::from(p) - 1]))
            .collect::<Vec<_>>()
            .join(", "),
        fan.reclaim_summary()
    );
}

/// The host's side of one guest's stream in a fan-out.
#[derive(Debug)]
struct FanOutStream {
    /// Data messages sent.
    sent: u64,
    /// How many more the last, failed, send may have sent.
    unsure: u64,
    end_sent: bool,
    /// The error that ended the sends to a killed guest.
    gone: Option<Error>,
}

impl FanOutStream {
    fn open(&self) -> bool {
        !self.end_sent && self.gone.is_none()
    }
}

/// One send of a fan-out to guest `p`, whose stream is `stream`: the next
/// `burst` messages (one, or a batch), or its end message once they have
/// all gone, waiting up to `wait`. A retryable error sends nothing; any
/// other ends the sends, and must be a victim's, after its kill, and of
/// kind `Gone`. Returns whether anything went.
fn fan_out_send(
    fan: &mut FanChaos,
    s: &mut FanOutStream,
    p: u8,
    stream: &[Frame],
    burst: u64,
    wait: Timeout,
) -> bool {
    let i = usize::from(p) - 1;
    let end = [fan_end(p, FAN_MESSAGES)];
    let frames = if s.sent == FAN_MESSAGES {
        if fan.kill_at[i].is_some() {
            fan.fail(&format!(
                "the host sent victim {p}'s whole stream (killed {:?})",
                fan.fate[i]
            ));
        }
        &end[..]
    } else {
        let to = (s.sent + burst).min(FAN_MESSAGES);
        &stream[s.sent as usize..to as usize]
    };
    let result = if frames.len() == 1 {
        fan.host.send_timeout(p, &frames[0], wait).map(|()| 1)
    } else {
        fan.host.send_batch(p, frames, wait)
    };
    let went = match result {
        Ok(_) if s.sent == FAN_MESSAGES => {
            s.end_sent = true;
            true
        }
        Ok(n) => {
            s.sent += n as u64;
            true
        }
        Err(e) if e.is_retryable() => false,
        Err(e) => {
            let fate = fan.fate[i];
            if fan.kill_at[i].is_none() || fate == FanFate::Running {
                fan.fail(&format!("send to guest {p} ({fate:?}): {e}"));
            }
            if e.kind() != shmhub::ErrorKind::Gone {
                fan.fail(&format!(
                    "send to killed guest {p} ({fate:?}): {e} ({:?}), not a 'gone' error",
                    e.kind()
                ));
            }
            s.unsure = frames.len() as u64;
            s.gone = Some(e);
            false
        }
    };
    fan.kill_if_due(p, s.sent);
    went
}

/// A fan-out run: the host goes round the guests sending each the next
/// burst of its stream without waiting, and when no guest took anything
/// waits a moment on one (in turn); each victim is killed once its point
/// of the stream has been sent, and the dead are reclaimed a random moment
/// later; the run ends when every survivor's end has gone, every victim's
/// sends have failed and every victim is reclaimed.
fn fan_out_run(seed: u64, dir: &Path) {
    let mut fan = FanChaos::start("fan-out", "fan-out", seed, dir, false);
    let mut streams: Vec<FanOutStream> = (0..FAN_GUESTS)
        .map(|_| FanOutStream {
            sent: 0,
            unsure: 0,
            end_sent: false,
            gone: None,
        })
        .collect();
    let guests = usize::from(FAN_GUESTS);
    // Made once: the host goes round the guests far more often than it
    // finds room.
    let frames: Vec<Vec<Frame>> = (1..=FAN_GUESTS)
        .map(|p| (0..FAN_MESSAGES).map(|seq| fan_frame(p, seq)).collect())
        .collect();
    let mut last_progress = Instant::now();
    for turn in 0usize.. {
        let mut moved = false;
        for k in 0..guests {
            let i = (turn + k) % guests;
            if !streams[i].open() {
                continue;
            }
            let burst = fan.rng.between(1, u64::from(FAN_RING));
            let p = i as u8 + 1;
            moved |= fan_out_send(
                &mut fan,
                &mut streams[i],
                p,
                &frames[i],
                burst,
                Timeout::NoWait,
            );
        }
        fan.reclaim_if_due();
        let open: Vec<usize> = (0..guests).filter(|&i| streams[i].open()).collect();
        if !moved && !open.is_empty() {
            // Every ring full or share held: wait on one guest, each in
            // turn, so that a dead one is judged (its send fails) and a
            // live one's room is waited for rather than spun on.
            let i = open[turn % open.len()];
            let nap = Timeout::from(FAN_OUT_NAP);
            moved = fan_out_send(&mut fan, &mut streams[i], i as u8 + 1, &frames[i], 1, nap);
        }
        if moved {
            last_progress = Instant::now();
        }
        if turn % 16 == 0 {
            fan.check_running();
        }
        // A victim's stream may close (its death judged by a send)
        // before its reclaim, which its kill has made due.
        if open.is_empty() && fan.all_reclaimed() {
            break;
        }
        fan.check_time(last_progress);
    }
    fan.finish();
    let mut reported = Vec::new();
    let mut wrong = Vec::new();
    let (mut died, mut gone) = (0, 0);
    for p in 1..=FAN_GUESTS {
        let s = &streams[usize::from(p) - 1];
        let count_file = fan.dir.join(format!("fan-out-{p}.count"));
        let count = std::fs::read(&count_file)
            .ok()
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        if fan.kill_at[usize::from(p) - 1].is_some() {
            match &s.gone {
                Some(Error::PeerDied { .. }) => died += 1,
                Some(_) => gone += 1,
                None => wrong.push(format!("no send to victim {p} failed")),
            }
            if count > s.sent + s.unsure {
                wrong.push(format!(
                    "victim {p} counted {count} messages; the host sent {} (and perhaps {} more)",
                    s.sent, s.unsure
                ));
            }
        } else {
            let done = std::fs::read_to_string(fan.dir.join(format!("fan-out-done-{p}")));
            let done: Option<u64> = done.ok().and_then(|t| t.trim().parse().ok());
            if done != Some(FAN_MESSAGES) || count != FAN_MESSAGES {
                wrong.push(format!(
                    "survivor {p} reported {done:?} (count {count}), not {FAN_MESSAGES}"
                ));
            }
        }
        reported.push(count);
    }
    if !wrong.is_empty() {
        fan.fail(&wrong.join("\n"));
    }
    // The run must have tested what it claims: some killed guest held the
    // host's slots when it was reclaimed, and they came back.
    if fan.reclaims.iter().all(|r| r.host_slots == 0) {
        fan.fail("no killed guest held any of the host's slots when it was reclaimed");
    }
    println!(
        "fan-out (seed {:#x}): {} guests, {} killed, {} messages sent, {:.2?}\n  victims (guest: received of sent):  {}\n  sends to the killed ended by PeerDied {died}, by PeerGone (after the reclaim) {gone}\n  reclaims:\n    {}",
        seed,
        FAN_GUESTS,
        FAN_KILLS,
        streams.iter().map(|s| s.sent).sum::<u64>(),
        fan.started.elapsed(),
        fan.victims()
            .map(|p| {
                let i = usize::from(p) - 1;
                format!("{p}: {} of {}", reported[i], streams[i].sent)
            })
            .collect::<Vec<_>>()
            .join(", "),
        fan.reclaim_summary()
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// Guests killed at every kind of moment, and guests leaving, under load:
/// every stream's messages arrive in order and intact (a prefix for the
/// killed), no message reaches a later guest of the same entry, and every
/// slot, ring, flag and entry comes back.
// shm[verify shm.peer.reclaim]
// shm[verify shm.peer.liveness]
// shm[verify shm.peer.detach]
// shm[verify shm.peer.claim]
#[test]
fn killed_and_departing_guests_lose_nothing_and_leave_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = run_seed();
    let rounds = rounds();
    println!("guest chaos: seed {seed:#x} ({SEED_ENV}={seed:#x} replays it), {rounds} round(s)");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut chaos = GuestChaos::start(seed, rounds, dir.path());
    chaos.run(started + ROUND_DEADLINE * rounds as u32);
    chaos.check();
    if let Err(e) = check_deaths(&chaos.tally, rounds) {
        chaos.fail(&e);
    }
    print_guest_summary(&chaos, started.elapsed());
}

/// A host killed under load, at a random moment and with guests asleep in
/// each kind of wait: every guest gets `HostDied` from the call it was in,
/// within the bound, and the path can be made into a working segment again.
// shm[verify shm.peer.liveness]
// shm[verify shm.send.backpressure]
#[test]
fn guests_notice_a_killed_host_from_whatever_call_they_are_in() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = run_seed();
    let rounds = rounds();
    println!("host chaos: seed {seed:#x} ({SEED_ENV}={seed:#x} replays it), {rounds} round(s)");
    let started = Instant::now();
    let mut rng = Rng::new(seed ^ 0x4854);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host-chaos.shm");
    let mut kills = Vec::new();
    for _ in 0..rounds {
        for (parked, heartbeat_ms) in [(true, 0), (false, 0), (true, 100), (false, 100)] {
            kills.push(host_kill_round(
                dir.path(),
                &path,
                &mut rng,
                parked,
                heartbeat_ms,
            ));
        }
    }
    let slowest = kills
        .iter()
        .flat_map(|k| k.noticed.iter().map(|n| n.3))
        .max()
        .unwrap_or_default();
    println!(
        "host chaos (seed {seed:#x}): {} host kills, {} guests each noticed (slowest {slowest:.2?}), {:.2?}",
        kills.len(),
        GUESTS,
        started.elapsed()
    );
    for k in &kills {
        println!(
            "  {} heartbeat {} ms: {:?}",
            if k.parked { "parked" } else { "random" },
            k.heartbeat_ms,
            k.noticed
                .iter()
                .map(|(p, call, _, after)| format!("{p}: {call} after {after:.0?}"))
                .collect::<Vec<_>>()
        );
    }
}

/// A third of [`FAN_GUESTS`] guest processes killed at random points of
/// their streams while all of them send to the host as fast as they can,
/// and reclaimed as the host goes: every survivor's stream arrives whole,
/// once, in order, every victim's a gapless prefix, and no slot or entry
/// of the dead is left behind.
// shm[verify shm.peer.reclaim]
// shm[verify shm.peer.liveness]
#[test]
fn a_third_of_the_guests_killed_during_fan_in_lose_nothing_else() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = run_seed();
    println!("fan-in chaos: seed {seed:#x} ({SEED_ENV}={seed:#x} replays it)");
    let mut rng = Rng::new(seed ^ 0x4641_4E49);
    for _ in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        fan_in_run(rng.next_u64(), dir.path());
    }
}

/// A third of [`FAN_GUESTS`] guest processes killed at random points of
/// the streams the host sends them round-robin: the host's sends to each
/// killed guest end in a `Gone` error (its death judged by a waiting send,
/// or its entry reclaimed), never a hang; every survivor receives its whole
/// stream; the host's slots the dead held come back.
// shm[verify shm.peer.reclaim]
// shm[verify shm.send.backpressure]
#[test]
fn a_third_of_the_guests_killed_during_fan_out_lose_nothing_else() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let seed = run_seed();
    println!("fan-out chaos: seed {seed:#x} ({SEED_ENV}={seed:#x} replays it)");
    let mut rng = Rng::new(seed ^ 0x4641_4E4F);
    for _ in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        fan_out_run(rng.next_u64(), dir.path());
    }
}
