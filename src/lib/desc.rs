//! Message descriptors and frames.

/// Size of one descriptor: one cache line.
pub const DESC_SIZE: usize = 64;
/// Payload bytes a descriptor carries inline.
pub const INLINE_CAPACITY: usize = 32;

/// Descriptor flag: the payload lives in a slot of the sender's pool.
pub const FLAG_SLOT: u16 = 1;
/// Descriptor flag reserved for the ring: the phase bit that tells a new
/// descriptor from one left by the previous lap. Whatever a sender puts in
/// it is overwritten, and receivers never see it set.
pub const FLAG_PHASE: u16 = 0x8000;
/// Flag bits this version knows (the phase bit aside); any other bit makes
/// a descriptor invalid.
pub const KNOWN_FLAGS: u16 = FLAG_SLOT;

/// Well-known message types. Applications may use any other value.
pub mod msg_type {
    /// Plain data (the default).
    pub const DATA: u16 = 1;
    /// A request that expects a [`RESPONSE`].
    pub const REQUEST: u16 = 2;
    /// The answer to a [`REQUEST`] with the same id.
    pub const RESPONSE: u16 = 3;
    /// An error answer to a [`REQUEST`].
    pub const ERROR: u16 = 4;
    /// A liveness probe.
    pub const PING: u16 = 5;
    /// The answer to a [`PING`].
    pub const PONG: u16 = 6;

    /// Known names and their values, for parsing and printing.
    pub const NAMES: [(&str, u16); 6] = [
        ("data", DATA),
        ("request", REQUEST),
        ("response", RESPONSE),
        ("error", ERROR),
        ("ping", PING),
        ("pong", PONG),
    ];

    /// The name of a well-known type, if it is one.
    pub fn name(value: u16) -> Option<&'static str> {
        NAMES.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
    }
}

/// A message descriptor: exactly one 64-byte cache line in a ring.
///
/// Applications set `msg_type`, `id` and `method_id`; the library fills in
/// where the payload is (`flags`, `payload_len`, the slot fields and the
/// inline bytes) when the message is sent.
///
/// ```
/// use shmhub::{MsgDesc, msg_type};
///
/// let desc = MsgDesc { msg_type: msg_type::REQUEST, id: 42, method_id: 7, ..MsgDesc::default() };
/// assert_eq!(MsgDesc::from_bytes(&desc.to_bytes()), desc);
/// ```
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgDesc {
    /// What kind of message this is (see [`msg_type`]).
    pub msg_type: u16,
    /// Placement flags ([`FLAG_SLOT`]).
    pub flags: u16,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Message id, chosen by the sender (for matching responses).
    pub id: u64,
    /// Method id, chosen by the application.
    pub method_id: u32,
    /// Slot index in the sender's pool (when [`FLAG_SLOT`] is set).
    pub slot_index: u32,
    /// Generation the slot had when it was allocated.
    pub slot_generation: u32,
    /// Offset of the payload inside the slot.
    pub slot_offset: u32,
    /// The payload itself, when it fits.
    pub inline: [u8; INLINE_CAPACITY],
}

const _: () = assert!(std::mem::size_of::<MsgDesc>() == DESC_SIZE);
const _: () = assert!(std::mem::align_of::<MsgDesc>() <= DESC_SIZE);

impl Default for MsgDesc {
    fn default() -> Self {
        MsgDesc {
            msg_type: msg_type::DATA,
            flags: 0,
            payload_len: 0,
            id: 0,
            method_id: 0,
            slot_index: 0,
            slot_generation: 0,
            slot_offset: 0,
            inline: [0; INLINE_CAPACITY],
        }
    }
}

impl MsgDesc {
    /// A descriptor of the given type and id, other fields zero.
    pub fn new(msg_type: u16, id: u64) -> Self {
        MsgDesc {
            msg_type,
            id,
            ..MsgDesc::default()
        }
    }

    /// Whether the payload is in a slot rather than inline.
    pub fn is_slot(&self) -> bool {
        self.flags & FLAG_SLOT != 0
    }

    /// The little-endian wire form.
    #[inline(always)]
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        b[0..2].copy_from_slice(&self.msg_type.to_le_bytes());
        b[2..4].copy_from_slice(&self.flags.to_le_bytes());
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..20].copy_from_slice(&self.method_id.to_le_bytes());
        b[20..24].copy_from_slice(&self.slot_index.to_le_bytes());
        b[24..28].copy_from_slice(&self.slot_generation.to_le_bytes());
        b[28..32].copy_from_slice(&self.slot_offset.to_le_bytes());
        b[32..64].copy_from_slice(&self.inline);
        b
    }

    /// A descriptor as a consumer took it off a ring: the wire form with
    /// the ring's phase bit (bit 15 of the flags) still in it, cleared
    /// here. Every bit pattern parses.
    // Built as four 16-byte lanes, so that the message's copies on its way
    // to the caller, 16 bytes at a time, are each served by one store
    // (built field by field, every copy waited on store forwarding).
    #[inline(always)]
    pub(crate) fn from_ring_bytes(b: &[u8; DESC_SIZE]) -> Self {
        // Word by word, through a mask that clears the phase bit alone: the
        // compiler makes this four 16-byte loads, ANDs and stores.
        let mut mask = [u32::MAX; DESC_SIZE / 4];
        mask[0] = !(u32::from(FLAG_PHASE) << 16);
        let mut words = [0u32; DESC_SIZE / 4];
        for ((word, bytes), mask) in words.iter_mut().zip(b.chunks_exact(4)).zip(mask) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) & mask;
        }
        // SAFETY: `MsgDesc` is `repr(C)`, 64 bytes of integers and bytes
        // with no padding (its fields add up to the 64 bytes asserted above
        // its definition), so every bit pattern is a valid value; on a
        // little-endian target (the only kind the crate builds for, see
        // lib.rs) its in-memory form is the wire form, which is what the
        // words hold, in order.
        unsafe { std::mem::transmute::<[u32; DESC_SIZE / 4], MsgDesc>(words) }
    }

    /// Parses the wire form. Every bit pattern parses; whether the result
    /// makes sense is checked when it is received.
    // Read as 64-bit words and split, not assembled byte by byte: four
    // loads instead of fourteen, on the path of every receive.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; DESC_SIZE]) -> Self {
        let word = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let (head, placement, slot) = (word(0), word(16), word(24));
        let mut inline = [0u8; INLINE_CAPACITY];
        inline.copy_from_slice(&b[32..64]);
        MsgDesc {
            msg_type: head as u16,
            flags: (head >> 16) as u16,
            payload_len: (head >> 32) as u32,
            id: word(8),
            method_id: placement as u32,
            slot_index: (placement >> 32) as u32,
            slot_generation: slot as u32,
            slot_offset: (slot >> 32) as u32,
            inline,
        }
    }
}

/// A message: a descriptor and its payload.
///
/// Where the payload travels is decided when the frame is sent: inline in
/// the descriptor when it fits in [`INLINE_CAPACITY`] bytes, otherwise in a
/// slot of the sender's pool.
///
/// ```
/// use shmhub::{Frame, MsgDesc};
///
/// let frame = Frame::new(MsgDesc::new(shmhub::msg_type::DATA, 1), b"hello".to_vec());
/// assert_eq!(frame.payload(), b"hello");
/// assert!(frame.fits_inline());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The descriptor (type, id, method; placement is filled in on send).
    pub desc: MsgDesc,
    payload: Vec<u8>,
}

impl Frame {
    /// A frame carrying `payload`.
    pub fn new(desc: MsgDesc, payload: impl Into<Vec<u8>>) -> Self {
        let payload = payload.into();
        let mut desc = desc;
        desc.payload_len = payload.len() as u32;
        Frame { desc, payload }
    }

    /// A frame for a small payload (the seed's name). Identical to
    /// [`Frame::new`]: a payload too large for the descriptor still travels,
    /// in a slot.
    pub fn new_inline(desc: MsgDesc, payload: impl AsRef<[u8]>) -> Self {
        Frame::new(desc, payload.as_ref().to_vec())
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out of the frame.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Whether the payload fits in the descriptor itself.
    pub fn fits_inline(&self) -> bool {
        self.payload.len() <= INLINE_CAPACITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What a consumer builds from a ring entry is the wire form parsed
    // field by field, with only the phase bit cleared, whatever the bytes.
    // shm[verify shm.ring.spsc]
    #[test]
    fn a_ring_entry_parses_as_its_wire_form_without_the_phase_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..1000 {
            let mut bytes = [0u8; DESC_SIZE];
            for byte in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            // Both phases, on every flag pattern.
            if round % 2 == 0 {
                bytes[3] |= 0x80;
            } else {
                bytes[3] &= 0x7F;
            }
            let mut expected = MsgDesc::from_bytes(&bytes);
            expected.flags &= !FLAG_PHASE;
            assert_eq!(MsgDesc::from_ring_bytes(&bytes), expected, "{bytes:?}");
        }
    }

    // shm[verify shm.send.placement]
    #[test]
    fn wire_form_round_trips_every_field() {
        let mut desc = MsgDesc {
            msg_type: 0xBEEF,
            flags: FLAG_SLOT,
            payload_len: 123_456,
            id: u64::MAX - 5,
            method_id: 77,
            slot_index: 9,
            slot_generation: 0xDEAD_BEEF,
            slot_offset: 64,
            inline: [0; INLINE_CAPACITY],
        };
        desc.inline[31] = 0xAA;
        desc.inline[0] = 0x55;
        assert_eq!(MsgDesc::from_bytes(&desc.to_bytes()), desc);
        assert_eq!(desc.to_bytes()[0..2], [0xEF, 0xBE]);
    }

    // shm[verify shm.send.placement]
    #[test]
    fn frame_records_length_and_placement() {
        let small = Frame::new_inline(MsgDesc::default(), b"hello");
        assert_eq!(small.desc.payload_len, 5);
        assert!(small.fits_inline());
        let big = Frame::new(MsgDesc::default(), vec![7u8; INLINE_CAPACITY + 1]);
        assert!(!big.fits_inline());
        assert_eq!(big.into_payload().len(), INLINE_CAPACITY + 1);
    }

    #[test]
    fn names_of_types() {
        assert_eq!(msg_type::name(msg_type::PONG), Some("pong"));
        assert_eq!(msg_type::name(999), None);
    }
}
