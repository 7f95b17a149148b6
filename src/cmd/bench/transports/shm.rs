//! Round trips and one-way streams through a real segment, to a guest in a
//! second process: what `bench` is for. Small messages stream both in
//! batches and one by one.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shmhub::{Frame, MsgDesc, PeerId, PeerState, SegmentConfig, ShmHost, WaitStrategy, msg_type};

use super::{PeerProcess, Progress, check_report, peer_command, time_round_trips_at};
use crate::cmd::bench::measurement::{Measurement, Transport};
use crate::cmd::bench::plan::{Plan, WAIT_MODES};
use crate::cmd::bench::protocol::{
    ECHO, EXIT, PeerTransport, RECV_MODE, REPORT, SET_WAIT, SINK, wait_id,
};
use crate::cmd::error::{OnSegment, SegmentError};
use crate::cmd::segment::create_owned;
use crate::cmd::text::human_bytes;

/// How long one send or receive of the run may wait: only a peer that
/// died or hangs takes this long.
pub const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

/// A payload-less request for the peer itself rather than a message to echo
/// or sink.
fn control(method: u32, id: u64) -> Frame {
    Frame::new(
        MsgDesc {
            msg_type: msg_type::REQUEST,
            method_id: method,
            id,
            ..MsgDesc::default()
        },
        Vec::new(),
    )
}

/// Sends the peer the request `method` (see [`control`]).
pub fn tell_peer(
    host: &mut ShmHost,
    peer_id: PeerId,
    method: u32,
    id: u64,
    path: &Path,
) -> Result<(), SegmentError> {
    host.send_timeout(peer_id, control(method, id), TIMEOUT)
        .on_segment(path)
}

/// Creates the plan's segment with slots for its largest size, starts the
/// peer on a reserved entry, then times round trips under every wait mode
/// and a spinning stream, at every size. One segment and one peer serve
/// them all, so setup does not count.
pub fn measure(plan: &Plan, progress: &dyn Progress) -> anyhow::Result<Vec<Measurement>> {
    let path = plan.segment.as_path();
    // Every page is written during the run: a file system without room
    // fails here, cleanly, rather than in the middle of a measurement.
    let mut host = create_owned(path, segment_config(plan))?;
    let (peer_id, mut peer) = start_guest(&mut host, plan)?;
    let results = peer.beside("segment", || {
        wait_attached(&host, peer_id, path)?;
        let mut results = round_trips(&mut host, peer_id, plan, progress)?;
        results.extend(streams(&mut host, peer_id, plan, progress)?);
        tell_peer(&mut host, peer_id, EXIT, 0, path)?;
        Ok(results)
    })?;
    peer.finish("segment")?;
    drop(host);
    Ok(results)
}

/// Reserves an entry of `host`, the plan's segment, and starts the
/// benchmark guest on it in a second process.
pub fn start_guest(host: &mut ShmHost, plan: &Plan) -> anyhow::Result<(PeerId, PeerProcess)> {
    let peer_id = host.reserve_peer().on_segment(plan.segment.as_path())?;
    Ok((peer_id, spawn_guest(plan, peer_id)?))
}

/// Starts the benchmark guest on entry `peer_id` of the plan's segment,
/// reserved for it, in a second process.
pub fn spawn_guest(plan: &Plan, peer_id: PeerId) -> anyhow::Result<PeerProcess> {
    let path = plan.segment.as_path();
    let peer = PeerProcess(
        peer_command(PeerTransport::Shm, plan.peer_cpu())?
            .arg("--segment")
            .arg(path)
            .arg("--peer-id")
            .arg(peer_id.to_string())
            .spawn()
            .context("starting the segment benchmark peer")?,
    );
    Ok(peer)
}

/// Waits up to 10 s for the benchmark guest to attach to entry `peer_id`.
pub fn wait_attached(host: &ShmHost, peer_id: PeerId, path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.status().peer(peer_id).on_segment(path)?.state != PeerState::Attached {
        if Instant::now() > deadline {
            bail!("the benchmark guest did not attach");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// One guest, and slots for the plan's largest size.
fn segment_config(plan: &Plan) -> SegmentConfig {
    let largest = plan.sizes.iter().copied().max().unwrap_or(64);
    let slot_size = (largest.div_ceil(64) * 64).max(64) as u32;
    SegmentConfig {
        max_guests: 1,
        ring_capacity: 1024,
        slot_size,
        // As many slots as the stream floor has buffers (64): the same
        // number of messages can be in flight, so the comparison measures
        // the per-message work, not a smaller window.
        slots_per_pool: 64,
        max_payload: slot_size,
        heartbeat_interval_ms: 0,
    }
}

/// Times round trips under every wait mode, at every size.
fn round_trips(
    host: &mut ShmHost,
    peer_id: PeerId,
    plan: &Plan,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Measurement>> {
    let path = plan.segment.as_path();
    let mut results = Vec::new();
    // Round trips are answered one at a time: the peer takes each message
    // with one receive call (`Receiver::recv`), as an echo server would,
    // rather than asking for a batch that never holds more than one.
    tell_peer(host, peer_id, RECV_MODE, 1, path)?;
    for mode in WAIT_MODES {
        host.set_wait_strategy(mode);
        tell_peer(host, peer_id, SET_WAIT, wait_id(mode), path)?;
        for &size in &plan.sizes {
            let inline = Frame::new(
                MsgDesc {
                    method_id: ECHO,
                    ..MsgDesc::default()
                },
                vec![0x42u8; size],
            );
            let line = time_round_trips_at(Transport::Shm(mode), size, plan, progress, |i| {
                if inline.fits_inline() {
                    host.send_timeout(peer_id, &inline, TIMEOUT)
                } else {
                    host.loan(peer_id, size, TIMEOUT).and_then(|mut loan| {
                        loan.as_mut_slice().fill(i as u8);
                        loan.desc.method_id = ECHO;
                        host.commit(peer_id, loan)
                    })
                }
                .on_segment(path)?;
                let echoed = host
                    .receiver(peer_id)
                    .and_then(|rx| rx.recv_with(TIMEOUT, |echo| echo.payload().len()))
                    .on_segment(path)?
                    .context("the benchmark guest did not answer")?;
                if echoed != size {
                    bail!("echo of {size} bytes came back with {echoed}");
                }
                Ok(())
            })?;
            results.push(line);
        }
    }
    tell_peer(host, peer_id, RECV_MODE, 0, path)?;
    Ok(results)
}

/// Times one-way streams at every size, spinning on both sides: in
/// batches, and one by one too for messages that fit in a descriptor.
fn streams(
    host: &mut ShmHost,
    peer_id: PeerId,
    plan: &Plan,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Measurement>> {
    host.set_wait_strategy(WaitStrategy::Spin);
    let spin = wait_id(WaitStrategy::Spin);
    tell_peer(host, peer_id, SET_WAIT, spin, plan.segment.as_path())?;
    let mut results = Vec::new();
    for &size in &plan.sizes {
        progress.begin(format!("shm stream {}", human_bytes(size as u64)))?;
        results.push(stream(host, peer_id, size, plan, Batching::Batched)?);
        progress.done();
        if size <= shmhub::INLINE_CAPACITY {
            progress.begin(format!(
                "{} stream {}",
                Transport::ShmUnbatched,
                human_bytes(size as u64)
            ))?;
            results.push(stream(host, peer_id, size, plan, Batching::Single)?);
            progress.done();
        }
    }
    Ok(results)
}

/// How a stream of messages small enough for a descriptor is sent and
/// received. (Larger ones are always loaned, filled and committed one by
/// one, and received in batches.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batching {
    /// Batches of 64 sends, received up to 32 at a time: the fastest way.
    Batched,
    /// One `send_timeout` and one receive per message: the simplest way.
    Single,
}

/// Streams the plan's count of `size`-byte messages to the peer, which
/// sums every byte, and times them until its report of their count and sum
/// comes back (and is checked).
fn stream(
    host: &mut ShmHost,
    peer_id: PeerId,
    size: usize,
    plan: &Plan,
    batching: Batching,
) -> anyhow::Result<Measurement> {
    let path = plan.segment.as_path();
    let messages = plan.stream_messages(size);
    let value = 7u8;
    let inline = size <= shmhub::INLINE_CAPACITY;
    let single = batching == Batching::Single && inline;
    // Messages that fit in a descriptor are sent from these frames, the
    // payload copied into the descriptor on each send; larger ones are
    // filled in place in a loaned slot.
    let sink = Frame::new(
        MsgDesc {
            method_id: SINK,
            ..MsgDesc::default()
        },
        vec![value; if inline { size } else { 0 }],
    );
    let batch = if inline && !single {
        vec![sink.clone(); 64]
    } else {
        Vec::new()
    };
    if single {
        // The report that follows comes back only once the peer has
        // switched, so no message of the stream is received in a batch.
        tell_peer(host, peer_id, RECV_MODE, 1, path)?;
        sunk_report(host, peer_id, path)?;
    }
    let start = Instant::now();
    if single {
        for _ in 0..messages {
            host.send_timeout(peer_id, &sink, TIMEOUT)
                .on_segment(path)?;
        }
    } else if inline {
        let mut sent = 0u64;
        while sent < messages {
            let n = (messages - sent).min(batch.len() as u64) as usize;
            sent += host
                .send_batch(peer_id, &batch[..n], TIMEOUT)
                .on_segment(path)? as u64;
        }
    } else {
        for _ in 0..messages {
            let mut loan = host.loan(peer_id, size, TIMEOUT).on_segment(path)?;
            loan.as_mut_slice().fill(value);
            loan.desc.method_id = SINK;
            host.commit(peer_id, loan).on_segment(path)?;
        }
    }
    let report = sunk_report(host, peer_id, path)?;
    let elapsed = start.elapsed();
    check_report(report.payload(), messages, size, value)?;
    if single {
        tell_peer(host, peer_id, RECV_MODE, 0, path)?;
    }
    let transport = if single {
        Transport::ShmUnbatched
    } else {
        Transport::Shm(WaitStrategy::Spin)
    };
    Ok(Measurement::stream(transport, size, messages, elapsed))
}

/// Asks the peer for the count and sum of what it sank since the last
/// report, and waits for the answer.
fn sunk_report(host: &mut ShmHost, peer_id: PeerId, path: &Path) -> anyhow::Result<Frame> {
    tell_peer(host, peer_id, REPORT, 0, path)?;
    host.recv_from_timeout(peer_id, TIMEOUT)
        .on_segment(path)?
        .context("the benchmark guest did not report")
}
