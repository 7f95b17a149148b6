//! Zero-copy sending and receiving: a sender writes its payload straight
//! into a slot it has been lent, and a receiver reads the payload where it
//! lies, freeing the slot when it is done.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::desc::{INLINE_CAPACITY, MsgDesc};
use crate::layout::SegmentLayout;
use crate::party::Party;
use crate::pool::{Pool, SlotRef};
use crate::region::Region;

/// The slots this process has lent out (in-place receives not yet dropped,
/// loans not yet committed), shared by a host or guest and every lease it
/// made. Leaving or reclaiming returns every slot a peer holds except
/// these: their owners still read or write them, and free them themselves
/// when they drop.
///
/// One mark (a byte) per slot, made for a pool at its first lease: marking
/// and unmarking a slot is one plain atomic store to memory private to
/// this process, with no lock, no hashing and no locked read-modify-write
/// on the path of every message (a bitset's locked `fetch_or` cost the
/// 4 KiB stream measurably). A slot is unmarked before it is freed, never after:
/// freed, it may come back to this process at once, in a new message
/// whose mark must stay. It also keeps the mapping the slots lie in, so
/// that a lease needs nothing but a reference to it (no allocation per
/// message).
#[derive(Debug)]
pub(crate) struct Leases {
    region: Region,
    layout: SegmentLayout,
    slots_per_pool: u32,
    pools: Box<[PoolLeases]>,
    /// `sys::forks()` when the segment was opened: a copy of this process
    /// made by `fork` frees nothing on drop (`shm.file.fork`).
    forks: u32,
}

/// One pool as [`Leases`] sees it, each part made at its first use.
#[derive(Debug, Default)]
struct PoolLeases {
    /// A mark per slot: lent out in this process.
    marks: OnceLock<Box<[AtomicBool]>>,
    /// The pool's lines, opened at the first free into it: what a dropped
    /// message or loan frees its slot through.
    lines: OnceLock<Option<Pool>>,
}

/// What looking up a mark does with a pool whose marks are not made yet:
/// a lease makes them; an unmarking or a look finds no lease there, and
/// leaves the memory unspent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unmade {
    Make,
    Leave,
}

impl Leases {
    /// Room for the slots of every pool of `layout`, which lie in `region`.
    pub(crate) fn new(region: Region, layout: SegmentLayout) -> Self {
        Leases {
            region,
            layout,
            slots_per_pool: layout.config.slots_per_pool,
            pools: (0..=layout.config.max_guests)
                .map(|_| PoolLeases::default())
                .collect(),
            forks: crate::sys::forks(),
        }
    }

    /// Whether this is the process that opened the segment, not a copy
    /// made by `fork` since (`shm.file.fork`).
    #[inline]
    pub(crate) fn in_opening_process(&self) -> bool {
        crate::sys::forks() == self.forks
    }

    /// The mark of slot `slot` of pool `pool`, making the pool's marks
    /// first where `unmade` says so; `None` for a slot outside the layout
    /// (or not yet made).
    fn mark(&self, pool: Party, slot: u32, unmade: Unmade) -> Option<&AtomicBool> {
        if slot >= self.slots_per_pool {
            return None;
        }
        let cell = &self.pools.get(usize::from(pool.number()))?.marks;
        let marks = match cell.get() {
            Some(marks) => marks,
            None if unmade == Unmade::Make => cell.get_or_init(|| {
                (0..self.slots_per_pool)
                    .map(|_| AtomicBool::new(false))
                    .collect()
            }),
            None => return None,
        };
        marks.get(slot as usize)
    }

    /// `owner`'s pool, opened at the first call; `None` where it cannot
    /// be (a layout that does not fit the region: nothing is freed).
    fn pool(&self, owner: Party) -> Option<&Pool> {
        self.pools
            .get(usize::from(owner.number()))?
            .lines
            .get_or_init(|| Pool::open(&self.region, &self.layout, owner).ok())
            .as_ref()
    }

    /// Frees `slot` of `owner`'s pool (see [`Pool::free`]).
    fn free(&self, owner: Party, slot: SlotRef) {
        if let Some(pool) = self.pool(owner) {
            pool.free(slot);
        }
    }

    fn add(&self, pool: Party, slot: u32) {
        if let Some(mark) = self.mark(pool, slot, Unmade::Make) {
            mark.store(true, Ordering::Relaxed);
        }
    }

    fn remove(&self, pool: Party, slot: u32) {
        if let Some(mark) = self.mark(pool, slot, Unmade::Leave) {
            mark.store(false, Ordering::Relaxed);
        }
    }

    /// Whether slot `slot` of pool `pool` is lent out in this process.
    pub(crate) fn contains(&self, pool: Party, slot: u32) -> bool {
        self.mark(pool, slot, Unmade::Leave)
            .is_some_and(|mark| mark.load(Ordering::Relaxed))
    }
}

/// Where a received payload lies: the slot allocation, its pool, and the
/// payload's offset in the region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LentSlot {
    pub(crate) pool: Party,
    pub(crate) slot: SlotRef,
    pub(crate) offset: u64,
}

/// A received message whose payload is read in place. Its slot (if any) goes
/// back to the sender's pool when this is dropped (or, dropped inside a
/// batch receive's handler, when that batch receive returns).
///
/// # Shared memory
///
/// [`Received::payload`] lends a `&[u8]` that points into the segment's
/// shared mapping, not into memory this process owns. The protocol gives
/// the receiver sole use of the slot until it is dropped: the sender
/// wrote the payload before publishing it and never touches it again. But
/// the library cannot stop another process that maps the same file from
/// breaking the protocol and writing those bytes while the slice lives,
/// just as [`memmap2`](https://docs.rs/memmap2) cannot stop another process
/// from writing a mapped file. So, as with any mapping shared with other
/// processes:
///
/// - treat the payload as input from the sender, not as trusted data, and
///   where a value must not change between two reads (a length checked,
///   then used), copy it out first ([`Received::into_frame`] copies the
///   whole payload);
/// - a process that does write them breaks the rule Rust assumes for every
///   `&[u8]` (nobody writes while it is borrowed), as a writer does for any
///   mapping shared with it: the compiler may assume the bytes are stable,
///   and reads may see torn or changing data. They stay inside the slot,
///   whose bounds were checked against the mapping when it was received.
///
/// Everything the library itself decides on (descriptors, indices, slot
/// states, header fields) is copied out of the segment once and validated
/// before use; the payload is the only shared memory lent to the caller.
///
/// ```
/// use shmhub::{MsgDesc, SegmentConfig, ShmGuest, ShmHost};
/// use std::time::Duration;
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default()).unwrap();
/// let mut guest = ShmGuest::attach(host.region()).unwrap();
/// let mut loan = host.loan(guest.peer_id(), 4096, None).unwrap();
/// loan.as_mut_slice().fill(7);
/// host.commit(guest.peer_id(), loan).unwrap();
///
/// let received = guest.receiver().recv(Some(Duration::from_secs(1))).unwrap().unwrap();
/// assert!(received.payload().iter().all(|&b| b == 7));
/// ```
// Aligned to 16 bytes, so that the 16-byte moves that carry it out of a
// receive line up with the ones that built its descriptor: at 8, every
// copy of a just-received message waited on store forwarding.
#[repr(align(16))]
pub struct Received {
    desc: MsgDesc,
    /// Set for payloads in a slot; inline messages need nothing more than
    /// their descriptor (and cost no reference count).
    lease: Option<Lease>,
}

/// A received slot: where it is, and the record (with the mapping) it is
/// lent out in.
struct Lease {
    slot: LentSlot,
    leases: Arc<Leases>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("desc", &self.desc)
            .field("in_slot", &self.lease.is_some())
            .finish()
    }
}

impl Received {
    /// A message whose payload is inline in its descriptor.
    pub(crate) fn inline(desc: MsgDesc) -> Self {
        Received { desc, lease: None }
    }

    /// A message whose payload lies in a slot, freed when this drops.
    pub(crate) fn in_slot(desc: MsgDesc, slot: LentSlot, leases: Arc<Leases>) -> Self {
        leases.add(slot.pool, slot.slot.index);
        Received {
            desc,
            lease: Some(Lease { slot, leases }),
        }
    }

    /// The descriptor (type, id, method, placement).
    pub fn desc(&self) -> &MsgDesc {
        &self.desc
    }

    /// The payload, where it lies.
    pub fn payload(&self) -> &[u8] {
        let len = self.desc.payload_len as usize;
        match &self.lease {
            None => &self.desc.inline[..len.min(INLINE_CAPACITY)],
            Some(lease) => {
                // SAFETY: the slot was validated when this was received (in
                // bounds, allocated at this generation, held by this
                // receiver); until this value drops and frees it, the
                // protocol gives the receiver sole use of the slot: its
                // sender wrote it before publishing and does not touch it
                // again. A process that breaks the protocol can still write
                // it: see "Shared memory" on this type.
                let bytes = unsafe { lease.leases.region.bytes(lease.slot.offset, len as u64) };
                bytes.unwrap_or(&[])
            }
        }
    }

    /// Copies the message out into a [`crate::Frame`] and frees the slot.
    pub fn into_frame(self) -> crate::Frame {
        crate::Frame::new(self.desc, self.payload().to_vec())
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            // A forked copy's message is still the parent's to free.
            if !lease.leases.in_opening_process() {
                return;
            }
            let (s, leases) = (lease.slot, &lease.leases);
            if !BatchFrees::put_off(leases, s) {
                // Unmarked first: once freed, the slot may come back to this
                // process in a new message, whose mark must not be undone.
                leases.remove(s.pool, s.slot.index);
                leases.free(s.pool, s.slot);
            }
        }
    }
}

/// Most frees one batch receive puts off (as many as it takes messages).
const PUT_OFF_MAX: usize = 32;

/// The frees a batch receive on this thread has put off so far.
struct PutOff {
    /// Whose leases they are (only compared, never followed).
    leases: *const Leases,
    /// The pool their slots belong to.
    pool: Party,
    /// Each slot allocation.
    slots: [SlotRef; PUT_OFF_MAX],
    len: usize,
}

thread_local! {
    /// The innermost batch receive running on this thread, if any.
    static PUT_OFF: RefCell<Option<PutOff>> = const { RefCell::new(None) };
}

/// While a batch receive hands out its messages, the slots of those
/// dropped on its thread go back to the pool together when it ends,
/// rather than one by one: one read-modify-write of the pool's bitmap per
/// batch ([`Pool::free_many`]), where the sender, allocating, takes the
/// bitmap's cache line after every one. Until then each stays marked in
/// [`Leases`], as a slot still lent out. A received message dropped on
/// another thread, or from another pool or segment, is freed at once.
///
/// shm[impl shm.pool.batch-free]
pub(crate) struct BatchFrees<'a> {
    leases: &'a Leases,
    pool: Party,
    /// Whether this batch's record was put in place (a thread being torn
    /// down has none to put it in: then nothing is put off).
    started: bool,
    /// The batch this one runs inside (a receive from a handler), put back
    /// when this one ends.
    outer: Option<PutOff>,
}

impl<'a> BatchFrees<'a> {
    /// Starts putting off frees of `pool`'s slots lent through `leases`.
    pub(crate) fn start(leases: &'a Arc<Leases>, pool: Party) -> Self {
        let mine = PutOff {
            leases: Arc::as_ptr(leases),
            pool,
            slots: [SlotRef {
                index: 0,
                generation: 0,
            }; PUT_OFF_MAX],
            len: 0,
        };
        let swapped = PUT_OFF.try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut current| current.replace(mine))
                .ok()
        });
        let (started, outer) = match swapped {
            Ok(Some(outer)) => (true, outer),
            _ => (false, None),
        };
        BatchFrees {
            leases,
            pool,
            started,
            outer,
        }
    }

    /// Records the free of `slot` for the end of the batch running on this
    /// thread, if there is one for its pool and leases and it has room;
    /// false if the caller must free it now.
    fn put_off(leases: &Arc<Leases>, slot: LentSlot) -> bool {
        PUT_OFF
            .try_with(|cell| {
                let Ok(mut current) = cell.try_borrow_mut() else {
                    return false;
                };
                match current.as_mut() {
                    Some(p)
                        if std::ptr::eq(p.leases, Arc::as_ptr(leases))
                            && p.pool == slot.pool
                            && p.len < PUT_OFF_MAX =>
                    {
                        p.slots[p.len] = slot.slot;
                        p.len += 1;
                        true
                    }
                    _ => false,
                }
            })
            .unwrap_or(false)
    }
}

impl Drop for BatchFrees<'_> {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let outer = self.outer.take();
        let mine = PUT_OFF
            .try_with(|cell| {
                cell.try_borrow_mut()
                    .ok()
                    .and_then(|mut p| std::mem::replace(&mut *p, outer))
            })
            .ok()
            .flatten();
        let Some(mine) = mine else {
            return;
        };
        let slots = &mine.slots[..mine.len];
        let leases = self.leases;
        if !leases.in_opening_process() {
            return;
        }
        for slot in slots {
            leases.remove(self.pool, slot.index);
        }
        if let Some(pool) = leases.pool(self.pool) {
            pool.free_many(slots);
        }
    }
}

/// A slot lent to a sender: write the payload in place with
/// [`SlotLoan::as_mut_slice`], then commit it with `ShmHost::commit` or
/// `ShmGuest::commit`. Dropped without committing, the slot goes back to
/// the pool.
///
/// Like [`Received::payload`], [`SlotLoan::as_mut_slice`] lends memory in
/// the shared mapping: until the commit, no process that follows the
/// protocol reads or writes the slot, but one that breaks it can (see
/// "Shared memory" on [`Received`]). Write the payload, commit, and do not
/// rely on reading back what was written.
///
/// ```
/// use shmhub::{SegmentConfig, ShmGuest, ShmHost, Timeout};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// let mut guest = ShmGuest::attach(host.region())?;
/// let id = guest.peer_id();
///
/// // The payload is written where the guest reads it: no copy.
/// let mut loan = host.loan(id, 5000, Timeout::NoWait)?;
/// loan.as_mut_slice().fill(b'x');
/// loan.truncate(4000); // less than was asked for
/// host.commit(id, loan)?;
/// assert_eq!(guest.recv()?.payload(), &[b'x'; 4000][..]);
///
/// // A loan dropped without a commit sends nothing; its slot goes back.
/// drop(host.loan(id, 5000, Timeout::NoWait)?);
/// assert!(guest.try_recv()?.is_none());
/// # Ok::<(), shmhub::Error>(())
/// ```
pub struct SlotLoan {
    pub(crate) pool: Party,
    pub(crate) slot: SlotRef,
    pub(crate) data_offset: u64,
    pub(crate) len: usize,
    /// The descriptor to send (type, id, method); placement is filled in on commit.
    pub desc: MsgDesc,
    pub(crate) committed: bool,
    pub(crate) leases: Arc<Leases>,
}

impl fmt::Debug for SlotLoan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotLoan")
            .field("pool", &self.pool)
            .field("slot", &self.slot.index)
            .field("len", &self.len)
            .finish()
    }
}

impl SlotLoan {
    /// Lends `len` bytes of `slot` of `pool`, just allocated, and records
    /// the lease in `leases`.
    pub(crate) fn new(pool: &Pool, slot: SlotRef, len: usize, leases: Arc<Leases>) -> Self {
        leases.add(pool.owner(), slot.index);
        SlotLoan {
            pool: pool.owner(),
            slot,
            data_offset: pool.data_offset(slot.index),
            len,
            desc: MsgDesc::default(),
            committed: false,
            leases,
        }
    }

    /// The payload bytes to fill (as many as were asked for).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the slot's bit was claimed by compare-and-swap for this
        // loan alone and nothing about it is published yet, so no other
        // process or reference reads or writes these bytes until commit;
        // `&mut self` keeps this the only slice. The range was checked
        // against the slot size when the loan was made.
        unsafe {
            self.leases
                .region
                .bytes_mut(self.data_offset, self.len as u64)
        }
        .unwrap_or(&mut [])
    }

    /// Payload length that will be sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the payload to `len` bytes (no effect if longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Drop for SlotLoan {
    fn drop(&mut self) {
        // Unmarked first, as for a received slot.
        self.leases.remove(self.pool, self.slot.index);
        if !self.committed {
            self.leases.free(self.pool, self.slot);
        }
    }
}
