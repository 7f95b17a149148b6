//! A file descriptor an event loop can wait on (epoll, mio, tokio's
//! `AsyncFd`, Python's `loop.add_reader`): it becomes readable when this
//! side has something to receive, when room a sender asked about came
//! free, or when the process of a party on the other side ends.
//!
//! The other side wakes a sleeper through a futex word in the segment
//! (the handshake in `wait.rs`), and a futex is not something `epoll` can
//! wait on. So a [`Readiness`] keeps a small thread, its *waker*, that
//! sleeps on those words in the party's stead, announced exactly as a
//! blocking receive announces itself, and turns a wake into a write to an
//! `eventfd`. Nothing changes for the other side or on the byte format,
//! and a process that never asks for a descriptor has no waker: its send
//! and receive paths are the same instructions as before.
//!
//! Deaths come through the same descriptor without any polling: the waker
//! keeps a pidfd for each process on the other side (the host's, or each
//! guest holder's) in the epoll set that *is* the descriptor, and a pidfd
//! becomes readable the moment its process ends.
//!
//! shm[impl shm.ready.fd]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, epoll, eventfd};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

use crate::error::{Error, Result};
use crate::header;
use crate::layout::Direction;
use crate::party::{Party, PeerId, PeerState};
use crate::region::Word;
use crate::ring::Ring;
use crate::segment::Segment;
use crate::sys;
use crate::wait::{Announce, MAX_SLEEP, Publisher, Vigil};

/// The epoll data of the eventfd; a pidfd's is its party and pid.
const EVENTS: u64 = u64::MAX;
/// How often the waker looks for new processes on the other side while
/// nothing wakes it (a guest's attach wakes a host that waits at once).
const LOOK_FOR_PROCESSES_EVERY: Duration = Duration::from_millis(50);

/// A party on the other side that is gone, as [`Readiness::drain`]
/// reports it: its process ended, or (the host) it said goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The party.
    pub party: Party,
    /// Its process id (0 for a host that said goodbye with no process).
    pub pid: u32,
    /// Whether it said goodbye (the host: `shm.host.goodbye`); its
    /// process may still run. Otherwise its process ended.
    pub goodbye: bool,
}

/// What a sender saw of its ring and pool just before a send that found
/// no room ([`crate::Sender::room_mark`]): handed to
/// [`Readiness::tell_when_room`], it has the descriptor become readable
/// once the receiver has taken something or freed a slot since.
#[derive(Debug, Clone)]
pub struct RoomMark {
    pub(crate) vigils: Vec<Vigil>,
}

/// A file descriptor that becomes readable when this side of a segment
/// has something to do: a message to receive, room it asked about in a
/// ring or pool, or a party on the other side whose process ended. Made
/// by [`crate::ShmHost::readiness`] and [`crate::ShmGuest::readiness`].
///
/// It is **level-triggered**: once readable it stays readable until
/// [`Readiness::drain`] is called, and after a drain it becomes readable
/// again at once if something is still queued. The way to use it, in
/// any loop:
///
/// 1. wait until the descriptor is readable;
/// 2. call [`Readiness::drain`] (one call; it says which processes on the
///    other side ended);
/// 3. receive without waiting ([`crate::Timeout::NoWait`]) until nothing
///    is left.
///
/// Draining *before* receiving is what loses no wake-up: a message that
/// comes after the drain makes the descriptor readable again, even if
/// step 3 already took it (then the next round finds nothing, which is
/// harmless).
///
/// ```
/// use std::os::fd::AsRawFd;
/// use shmhub::{Frame, MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout};
///
/// let mut host = ShmHost::create_heap(SegmentConfig::default())?;
/// let mut guest = ShmGuest::attach(host.region())?;
/// let ready = host.readiness()?;
/// guest.send(Frame::new(MsgDesc::new(2, 1), b"wake up".to_vec()))?;
///
/// // What an event loop does: poll the descriptor, then drain, then receive.
/// let mut fds = [libc::pollfd { fd: ready.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) }, 1);
/// assert!(ready.drain()?.is_empty()); // no process ended
/// let (from, msg) = host.any_receiver().recv(Timeout::NoWait)?.expect("queued");
/// assert_eq!((from, msg.payload()), (guest.peer_id(), &b"wake up"[..]));
/// # Ok::<(), shmhub::Error>(())
/// ```
#[derive(Debug)]
pub struct Readiness {
    shared: Arc<Shared>,
    waker: Option<JoinHandle<()>>,
}

/// What the waker thread and the handle share.
#[derive(Debug)]
struct Shared {
    seg: Arc<Segment>,
    inbound: Inbound,
    /// The descriptor handed out: the eventfd and the pidfds.
    epoll: OwnedFd,
    /// Written by the waker when there is something to receive or room.
    events: OwnedFd,
    /// Bumped (and woken) to have the waker look at `plan` again.
    control: AtomicU32,
    stop: AtomicBool,
    plan: Mutex<Plan>,
}

/// What the waker is to watch, changed by the handle.
#[derive(Debug, Default)]
struct Plan {
    /// Whether to tell when something is queued (until the next drain).
    receive: bool,
    /// Room asked about by senders: told once each, then forgotten.
    rooms: Vec<Vigil>,
    /// The processes on the other side, by [`tag`].
    processes: Pidfds,
    /// Ends found by the waker (a process ended before it could be
    /// watched, the host's goodbye): reported by the next drain.
    pending: Vec<Ended>,
    /// Whether the host's goodbye was found (it is told once).
    goodbye_seen: bool,
}

/// What this side receives from.
#[derive(Debug)]
enum Inbound {
    /// One ring, from this party.
    Ring(Box<Ring>, Party),
    /// Every guest's ring to the host, with the host's doorbell and its
    /// count of sleepers (`shm.host.doorbell`).
    Host {
        rings: Vec<Ring>,
        doorbell: Word,
        sleepers: Word,
    },
}

impl Inbound {
    /// How to announce a sleep, before [`Inbound::vigil`] looks.
    fn announcement(&self) -> Announce<'_> {
        match self {
            Inbound::Ring(ring, _) => ring.consumer_announcement(),
            Inbound::Host { sleepers, .. } => Announce::Flag(sleepers.get(), None),
        }
    }

    /// A sleep on what this side receives, judged now (after announcing
    /// it): `unchanged` is `None` if something is queued.
    fn vigil(&self, seg: &Segment) -> Vigil {
        match self {
            Inbound::Ring(ring, _) => ring.consumer_vigil(),
            Inbound::Host {
                rings,
                doorbell,
                sleepers,
            } => {
                // Read before the rings: a guest that publishes after
                // the look below saw the announcement and bumps the
                // doorbell, so the sleep does not begin.
                let rung = doorbell.get().load(Ordering::SeqCst);
                let queued = rings.iter().enumerate().any(|(i, ring)| {
                    !seg.cut_off.contains(PeerId::at_index(i)) && !ring.is_empty_now()
                });
                Vigil {
                    word: doorbell.clone(),
                    sleepers: sleepers.clone(),
                    publisher: Publisher::Unfenced(None),
                    unchanged: (!queued).then_some(rung),
                }
            }
        }
    }

    /// The processes on the other side now, with their start times.
    fn processes(&self, seg: &Segment) -> Result<Vec<(Party, u32, u64)>> {
        match self {
            Inbound::Ring(_, Party::Host) => {
                let h = seg.header()?;
                Ok(if h.host_goodbye || h.host_pid == 0 {
                    Vec::new()
                } else {
                    vec![(Party::Host, h.host_pid, h.host_start_time)]
                })
            }
            Inbound::Ring(_, Party::Guest(p)) => Ok(guest_process(seg, *p)?.into_iter().collect()),
            Inbound::Host { .. } => {
                let mut found = Vec::new();
                for p in seg.layout.guests() {
                    found.extend(guest_process(seg, p)?);
                }
                Ok(found)
            }
        }
    }
}

/// The process holding guest `p`'s entry, if a process holds it.
fn guest_process(seg: &Segment, p: PeerId) -> Result<Option<(Party, u32, u64)>> {
    let entry = seg.peer(p).snapshot()?;
    let holds = matches!(entry.state, PeerState::Attached | PeerState::Goodbye);
    Ok((holds && entry.held && entry.pid != 0).then_some((
        Party::Guest(p),
        entry.pid,
        entry.start_time,
    )))
}

/// A pidfd's epoll data: the party's number (0: the host) and the pid.
fn tag(party: Party, pid: u32) -> u64 {
    (u64::from(pid) << 8) | u64::from(party.number())
}

fn untag(data: u64) -> (Party, u32) {
    (Party::from_number((data & 0xff) as u8), (data >> 8) as u32)
}

/// A failed system call of a readiness descriptor, as an error on the
/// segment `seg` (a heap segment has no path: it says so).
fn io_error(seg: &Segment, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        path: seg
            .path()
            .map_or_else(|| "(segment in memory)".into(), Path::to_path_buf),
        cause: std::io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

impl Readiness {
    /// The readiness of one receiving end: `ring` of `seg`, fed by `from`.
    pub(crate) fn ring(seg: &Arc<Segment>, ring: Ring, from: Party) -> Result<Self> {
        Self::start(seg, Inbound::Ring(Box::new(ring), from))
    }

    /// The readiness of the host of `seg`, for what any guest sends.
    pub(crate) fn host(seg: &Arc<Segment>) -> Result<Self> {
        let rings = seg
            .layout
            .guests()
            .map(|p| {
                Ring::open(
                    &seg.region,
                    seg.layout.ring(p, Direction::GuestToHost),
                    seg.layout.config.ring_capacity,
                )
            })
            .collect::<std::result::Result<_, _>>()?;
        let inbound = Inbound::Host {
            rings,
            doorbell: Word::new(&seg.region, header::field::HOST_DOORBELL)?,
            sleepers: Word::new(&seg.region, header::field::HOST_WAITING)?,
        };
        Self::start(seg, inbound)
    }

    fn start(seg: &Arc<Segment>, inbound: Inbound) -> Result<Self> {
        let events = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| io_error(seg, "eventfd", e.into()))?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| io_error(seg, "epoll_create", e.into()))?;
        epoll::add(
            &epoll,
            &events,
            epoll::EventData::new_u64(EVENTS),
            epoll::EventFlags::IN,
        )
        .map_err(|e| io_error(seg, "epoll_ctl", e.into()))?;
        let shared = Arc::new(Shared {
            seg: seg.clone(),
            inbound,
            epoll,
            events,
            control: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            plan: Mutex::new(Plan {
                receive: true,
                ..Plan::default()
            }),
        });
        // The processes there now are watched before this returns, so
        // that one killed right after is told.
        shared.look_for_processes()?;
        let waker = std::thread::Builder::new()
            .name("shmhub-waker".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })
            .map_err(|e| io_error(seg, "starting the waker thread", e))?;
        Ok(Readiness {
            shared,
            waker: Some(waker),
        })
    }

    /// Makes the descriptor unreadable again and has it become readable
    /// at the next message (at once if one is queued); returns the parties
    /// on the other side whose process ended since the last drain, each
    /// once (a guest that attaches again is watched anew).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a system call on the descriptors fails.
    pub fn drain(&self) -> Result<Vec<Ended>> {
        let ended = self.take_events()?;
        self.arm();
        Ok(ended)
    }

    /// Has the waker tell of the next message again (at once if one is
    /// queued), unless it is armed already. [`Readiness::drain`] does this;
    /// a caller that takes the events first ([`Readiness::take_events`])
    /// and receives before it arms spares the waker a wake for a message
    /// it is about to take anyway: it arms just before it waits, and
    /// receives once more after arming.
    pub(crate) fn arm(&self) {
        let mut plan = self.shared.plan();
        if !plan.receive {
            plan.receive = true;
            drop(plan);
            self.shared.poke();
        }
    }

    /// A drain that leaves the receive disarmed: the eventfd read, the
    /// ended processes taken.
    pub(crate) fn take_events(&self) -> Result<Vec<Ended>> {
        let shared = &*self.shared;
        let mut counter = [0u8; 8];
        match rustix::io::read(&shared.events, &mut counter) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(io_error(&shared.seg, "reading the eventfd", e.into())),
        }
        let mut ready = Vec::with_capacity(16);
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        epoll::wait(
            &shared.epoll,
            rustix::buffer::spare_capacity(&mut ready),
            Some(&zero),
        )
        .map_err(|e| io_error(&shared.seg, "epoll_wait", e.into()))?;
        let mut plan = shared.plan();
        let mut ended = std::mem::take(&mut plan.pending);
        let fired = ready.iter().map(|e| e.data.u64()).filter(|&k| k != EVENTS);
        let mut fired: Vec<Ended> = plan
            .processes
            .ended(&shared.epoll, fired)
            .into_iter()
            .map(|key| {
                let (party, pid) = untag(key);
                Ended {
                    party,
                    pid,
                    goodbye: false,
                }
            })
            .collect();
        drop(plan);
        // A process that left its entry (or, the host, said goodbye)
        // before it ended did not die on this side: not reported.
        if !fired.is_empty() {
            let named = shared.inbound.processes(&shared.seg)?;
            fired.retain(|e| {
                named
                    .iter()
                    .any(|&(party, pid, _)| (party, pid) == (e.party, e.pid))
            });
        }
        ended.extend(fired);
        Ok(ended)
    }

    /// After a send that found no room (a full ring, no free slot, the
    /// guest's share of the host's slots taken): has the descriptor become
    /// readable once the receiver has taken a message or freed a slot
    /// since `mark` was made (at once if it already has). Told once; a
    /// sender that still finds no room asks again.
    ///
    /// ```
    /// use shmhub::{Error, MsgDesc, SegmentConfig, ShmGuest, ShmHost, Timeout};
    ///
    /// let config = SegmentConfig { ring_capacity: 2, ..SegmentConfig::default() };
    /// let mut host = ShmHost::create_heap(config)?;
    /// let mut guest = ShmGuest::attach(host.region())?;
    /// let ready = guest.readiness()?;
    /// let tx = guest.sender();
    /// let mark = loop {
    ///     let mark = tx.room_mark()?;
    ///     match tx.send(MsgDesc::new(2, 1), b"x", Timeout::NoWait) {
    ///         Ok(()) => continue,
    ///         Err(Error::RingFull { .. }) => break mark,
    ///         Err(e) => return Err(e),
    ///     }
    /// };
    /// ready.tell_when_room(mark);
    /// host.any_receiver().recv(Timeout::NoWait)?; // takes one: room
    /// let mut fds = [libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&ready), events: libc::POLLIN, revents: 0 }];
    /// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 5000) }, 1);
    /// # Ok::<(), shmhub::Error>(())
    /// ```
    pub fn tell_when_room(&self, mark: RoomMark) {
        let mut plan = self.shared.plan();
        // One sender per ring: its newer mark on a word stands for the
        // older ones (a sender that gave up waiting and tries again would
        // otherwise pile up marks while its receiver is stuck).
        plan.rooms
            .retain(|old| !mark.vigils.iter().any(|new| new.same_word(old)));
        plan.rooms.extend(mark.vigils);
        drop(plan);
        self.shared.poke();
    }
}

impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.epoll.as_fd()
    }
}

impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.epoll.as_raw_fd()
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.poke();
        if let Some(waker) = self.waker.take() {
            let _ = waker.join();
        }
    }
}

impl Shared {
    fn plan(&self) -> MutexGuard<'_, Plan> {
        // The plan is plain data, whole after any panic.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Has the waker look at the plan again.
    fn poke(&self) {
        self.control.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_private(&self.control);
    }

    fn tell(&self) {
        // Only a counter at its maximum refuses a write, and then the
        // descriptor is readable already.
        let _ = rustix::io::write(&self.events, &1u64.to_ne_bytes());
    }

    /// The waker: sleeps on what the plan names, announced as a blocking
    /// call would be (`shm.ready.fd`), and tells through the eventfd.
    fn run(&self) {
        let mut looked = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let control = self.control.load(Ordering::SeqCst);
            let (receive, rooms) = {
                let plan = self.plan();
                (plan.receive, plan.rooms.clone())
            };
            // Every count first, then one barrier for all of them.
            let mut needs_barrier = false;
            let announce = self.inbound.announcement();
            if receive {
                needs_barrier |= announce.count_in();
            }
            for room in &rooms {
                needs_barrier |= room.announcement().count_in();
            }
            let fenced = !needs_barrier || sys::fence_publishers();
            // Looked at only after the announcements: either these looks
            // see what the other side published, or it sees a sleeper and
            // wakes the word.
            let inbound = receive.then(|| self.inbound.vigil(&self.seg));
            let queued = inbound.as_ref().is_some_and(|v| v.unchanged.is_none());
            let roomy = rooms.iter().any(Vigil::moved);
            if !queued && !roomy {
                let mut words = vec![(&self.control, control, true)];
                for vigil in inbound.iter().chain(&rooms) {
                    if let Some(unchanged) = vigil.unchanged {
                        words.push((vigil.word.get(), unchanged, false));
                    }
                }
                let nap = if fenced { MAX_SLEEP } else { sys::UNFENCED_NAP };
                sys::futex_wait_any(&words, nap.min(LOOK_FOR_PROCESSES_EVERY));
            }
            if receive {
                announce.withdraw();
            }
            for room in &rooms {
                room.announcement().withdraw();
            }
            self.look_for_goodbye();
            if queued || roomy {
                let mut plan = self.plan();
                plan.receive &= !queued;
                if roomy {
                    // Only those looked at: a sender may have asked since.
                    plan.rooms.drain(..rooms.len());
                }
                drop(plan);
                self.tell();
            }
            if looked.elapsed() >= LOOK_FOR_PROCESSES_EVERY || queued {
                looked = Instant::now();
                // A segment that fails to read is the receive's to report.
                let _ = self.look_for_processes();
            }
        }
    }

    /// For a guest's descriptor: the host's goodbye (which wakes the
    /// ring's sleepers, the waker among them) is told once, through the
    /// next drain, as the host gone.
    fn look_for_goodbye(&self) {
        let Inbound::Ring(_, Party::Host) = self.inbound else {
            return;
        };
        // One load of the flag per wake; the header only once it is set.
        if self.plan().goodbye_seen || !self.seg.host_goodbye().unwrap_or(false) {
            return;
        }
        let pid = self.seg.header().map_or(0, |h| h.host_pid);
        let mut plan = self.plan();
        plan.goodbye_seen = true;
        plan.pending.push(Ended {
            party: Party::Host,
            pid,
            goodbye: true,
        });
        drop(plan);
        self.tell();
    }

    /// Watches the processes now on the other side that are not watched
    /// yet, and forgets those that left.
    fn look_for_processes(&self) -> Result<()> {
        let now: Vec<(u64, u32, u64)> = self
            .inbound
            .processes(&self.seg)?
            .into_iter()
            .map(|(party, pid, start_time)| (tag(party, pid), pid, start_time))
            .collect();
        let mut plan = self.plan();
        let found = plan.processes.watch(&self.epoll, &now);
        if found.is_empty() {
            return Ok(());
        }
        plan.pending.extend(found.into_iter().map(|key| {
            let (party, pid) = untag(key);
            Ended {
                party,
                pid,
                goodbye: false,
            }
        }));
        drop(plan);
        self.tell();
        Ok(())
    }
}

/// Processes watched through pidfds in an epoll set, each under a key of
/// its owner's (its epoll data, which names the process: [`Readiness`]
/// keys by party and pid, [`ProcessWatch`] by pid). Each end is told
/// once, and remembered while the owner still names the process (a dead
/// holder stays in its entry until reclaimed), so that it is not found
/// again at every look.
#[derive(Debug, Default)]
struct Pidfds {
    watched: Vec<(u64, OwnedFd)>,
    told: Vec<u64>,
}

impl Pidfds {
    /// Watches exactly `wanted` (key, pid, start time or 0): those not
    /// watched yet are added, the others dropped. Returns the keys of the
    /// processes found ended already, told from now on.
    fn watch(&mut self, epoll: &OwnedFd, wanted: &[(u64, u32, u64)]) -> Vec<u64> {
        let named = |key: u64| wanted.iter().any(|&(k, ..)| k == key);
        self.told.retain(|&key| named(key));
        self.watched.retain(|(key, pidfd)| {
            let stays = named(*key);
            if !stays {
                let _ = epoll::delete(epoll, pidfd);
            }
            stays
        });
        let mut ended = Vec::new();
        for &(key, pid, start_time) in wanted {
            let known = self.told.contains(&key) || self.watched.iter().any(|(k, _)| *k == key);
            if pid == 0 || known {
                continue;
            }
            match open_pidfd(pid, start_time) {
                Pidfd::Open(pidfd) => {
                    let data = epoll::EventData::new_u64(key);
                    if epoll::add(epoll, &pidfd, data, epoll::EventFlags::IN).is_ok() {
                        self.watched.push((key, pidfd));
                    }
                }
                Pidfd::Ended => {
                    self.told.push(key);
                    ended.push(key);
                }
                Pidfd::Unwatchable => {}
            }
        }
        ended
    }

    /// Of `fired` (the epoll data of readable pidfds), the keys watched
    /// here: watched no more, told from now on.
    fn ended(&mut self, epoll: &OwnedFd, fired: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut ended = Vec::new();
        for key in fired {
            if let Some(i) = self.watched.iter().position(|(k, _)| *k == key) {
                let (_, pidfd) = self.watched.swap_remove(i);
                let _ = epoll::delete(epoll, &pidfd);
                self.told.push(key);
                ended.push(key);
            }
        }
        ended
    }
}

/// What became of a process to be watched.
enum Pidfd {
    /// It runs: its pidfd.
    Open(OwnedFd),
    /// It has ended (or its pid names a process started at another time).
    Ended,
    /// It cannot be watched (a kernel without `pidfd_open`, no descriptor
    /// left): the looks alone tell of its end.
    Unwatchable,
}

/// A pidfd for process `pid` if it is still the process that started at
/// `start_time` (the entry's, or the header's: a pid reused by another
/// process is not it; 0: unknown).
fn open_pidfd(pid: u32, start_time: u64) -> Pidfd {
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Pidfd::Ended;
    };
    let pidfd = match pidfd_open(target, PidfdFlags::empty()) {
        Ok(pidfd) => pidfd,
        Err(rustix::io::Errno::SRCH) => return Pidfd::Ended,
        Err(_) => return Pidfd::Unwatchable,
    };
    // Judged after the pidfd is held: it names the process the pid named
    // at that moment, whose start time is then the one read.
    let now = sys::process_start_time(pid);
    if start_time != 0 && now != 0 && now != start_time {
        return Pidfd::Ended;
    }
    Pidfd::Open(pidfd)
}

/// Processes watched through pidfds, for an observer that is no party of
/// a segment (`shmhub events`): [`ProcessWatch::wait`] returns the moment
/// one of them ends, where a look every so often would see it only at the
/// next look.
///
/// ```
/// use std::time::Duration;
/// use shmhub::admin::ProcessWatch;
///
/// let mut child = std::process::Command::new("sleep").arg("0.05").spawn()?;
/// let mut watch = ProcessWatch::new()?;
/// watch.watch([(child.id(), 0)]);
/// assert!(watch.wait(Duration::from_secs(10))?, "sleep ended");
/// child.wait()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// shm[impl shm.ready.death]
#[derive(Debug)]
pub struct ProcessWatch {
    epoll: OwnedFd,
    /// By pid.
    processes: Pidfds,
    /// A process found ended when it was to be watched.
    ended: bool,
}

impl ProcessWatch {
    /// A watch of no process yet.
    ///
    /// # Errors
    ///
    /// What `epoll_create` returns.
    pub fn new() -> std::io::Result<Self> {
        Ok(ProcessWatch {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            processes: Pidfds::default(),
            ended: false,
        })
    }

    /// Watches exactly `processes` (pid, start time or 0 if unknown) from
    /// now on: those not watched yet are added, the others dropped. One
    /// that has ended already (or whose pid now names a process started at
    /// another time) makes the next [`ProcessWatch::wait`] return at once.
    pub fn watch(&mut self, processes: impl IntoIterator<Item = (u32, u64)>) {
        let wanted: Vec<(u64, u32, u64)> = processes
            .into_iter()
            .map(|(pid, start_time)| (u64::from(pid), pid, start_time))
            .collect();
        self.ended |= !self.processes.watch(&self.epoll, &wanted).is_empty();
    }

    /// Waits up to `timeout` for a watched process to end; whether one
    /// did (it is then watched no more). A signal ends the wait early, as
    /// if the time had run out.
    ///
    /// # Errors
    ///
    /// What `epoll_wait` returns, but an interruption by a signal.
    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
        if std::mem::take(&mut self.ended) {
            return Ok(true);
        }
        let mut ready = Vec::with_capacity(8);
        let timeout = rustix::event::Timespec::try_from(timeout).ok();
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut ready),
            timeout.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let fired = ready.iter().map(|e| e.data.u64());
        let ended = self.processes.ended(&self.epoll, fired);
        Ok(!ended.is_empty())
    }
}
