//! Receiving until stopped: the loop shared by `create --hold` (as the
//! host), `attach --hold` (as a guest) and `recv --follow` (either role).
//!
//! It receives and prints until a termination signal (SIGINT, SIGTERM,
//! SIGHUP), the other side leaving, an idle limit, or a reason of the
//! receiver's own (`rm` asked the host to leave). A file that changed under
//! it (truncated, replaced, removed) is reported as the cause of whatever
//! error it led to.

use std::path::Path;
use std::time::{Duration, Instant};

use shmhub::Frame;

use super::error::{OnSegment, SegmentError, seg_err};
use super::output::MessagePrinter;
use super::signals::{self, WAIT_SLICE};
use super::text::shown;
use shmhub::Party;

/// How often the loop checks that the file is still the one mapped.
const FILE_CHECK: Duration = Duration::from_millis(200);

/// Something that receives messages for the loop.
pub trait Receiver {
    /// The next message and who sent it, waiting up to `wait`.
    fn next(&mut self, wait: Duration) -> shmhub::Result<Option<(Party, Frame)>>;

    /// Checks that the segment file is still the one mapped.
    fn check_file(&self) -> shmhub::Result<()>;

    /// Work between receives (called every round); `Some(reason)` ends the
    /// loop with [`Stopped::Asked`].
    fn tend(&mut self, _path: &Path) -> anyhow::Result<Option<&'static str>> {
        Ok(None)
    }
}

/// Why the loop ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT, SIGTERM or SIGHUP arrived.
    Signal(i32),
    /// The host said goodbye and everything it sent was read.
    HostLeft,
    /// The guest received from (or this guest's own entry) is gone.
    PeerLeft(u8),
    /// No message came for the idle limit.
    Idle(Duration),
    /// Whoever read standard output went away (`| head`).
    ReaderGone,
    /// The receiver's own reason (see [`Receiver::tend`]).
    Asked(&'static str),
}

/// Receives and prints as `me` until stopped. `idle_limit` is the longest
/// gap allowed between two messages (counted from the start for the
/// first).
///
/// A host that died is an error (exit 1, "host process PID died"), not a
/// stop: its guests must not mistake a crash for a goodbye.
pub fn receive_until_stopped(
    receiver: &mut dyn Receiver,
    printer: &mut MessagePrinter,
    me: Party,
    path: &Path,
    idle_limit: Option<Duration>,
) -> anyhow::Result<Stopped> {
    let mut last_message = Instant::now();
    let mut last_file_check = Instant::now();
    loop {
        if let Some(signal) = signals::received() {
            return Ok(Stopped::Signal(signal));
        }
        // The receiver's own reasons first: a host that `rm --force`
        // removed leaves quietly rather than as a changed file.
        if let Some(reason) = receiver.tend(path)? {
            return Ok(Stopped::Asked(reason));
        }
        if last_file_check.elapsed() >= FILE_CHECK {
            last_file_check = Instant::now();
            receiver.check_file().on_segment(path)?;
        }
        if printer.reader_gone() {
            return Ok(Stopped::ReaderGone);
        }
        let wait = match idle_limit {
            Some(limit) => limit.saturating_sub(last_message.elapsed()).min(WAIT_SLICE),
            None => WAIT_SLICE,
        };
        match receiver.next(wait) {
            Ok(Some((from, frame))) => {
                printer.print(from, me, &frame)?;
                last_message = Instant::now();
            }
            Ok(None) => {
                if let Some(limit) = idle_limit.filter(|&l| last_message.elapsed() >= l) {
                    return Ok(Stopped::Idle(limit));
                }
            }
            // Only a departure if the file is intact: a truncated or
            // replaced file reads as entries gone, and is the real cause.
            // A host that says goodbye removes its file, as it should.
            Err(shmhub::Error::HostGone) => match receiver.check_file() {
                Ok(()) | Err(shmhub::Error::Removed { .. }) => return Ok(Stopped::HostLeft),
                Err(changed) => return Err(seg_err(path, changed).into()),
            },
            Err(shmhub::Error::PeerGone { peer_id }) => {
                receiver.check_file().on_segment(path)?;
                return Ok(Stopped::PeerLeft(peer_id));
            }
            Err(e @ shmhub::Error::BadDescriptor { .. }) => {
                eprintln!("warning: {}: {e}", shown(&path))
            }
            Err(e) => return Err(held_error(path, receiver.check_file(), e).into()),
        }
    }
}

/// The error that ends a held command: when the segment file itself has
/// changed (truncated, replaced, removed), that is the cause to report,
/// whatever the operation that tripped over it said.
fn held_error(path: &Path, file_check: shmhub::Result<()>, e: shmhub::Error) -> SegmentError {
    match file_check {
        Err(changed) => seg_err(path, changed),
        Ok(()) => seg_err(path, e),
    }
}
