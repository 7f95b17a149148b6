//! The host: creates a segment, sends to guests and receives from them.
//!
//! The host has a sending end ([`Producer`]) towards every guest and a
//! receiving end ([`Consumer`]) from every guest; its methods take the role
//! lock of the end they use (so no other process acts as the host there at
//! the same time), check the guest's entry, and hand the end a stop check
//! that ends any wait once that guest is gone.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::consumer::Consumer;
use crate::desc::{Frame, MsgDesc};
use crate::error::{Error, Result};
use crate::header::{self, HeaderInfo};
use crate::layout::{Direction, SegmentConfig, SegmentLayout};
use crate::liveness::{self, HolderStatus};
use crate::locks::{ByteLock, RoleLocks, lock_byte, lock_byte::End};
use crate::mmap::{FileMode, MmapRegion};
use crate::party::{PeerId, PeerState};
use crate::peer::{PeerEntry, Presence};
use crate::producer::{Present, Producer};
use crate::reclaim::{ReclaimReport, SkipReason, Skipped};
use crate::region::{HeapRegion, Region};
use crate::segment::{Segment, ShmBacking};
use crate::sys;
use crate::wait::{Announce, Backoff, Deadline, Step, Stop, WaitStrategy, sleep_unless};
use crate::zerocopy::{Received, SlotLoan};

/// The host side of a segment.
///
/// ```
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("doc.shm");
/// let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
/// let mut guest = ShmGuest::attach_path(&path).unwrap();
///
/// guest.send(Frame::new(MsgDesc::default(), b"ping".to_vec())).unwrap();
/// let (from, frame) = host.try_recv().unwrap().unwrap();
/// assert_eq!((from, frame.payload()), (guest.peer_id(), &b"ping"[..]));
/// ```
#[derive(Debug)]
pub struct ShmHost {
    seg: Segment,
    /// Set when this host created the file: dropping it says goodbye and
    /// deletes the file.
    owns_segment: bool,
    locks: RoleLocks,
    _presence: Option<ByteLock>,
    /// The sending end towards each guest (guest `p` at `p - 1`).
    to_guests: Vec<Producer>,
    /// The receiving end from each guest (guest `p` at `p - 1`).
    from_guests: Vec<Consumer>,
    /// Where the next receive from any guest starts looking (round-robin).
    next_peer: u8,
    strategy: WaitStrategy,
    /// Whether the receiving role for every guest is already held.
    receiving_all: bool,
    /// When each guest's holder was last judged alive by a waiting call
    /// (`CLOCK_MONOTONIC` ns, 0 = never; guest `p` at `p - 1`): kept across
    /// calls, so that a host waiting in short slices still looks.
    liveness_judged: Vec<u64>,
}

/// Options for [`ShmHost::create_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Permission bits of the new file.
    pub mode: FileMode,
    /// Reserve every page of the file on its file system when creating it
    /// (`posix_fallocate`), instead of leaving it sparse.
    ///
    /// A sparse segment costs nothing until its pages are touched, but on a
    /// file system that fills up (a tmpfs such as `/dev/shm` included),
    /// touching a page that was never written raises SIGBUS in whichever
    /// process touches it. A preallocated one costs its whole size at once,
    /// and creation fails with [`Error::NoSpace`] (the file deleted again)
    /// if it does not fit; later accesses cannot fault for want of space.
    /// Default: `false` (sparse).
    pub preallocate: bool,
    /// How many of the host's slots one guest may hold at once, so that a
    /// guest that stops receiving cannot take the whole pool from the
    /// others (`shm.pool.share`). 0 (the default): the fair share, the
    /// pool divided among the entries in use, at least 1. Recorded in the
    /// header; at most `slots_per_pool`.
    pub host_slots_per_guest: u32,
}

impl ShmHost {
    /// Creates a file-backed segment at `path` (which must not exist) and
    /// becomes its host. Dropping the host deletes the file.
    ///
    /// shm[impl shm.file.create]
    pub fn create<P: AsRef<Path>>(path: P, config: SegmentConfig) -> Result<Self> {
        Self::create_with(path, config, CreateOptions::default())
    }

    /// [`ShmHost::create`] with options (file mode, preallocation).
    pub fn create_with<P: AsRef<Path>>(
        path: P,
        config: SegmentConfig,
        options: CreateOptions,
    ) -> Result<Self> {
        let layout = config.layout()?;
        if options.host_slots_per_guest > config.slots_per_pool {
            return Err(Error::Layout(crate::layout::LayoutError {
                field: "host_slots_per_guest",
                value: options.host_slots_per_guest.into(),
                reason: "must be at most slots_per_pool (0: the fair share)",
            }));
        }
        let size = usize::try_from(layout.total_size).map_err(|_| {
            Error::Layout(crate::layout::LayoutError {
                field: "total_size",
                value: layout.total_size,
                reason: "does not fit this machine's address space",
            })
        })?;
        let path = path.as_ref();
        let mmap = if options.preallocate {
            MmapRegion::create_preallocated(path, size, options.mode)?
        } else {
            MmapRegion::create_with_mode(path, size, options.mode)?
        };
        let presence = ByteLock::try_lock(mmap.segment_file(), lock_byte::HOST_PRESENCE)
            .ok()
            .flatten();
        let host = Self::initialize(ShmBacking::Mmap(mmap), layout, options.host_slots_per_guest);
        match host {
            Ok(mut host) => {
                host._presence = presence;
                Ok(host)
            }
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Creates a heap-backed segment (one process; for tests).
    pub fn create_heap(config: SegmentConfig) -> Result<Self> {
        let layout = config.layout()?;
        let heap = HeapRegion::new_zeroed(layout.total_size as usize)?;
        Self::initialize(ShmBacking::Heap(heap), layout, 0)
    }

    /// Writes the header into fresh, zeroed memory and publishes it. The
    /// peer table, rings and pools need no writes: all-zero is their
    /// initial state (entries Empty, rings empty, every slot free).
    fn initialize(backing: ShmBacking, layout: SegmentLayout, share: u32) -> Result<Self> {
        let region = backing.region();
        header::write(&region, &layout, sys::current_pid(), share)?;
        header::publish(&region)?;
        let seg = Segment::open(backing)?;
        Ok(Self::with_segment(seg, true))
    }

    fn with_segment(seg: Segment, owns_segment: bool) -> Self {
        let to_guests = seg
            .layout
            .guests()
            .map(|p| seg.producer(p, Direction::HostToGuest))
            .collect();
        let from_guests = seg
            .layout
            .guests()
            .map(|p| seg.consumer(p, Direction::GuestToHost))
            .collect();
        let seg_guests = seg.layout.guests().len();
        ShmHost {
            locks: seg.role_locks(),
            seg,
            owns_segment,
            _presence: None,
            to_guests,
            from_guests,
            next_peer: 1,
            strategy: WaitStrategy::default(),
            receiving_all: false,
            liveness_judged: vec![0; seg_guests],
        }
    }

    /// Acts as the host of an existing segment without owning it: dropping
    /// it neither says goodbye nor deletes the file. For tools that send,
    /// receive or clean up on a segment another process created.
    pub fn open<P: AsRef<Path>>(path: P) -> Result<Self> {
        Self::open_trusting(path.as_ref(), false)
    }

    /// [`ShmHost::open`] with the owner check as `allow_foreign_owner` says
    /// (see [`crate::OpenOptions`]).
    pub(crate) fn open_trusting(path: &Path, allow_foreign_owner: bool) -> Result<Self> {
        let seg = Segment::open_path(path, allow_foreign_owner)?;
        Ok(Self::with_segment(seg, false))
    }

    /// Acts as host on a region supplied by the caller, without owning it.
    pub fn open_region(region: Region) -> Result<Self> {
        let seg = Segment::open(ShmBacking::Region(region))?;
        Ok(Self::with_segment(seg, false))
    }

    /// Leaves the segment in place with no host process recorded, for
    /// later commands to use; returns its path (if file-backed).
    pub fn persist(mut self) -> Result<Option<PathBuf>> {
        self.seg
            .region
            .store_u32(header::field::HOST_PID, 0, Ordering::Release)?;
        self.seg
            .region
            .store_u64(header::field::HOST_START_TIME, 0, Ordering::Release)?;
        self.owns_segment = false;
        Ok(self.path().map(Path::to_path_buf))
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

    /// A view of the whole segment (for [`crate::ShmGuest::attach`]).
    pub fn region(&self) -> Region {
        self.seg.region.clone()
    }

    /// The header as it is now.
    pub fn header(&self) -> Result<HeaderInfo> {
        self.seg.header()
    }

    /// Whether the goodbye flag is set: another process (such as `rm`) has
    /// asked the host to leave. One load, unlike [`ShmHost::header`].
    pub fn goodbye_requested(&self) -> Result<bool> {
        self.seg.host_goodbye()
    }

    /// Sets how this host waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.strategy = strategy;
        for end in &mut self.to_guests {
            end.set_strategy(strategy);
        }
        for end in &mut self.from_guests {
            end.set_strategy(strategy);
        }
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

    /// Refreshes the host heartbeat.
    pub fn beat(&self) -> Result<()> {
        self.seg.region.store_u64(
            header::field::HOST_HEARTBEAT_NS,
            sys::monotonic_ns(),
            Ordering::Release,
        )?;
        Ok(())
    }

    /// A snapshot of every peer entry.
    pub fn peers(&self) -> Result<Vec<PeerEntry>> {
        self.seg
            .layout
            .guests()
            .map(|p| self.seg.peer(p).snapshot())
            .collect()
    }

    /// Whether the holder of guest `peer_id`'s entry lives, judged as
    /// [`ShmHost::reclaim_dead`] judges it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`], or a corrupt-segment error for an entry
    /// that cannot be read.
    pub fn holder_status(&self, peer_id: PeerId) -> Result<HolderStatus> {
        let p = self.seg.guest_id(peer_id)?;
        let entry = self.seg.peer(p).snapshot()?;
        Ok(liveness::judge_peer(
            &entry,
            self.seg.file(),
            self.seg.layout.config.heartbeat_interval_ms,
            sys::monotonic_ns(),
        ))
    }

    /// Sets an Empty entry aside for a guest the host is about to start;
    /// that guest attaches with [`crate::ShmGuest::attach_path_with_id`].
    /// Messages sent to the entry meanwhile wait in its ring.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("reserve.shm");
    /// let mut host = ShmHost::create(&path, SegmentConfig::default())?;
    /// let id = host.reserve_peer()?;
    /// host.try_send(id, Frame::new(MsgDesc::default(), b"welcome".to_vec()))?;
    ///
    /// // In the child process, given `path` and `id`:
    /// let mut guest = ShmGuest::attach_path_with_id(&path, id)?;
    /// assert_eq!(guest.recv()?.payload(), b"welcome");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::HubFull`] when no entry is Empty.
    ///
    /// shm[impl shm.peer.reserve]
    pub fn reserve_peer(&mut self) -> Result<PeerId> {
        for p in self.seg.layout.guests() {
            if self.try_reserve(p)? {
                return Ok(p);
            }
        }
        Err(Error::HubFull {
            max_guests: self.seg.layout.config.max_guests,
        })
    }

    /// Moves entry `p` from Empty to Reserved; false if it was not Empty,
    /// or if another process holds its presence lock: a guest in the middle
    /// of claiming it, whose holder record the reservation would clear.
    pub(crate) fn try_reserve(&mut self, p: PeerId) -> Result<bool> {
        let p = self.seg.guest_id(p)?;
        let Ok(_presence) = self.seg.try_take(lock_byte::guest_presence(p)) else {
            return Ok(false);
        };
        let peer = self.seg.peer(p);
        if !peer.transition(PeerState::Empty, PeerState::Reserved)? {
            return Ok(false);
        }
        peer.set_holder(None, false)?;
        // What waits in the ring was sent to an earlier guest of the
        // entry; the guest to come gets only what is sent now.
        self.seg.drop_stale_to_guest(p)?;
        self.seg.pool(0).recount_held(p)?;
        Ok(true)
    }

    /// Returns a Reserved entry to Empty (the guest was never started).
    pub fn release_peer(&mut self, peer_id: PeerId) -> Result<()> {
        let p = self.seg.guest_id(peer_id)?;
        if self
            .seg
            .peer(p)
            .transition(PeerState::Reserved, PeerState::Empty)?
        {
            // Messages sent ahead to the guest that never came are dropped,
            // so that the next guest of this entry does not get them.
            self.seg.consumer(p, Direction::HostToGuest).discard_all()?;
            Ok(())
        } else {
            Err(Error::PeerState {
                peer_id: p,
                state: self.seg.peer(p).state()?,
                expected: "reserved",
            })
        }
    }

    #[inline]
    fn lock_end(&mut self, p: u8, end: End, deadline: &mut Deadline) -> Result<()> {
        let what = || {
            let role = match end {
                End::HostToGuestProducer => "sending end",
                _ => "receiving end",
            };
            format!("the host's {role} for peer {p}")
        };
        self.locks
            .ensure(lock_byte::ring_end(p, end), deadline, what)
    }

    /// Sends `frame` to guest `peer_id`, waiting as long as it takes for
    /// room in the guest's ring and, for a payload larger than a
    /// descriptor's inline bytes, a free slot of the host's pool. The frame
    /// may be given by value or by reference; its payload is copied into
    /// the segment either way.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let frame = Frame::new(MsgDesc::default(), vec![3u8; 1000]);
    /// host.send(guest.peer_id(), &frame)?;
    /// assert_eq!(guest.recv()?.payload(), frame.payload());
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::PayloadTooLarge`] before anything is written;
    /// - [`Error::PeerGone`] when the guest leaves or dies while this waits,
    ///   [`Error::PeerState`] when its entry is neither attached nor reserved;
    /// - [`Error::Busy`] at once when another process sends as the host to
    ///   this guest (a role conflict is not waited out);
    /// - [`Error::InvalidPeerId`], or a corrupt-segment error.
    ///
    /// shm[impl shm.send.backpressure]
    pub fn send(&mut self, peer_id: PeerId, frame: impl Borrow<Frame>) -> Result<()> {
        let frame = frame.borrow();
        self.send_message(
            peer_id,
            frame.desc,
            frame.payload(),
            &mut Deadline::after(None),
        )
    }

    /// Sends `frame` to guest `peer_id` without waiting.
    ///
    /// ```
    /// use shmhub::{Error, Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let config = SegmentConfig { ring_capacity: 2, ..SegmentConfig::default() };
    /// let mut host = ShmHost::create_heap(config)?;
    /// let guest = ShmGuest::attach(host.region())?;
    /// let ping = Frame::new(MsgDesc::default(), b"ping".to_vec());
    /// host.try_send(guest.peer_id(), &ping)?;
    /// host.try_send(guest.peer_id(), &ping)?;
    /// let full = host.try_send(guest.peer_id(), &ping).unwrap_err();
    /// assert!(matches!(full, Error::RingFull { .. }) && full.is_retryable());
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::send`], and the retryable [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] (nothing sent) where `send` would wait;
    /// [`Error::Busy`] if another process holds this sending role.
    pub fn try_send(&mut self, peer_id: PeerId, frame: impl Borrow<Frame>) -> Result<()> {
        let frame = frame.borrow();
        self.send_message(
            peer_id,
            frame.desc,
            frame.payload(),
            &mut Deadline::no_wait(),
        )
    }

    /// Sends `frame` to guest `peer_id`, waiting up to `timeout` for room
    /// and a slot (`None`: as long as it takes; zero: not at all).
    ///
    /// # Errors
    ///
    /// As [`ShmHost::try_send`]; [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] mean the time ran out and nothing was sent.
    /// A sending role held by another process is waited for within the
    /// same time.
    pub fn send_timeout(
        &mut self,
        peer_id: PeerId,
        frame: impl Borrow<Frame>,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<()> {
        let frame = frame.borrow();
        let mut deadline = Deadline::after(timeout.into());
        self.send_message(peer_id, frame.desc, frame.payload(), &mut deadline)
    }

    /// Sends a message given as a descriptor and a borrowed payload, with
    /// no [`Frame`] to build, waiting up to `timeout` like
    /// [`ShmHost::send_timeout`].
    ///
    /// ```
    /// use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost, msg_type};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let buffer = [9u8; 200];
    /// host.send_with(guest.peer_id(), MsgDesc::new(msg_type::DATA, 7), &buffer, None)?;
    /// assert_eq!(guest.recv()?.payload(), &buffer[..]);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::send_timeout`].
    pub fn send_with(
        &mut self,
        peer_id: PeerId,
        desc: MsgDesc,
        payload: &[u8],
        timeout: impl Into<Option<Duration>>,
    ) -> Result<()> {
        self.send_message(peer_id, desc, payload, &mut Deadline::after(timeout.into()))
    }

    fn send_message(
        &mut self,
        peer_id: PeerId,
        desc: MsgDesc,
        payload: &[u8],
        deadline: &mut Deadline,
    ) -> Result<()> {
        self.sending(peer_id, deadline, |end, deadline, stop, present| {
            end.send(desc, payload, deadline, stop, present)
        })
    }

    /// Runs a send operation as the host towards guest `peer_id`: takes the
    /// sending role, checks that the entry accepts messages, and hands `op`
    /// the sending end and a stop check that ends any wait once the guest
    /// is gone. The role is waited for within the deadline, but never
    /// without one: a role another process keeps is not backpressure.
    #[inline(always)]
    fn sending<T>(
        &mut self,
        peer_id: PeerId,
        deadline: &mut Deadline,
        op: impl FnOnce(&mut Producer, &mut Deadline, Stop<'_>, Present<'_>) -> Result<T>,
    ) -> Result<T> {
        let p = self.seg.guest_id(peer_id)?;
        if deadline.is_unlimited() {
            self.lock_end(p, End::HostToGuestProducer, &mut Deadline::no_wait())?;
        } else {
            self.lock_end(p, End::HostToGuestProducer, deadline)?;
        }
        let peer = self.seg.peer(p);
        let (state, epoch) = peer.state_and_epoch()?;
        if !matches!(state, PeerState::Attached | PeerState::Reserved) {
            return Err(Error::PeerState {
                peer_id: p,
                state,
                expected: "attached or reserved",
            });
        }
        let judged = &mut self.liveness_judged[usize::from(p) - 1];
        let mut watch = PeerWatch::new(p, state, epoch, judged);
        let seg = &self.seg;
        let mut stop = || watch.check(seg, true);
        let present = Some(Presence::new(&peer, state, epoch)?);
        let end = &mut self.to_guests[usize::from(p) - 1];
        op(end, deadline, &mut stop, present)
    }

    /// Sends `frames` to guest `peer_id` in order, publishing as many
    /// descriptors at once as the ring has room for (one index update and
    /// at most one wake per batch). Waits up to `timeout` for room and slots
    /// (`None`: as long as it takes); returns how many were sent, fewer
    /// than all only if the time ran out.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::send_timeout`]; an oversized frame anywhere in the
    /// batch is refused before anything is sent.
    ///
    /// shm[impl shm.send.batch]
    pub fn send_batch(
        &mut self,
        peer_id: PeerId,
        frames: &[Frame],
        timeout: impl Into<Option<Duration>>,
    ) -> Result<usize> {
        let mut deadline = Deadline::after(timeout.into());
        self.sending(peer_id, &mut deadline, |end, deadline, stop, present| {
            end.send_batch(frames, deadline, stop, present)
        })
    }

    /// Lends a slot of the host's pool for a `len`-byte payload to guest
    /// `peer_id`, once its ring has room; write the payload in place, then
    /// [`ShmHost::commit`]. Waits up to `timeout` (`None`: as long as it
    /// takes). A loan dropped without a commit gives its slot back.
    ///
    /// ```
    /// use shmhub::{SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let mut loan = host.loan(guest.peer_id(), 4096, None)?;
    /// loan.as_mut_slice().fill(0xAB);
    /// host.commit(guest.peer_id(), loan)?;
    /// assert!(guest.recv()?.payload().iter().all(|&b| b == 0xAB));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::send_timeout`].
    ///
    /// shm[impl shm.send.zero-copy]
    pub fn loan(
        &mut self,
        peer_id: PeerId,
        len: usize,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<SlotLoan> {
        let mut deadline = Deadline::after(timeout.into());
        self.sending(peer_id, &mut deadline, |end, deadline, stop, _| {
            end.loan(len, deadline, stop)
        })
    }

    /// Sends a loaned slot to guest `peer_id` (the guest it was lent for).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a loan made by another sender or segment;
    /// [`Error::PeerGone`] or [`Error::PeerState`] if the guest has left
    /// (the slot goes back to the pool); [`Error::RingFull`] only if the
    /// ring was filled behind the loan's back.
    pub fn commit(&mut self, peer_id: PeerId, loan: SlotLoan) -> Result<()> {
        self.sending(peer_id, &mut Deadline::no_wait(), |end, _, _, present| {
            end.commit(loan, present)
        })
    }

    /// Receives the next message from guest `peer_id`, waiting as long as
    /// it takes.
    ///
    /// # Errors
    ///
    /// [`Error::PeerGone`] once the guest has left (or died) and nothing
    /// it sent is left to read (at once if its entry is Empty again),
    /// [`Error::PeerState`] at once for an entry nobody ever held;
    /// [`Error::BadDescriptor`] for a message that
    /// fails validation (it is dropped, the next one can be received);
    /// [`Error::Busy`] when another process receives as the host from this
    /// guest.
    pub fn recv_from(&mut self, peer_id: PeerId) -> Result<Frame> {
        loop {
            if let Some(frame) = self.recv_from_timeout(peer_id, None)? {
                return Ok(frame);
            }
        }
    }

    /// Receives the next message from guest `peer_id`, if one is queued.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv_from`], but an empty ring is `Ok(None)`.
    pub fn try_recv_from(&mut self, peer_id: PeerId) -> Result<Option<Frame>> {
        let p = self.seg.guest_id(peer_id)?;
        self.lock_end(p, End::GuestToHostConsumer, &mut Deadline::no_wait())?;
        Ok(self.pop_in_place(p)?.map(Received::into_frame))
    }

    /// Receives the next message from guest `peer_id`, waiting up to
    /// `timeout` (`None`: until one comes). `Ok(None)` when the time ran out.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv_from`].
    pub fn recv_from_timeout(
        &mut self,
        peer_id: PeerId,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Option<Frame>> {
        Ok(self
            .recv_from_in_place(peer_id, timeout)?
            .map(Received::into_frame))
    }

    /// Like [`ShmHost::recv_from_timeout`], but the payload stays in its
    /// slot until the returned value is dropped.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv_from`].
    ///
    /// shm[impl shm.recv.zero-copy]
    pub fn recv_from_in_place(
        &mut self,
        peer_id: PeerId,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Option<Received>> {
        self.recv_from_taking(peer_id, timeout.into(), Consumer::try_recv)
    }

    /// Receives the next message from guest `peer_id`, waiting up to
    /// `timeout` (`None`: until one comes), and lends it, payload in place,
    /// to `read`; returns what `read` returned, or `Ok(None)` when the time
    /// ran out (then `read` was not called). A payload in a slot goes back
    /// to the guest's pool as `read` returns.
    ///
    /// The fastest way to look at a message: the message is read in the
    /// call's own frame, where [`ShmHost::recv_from_in_place`] moves it out
    /// to the caller (10–25 ns more per message in a spinning round trip;
    /// `docs/benchmarks.md`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// guest.send(Frame::new(MsgDesc::new(2, 7), b"ping".to_vec()))?;
    /// let wait = Some(Duration::from_secs(1));
    /// let got = host.recv_from_with(guest.peer_id(), wait, |m| (m.desc().id, m.payload().len()));
    /// assert_eq!(got?, Some((7, 4)));
    /// // Nothing more is queued: the time runs out without calling `read`.
    /// let none = host.recv_from_with(guest.peer_id(), Duration::ZERO, |m| m.desc().id);
    /// assert_eq!(none?, None);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv_from`]; `read` is not called for a message that
    /// fails validation.
    ///
    /// shm[impl shm.recv.borrowed]
    pub fn recv_from_with<T>(
        &mut self,
        peer_id: PeerId,
        timeout: impl Into<Option<Duration>>,
        read: impl FnOnce(&Received) -> T,
    ) -> Result<Option<T>> {
        let mut read = Some(read);
        self.recv_from_taking(peer_id, timeout.into(), |end| end.try_recv_with(&mut read))
    }

    /// The receives from guest `peer_id`: one look with `take`, which takes
    /// the message off the guest's ring end the way the caller wants it,
    /// then a wait whose every look is `take`.
    #[inline(always)]
    fn recv_from_taking<T>(
        &mut self,
        peer_id: PeerId,
        timeout: Option<Duration>,
        mut take: impl FnMut(&Consumer) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let p = self.seg.guest_id(peer_id)?;
        let mut deadline = Deadline::after(timeout);
        self.lock_end(p, End::GuestToHostConsumer, &mut deadline)?;
        self.refuse_empty_entry(p)?;
        if let Some(found) = take(&self.from_guests[usize::from(p) - 1])? {
            return Ok(Some(found));
        }
        self.finish_goodbye(p)?;
        let (end, seg, mut watch) = self.receiving_from(p)?;
        end.wait_to_take(&mut deadline, &mut || watch.check(seg, false), || take(end))
    }

    /// Receives up to `max` queued messages from guest `peer_id` at once
    /// (one index update for all of them), waiting up to `timeout` for the
    /// first; `handle` gets each with its payload in place. Returns how many.
    ///
    /// The slots of messages `handle` drops (on this thread) go back to the
    /// guest's pool together as this returns, not one by one; a message
    /// kept past the batch is freed when it is dropped.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv_from`]; a bad descriptor in the batch is reported
    /// after the good ones were handed over.
    pub fn recv_batch_from(
        &mut self,
        peer_id: PeerId,
        max: usize,
        timeout: impl Into<Option<Duration>>,
        mut handle: impl FnMut(Received),
    ) -> Result<usize> {
        let p = self.seg.guest_id(peer_id)?;
        let mut deadline = Deadline::after(timeout.into());
        self.lock_end(p, End::GuestToHostConsumer, &mut deadline)?;
        self.refuse_empty_entry(p)?;
        loop {
            let n = self.from_guests[usize::from(p) - 1].recv_batch(max, &mut handle)?;
            if n > 0 {
                return Ok(n);
            }
            self.finish_goodbye(p)?;
            if !self.wait_from(p, &mut deadline)? {
                return Ok(0);
            }
        }
    }

    /// A wait to receive from an entry nobody holds and nothing is queued
    /// in would only end with its timeout: refuse it as a send to it is
    /// refused.
    #[inline]
    fn refuse_empty_entry(&self, p: u8) -> Result<()> {
        let (state, epoch) = self.seg.peer(p).state_and_epoch()?;
        if state == PeerState::Empty && !self.from_guests[usize::from(p) - 1].has_data()? {
            // An entry a guest has held has seen it leave; one never held
            // is just empty.
            if epoch > 0 {
                return Err(Error::PeerGone { peer_id: p });
            }
            return Err(Error::PeerState {
                peer_id: p,
                state,
                expected: "attached or reserved",
            });
        }
        Ok(())
    }

    /// Waits until guest `p`'s ring has something to read; false on timeout.
    fn wait_from(&mut self, p: u8, deadline: &mut Deadline) -> Result<bool> {
        if self.from_guests[usize::from(p) - 1].has_data()? {
            return Ok(true);
        }
        let (end, seg, mut watch) = self.receiving_from(p)?;
        end.wait_for_data(deadline, &mut || watch.check(seg, false))
    }

    /// The receiving end of guest `p`'s ring, and a watch on the guest for
    /// the stop check of a wait on it (the entry as it is now).
    fn receiving_from(&mut self, p: u8) -> Result<(&Consumer, &Segment, PeerWatch<'_>)> {
        let (state, epoch) = self.seg.peer(p).state_and_epoch()?;
        let judged = &mut self.liveness_judged[usize::from(p) - 1];
        let watch = PeerWatch::new(p, state, epoch, judged);
        Ok((&self.from_guests[usize::from(p) - 1], &self.seg, watch))
    }

    /// Takes one message from guest `p`, payload in place; finishes a
    /// guest's goodbye once everything it sent has been read.
    #[inline(always)]
    fn pop_in_place(&mut self, p: u8) -> Result<Option<Received>> {
        let received = self.from_guests[usize::from(p) - 1].try_recv()?;
        if received.is_none() {
            self.finish_goodbye(p)?;
        }
        Ok(received)
    }

    /// Once a departed guest's messages have all been read, its entry is
    /// free for the next guest.
    fn finish_goodbye(&self, p: u8) -> Result<()> {
        let peer = self.seg.peer(p);
        if peer.state()? == PeerState::Goodbye {
            peer.transition(PeerState::Goodbye, PeerState::Empty)?;
        }
        Ok(())
    }

    fn lock_all_receiving_ends(&mut self, deadline: &mut Deadline) -> Result<()> {
        if self.receiving_all {
            return Ok(());
        }
        for p in self.seg.layout.guests() {
            self.lock_end(p, End::GuestToHostConsumer, deadline)?;
        }
        self.receiving_all = true;
        Ok(())
    }

    /// Takes the host's receiving role for every guest now rather than at
    /// the first receive, so that no other process receives as the host
    /// from here on; waits up to `timeout` for a process that holds one.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`] if another process still holds one when the time is up.
    pub fn take_receiving_role(&mut self, timeout: impl Into<Option<Duration>>) -> Result<()> {
        self.lock_all_receiving_ends(&mut Deadline::after(timeout.into()))
    }

    /// Receives the next message from any guest, waiting as long as it
    /// takes. Guests are served round-robin, so a busy guest cannot starve
    /// the others.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// guest.send(Frame::new(MsgDesc::default(), b"hi".to_vec()))?;
    /// let (from, frame) = host.recv()?;
    /// assert_eq!((from, frame.payload()), (guest.peer_id(), &b"hi"[..]));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BadDescriptor`] for a message that fails validation (it is
    /// dropped); [`Error::Busy`] when another process receives as the host.
    pub fn recv(&mut self) -> Result<(PeerId, Frame)> {
        loop {
            if let Some(found) = self.recv_timeout(None)? {
                return Ok(found);
            }
        }
    }

    /// Receives the next message from any guest, if one is queued.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv`].
    ///
    /// shm[impl shm.host.fair]
    pub fn try_recv(&mut self) -> Result<Option<(PeerId, Frame)>> {
        self.lock_all_receiving_ends(&mut Deadline::no_wait())?;
        self.poll_all(|end, p| Ok(end.try_recv()?.map(|r| (p, r.into_frame()))))
    }

    /// Looks at every guest's ring once, round-robin from where the last
    /// look that found something left off, and returns what `take` took from
    /// the first that had a message (`take` must take nothing, and return
    /// `None`, from a ring that had none); finishes the goodbye of a
    /// departed guest whose ring it found empty.
    #[inline(always)]
    fn poll_all<T>(
        &mut self,
        mut take: impl FnMut(&Consumer, PeerId) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let guests = self.seg.layout.config.max_guests as u8;
        for i in 0..guests {
            let p = (self.next_peer - 1 + i) % guests + 1;
            if let Some(found) = take(&self.from_guests[usize::from(p) - 1], p)? {
                self.next_peer = p % guests + 1;
                return Ok(Some(found));
            }
            self.finish_goodbye(p)?;
        }
        Ok(None)
    }

    /// Receives the next message from any guest, waiting up to `timeout`
    /// (`None`: until one comes). `Ok(None)` when the time ran out.
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv`].
    pub fn recv_timeout(
        &mut self,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Option<(PeerId, Frame)>> {
        self.recv_any(timeout.into(), |end, p| {
            Ok(end.try_recv()?.map(|r| (p, r.into_frame())))
        })
    }

    /// Receives the next message from any guest, waiting up to `timeout`
    /// (`None`: until one comes), and lends it, payload in place, to `read`
    /// with the id of the guest that sent it; returns what `read` returned,
    /// or `Ok(None)` when the time ran out (then `read` was not called). A
    /// payload in a slot goes back to the guest's pool as `read` returns.
    /// Guests are served round-robin, as by [`ShmHost::recv`].
    ///
    /// The in-place receive from any guest, and the fastest:
    /// [`ShmHost::recv_from_with`] says why.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// guest.send(Frame::new(MsgDesc::default(), vec![3; 10_000]))?;
    /// let wait = Some(Duration::from_secs(1));
    /// let got = host.recv_with(wait, |from, m| (from, m.payload().len()))?;
    /// assert_eq!(got, Some((guest.peer_id(), 10_000)));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::recv`]; `read` is not called for a message that fails
    /// validation.
    ///
    /// shm[impl shm.recv.borrowed]
    pub fn recv_with<T>(
        &mut self,
        timeout: impl Into<Option<Duration>>,
        read: impl FnOnce(PeerId, &Received) -> T,
    ) -> Result<Option<T>> {
        let mut read = Some(read);
        // A message is taken once and `read` is there until then, so the
        // inner `None` (no `read` left) never happens.
        let taken = self.recv_any(timeout.into(), |end, p| {
            end.try_take(|received| read.take().map(|read| read(p, &received)))
        })?;
        Ok(taken.flatten())
    }

    /// The wait of the receives from any guest: [`ShmHost::poll_all`] with
    /// `take` until it finds something or the time runs out.
    fn recv_any<T>(
        &mut self,
        timeout: Option<Duration>,
        mut take: impl FnMut(&Consumer, PeerId) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut deadline = Deadline::after(timeout);
        self.lock_all_receiving_ends(&mut deadline)?;
        let region = self.seg.region.clone();
        let bell = region.atomic_u32(header::field::HOST_DOORBELL)?;
        let waiting = region.atomic_u32(header::field::HOST_WAITING)?;
        let mut backoff = Backoff::new(self.strategy);
        loop {
            let seen = bell.load(Ordering::Acquire);
            if let Some(found) = self.poll_all(&mut take)? {
                return Ok(Some(found));
            }
            match backoff.next_step(&mut deadline) {
                Step::Again | Step::Check => {}
                Step::Expired => return Ok(None),
                Step::Sleep(nap) => {
                    // One look at every ring after announcing the sleep: a
                    // guest that published before it is seen; one that
                    // publishes after it sees the announcement and rings
                    // the bell (`header::wake_host`).
                    let rings = &self.from_guests;
                    let quiet = || {
                        for end in rings {
                            if !end.is_empty_now()? {
                                return Ok(None);
                            }
                        }
                        Ok(Some(seen))
                    };
                    sleep_unless(Announce::Flag(waiting), bell, nap, quiet)?;
                }
            }
        }
    }

    /// Finds guests whose holding process is gone (or, with heartbeats on,
    /// has stopped beating) and reclaims their entries: both rings emptied,
    /// every slot they held or were sent returned, entry Empty (the epoch
    /// moves on at the next attach). Scripted (scripted) entries are left
    /// alone. Returns the reclaimed peer ids; [`ShmHost::reclaim_dead_report`]
    /// also says why each other entry was left alone.
    ///
    /// ```
    /// use shmhub::{SegmentConfig, ShmHost};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut host = ShmHost::create(dir.path().join("r.shm"), SegmentConfig::default())?;
    /// // Nobody has attached, so nobody is dead.
    /// assert!(host.reclaim_dead()?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A corrupt-segment error if an entry, ring or pool cannot be read; an
    /// entry whose roles another live process holds is skipped, not an error.
    pub fn reclaim_dead(&mut self) -> Result<Vec<PeerId>> {
        Ok(self.reclaim_dead_report()?.reclaimed)
    }

    /// [`ShmHost::reclaim_dead`], reporting every entry that is not Empty:
    /// those it reclaimed, and those it left alone with why
    /// ([`SkipReason`]). A stale guest whose process still holds its role
    /// locks (a stopped process, say) is left alone: its rings cannot be
    /// emptied safely under it.
    ///
    /// ```
    /// use shmhub::{HolderStatus, SegmentConfig, ShmGuest, ShmHost, SkipReason, Skipped};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("why.shm");
    /// let mut host = ShmHost::create(&path, SegmentConfig::default())?;
    /// let guest = ShmGuest::attach_path(&path)?; // alive: this process holds it
    /// let report = host.reclaim_dead_report()?;
    /// assert!(report.reclaimed.is_empty());
    /// assert_eq!(
    ///     report.skipped,
    ///     [Skipped { peer: guest.peer_id(), holder: HolderStatus::Alive, reason: SkipReason::Alive }]
    /// );
    /// # drop(guest);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ShmHost::reclaim_dead`].
    ///
    /// shm[impl shm.peer.reclaim]
    pub fn reclaim_dead_report(&mut self) -> Result<ReclaimReport> {
        let heartbeat = self.seg.layout.config.heartbeat_interval_ms;
        let mut report = ReclaimReport::default();
        for p in self.seg.layout.guests() {
            let entry = self.seg.peer(p).snapshot()?;
            let holder =
                liveness::judge_peer(&entry, self.seg.file(), heartbeat, sys::monotonic_ns());
            let skip = match (entry.state, holder) {
                (PeerState::Empty, _) => continue,
                (PeerState::Reserved, _) => Some(SkipReason::Reserved),
                (PeerState::Goodbye, _) => Some(SkipReason::Leaving),
                (PeerState::Attached, HolderStatus::Dead | HolderStatus::Stale) => {
                    self.reclaim_one(p, entry.epoch, holder)?
                }
                (PeerState::Attached, HolderStatus::Scripted) => Some(SkipReason::Scripted),
                (PeerState::Attached, HolderStatus::Alive) => Some(SkipReason::Alive),
                // An Attached entry is never judged vacant.
                (PeerState::Attached, HolderStatus::NoProcess) => Some(SkipReason::Changed),
            };
            match skip {
                None => report.reclaimed.push(p),
                Some(reason) => report.skipped.push(Skipped {
                    peer: p,
                    holder,
                    reason,
                }),
            }
        }
        Ok(report)
    }

    /// Reclaims guest `p`, judged dead or stale (`holder`) at `epoch`;
    /// `Some(reason)` when it has to be left alone.
    fn reclaim_one(
        &mut self,
        p: u8,
        epoch: u32,
        holder: HolderStatus,
    ) -> Result<Option<SkipReason>> {
        // Hold both of the guest's ring ends so no other process acts as
        // that guest while its rings are emptied; skip it if one does.
        let mut guest_ends = self.seg.role_locks();
        for end in [End::GuestToHostProducer, End::HostToGuestConsumer] {
            if guest_ends
                .ensure(
                    lock_byte::ring_end(p, end),
                    &mut Deadline::no_wait(),
                    String::new,
                )
                .is_err()
            {
                // A stale holder lives: the locks are most likely its own.
                return Ok(Some(match holder {
                    HolderStatus::Stale => SkipReason::StaleHoldsRoles,
                    _ => SkipReason::DeadRolesInUse,
                }));
            }
        }
        if self
            .lock_end(p, End::GuestToHostConsumer, &mut Deadline::no_wait())
            .is_err()
            || self
                .lock_end(p, End::HostToGuestProducer, &mut Deadline::no_wait())
                .is_err()
        {
            return Ok(Some(SkipReason::HostRolesInUse));
        }
        let peer = self.seg.peer(p);
        if !peer.transition_at(epoch, PeerState::Attached, PeerState::Goodbye)? {
            return Ok(Some(SkipReason::Changed));
        }
        self.seg.consumer(p, Direction::HostToGuest).discard_all()?;
        self.from_guests[usize::from(p) - 1].discard_all()?;
        for direction in [Direction::HostToGuest, Direction::GuestToHost] {
            self.seg.ring(p, direction).clear_waiting()?;
        }
        // The dead guest produced on this ring: it may have died between
        // writing descriptors and publishing the tail.
        self.seg.ring(p, Direction::GuestToHost).settle_tail()?;
        self.seg
            .free_slots_held_by(p, 0..=self.seg.layout.config.max_guests as u8)?;
        // Whatever is still allocated in the dead guest's own pool was
        // either taken by it and never sent, or sent and already read by
        // the host: all of it goes back.
        let leases = &self.seg.leases;
        self.seg
            .pool(p)
            .free_all(&|slot| leases.contains(p, slot))?;
        self.seg.pool(p).clear_waiters()?;
        self.seg.pool(0).recount_held(p)?;
        self.to_guests[usize::from(p) - 1].resync();
        peer.set_holder(None, false)?;
        // A compare-and-swap like every other move: a plain claim cannot
        // take the entry while this holds its receiving role (see
        // `ShmGuest::claim`), and if anything else moved it, it stays.
        peer.transition_at(epoch, PeerState::Goodbye, PeerState::Empty)?;
        Ok(None)
    }

    /// Says goodbye: guests see the host has left once they have read what
    /// it sent, and sleepers are woken to notice.
    ///
    /// shm[impl shm.host.goodbye]
    pub fn shutdown(&mut self) -> Result<()> {
        self.seg
            .region
            .store_u32(header::field::HOST_GOODBYE, 1, Ordering::Release)?;
        for p in self.seg.layout.guests() {
            self.seg.ring(p, Direction::HostToGuest).wake_all()?;
            self.seg.ring(p, Direction::GuestToHost).wake_all()?;
        }
        Ok(())
    }
}

/// What a waiting host checks about one guest between naps: the entry is
/// still the one it was, and (every 100 ms) its holder still lives.
struct PeerWatch<'a> {
    peer_id: u8,
    epoch: u32,
    /// The entry was Reserved when the wait began: the guest it was
    /// reserved for attaching (one epoch later) is the same guest.
    reserved: bool,
    /// When the holder was last judged ([`ShmHost`] keeps it across calls).
    judged_ns: &'a mut u64,
}

impl<'a> PeerWatch<'a> {
    /// Watches `peer_id`, whose entry was read as `state` at `epoch` when
    /// the operation began; its holder was last judged at `judged_ns`.
    fn new(peer_id: u8, state: PeerState, epoch: u32, judged_ns: &'a mut u64) -> Self {
        // The clock is first read at the first check, so that an operation
        // that never waits never reads it.
        PeerWatch {
            peer_id,
            reserved: state == PeerState::Reserved,
            epoch,
            judged_ns,
        }
    }

    /// Fails with [`Error::PeerGone`] once the guest has gone: for a sender
    /// (`sending`), as soon as the entry is neither Attached nor Reserved or
    /// was claimed again; for a receiver, once also nothing is left to read.
    /// A guest whose process died counts as gone either way.
    fn check(&mut self, seg: &Segment, sending: bool) -> Result<()> {
        let p = self.peer_id;
        let gone = Err(Error::PeerGone { peer_id: p });
        let peer = seg.peer(p);
        let (state, epoch) = peer.state_and_epoch()?;
        if self.reserved && state == PeerState::Attached && epoch == self.epoch.wrapping_add(1) {
            self.reserved = false;
            self.epoch = epoch;
        }
        let present =
            matches!(state, PeerState::Attached | PeerState::Reserved) && epoch == self.epoch;
        if !present {
            if sending || !seg.ring(p, Direction::GuestToHost).has_data()? {
                return gone;
            }
            return Ok(());
        }
        // Every 100 ms at most, counted across calls: a host that waits in
        // slices of 100 ms or less (as the command does) still looks.
        let now = sys::monotonic_ns();
        if now.saturating_sub(*self.judged_ns) >= 100_000_000 {
            *self.judged_ns = now;
            let entry = peer.snapshot()?;
            let status = liveness::judge_peer(
                &entry,
                seg.file(),
                seg.layout.config.heartbeat_interval_ms,
                now,
            );
            if status == HolderStatus::Dead
                && (sending || !seg.ring(p, Direction::GuestToHost).has_data()?)
            {
                return gone;
            }
        }
        Ok(())
    }
}

impl Drop for ShmHost {
    /// The host that created the segment says goodbye and deletes its file.
    ///
    /// shm[impl shm.file.cleanup]
    fn drop(&mut self) {
        if !self.owns_segment {
            return;
        }
        let _ = self.shutdown();
        if let Some(m) = self.seg.backing.mmap() {
            // Delete only the file that was mapped, not one that has since
            // replaced it at the same path.
            if let Ok(()) | Err(Error::Truncated { .. }) = m.check_unchanged() {
                let _ = std::fs::remove_file(m.path());
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    // A guest in the middle of claiming an Empty entry holds its presence
    // lock and has recorded itself as holder; a reservation of that entry
    // would clear the record, so the host reserves another.
    // shm[verify shm.peer.reserve]
    #[test]
    fn a_reservation_leaves_an_entry_whose_presence_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reserve.shm");
        let config = SegmentConfig {
            max_guests: 2,
            ..SegmentConfig::default()
        };
        let mut host = ShmHost::create(&path, config).unwrap();
        let claimer = Segment::open_path(&path, false).unwrap();
        let file = claimer.backing.mmap().unwrap().segment_file();
        let presence = ByteLock::try_lock(file, lock_byte::guest_presence(1))
            .unwrap()
            .expect("the lock is free");
        assert_eq!(host.reserve_peer().unwrap(), 2);
        assert_eq!(claimer.peer(1).state().unwrap(), PeerState::Empty);
        drop(presence);
        host.release_peer(2).unwrap();
        assert_eq!(host.reserve_peer().unwrap(), 1);
    }
}
