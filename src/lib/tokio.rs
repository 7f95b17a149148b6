//! Async send and receive on tokio's reactor (feature `tokio`): a host
//! ([`AsyncHost`]) or a guest ([`AsyncGuest`]) that waits inside an event
//! loop instead of parking a thread.
//!
//! Each wraps its endpoint and a [`Readiness`] descriptor registered with
//! tokio through `AsyncFd`; a task that waits holds no thread. A waiting
//! call first spins for a moment (the spin of [`AsyncHost::set_spin`],
//! 20 µs by default: a reply that comes within it costs no system call
//! and no trip through the reactor), then awaits the descriptor.
//!
//! **Cancellation.** Every future here is cancel-safe: a message is taken
//! off a ring or put on one only inside one synchronous call, never
//! across an `.await`, so a future dropped at any await point (a
//! `tokio::select!` whose other branch won, a timeout) has received
//! nothing that is lost, and a send has either been sent whole or not at
//! all (the payload is borrowed: the caller still has it).
//!
//! ```
//! use shmhub::tokio::{AsyncGuest, AsyncHost};
//! use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let mut host = AsyncHost::new(ShmHost::create_heap(SegmentConfig::default())?)?;
//! let mut guest = AsyncGuest::new(ShmGuest::attach(host.get_ref().region())?)?;
//! let id = guest.get_ref().peer_id();
//!
//! guest.send(MsgDesc::new(2, 1), b"ping").await?;
//! let (from, msg) = host.recv().await?;
//! assert_eq!((from, msg.payload()), (id, &b"ping"[..]));
//! drop(msg);
//! host.send(id, MsgDesc::new(2, 2), b"pong").await?;
//! assert_eq!(guest.recv().await?.payload(), b"pong");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! shm[impl shm.ready.async]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::tokio::io::Interest;
use ::tokio::io::unix::AsyncFd;

use crate::desc::MsgDesc;
use crate::error::{Error, Result};
use crate::guest::ShmGuest;
use crate::host::ShmHost;
use crate::liveness::HostStatus;
use crate::party::{IntoPeerId, Party, PeerId};
use crate::readiness::{Ended, Readiness};
use crate::sender::Sender;
use crate::wait::Timeout;
use crate::zerocopy::Received;

/// How long a waiting call spins before it awaits the descriptor, unless
/// set otherwise.
const SPIN: Duration = Duration::from_micros(20);

/// The descriptor as tokio watches it, with what a drain reported that a
/// call has not yet.
#[derive(Debug)]
struct Waiter {
    fd: AsyncFd<Readiness>,
    /// The segment's file, for errors.
    path: Option<PathBuf>,
    /// Parties on the other side found gone, not yet reported (the host's
    /// end stays: it is reported to every later call).
    ended: Vec<Ended>,
    spin: Duration,
}

/// What a waiting call came to: what it waited for, or the other side
/// gone.
enum Outcome<T> {
    Got(T),
    Gone(Ended),
}

impl Waiter {
    fn new(readiness: Readiness, path: Option<&Path>) -> Result<Self> {
        // SAFETY: `Readiness` owns its epoll descriptor (an `OwnedFd` it
        // never replaces) and closes it only when dropped, which the
        // `AsyncFd` does first; `as_raw_fd` returns that same descriptor
        // every time.
        let fd = unsafe { AsyncFd::register_with_interest(readiness, Interest::READABLE) }
            .map_err(|e| io_error(path, e.into()))?;
        Ok(Waiter {
            fd,
            path: path.map(Path::to_path_buf),
            ended: Vec::new(),
            spin: SPIN,
        })
    }

    /// Waits until the descriptor is readable, then takes its events
    /// (leaving the receive disarmed: see [`Waiter::until`]).
    async fn next(&mut self) -> Result<()> {
        let mut guard = self
            .fd
            .readable()
            .await
            .map_err(|cause| io_error(self.path.as_deref(), cause))?;
        guard.clear_ready();
        let ended = self.fd.get_ref().take_events()?;
        self.ended.extend(ended);
        Ok(())
    }

    /// Runs `attempt` until it gets something: once spinning up to the
    /// spin time, then without waiting, awaiting the descriptor between
    /// attempts; or until `gone` finds, among the ended parties, the one
    /// the call waits on.
    ///
    /// The receive is armed only when a wait is next, and an attempt
    /// follows the arming: a message published before the waker looks is
    /// taken by that attempt, one published after it makes the
    /// descriptor readable. Armed at every drain instead, the waker would
    /// tell again of the message the attempt after the drain takes.
    async fn until<T>(
        &mut self,
        mut attempt: impl FnMut(Timeout) -> Result<Option<T>>,
        gone: impl Fn(&mut Vec<Ended>) -> Option<Ended>,
    ) -> Result<Outcome<T>> {
        if let Some(found) = attempt(Timeout::from(self.spin))? {
            return Ok(Outcome::Got(found));
        }
        loop {
            self.fd.get_ref().arm();
            if let Some(found) = attempt(Timeout::NoWait)? {
                return Ok(Outcome::Got(found));
            }
            if let Some(ended) = gone(&mut self.ended) {
                return Ok(Outcome::Gone(ended));
            }
            self.next().await?;
        }
    }
}

/// Takes the ended process of guest `peer` out of `ended`.
fn guest_ended(ended: &mut Vec<Ended>, peer: PeerId) -> Option<Ended> {
    let i = ended.iter().position(|e| e.party == Party::Guest(peer))?;
    Some(ended.remove(i))
}

/// The host's end, if found: left in `ended`, for every later call.
fn host_end(ended: &[Ended]) -> Option<Ended> {
    ended.iter().find(|e| e.party == Party::Host).copied()
}

/// The end of any guest, taken out of `ended`.
fn any_guest_ended(ended: &mut Vec<Ended>) -> Option<Ended> {
    let i = ended.iter().position(|e| e.party != Party::Host)?;
    Some(ended.remove(i))
}

fn io_error(path: Option<&Path>, cause: std::io::Error) -> Error {
    Error::Io {
        path: path.map_or_else(|| "(segment in memory)".into(), Path::to_path_buf),
        cause,
    }
}

/// Whether a send failed only for want of room (nothing was sent).
fn no_room(e: &Error) -> bool {
    matches!(
        e,
        Error::RingFull { .. } | Error::PoolExhausted { .. } | Error::ShareExhausted { .. }
    )
}

/// A send on `sender` that awaits room: tries at once, and after a send
/// that found none, awaits the descriptor, told to become readable once
/// room comes. `Gone` (nothing sent) once `gone` finds the receiving
/// side's end.
async fn send_on(
    sender: &mut Sender,
    waiter: &mut Waiter,
    (desc, payload): (MsgDesc, &[u8]),
    gone: impl Fn(&mut Vec<Ended>) -> Option<Ended>,
) -> Result<Outcome<()>> {
    loop {
        let mark = sender.room_mark()?;
        match sender.send(desc, payload, Timeout::NoWait) {
            Err(e) if no_room(&e) => {}
            done => return done.map(Outcome::Got),
        }
        if let Some(ended) = gone(&mut waiter.ended) {
            return Ok(Outcome::Gone(ended));
        }
        waiter.fd.get_ref().tell_when_room(mark);
        waiter.next().await?;
    }
}

fn peer_died(peer_id: PeerId, ended: Ended) -> Error {
    Error::PeerDied {
        peer_id,
        pid: ended.pid,
    }
}

/// The methods [`AsyncHost`] and [`AsyncGuest`] share over the end each
/// wraps (its field `$end`, of type `$ty`, called `$name` in the docs): a
/// macro, as a function cannot give two types methods, and a generic
/// wrapper would change both types.
macro_rules! wrapper_methods {
    ($end:ident: $ty:ty, $name:literal) => {
        /// How long a waiting call spins before it awaits the descriptor
        /// (default 20 µs; zero: never). A spin holds the runtime's thread.
        pub fn set_spin(&mut self, spin: Duration) {
            self.waiter.spin = spin;
        }

        #[doc = concat!("The ", $name, ".")]
        pub fn get_ref(&self) -> &$ty {
            &self.$end
        }

        #[doc = concat!("The ", $name, ", for what is not async.")]
        pub fn get_mut(&mut self) -> &mut $ty {
            &mut self.$end
        }

        #[doc = concat!("The ", $name, ", unwrapped.")]
        pub fn into_inner(self) -> $ty {
            self.$end
        }
    };
}

/// A host whose sends and receives are `async`, for a tokio runtime.
///
/// Made inside a runtime (tokio's reactor must be running); the host
/// stays reachable through [`AsyncHost::get_mut`] for what is not async
/// (reserving entries, reclaiming dead guests).
#[derive(Debug)]
pub struct AsyncHost {
    host: ShmHost,
    waiter: Waiter,
}

impl AsyncHost {
    /// Wraps `host`, registering its readiness descriptor with the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the descriptor cannot be made or registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its I/O driver enabled (as tokio's
    /// `AsyncFd` does).
    pub fn new(mut host: ShmHost) -> Result<Self> {
        let waiter = Waiter::new(host.readiness()?, host.path())?;
        // A server in an event loop serves whoever attaches next: its
        // receive from any guest never fails for an empty table.
        host.any_receiver().wait_for_guests(true);
        Ok(AsyncHost { host, waiter })
    }

    wrapper_methods!(host: ShmHost, "host");

    /// Receives the next message from any guest, with the id of the guest
    /// that sent it; waits as long as it takes (for new guests too, when
    /// none is attached). Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`crate::AnyReceiver::recv`]; and [`Error::PeerDied`], once per
    /// guest process that ended while this host watched (found by its
    /// pidfd, within milliseconds), reported once nothing is queued: its
    /// entry is then for [`ShmHost::reclaim_dead`].
    pub async fn recv(&mut self) -> Result<(PeerId, Received)> {
        let receiver = self.host.any_receiver();
        let got = self
            .waiter
            .until(|t| receiver.recv(t), any_guest_ended)
            .await?;
        match got {
            Outcome::Got(found) => Ok(found),
            Outcome::Gone(ended) => match ended.party {
                Party::Guest(peer_id) => Err(peer_died(peer_id, ended)),
                Party::Host => unreachable!("any_guest_ended takes guests only"),
            },
        }
    }

    /// Receives the next message from guest `peer_id`. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`crate::Receiver::recv`]; [`Error::PeerDied`] once the guest's
    /// process is found ended with nothing of it left to read.
    pub async fn recv_from(&mut self, peer_id: impl IntoPeerId) -> Result<Received> {
        let peer_id = self.host.guest_id(peer_id)?;
        let receiver = self.host.receiver(peer_id)?;
        let gone = |ended: &mut Vec<Ended>| guest_ended(ended, peer_id);
        match self.waiter.until(|t| receiver.recv(t), gone).await? {
            Outcome::Got(found) => Ok(found),
            Outcome::Gone(ended) => Err(peer_died(peer_id, ended)),
        }
    }

    /// Sends `desc` with `payload` to guest `peer_id`, awaiting room in
    /// its ring (or a slot) as long as it takes. Cancel-safe: dropped, it
    /// has sent the message whole or not at all.
    ///
    /// # Errors
    ///
    /// As [`crate::Sender::send`]; [`Error::PeerDied`] if the guest's
    /// process is found ended while this awaits room.
    pub async fn send(
        &mut self,
        peer_id: impl IntoPeerId,
        desc: MsgDesc,
        payload: &[u8],
    ) -> Result<()> {
        let peer_id = self.host.guest_id(peer_id)?;
        let sender = self.host.sender(peer_id)?;
        let gone = |ended: &mut Vec<Ended>| guest_ended(ended, peer_id);
        match send_on(sender, &mut self.waiter, (desc, payload), gone).await? {
            Outcome::Got(()) => Ok(()),
            Outcome::Gone(ended) => Err(peer_died(peer_id, ended)),
        }
    }
}

/// A guest whose sends and receives are `async`, for a tokio runtime.
#[derive(Debug)]
pub struct AsyncGuest {
    guest: ShmGuest,
    waiter: Waiter,
}

impl AsyncGuest {
    /// Wraps `guest`, registering its readiness descriptor with the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the descriptor cannot be made or registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its I/O driver enabled.
    pub fn new(guest: ShmGuest) -> Result<Self> {
        let waiter = Waiter::new(guest.readiness()?, guest.path())?;
        Ok(AsyncGuest { guest, waiter })
    }

    wrapper_methods!(guest: ShmGuest, "guest");

    /// The error for a host whose process ended: gone if it said goodbye.
    fn host_ended(&self, ended: Ended) -> Error {
        if ended.goodbye {
            return Error::HostGone;
        }
        match self.guest.status().host_status() {
            Ok(HostStatus::Gone) => Error::HostGone,
            _ => Error::HostDied { pid: ended.pid },
        }
    }

    /// Receives the next message from the host. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`crate::Receiver::recv`]; [`Error::HostDied`] once the host's
    /// process is found ended (by its pidfd, within milliseconds) with
    /// nothing of it left to read.
    pub async fn recv(&mut self) -> Result<Received> {
        let receiver = self.guest.receiver();
        let gone = |ended: &mut Vec<Ended>| host_end(ended);
        match self.waiter.until(|t| receiver.recv(t), gone).await? {
            Outcome::Got(found) => Ok(found),
            Outcome::Gone(ended) => Err(self.host_ended(ended)),
        }
    }

    /// Sends `desc` with `payload` to the host, awaiting room as long as
    /// it takes. Cancel-safe: dropped, it has sent the message whole or
    /// not at all.
    ///
    /// # Errors
    ///
    /// As [`crate::Sender::send`]; [`Error::HostDied`] if the host's
    /// process is found ended while this awaits room.
    pub async fn send(&mut self, desc: MsgDesc, payload: &[u8]) -> Result<()> {
        let sender = self.guest.sender();
        let gone = |ended: &mut Vec<Ended>| host_end(ended);
        match send_on(sender, &mut self.waiter, (desc, payload), gone).await? {
            Outcome::Got(()) => Ok(()),
            Outcome::Gone(ended) => Err(self.host_ended(ended)),
        }
    }
}
