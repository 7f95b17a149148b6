//! The host: creates a segment, sends to guests and receives from them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::desc::{Frame, MsgDesc};
use crate::error::{Direction, Error, Result};
use crate::header::{self, HeaderInfo};
use crate::layout::{SegmentConfig, SegmentLayout};
use crate::liveness::{self, HolderStatus};
use crate::mmap::{FileMode, MmapRegion};
use crate::peer::{PeerEntry, PeerState};
use crate::region::{HeapRegion, Region};
use crate::segment::{RoleLocks, Segment, ShmBacking, lock_byte, lock_byte::End};
use crate::sys::{self, ByteLock};
use crate::wait::{Backoff, Deadline, Step, WaitStrategy};
use crate::zerocopy::{Received, SlotLoan};

/// A guest's id: `1..=max_guests` (the host has none).
pub type PeerId = u8;

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
    head_cache: Vec<u32>,
    pool_hint: u32,
    next_peer: u8,
    strategy: WaitStrategy,
    any_locked: bool,
}

/// Options for [`ShmHost::create_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOptions {
    /// Permission bits of the new file.
    pub mode: FileMode,
}

impl ShmHost {
    /// Creates a file-backed segment at `path` (which must not exist) and
    /// becomes its host. Dropping the host deletes the file.
    ///
    /// shm[impl shm.file.create]
    pub fn create<P: AsRef<Path>>(path: P, config: SegmentConfig) -> Result<Self> {
        Self::create_with(path, config, CreateOptions::default())
    }

    /// [`ShmHost::create`] with options (file mode).
    pub fn create_with<P: AsRef<Path>>(
        path: P,
        config: SegmentConfig,
        options: CreateOptions,
    ) -> Result<Self> {
        let layout = config.layout()?;
        let size = usize::try_from(layout.total_size).map_err(|_| {
            Error::Layout(crate::layout::LayoutError {
                field: "total_size",
                value: layout.total_size,
                reason: "does not fit this machine's address space",
            })
        })?;
        let path = path.as_ref();
        let mmap = MmapRegion::create_with_mode(path, size, options.mode)?;
        let presence = ByteLock::try_lock(mmap.file(), lock_byte::HOST_PRESENCE)
            .ok()
            .flatten();
        let host = Self::initialize(ShmBacking::Mmap(mmap), layout);
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
        Self::initialize(ShmBacking::Heap(heap), layout)
    }

    /// Writes the header into fresh, zeroed memory and publishes it. The
    /// peer table, rings and pools need no writes: all-zero is their
    /// initial state (entries Empty, rings empty, every slot free).
    fn initialize(backing: ShmBacking, layout: SegmentLayout) -> Result<Self> {
        let region = backing.region();
        header::write(&region, &layout, sys::current_pid())?;
        header::publish(&region)?;
        let seg = Segment::open(backing)?;
        Ok(Self::with_segment(seg, true))
    }

    fn with_segment(seg: Segment, owns_segment: bool) -> Self {
        let guests = seg.layout.config.max_guests as usize;
        let mut host = ShmHost {
            seg,
            owns_segment,
            locks: RoleLocks::default(),
            _presence: None,
            head_cache: vec![0; guests],
            pool_hint: 0,
            next_peer: 1,
            strategy: WaitStrategy::default(),
            any_locked: false,
        };
        for p in 1..=guests as u8 {
            let h2g = host.seg.ring(p, Direction::HostToGuest).state();
            if let Ok(h2g) = h2g {
                host.head_cache[p as usize - 1] = h2g.head;
            }
        }
        host
    }

    /// Acts as the host of an existing segment without owning it: dropping
    /// it neither says goodbye nor deletes the file. For tools that send,
    /// receive or clean up on a segment another process created.
    pub fn open<P: AsRef<Path>>(path: P) -> Result<Self> {
        let seg = Segment::open_path(path.as_ref())?;
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
    }

    /// Checks that the segment file is still the one mapped, at full length.
    pub fn check_file(&self) -> Result<()> {
        match self.seg.backing.mmap() {
            Some(m) => m.check_unchanged(),
            None => Ok(()),
        }
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
        (1..=self.seg.layout.config.max_guests as u8)
            .map(|p| self.seg.peer(p).snapshot())
            .collect()
    }

    /// Sets an Empty entry aside for a guest the host is about to start;
    /// that guest attaches with [`crate::ShmGuest::attach_path_with_id`].
    ///
    /// shm[impl shm.peer.reserve]
    pub fn reserve_peer(&mut self) -> Result<PeerId> {
        for p in 1..=self.seg.layout.config.max_guests as u8 {
            if self
                .seg
                .peer(p)
                .transition(PeerState::Empty, PeerState::Reserved)?
            {
                self.seg.peer(p).set_holder(None, false)?;
                return Ok(p);
            }
        }
        Err(Error::HubFull {
            max_guests: self.seg.layout.config.max_guests,
        })
    }

    /// Returns a Reserved entry to Empty (the guest was never started).
    pub fn release_peer(&mut self, peer_id: PeerId) -> Result<()> {
        let p = self.seg.guest_id(peer_id.into())?;
        if self
            .seg
            .peer(p)
            .transition(PeerState::Reserved, PeerState::Empty)?
        {
            // Messages sent ahead to the guest that never came are dropped,
            // so that the next guest of this entry does not get them.
            let ring = self.seg.ring(p, Direction::HostToGuest);
            for desc in ring.drain()? {
                self.seg.discard(p, Direction::HostToGuest, &desc)?;
            }
            Ok(())
        } else {
            Err(Error::PeerState {
                peer_id: p,
                state: self.seg.peer(p).state()?,
                expected: "reserved",
            })
        }
    }

    fn lock_end(&mut self, p: u8, end: End, deadline: &mut Deadline) -> Result<()> {
        let what = || {
            let role = match end {
                End::HostToGuestProducer => "sending end",
                _ => "receiving end",
            };
            format!("the host's {role} for peer {p}")
        };
        self.locks
            .ensure(&self.seg, lock_byte::ring_end(p, end), deadline, what)
    }

    /// Sends `frame` to guest `peer_id` without waiting: a full ring or an
    /// exhausted pool is a retryable error and nothing is sent.
    ///
    /// shm[impl shm.send.backpressure]
    pub fn send(&mut self, peer_id: PeerId, frame: Frame) -> Result<()> {
        self.send_inner(
            peer_id,
            (frame.desc, frame.payload()),
            &mut Deadline::no_wait(),
        )
    }

    /// Sends `frame` to guest `peer_id` without waiting: a full ring or an
    /// exhausted pool is a retryable error and nothing is sent.
    pub fn try_send(&mut self, peer_id: PeerId, frame: &Frame) -> Result<()> {
        self.send_inner(
            peer_id,
            (frame.desc, frame.payload()),
            &mut Deadline::no_wait(),
        )
    }

    /// Sends `frame` to guest `peer_id`, waiting up to `timeout` for room
    /// in the ring and a free slot (`None`: as long as it takes).
    pub fn send_timeout(
        &mut self,
        peer_id: PeerId,
        frame: &Frame,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let mut deadline = Deadline::after(timeout);
        self.send_inner(peer_id, (frame.desc, frame.payload()), &mut deadline)
    }

    /// Runs a send operation as the host towards guest `peer_id`: takes the
    /// sending end's lock, checks that the entry accepts messages, and hands
    /// `op` a stop check that ends any wait if the guest goes away.
    fn sending<T>(
        &mut self,
        peer_id: PeerId,
        deadline: &mut Deadline,
        op: impl FnOnce(
            &Segment,
            u8,
            &mut u32,
            &mut u32,
            WaitStrategy,
            &mut Deadline,
            &mut dyn FnMut() -> Result<()>,
        ) -> Result<T>,
    ) -> Result<T> {
        let p = self.seg.guest_id(peer_id.into())?;
        self.lock_end(p, End::HostToGuestProducer, deadline)?;
        let peer = self.seg.peer(p);
        let state = peer.state()?;
        if !matches!(state, PeerState::Attached | PeerState::Reserved) {
            return Err(Error::PeerState {
                peer_id: p,
                state,
                expected: "attached or reserved",
            });
        }
        let mut watch = PeerWatch::new(p, state, peer.epoch()?);
        let seg = &self.seg;
        let mut stop = || watch.check(seg, true);
        op(
            seg,
            p,
            &mut self.head_cache[p as usize - 1],
            &mut self.pool_hint,
            self.strategy,
            deadline,
            &mut stop,
        )
    }

    fn send_inner(
        &mut self,
        peer_id: PeerId,
        message: (MsgDesc, &[u8]),
        deadline: &mut Deadline,
    ) -> Result<()> {
        self.sending(
            peer_id,
            deadline,
            |seg, p, head, hint, strategy, deadline, stop| {
                seg.send_frame(
                    p,
                    Direction::HostToGuest,
                    message,
                    head,
                    hint,
                    strategy,
                    deadline,
                    stop,
                )
            },
        )
    }

    /// Sends a message given as a descriptor and a borrowed payload (no
    /// [`Frame`] to build), waiting up to `timeout` like [`ShmHost::send_timeout`].
    pub fn send_with(
        &mut self,
        peer_id: PeerId,
        desc: MsgDesc,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.send_inner(peer_id, (desc, payload), &mut Deadline::after(timeout))
    }

    /// Sends `frames` to guest `peer_id` in order, publishing as many
    /// descriptors at once as the ring has room for (one index update and
    /// at most one wake per batch). Waits up to `timeout` for room and slots
    /// (`None`: as long as it takes); returns how many were sent.
    ///
    /// shm[impl shm.send.batch]
    pub fn send_batch(
        &mut self,
        peer_id: PeerId,
        frames: &[Frame],
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let mut deadline = Deadline::after(timeout);
        self.sending(
            peer_id,
            &mut deadline,
            |seg, p, head, hint, strategy, deadline, stop| {
                seg.send_frames(
                    p,
                    Direction::HostToGuest,
                    frames,
                    head,
                    hint,
                    strategy,
                    deadline,
                    stop,
                )
            },
        )
    }

    /// Lends a slot of the host's pool for a `len`-byte payload to guest
    /// `peer_id`, once its ring has room; write the payload in place, then
    /// [`ShmHost::commit`]. Waits up to `timeout` (`None`: as long as it takes).
    ///
    /// shm[impl shm.send.zero-copy]
    pub fn loan(
        &mut self,
        peer_id: PeerId,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<SlotLoan> {
        let mut deadline = Deadline::after(timeout);
        self.sending(
            peer_id,
            &mut deadline,
            |seg, p, head, hint, strategy, deadline, stop| {
                seg.loan(
                    p,
                    Direction::HostToGuest,
                    len,
                    head,
                    hint,
                    strategy,
                    deadline,
                    stop,
                )
            },
        )
    }

    /// Sends a loaned slot to guest `peer_id` (the guest the loan was made for).
    pub fn commit(&mut self, peer_id: PeerId, loan: SlotLoan) -> Result<()> {
        self.sending(
            peer_id,
            &mut Deadline::no_wait(),
            |seg, p, head, _, _, _, _| seg.commit(p, Direction::HostToGuest, loan, head),
        )
    }

    /// Receives the next message from guest `peer_id`, if one is queued.
    pub fn try_recv_from(&mut self, peer_id: PeerId) -> Result<Option<Frame>> {
        let p = self.seg.guest_id(peer_id.into())?;
        self.lock_end(p, End::GuestToHostConsumer, &mut Deadline::no_wait())?;
        self.pop_from(p)
    }

    /// Receives the next message from guest `peer_id`, waiting up to
    /// `timeout` (`None`: until one comes). `Ok(None)` when the time ran out;
    /// [`Error::PeerGone`] when the guest left and nothing more is queued.
    pub fn recv_from_timeout(
        &mut self,
        peer_id: PeerId,
        timeout: Option<Duration>,
    ) -> Result<Option<Frame>> {
        Ok(self
            .recv_from_in_place(peer_id, timeout)?
            .map(Received::into_frame))
    }

    /// Like [`ShmHost::recv_from_timeout`], but the payload stays in its
    /// slot until the returned value is dropped.
    ///
    /// shm[impl shm.recv.zero-copy]
    pub fn recv_from_in_place(
        &mut self,
        peer_id: PeerId,
        timeout: Option<Duration>,
    ) -> Result<Option<Received>> {
        let p = self.seg.guest_id(peer_id.into())?;
        let mut deadline = Deadline::after(timeout);
        self.lock_end(p, End::GuestToHostConsumer, &mut deadline)?;
        loop {
            if let Some(received) = self.pop_in_place(p)? {
                return Ok(Some(received));
            }
            if !self.wait_from(p, &mut deadline)? {
                return Ok(None);
            }
        }
    }

    /// Receives up to `max` queued messages from guest `peer_id` at once
    /// (one index update for all of them), waiting up to `timeout` for the
    /// first; `handle` gets each with its payload in place. Returns how many.
    pub fn recv_batch_from(
        &mut self,
        peer_id: PeerId,
        max: usize,
        timeout: Option<Duration>,
        mut handle: impl FnMut(Received),
    ) -> Result<usize> {
        let p = self.seg.guest_id(peer_id.into())?;
        let mut deadline = Deadline::after(timeout);
        self.lock_end(p, End::GuestToHostConsumer, &mut deadline)?;
        loop {
            let n = self
                .seg
                .take_batch(p, Direction::GuestToHost, max, &mut handle)?;
            if n > 0 {
                return Ok(n);
            }
            self.finish_goodbye(p)?;
            if !self.wait_from(p, &mut deadline)? {
                return Ok(0);
            }
        }
    }

    /// Waits until guest `p`'s ring has something to read; false on timeout.
    fn wait_from(&mut self, p: u8, deadline: &mut Deadline) -> Result<bool> {
        let ring = self.seg.ring(p, Direction::GuestToHost);
        if ring.has_data()? {
            return Ok(true);
        }
        let seg = &self.seg;
        let peer = seg.peer(p);
        let mut watch = PeerWatch::new(p, peer.state()?, peer.epoch()?);
        let mut stop = || watch.check(seg, false);
        ring.wait_for_data(self.strategy, deadline, &mut stop)
    }

    /// Pops one message from guest `p`, payload in place; finishes a
    /// guest's goodbye once everything it sent has been read.
    fn pop_in_place(&mut self, p: u8) -> Result<Option<Received>> {
        let ring = self.seg.ring(p, Direction::GuestToHost);
        match ring.pop()? {
            Some(bytes) => self
                .seg
                .decode_in_place(p, Direction::GuestToHost, &bytes)
                .map(Some),
            None => {
                self.finish_goodbye(p)?;
                Ok(None)
            }
        }
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

    fn pop_from(&mut self, p: u8) -> Result<Option<Frame>> {
        Ok(self.pop_in_place(p)?.map(Received::into_frame))
    }

    fn lock_all_receiving_ends(&mut self, deadline: &mut Deadline) -> Result<()> {
        if self.any_locked {
            return Ok(());
        }
        for p in 1..=self.seg.layout.config.max_guests as u8 {
            self.lock_end(p, End::GuestToHostConsumer, deadline)?;
        }
        self.any_locked = true;
        Ok(())
    }

    /// Takes the host's receiving role for every guest now rather than at
    /// the first receive, so that no other process receives as the host
    /// from here on; waits up to `timeout` for a process that holds one.
    pub fn take_receiving_role(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.lock_all_receiving_ends(&mut Deadline::after(timeout))
    }

    /// Receives the next message from any guest, if one is queued. Guests
    /// are served round-robin, so a busy guest cannot starve the others.
    ///
    /// shm[impl shm.host.fair]
    pub fn try_recv(&mut self) -> Result<Option<(PeerId, Frame)>> {
        self.lock_all_receiving_ends(&mut Deadline::no_wait())?;
        self.poll_all()
    }

    fn poll_all(&mut self) -> Result<Option<(PeerId, Frame)>> {
        let guests = self.seg.layout.config.max_guests as u8;
        for i in 0..guests {
            let p = (self.next_peer - 1 + i) % guests + 1;
            if let Some(frame) = self.pop_from(p)? {
                self.next_peer = p % guests + 1;
                return Ok(Some((p, frame)));
            }
        }
        Ok(None)
    }

    /// Receives the next message from any guest, waiting up to `timeout`
    /// (`None`: until one comes). `Ok(None)` when the time ran out.
    pub fn recv_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<(PeerId, Frame)>> {
        let mut deadline = Deadline::after(timeout);
        self.lock_all_receiving_ends(&mut deadline)?;
        let region = self.seg.region.clone();
        let bell = region.atomic_u32(header::field::HOST_DOORBELL)?;
        let waiting = region.atomic_u32(header::field::HOST_WAITING)?;
        let mut backoff = Backoff::new(self.strategy);
        loop {
            let seen = bell.load(Ordering::Acquire);
            if let Some(found) = self.poll_all()? {
                return Ok(Some(found));
            }
            match backoff.next_step(&mut deadline) {
                Step::Again | Step::Check => {}
                Step::Expired => return Ok(None),
                Step::Sleep(sleep) => {
                    // Set the flag with a full barrier, then look at every
                    // ring once more: a guest that published before this
                    // look is seen; one that publishes after it sees the
                    // flag and rings the bell (see `ring_host_doorbell`).
                    waiting.swap(1, Ordering::SeqCst);
                    let mut empty = true;
                    for p in 1..=self.seg.layout.config.max_guests as u8 {
                        empty &= self.seg.ring(p, Direction::GuestToHost).is_empty_now()?;
                    }
                    if empty {
                        sys::futex_wait(bell, seen, Some(sleep));
                    }
                    waiting.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// Finds guests whose holding process is gone (or, with heartbeats on,
    /// has stopped beating) and reclaims their entries: both rings emptied,
    /// every slot they held or were sent returned, entry Empty (the epoch
    /// moves on at the next attach). Unowned (scripted) entries are left
    /// alone. Returns the reclaimed peer ids.
    ///
    /// shm[impl shm.peer.reclaim]
    pub fn reclaim_dead(&mut self) -> Result<Vec<PeerId>> {
        let heartbeat = self.seg.layout.config.heartbeat_interval_ms;
        let mut reclaimed = Vec::new();
        for p in 1..=self.seg.layout.config.max_guests as u8 {
            let entry = self.seg.peer(p).snapshot()?;
            let file = self.seg.file().map(|f| &**f);
            let status = liveness::judge_peer(&entry, file, heartbeat, sys::monotonic_ns());
            if matches!(status, HolderStatus::Dead | HolderStatus::Stale)
                && self.reclaim_one(p, entry.epoch)?
            {
                reclaimed.push(p);
            }
        }
        Ok(reclaimed)
    }

    fn reclaim_one(&mut self, p: u8, epoch: u32) -> Result<bool> {
        // Hold both of the guest's ring ends so no other process acts as
        // that guest while its rings are emptied; skip it if one does.
        let mut guest_ends = RoleLocks::default();
        for end in [End::GuestToHostProducer, End::HostToGuestConsumer] {
            if guest_ends
                .ensure(
                    &self.seg,
                    lock_byte::ring_end(p, end),
                    &mut Deadline::no_wait(),
                    String::new,
                )
                .is_err()
            {
                return Ok(false);
            }
        }
        if self
            .lock_end(p, End::GuestToHostConsumer, &mut Deadline::no_wait())
            .is_err()
            || self
                .lock_end(p, End::HostToGuestProducer, &mut Deadline::no_wait())
                .is_err()
        {
            return Ok(false);
        }
        let peer = self.seg.peer(p);
        if peer.epoch()? != epoch || !peer.transition(PeerState::Attached, PeerState::Goodbye)? {
            return Ok(false);
        }
        for direction in [Direction::HostToGuest, Direction::GuestToHost] {
            let ring = self.seg.ring(p, direction);
            for desc in ring.drain()? {
                self.seg.discard(p, direction, &desc)?;
            }
            ring.clear_waiting()?;
        }
        // The dead guest produced on this ring: it may have died between
        // writing descriptors and publishing the tail.
        self.seg.ring(p, Direction::GuestToHost).settle_tail()?;
        for pool in 0..=self.seg.layout.config.max_guests as u8 {
            let leases = &self.seg.leases;
            self.seg
                .pool(pool)
                .free_held_by(p, &|slot| leases.contains(pool, slot))?;
        }
        // Whatever is still allocated in the dead guest's own pool was
        // either taken by it and never sent, or sent and already read by
        // the host: all of it goes back.
        let leases = &self.seg.leases;
        self.seg
            .pool(p)
            .free_all(&|slot| leases.contains(p, slot))?;
        self.seg.pool(p).clear_waiters()?;
        let h2g = self.seg.ring(p, Direction::HostToGuest).state()?;
        self.head_cache[p as usize - 1] = h2g.head;
        peer.set_holder(None, false)?;
        peer.set_state(PeerState::Empty)?;
        Ok(true)
    }

    /// Says goodbye: guests see the host has left once they have read what
    /// it sent, and sleepers are woken to notice.
    ///
    /// shm[impl shm.host.goodbye]
    pub fn shutdown(&mut self) -> Result<()> {
        self.seg
            .region
            .store_u32(header::field::HOST_GOODBYE, 1, Ordering::Release)?;
        for p in 1..=self.seg.layout.config.max_guests as u8 {
            self.seg.ring(p, Direction::HostToGuest).wake_all()?;
            self.seg.ring(p, Direction::GuestToHost).wake_all()?;
        }
        Ok(())
    }
}

/// What a waiting host checks about one guest between naps: the entry is
/// still the one it was, and (every 100 ms) its holder still lives.
struct PeerWatch {
    peer_id: u8,
    epoch: u32,
    /// The entry was Reserved when the wait began: the guest it was
    /// reserved for attaching (one epoch later) is the same guest.
    reserved: bool,
    last_liveness_ns: u64,
}

impl PeerWatch {
    /// Watches `peer_id`, whose entry was read as `state` at `epoch` when
    /// the operation began.
    fn new(peer_id: u8, state: PeerState, epoch: u32) -> Self {
        // The clock is first read at the first check, so that an operation
        // that never waits never reads it.
        PeerWatch {
            peer_id,
            reserved: state == PeerState::Reserved,
            epoch,
            last_liveness_ns: 0,
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
        let (state, epoch) = (peer.state()?, peer.epoch()?);
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
        let now = sys::monotonic_ns();
        if self.last_liveness_ns == 0 {
            self.last_liveness_ns = now;
        } else if now.saturating_sub(self.last_liveness_ns) >= 100_000_000 {
            self.last_liveness_ns = now;
            let entry = peer.snapshot()?;
            let file = seg.file().map(|f| &**f);
            let status =
                liveness::judge_peer(&entry, file, seg.layout.config.heartbeat_interval_ms, now);
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
