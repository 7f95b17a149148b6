//! The ready summary: one bit per guest in the header, set by a guest that
//! has published to its guest-to-host ring and cleared by the host once it
//! finds that ring empty, so that a receive from any guest looks at the
//! rings that may hold something instead of at every ring of the table.
//!
//! A bit is a hint, never a message: a set bit costs the host one look at
//! a ring, a clear one only means "look elsewhere first". What makes that
//! safe is that the host re-derives every bit from the rings themselves
//! before it sleeps, and a few entries at a time while it finds nothing,
//! so that a bit lost (a guest killed between its publication and its
//! bit, a publication that raced the host's clear on a processor that
//! does not fence it, a hostile guest clearing another's bit) delays a
//! message but never loses it.
//!
//! shm[impl shm.host.ready]

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::header;
use crate::party::PeerId;
use crate::region::{Region, RegionError, Word};
use crate::sync::atomic::AtomicU64;
use crate::wait::{Announce, Backoff, Deadline, Step, WaitStrategy, sleep_unless};

/// Words of the summary: 256 bits, one for each possible guest.
pub(crate) const WORDS: usize = 4;

/// Looks that found nothing between two sweeps ([`Picker::take_ready`]).
const SWEEP_EVERY: u32 = 64;
/// Entries one sweep looks at.
const SWEEP_ENTRIES: usize = 8;
/// How often a waiting receive counts the guests (`Picker::check_guests`).
const COUNT_GUESTS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// Guest `p`'s word and its bit in it.
#[inline(always)]
pub(crate) fn place(p: PeerId) -> (usize, u64) {
    let i = p.index();
    (i / 64, 1 << (i % 64))
}

/// Whether guest `p`'s bit is set in `bits`.
fn is_set(bits: [u64; WORDS], p: PeerId) -> bool {
    let (w, bit) = place(p);
    bits[w] & bit != 0
}

/// The summary word that holds guest `p`'s bit.
fn word_of(region: &Region, p: PeerId) -> Result<Word<AtomicU64>, RegionError> {
    Word::new(region, header::field::READY + 8 * place(p).0 as u64)
}

/// A guest's bit, as the guest sets it.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    word: Word<AtomicU64>,
    bit: u64,
}

impl Mark {
    /// Guest `guest`'s bit in the summary of `region`.
    pub(crate) fn new(region: &Region, guest: PeerId) -> Result<Self, RegionError> {
        Ok(Mark {
            word: word_of(region, guest)?,
            bit: place(guest).1,
        })
    }

    /// After a publication on the guest's ring: sets the bit unless it is
    /// set already, so that a guest whose bit the host has not cleared
    /// yet (a busy one) only reads the word, and its line stays shared.
    /// The load is sequentially consistent, after the publication's own
    /// (`shm.ring.wake`): it pairs with the host's clear-then-look.
    #[inline(always)]
    pub(crate) fn set(&self) {
        let word = self.word.get();
        if word.load(Ordering::SeqCst) & self.bit == 0 {
            word.fetch_or(self.bit, Ordering::SeqCst);
        }
    }

    /// Sets the bit whatever it holds: for a guest that has just left its
    /// entry in Goodbye, so that the host looks, and, reading this write
    /// with its clear, sees the move.
    pub(crate) fn force(&self) {
        self.word.get().fetch_or(self.bit, Ordering::SeqCst);
    }
}

/// The summary, as the host reads and clears it.
#[derive(Debug)]
struct Summary {
    /// The words that hold a guest's bit (`ceil(max_guests / 64)`).
    words: Vec<Word<AtomicU64>>,
    /// The bits of each word that belong to a guest of this segment: a
    /// bit set past `max_guests` (by a hostile guest) is not looked at.
    valid: [u64; WORDS],
}

impl Summary {
    /// The summary of a segment of `guests` guests in `region`.
    fn new(region: &Region, guests: usize) -> Result<Self, RegionError> {
        let mut valid = [0; WORDS];
        for (w, bits) in valid.iter_mut().enumerate() {
            *bits = match guests.saturating_sub(64 * w).min(64) {
                64 => u64::MAX,
                n => (1 << n) - 1,
            };
        }
        let words = (0..guests.div_ceil(64))
            .map(|w| word_of(region, PeerId::at_index(64 * w)))
            .collect::<Result<_, _>>()?;
        Ok(Summary { words, valid })
    }

    /// The bits as they are now (acquire: a set bit's ring shows what
    /// was published before the bit), but those of the guests `cut_off`,
    /// to be taken out round-robin from guest `from` on.
    #[inline(always)]
    fn load(&self, from: PeerId, cut_off: [u64; WORDS]) -> Ready {
        let mut now = [0; WORDS];
        for (((bits, word), valid), cut) in
            now.iter_mut().zip(&self.words).zip(self.valid).zip(cut_off)
        {
            *bits = word.get().load(Ordering::Acquire) & valid & !cut;
        }
        Ready::split(now, from.index())
    }

    /// Clears guest `p`'s bit, sequentially consistent: a look at its
    /// ring after this sees what a guest published before it read the bit
    /// as still set (`Mark::set`).
    #[inline]
    fn clear(&self, p: PeerId) {
        let (w, bit) = place(p);
        if let Some(word) = self.words.get(w) {
            word.get().fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// Sets guest `p`'s bit unless it is set: the host's own, for a ring
    /// it found holding something.
    fn set(&self, p: PeerId) {
        let (w, bit) = place(p);
        if let Some(word) = self.words.get(w)
            && word.get().load(Ordering::SeqCst) & bit == 0
        {
            word.get().fetch_or(bit, Ordering::SeqCst);
        }
    }
}

/// What the host's receive from any guest needs of the guests' rings and
/// entries: the segment's (`receiver.rs`), or a model's (`loom_tests.rs`).
pub(crate) trait Inbox {
    /// What a look takes off a ring.
    type Taken;

    /// Takes the next message off guest `p`'s ring, if there is one, and
    /// nothing otherwise.
    fn take(&mut self, p: PeerId) -> Result<Option<Self::Taken>>;

    /// Whether guest `p`'s ring is empty, judged sequentially consistent
    /// (`shm.ring.empty`, after an announcement).
    fn is_empty_now(&self, p: PeerId) -> bool;

    /// Whether guest `p` has left its entry (Goodbye).
    fn has_left(&self, p: PeerId) -> Result<bool>;

    /// Frees guest `p`'s entry if it has left and nothing it sent is
    /// left to read.
    fn finish_goodbye(&self, p: PeerId) -> Result<()>;

    /// The guests the host has cut off (`shm.peer.quarantine`), one bit
    /// each as in the summary: never looked at.
    fn cut_off(&self) -> [u64; WORDS];

    /// Whether any guest could still send: an entry attached, reserved or
    /// leaving, and not cut off.
    fn has_guests(&self) -> Result<bool>;

    /// Whether a guest has claimed an entry since the receiving end was
    /// made (its epoch moved), even one that has left again since.
    fn claimed_since_start(&self) -> Result<bool>;
}

/// The host's side of the summary: which ring its receive from any guest
/// looks at next, and how it waits when none holds anything.
#[derive(Debug)]
pub(crate) struct Picker {
    summary: Summary,
    /// The header's doorbell and waiting flag (`shm.host.doorbell`).
    doorbell: Word,
    host_waiting: Word,
    /// `max_guests`.
    guests: usize,
    /// Where the next look starts (round-robin).
    next: PeerId,
    /// The guest served last (none yet, or none since the last sweep).
    /// Its bit is left set when its ring is found empty, so that a guest
    /// in a conversation with the host, answering each message, writes
    /// nothing to the summary; the host looks at its ring at each pass
    /// instead, until it serves another guest, finds that this one has
    /// left, or has found nothing for a while.
    hot: Option<PeerId>,
    /// Looks that found nothing since the last sweep.
    idle: u32,
    /// Looks that find nothing between two sweeps.
    sweep_every: u32,
    /// The entry the next sweep starts at.
    sweep_at: PeerId,
    /// Whether a guest has been seen since this picker began (a message
    /// from one, one counted, or an entry claimed since): only then can
    /// every guest have gone (`shm.host.no-guests`).
    seen_guest: bool,
    /// Whether a receive waits on when no guest is left, for new ones.
    waits_for_guests: bool,
    /// When the guests were last counted, while waiting.
    guests_counted: Option<Instant>,
}

impl Picker {
    /// The picker of a segment of `guests` guests in `region`.
    pub(crate) fn new(region: &Region, guests: usize) -> Result<Self, RegionError> {
        Ok(Picker {
            summary: Summary::new(region, guests)?,
            doorbell: Word::new(region, header::field::HOST_DOORBELL)?,
            host_waiting: Word::new(region, header::field::HOST_WAITING)?,
            guests,
            next: PeerId::at_index(0),
            hot: None,
            idle: 0,
            sweep_every: SWEEP_EVERY,
            sweep_at: PeerId::at_index(0),
            seen_guest: false,
            waits_for_guests: false,
            guests_counted: None,
        })
    }

    /// The same without sweeps: a model's, to show that the clear and the
    /// look after it lose nothing on their own.
    #[cfg(all(loom, test))]
    pub(crate) fn without_sweeps(mut self) -> Self {
        self.sweep_every = u32::MAX;
        self
    }

    /// Whether a receive waits on when every guest has gone, for new ones
    /// to come (default: no, it fails with [`Error::NoGuests`]).
    pub(crate) fn wait_for_guests(&mut self, yes: bool) {
        self.waits_for_guests = yes;
    }

    /// While a receive waits: fails with [`Error::NoGuests`] once no guest
    /// could send anything any more (none attached, reserved or leaving)
    /// after one was seen, unless the receive waits for new guests. The
    /// guests are counted at most every [`COUNT_GUESTS_EVERY`], so that a
    /// spinning receive stays on its rings.
    ///
    /// shm[impl shm.host.no-guests]
    #[cold]
    fn check_guests<I: Inbox>(&mut self, inbox: &I) -> Result<()> {
        if self.waits_for_guests
            || self
                .guests_counted
                .is_some_and(|at| at.elapsed() < COUNT_GUESTS_EVERY)
        {
            return Ok(());
        }
        self.guests_counted = Some(Instant::now());
        if inbox.has_guests()? {
            self.seen_guest = true;
            return Ok(());
        }
        // A guest that came and went between two counts (before the
        // first, say) was never counted, but moved its entry's epoch.
        if self.seen_guest || inbox.claimed_since_start()? {
            self.seen_guest = true;
            return Err(Error::NoGuests);
        }
        Ok(())
    }

    /// Receives from any guest: looks at the rings the summary names with
    /// [`Picker::take_ready`] until one holds something, waiting as `strategy`
    /// says until `deadline`. A sleep is on the host's doorbell, which a
    /// guest rings when it publishes to a host that said it sleeps.
    ///
    /// shm[impl shm.host.doorbell]
    #[inline(always)]
    pub(crate) fn receive<I: Inbox>(
        &mut self,
        inbox: &mut I,
        strategy: WaitStrategy,
        deadline: &mut Deadline,
    ) -> Result<Option<I::Taken>> {
        let mut backoff = Backoff::full(strategy);
        loop {
            let rung = self.doorbell.get().load(Ordering::Acquire);
            if let Some(found) = self.take_ready(inbox)? {
                return Ok(Some(found));
            }
            match backoff.next_step(deadline) {
                Step::Again => {}
                Step::Check => self.check_guests(inbox)?,
                Step::Expired => return Ok(None),
                Step::Sleep(nap) => {
                    self.check_guests(inbox)?;
                    self.sleep(inbox, rung, nap)?;
                }
            }
        }
    }

    /// Sleeps on the doorbell, which held `rung` before the last look,
    /// for at most `nap`, unless a look at every ring after announcing
    /// the sleep finds something: a guest that published before the
    /// announcement is seen, even one whose bit was lost; one that
    /// publishes after it sees the announcement and rings the doorbell
    /// (`header::wake_host`).
    #[cold]
    fn sleep<I: Inbox>(&mut self, inbox: &I, rung: u32, nap: std::time::Duration) -> Result<()> {
        let (doorbell, host_waiting) = (self.doorbell.clone(), self.host_waiting.clone());
        let nothing_new = || Ok((!self.look_at_every_ring(inbox)?).then_some(rung));
        sleep_unless(
            Announce::Flag(host_waiting.get(), None),
            doorbell.get(),
            nap,
            nothing_new,
        )
    }

    /// Looks at the rings of the guests whose bit is set, round-robin from
    /// the guest after the one served last, and returns what the first
    /// that holds a message gives. A ring found empty has its bit cleared
    /// (but the hot guest's, while it stays) and is looked at once more.
    ///
    /// shm[impl shm.host.fair]
    #[inline(always)]
    pub(crate) fn take_ready<I: Inbox>(&mut self, inbox: &mut I) -> Result<Option<I::Taken>> {
        for p in self.summary.load(self.next, inbox.cut_off()) {
            if let Some(found) = inbox.take(p)? {
                return Ok(Some(self.served(p, found)));
            }
            // The hot guest keeps its bit, unless it has left: then its
            // goodbye is finished at once.
            if self.hot == Some(p) && !inbox.has_left(p)? {
                continue;
            }
            if let Some(found) = self.let_go(p, inbox)? {
                return Ok(Some(self.served(p, found)));
            }
        }
        self.found_nothing(inbox)?;
        Ok(None)
    }

    /// After a message from guest `p`: the next look starts after it, and
    /// `p` is the hot guest.
    #[inline(always)]
    fn served<T>(&mut self, p: PeerId, found: T) -> T {
        // The entry after p's: p's id is that entry's index.
        self.next = PeerId::at_index(usize::from(p) % self.guests);
        self.hot = Some(p);
        self.idle = 0;
        self.seen_guest = true;
        found
    }

    /// Guest `p`'s ring was found empty: clears its bit, then looks again
    /// (sequentially consistent), for a message published as the bit was
    /// cleared by a guest that saw it still set, and takes that. With
    /// nothing there, finishes the goodbye of a guest that has left.
    fn let_go<I: Inbox>(&self, p: PeerId, inbox: &mut I) -> Result<Option<I::Taken>> {
        self.summary.clear(p);
        if inbox.is_empty_now(p) {
            inbox.finish_goodbye(p)?;
            return Ok(None);
        }
        inbox.take(p)
    }

    /// After a look that found nothing: every `sweep_every` such looks,
    /// the hot guest is hot no more, and a few entries are swept.
    #[inline(always)]
    fn found_nothing<I: Inbox>(&mut self, inbox: &I) -> Result<()> {
        self.idle = self.idle.wrapping_add(1);
        if self.idle < self.sweep_every {
            return Ok(());
        }
        self.idle = 0;
        self.hot = None;
        self.sweep(inbox)
    }

    /// Re-derives the bits of the next [`SWEEP_ENTRIES`] entries from
    /// their rings ([`Picker::recheck`]), so that a receive that never
    /// sleeps still finds, in time, a message whose bit was lost.
    #[cold]
    fn sweep<I: Inbox>(&mut self, inbox: &I) -> Result<()> {
        let cut_off = inbox.cut_off();
        for _ in 0..SWEEP_ENTRIES.min(self.guests) {
            let p = self.sweep_at;
            self.sweep_at = PeerId::at_index(usize::from(p) % self.guests);
            if !is_set(cut_off, p) {
                self.recheck(p, inbox)?;
            }
        }
        Ok(())
    }

    /// Re-derives every bit from the rings ([`Picker::recheck`]) before a
    /// sleep; whether any ring holds something.
    fn look_at_every_ring<I: Inbox>(&mut self, inbox: &I) -> Result<bool> {
        self.hot = None;
        let cut_off = inbox.cut_off();
        let mut found = false;
        for p in (0..self.guests).map(PeerId::at_index) {
            if !is_set(cut_off, p) {
                found |= self.recheck(p, inbox)?;
            }
        }
        Ok(found)
    }

    /// Re-derives guest `p`'s bit from its ring, judged sequentially
    /// consistent: sets it if the ring holds something (and says so), and
    /// otherwise finishes the goodbye of a guest that has left.
    fn recheck<I: Inbox>(&self, p: PeerId, inbox: &I) -> Result<bool> {
        if inbox.is_empty_now(p) {
            inbox.finish_goodbye(p)?;
            return Ok(false);
        }
        self.summary.set(p);
        Ok(true)
    }
}

/// The bits of one load of the summary, handed out round-robin: first
/// those of the guests from the starting one on, then those before it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ready {
    from_start: [u64; WORDS],
    before_start: [u64; WORDS],
}

impl Ready {
    /// `bits` split at bit index `start`.
    fn split(bits: [u64; WORDS], start: usize) -> Self {
        let mut from_start = bits;
        let mut before_start = [0; WORDS];
        for (w, (high, low)) in from_start.iter_mut().zip(&mut before_start).enumerate() {
            let below = match start.saturating_sub(64 * w) {
                0 => 0,
                n if n >= 64 => u64::MAX,
                n => (1 << n) - 1,
            };
            *low = *high & below;
            *high &= !below;
        }
        Ready {
            from_start,
            before_start,
        }
    }
}

impl Iterator for Ready {
    type Item = PeerId;

    #[inline(always)]
    fn next(&mut self) -> Option<PeerId> {
        let words = self.from_start.iter_mut().chain(&mut self.before_start);
        for (w, bits) in words.enumerate() {
            if *bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                *bits &= *bits - 1;
                // Below 255: a summary has a bit for no more guests.
                return Some(PeerId::at_index(64 * (w % WORDS) + bit));
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;
    use crate::party::id;

    fn made(max_guests: usize) -> (Region, Summary) {
        let region = HeapRegion::new_zeroed(4096).unwrap().region();
        let summary = Summary::new(&region, max_guests).unwrap();
        (region, summary)
    }

    // shm[verify shm.host.ready]
    #[test]
    fn bits_come_out_round_robin_from_the_starting_guest() {
        let (region, summary) = made(255);
        for p in [1, 2, 64, 65, 130, 200, 255] {
            Mark::new(&region, id(p)).unwrap().set();
        }
        let all: Vec<_> = summary.load(id(1), [0; WORDS]).collect();
        assert_eq!(all, [1, 2, 64, 65, 130, 200, 255]);
        let from_65: Vec<_> = summary.load(id(65), [0; WORDS]).collect();
        assert_eq!(from_65, [65, 130, 200, 255, 1, 2, 64]);
        let from_66: Vec<_> = summary.load(id(66), [0; WORDS]).collect();
        assert_eq!(from_66, [130, 200, 255, 1, 2, 64, 65]);
        let from_255: Vec<_> = summary.load(id(255), [0; WORDS]).collect();
        assert_eq!(from_255, [255, 1, 2, 64, 65, 130, 200]);
        summary.clear(id(65));
        summary.clear(id(1));
        assert_eq!(
            summary.load(id(1), [0; WORDS]).collect::<Vec<_>>(),
            [2, 64, 130, 200, 255]
        );
    }

    // A bit set past the table (only a hostile guest sets one) is never
    // handed out: it names no ring.
    // shm[verify shm.host.ready]
    #[test]
    fn bits_of_no_guest_are_left_out() {
        let (region, summary) = made(3);
        region
            .store_u64(header::field::READY, u64::MAX, Ordering::Relaxed)
            .unwrap();
        region
            .store_u64(header::field::READY + 8, u64::MAX, Ordering::Relaxed)
            .unwrap();
        assert_eq!(
            summary.load(id(2), [0; WORDS]).collect::<Vec<_>>(),
            [2, 3, 1]
        );
        let (region, summary) = made(64);
        region
            .store_u64(header::field::READY + 8, u64::MAX, Ordering::Relaxed)
            .unwrap();
        assert_eq!(summary.load(id(1), [0; WORDS]).next(), None);
    }

    // A guest whose bit is set writes nothing: its line stays as it was.
    // shm[verify shm.host.ready]
    #[test]
    fn a_set_bit_is_not_written_again() {
        let (region, summary) = made(8);
        let mark = Mark::new(&region, id(5)).unwrap();
        mark.set();
        assert_eq!(summary.load(id(1), [0; WORDS]).collect::<Vec<_>>(), [5]);
        mark.set();
        mark.force();
        assert_eq!(
            region
                .load_u64(header::field::READY, Ordering::Relaxed)
                .unwrap(),
            1 << 4
        );
        summary.clear(id(5));
        assert_eq!(summary.load(id(1), [0; WORDS]).next(), None);
        summary.set(id(5));
        assert_eq!(summary.load(id(3), [0; WORDS]).collect::<Vec<_>>(), [5]);
    }
}

#[cfg(all(test, not(loom)))]
mod picker_tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;
    use crate::HeapRegion;
    use crate::party::id;

    /// Queues in memory for rings, and entries that may have left; counts
    /// every look at a ring.
    struct Queues {
        queues: Vec<VecDeque<u32>>,
        left: Vec<bool>,
        freed: RefCell<Vec<PeerId>>,
        looks: RefCell<usize>,
        cut: [u64; WORDS],
    }

    impl Queues {
        fn new(guests: usize) -> Self {
            Queues {
                queues: vec![VecDeque::new(); guests],
                left: vec![false; guests],
                freed: RefCell::new(Vec::new()),
                looks: RefCell::new(0),
                cut: [0; WORDS],
            }
        }
    }

    impl Inbox for Queues {
        type Taken = (PeerId, u32);

        fn take(&mut self, p: PeerId) -> Result<Option<(PeerId, u32)>> {
            *self.looks.borrow_mut() += 1;
            Ok(self.queues[p.index()].pop_front().map(|m| (p, m)))
        }

        fn is_empty_now(&self, p: PeerId) -> bool {
            *self.looks.borrow_mut() += 1;
            self.queues[p.index()].is_empty()
        }

        fn has_left(&self, p: PeerId) -> Result<bool> {
            Ok(self.left[p.index()])
        }

        fn finish_goodbye(&self, p: PeerId) -> Result<()> {
            if self.left[p.index()] && self.queues[p.index()].is_empty() {
                self.freed.borrow_mut().push(p);
            }
            Ok(())
        }

        fn cut_off(&self) -> [u64; WORDS] {
            self.cut
        }

        fn has_guests(&self) -> Result<bool> {
            Ok(true)
        }

        fn claimed_since_start(&self) -> Result<bool> {
            Ok(true)
        }
    }

    struct Host {
        region: Region,
        picker: Picker,
        inbox: Queues,
    }

    impl Host {
        fn new(guests: usize) -> Self {
            let region = HeapRegion::new_zeroed(4096).unwrap().region();
            Host {
                picker: Picker::new(&region, guests).unwrap(),
                inbox: Queues::new(guests),
                region,
            }
        }

        /// Guest `p` sends `m`, as a guest's producer does.
        fn send(&mut self, p: u8, m: u32) {
            let p = id(p);
            self.inbox.queues[p.index()].push_back(m);
            Mark::new(&self.region, p).unwrap().set();
        }

        /// The guest's number and the message.
        fn take_ready(&mut self) -> Option<(u8, u32)> {
            let taken = self.picker.take_ready(&mut self.inbox).unwrap();
            taken.map(|(p, m)| (p.get(), m))
        }

        fn bits(&self) -> Vec<PeerId> {
            self.picker.summary.load(id(1), [0; WORDS]).collect()
        }
    }

    // A guest cut off is never looked at, however much it has queued and
    // whatever its bit says, and keeps no sleep from happening.
    // shm[verify shm.peer.quarantine]
    #[test]
    fn a_guest_cut_off_is_never_looked_at() {
        let mut host = Host::new(130);
        host.send(2, 1);
        host.send(129, 2);
        host.send(129, 3);
        host.inbox.cut[2] = 1; // guest 129
        assert_eq!(host.take_ready(), Some((2, 1)));
        let looks = *host.inbox.looks.borrow();
        assert_eq!(host.take_ready(), None);
        assert_eq!(host.inbox.queues[128].len(), 2, "its messages stay");
        // One look at guest 2's ring (empty), one after its clear: none
        // at guest 129's.
        assert!(*host.inbox.looks.borrow() - looks <= 2);
        assert!(!host.picker.look_at_every_ring(&host.inbox).unwrap());
        for _ in 0..3 * SWEEP_EVERY {
            assert_eq!(host.take_ready(), None);
        }
        host.inbox.cut = [0; WORDS];
        assert!(host.picker.look_at_every_ring(&host.inbox).unwrap());
        assert_eq!(host.take_ready(), Some((129, 2)));
    }

    // Round-robin over the guests with something queued: a guest with a
    // message is served within one pass over them, however much the
    // others have queued.
    // shm[verify shm.host.fair]
    #[test]
    fn ready_guests_are_served_in_turn() {
        let mut host = Host::new(255);
        for m in 0..5 {
            host.send(3, m);
            host.send(200, 100 + m);
        }
        host.send(77, 1000);
        let order: Vec<_> = (0..11).map(|_| host.take_ready().unwrap()).collect();
        assert_eq!(
            order,
            [
                (3, 0),
                (77, 1000),
                (200, 100),
                (3, 1),
                (200, 101),
                (3, 2),
                (200, 102),
                (3, 3),
                (200, 103),
                (3, 4),
                (200, 104),
            ]
        );
        assert_eq!(host.take_ready(), None);
    }

    // A look costs what the summary names, not the table: with one guest
    // of 255 talking, each receive looks at its ring alone.
    // shm[verify shm.host.ready]
    #[test]
    fn a_look_visits_only_marked_rings() {
        let mut host = Host::new(255);
        for m in 0..100 {
            host.send(150, m);
            assert_eq!(host.take_ready(), Some((150, m)));
            assert_eq!(host.take_ready(), None);
        }
        // Two looks per round: the take and the empty look after it.
        assert_eq!(*host.inbox.looks.borrow(), 200);
    }

    // The hot guest keeps its bit while the host finds it empty, so that
    // a guest answering each message writes nothing; once another guest
    // is served, or after a while with nothing, the bit goes.
    // shm[verify shm.host.ready]
    #[test]
    fn the_hot_guest_keeps_its_bit_until_another_is_served_or_it_idles() {
        let mut host = Host::new(8);
        host.send(2, 1);
        assert_eq!(host.take_ready(), Some((2, 1)));
        assert_eq!(host.take_ready(), None);
        assert_eq!(host.bits(), [2]);
        host.send(5, 2);
        assert_eq!(host.take_ready(), Some((5, 2)));
        // Guest 2 is not hot any more: found empty, its bit goes.
        assert_eq!(host.take_ready(), None);
        assert_eq!(host.bits(), [5]);
        for _ in 0..SWEEP_EVERY {
            assert_eq!(host.take_ready(), None);
        }
        assert_eq!(host.take_ready(), None);
        assert_eq!(host.bits(), Vec::<PeerId>::new());
    }

    // A bit lost (a guest killed between its publication and its bit, or
    // a hostile guest clearing another's) delays the message until a sweep
    // or the look before a sleep; never longer.
    // shm[verify shm.host.ready]
    #[test]
    fn a_lost_bit_is_found_by_the_sweeps_and_before_a_sleep() {
        let guests = 40;
        let mut host = Host::new(guests);
        host.inbox.queues[30].push_back(7);
        let mut looks = 0;
        let found = loop {
            looks += 1;
            if let Some(found) = host.take_ready() {
                break found;
            }
        };
        assert_eq!(found, (31, 7));
        let sweeps = guests.div_ceil(SWEEP_ENTRIES);
        assert!(looks <= SWEEP_EVERY as usize * sweeps + 1, "{looks} looks");

        host.inbox.queues[9].push_back(8);
        assert!(host.picker.look_at_every_ring(&host.inbox).unwrap());
        // Guest 31's bit stays until a look finds its ring empty.
        assert_eq!(host.bits(), [10, 31]);
        assert_eq!(host.take_ready(), Some((10, 8)));
    }

    // A guest that leaves sets its bit; the host, finding its ring empty,
    // frees its entry, even while it is the hot guest.
    // shm[verify shm.host.ready]
    #[test]
    fn a_departed_guest_is_freed_once_its_ring_is_empty() {
        let mut host = Host::new(8);
        host.send(4, 1);
        host.inbox.left[3] = true;
        Mark::new(&host.region, id(4)).unwrap().force();
        assert_eq!(host.take_ready(), Some((4, 1)));
        assert!(host.inbox.freed.borrow().is_empty());
        assert_eq!(host.take_ready(), None);
        assert_eq!(*host.inbox.freed.borrow(), [4]);
        assert_eq!(host.bits(), Vec::<PeerId>::new());
    }
}
