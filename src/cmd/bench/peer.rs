//! `shmhub bench-peer` (hidden): the second process of `shmhub bench`. It
//! echoes or swallows what the benchmark sends over one transport: a
//! segment, a Unix socket, a pipe, or a bare shared cache line.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use shmhub::{Frame, MmapRegion, Received, ShmGuest, WaitStrategy, sys};

use super::protocol::{
    CACHELINE_OFFSET, CACHELINE_STOP, ECHO, EXIT, HEADER_LEN, PeerTransport, REPORT, REPORT_LEN,
    SET_WAIT, SINK, header, parse_header, report, wait_strategy,
};
use crate::cmd::common::{parse_peer_id, seg_err};
use crate::cmd::guest_echo::parse_strategy;
use crate::cmd::{Outcome, segment_path, signals};

/// Arguments of `shmhub bench-peer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The transport.
    #[arg(value_enum)]
    pub transport: PeerTransport,
    /// Segment (shm) or shared file (cacheline).
    #[arg(long)]
    pub segment: Option<String>,
    /// Reserved entry to take (shm).
    #[arg(long, value_parser = parse_peer_id)]
    pub peer_id: Option<u8>,
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
    }
}

/// Adds up a payload's bytes (so that every byte is read). Chunks of up to
/// 16 MiB bytes sum into a `u32` without overflow, which vectorizes well.
pub fn byte_sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(1 << 16)
        .map(|chunk| u64::from(chunk.iter().map(|&b| u32::from(b)).sum::<u32>()))
        .sum()
}

/// Serves a segment as the reserved guest until told to exit or the host
/// leaves. Sunk messages are counted inside the batch, costing no copy;
/// the rest wait for the batch to end, since answering needs the guest
/// that the batch holds.
fn serve_shm(args: &Args) -> anyhow::Result<Outcome> {
    let Some(segment) = &args.segment else {
        crate::usage!("--segment is required")
    };
    let Some(peer_id) = args.peer_id else {
        crate::usage!("--peer-id is required")
    };
    let path = segment_path(segment)?;
    signals::guard_sigbus(&path);
    let mut guest = ShmGuest::attach_path_with_id(&path, peer_id).map_err(|e| seg_err(&path, e))?;
    guest.set_wait_strategy(args.wait);
    let (mut count, mut sum) = (0u64, 0u64);
    let mut pending: Vec<Received> = Vec::with_capacity(64);
    loop {
        let got = guest.recv_batch(32, Some(Duration::from_millis(200)), |r| {
            if r.desc().method_id == SINK {
                count += 1;
                sum = sum.wrapping_add(byte_sum(r.payload()));
            } else {
                pending.push(r);
            }
        });
        match got {
            Ok(_) => {}
            Err(shmhub::Error::HostGone) => return Ok(Outcome::Done),
            Err(e) => return Err(seg_err(&path, e)),
        }
        for r in pending.drain(..) {
            let desc = *r.desc();
            match desc.method_id {
                ECHO if r.payload().len() <= shmhub::INLINE_CAPACITY => {
                    guest
                        .send_with(desc, r.payload(), None)
                        .map_err(|e| seg_err(&path, e))?;
                }
                ECHO => {
                    let mut loan = guest
                        .loan(r.payload().len(), None)
                        .map_err(|e| seg_err(&path, e))?;
                    loan.as_mut_slice().copy_from_slice(r.payload());
                    loan.desc = desc;
                    drop(r);
                    guest.commit(loan).map_err(|e| seg_err(&path, e))?;
                }
                REPORT => {
                    let payload = report(count, sum).to_vec();
                    (count, sum) = (0, 0);
                    guest
                        .send_timeout(Frame::new(desc, payload), None)
                        .map_err(|e| seg_err(&path, e))?;
                }
                SET_WAIT => {
                    guest.set_wait_strategy(wait_strategy(desc.id));
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

/// Bounces one cache line: whenever the word is odd, make it even.
fn serve_cacheline(args: &Args) -> anyhow::Result<Outcome> {
    let Some(segment) = &args.segment else {
        crate::usage!("--segment is required")
    };
    let path = segment_path(segment)?;
    signals::guard_sigbus(&path);
    let map = MmapRegion::attach(&path).map_err(|e| seg_err(&path, e))?;
    let region = map.region();
    let word = region
        .atomic_u64(CACHELINE_OFFSET)
        .map_err(|e| seg_err(&path, e.into()))?;
    loop {
        let v = word.load(Ordering::Acquire);
        if v == CACHELINE_STOP {
            return Ok(Outcome::Done);
        }
        if v % 2 == 1 {
            word.store(v + 1, Ordering::Release);
        } else {
            std::hint::spin_loop();
        }
    }
}
