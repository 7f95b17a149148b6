//! Receiving until stopped: the loop shared by `create --hold` (as the
//! host), `attach --hold` (as a guest) and `recv --follow` (either role).
//!
//! It receives and prints until a termination signal (SIGINT, SIGTERM,
//! SIGHUP), the other side leaving, an idle limit, or a reason of the
//! receiver's own (`rm` asked the host to leave). A file that changed under
//! it (truncated, replaced, removed) is reported as the cause of whatever
//! error it led to, except the file removed under a receiver that follows
//! the segment ([`Receiver::follows`]): that is the end of what it followed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmhub::{Frame, PeerId};

use super::error::{library_text, seg_err};
use super::output::{MessagePrinter, Reader};
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

    /// Whether the receiver only follows the segment (`recv --follow`),
    /// so that the segment removed ends the loop with [`Stopped::Removed`]
    /// rather than an error, as it ends `events` and `inspect --watch`.
    /// The held commands, which own a claim or the segment itself and have
    /// cleanup to do, report it as an error.
    fn follows(&self) -> bool {
        false
    }

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
    PeerLeft(PeerId),
    /// No message came for the idle limit.
    Idle(Duration),
    /// The segment file was removed under a receiver that follows it.
    Removed,
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
            if let Err(changed) = receiver.check_file() {
                return file_changed(receiver, path, changed);
            }
        }
        match printer.reader(WAIT_SLICE) {
            Reader::Gone => return Ok(Stopped::ReaderGone),
            // The reader is slow, not the sender silent: no idle time.
            Reader::Behind => {
                last_message = Instant::now();
                continue;
            }
            Reader::CaughtUp => {}
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
                Err(changed) => return file_changed(receiver, path, changed),
            },
            Err(shmhub::Error::PeerGone { peer_id } | shmhub::Error::PeerDied { peer_id, .. }) => {
                if let Err(changed) = receiver.check_file() {
                    return file_changed(receiver, path, changed);
                }
                return Ok(Stopped::PeerLeft(peer_id));
            }
            Err(e @ shmhub::Error::BadDescriptor { .. }) => {
                eprintln!("warning: {}: {e}", shown(&path))
            }
            // When the segment file itself has changed (truncated,
            // replaced, removed), that is the cause to report, whatever
            // the operation that tripped over it said.
            Err(e) => {
                return match receiver.check_file() {
                    Err(changed) => file_changed(receiver, path, changed),
                    Ok(()) => Err(seg_err(path, e).into()),
                };
            }
        }
    }
}

/// How the loop ends when the segment file has changed under it: removed,
/// the end of what a follower followed ([`Stopped::Removed`]); otherwise
/// (or for a held command) an error saying what happened to the file.
fn file_changed(
    receiver: &dyn Receiver,
    path: &Path,
    changed: shmhub::Error,
) -> anyhow::Result<Stopped> {
    match changed {
        shmhub::Error::Removed { .. } if receiver.follows() => Ok(Stopped::Removed),
        changed => Err(seg_err(path, changed).into()),
    }
}

/// The guests that a receive from any guest found cut off
/// (`shm.peer.quarantine`), each reported once on stderr: a guest that
/// broke the protocol in its own memory is its own fault, so a receiver
/// serving several guests warns and goes on with the others rather than
/// ending (and a held host deleting the segment under them).
#[derive(Debug)]
pub struct CutOffNotices {
    path: PathBuf,
    reported: Vec<PeerId>,
}

impl CutOffNotices {
    /// No guest reported yet, on the segment at `path`.
    pub fn new(path: &Path) -> Self {
        CutOffNotices {
            path: path.to_path_buf(),
            reported: Vec::new(),
        }
    }

    /// Reports guest `peer` cut off, as `e` says, unless it was already.
    pub fn report(&mut self, peer: PeerId, e: &shmhub::Error) {
        if !self.reported.contains(&peer) {
            self.reported.push(peer);
            eprintln!(
                "warning: {}: {}; serving the other guests",
                shown(&self.path),
                library_text(e)
            );
        }
    }

    /// Forgets guest `peer`, whose entry was freed: a guest that claims it
    /// next and is cut off in turn is reported anew.
    pub fn forget(&mut self, peer: PeerId) {
        self.reported.retain(|&p| p != peer);
    }

    /// `receive`, a receive from any guest, tried again past each guest it
    /// reports cut off (reported here): the library reports a guest once
    /// and serves the others at the next call, so a message another guest
    /// has queued is not left behind for a guest's fault. `T::default()`
    /// (nothing received) if every try reports one.
    pub fn serving_the_others<T: Default>(
        &mut self,
        mut receive: impl FnMut() -> shmhub::Result<T>,
    ) -> shmhub::Result<T> {
        // Each guest is cut off once: as many tries as there can be guests.
        for _ in 0..=u8::MAX {
            match receive() {
                Err(e @ shmhub::Error::Quarantined { peer_id, .. }) => self.report(peer_id, &e),
                other => return other,
            }
        }
        Ok(T::default())
    }
}
