//! Round trips the host receives from any guest
//! (`AnyReceiver::recv_with`), one guest talking, with a peer table of one
//! entry and of 255: what the host's receive from any guest costs as the
//! table grows. The host looks only where the header's ready summary
//! points (`shm.host.ready`), so the two should cost the same.

use anyhow::{Context, bail};
use shmhub::{Frame, MsgDesc, SegmentConfig, WaitStrategy};

use super::Progress;
use super::shm::{TIMEOUT, start_guest, tell_peer, wait_attached};
use crate::cmd::bench::measurement::{Kind, Measurement, Transport, time_round_trips};
use crate::cmd::bench::plan::{ANY_GUEST_ENTRIES, Plan};
use crate::cmd::bench::protocol::{ECHO, EXIT, RECV_MODE, SET_WAIT, wait_id};
use crate::cmd::error::OnSegment;
use crate::cmd::segment::create_owned;

/// Payload bytes of each round trip: one that fits in a descriptor.
const SIZE: usize = 32;

/// Times the plan's 32-byte round trips at each table size of
/// [`ANY_GUEST_ENTRIES`], in two halves each, in the order small, large,
/// large, small: what the machine does to one half it does to the other
/// size's half beside it, so the ratio of the two sizes stands.
pub fn measure(plan: &Plan, progress: &dyn Progress) -> anyhow::Result<Vec<Measurement>> {
    let rounds = plan.round_trips(SIZE).div_ceil(2);
    let mut samples = [Vec::new(), Vec::new()];
    for half in [0, 1, 1, 0] {
        let entries = ANY_GUEST_ENTRIES[half];
        samples[half].extend(time_half(plan, entries, rounds, progress)?);
    }
    Ok(ANY_GUEST_ENTRIES
        .into_iter()
        .zip(samples)
        .map(|(entries, samples)| {
            Measurement::from_samples(
                Kind::RoundTrip,
                Transport::ShmAnyGuest(entries),
                SIZE,
                samples,
            )
        })
        .collect())
}

/// The smallest segment of `entries` guests that carries the round trips.
fn config(entries: u32) -> SegmentConfig {
    SegmentConfig {
        max_guests: entries,
        ring_capacity: 64,
        slot_size: 64,
        slots_per_pool: 4,
        max_payload: 64,
        heartbeat_interval_ms: 0,
    }
}

/// Creates the plan's segment with `entries` guests, starts the benchmark
/// guest on one entry, both spinning, and times `rounds` round trips, the
/// echo received from any guest.
fn time_half(
    plan: &Plan,
    entries: u32,
    rounds: u64,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<u64>> {
    let transport = Transport::ShmAnyGuest(entries);
    progress.begin(format!("{transport} round trip"))?;
    let path = plan.segment.as_path();
    let mut host = create_owned(path, config(entries))?;
    let (peer_id, mut peer) = start_guest(&mut host, plan)?;
    let samples = peer.beside(transport, || {
        wait_attached(&host, peer_id, path)?;
        host.set_wait_strategy(WaitStrategy::Spin);
        tell_peer(
            &mut host,
            peer_id,
            SET_WAIT,
            wait_id(WaitStrategy::Spin),
            path,
        )?;
        // One receive call per message, as an echo server answers.
        tell_peer(&mut host, peer_id, RECV_MODE, 1, path)?;
        let message = Frame::new(
            MsgDesc {
                method_id: ECHO,
                ..MsgDesc::default()
            },
            vec![0x42; SIZE],
        );
        let samples = time_round_trips(rounds, |_, _| {
            host.send_timeout(peer_id, &message, TIMEOUT)
                .on_segment(path)?;
            let echo = host
                .any_receiver()
                .recv_with(TIMEOUT, |from, echo| (from, echo.payload().len()))
                .on_segment(path)?
                .context("the benchmark guest did not answer")?;
            if echo != (peer_id, SIZE) {
                bail!("the echo of {SIZE} bytes from guest {peer_id} came back as {echo:?}");
            }
            Ok(())
        })?;
        tell_peer(&mut host, peer_id, EXIT, 0, path)?;
        Ok(samples)
    })?;
    peer.finish(transport)?;
    drop(host);
    progress.done();
    Ok(samples)
}
