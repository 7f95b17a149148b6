//! The host: creates a segment and holds it for its life (reservations,
//! reclaims, goodbye), with a sending end ([`Sender`]) towards every guest
//! and the receiving ends from them ([`AnyReceiver`]). Its send and
//! receive methods are conveniences over those ends.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::desc::{Frame, MsgDesc};
use crate::end_core::Side;
use crate::error::{Error, Result};
use crate::header;
use crate::layout::{Direction, SegmentConfig, SegmentLayout};
use crate::liveness::HolderStatus;
use crate::locks::{ByteLock, Role, lock_byte, lock_byte::End};
use crate::mmap::{FileMode, MmapRegion, OwnerCheck};
use crate::party::{IntoPeerId, Party, PeerId, PeerState, QuarantineReason};
use crate::peer::{Holder, PeerEntry};
use crate::receiver::{AnyReceiver, Receiver};
use crate::reclaim::{ReclaimReport, SkipReason, Skipped};
use crate::region::{HeapRegion, Region};
use crate::segment::{Segment, ShmBacking};
use crate::sender::Sender;
use crate::status::SegmentStatus;
use crate::sys;
use crate::wait::{Deadline, Timeout, WaitStrategy};
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
    seg: Arc<Segment>,
    /// Whether this host created the segment: dropping such a host says
    /// goodbye and deletes the file.
    ownership: Ownership,
    _presence: Option<ByteLock>,
    /// The sending end towards each guest (guest `p` at `p - 1`).
    senders: Vec<Sender>,
    /// The receiving ends, from each guest and from all at once.
    inbox: AnyReceiver,
}

/// Whether a host owns its segment, which decides what dropping it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// It created the segment: dropped, it says goodbye and deletes the
    /// file.
    Owned,
    /// It opened one another process created (or persisted its own):
    /// dropped, it leaves the segment as it is.
    Opened,
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
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when a file is at `path`, saying what it
    /// is: a stale segment (its host dead and no guest alive, as a crash
    /// leaves one), which [`crate::admin::remove_unused_segment`] (or
    /// `shmhub rm`) removes, a segment in use, which
    /// [`crate::admin::remove_segment`] asks to empty and removes, or a
    /// file that is no segment, left alone; [`Error::Layout`] for a
    /// configuration that cannot be laid out; [`Error::NoSpace`] or
    /// [`Error::Io`] when the file cannot be made.
    ///
    /// ```
    /// use shmhub::{Error, SegmentConfig, ShmHost};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.shm");
    /// // A host that crashed: its segment stays behind.
    /// ShmHost::create(&path, SegmentConfig::default())?.persist()?;
    /// let again = ShmHost::create(&path, SegmentConfig::default());
    /// assert!(matches!(again, Err(Error::AlreadyExists { .. })));
    /// shmhub::admin::remove_unused_segment(&path)?;
    /// let host = ShmHost::create(&path, SegmentConfig::default())?;
    /// # drop(host);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
            MmapRegion::create_preallocated(path, size, options.mode)
        } else {
            MmapRegion::create_with_mode(path, size, options.mode)
        }
        .map_err(|e| match e {
            Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::AlreadyExists => {
                crate::listing::already_exists(path)
            }
            e => e,
        })?;
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
        Self::with_segment(seg, Ownership::Owned)
    }

    fn with_segment(seg: Segment, ownership: Ownership) -> Result<Self> {
        let seg = Arc::new(seg);
        Ok(ShmHost {
            senders: seg
                .layout
                .guests()
                .map(|p| Sender::new(&seg, p, Side::Host))
                .collect::<Result<_>>()?,
            inbox: AnyReceiver::new(&seg)?,
            seg,
            ownership,
            _presence: None,
        })
    }

    /// Acts as the host of an existing segment without owning it: dropping
    /// it neither says goodbye nor deletes the file. For tools that send,
    /// receive or clean up on a segment another process created.
    pub fn open<P: AsRef<Path>>(path: P) -> Result<Self> {
        Self::open_with(path.as_ref(), OwnerCheck::Required)
    }

    /// [`ShmHost::open`] with the owner check `owner`
    /// (see [`crate::OpenOptions`]).
    pub(crate) fn open_with(path: &Path, owner: OwnerCheck) -> Result<Self> {
        let seg = Segment::open_path(path, owner)?;
        Self::with_segment(seg, Ownership::Opened)
    }

    /// Acts as host on a region supplied by the caller, without owning it.
    pub fn open_region(region: Region) -> Result<Self> {
        let seg = Segment::open(ShmBacking::Region(region))?;
        Self::with_segment(seg, Ownership::Opened)
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
        self.ownership = Ownership::Opened;
        Ok(self.path().map(Path::to_path_buf))
    }

    /// The segment's layout.
    pub fn layout(&self) -> &SegmentLayout {
        &self.seg.layout
    }

    /// The segment file, if file-backed.
    pub fn path(&self) -> Option<&Path> {
        self.seg.path()
    }

    /// A view of the whole segment (for [`crate::ShmGuest::attach`]).
    pub fn region(&self) -> Region {
        self.seg.region.clone()
    }

    /// What the segment says about itself now: its header, the host's
    /// goodbye, its peer entries and their holders ([`SegmentStatus`]).
    ///
    /// ```
    /// use shmhub::{PeerState, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let guest = ShmGuest::attach(host.region())?;
    /// assert!(!host.status().goodbye_requested()?);
    /// assert_eq!(host.status().peer(guest.peer_id())?.state, PeerState::Attached);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    pub fn status(&self) -> SegmentStatus<'_> {
        SegmentStatus::new(&self.seg)
    }

    /// Sets how this host waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        for sender in &mut self.senders {
            sender.set_wait_strategy(strategy);
        }
        self.inbox.set_wait_strategy(strategy);
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

    /// A snapshot of every peer entry that can be read, in peer order:
    /// [`SegmentStatus::peers`]. An entry whose state word is none the
    /// protocol knows (a guest's stray or hostile write, `shm.peer.states`)
    /// is left out rather than failing the whole look:
    /// [`SegmentStatus::peer_table`] lists it apart.
    ///
    /// # Errors
    ///
    /// [`Error::Region`] if the peer table lies outside the mapping (a
    /// segment that shrank under it).
    pub fn peers(&self) -> Result<Vec<PeerEntry>> {
        self.status().peers()
    }

    /// Guest `peer_id` of this segment, checked: [`Error::InvalidPeerId`]
    /// for 0 or an id above `max_guests`.
    pub(crate) fn guest_id(&self, peer_id: impl IntoPeerId) -> Result<PeerId> {
        self.seg.guest_id(peer_id)
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

    /// Moves entry `p` from Empty to Reserved, recording this process as
    /// the reserver (so that a reservation whose process died can be
    /// released by a reclaim); false if it was not Empty, or if another
    /// process holds its presence lock: a guest in the middle of claiming
    /// it, whose holder record the reservation would overwrite.
    pub(crate) fn try_reserve(&mut self, p: PeerId) -> Result<bool> {
        let p = self.seg.guest_id(p)?;
        let peer = self.seg.peer(p);
        // An entry that cannot become Reserved is passed over without its
        // presence lock: the guest of a Reserved entry may be claiming it
        // this very moment, and would fail as Busy if it found the lock
        // taken by a reservation of a later entry that looked at it. An
        // entry whose state word is garbage is not free either, and is
        // passed over like any other taken entry (`shm.peer.quarantine`).
        match peer.state() {
            Ok(PeerState::Empty | PeerState::Goodbye) => {}
            Ok(_) | Err(Error::Corrupt(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let Ok(_presence) = self.seg.try_take(lock_byte::guest_presence(p)) else {
            return Ok(false);
        };
        // A guest that left with everything it sent read leaves the entry
        // free to reserve, even if no receive has looked at it since.
        self.seg.finish_read_goodbye(p)?;
        if !peer.transition(PeerState::Empty, PeerState::Reserved)? {
            return Ok(false);
        }
        peer.set_holder(Holder::Process(sys::current_pid()))?;
        // What waits in the ring was sent to an earlier guest of the
        // entry; the guest to come gets only what is sent now.
        self.seg.drop_stale_to_guest(p)?;
        self.seg.pool(Party::Host)?.recount_held(p);
        Ok(true)
    }

    /// Returns a Reserved entry to Empty (the guest was never started).
    pub fn release_peer(&mut self, peer_id: impl IntoPeerId) -> Result<()> {
        let p = self.seg.guest_id(peer_id)?;
        if self
            .seg
            .peer(p)
            .transition(PeerState::Reserved, PeerState::Empty)?
        {
            // Messages sent ahead to the guest that never came are dropped,
            // so that the next guest of this entry does not get them; not
            // while another process holds the ring's receiving role (a
            // guest claiming the entry the moment it became Empty, which
            // drains the ring itself): two consumers would move one head.
            self.seg.drop_stale_to_guest(p)?;
            Ok(())
        } else {
            Err(Error::PeerState {
                peer_id: p,
                state: self.seg.peer(p).state()?,
                expected: "reserved",
            })
        }
    }

    /// The host's sending end towards guest `peer_id`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`] for an id that is not a guest of this
    /// segment.
    #[inline]
    pub fn sender(&mut self, peer_id: impl IntoPeerId) -> Result<&mut Sender> {
        let p = self.seg.guest_id(peer_id)?;
        Ok(&mut self.senders[p.index()])
    }

    /// The host's receiving end from guest `peer_id` alone.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`] for an id that is not a guest of this
    /// segment.
    pub fn receiver(&mut self, peer_id: impl IntoPeerId) -> Result<&mut Receiver> {
        self.inbox.from_guest(peer_id)
    }

    /// A file descriptor that becomes readable when a message comes from
    /// any guest or a guest's process ends, for an event loop to wait on:
    /// [`AnyReceiver::readiness`].
    ///
    /// # Errors
    ///
    /// As [`AnyReceiver::readiness`].
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub fn readiness(&self) -> Result<crate::Readiness> {
        self.inbox.readiness()
    }

    /// The host's receiving end from every guest at once, round-robin.
    pub fn any_receiver(&mut self) -> &mut AnyReceiver {
        &mut self.inbox
    }

    /// Sends `frame` to guest `peer_id`, waiting as long as it takes for
    /// room (until the guest leaves): [`Sender::send`] with
    /// [`Timeout::Never`]. The frame may be given by value or by
    /// reference; its payload is copied into the segment either way.
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
    /// As [`Sender::send`], and [`Error::InvalidPeerId`].
    pub fn send(&mut self, peer_id: impl IntoPeerId, frame: impl Borrow<Frame>) -> Result<()> {
        self.send_timeout(peer_id, frame, Timeout::Never)
    }

    /// Sends `frame` to guest `peer_id` without waiting:
    /// [`Sender::send`] with [`Timeout::NoWait`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`]: the retryable [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] (nothing sent) where `send` would wait.
    pub fn try_send(&mut self, peer_id: impl IntoPeerId, frame: impl Borrow<Frame>) -> Result<()> {
        self.send_timeout(peer_id, frame, Timeout::NoWait)
    }

    /// Sends `frame` to guest `peer_id`, waiting up to `timeout`:
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub fn send_timeout(
        &mut self,
        peer_id: impl IntoPeerId,
        frame: impl Borrow<Frame>,
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        let frame = frame.borrow();
        self.sender(peer_id)?
            .send(frame.desc, frame.payload(), timeout)
    }

    /// Sends a descriptor and a borrowed payload to guest `peer_id`:
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub fn send_with(
        &mut self,
        peer_id: impl IntoPeerId,
        desc: MsgDesc,
        payload: &[u8],
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        self.sender(peer_id)?.send(desc, payload, timeout)
    }

    /// Sends `frames` to guest `peer_id` in order: [`Sender::send_batch`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send_batch`].
    pub fn send_batch(
        &mut self,
        peer_id: impl IntoPeerId,
        frames: &[Frame],
        timeout: impl Into<Timeout>,
    ) -> Result<usize> {
        self.sender(peer_id)?.send_batch(frames, timeout)
    }

    /// Lends a slot of the host's pool for a payload to guest `peer_id`:
    /// [`Sender::loan`].
    ///
    /// # Errors
    ///
    /// As [`Sender::loan`].
    pub fn loan(
        &mut self,
        peer_id: impl IntoPeerId,
        len: usize,
        timeout: impl Into<Timeout>,
    ) -> Result<SlotLoan> {
        self.sender(peer_id)?.loan(len, timeout)
    }

    /// Sends a loaned slot to guest `peer_id`: [`Sender::commit`].
    ///
    /// # Errors
    ///
    /// As [`Sender::commit`].
    pub fn commit(&mut self, peer_id: impl IntoPeerId, loan: SlotLoan) -> Result<()> {
        self.sender(peer_id)?.commit(loan)
    }

    /// Receives the next message from any guest, waiting as long as it
    /// takes, as a [`Frame`] (the payload copied out):
    /// [`AnyReceiver::recv`] with [`Timeout::Never`].
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
    /// As [`AnyReceiver::recv`].
    pub fn recv(&mut self) -> Result<(PeerId, Frame)> {
        loop {
            if let Some(found) = self.recv_timeout(Timeout::Never)? {
                return Ok(found);
            }
        }
    }

    /// Receives the next message from any guest, if one is queued:
    /// [`AnyReceiver::recv`] with [`Timeout::NoWait`].
    ///
    /// # Errors
    ///
    /// As [`AnyReceiver::recv`].
    pub fn try_recv(&mut self) -> Result<Option<(PeerId, Frame)>> {
        self.recv_timeout(Timeout::NoWait)
    }

    /// Receives the next message from any guest, waiting up to `timeout`:
    /// [`AnyReceiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`AnyReceiver::recv`].
    pub fn recv_timeout(&mut self, timeout: impl Into<Timeout>) -> Result<Option<(PeerId, Frame)>> {
        Ok(self
            .inbox
            .recv(timeout)?
            .map(|(from, received)| (from, received.into_frame())))
    }

    /// Receives the next message from guest `peer_id`, if one is queued:
    /// [`Receiver::recv`] with [`Timeout::NoWait`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn try_recv_from(&mut self, peer_id: impl IntoPeerId) -> Result<Option<Frame>> {
        self.recv_from_timeout(peer_id, Timeout::NoWait)
    }

    /// Receives the next message from guest `peer_id`, waiting up to
    /// `timeout`: [`Receiver::recv`], the payload copied out.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_from_timeout(
        &mut self,
        peer_id: impl IntoPeerId,
        timeout: impl Into<Timeout>,
    ) -> Result<Option<Frame>> {
        Ok(self
            .receiver(peer_id)?
            .recv(timeout)?
            .map(Received::into_frame))
    }

    /// Receives the next message from guest `peer_id`, waiting up to
    /// `timeout`, its payload in place: [`Receiver::recv`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_from_in_place(
        &mut self,
        peer_id: impl IntoPeerId,
        timeout: impl Into<Timeout>,
    ) -> Result<Option<Received>> {
        self.receiver(peer_id)?.recv(timeout)
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
    /// use shmhub::{HolderStatus, SegmentConfig, ShmGuest, ShmHost};
    /// use shmhub::admin::{SkipReason, Skipped};
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
        let mut report = ReclaimReport::default();
        for p in self.seg.layout.guests() {
            let entry = match self.seg.peer(p).snapshot() {
                Ok(entry) => entry,
                // A bad entry is its guest's doing: it is cut off, and the
                // scan goes on (`shm.peer.quarantine`).
                Err(e @ Error::Corrupt(_)) => {
                    self.seg.cut_off_for(p, QuarantineReason::Entry, e);
                    match self.seg.peer(p).snapshot() {
                        Ok(entry) => entry,
                        Err(_) => {
                            report.skipped.push(Skipped {
                                peer: p,
                                holder: HolderStatus::NoProcess,
                                reason: SkipReason::Quarantined,
                            });
                            continue;
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            let holder = self.seg.judge(&entry);
            let skip = match (entry.state, holder) {
                (PeerState::Empty, _) => continue,
                (PeerState::Reserved, _) => self.release_if_reserver_died(p, &entry)?,
                // Freed once everything its guest sent has been read: not
                // a reclaim (its guest left as it should), so not listed.
                (PeerState::Goodbye, _) if self.seg.finish_read_goodbye(p)? => continue,
                (PeerState::Goodbye, _) => Some(SkipReason::Leaving),
                (PeerState::Attached, HolderStatus::Dead | HolderStatus::Stale) => {
                    self.reclaim_one(p, entry.epoch, holder)?
                }
                (PeerState::Attached, HolderStatus::Scripted) => Some(SkipReason::Scripted),
                (PeerState::Attached, HolderStatus::Alive) => Some(SkipReason::Alive),
                // An Attached entry is never judged vacant.
                (PeerState::Attached, HolderStatus::NoProcess) => Some(SkipReason::Changed),
                (PeerState::Quarantined, HolderStatus::Alive | HolderStatus::Stale) => {
                    Some(SkipReason::Quarantined)
                }
                (PeerState::Quarantined, _) => self.free_quarantined(p, entry.epoch)?,
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

    /// Returns Reserved entry `p` to Empty if the process that reserved it
    /// has died (a `shmhub spawn` killed before its program attached, say):
    /// nobody would ever release it. `Some(Reserved)` while the reserver
    /// lives, or while a guest is claiming the entry (it holds the
    /// presence lock), or if the entry moved meanwhile.
    fn release_if_reserver_died(
        &mut self,
        p: PeerId,
        entry: &PeerEntry,
    ) -> Result<Option<SkipReason>> {
        let reserver_dead = entry.held
            && entry.pid != 0
            && sys::process_liveness(entry.pid, entry.start_time) == sys::Liveness::Dead;
        if !reserver_dead {
            return Ok(Some(SkipReason::Reserved));
        }
        let Ok(_presence) = self.seg.try_take(lock_byte::guest_presence(p)) else {
            return Ok(Some(SkipReason::Reserved));
        };
        let peer = self.seg.peer(p);
        if !peer.transition_at(entry.epoch, PeerState::Reserved, PeerState::Empty)? {
            return Ok(Some(SkipReason::Reserved));
        }
        // As a release does: what was sent ahead is for nobody now.
        self.seg.drop_stale_to_guest(p)?;
        peer.set_holder(Holder::Nobody)?;
        Ok(None)
    }

    /// Takes every role lock on guest `p`'s rings, the guest's ends and
    /// the host's, without waiting, so that nobody acts as either side of
    /// them while they are emptied; the guest's locks come back, to be
    /// held meanwhile. Why not, if one is held elsewhere (`holder`: how
    /// the guest's holder was judged).
    fn take_roles_of(
        &mut self,
        p: PeerId,
        holder: HolderStatus,
    ) -> Result<std::result::Result<[Role; 2], SkipReason>> {
        let mut guest_ends = [End::GuestToHostProducer, End::HostToGuestConsumer]
            .map(|end| Role::new(lock_byte::ring_end(p, end)));
        for role in &mut guest_ends {
            if role
                .ensure(self.seg.lock_file(), &mut Deadline::no_wait(), String::new)
                .is_err()
            {
                // A stale holder lives: the locks are most likely its own.
                return Ok(Err(match holder {
                    HolderStatus::Stale => SkipReason::StaleHoldsRoles,
                    _ => SkipReason::DeadRolesInUse,
                }));
            }
        }
        let index = p.index();
        if !self.inbox.from_guest(p)?.try_take_role() || !self.senders[index].try_take_role() {
            return Ok(Err(SkipReason::HostRolesInUse));
        }
        Ok(Ok(guest_ends))
    }

    /// Reclaims guest `p`, judged dead or stale (`holder`) at `epoch`;
    /// `Some(reason)` when it has to be left alone.
    fn reclaim_one(
        &mut self,
        p: PeerId,
        epoch: u32,
        holder: HolderStatus,
    ) -> Result<Option<SkipReason>> {
        let _guest_ends = match self.take_roles_of(p, holder)? {
            Ok(roles) => roles,
            Err(reason) => return Ok(Some(reason)),
        };
        let index = p.index();
        let peer = self.seg.peer(p);
        if !peer.transition_at(epoch, PeerState::Attached, PeerState::Goodbye)? {
            return Ok(Some(SkipReason::Changed));
        }
        self.seg
            .consumer(p, Direction::HostToGuest)?
            .discard_all()?;
        self.inbox.from_guest(p)?.discard_all()?;
        for direction in [Direction::HostToGuest, Direction::GuestToHost] {
            self.seg.ring(p, direction).clear_waiting()?;
        }
        // The dead guest produced on this ring: it may have died between
        // writing descriptors and publishing the tail.
        self.seg.ring(p, Direction::GuestToHost).settle_tail()?;
        self.seg.free_guest_slots(p)?;
        self.seg.pool(Party::Host)?.recount_held(p);
        self.senders[index].resync();
        peer.set_holder(Holder::Nobody)?;
        // A compare-and-swap like every other move: a plain claim cannot
        // take the entry while this holds its receiving role (see
        // `ShmGuest::claim`), and if anything else moved it, it stays.
        peer.transition_at(epoch, PeerState::Goodbye, PeerState::Empty)?;
        Ok(None)
    }

    /// Frees Quarantined entry `p`, whose holder is gone, at `epoch`. Its
    /// rings start over, zeroed: nothing in them is read, since the guest
    /// may have written anything there (a descriptor naming another
    /// guest's slot, say). The host's slots go back as the host pool's
    /// own records of who holds each say, and so does the guest's own
    /// pool, but for what this process still reads. An entry that cannot
    /// be cleaned stays Quarantined.
    ///
    /// shm[impl shm.peer.quarantine]
    fn free_quarantined(&mut self, p: PeerId, epoch: u32) -> Result<Option<SkipReason>> {
        let _guest_ends = match self.take_roles_of(p, HolderStatus::Dead)? {
            Ok(roles) => roles,
            Err(reason) => return Ok(Some(reason)),
        };
        let seg = &*self.seg;
        let cleaned = (|| -> Result<()> {
            for direction in [Direction::HostToGuest, Direction::GuestToHost] {
                seg.ring(p, direction).reset()?;
            }
            seg.free_guest_slots(p)?;
            // The frees counted the host's slots returned into the ring
            // just zeroed: without a recount the entry would show
            // 2^32 - n of them held until its next claim.
            seg.pool(Party::Host)?.recount_held(p);
            Ok(())
        })();
        if cleaned.is_err() {
            return Ok(Some(SkipReason::Quarantined));
        }
        self.senders[p.index()].resync();
        let peer = self.seg.peer(p);
        peer.set_holder(Holder::Nobody)?;
        if !peer.release_quarantined(epoch)? {
            return Ok(Some(SkipReason::Changed));
        }
        self.seg.cut_off.remove(p);
        Ok(None)
    }

    /// Cuts guest `peer_id` off now (`shm.peer.quarantine`, reason
    /// [`QuarantineReason::Evicted`]): from here on no receive looks at
    /// its ring and every send to it, receive from it, and its own sends
    /// and receives, fail with [`Error::Quarantined`]. Its entry is freed
    /// at once if its holder was gone (dead, or none) when the call began,
    /// and otherwise by the first [`ShmHost::reclaim_dead`] after it is: a
    /// process that lives may still write to the entry, which no other
    /// guest may have meanwhile. Returns whether the entry was freed. (A
    /// holder that lived when it was cut off keeps the entry through this
    /// call even if, woken by it, it ends at once: what the call returns
    /// does not race that process's exit.)
    ///
    /// An entry that is Quarantined already is only freed, if it can be.
    ///
    /// ```
    /// use shmhub::{Error, Frame, MsgDesc, PeerState, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let id = guest.peer_id();
    /// // This process holds the guest, so its entry stays until it is gone.
    /// assert!(!host.evict(id)?);
    /// assert_eq!(host.status().peer(id)?.state, PeerState::Quarantined);
    /// let refused = guest.send(Frame::new(MsgDesc::default(), b"hi".to_vec()));
    /// assert!(matches!(refused, Err(Error::Quarantined { .. })));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPeerId`] for an id that is not a guest of this
    /// segment; [`Error::PeerState`] for an entry nobody holds (Empty or
    /// Reserved).
    ///
    /// shm[impl shm.peer.quarantine]
    pub fn evict(&mut self, peer_id: impl IntoPeerId) -> Result<bool> {
        let p = self.seg.guest_id(peer_id)?;
        let peer = self.seg.peer(p);
        match peer.state() {
            Ok(PeerState::Empty | PeerState::Reserved) => {
                return Err(Error::PeerState {
                    peer_id: p,
                    state: peer.state()?,
                    expected: "attached, goodbye or quarantined",
                });
            }
            Ok(PeerState::Quarantined) => {
                self.seg.cut_off.insert(p);
            }
            _ => {
                // Judged before the guest is woken to notice, which it may
                // do by ending at once.
                let lived = peer.snapshot().is_ok_and(|entry| {
                    matches!(
                        self.seg.judge(&entry),
                        HolderStatus::Alive | HolderStatus::Stale
                    )
                });
                self.seg.cut_off.insert(p);
                peer.quarantine(QuarantineReason::Evicted)?;
                for direction in [Direction::GuestToHost, Direction::HostToGuest] {
                    self.seg.ring(p, direction).wake_all()?;
                }
                if lived {
                    return Ok(false);
                }
            }
        }
        let entry = peer.snapshot()?;
        let holder = self.seg.judge(&entry);
        if entry.state != PeerState::Quarantined
            || matches!(holder, HolderStatus::Alive | HolderStatus::Stale)
        {
            return Ok(false);
        }
        Ok(self.free_quarantined(p, entry.epoch)?.is_none())
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

impl Drop for ShmHost {
    /// The host that created the segment says goodbye and deletes its file.
    ///
    /// shm[impl shm.file.cleanup]
    /// shm[impl shm.file.fork]
    fn drop(&mut self) {
        // A copy of this process made by `fork` leaves the segment to the
        // process that created it (`shm.file.fork`).
        if self.ownership == Ownership::Opened || !self.seg.leases.in_opening_process() {
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
    use crate::party::id;
    use crate::testing::TwoOpenings;

    // A guest in the middle of claiming an Empty entry holds its presence
    // lock and has recorded itself as holder; a reservation of that entry
    // would clear the record, so the host reserves another.
    // shm[verify shm.peer.reserve]
    #[test]
    fn a_reservation_leaves_an_entry_whose_presence_lock_is_held() {
        let mut openings = TwoOpenings::new("reserve.shm");
        let (host, claimer) = (&mut openings.host, &openings.other);
        let file = claimer.backing.mmap().unwrap().segment_file();
        let presence = ByteLock::try_lock(file, lock_byte::guest_presence(id(1)))
            .unwrap()
            .expect("the lock is free");
        assert_eq!(host.reserve_peer().unwrap(), 2);
        assert_eq!(claimer.peer(id(1)).state().unwrap(), PeerState::Empty);
        drop(presence);
        host.release_peer(2).unwrap();
        assert_eq!(host.reserve_peer().unwrap(), 1);
    }

    // Releasing a reservation drops what was sent ahead, but never under a
    // receiver another process is: that receiver (a guest claiming the
    // entry as it turns Empty) drains the ring itself, and two consumers
    // would each move the one head.
    // shm[verify shm.peer.reserve]
    #[test]
    fn a_release_leaves_the_ring_to_a_receiver_another_process_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.shm");
        let mut host = ShmHost::create(&path, SegmentConfig::default()).unwrap();
        let p = host.reserve_peer().unwrap();
        host.try_send(p, Frame::new(MsgDesc::default(), b"ahead".to_vec()))
            .unwrap();
        let other = Segment::open_path(&path, OwnerCheck::Required).unwrap();
        let role = other
            .try_take(lock_byte::ring_end(p, End::HostToGuestConsumer))
            .expect("the role is free");
        host.release_peer(p).unwrap();
        let queued = other.ring(p, Direction::HostToGuest).state().unwrap();
        assert_eq!(
            queued.len(),
            Some(1),
            "the release drained under a receiver"
        );
        drop(role);
        // With nobody receiving, a reservation and its release drain it.
        assert_eq!(host.reserve_peer().unwrap(), p);
        host.release_peer(p).unwrap();
        let queued = other.ring(p, Direction::HostToGuest).state().unwrap();
        assert_eq!(queued.len(), Some(0));
    }
}
