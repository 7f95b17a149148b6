//! A valid segment with traffic in it, patched by the input: the fuzzer
//! chooses where to write and what, so most inputs get past the header and
//! reach the peer table, the rings, the descriptors and the pools.
//!
//! Input: one byte choosing the base segment, then 6-byte patches: a
//! little-endian `u16` word index (times 4, modulo the segment length) and
//! a little-endian `u32` written there. Patches that land on the header
//! are kept as they are; the rest of the input is ignored.

#![no_main]

mod common;

use std::sync::OnceLock;

use common::{exercise, region_of};
use libfuzzer_sys::fuzz_target;
use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, msg_type};

fn frame(id: u64, len: usize) -> Frame {
    Frame::new(MsgDesc::new(msg_type::DATA, id), vec![id as u8; len])
}

/// Builds a heap segment for `config`: guest 1 attached with messages
/// queued both ways (inline and in slots, its rings past one lap), guest 2
/// gone (Goodbye) with messages still queued, guest 3 reserved.
fn build(config: SegmentConfig) -> Vec<u8> {
    let mut host = ShmHost::create_heap(config).expect("heap segment");
    let region = host.region();
    let mut g1 = ShmGuest::attach(region.clone()).expect("attach 1");
    let mut g2 = ShmGuest::attach(region.clone()).expect("attach 2");
    for i in 0..5 {
        let _ = g1.try_send(frame(i, 3));
        let _ = host.try_recv_from(1);
        let _ = host.try_send(1, frame(i, 40));
        let _ = g1.try_recv();
    }
    let _ = host.try_send(1, frame(10, 5));
    let _ = host.try_send(1, frame(11, 60));
    let _ = g1.try_send(frame(12, 50));
    let _ = g1.try_send(frame(13, 0));
    let _ = g2.send(frame(20, 64));
    let _ = g2.send(frame(21, 1));
    let _ = g2.detach();
    let _ = host.reserve_peer();
    let mut bytes = vec![0u8; host.layout().total_size as usize];
    region.read(0, &mut bytes).expect("read");
    let _ = g1.release_to_script();
    bytes
}

fn bases() -> &'static [Vec<u8>] {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        let config =
            |max_guests, ring_capacity, slots_per_pool, heartbeat_interval_ms| SegmentConfig {
                max_guests,
                ring_capacity,
                slot_size: 64,
                slots_per_pool,
                max_payload: 64,
                heartbeat_interval_ms,
            };
        vec![
            build(config(3, 4, 3, 0)),
            build(config(4, 2, 70, 0)),
            build(config(3, 8, 2, 1000)),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, patches)) = data.split_first() else {
        return;
    };
    let bases = bases();
    let mut bytes = bases[choice as usize % bases.len()].clone();
    for patch in patches.chunks_exact(6) {
        let word = u16::from_le_bytes([patch[0], patch[1]]) as usize;
        let at = (word * 4) % bytes.len();
        bytes[at..at + 4].copy_from_slice(&patch[2..6]);
    }
    if let Some(region) = region_of(&bytes, bytes.len()) {
        exercise(region);
    }
});
