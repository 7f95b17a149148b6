//! `shmhub bench-peer` (hidden): the second process of `shmhub bench`. It
//! echoes or swallows what the benchmark sends over one transport: a
//! segment, a Unix socket, a pipe, or one of the floors (a bare shared
//! cache line, a ring of fixed buffers, a futex word each way).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use shmhub::{Frame, MsgDesc, PeerId, Received, ShmGuest, WaitStrategy, sys};

use super::floor::{SharedFile, cacheline_words, spin_until};
use super::protocol::{
    CACHELINE_LINES, CACHELINE_STOP, ECHO, EXIT, FAN_BYTE, FAN_SIZE, HEADER_LEN, MAX_RING_DEPTH,
    PeerTransport, RECV_MODE, REPORT, REPORT_LEN, RING_BUFFERS, RING_COMMAND, RING_REPLY,
    RING_SEQS, RING_STOP, SEND, SET_WAIT, SINK, header, parse_header, report, ring_stride,
    wait_strategy,
};
use crate::cmd::error::{OnSegment, seg_err};
use crate::cmd::exit::Outcome;
use crate::cmd::parse::{parse_peer_id, parse_strategy};
use crate::cmd::segment::Segment;

/// Arguments of `shmhub bench-peer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The transport.
    #[arg(value_enum)]
    pub transport: PeerTransport,
    /// Segment (shm) or shared file (cacheline, ring, futex).
    #[arg(long)]
    pub segment: Option<String>,
    /// Reserved entry to take (shm).
    #[arg(long, value_parser = parse_peer_id)]
    pub peer_id: Option<PeerId>,
    /// Initial wait strategy (shm).
    #[arg(long, default_value = "adaptive", value_parser = parse_strategy)]
    pub wait: WaitStrategy,
    /// Pin this process to a CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

/// Runs `shmhub bench-peer`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu);
    }
    match args.transport {
        PeerTransport::Shm => serve_shm(&args),
        PeerTransport::Socket => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating the socket")?;
            let socket = File::from(fd);
            serve_stream(socket.try_clone()?, socket)
        }
        PeerTransport::Pipe => serve_stream(std::io::stdin().lock(), std::io::stdout().lock()),
        PeerTransport::Cacheline => serve_cacheline(&args),
        PeerTransport::Ring => serve_ring(&args),
        #[cfg(target_os = "linux")]
        PeerTransport::Futex => serve_futex(&args),
    }
}

/// Adds up a payload's bytes (so that every byte is read). Chunks of up to
/// 16 MiB bytes sum into a `u32` without overflow, which vectorizes well.
// Never inlined, so that every reader (the segment's, the stream floor's,
// the socket's and the pipe's) runs this one copy of the loop: inlined, each
// copy landed at its own alignment, and the 4 KiB stream floor alone moved
// by a tenth from one build of unchanged code to the next.
#[inline(never)]
pub fn byte_sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(1 << 16)
        .map(|chunk| u64::from(chunk.iter().map(|&b| u32::from(b)).sum::<u32>()))
        .sum()
}

/// Messages sunk so far: what a `REPORT` answers with.
#[derive(Default)]
struct Sunk {
    /// How many.
    count: u64,
    /// The sum of all their bytes.
    sum: u64,
}

impl Sunk {
    /// Counts and sums a `SINK` message in place, costing no copy, or
    /// keeps any other for after the receive, since answering needs the
    /// guest that a batch holds.
    fn take(&mut self, r: Received, pending: &mut Vec<Received>) {
        if r.desc().method_id == SINK {
            self.count += 1;
            self.sum = self.sum.wrapping_add(byte_sum(r.payload()));
        } else {
            pending.push(r);
        }
    }
}

/// The file named by `--segment` (a segment, or a floor's shared file),
/// with a SIGBUS on it made an error message about it.
fn shared_path(args: &Args) -> anyhow::Result<PathBuf> {
    let Some(segment) = &args.segment else {
        crate::usage!("--segment is required")
    };
    Ok(Segment::resolve(segment)?.path)
}

/// Serves a segment as the reserved guest until told to exit or the host
/// leaves, receiving in batches or (after `RECV_MODE` 1) one message per
/// call.
fn serve_shm(args: &Args) -> anyhow::Result<Outcome> {
    let Some(peer_id) = args.peer_id else {
        crate::usage!("--peer-id is required")
    };
    let path = shared_path(args)?;
    let mut guest = ShmGuest::attach_path_with_id(&path, peer_id).on_segment(&path)?;
    guest.set_wait_strategy(args.wait);
    let mut sunk = Sunk::default();
    let mut single = false;
    let mut pending: Vec<Received> = Vec::with_capacity(64);
    let wait = Some(Duration::from_millis(200));
    loop {
        let got = if single {
            guest
                .receiver()
                .recv(wait)
                .map(|r| r.map(|r| sunk.take(r, &mut pending)))
                .map(|_| ())
        } else {
            guest
                .receiver()
                .recv_batch(32, wait, |r| sunk.take(r, &mut pending))
                .map(|_| ())
        };
        match got {
            Ok(()) => {}
            Err(shmhub::Error::HostGone) => return Ok(Outcome::Done),
            Err(e) => return Err(seg_err(&path, e).into()),
        }
        for r in pending.drain(..) {
            let desc = *r.desc();
            match desc.method_id {
                ECHO if r.payload().len() <= shmhub::INLINE_CAPACITY => {
                    guest
                        .sender()
                        .send(desc, r.payload(), None)
                        .on_segment(&path)?;
                }
                ECHO => {
                    let mut loan = guest.loan(r.payload().len(), None).on_segment(&path)?;
                    loan.as_mut_slice().copy_from_slice(r.payload());
                    loan.desc = desc;
                    drop(r);
                    guest.commit(loan).on_segment(&path)?;
                }
                REPORT => {
                    let payload = report(sunk.count, sunk.sum).to_vec();
                    sunk = Sunk::default();
                    guest
                        .send_timeout(Frame::new(desc, payload), None)
                        .on_segment(&path)?;
                }
                SET_WAIT => {
                    guest.set_wait_strategy(wait_strategy(desc.id));
                }
                RECV_MODE => single = desc.id == 1,
                SEND => {
                    let payload = [FAN_BYTE; FAN_SIZE];
                    for id in 0..desc.id {
                        let message = MsgDesc {
                            method_id: SINK,
                            id,
                            ..MsgDesc::default()
                        };
                        guest
                            .sender()
                            .send(message, &payload, None)
                            .on_segment(&path)?;
                    }
                }
                EXIT => return Ok(Outcome::Done),
                other => bail!("unknown benchmark method {other}"),
            }
        }
    }
}

/// Serves the stream protocol: each message is an 8-byte header (length,
/// method; little-endian u32s) and its payload.
fn serve_stream(input: impl Read, output: impl Write) -> anyhow::Result<Outcome> {
    let mut input = BufReader::with_capacity(1 << 18, input);
    let mut output = BufWriter::with_capacity(1 << 16, output);
    let mut payload = Vec::new();
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        let mut head = [0u8; HEADER_LEN];
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Outcome::Done),
            Err(e) => return Err(e.into()),
        }
        let (len, method) = parse_header(&head);
        payload.resize(len, 0);
        input.read_exact(&mut payload)?;
        match method {
            SINK => {
                count += 1;
                sum = sum.wrapping_add(byte_sum(&payload));
            }
            ECHO => {
                output.write_all(&head)?;
                output.write_all(&payload)?;
                output.flush()?;
            }
            REPORT => {
                output.write_all(&header(REPORT_LEN, REPORT))?;
                output.write_all(&report(count, sum))?;
                output.flush()?;
                (count, sum) = (0, 0);
            }
            EXIT => return Ok(Outcome::Done),
            other => bail!("unknown benchmark method {other}"),
        }
    }
}

/// Bounces the cache-line floor's lines: on round trip `n`, waits until
/// the word of line `n % CACHELINE_LINES` is odd, then makes it even.
fn serve_cacheline(args: &Args) -> anyhow::Result<Outcome> {
    let path = shared_path(args)?;
    let file = SharedFile::open(&path)?;
    let words = cacheline_words(&file);
    let mut round = 0usize;
    loop {
        let word = words[round % CACHELINE_LINES];
        // Odd: this side's turn. A measuring side that went away (killed,
        // say) leaves the word as it was: give up after a stall rather
        // than spin on as an orphan.
        match spin_until(word, |v| v % 2 == 1) {
            Some(CACHELINE_STOP) => return Ok(Outcome::Done),
            Some(v) => word.store(v + 1, Ordering::Release),
            None => bail!("the cache-line floor's measuring side stopped"),
        }
        round = round.wrapping_add(1);
    }
}

/// The reader of the stream floor: for each command the measuring side
/// writes, reads that many messages from the ring of fixed buffers, summing
/// every byte of each in place (as the segment's peer sums a received
/// slot), and answers with their count and sum.
fn serve_ring(args: &Args) -> anyhow::Result<Outcome> {
    let path = shared_path(args)?;
    let file = SharedFile::open(&path)?;
    let command = file.u64_at(RING_COMMAND);
    let mut done = 0u64;
    loop {
        // Spin until the next command, since the measuring side times from
        // its first message on: a reader asleep would be in the time.
        let Some(number) = spin_until(command, |n| n != done) else {
            bail!("the stream floor's measuring side stopped");
        };
        if number == RING_STOP {
            return Ok(Outcome::Done);
        }
        let size = file.u64_at(RING_COMMAND + 8).load(Ordering::Relaxed) as usize;
        let messages = file.u64_at(RING_COMMAND + 16).load(Ordering::Relaxed);
        let depth = file.u64_at(RING_COMMAND + 24).load(Ordering::Relaxed) as usize;
        anyhow::ensure!(
            (1..=MAX_RING_DEPTH).contains(&depth),
            "a stream floor command for {depth} buffers"
        );
        let seqs: Vec<_> = (0..depth)
            .map(|b| file.u64_at(RING_SEQS + b * 64))
            .collect();
        let stride = ring_stride(size);
        let (mut count, mut sum) = (0u64, 0u64);
        let (mut buffer, mut lap) = (0usize, 0u64);
        for _ in 0..messages {
            let seq = seqs[buffer];
            if spin_until(seq, |v| v == 2 * lap + 1).is_none() {
                bail!("the stream floor's writer stopped");
            }
            // SAFETY: the writer published this buffer (its word is odd,
            // read with Acquire) and writes it again only once the word says
            // it was read, below.
            let payload = unsafe { file.bytes(RING_BUFFERS + buffer * stride, size) };
            count += 1;
            sum = sum.wrapping_add(byte_sum(payload));
            seq.store(2 * lap + 2, Ordering::Release);
            buffer += 1;
            if buffer == depth {
                (buffer, lap) = (0, lap + 1);
            }
        }
        file.u64_at(RING_REPLY + 8).store(count, Ordering::Relaxed);
        file.u64_at(RING_REPLY + 16).store(sum, Ordering::Relaxed);
        file.u64_at(RING_REPLY).store(number, Ordering::Release);
        done = number;
    }
}

/// The peer of the blocking floor: sleeps on the ping word until it
/// changes, then writes the same value to the pong word and wakes the
/// measuring side: one futex wake each way per round trip, nothing else.
#[cfg(target_os = "linux")]
fn serve_futex(args: &Args) -> anyhow::Result<Outcome> {
    use super::floor::{STALL, futex_wait, futex_wake};
    use super::protocol::{FUTEX_PING, FUTEX_PONG, FUTEX_STOP};

    let path = shared_path(args)?;
    let file = SharedFile::open(&path)?;
    let (ping, pong) = (file.u32_at(FUTEX_PING), file.u32_at(FUTEX_PONG));
    let mut seen = 0u32;
    // Sleeps in a row with no new round trip: each lasts at most 100 ms,
    // so that a measuring side that died is noticed (the clock is not read
    // between a wake and the next sleep, to keep it off the round trip).
    let mut idle = 0u32;
    loop {
        let value = ping.load(Ordering::Acquire);
        if value == FUTEX_STOP {
            return Ok(Outcome::Done);
        }
        if value != seen {
            seen = value;
            idle = 0;
            pong.store(value, Ordering::Release);
            futex_wake(pong);
        } else if idle > (STALL.as_millis() / 100) as u32 {
            bail!("the futex floor's measuring side stopped");
        } else {
            idle += 1;
            futex_wait(ping, value, Duration::from_millis(100));
        }
    }
}
