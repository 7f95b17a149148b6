//! Turning a message into a descriptor and back: where its payload
//! travels (inline or in a slot of the sender's pool), and the checks a
//! received descriptor must pass before anything is read through it.

use std::sync::Arc;

use crate::desc::{DESC_SIZE, FLAG_SLOT, INLINE_CAPACITY, KNOWN_FLAGS, MsgDesc};
use crate::error::{Error, Result};
use crate::party::Party;
use crate::pool::Pool;
use crate::pool::SlotRef;
use crate::region::Mode;
use crate::zerocopy::{Leases, LentSlot, Received};

/// `desc` carrying `payload` (at most [`INLINE_CAPACITY`] bytes) in its
/// inline bytes. Every placement field is set, so nothing the application
/// left in them travels.
///
/// shm[impl shm.send.placement]
#[inline(always)]
pub(crate) fn inline(desc: MsgDesc, payload: &[u8]) -> MsgDesc {
    debug_assert!(payload.len() <= INLINE_CAPACITY);
    let mut desc = desc;
    desc.flags = 0;
    desc.payload_len = payload.len() as u32;
    desc.slot_index = 0;
    desc.slot_generation = 0;
    desc.slot_offset = 0;
    desc.inline = [0; INLINE_CAPACITY];
    desc.inline[..payload.len()].copy_from_slice(payload);
    desc
}

/// `desc` naming `len` bytes at the start of `slot` of the sender's pool.
#[inline(always)]
pub(crate) fn in_slot(desc: MsgDesc, len: usize, slot: SlotRef) -> MsgDesc {
    let mut desc = desc;
    desc.flags = FLAG_SLOT;
    desc.payload_len = len as u32;
    desc.slot_index = slot.index;
    desc.slot_generation = slot.generation;
    desc.slot_offset = 0;
    desc.inline = [0; INLINE_CAPACITY];
    desc
}

/// The slot allocation a descriptor names (whether or not it has one).
#[inline(always)]
pub(crate) fn slot_of(desc: &MsgDesc) -> SlotRef {
    SlotRef {
        index: desc.slot_index,
        generation: desc.slot_generation,
    }
}

/// Where a descriptor that passed [`check`] has its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the descriptor's inline bytes.
    Inline,
    /// In the sender's pool, starting at this offset of the region.
    Slot {
        /// Offset of the payload's first byte in the region.
        offset: u64,
    },
}

/// Why [`check`] refused a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// What is wrong, in words.
    pub(crate) reason: String,
    /// The flags and length were fine and the slot checks refused it: the
    /// slot it names may really be the receiver's.
    pub(crate) by_slot: bool,
}

/// The checks of `shm.recv.validate` on a descriptor that `receiver` finds
/// in a ring whose sender owns `pool`, in order: flags, length, inline
/// length, then the slot (index, offset and length, bitmap bit,
/// generation, holder). It only reads: receiving acts on the verdict
/// ([`decode`]), and inspection shows it.
///
/// shm[impl shm.recv.validate]
pub(crate) fn check<M: Mode>(
    pool: &Pool<M>,
    receiver: Party,
    desc: &MsgDesc,
) -> std::result::Result<Placement, Refusal> {
    let refuse = |reason: String| Refusal {
        reason,
        by_slot: false,
    };
    if desc.flags & !KNOWN_FLAGS != 0 {
        return Err(refuse(format!("unknown flags {:#06x}", desc.flags)));
    }
    let len = desc.payload_len;
    let max_payload = pool.layout().config.max_payload;
    if len > max_payload {
        return Err(refuse(format!(
            "payload length {len} exceeds the max payload {max_payload}"
        )));
    }
    if !desc.is_slot() {
        if len as usize > INLINE_CAPACITY {
            return Err(refuse(format!(
                "inline payload length {len} exceeds {INLINE_CAPACITY}"
            )));
        }
        return Ok(Placement::Inline);
    }
    pool.validate(slot_of(desc), receiver, desc.slot_offset, len)
        .map(|offset| Placement::Slot { offset })
        .map_err(|reason| Refusal {
            reason,
            by_slot: true,
        })
}

/// Validates a descriptor that `receiver` took from a ring whose sender
/// owns `pool` ([`check`]), and returns the message with its payload left
/// in place. A descriptor that does not check out is an error and nothing
/// is read through it; the descriptor bytes were copied out of the ring, so
/// what was checked is what is used.
///
/// shm[impl shm.recv.validate]
// The common case, a descriptor with no flags and an inline length
// (exactly what `check` finds `Placement::Inline`), is decided inline in
// the receive call; everything else goes through `decode_checked`.
#[inline(always)]
pub(crate) fn decode(
    pool: &Pool,
    receiver: Party,
    desc: MsgDesc,
    leases: &Arc<Leases>,
) -> Result<Received> {
    let len = desc.payload_len;
    if desc.flags == 0 && len as usize <= INLINE_CAPACITY && len <= pool.layout().config.max_payload
    {
        return Ok(Received::inline(desc));
    }
    decode_checked(pool, receiver, desc, leases)
}

/// [`decode`] of any descriptor: [`check`], then the message.
#[inline(never)]
fn decode_checked(
    pool: &Pool,
    receiver: Party,
    desc: MsgDesc,
    leases: &Arc<Leases>,
) -> Result<Received> {
    let offset = match check(pool, receiver, &desc) {
        Ok(Placement::Inline) => return Ok(Received::inline(desc)),
        Ok(Placement::Slot { offset }) => offset,
        Err(refusal) => {
            if refusal.by_slot {
                // A slot that is really this receiver's, named with a bad
                // offset or length, goes back rather than leaking.
                pool.free_if_held_by(slot_of(&desc), receiver);
            }
            return Err(Error::BadDescriptor {
                from: pool.owner().to_string(),
                reason: refusal.reason,
            });
        }
    };
    let slot = LentSlot {
        pool: pool.owner(),
        slot: slot_of(&desc),
        offset,
    };
    Ok(Received::in_slot(desc, slot, leases.clone()))
}

/// Frees the slot a descriptor names, without reading it (a ring drained
/// because its receiver left or died), if the pool's own record says the
/// slot is held by `receiver`, the ring's: a descriptor in a ring is
/// memory its receiver can write, so one naming a slot in flight to
/// someone else (a forged drain, `shm.peer.quarantine`), or not allocated
/// at its generation, frees nothing.
pub(crate) fn discard(pool: &Pool, receiver: Party, bytes: &[u8; DESC_SIZE]) {
    let desc = MsgDesc::from_bytes(bytes);
    if desc.is_slot() {
        pool.free_if_held_by(slot_of(&desc), receiver);
    }
}
