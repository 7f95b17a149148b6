//! What the load tests (`stress.rs`, `chaos.rs`) share: seeded numbers and
//! payload bytes, a checksum, and one trait over the send calls of the host
//! (towards one guest) and of a guest, so that one loop can drive either.

use std::time::Duration;

use shmhub::{Frame, MsgDesc, ShmGuest, ShmHost, SlotLoan};

/// One step of SplitMix64: advances `state` and returns the next number.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the bytes that `seed` stands for.
pub fn fill_seeded(seed: u64, buf: &mut [u8]) {
    let mut state = seed;
    for chunk in buf.chunks_mut(8) {
        let word = splitmix(&mut state).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// 32-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A seeded random number generator (SplitMix64): the same seed gives the
/// same numbers, so a run's choices can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A duration of `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.between(lo, hi))
    }
}

/// The send operations the host (towards one guest) and a guest both have.
pub trait Sender {
    fn try_send(&mut self, frame: &Frame) -> shmhub::Result<()>;
    fn send_timeout(&mut self, frame: &Frame, wait: Duration) -> shmhub::Result<()>;
    fn send_with(&mut self, desc: MsgDesc, payload: &[u8], wait: Duration) -> shmhub::Result<()>;
    fn send_batch(&mut self, frames: &[Frame], wait: Duration) -> shmhub::Result<usize>;
    fn loan(&mut self, len: usize, wait: Duration) -> shmhub::Result<SlotLoan>;
    fn commit(&mut self, loan: SlotLoan) -> shmhub::Result<()>;
}

/// The host sending to one guest.
pub struct HostTo<'a> {
    pub host: &'a mut ShmHost,
    pub peer: u8,
}

impl Sender for HostTo<'_> {
    fn try_send(&mut self, frame: &Frame) -> shmhub::Result<()> {
        self.host.try_send(self.peer, frame)
    }
    fn send_timeout(&mut self, frame: &Frame, wait: Duration) -> shmhub::Result<()> {
        self.host.send_timeout(self.peer, frame, Some(wait))
    }
    fn send_with(&mut self, desc: MsgDesc, payload: &[u8], wait: Duration) -> shmhub::Result<()> {
        self.host.send_with(self.peer, desc, payload, Some(wait))
    }
    fn send_batch(&mut self, frames: &[Frame], wait: Duration) -> shmhub::Result<usize> {
        self.host.send_batch(self.peer, frames, Some(wait))
    }
    fn loan(&mut self, len: usize, wait: Duration) -> shmhub::Result<SlotLoan> {
        self.host.loan(self.peer, len, Some(wait))
    }
    fn commit(&mut self, loan: SlotLoan) -> shmhub::Result<()> {
        self.host.commit(self.peer, loan)
    }
}

impl Sender for ShmGuest {
    fn try_send(&mut self, frame: &Frame) -> shmhub::Result<()> {
        ShmGuest::try_send(self, frame)
    }
    fn send_timeout(&mut self, frame: &Frame, wait: Duration) -> shmhub::Result<()> {
        ShmGuest::send_timeout(self, frame, Some(wait))
    }
    fn send_with(&mut self, desc: MsgDesc, payload: &[u8], wait: Duration) -> shmhub::Result<()> {
        self.sender().send(desc, payload, Some(wait))
    }
    fn send_batch(&mut self, frames: &[Frame], wait: Duration) -> shmhub::Result<usize> {
        self.sender().send_batch(frames, Some(wait))
    }
    fn loan(&mut self, len: usize, wait: Duration) -> shmhub::Result<SlotLoan> {
        ShmGuest::loan(self, len, Some(wait))
    }
    fn commit(&mut self, loan: SlotLoan) -> shmhub::Result<()> {
        ShmGuest::commit(self, loan)
    }
}
