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
/// Value that stops the cache-line bouncer.
pub const CACHELINE_STOP: u64 = u64::MAX;
/// Offset of the bounced word in the cache-line file.
pub const CACHELINE_OFFSET: u64 = 64;

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
}
