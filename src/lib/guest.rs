//! A guest: claims a peer entry and holds it for its life (release to
//! scripts, detach), with a sending end ([`Sender`]) towards the host and
//! a receiving end ([`Receiver`]) from it. Its send and receive methods
//! are conveniences over those ends.

use std::borrow::Borrow;
use std::path::Path;
use std::sync::Arc;

use crate::desc::Frame;
use crate::end_core::Side;
use crate::error::{Error, Result};
use crate::layout::{Direction, SegmentLayout};
use crate::liveness;
use crate::locks::{ByteLock, lock_byte, lock_byte::End};
use crate::mmap::OwnerCheck;
use crate::party::{IntoPeerId, Party, PeerId, PeerState};
use crate::peer::{Holder, PresenceLock};
use crate::ready::Mark;
use crate::receiver::Receiver;
use crate::region::Region;
use crate::segment::{HeldElsewhere, Segment, ShmBacking};
use crate::sender::Sender;
use crate::status::SegmentStatus;
use crate::wait::{Timeout, WaitStrategy};
use crate::watch::{KeepAlive, check_still_mine};
use crate::zerocopy::{Received, SlotLoan};

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
    sender: Sender,
    receiver: Receiver,
    /// Declared last, so dropped last: the ends have let go of their roles
    /// by the time it detaches.
    membership: Membership,
}

/// A guest's hold on its entry, for as long as the guest (or, split, both
/// of its ends) lives: dropped, an owned claim detaches.
#[derive(Debug)]
struct Membership {
    seg: Arc<Segment>,
    peer_id: PeerId,
    epoch: u32,
    /// Whose claim the entry is: dropping this guest's own detaches.
    owner: Owner,
    _presence: Option<ByteLock>,
}

/// Whose claim a guest's entry is, which decides whether dropping the
/// guest detaches and which pools detaching frees slots in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// This guest claimed it.
    ThisGuest,
    /// It was claimed for scripts: taken up by this guest, or handed over
    /// to them ([`ShmGuest::release_to_script`]).
    Scripts,
}

/// The receiving role of an entry's host-to-guest ring as a claim took
/// it: `Ok(None)` on a segment without a file, `Err` while another
/// process holds it.
type RoleTaken = std::result::Result<Option<ByteLock>, HeldElsewhere>;

#[derive(Clone, Copy)]
enum Claim {
    AnyEmpty,
    /// The entry of this guest, checked to be one of the segment's.
    Reserved(PeerId),
}

impl ShmGuest {
    /// Attaches to the segment in `region` (heap, or a mapping the caller
    /// keeps), claiming the first Empty entry.
    pub fn attach(region: Region) -> Result<Self> {
        Self::claim(Segment::open(ShmBacking::Region(region))?, Claim::AnyEmpty)
    }

    /// Attaches to the segment in `region` in the entry the host reserved.
    pub fn attach_with_id(region: Region, peer_id: impl IntoPeerId) -> Result<Self> {
        Self::claim_reserved(Segment::open(ShmBacking::Region(region))?, peer_id)
    }

    /// Maps the segment file at `path`, validates it, and claims the first
    /// Empty entry.
    ///
    /// shm[impl shm.file.attach]
    pub fn attach_path<P: AsRef<Path>>(path: P) -> Result<Self> {
        Self::claim(
            Segment::open_path(path.as_ref(), OwnerCheck::Required)?,
            Claim::AnyEmpty,
        )
    }

    /// Maps the segment file at `path` and takes the entry `peer_id`, which
    /// the host must have reserved ([`crate::ShmHost::reserve_peer`]).
    ///
    /// shm[impl shm.peer.reserve]
    pub fn attach_path_with_id<P: AsRef<Path>>(path: P, peer_id: impl IntoPeerId) -> Result<Self> {
        Self::claim_reserved(
            Segment::open_path(path.as_ref(), OwnerCheck::Required)?,
            peer_id,
        )
    }

    /// Acts as guest `peer_id`, an entry already Attached (typically claimed
    /// earlier for scripted use), without owning it: dropping it does not
    /// detach. Each ring end is locked on first use, so two processes never
    /// send (or receive) as the same guest at once.
    pub fn resume<P: AsRef<Path>>(path: P, peer_id: impl IntoPeerId) -> Result<Self> {
        Self::resume_opened(
            Segment::open_path(path.as_ref(), OwnerCheck::Required)?,
            peer_id,
        )
    }

    /// [`ShmGuest::attach_path`] (or, with `peer_id`, [`ShmGuest::attach_path_with_id`])
    /// with the owner check `owner` (see [`crate::OpenOptions`]).
    pub(crate) fn attach_path_with(
        path: &Path,
        peer_id: Option<impl IntoPeerId>,
        owner: OwnerCheck,
    ) -> Result<Self> {
        let seg = Segment::open_path(path, owner)?;
        match peer_id {
            Some(p) => Self::claim_reserved(seg, p),
            None => Self::claim(seg, Claim::AnyEmpty),
        }
    }

    /// [`ShmGuest::resume`] with the owner check `owner`.
    pub(crate) fn resume_with(
        path: &Path,
        peer_id: impl IntoPeerId,
        owner: OwnerCheck,
    ) -> Result<Self> {
        Self::resume_opened(Segment::open_path(path, owner)?, peer_id)
    }

    fn resume_opened(seg: Segment, peer_id: impl IntoPeerId) -> Result<Self> {
        let p = seg.guest_id(peer_id)?;
        let (state, epoch) = seg.peer(p).state_and_epoch()?;
        if state != PeerState::Attached {
            return Err(Error::PeerState {
                peer_id: p,
                state,
                expected: "attached",
            });
        }
        Self::new(seg, p, epoch, Owner::Scripts, None)
    }

    fn new(
        seg: Segment,
        peer_id: PeerId,
        epoch: u32,
        owner: Owner,
        presence: Option<ByteLock>,
    ) -> Result<Self> {
        let seg = Arc::new(seg);
        Ok(ShmGuest {
            sender: Sender::new(&seg, peer_id, Side::Guest { epoch })?,
            receiver: Receiver::new(&seg, peer_id, Side::Guest { epoch })?,
            membership: Membership {
                seg,
                peer_id,
                epoch,
                owner,
                _presence: presence,
            },
        })
    }

    /// Claims the entry `peer_id`, which the host reserved, once the id is
    /// checked to name a guest of `seg`.
    fn claim_reserved(seg: Segment, peer_id: impl IntoPeerId) -> Result<Self> {
        let p = seg.guest_id(peer_id)?;
        Self::claim(seg, Claim::Reserved(p))
    }

    /// Claims an entry, holding its presence lock (file-backed segments).
    ///
    /// shm[impl shm.peer.claim]
    fn claim(seg: Segment, claim: Claim) -> Result<Self> {
        let candidates: Vec<PeerId> = match claim {
            Claim::AnyEmpty => seg.layout.guests().collect(),
            Claim::Reserved(p) => {
                let state = seg.peer(p).state()?;
                if state != PeerState::Reserved {
                    return Err(Error::PeerState {
                        peer_id: p,
                        state,
                        expected: "reserved",
                    });
                }
                vec![p]
            }
        };
        for p in candidates {
            if let Some((epoch, presence)) = Self::try_claim(&seg, p, claim)? {
                return Self::new(seg, p, epoch, Owner::ThisGuest, presence);
            }
        }
        match claim {
            Claim::AnyEmpty => Err(Error::HubFull {
                max_guests: seg.layout.config.max_guests,
            }),
            Claim::Reserved(p) => Err(Error::PeerState {
                peer_id: p,
                state: seg.peer(p).state()?,
                expected: "reserved",
            }),
        }
    }

    /// Tries to claim entry `p`: its epoch and presence lock if this guest
    /// now holds it, `None` to try the next candidate. A reserved claim
    /// fails outright where a plain one passes on.
    fn try_claim(
        seg: &Segment,
        p: PeerId,
        claim: Claim,
    ) -> Result<Option<(u32, Option<ByteLock>)>> {
        let Ok(presence) = seg.try_take(lock_byte::guest_presence(p)) else {
            return match claim {
                Claim::Reserved(_) => Err(Error::Busy {
                    what: format!("peer {p} (a live process still holds its entry)"),
                }),
                Claim::AnyEmpty => Ok(None),
            };
        };
        // An entry whose state word is garbage is no more claimable than a
        // taken one: a plain claim passes on to the next
        // (`shm.peer.quarantine`), a reserved one fails naming the entry
        // and its word.
        let state = match seg.peer(p).state() {
            Ok(state) => state,
            Err(Error::Corrupt(_)) if matches!(claim, Claim::AnyEmpty) => return Ok(None),
            Err(e) => return Err(e),
        };
        let receiving = Self::receiving_role(seg, p, claim, state);
        if !Self::claimable(seg, p, claim, state, &receiving)? {
            return Ok(None);
        }
        let lock = match presence {
            Some(_) => PresenceLock::Kept,
            None => PresenceLock::NotKept,
        };
        let Some(epoch) = Self::take_entry(seg, p, claim, lock, &receiving)? else {
            return Ok(None);
        };
        if let Claim::AnyEmpty = claim {
            // Nothing in the host-to-guest ring of a free entry is for this
            // guest (a reserved one keeps what the host sent ahead). Left as
            // it is while another process holds the ring's receiving role.
            if receiving.is_ok() {
                seg.drain_stale_to_guest(p)?;
            }
            drop(receiving);
            seg.pool(Party::Host)?.recount_held(p);
        }
        Ok(Some((epoch, presence)))
    }

    /// The receiving role of entry `p`'s host-to-guest ring, for a claim
    /// of the entry found in `state`.
    ///
    /// A plain claim takes it first, to drop what waits there. A reclaim
    /// holds that role from its first step to its last, and moves the
    /// entry through Goodbye: a Goodbye entry whose role another process
    /// holds may be under reclaim, whose last step stores Empty over
    /// whatever claimed it, so it is skipped. (Only for an entry that may
    /// be claimed: a live or scripted guest's process may be about to take
    /// that role itself.)
    fn receiving_role(seg: &Segment, p: PeerId, claim: Claim, state: PeerState) -> RoleTaken {
        match (claim, state) {
            (Claim::AnyEmpty, PeerState::Empty | PeerState::Goodbye) => {
                seg.try_take(lock_byte::ring_end(p, End::HostToGuestConsumer))
            }
            _ => Ok(None),
        }
    }

    /// Whether `claim` may take entry `p`, found in `state`.
    fn claimable(
        seg: &Segment,
        p: PeerId,
        claim: Claim,
        state: PeerState,
        receiving: &RoleTaken,
    ) -> Result<bool> {
        Ok(match (claim, state) {
            (Claim::Reserved(_), state) => state == PeerState::Reserved,
            (Claim::AnyEmpty, PeerState::Empty) => true,
            (Claim::AnyEmpty, PeerState::Goodbye) => Self::goodbye_done(seg, p, receiving)?,
            (Claim::AnyEmpty, _) => false,
        })
    }

    /// Whether Goodbye entry `p` is free: its guest-to-host ring is empty
    /// and nobody is reclaiming it (this claim holds the receiving role a
    /// reclaim would).
    fn goodbye_done(seg: &Segment, p: PeerId, receiving: &RoleTaken) -> Result<bool> {
        Ok(receiving.is_ok() && seg.ring(p, Direction::GuestToHost).state()?.is_empty())
    }

    /// Moves entry `p` to Attached as `claim` says, with this process as
    /// its holder: the new epoch, or `None` if the entry moved under the
    /// claim.
    fn take_entry(
        seg: &Segment,
        p: PeerId,
        claim: Claim,
        presence: PresenceLock,
        receiving: &RoleTaken,
    ) -> Result<Option<u32>> {
        let peer = seg.peer(p);
        if presence == PresenceLock::Kept {
            // Recorded before the entry is Attached, so that a guest killed
            // right after the change is judged by its (then released)
            // presence lock and reclaimed, instead of looking like a
            // scripted claim. An entry that is not Attached is judged by
            // nobody, and only a claim (which needs the presence lock held
            // here) makes it Attached.
            peer.set_holder(Holder::this_process(PresenceLock::Kept))?;
        }
        let claimed = match claim {
            Claim::Reserved(_) => peer.claim(PeerState::Reserved)?,
            Claim::AnyEmpty => match peer.claim(PeerState::Empty)? {
                None if Self::goodbye_done(seg, p, receiving)? => peer.claim(PeerState::Goodbye)?,
                claimed => claimed,
            },
        };
        let Some(epoch) = claimed else {
            // The entry moved under the claim (a goodbye finished): the
            // record made for it goes, as the entry is not this guest's.
            if presence == PresenceLock::Kept {
                peer.set_holder(Holder::Nobody)?;
            }
            return Ok(None);
        };
        peer.record_claim(Holder::this_process(presence))?;
        Ok(Some(epoch))
    }

    /// This guest's id.
    pub fn peer_id(&self) -> PeerId {
        self.membership.peer_id
    }

    /// The epoch of this guest's claim.
    pub fn epoch(&self) -> u32 {
        self.membership.epoch
    }

    /// The segment's layout.
    pub fn layout(&self) -> &SegmentLayout {
        &self.membership.seg.layout
    }

    /// The segment file, if file-backed.
    pub fn path(&self) -> Option<&Path> {
        self.membership.seg.path()
    }

    /// What the segment says about itself now: its header, whether the
    /// host is there, its peer entries and their holders
    /// ([`SegmentStatus`]).
    ///
    /// ```
    /// use shmhub::{HostStatus, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let guest = ShmGuest::attach(host.region())?;
    /// assert_eq!(guest.status().host_status()?, HostStatus::Alive);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    pub fn status(&self) -> SegmentStatus<'_> {
        SegmentStatus::new(&self.membership.seg)
    }

    /// Sets how this guest waits (default: adaptive).
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.sender.set_wait_strategy(strategy);
        self.receiver.set_wait_strategy(strategy);
    }

    /// Checks that the segment file is still the one mapped, at full length.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::Replaced`] or [`Error::Removed`] when
    /// another process changed the file; [`Error::Io`] if it cannot be read.
    pub fn check_file(&self) -> Result<()> {
        self.membership.seg.check_file()
    }

    /// Refreshes this guest's heartbeat.
    pub fn beat(&mut self) -> Result<()> {
        self.receiver.beat()
    }

    /// A file descriptor that becomes readable when a message comes from
    /// the host or the host's process ends, for an event loop to wait on:
    /// [`Receiver::readiness`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::readiness`].
    #[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
    pub fn readiness(&self) -> Result<crate::Readiness> {
        self.receiver.readiness()
    }

    /// This guest's sending end, towards the host.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// This guest's receiving end, from the host.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.receiver
    }

    /// Sends `frame` to the host, waiting as long as it takes for room
    /// (until the host leaves): [`Sender::send`] with [`Timeout::Never`].
    /// The frame may be given by value or by reference.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// guest.send(Frame::new(MsgDesc::default(), vec![5u8; 300]))?;
    /// let (from, frame) = host.recv()?;
    /// assert_eq!((from, frame.payload()), (guest.peer_id(), &[5u8; 300][..]));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub fn send(&mut self, frame: impl Borrow<Frame>) -> Result<()> {
        self.send_timeout(frame, Timeout::Never)
    }

    /// Sends `frame` to the host without waiting: [`Sender::send`] with
    /// [`Timeout::NoWait`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`]: the retryable [`Error::RingFull`] or
    /// [`Error::PoolExhausted`] (nothing sent) where `send` would wait.
    pub fn try_send(&mut self, frame: impl Borrow<Frame>) -> Result<()> {
        self.send_timeout(frame, Timeout::NoWait)
    }

    /// Sends `frame` to the host, waiting up to `timeout`:
    /// [`Sender::send`].
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub fn send_timeout(
        &mut self,
        frame: impl Borrow<Frame>,
        timeout: impl Into<Timeout>,
    ) -> Result<()> {
        let frame = frame.borrow();
        self.sender.send(frame.desc, frame.payload(), timeout)
    }

    /// Lends a slot of this guest's pool for a payload to the host:
    /// [`Sender::loan`].
    ///
    /// # Errors
    ///
    /// As [`Sender::loan`].
    pub fn loan(&mut self, len: usize, timeout: impl Into<Timeout>) -> Result<SlotLoan> {
        self.sender.loan(len, timeout)
    }

    /// Sends a loaned slot to the host: [`Sender::commit`].
    ///
    /// # Errors
    ///
    /// As [`Sender::commit`].
    pub fn commit(&mut self, loan: SlotLoan) -> Result<()> {
        self.sender.commit(loan)
    }

    /// Receives the next message, waiting as long as it takes, as a
    /// [`Frame`] (the payload copied out): [`Receiver::recv`] with
    /// [`Timeout::Never`].
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
    /// As [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.recv_timeout(Timeout::Never)? {
                return Ok(frame);
            }
        }
    }

    /// Receives the next message if one is queued: [`Receiver::recv`] with
    /// [`Timeout::NoWait`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn try_recv(&mut self) -> Result<Option<Frame>> {
        self.recv_timeout(Timeout::NoWait)
    }

    /// Receives the next message, waiting up to `timeout`:
    /// [`Receiver::recv`], the payload copied out.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: impl Into<Timeout>) -> Result<Option<Frame>> {
        Ok(self.receiver.recv(timeout)?.map(Received::into_frame))
    }

    /// Leaves the entry Attached with no process holding it, so that later
    /// commands can act as this guest ([`ShmGuest::resume`]); returns the
    /// peer id and epoch.
    pub fn release_to_script(mut self) -> Result<(PeerId, u32)> {
        let m = &mut self.membership;
        check_still_mine(&m.seg, m.peer_id, m.epoch)?;
        m.seg.peer(m.peer_id).set_holder(Holder::Nobody)?;
        m.owner = Owner::Scripts;
        Ok((m.peer_id, m.epoch))
    }

    /// Detaches: drops what the host sent and this guest did not read
    /// (returning those slots), returns every slot this guest holds, and
    /// frees the entry (or leaves it in Goodbye until the host has read
    /// what this guest sent). Dropping an owned guest does the same.
    ///
    /// shm[impl shm.peer.detach]
    pub fn detach(self) -> Result<()> {
        let ShmGuest {
            sender,
            receiver,
            mut membership,
        } = self;
        drop((sender, receiver));
        // Detached here, the entry is not detached again when the
        // membership drops.
        let owner = std::mem::replace(&mut membership.owner, Owner::Scripts);
        membership.detach(owner)
    }

    /// Splits this guest into its two ends, to use apart (in two threads,
    /// say). The entry stays this guest's until both are dropped; then an
    /// owned claim detaches, as dropping the guest does.
    ///
    /// ```
    /// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout};
    ///
    /// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
    /// let guest = ShmGuest::attach(host.region())?;
    /// let id = guest.peer_id();
    /// let (mut tx, mut rx) = guest.into_split();
    /// let echo = std::thread::spawn(move || -> shmhub::Result<()> {
    ///     let got = rx.recv(Timeout::Never)?.expect("a message");
    ///     tx.send(*got.desc(), got.payload(), Timeout::Never)
    /// });
    /// host.send(id, Frame::new(MsgDesc::new(1, 9), b"ping".to_vec()))?;
    /// echo.join().unwrap()?;
    /// let (from, back) = host.recv()?;
    /// assert_eq!((from, back.desc.id, back.payload()), (id, 9, &b"ping"[..]));
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    pub fn into_split(self) -> (Sender, Receiver) {
        let ShmGuest {
            mut sender,
            mut receiver,
            membership,
        } = self;
        let membership = KeepAlive::new(Arc::new(membership));
        sender.keep_alive(membership.clone());
        receiver.keep_alive(membership);
        (sender, receiver)
    }

    /// Detaches guest `peer_id` of the segment at `path`, an entry claimed
    /// for scripted use; refused while a live process holds it.
    pub fn release<P: AsRef<Path>>(path: P, peer_id: impl IntoPeerId) -> Result<()> {
        Self::release_resumed(Self::resume(path, peer_id)?)
    }

    /// [`ShmGuest::release`] with the owner check `owner`.
    pub(crate) fn release_with(
        path: &Path,
        peer_id: impl IntoPeerId,
        owner: OwnerCheck,
    ) -> Result<()> {
        Self::release_resumed(Self::resume_with(path, peer_id, owner)?)
    }

    fn release_resumed(guest: ShmGuest) -> Result<()> {
        let seg = &guest.membership.seg;
        let entry = seg.peer(guest.membership.peer_id).snapshot()?;
        let status = seg.judge(&entry);
        if status == liveness::HolderStatus::Alive || status == liveness::HolderStatus::Stale {
            return Err(Error::Busy {
                what: format!("peer {} (held by pid {})", entry.peer_id, entry.pid),
            });
        }
        guest.detach()
    }
}

impl Membership {
    /// `owner`: whose claim the entry was until now.
    fn detach(&mut self, owner: Owner) -> Result<()> {
        let p = self.peer_id;
        check_still_mine(&self.seg, p, self.epoch)?;
        // The ends have let go of the receiving role (they are dropped
        // first): a fresh one takes it for the drain.
        let mut receiver = Receiver::new(&self.seg, p, Side::Guest { epoch: self.epoch })?;
        let receiving = receiver.try_take_role();
        if receiving {
            receiver.discard_all()?;
        }
        // Slots still lent out in this process (in-place receives, loans)
        // are freed by their owners when they drop. The host's slots held
        // for a guest that claimed its entry itself are named by what the
        // drain took, or lent out, or in flight: a host send that placed
        // one may yet publish it (to this guest's successor, if it raced
        // the whole detach and the next claim), so they are left alone. An
        // entry used by scripts may hold some that a killed command never
        // freed.
        let guest = Party::Guest(p);
        let pools: &[Party] = match owner {
            Owner::ThisGuest => &[guest],
            Owner::Scripts => &[Party::Host, guest],
        };
        self.seg.free_slots_held_by(guest, pools.iter().copied())?;
        let peer = self.seg.peer(p);
        let outbound_empty = self.seg.ring(p, Direction::GuestToHost).state()?.is_empty();
        let next = if outbound_empty {
            PeerState::Empty
        } else {
            PeerState::Goodbye
        };
        peer.transition(PeerState::Attached, next)?;
        if next == PeerState::Goodbye {
            // The host may have read the ring empty and let this guest's
            // bit go between the look above and the move: the bit, set
            // after the move, has it look once more and free the entry.
            Mark::new(&self.seg.region, p)?.force();
        }
        // A host send that found the entry Attached just before the move
        // may have published after the drain above. Its sender looks at
        // the entry right after publishing and this looks at the ring
        // right after the move, both sequentially consistent: either this
        // sees the message and drops it (with its slot), or the host sees
        // the entry gone and frees the slot itself. The presence lock keeps
        // any new guest (and its receiving end) out meanwhile.
        if receiving && self._presence.is_some() && !receiver.is_empty_after_move() {
            receiver.discard_all()?;
        }
        // The holder goes only now: a guest killed before the move leaves
        // its entry Attached to a dead holder, which the host reclaims; one
        // cleared before the move would look like a scripted claim, which
        // is never reclaimed. (The presence lock keeps a new guest, and so
        // a new holder, out until this one is gone.)
        peer.set_holder(Holder::Nobody)?;
        crate::header::wake_host(&self.seg.region)?;
        Ok(())
    }
}

impl Drop for Membership {
    /// Detaches, in the process that claimed the entry; a copy of it made
    /// by `fork` leaves the entry to that process (`shm.file.fork`).
    fn drop(&mut self) {
        if self.owner == Owner::ThisGuest && self.seg.leases.in_opening_process() {
            let _ = self.detach(Owner::ThisGuest);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::party::id;
    use crate::testing::TwoOpenings;

    // A reclaim holds the receiving role of the entry's host-to-guest ring
    // from its first step to its last and moves the entry through Goodbye
    // (its guest-to-host ring drained): a plain claim must leave such an
    // entry alone, or the reclaim's last step stores Empty over the guest
    // that claimed it.
    // shm[verify shm.peer.claim]
    #[test]
    fn a_plain_claim_leaves_a_goodbye_entry_whose_receiving_role_is_held() {
        let openings = TwoOpenings::new("claim.shm");
        let path = &openings.path;
        // The other opening is a reclaiming host's, midway through a
        // reclaim of guest 1.
        let reclaimer = &openings.other;
        assert!(
            reclaimer
                .peer(id(1))
                .transition(PeerState::Empty, PeerState::Goodbye)
                .unwrap()
        );
        let role = reclaimer
            .try_take(lock_byte::ring_end(id(1), End::HostToGuestConsumer))
            .expect("the role is free");
        let second = ShmGuest::attach_path(path).unwrap();
        assert_eq!(second.peer_id(), 2, "the entry under reclaim was claimed");
        assert_eq!(reclaimer.peer(id(1)).state().unwrap(), PeerState::Goodbye);
        // Once the role is let go, the Goodbye entry with nothing left to
        // read is free to claim again.
        drop(role);
        let first = ShmGuest::attach_path(path).unwrap();
        assert_eq!(first.peer_id(), 1);
        drop((first, second));
    }
}
