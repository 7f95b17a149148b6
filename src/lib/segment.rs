//! What the host and the guests share: the mapped segment, its validated
//! layout, the role locks of one process, and the code that turns frames
//! into descriptors and back.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::desc::{DESC_SIZE, FLAG_SLOT, Frame, INLINE_CAPACITY, KNOWN_FLAGS, MsgDesc};
use crate::error::{Direction, Error, Result};
use crate::header::{self, HeaderInfo};
use crate::layout::{HEADER_SIZE, SegmentLayout};
use crate::mmap::MmapRegion;
use crate::peer::Peer;
use crate::pool::Pool;
use crate::region::{HeapRegion, Region};
use crate::ring::Ring;
use crate::sys::{self, ByteLock};
use crate::wait::{Deadline, WaitStrategy};
use crate::zerocopy::{Leases, Received, SlotLoan, SlotRef};

/// Most descriptors taken from a ring in one batch.
pub(crate) const RECV_BATCH: usize = 32;

/// The memory a host or guest owns; the mapping lives as long as it does.
#[derive(Debug)]
pub enum ShmBacking {
    /// Heap memory (one process; tests).
    Heap(HeapRegion),
    /// A shared file mapping.
    Mmap(MmapRegion),
    /// A region supplied by the caller (kept alive by its reference count).
    Region(Region),
}

impl ShmBacking {
    /// The view of the whole backing.
    pub fn region(&self) -> Region {
        match self {
            ShmBacking::Heap(h) => h.region(),
            ShmBacking::Mmap(m) => m.region(),
            ShmBacking::Region(r) => r.clone(),
        }
    }

    /// The file mapping, if this backing is one.
    pub fn mmap(&self) -> Option<&MmapRegion> {
        match self {
            ShmBacking::Mmap(m) => Some(m),
            _ => None,
        }
    }
}

/// Byte numbers of the advisory locks that stand for roles. They lie far
/// past the end of any segment, so they never cover real bytes.
///
/// shm[impl shm.lock.roles]
pub mod lock_byte {
    const BASE: u64 = 1 << 40;
    const KIND_STRIDE: u64 = 1024;

    /// Which end of which ring a lock stands for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum End {
        /// The host sending to a guest.
        HostToGuestProducer,
        /// A guest receiving from the host.
        HostToGuestConsumer,
        /// A guest sending to the host.
        GuestToHostProducer,
        /// The host receiving from a guest.
        GuestToHostConsumer,
    }

    /// A process that holds the segment's host role (held while it lives).
    pub const HOST_PRESENCE: u64 = BASE;

    /// How many role bytes there are (five kinds of 1024).
    pub(crate) const COUNT: usize = 5 * KIND_STRIDE as usize;

    /// The position of a role byte among [`COUNT`], if it is one.
    pub(crate) fn index(byte: u64) -> Option<usize> {
        byte.checked_sub(BASE)
            .map(|i| i as usize)
            .filter(|&i| i < COUNT)
    }

    /// A process that holds guest `peer`'s entry (held while it lives).
    pub fn guest_presence(peer: u8) -> u64 {
        BASE + u64::from(peer)
    }

    /// One end of one of guest `peer`'s rings.
    pub fn ring_end(peer: u8, end: End) -> u64 {
        let kind = match end {
            End::HostToGuestProducer => 1,
            End::HostToGuestConsumer => 2,
            End::GuestToHostProducer => 3,
            End::GuestToHostConsumer => 4,
        };
        BASE + kind * KIND_STRIDE + u64::from(peer)
    }
}

/// The role locks one host or guest holds, taken on first use.
#[derive(Debug)]
pub(crate) struct RoleLocks {
    /// The lock guards, kept for as long as the roles are held.
    held: Vec<(u64, ByteLock)>,
    /// One bit per role byte (`lock_byte::index`): the check made on every
    /// send and receive.
    held_bits: [u64; lock_byte::COUNT / 64],
}

impl Default for RoleLocks {
    fn default() -> Self {
        RoleLocks {
            held: Vec::new(),
            held_bits: [0; lock_byte::COUNT / 64],
        }
    }
}

impl RoleLocks {
    fn holds(&self, byte: u64) -> bool {
        match lock_byte::index(byte) {
            Some(i) => self.held_bits[i / 64] & (1 << (i % 64)) != 0,
            None => self.held.iter().any(|(b, _)| *b == byte),
        }
    }

    /// Takes the lock on `byte` unless already held; waits until `deadline`
    /// for another process to release it (no deadline: try once).
    pub(crate) fn ensure(
        &mut self,
        seg: &Segment,
        byte: u64,
        deadline: &mut Deadline,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.holds(byte) {
            return Ok(());
        }
        let Some(mmap) = seg.backing.mmap() else {
            // Heap and caller-supplied regions live in one process, whose
            // `&mut self` methods already serialize each role.
            return Ok(());
        };
        loop {
            let taken = ByteLock::try_lock(mmap.file(), byte).map_err(|cause| Error::Io {
                path: mmap.path().to_path_buf(),
                cause,
            })?;
            if let Some(lock) = taken {
                self.held.push((byte, lock));
                if let Some(i) = lock_byte::index(byte) {
                    self.held_bits[i / 64] |= 1 << (i % 64);
                }
                return Ok(());
            }
            if deadline.passed() {
                return Err(Error::Busy { what: what() });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A mapped, validated segment.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) backing: ShmBacking,
    pub(crate) region: Region,
    pub(crate) layout: SegmentLayout,
    /// Slots this process has lent out from this segment.
    pub(crate) leases: Arc<Leases>,
}

impl Segment {
    /// Validates the header of `backing` and wraps it.
    pub(crate) fn open(backing: ShmBacking) -> Result<Self> {
        let region = backing.region();
        let info = header::read(&region)?;
        if !region.is_writable() {
            return Err(Error::Region(crate::region::RegionError::ReadOnly));
        }
        Ok(Segment {
            backing,
            region,
            layout: info.layout,
            leases: Arc::default(),
        })
    }

    /// Maps the file at `path` read/write and validates it.
    pub(crate) fn open_path(path: &Path) -> Result<Self> {
        let mmap = MmapRegion::attach_min(path, HEADER_SIZE)?;
        Self::open(ShmBacking::Mmap(mmap))
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.backing.mmap().map(|m| m.path())
    }

    pub(crate) fn file(&self) -> Option<&Arc<File>> {
        self.backing.mmap().map(|m| m.file())
    }

    pub(crate) fn header(&self) -> Result<HeaderInfo> {
        header::read(&self.region)
    }

    pub(crate) fn host_goodbye(&self) -> Result<bool> {
        Ok(self
            .region
            .load_u32(header::field::HOST_GOODBYE, Ordering::Acquire)?
            != 0)
    }

    /// Converts a user-supplied guest id, checking its range.
    pub(crate) fn guest_id(&self, peer_id: u32) -> Result<u8> {
        if self.layout.is_guest(peer_id) {
            Ok(peer_id as u8)
        } else {
            Err(Error::InvalidPeerId {
                peer_id,
                max_guests: self.layout.config.max_guests,
            })
        }
    }

    pub(crate) fn peer(&self, peer_id: u8) -> Peer<'_> {
        Peer::new(&self.region, &self.layout, peer_id)
    }

    pub(crate) fn ring(&self, peer_id: u8, direction: Direction) -> Ring<'_> {
        let base = match direction {
            Direction::GuestToHost => self.layout.guest_to_host_ring(peer_id),
            Direction::HostToGuest => self.layout.host_to_guest_ring(peer_id),
        };
        Ring::new(&self.region, base, self.layout.config.ring_capacity)
    }

    pub(crate) fn pool(&self, index: u8) -> Pool<'_> {
        Pool::new(&self.region, &self.layout, index)
    }

    /// Wakes a host sleeping in a receive from any guest.
    ///
    /// Called right after a guest publishes its tail with a sequentially
    /// consistent swap; the host sets its waiting flag the same way before
    /// its last look at the rings, so one of the two sees the other.
    pub(crate) fn ring_host_doorbell(&self) -> Result<()> {
        if self
            .region
            .load_u32(header::field::HOST_WAITING, Ordering::SeqCst)?
            != 0
        {
            let bell = self.region.atomic_u32(header::field::HOST_DOORBELL)?;
            bell.fetch_add(1, Ordering::Release);
            sys::futex_wake_all(bell);
        }
        Ok(())
    }

    /// The sender and receiver of `direction`'s ring of `guest` (0 = host).
    fn ends(guest: u8, direction: Direction) -> (u8, u8) {
        match direction {
            Direction::GuestToHost => (guest, 0),
            Direction::HostToGuest => (0, guest),
        }
    }

    fn check_payload_len(&self, len: usize) -> Result<()> {
        if len > self.layout.config.max_payload as usize {
            return Err(Error::PayloadTooLarge {
                len,
                max: self.layout.config.max_payload,
            });
        }
        Ok(())
    }

    /// Waits until `direction`'s ring of `guest` has room for one more
    /// descriptor (no deadline: do not wait).
    fn wait_for_room(
        &self,
        guest: u8,
        direction: Direction,
        cached_head: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let ring = self.ring(guest, direction);
        while !ring.has_room(cached_head, 1)? {
            let seen_head = *cached_head;
            if !ring.wait_for_space(seen_head, strategy, deadline, stop)? {
                return Err(Error::RingFull {
                    peer_id: guest,
                    direction,
                });
            }
        }
        Ok(())
    }

    /// Allocates a slot of `sender`'s pool (waiting until `deadline`, if any).
    fn alloc_slot(
        &self,
        sender: u8,
        pool_hint: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<(u32, u32)> {
        let pool = self.pool(sender);
        pool.alloc(sender, pool_hint, strategy, deadline, stop)
    }

    /// Builds the descriptor for `frame`, copying its payload inline or into
    /// a newly allocated slot handed to the receiver. Returns the
    /// descriptor and the slot (to free if it cannot be published).
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        guest: u8,
        direction: Direction,
        (desc, payload): (MsgDesc, &[u8]),
        pool_hint: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<(MsgDesc, Option<(u32, u32)>)> {
        let (sender, receiver) = Self::ends(guest, direction);
        let mut desc = desc;
        desc.payload_len = payload.len() as u32;
        desc.inline = [0; INLINE_CAPACITY];
        desc.slot_offset = 0;
        if payload.len() <= INLINE_CAPACITY {
            desc.flags = 0;
            desc.inline[..payload.len()].copy_from_slice(payload);
            desc.slot_index = 0;
            desc.slot_generation = 0;
            return Ok((desc, None));
        }
        let (index, generation) = self.alloc_slot(sender, pool_hint, strategy, deadline, stop)?;
        let pool = self.pool(sender);
        let written = self
            .region
            .write(pool.data_offset(index), payload)
            .map_err(Error::from)
            .and_then(|()| pool.set_holder(index, receiver));
        if let Err(e) = written {
            pool.free(index, generation)?;
            return Err(e);
        }
        desc.flags = FLAG_SLOT;
        desc.slot_index = index;
        desc.slot_generation = generation;
        Ok((desc, Some((index, generation))))
    }

    /// Publishes encoded descriptors; on failure frees their slots.
    fn publish(
        &self,
        guest: u8,
        direction: Direction,
        cached_head: &mut u32,
        descs: &[[u8; DESC_SIZE]],
        slots: &[(u32, u32)],
    ) -> Result<()> {
        let (sender, _) = Self::ends(guest, direction);
        let pushed = self.ring(guest, direction).push_batch(cached_head, descs);
        if !matches!(pushed, Ok(true)) {
            for &(index, generation) in slots {
                self.pool(sender).free(index, generation)?;
            }
            pushed?;
            return Err(Error::RingFull {
                peer_id: guest,
                direction,
            });
        }
        if direction == Direction::GuestToHost {
            self.ring_host_doorbell()?;
        }
        Ok(())
    }

    /// Sends a message (descriptor and payload) on `direction`'s ring of `guest`, waiting for room and
    /// for a slot until `deadline` (no deadline: do not wait).
    ///
    /// shm[impl shm.send.placement]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_frame(
        &self,
        guest: u8,
        direction: Direction,
        message: (MsgDesc, &[u8]),
        cached_head: &mut u32,
        pool_hint: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        self.check_payload_len(message.1.len())?;
        // Room first, so that a slot is never taken for a message that
        // cannot be queued.
        self.wait_for_room(guest, direction, cached_head, strategy, deadline, stop)?;
        let (desc, slot) = self.encode(
            guest, direction, message, pool_hint, strategy, deadline, stop,
        )?;
        self.publish(
            guest,
            direction,
            cached_head,
            &[desc.to_bytes()],
            slot.as_slice(),
        )
    }

    /// Sends `frames` in order, publishing as many descriptors at a time as
    /// the ring has room for. Every payload is checked before anything is
    /// sent. Returns how many were sent: all of them, or fewer if `deadline`
    /// passed while waiting for room or slots.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_frames(
        &self,
        guest: u8,
        direction: Direction,
        frames: &[Frame],
        cached_head: &mut u32,
        pool_hint: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<usize> {
        for frame in frames {
            self.check_payload_len(frame.payload().len())?;
        }
        let ring = self.ring(guest, direction);
        let capacity = self.layout.config.ring_capacity as usize;
        let mut descs = Vec::with_capacity(frames.len().min(capacity));
        let mut slots = Vec::new();
        let mut sent = 0;
        while sent < frames.len() {
            match self.wait_for_room(guest, direction, cached_head, strategy, deadline, stop) {
                Ok(()) => {}
                Err(e) if e.is_retryable() && sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
            let state = ring.state()?;
            let room = (state.capacity - state.len().unwrap_or(state.capacity)) as usize;
            descs.clear();
            slots.clear();
            for frame in &frames[sent..sent + room.max(1).min(frames.len() - sent)] {
                // Only the first frame of a round may wait for a slot: the
                // receiver frees slots only after it sees messages, so what
                // is already placed is published before waiting for more.
                let mut no_wait = Deadline::no_wait();
                let wait: &mut Deadline = if descs.is_empty() {
                    deadline
                } else {
                    &mut no_wait
                };
                match self.encode(
                    guest,
                    direction,
                    (frame.desc, frame.payload()),
                    pool_hint,
                    strategy,
                    wait,
                    stop,
                ) {
                    Ok((desc, slot)) => {
                        descs.push(desc.to_bytes());
                        slots.extend(slot);
                    }
                    Err(e) if e.is_retryable() && !descs.is_empty() => break,
                    Err(e) => {
                        for &(index, generation) in &slots {
                            self.pool(Self::ends(guest, direction).0)
                                .free(index, generation)?;
                        }
                        if e.is_retryable() && sent > 0 {
                            return Ok(sent);
                        }
                        return Err(e);
                    }
                }
            }
            self.publish(guest, direction, cached_head, &descs, &slots)?;
            sent += descs.len();
        }
        Ok(sent)
    }

    /// Lends a slot of the sender's pool for a payload of `len` bytes,
    /// after making sure the ring has room for its descriptor.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn loan(
        &self,
        guest: u8,
        direction: Direction,
        len: usize,
        cached_head: &mut u32,
        pool_hint: &mut u32,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
        stop: &mut dyn FnMut() -> Result<()>,
    ) -> Result<SlotLoan> {
        self.check_payload_len(len)?;
        self.wait_for_room(guest, direction, cached_head, strategy, deadline, stop)?;
        let (sender, _) = Self::ends(guest, direction);
        let (slot, generation) = self.alloc_slot(sender, pool_hint, strategy, deadline, stop)?;
        Ok(SlotLoan {
            region: self.region.clone(),
            layout: self.layout,
            pool: sender,
            slot,
            generation,
            data_offset: self.pool(sender).data_offset(slot),
            len,
            desc: MsgDesc::default(),
            committed: false,
            leases: self.leases.clone(),
        }
        .register())
    }

    /// Publishes a loaned slot to the receiver.
    pub(crate) fn commit(
        &self,
        guest: u8,
        direction: Direction,
        mut loan: SlotLoan,
        cached_head: &mut u32,
    ) -> Result<()> {
        let (sender, receiver) = Self::ends(guest, direction);
        if loan.pool != sender || loan.region.len() != self.region.len() {
            return Err(Error::Corrupt(format!(
                "slot loan from pool {} committed on {direction} ring of peer {guest}",
                loan.pool
            )));
        }
        self.pool(sender).set_holder(loan.slot, receiver)?;
        let mut desc = loan.desc;
        desc.flags = FLAG_SLOT;
        desc.payload_len = loan.len as u32;
        desc.slot_index = loan.slot;
        desc.slot_generation = loan.generation;
        desc.slot_offset = 0;
        desc.inline = [0; INLINE_CAPACITY];
        // From here the loan's slot belongs to the receiver (or, if the
        // publication fails, is freed by `publish`).
        loan.committed = true;
        self.publish(
            guest,
            direction,
            cached_head,
            &[desc.to_bytes()],
            &[(loan.slot, loan.generation)],
        )
    }

    /// Validates a received descriptor and returns the message with its
    /// payload left in place. A descriptor that does not check out is an
    /// error and nothing is read through it.
    ///
    /// shm[impl shm.recv.validate]
    pub(crate) fn decode_in_place(
        &self,
        guest: u8,
        direction: Direction,
        bytes: &[u8; DESC_SIZE],
    ) -> Result<Received> {
        let (sender, receiver) = Self::ends(guest, direction);
        let bad = |reason: String| Error::BadDescriptor {
            from: if sender == 0 {
                "host".into()
            } else {
                format!("peer {sender}")
            },
            reason,
        };
        let desc = MsgDesc::from_bytes(bytes);
        if desc.flags & !KNOWN_FLAGS != 0 {
            return Err(bad(format!("unknown flags {:#06x}", desc.flags)));
        }
        let len = desc.payload_len;
        if len > self.layout.config.max_payload {
            return Err(bad(format!(
                "payload length {len} exceeds the max payload {}",
                self.layout.config.max_payload
            )));
        }
        if !desc.is_slot() {
            if len as usize > INLINE_CAPACITY {
                return Err(bad(format!(
                    "inline payload length {len} exceeds {INLINE_CAPACITY}"
                )));
            }
            return Ok(Received::inline(desc));
        }
        let pool = self.pool(sender);
        let offset = match pool.validate(
            desc.slot_index,
            desc.slot_generation,
            receiver,
            desc.slot_offset,
            len,
        ) {
            Ok(offset) => offset,
            Err(reason) => {
                // A slot that is really this receiver's, named with a bad
                // offset or length, goes back rather than leaking.
                pool.free_if_held_by(desc.slot_index, desc.slot_generation, receiver)?;
                return Err(bad(reason));
            }
        };
        let slot = SlotRef {
            pool: sender,
            slot: desc.slot_index,
            generation: desc.slot_generation,
            offset,
        };
        Ok(Received::in_slot(
            self.region.clone(),
            self.layout,
            desc,
            slot,
            self.leases.clone(),
        ))
    }

    /// Takes up to `max` (at most [`RECV_BATCH`], at least one) new
    /// descriptors from `direction`'s ring of `guest` with one head update
    /// and hands each valid message, payload in place, to `handle`. If any
    /// descriptor was bad, the first such error is returned after the valid
    /// ones were handed over. Returns how many descriptors were taken.
    pub(crate) fn take_batch(
        &self,
        guest: u8,
        direction: Direction,
        max: usize,
        handle: &mut dyn FnMut(Received),
    ) -> Result<usize> {
        let mut batch = [[0u8; DESC_SIZE]; RECV_BATCH];
        let n = self
            .ring(guest, direction)
            .pop_batch(&mut batch[..max.clamp(1, RECV_BATCH)])?;
        let mut first_error = None;
        for desc in &batch[..n] {
            match self.decode_in_place(guest, direction, desc) {
                Ok(received) => handle(received),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(n), Err)
    }

    /// Frees the slot a descriptor names without reading it (when a ring is
    /// drained on leaving or reclaiming). Invalid descriptors are skipped.
    pub(crate) fn discard(
        &self,
        guest: u8,
        direction: Direction,
        bytes: &[u8; DESC_SIZE],
    ) -> Result<()> {
        let desc = MsgDesc::from_bytes(bytes);
        if desc.is_slot() {
            let sender = match direction {
                Direction::GuestToHost => guest,
                Direction::HostToGuest => 0,
            };
            self.pool(sender)
                .free(desc.slot_index, desc.slot_generation)?;
        }
        Ok(())
    }
}
