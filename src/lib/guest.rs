//! A guest: claims a peer entry, then talks to the host over its two
//! rings, a sending end ([`Producer`]) and a receiving end ([`Consumer`]).

use std::borrow::Borrow;
use std::path::Path;
use std::time::Duration;

use crate::consumer::Consumer;
use crate::desc::{Frame, MsgDesc};
use crate::error::{Error, Result};
use crate::header::HeaderInfo;
use crate::layout::{Direction, SegmentConfig, SegmentLayout};
use crate::liveness::{self, HostStatus};
use crate::locks::{ByteLock, RoleLocks, lock_byte, lock_byte::End};
use crate::party::{PeerId, PeerState};
use crate::producer::{Present, Producer};
use crate::region::Region;
use crate::segment::{Segment, ShmBacking};
use crate::sys;
use crate::wait::{Deadline, Stop, WaitStrategy};
use crate::zerocopy::{Received, SlotLoan};

/// How often a waiting guest checks whether the host process still lives.
const HOST_CHECK_NS: u64 = 100_000_000;

/// The guest side of a segment.
///
/// ```
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
/// let mut guest = ShmGuest::attach(host.region()).unwrap();
/// host.send(guest.peer_id(), Frame::new(MsgDesc::default(), vec![1u8; 1000])).unwrap();
/// assert_eq!(guest.recv().unwrap().payload(), &[1u8; 1000][..]);
/// ```
#[derive(Debug)]
pub struct ShmGuest {
    seg: Segment,
    peer_id: u8,
    epoch: u32,
    /// Set when this guest claimed its entry: dropping it detaches.
    owned: bool,
    locks: RoleLocks,
    _presence: Option<ByteLock>,
    to_host: Producer,
    from_host: Consumer,
    clocks: Clocks,
}

/// When this guest last beat and last judged its host
/// (`CLOCK_MONOTONIC` ns): kept across calls, so that a guest that waits
/// in short calls still beats and still notices a dead host.
#[derive(Debug)]
struct Clocks {
    last_beat_ns: u64,
    last_host_check_ns: u64,
}

#[derive(Clone, Copy)]
enum Claim {
    AnyEmpty,
    Reserved(u8),
}

impl ShmGuest {
    /// Attaches to the segment in `region` (heap, or a mapping the caller
    /// keeps), claiming the first Empty entry.
    pub fn attach(region: Region) -> Result<Self> {
        Self::claim(Segment::open(ShmBacking::Region(region))?, Claim::AnyEmpty)
    }

    /// Attaches to the segment in `region` in the entry the host reserved.
    pub fn attach_with_id(region: Region, peer_id: PeerId) -> Result<Self> {
        Self::claim(
            Segment::open(ShmBacking::Region(region))?,
            Claim::Reserved(peer_id),
        )
    }

    /// Maps the segment file at `path`, validates it, and claims the first
    /// Empty entry.
    ///
    /// shm[impl shm.file.attach]
    pub fn attach_path<P: AsRef<Path>>(path: P) -> Result<Self> {
        Self::claim(Segment::open_path(path.as_ref(), false)?, Claim::AnyEmpty)
    }

    /// Maps the segment file at `path` and takes the entry `peer_id`, which
    /// the host must have reserved ([`crate::ShmHost::reserve_peer`]).
    ///
    /// shm[impl shm.peer.reserve]
    pub fn attach_path_with_id<P: AsRef<Path>>(path: P, peer_id: PeerId) -> Result<Self> {
        Self::claim(
            Segment::open_path(path.as_ref(), false)?,
            Claim::Reserved(peer_id),
        )
    }

    /// Acts as guest `peer_id`, an entry already Attached (typically claimed
    /// earlier for scripted use), without owning it: dropping it does not
    /// detach. Each ring end is locked on first use, so two processes never
    /// send (or receive) as the same guest at once.
    pub fn resume<P: AsRef<Path>>(path: P, peer_id: PeerId) -> Result<Self> {
        Self::resume_opened(Segment::open_path(path.as_ref(), false)?, peer_id)
    }

    /// [`ShmGuest::attach_path`] (or, with `peer_id`, [`ShmGuest::attach_path_with_id`])
    /// with the owner check as `allow_foreign_owner` says (see [`crate::OpenOptions`]).
    pub(crate) fn attach_path_trusting(
        path: &Path,
        peer_id: Option<PeerId>,
        allow_foreign_owner: bool,
    ) -> Result<Self> {
        let seg = Segment::open_path(path, allow_foreign_owner)?;
        match peer_id {
            Some(p) => Self::claim(seg, Claim::Reserved(p)),
            None => Self::claim(seg, Claim::AnyEmpty),
        }
    }

    /// [`ShmGuest::resume`] with the owner check as `allow_foreign_owner` says.
    pub(crate) fn resume_trusting(
        path: &Path,
        peer_id: PeerId,
        allow_foreign_owner: bool,
    ) -> Result<Self> {
        Self::resume_opened(Segment::open_path(path, allow_foreign_owner)?, peer_id)
    }

    fn resume_opened(seg: Segment, peer_id: PeerId) -> Result<Self> {
        let p = seg.guest_id(peer_id)?;
        let (state, epoch) = seg.peer(p).state_and_epoch()?;
        if state != PeerState::Attached {
            return Err(Error::PeerState {
                peer_id: p,
                state,
                expected: "attached",
            });
        }
        Ok(Self::new(seg, p, epoch, false, None))
    }

    fn new(seg: Segment, peer_id: u8, epoch: u32, owned: bool, presence: Option<ByteLock>) -> Self {
        ShmGuest {
            locks: seg.role_locks(),
            to_host: seg.producer(peer_id, Direction::GuestToHost),
            from_host: seg.consumer(peer_id, Direction::HostToGuest),
            seg,
            peer_id,
            epoch,
            owned,
            _presence: presence,
            clocks: Clocks {
                last_beat_ns: sys::monotonic_ns(),
                last_host_check_ns: 0,
            },
        }
    }

    /// Claims an entry, holding its presence lock (file-backed segments).
    ///
    /// shm[impl shm.peer.claim]
    fn claim(seg: Segment, claim: Claim) -> Result<Self> {
        let max_guests = seg.layout.config.max_guests;
        let candidates: Vec<u8> = match claim {
            Claim::AnyEmpty => seg.layout.guests().collect(),
            Claim::Reserved(p) => vec![seg.guest_id(p)?],
        };
        for p in candidates {
            if let Claim::Reserved(_) = claim {
                let state = seg.peer(p).state()?;
                if state != PeerState::Reserved {
                    return Err(Error::PeerState {
                        peer_id: p,
                        state,
                        expected: "reserved",
                    });
                }
            }
            let presence = match seg.try_take(lock_byte::guest_presence(p)) {
                Ok(lock) => lock,
                Err(_) if matches!(claim, Claim::Reserved(_)) => {
                    return Err(Error::Busy {
                        what: format!("peer {p} (a live process still holds its entry)"),
                    });
                }
                Err(_) => continue,
            };
            let peer = seg.peer(p);
            // A plain claim takes the receiving role of the entry's
            // host-to-guest ring first, to drop what waits there. A reclaim
            // holds that role from its first step to its last, and moves
            // the entry through Goodbye: a Goodbye entry whose role another
            // process holds may be under reclaim, whose last step stores
            // Empty over whatever claimed it, so it is skipped.
            // (Only for an entry that may be claimed: a live or scripted
            // guest's process may be about to take that role itself.)
            let state = peer.state()?;
            let receiving = match (claim, state) {
                (Claim::AnyEmpty, PeerState::Empty | PeerState::Goodbye) => {
                    seg.try_take(lock_byte::ring_end(p, End::HostToGuestConsumer))
                }
                _ => Ok(None),
            };
            let role_free = receiving.is_ok();
            let claimable = match (claim, state) {
                (Claim::Reserved(_), state) => state == PeerState::Reserved,
                (Claim::AnyEmpty, PeerState::Empty) => true,
                (Claim::AnyEmpty, PeerState::Goodbye) => {
                    role_free && seg.ring(p, Direction::GuestToHost).state()?.is_empty()
                }
                (Claim::AnyEmpty, _) => false,
            };
            if !claimable {
                continue;
            }
            if presence.is_some() {
                // Recorded before the entry is Attached, so that a guest
                // killed right after the change is judged by its (then
                // released) presence lock and reclaimed, instead of
                // looking like a scripted claim. An entry that is not
                // Attached is judged by nobody, and only a claim (which
                // needs the presence lock we hold) makes it Attached.
                peer.set_holder(Some(sys::current_pid()), true)?;
            }
            let claimed = match claim {
                Claim::Reserved(_) => peer.claim(PeerState::Reserved)?,
                Claim::AnyEmpty => match peer.claim(PeerState::Empty)? {
                    Some(epoch) => Some(epoch),
                    None if role_free
                        && seg.ring(p, Direction::GuestToHost).state()?.is_empty() =>
                    {
                        peer.claim(PeerState::Goodbye)?
                    }
                    None => None,
                },
            };
            if let Some(epoch) = claimed {
                peer.record_claim(Some(sys::current_pid()), presence.is_some())?;
                if let Claim::AnyEmpty = claim {
                    // Nothing in the host-to-guest ring of a free entry is
                    // for this guest (a reserved one keeps what the host
                    // sent ahead). Left as it is while another process
                    // holds the ring's receiving role.
                    if role_free {
                        seg.drain_stale_to_guest(p)?;
                    }
                    drop(receiving);
                    seg.pool(0).recount_held(p)?;
                }
                return Ok(Self::new(seg, p, epoch, true, presence));
            }
        }
        match claim {
            Claim::AnyEmpty => Err(Error::HubFull { max_guests }),
            Claim::Reserved(p) => Err(Error::PeerState {
                peer_id: p,
                state: seg.peer(p).state()?,
                expected: "reserved",
            }),
        }
    }

    /// This guest's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The epoch of this guest's claim.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The segment's layout.
    pub fn layout(&self) -> &SegmentLayout {
        &self.seg.layout
    }

    /// The segment's configuration.
    pub fn config(&self) -> &SegmentConfig {
        &self.seg.layout.config
    }

    /// The segment file, if file-backed.
    pub fn path(&self) -> Option<&Path> {
        self.seg.path()
    }

    /// The header as it is now.
    pub fn header(&self) -> Result<HeaderInfo> {
        self.seg.header()
    }

    /// Sets how this guest waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.to_host.set_strategy(strategy);
        self.from_host.set_strategy(strategy);
    }

    /// Whether the host is there, gone, or dead.
    pub fn host_status(&self) -> Result<HostStatus> {
        let h = self.seg.header()?;
        Ok(liveness::judge_host(
            h.host_goodbye,
            h.host_pid,
            h.host_start_time,
            self.seg.file(),
        ))
    }

    /// Checks that the segment file is still the one mapped, at full length.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::Replaced`] or [`Error::Removed`] when
    /// another process changed the file; [`Error::Io`] if it cannot be read.
    pub fn check_file(&self) -> Result<()> {
        self.seg.check_file()
    }

    /// Refreshes this guest's heartbeat.
    pub fn beat(&mut self) -> Result<()> {
        self.clocks.last_beat_ns = sys::monotonic_ns();
        self.seg.peer(self.peer_id).beat()
    }

    /// Fails if this guest's entry was reclaimed or re-claimed by another.
    #[inline]
    fn check_still_mine(seg: &Segment, p: u8, epoch: u32) -> Result<()> {
        if seg.peer(p).state_and_epoch()? != (PeerState::Attached, epoch) {
            return Err(Error::PeerGone { peer_id: p });
        }
        Ok(())
    }

    /// Sends `frame` to the host, waiting as long as it takes for room in
    /// the ring and, for a payload larger than a descriptor's inline bytes,
    /// a free slot of this guest's pool. The frame may be given by value or
    /// by reference.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// guest.send(Frame::new(MsgDesc::default(), vec![5u8; 300]))?;
    /// assert_eq!(host.recv_from(guest.peer_id())?.payload(), &[5u8; 300][..]);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::PayloadTooLarge`] before anything is written;
    /// - [`Error::HostGone`] when the host has said goodbye,
    ///   [`Error::HostDied`] when its process died while this waits;
    ///   [`Error::PeerGone`] when this guest's entry was reclaimed or taken
    ///   by another;
    /// - [`Error::Busy`] at once when another process sends as this guest.
    ///
    /// shm[impl shm.send.backpressure]
    pub fn send(&mut self, frame: impl Borrow<Frame>) -> Result<()> {
        let frame = frame.borrow();
        self.send_message(frame.desc, frame.payload(), &mut Deadline::after(None))
    }

    /// Sends `frame` to the host without waiting.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::send`], and the retryable [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] (nothing sent) where `send` would wait.
    pub fn try_send(&mut self, frame: impl Borrow<Frame>) -> Result<()> {
        let frame = frame.borrow();
        self.send_message(frame.desc, frame.payload(), &mut Deadline::no_wait())
    }

    /// Sends `frame` to the host, waiting up to `timeout` for room and a
    /// free slot (`None`: as long as it takes; zero: not at all).
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::try_send`]: [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] mean the time ran out and nothing was sent.
    pub fn send_timeout(
        &mut self,
        frame: impl Borrow<Frame>,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<()> {
        let frame = frame.borrow();
        let mut deadline = Deadline::after(timeout.into());
        self.send_message(frame.desc, frame.payload(), &mut deadline)
    }

    /// Sends a message given as a descriptor and a borrowed payload (no
    /// [`Frame`] to build), waiting up to `timeout` like
    /// [`ShmGuest::send_timeout`].
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::send_timeout`].
    pub fn send_with(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        timeout: impl Into<Option<Duration>>,
    ) -> Result<()> {
        self.send_message(desc, payload, &mut Deadline::after(timeout.into()))
    }

    fn send_message(
        &mut self,
        desc: MsgDesc,
        payload: &[u8],
        deadline: &mut Deadline,
    ) -> Result<()> {
        self.sending(deadline, |end, deadline, stop, present| {
            end.send(desc, payload, deadline, stop, present)
        })
    }

    /// Runs a send operation as this guest: takes the sending role (waited
    /// for within the deadline, never without one), checks the entry is
    /// still this guest's and the host is there, and hands `op` the sending
    /// end and a stop check for its waits.
    #[inline]
    fn sending<T>(
        &mut self,
        deadline: &mut Deadline,
        op: impl FnOnce(&mut Producer, &mut Deadline, Stop<'_>, Present<'_>) -> Result<T>,
    ) -> Result<T> {
        let p = self.peer_id;
        let what = || format!("the sending end of peer {p}");
        let byte = lock_byte::ring_end(p, End::GuestToHostProducer);
        if deadline.is_unlimited() {
            self.locks.ensure(byte, &mut Deadline::no_wait(), what)?;
        } else {
            self.locks.ensure(byte, deadline, what)?;
        }
        Self::check_still_mine(&self.seg, p, self.epoch)?;
        if self.seg.host_goodbye()? {
            return Err(Error::HostGone);
        }
        self.beat_if_due()?;
        let mut waiter = Waiter::new(&self.seg, p, self.epoch, &mut self.clocks);
        // The host does not move away under a send as a guest can: nothing
        // to look at around the publication.
        op(&mut self.to_host, deadline, &mut || waiter.check(), None)
    }

    /// Sends `frames` to the host in order, publishing as many descriptors
    /// at once as the ring has room for. Waits up to `timeout` for room and
    /// slots (`None`: as long as it takes); returns how many were sent.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::send_timeout`]; an oversized frame anywhere in the
    /// batch is refused before anything is sent.
    ///
    /// shm[impl shm.send.batch]
    pub fn send_batch(
        &mut self,
        frames: &[Frame],
        timeout: impl Into<Option<Duration>>,
    ) -> Result<usize> {
        let mut deadline = Deadline::after(timeout.into());
        self.sending(&mut deadline, |end, deadline, stop, present| {
            end.send_batch(frames, deadline, stop, present)
        })
    }

    /// Lends a slot of this guest's pool for a `len`-byte payload to the
    /// host, once the ring has room; write the payload in place, then
    /// [`ShmGuest::commit`]. Waits up to `timeout` (`None`: as long as it
    /// takes).
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::send_timeout`].
    ///
    /// shm[impl shm.send.zero-copy]
    pub fn loan(&mut self, len: usize, timeout: impl Into<Option<Duration>>) -> Result<SlotLoan> {
        let mut deadline = Deadline::after(timeout.into());
        self.sending(&mut deadline, |end, deadline, stop, _| {
            end.loan(len, deadline, stop)
        })
    }

    /// Sends a loaned slot to the host.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a loan made by another sender or segment;
    /// [`Error::HostGone`] or [`Error::PeerGone`] as for a send (the slot
    /// goes back to the pool).
    pub fn commit(&mut self, loan: SlotLoan) -> Result<()> {
        self.sending(&mut Deadline::no_wait(), |end, _, _, present| {
            end.commit(loan, present)
        })
    }

    /// Takes this guest's receiving role now rather than at the first
    /// receive, so that no other process can receive as this guest from
    /// here on; waits up to `timeout` for a process that holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] if another process still holds it when the time is up.
    pub fn take_receiving_role(&mut self, timeout: impl Into<Option<Duration>>) -> Result<()> {
        self.lock_receiving_end(&mut Deadline::after(timeout.into()))
    }

    /// Receives the next message if one is queued.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::recv`], but an empty ring is `Ok(None)` even after
    /// the host has left.
    pub fn try_recv(&mut self) -> Result<Option<Frame>> {
        self.lock_receiving_end(&mut Deadline::no_wait())?;
        Ok(self.pop()?.map(Received::into_frame))
    }

    /// Receives the next message, waiting as long as it takes.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// host.send(guest.peer_id(), Frame::new(MsgDesc::default(), b"last".to_vec()))?;
    /// host.shutdown()?;
    /// // What the host sent before leaving is still delivered...
    /// assert_eq!(guest.recv()?.payload(), b"last");
    /// // ...then its departure is the answer.
    /// assert!(matches!(guest.recv(), Err(shmhub::Error::HostGone)));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::HostGone`] once the host has said goodbye and nothing is
    /// queued, [`Error::HostDied`] once its process has died (checked at
    /// most every 100 ms while waiting); [`Error::PeerGone`] if this guest's entry was reclaimed;
    /// [`Error::BadDescriptor`] for a message that fails validation (it is
    /// dropped, the next one can be received); [`Error::Busy`] when another
    /// process receives as this guest.
    pub fn recv(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.recv_timeout(None)? {
                return Ok(frame);
            }
        }
    }

    /// Receives the next message, waiting up to `timeout` (`None`: until one
    /// comes). `Ok(None)` when the time ran out.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::recv`].
    pub fn recv_timeout(&mut self, timeout: impl Into<Option<Duration>>) -> Result<Option<Frame>> {
        Ok(self.recv_in_place(timeout)?.map(Received::into_frame))
    }

    /// Like [`ShmGuest::recv_timeout`], but the payload stays in its slot
    /// until the returned value is dropped.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::recv`].
    ///
    /// shm[impl shm.recv.zero-copy]
    pub fn recv_in_place(
        &mut self,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Option<Received>> {
        self.recv_taking(timeout.into(), Consumer::try_recv)
    }

    /// Receives the next message, waiting up to `timeout` (`None`: until
    /// one comes), and lends it, payload in place, to `read`; returns what
    /// `read` returned, or `Ok(None)` when the time ran out (then `read` was
    /// not called). A payload in a slot goes back to the host's pool as
    /// `read` returns.
    ///
    /// The fastest way to look at a message: it is read in the call's own
    /// frame, where [`ShmGuest::recv_in_place`] moves it out to the caller.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// host.send(guest.peer_id(), Frame::new(MsgDesc::new(2, 7), vec![1; 1000]))?;
    /// let wait = Some(Duration::from_secs(1));
    /// let sum = guest.recv_with(wait, |m| m.payload().iter().map(|&b| u64::from(b)).sum::<u64>());
    /// assert_eq!(sum?, Some(1000));
    /// // The slot went back as the closure returned.
    /// assert_eq!(shmhub::inspect_region(&host.region(), None)?.pools[0].usage.used, 0);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::recv`]; `read` is not called for a message that fails
    /// validation.
    ///
    /// shm[impl shm.recv.borrowed]
    pub fn recv_with<T>(
        &mut self,
        timeout: impl Into<Option<Duration>>,
        read: impl FnOnce(&Received) -> T,
    ) -> Result<Option<T>> {
        let mut read = Some(read);
        self.recv_taking(timeout.into(), |end| end.try_recv_with(&mut read))
    }

    /// The waiting receives: one look with `take`, which takes the message
    /// off the host's ring end the way the caller wants it, then a wait
    /// whose every look is `take`.
    #[inline(always)]
    fn recv_taking<T>(
        &mut self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&Consumer) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut deadline = Deadline::after(timeout);
        self.lock_receiving_end(&mut deadline)?;
        self.check_before_pop()?;
        // The result goes back whole, not taken apart and rebuilt: a
        // message moved between two layouts is copied across the stores
        // that just built it, and waits for them.
        match take(&self.from_host) {
            Ok(None) => {}
            taken => return taken,
        }
        // The entry was just found ours; while this waits, the wait's
        // checks look at it again between naps (`Waiter::check`).
        let mut waiter = Waiter::new(&self.seg, self.peer_id, self.epoch, &mut self.clocks);
        let end = &self.from_host;
        end.wait_to_take(&mut deadline, &mut || waiter.check(), || take(end))
    }

    /// Receives up to `max` queued messages at once (one index update for
    /// all of them), waiting up to `timeout` for the first; `handle` gets
    /// each with its payload in place. Returns how many.
    ///
    /// The slots of messages `handle` drops (on this thread) go back to the
    /// host's pool together as this returns, not one by one: the pool's
    /// bitmap changes once per batch rather than once per message. A
    /// message kept past the batch is freed when it is dropped, as always.
    ///
    /// # Errors
    ///
    /// As [`ShmGuest::recv`]; a bad descriptor in the batch is reported
    /// after the good ones were handed over.
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: impl Into<Option<Duration>>,
        mut handle: impl FnMut(Received),
    ) -> Result<usize> {
        let mut deadline = Deadline::after(timeout.into());
        self.lock_receiving_end(&mut deadline)?;
        loop {
            Self::check_still_mine(&self.seg, self.peer_id, self.epoch)?;
            let n = self.from_host.recv_batch(max, &mut handle)?;
            if n > 0 {
                return Ok(n);
            }
            if !self.wait(&mut deadline)? {
                return Ok(0);
            }
        }
    }

    /// Waits until the host-to-guest ring has something; false on timeout.
    fn wait(&mut self, deadline: &mut Deadline) -> Result<bool> {
        if self.from_host.has_data()? {
            return Ok(true);
        }
        let mut waiter = Waiter::new(&self.seg, self.peer_id, self.epoch, &mut self.clocks);
        self.from_host
            .wait_for_data(deadline, &mut || waiter.check())
    }

    #[inline]
    fn lock_receiving_end(&mut self, deadline: &mut Deadline) -> Result<()> {
        let p = self.peer_id;
        let what = || format!("the receiving end of peer {p}");
        self.locks.ensure(
            lock_byte::ring_end(p, End::HostToGuestConsumer),
            deadline,
            what,
        )
    }

    /// With heartbeats on, refreshes the heartbeat once an interval has
    /// passed, so a guest that is busy sending and receiving (and never
    /// waits) still beats.
    #[inline]
    fn beat_if_due(&mut self) -> Result<()> {
        let interval_ns = u64::from(self.seg.layout.config.heartbeat_interval_ms) * 1_000_000;
        if interval_ns > 0
            && sys::monotonic_ns().saturating_sub(self.clocks.last_beat_ns) >= interval_ns
        {
            self.beat()?;
        }
        Ok(())
    }

    #[inline(always)]
    fn pop(&mut self) -> Result<Option<Received>> {
        self.check_before_pop()?;
        self.from_host.try_recv()
    }

    /// What comes before a look at the ring that does not wait: the entry
    /// is still this guest's, and a heartbeat if one is due.
    #[inline(always)]
    fn check_before_pop(&mut self) -> Result<()> {
        Self::check_still_mine(&self.seg, self.peer_id, self.epoch)?;
        self.beat_if_due()
    }

    /// Leaves the entry Attached with no process holding it, so that later
    /// commands can act as this guest ([`ShmGuest::resume`]); returns the
    /// peer id and epoch.
    pub fn release_to_script(mut self) -> Result<(PeerId, u32)> {
        Self::check_still_mine(&self.seg, self.peer_id, self.epoch)?;
        self.seg.peer(self.peer_id).set_holder(None, false)?;
        self.owned = false;
        Ok((self.peer_id, self.epoch))
    }

    /// Detaches: drops what the host sent and this guest did not read
    /// (returning those slots), returns every slot this guest holds, and
    /// frees the entry (or leaves it in Goodbye until the host has read
    /// what this guest sent). Dropping an owned guest does the same.
    ///
    /// shm[impl shm.peer.detach]
    pub fn detach(mut self) -> Result<()> {
        let claimed = std::mem::replace(&mut self.owned, false);
        self.detach_inner(claimed)
    }

    /// Detaches guest `peer_id` of the segment at `path`, an entry claimed
    /// for scripted use; refused while a live process holds it.
    pub fn release<P: AsRef<Path>>(path: P, peer_id: PeerId) -> Result<()> {
        Self::release_resumed(Self::resume(path, peer_id)?)
    }

    /// [`ShmGuest::release`] with the owner check as `allow_foreign_owner` says.
    pub(crate) fn release_trusting(
        path: &Path,
        peer_id: PeerId,
        allow_foreign_owner: bool,
    ) -> Result<()> {
        Self::release_resumed(Self::resume_trusting(path, peer_id, allow_foreign_owner)?)
    }

    fn release_resumed(guest: ShmGuest) -> Result<()> {
        let entry = guest.seg.peer(guest.peer_id).snapshot()?;
        let status = liveness::judge_peer(
            &entry,
            guest.seg.file(),
            guest.seg.layout.config.heartbeat_interval_ms,
            sys::monotonic_ns(),
        );
        if status == liveness::HolderStatus::Alive || status == liveness::HolderStatus::Stale {
            return Err(Error::Busy {
                what: format!("peer {} (held by pid {})", entry.peer_id, entry.pid),
            });
        }
        guest.detach()
    }

    /// `claimed`: this guest claimed the entry itself (rather than
    /// resuming one claimed for scripts).
    fn detach_inner(&mut self, claimed: bool) -> Result<()> {
        let p = self.peer_id;
        Self::check_still_mine(&self.seg, p, self.epoch)?;
        let receiving = self.lock_receiving_end(&mut Deadline::no_wait()).is_ok();
        if receiving {
            self.from_host.discard_all()?;
        }
        // Slots still lent out in this process (in-place receives, loans)
        // are freed by their owners when they drop. The host's slots held
        // for a guest that claimed its entry itself are named by what the
        // drain took, or lent out, or in flight: a host send that placed
        // one may yet publish it (to this guest's successor, if it raced
        // the whole detach and the next claim), so they are left alone. An
        // entry used by scripts may hold some that a killed command never
        // freed.
        let pools: &[u8] = if claimed { &[p] } else { &[0, p] };
        self.seg.free_slots_held_by(p, pools.iter().copied())?;
        let peer = self.seg.peer(p);
        let outbound_empty = self.seg.ring(p, Direction::GuestToHost).state()?.is_empty();
        let next = if outbound_empty {
            PeerState::Empty
        } else {
            PeerState::Goodbye
        };
        peer.transition(PeerState::Attached, next)?;
        // A host send that found the entry Attached just before the move
        // may have published after the drain above. Its sender looks at
        // the entry right after publishing and this looks at the ring
        // right after the move, both sequentially consistent: either this
        // sees the message and drops it (with its slot), or the host sees
        // the entry gone and frees the slot itself. The presence lock keeps
        // any new guest (and its receiving end) out meanwhile.
        if receiving && self._presence.is_some() && !self.from_host.is_empty_after_move()? {
            self.from_host.discard_all()?;
        }
        // The holder goes only now: a guest killed before the move leaves
        // its entry Attached to a dead holder, which the host reclaims; one
        // cleared before the move would look like a scripted claim, which
        // is never reclaimed. (The presence lock keeps a new guest, and so
        // a new holder, out until this one is gone.)
        peer.set_holder(None, false)?;
        crate::header::wake_host(&self.seg.region)?;
        Ok(())
    }
}

impl Drop for ShmGuest {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.detach_inner(true);
        }
    }
}

/// What a waiting guest checks between naps: its entry is still its own,
/// the host has not left or died, and its heartbeat is fresh.
struct Waiter<'a> {
    seg: &'a Segment,
    peer_id: u8,
    epoch: u32,
    clocks: &'a mut Clocks,
}

impl<'a> Waiter<'a> {
    fn new(seg: &'a Segment, peer_id: u8, epoch: u32, clocks: &'a mut Clocks) -> Self {
        Waiter {
            seg,
            peer_id,
            epoch,
            clocks,
        }
    }

    fn check(&mut self) -> Result<()> {
        if self.seg.host_goodbye()? {
            return Err(Error::HostGone);
        }
        ShmGuest::check_still_mine(self.seg, self.peer_id, self.epoch)?;
        let now = sys::monotonic_ns();
        let interval_ns = u64::from(self.seg.layout.config.heartbeat_interval_ms) * 1_000_000;
        if interval_ns > 0 && now.saturating_sub(self.clocks.last_beat_ns) >= interval_ns {
            self.clocks.last_beat_ns = now;
            self.seg.peer(self.peer_id).beat()?;
        }
        if now.saturating_sub(self.clocks.last_host_check_ns) >= HOST_CHECK_NS {
            self.clocks.last_host_check_ns = now;
            let h = self.seg.header()?;
            if liveness::judge_host(
                h.host_goodbye,
                h.host_pid,
                h.host_start_time,
                self.seg.file(),
            ) == HostStatus::Dead
            {
                return Err(Error::HostDied { pid: h.host_pid });
            }
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::host::ShmHost;

    // A reclaim holds the receiving role of the entry's host-to-guest ring
    // from its first step to its last and moves the entry through Goodbye
    // (its guest-to-host ring drained): a plain claim must leave such an
    // entry alone, or the reclaim's last step stores Empty over the guest
    // that claimed it.
    // shm[verify shm.peer.claim]
    #[test]
    fn a_plain_claim_leaves_a_goodbye_entry_whose_receiving_role_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claim.shm");
        let config = SegmentConfig {
            max_guests: 2,
            ..SegmentConfig::default()
        };
        let _host = ShmHost::create(&path, config).unwrap();
        // Another open file (a reclaiming host's) midway through a reclaim
        // of guest 1.
        let reclaimer = Segment::open_path(&path, false).unwrap();
        assert!(
            reclaimer
                .peer(1)
                .transition(PeerState::Empty, PeerState::Goodbye)
                .unwrap()
        );
        let role = reclaimer
            .try_take(lock_byte::ring_end(1, End::HostToGuestConsumer))
            .expect("the role is free");
        let second = ShmGuest::attach_path(&path).unwrap();
        assert_eq!(second.peer_id(), 2, "the entry under reclaim was claimed");
        assert_eq!(reclaimer.peer(1).state().unwrap(), PeerState::Goodbye);
        // Once the role is let go, the Goodbye entry with nothing left to
        // read is free to claim again.
        drop(role);
        let first = ShmGuest::attach_path(&path).unwrap();
        assert_eq!(first.peer_id(), 1);
        drop((first, second));
    }
}
