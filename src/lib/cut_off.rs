//! The guests this process, as the host, has cut off
//! (`shm.peer.quarantine`): its own record, in its own memory, so that
//! nothing a guest writes to the shared file (its state word set back to
//! Attached, say) lets it back in.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::party::PeerId;
use crate::ready::{WORDS, place};

/// One bit per guest (laid out as the ready summary's), set when the host cuts it off and cleared when its
/// entry is freed. Process-local: shared by the host's ends through the
/// segment, never written to the file.
#[derive(Debug, Default)]
pub(crate) struct CutOff {
    bits: [AtomicU64; WORDS],
}

impl CutOff {
    /// Records guest `p` as cut off; false if it was already.
    pub(crate) fn insert(&self, p: PeerId) -> bool {
        let (w, bit) = place(p);
        self.bits[w].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Lets guest `p` in again (its entry was freed).
    pub(crate) fn remove(&self, p: PeerId) {
        let (w, bit) = place(p);
        self.bits[w].fetch_and(!bit, Ordering::Relaxed);
    }

    /// Whether guest `p` is cut off.
    #[inline(always)]
    pub(crate) fn contains(&self, p: PeerId) -> bool {
        let (w, bit) = place(p);
        self.bits[w].load(Ordering::Relaxed) & bit != 0
    }

    /// The whole set, laid out as the ready summary's words are.
    #[inline(always)]
    pub(crate) fn words(&self) -> [u64; WORDS] {
        self.bits.each_ref().map(|w| w.load(Ordering::Relaxed))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::party::id;

    #[test]
    fn guests_go_in_and_out_one_bit_each() {
        let set = CutOff::default();
        assert!(set.insert(id(1)));
        assert!(!set.insert(id(1)), "already cut off");
        assert!(set.insert(id(65)));
        assert!(set.insert(id(255)));
        assert!(set.contains(id(1)) && set.contains(id(65)) && set.contains(id(255)));
        assert!(!set.contains(id(2)) && !set.contains(id(64)));
        assert_eq!(set.words(), [1, 1, 0, 1 << 62]);
        set.remove(id(65));
        assert!(!set.contains(id(65)));
        assert_eq!(set.words(), [1, 0, 0, 1 << 62]);
    }
}
