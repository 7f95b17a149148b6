//! Round trips and streams over the byte-stream transports the segment is
//! compared against: a Unix socket pair and a pair of pipes, with the
//! protocol's headers standing in for message boundaries.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;

use super::{PeerProcess, Progress, check_report, peer_command, time_round_trips_at};
use crate::cmd::bench::measurement::{Measurement, Transport};
use crate::cmd::bench::plan::Plan;
use crate::cmd::bench::protocol::{
    ECHO, EXIT, HEADER_LEN, PeerTransport, REPORT, REPORT_LEN, SINK, header,
};
use crate::cmd::text::human_bytes;

/// A byte-stream transport: only these two are measured this way, so a
/// match over them needs no arm for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// A Unix stream socket pair; the peer gets its end as standard input.
    UnixSocket,
    /// The peer's standard input and output.
    Pipe,
}

impl Stream {
    /// Every byte-stream transport, in the order the report lists them.
    pub const ALL: [Stream; 2] = [Stream::UnixSocket, Stream::Pipe];

    /// The label of its lines.
    pub fn transport(self) -> Transport {
        match self {
            Stream::UnixSocket => Transport::UnixSocket,
            Stream::Pipe => Transport::Pipe,
        }
    }

    /// Starts the peer and hands back this process's ends of the stream.
    fn connect(self, plan: &Plan) -> anyhow::Result<Connection> {
        Ok(match self {
            Stream::Pipe => {
                let mut child = peer_command(PeerTransport::Pipe, plan.peer_cpu())?
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting the pipe benchmark peer")?;
                let stdin = child.stdin.take().context("the pipe peer has no stdin")?;
                let stdout = child.stdout.take().context("the pipe peer has no stdout")?;
                Connection {
                    peer: PeerProcess(child),
                    writer: Box::new(stdin),
                    reader: Box::new(stdout),
                }
            }
            Stream::UnixSocket => {
                let (ours, theirs) = UnixStream::pair().context("creating a socket pair")?;
                let child = peer_command(PeerTransport::Socket, plan.peer_cpu())?
                    .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
                    .spawn()
                    .context("starting the socket benchmark peer")?;
                Connection {
                    peer: PeerProcess(child),
                    writer: Box::new(ours.try_clone()?),
                    reader: Box::new(ours),
                }
            }
        })
    }
}

/// A running peer and this process's ends of the stream to it, boxed so
/// that a socket and a pair of pipes are timed by the same code.
struct Connection {
    /// The peer, waited for (or killed) at the end.
    peer: PeerProcess,
    /// Where messages go.
    writer: Box<dyn Write>,
    /// Where echoes and reports come from.
    reader: Box<dyn Read>,
}

/// Times round trips, then one-way streams, over `stream` at every size of
/// the plan, with one peer for all of them.
pub fn measure(
    stream: Stream,
    plan: &Plan,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Measurement>> {
    let transport = stream.transport();
    let Connection {
        peer,
        mut writer,
        mut reader,
    } = stream.connect(plan)?;
    let mut results = Vec::new();
    for &size in &plan.sizes {
        let mut message = header(size, ECHO).to_vec();
        message.resize(HEADER_LEN + size, 0x42);
        let mut echo = vec![0u8; HEADER_LEN + size];
        let line = time_round_trips_at(transport, size, plan, progress, |i| {
            message[HEADER_LEN..].fill(i as u8);
            writer.write_all(&message)?;
            reader.read_exact(&mut echo)?;
            Ok(())
        })?;
        results.push(line);
    }
    for &size in &plan.sizes {
        progress.begin(format!("{transport} stream {}", human_bytes(size as u64)))?;
        let messages = plan.stream_messages(size);
        let value = 7u8;
        let mut message = header(size, SINK).to_vec();
        message.resize(HEADER_LEN + size, 0);
        let start = Instant::now();
        for _ in 0..messages {
            message[HEADER_LEN..].fill(value);
            writer.write_all(&message)?;
        }
        writer.write_all(&header(0, REPORT))?;
        let mut report = [0u8; HEADER_LEN + REPORT_LEN];
        reader.read_exact(&mut report)?;
        let elapsed = start.elapsed();
        check_report(&report[HEADER_LEN..], messages, size, value)?;
        results.push(Measurement::stream(transport, size, messages, elapsed));
        progress.done();
    }
    writer.write_all(&header(0, EXIT))?;
    drop(writer);
    drop(reader);
    peer.finish(transport)?;
    Ok(results)
}
