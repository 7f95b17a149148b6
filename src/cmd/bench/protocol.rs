//! What `bench` and its second process (`bench-peer`) say to each other:
//! which transport the peer serves, the method ids, the framing on byte
//! streams and the report of sunk messages. Both sides build on this file
//! alone, so that neither can change the conversation without the other.

use shmhub::WaitStrategy;

/// Method id: send the message straight back.
pub const ECHO: u32 = 1;
/// Method id: read every byte, count it, send nothing back.
pub const SINK: u32 = 2;
/// Method id: answer with the count and byte sum of sunk messages, then reset them.
pub const REPORT: u32 = 3;
/// Method id: switch wait strategy (its index in `WaitStrategy::ALL`, in the id).
pub const SET_WAIT: u32 = 4;
/// Method id: exit.
pub const EXIT: u32 = 5;
/// Method id: receive one message per call from now on (id 1), or in
/// batches again (id 0), so that a stream can be timed without batching on
/// either side.
pub const RECV_MODE: u32 = 6;
/// Method id: send the host as many messages as the id says, as fast as
/// the ring allows: [`FAN_SIZE`] bytes of [`FAN_BYTE`] each, method
/// [`SINK`], numbered from 0 in their ids (a fan-in's guest).
pub const SEND: u32 = 7;
/// Payload bytes of each message of a fan-in or fan-out: one that fits in
/// a descriptor.
pub const FAN_SIZE: usize = 32;
/// The byte every payload of a fan-in or fan-out is made of.
pub const FAN_BYTE: u8 = 0x5a;
/// Value that stops the cache-line bouncer.
pub const CACHELINE_STOP: u64 = u64::MAX;
/// Lines the cache-line floor takes turns on, one per round trip, each a
/// word at the start of its own 64 bytes of the file: how long a line
/// takes to cross depends on where its address lands in the CPU's shared
/// cache (each line has a cost of its own, steady from one crossing to
/// the next; docs/benchmarks.md has the spread), and a ring's entries
/// sample that spread, so the floor samples it too. 64 lines (one page) stay in the first-level
/// cache of each side, as one line does.
pub const CACHELINE_LINES: usize = 64;
/// Length of the cache-line file: the lines, 64 bytes each.
pub const CACHELINE_FILE_LEN: usize = CACHELINE_LINES * 64;

/// The stream floor's file starts with a command line: the command's
/// number (counting from 1; [`RING_STOP`] to exit), then the payload size,
/// the message count and the ring's depth, each a `u64`.
pub const RING_COMMAND: usize = 0;
/// Then a reply line: the number of the last command done, then the count
/// and byte sum of the messages it read.
pub const RING_REPLY: usize = 64;
/// Then one sequence word per buffer, each on its own cache line. For
/// message `n` in buffer `n % depth`, lap `l = n / depth`, the word goes
/// `2l` (free: the writer may fill it), `2l + 1` (published: the reader may
/// sum it), `2l + 2` (read: free for the next lap). The file starts as
/// zeroes, and the writer zeroes the words again before each command.
pub const RING_SEQS: usize = 4096;
/// Then the buffers, each [`ring_stride`] bytes.
pub const RING_BUFFERS: usize = RING_SEQS + MAX_RING_DEPTH * 64;
/// Buffers in the stream floor's ring, as many as descriptors a batch of
/// the segment's stream publishes.
pub const MAX_RING_DEPTH: usize = 64;
/// The ring holds fewer buffers of payloads so large that 64 of them would
/// pass this, so that `--sizes 256MiB` does not need 16 GiB.
const RING_MAX_BYTES: usize = 256 << 20;
/// Command number that stops the stream floor's reader.
pub const RING_STOP: u64 = u64::MAX;

// The command's four words, the reply's three and the sequence words each
// stay within their own lines.
const _: () = assert!(RING_COMMAND + 32 <= RING_REPLY && RING_REPLY + 24 <= RING_SEQS);

/// Bytes between two buffers of `size`: whole cache lines, so that no two
/// buffers share one, as no two descriptors or slots of a segment do.
pub fn ring_stride(size: usize) -> usize {
    size.div_ceil(64).max(1) * 64
}

/// Buffers in the ring for payloads of `size`: [`MAX_RING_DEPTH`], or
/// fewer (never under two) for payloads over 4 MiB.
pub fn ring_depth(size: usize) -> usize {
    (RING_MAX_BYTES / ring_stride(size)).clamp(2, MAX_RING_DEPTH)
}

/// Bytes of a stream floor file that can hold payloads of every size in
/// `sizes`.
pub fn ring_file_len(sizes: &[usize]) -> usize {
    let buffers = sizes
        .iter()
        .map(|&s| ring_depth(s) * ring_stride(s))
        .max()
        .unwrap_or(0);
    RING_BUFFERS + buffers
}

/// Offset of the word the blocking floor's measuring side writes (and
/// wakes the peer on): the round trip's number, or [`FUTEX_STOP`].
#[cfg(target_os = "linux")]
pub const FUTEX_PING: usize = 0;
/// Offset of the word the peer answers with (and wakes the measuring side
/// on), on a cache line of its own.
#[cfg(target_os = "linux")]
pub const FUTEX_PONG: usize = 64;
/// Value of the ping word that stops the blocking floor's peer.
#[cfg(target_os = "linux")]
pub const FUTEX_STOP: u32 = u32::MAX;

/// Bytes ahead of every payload on a byte stream, which (unlike a segment)
/// keeps no message boundaries: the payload length, then the method id.
pub const HEADER_LEN: usize = 8;
/// Bytes of a report: the count of sunk messages, then their byte sum.
pub const REPORT_LEN: usize = 16;

/// Which transport the peer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerTransport {
    /// A shmhub segment, as a reserved guest.
    Shm,
    /// A Unix stream socket on standard input.
    Socket,
    /// Standard input and standard output pipes.
    Pipe,
    /// One cache line in a shared file, bounced with no ring at all.
    Cacheline,
    /// The reader of the stream floor: a ring of fixed buffers in a shared
    /// file, with no pool and no descriptor.
    Ring,
    /// The blocking floor: a word each way in a shared file, each side
    /// sleeping on a futex.
    #[cfg(target_os = "linux")]
    Futex,
}

impl PeerTransport {
    /// The command-line value that selects this transport: the measuring
    /// side passes it to `bench-peer`, whose parser must read it back.
    pub fn arg(self) -> &'static str {
        match self {
            PeerTransport::Shm => "shm",
            PeerTransport::Socket => "socket",
            PeerTransport::Pipe => "pipe",
            PeerTransport::Cacheline => "cacheline",
            PeerTransport::Ring => "ring",
            #[cfg(target_os = "linux")]
            PeerTransport::Futex => "futex",
        }
    }
}

/// A stream header; little-endian, like everything shmhub puts on the wire.
pub fn header(len: usize, method: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..].copy_from_slice(&method.to_le_bytes());
    h
}

/// The payload length and method id of a stream header.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let method = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, method)
}

/// A report's bytes: what the measuring side checks its sent messages against.
pub fn report(count: u64, sum: u64) -> [u8; REPORT_LEN] {
    let mut r = [0u8; REPORT_LEN];
    r[..8].copy_from_slice(&count.to_le_bytes());
    r[8..].copy_from_slice(&sum.to_le_bytes());
    r
}

/// The count and byte sum of a report; any other length means the two
/// processes disagree about the protocol.
pub fn parse_report(payload: &[u8]) -> anyhow::Result<(u64, u64)> {
    if payload.len() != REPORT_LEN {
        anyhow::bail!("malformed benchmark report ({} bytes)", payload.len());
    }
    let count = u64::from_le_bytes(payload[..8].try_into()?);
    let sum = u64::from_le_bytes(payload[8..].try_into()?);
    Ok((count, sum))
}

/// The id of a `SET_WAIT` message: a strategy's place in `WaitStrategy::ALL`,
/// which both processes share, rather than its name.
pub fn wait_id(strategy: WaitStrategy) -> u64 {
    WaitStrategy::ALL
        .iter()
        .position(|&s| s == strategy)
        .unwrap_or(0) as u64
}

/// The strategy a `SET_WAIT` id names; an unknown id falls back to the
/// default rather than stopping the peer mid-run.
pub fn wait_strategy(id: u64) -> WaitStrategy {
    WaitStrategy::ALL
        .get(id as usize)
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// `arg` is spelled out by hand; clap derives the names it parses.
    #[test]
    fn every_peer_transport_arg_parses_back_to_itself() {
        for &transport in PeerTransport::value_variants() {
            assert_eq!(
                PeerTransport::from_str(transport.arg(), false),
                Ok(transport)
            );
        }
    }

    /// Each side encodes what the other decodes.
    #[test]
    fn headers_reports_and_wait_ids_round_trip() {
        assert_eq!(parse_header(&header(4096, SINK)), (4096, SINK));
        assert_eq!(parse_report(&report(7, 1 << 40)).unwrap(), (7, 1 << 40));
        assert!(parse_report(&[0; 8]).is_err());
        for strategy in WaitStrategy::ALL {
            assert_eq!(wait_strategy(wait_id(strategy)), strategy);
        }
    }

    /// The ring keeps 64 buffers up to 4 MiB, fewer above, and its file
    /// holds the largest ring of the run after the sequence words.
    #[test]
    fn ring_buffers_fit_the_file() {
        assert_eq!(ring_stride(32), 64);
        assert_eq!(ring_stride(4096), 4096);
        assert_eq!(ring_depth(32), 64);
        assert_eq!(ring_depth(1 << 20), 64);
        assert_eq!(ring_depth(16 << 20), 16);
        assert_eq!(ring_depth(256 << 20), 2);
        assert_eq!(RING_BUFFERS, 8192);
        assert_eq!(ring_file_len(&[32, 4096]), 8192 + 64 * 4096);
    }
}
