//! Thin, documented wrappers over the operating-system calls the segment
//! protocol needs: clocks, process liveness, futexes and CPU affinity (the
//! advisory locks are in `locks.rs`).
//!
//! The calls go through `rustix`, whose wrappers take references and
//! typed values; on Linux rustix makes the system calls itself (measured
//! no dearer than libc's wrappers). What it does not offer, or does not do
//! under valgrind, stays on `libc`: the monotonic clock, `pthread_atfork`,
//! macOS's `proc_pidinfo`, and the byte-range locks of `locks.rs`.

#[cfg(not(loom))]
use std::sync::atomic::AtomicU32;
use std::time::Duration;

#[cfg(loom)]
use crate::sync::atomic::AtomicU32;

/// Nanoseconds on `CLOCK_MONOTONIC`, which on Linux is one clock for every
/// process of the machine, so heartbeats written by one process can be
/// compared with the time read by another. (`Instant` reads the same clock
/// but does not show its value, which other processes must compare.)
pub fn monotonic_ns() -> u64 {
    // Through libc, not rustix: on Linux rustix reads this clock through
    // the vDSO, which it finds by parsing the auxiliary vector, and under
    // valgrind that parse reads unmapped memory and the process dies
    // (rustix issue 1559); the C bindings' tests run under valgrind.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, owned `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds since the Unix epoch (wall clock), for creation times.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Forks this process has gone through, counted in the child by a
/// `pthread_atfork` handler: a value that a copy of this process made by
/// `fork` reads differently from the process that took it, at the cost of
/// one load (where `getpid` is a system call).
static FORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn counted_fork_in_child() {
    FORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many forks made this process from the one that first asked
/// (`shm.file.fork`): a handle keeps the value it was made with, and does
/// nothing on drop in a forked copy, whose drop would otherwise say
/// goodbye, detach or free slots for the process it was copied from.
pub(crate) fn forks() -> u32 {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is
        // async-signal-safe as a child handler must be; the prepare and
        // parent handlers are none.
        unsafe { libc::pthread_atfork(None, None, Some(counted_fork_in_child)) };
    });
    FORKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// This process's id.
pub fn current_pid() -> u32 {
    std::process::id()
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether this process is in group `gid` (its effective group or one of
/// its supplementary groups).
pub fn in_group(gid: u32) -> bool {
    use rustix::process::{getegid, getgroups};
    getegid().as_raw() == gid
        || getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// When process `pid` started, or 0 where that cannot be read. Stored
/// beside a pid so that a recycled pid is not mistaken for the process
/// that wrote it. On Linux: clock ticks since boot (field 22 of
/// `/proc/PID/stat`).
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
pub fn process_start_time(pid: u32) -> u64 {
    stat_fields(pid)
        .and_then(|fields| fields.get(19)?.parse().ok())
        .unwrap_or(0)
}

/// The fields of `/proc/PID/stat` after the command name, from field 3
/// (the state) on.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces;
    // the fields after the last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether process `pid` has ended and waits to be reaped by its parent
/// (a zombie): it holds no lock and runs no code, but still answers to
/// `kill(pid, 0)`.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
fn has_exited(pid: u32) -> bool {
    stat_fields(pid)
        .is_some_and(|fields| matches!(fields.first().map(String::as_str), Some("Z" | "X")))
}

#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
fn has_exited(_pid: u32) -> bool {
    false
}

/// When process `pid` started, or 0 where that cannot be read. On macOS:
/// microseconds since the Unix epoch, from `proc_pidinfo`.
#[cfg(target_os = "macos")]
pub fn process_start_time(pid: u32) -> u64 {
    let Ok(pid) = libc::c_int::try_from(pid) else {
        return 0;
    };
    // SAFETY: proc_bsdinfo is plain old data; all-zero is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: proc_pidinfo writes at most `size` bytes into `info`, which
    // we own and which is exactly that large.
    let written = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if written != size {
        return 0;
    }
    info.pbi_start_tvsec
        .saturating_mul(1_000_000)
        .saturating_add(info.pbi_start_tvusec)
}

/// Where a start time cannot be read (and on Linux built with
/// `--cfg shmhub_portable`, which tests this path): 0, "unknown". Liveness
/// then rests on the role locks and on whether the pid exists.
#[cfg(not(any(all(target_os = "linux", not(shmhub_portable)), target_os = "macos")))]
pub fn process_start_time(_pid: u32) -> u64 {
    0
}

/// Whether a process is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Liveness {
    /// The process exists (and, where known, started when recorded).
    Alive,
    /// No such process, or the pid now belongs to a newer process.
    Dead,
    /// No process is recorded.
    NoProcess,
}

/// Judges whether the process recorded as `pid` (started at `start_time`,
/// 0 if unknown) still runs.
pub fn process_liveness(pid: u32, start_time: u64) -> Liveness {
    if pid == 0 {
        return Liveness::NoProcess;
    }
    // A pid past i32::MAX would be negative as a pid_t, which kill takes
    // for a process group: it cannot be the process that was recorded.
    let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Liveness::Dead;
    };
    // Signal 0 sends nothing; EPERM means the pid exists but belongs to
    // another user.
    let exists = match rustix::process::test_kill_process(target) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    };
    if !exists || has_exited(pid) {
        return Liveness::Dead;
    }
    if start_time != 0 {
        let now = process_start_time(pid);
        if now != 0 && now != start_time {
            return Liveness::Dead;
        }
    }
    Liveness::Alive
}

/// Sleeps until `word` no longer holds `expected`, a wake arrives, or
/// `timeout` passes; may also return early for no reason (callers re-check).
///
/// The futex is not private: the word lives in memory shared between
/// processes, and wakes must reach them all.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    // A timeout too long for a timespec (about 292 billion years) is as
    // good as none.
    let ts = timeout.and_then(|d| futex::Timespec::try_from(d).ok());
    // Every outcome (woken, value already changed, timed out, interrupted)
    // sends the caller back to re-check the word, so the result says
    // nothing it needs.
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub fn futex_wake_all(word: &AtomicU32) {
    use rustix::thread::futex;
    // The kernel reads the count as a signed int: u32::MAX would be -1 and
    // wake only one sleeper.
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// Sleeps until one of `words` no longer holds the value paired with it,
/// a wake on one of them, or `timeout` passes: `futex_waitv` (Linux 5.16
/// and later). A word marked private is this process's own memory; the
/// others may be shared. Where the kernel lacks the call, naps at most a
/// millisecond on the first word, so that the caller, which re-checks
/// every word, sees a change on the others within that.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub fn futex_wait_any(words: &[(&AtomicU32, u32, bool)], timeout: Duration) {
    use rustix::thread::futex;
    let waits: Vec<futex::Wait> = words
        .iter()
        .map(|&(word, value, private)| {
            let mut wait = futex::Wait::new();
            wait.val = u64::from(value);
            wait.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
            wait.flags = if private {
                futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE
            } else {
                futex::WaitFlags::SIZE_U32
            };
            wait
        })
        .collect();
    // The timeout of futex_waitv is a point in time, on the clock named.
    let at = monotonic_ns().saturating_add(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    let at = futex::Timespec {
        tv_sec: (at / 1_000_000_000) as i64,
        tv_nsec: (at % 1_000_000_000) as _,
    };
    let clock = futex::ClockId::Monotonic;
    if let Err(rustix::io::Errno::NOSYS) =
        futex::waitv(&waits, futex::WaitvFlags::empty(), Some(&at), clock)
        && let Some(&(word, value, _)) = words.first()
    {
        futex_wait(word, value, Some(timeout.min(Duration::from_millis(1))));
    }
}

/// Wakes every thread of this process sleeping on `word`, a word of its
/// own memory, in [`futex_wait_any`] as a private word.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub fn futex_wake_private(word: &AtomicU32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
}

/// Where there is no futex (macOS, and Linux built with
/// `--cfg shmhub_portable`): polls `word` until it no longer holds
/// `expected` or `timeout` passes, sleeping a little longer each time (up
/// to 1 ms), so a change is noticed within about a millisecond without a
/// wake call.
#[cfg(all(any(not(target_os = "linux"), shmhub_portable), not(loom)))]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use std::sync::atomic::Ordering;
    let start = std::time::Instant::now();
    let limit = timeout.unwrap_or(Duration::MAX);
    let mut nap = Duration::from_micros(20);
    while word.load(Ordering::Acquire) == expected {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(nap.min(left));
        nap = (nap * 2).min(Duration::from_millis(1));
    }
}

/// Where there is no futex, sleepers poll the word: nothing to wake.
#[cfg(all(any(not(target_os = "linux"), shmhub_portable), not(loom)))]
pub fn futex_wake_all(_word: &AtomicU32) {}

/// How long a sleeper naps at most when the kernel refused the barrier
/// that stands in for publishers' fences: a wake-up it may miss then costs
/// it this long at most.
pub(crate) const UNFENCED_NAP: Duration = Duration::from_millis(1);

/// Under loom: a model of the futex (see `sync::futex_wait`). The caller
/// sleeps until [`futex_wake_all`] on the same word if it holds `expected`;
/// the timeout is not modelled, so a lost wake-up is a loom deadlock. The
/// one exception: while publications are unfenced
/// ([`model_unfenced_publications`]), a nap of a sleeper without the
/// barrier (at most [`UNFENCED_NAP`]) ends at once.
#[cfg(loom)]
#[allow(private_interfaces)]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    if publishes_without_fence() && timeout.is_some_and(|t| t <= UNFENCED_NAP) {
        return;
    }
    crate::sync::futex_wait(word, expected);
}

/// Under loom: wakes the loom threads asleep in [`futex_wait`] on `word`.
#[cfg(loom)]
#[allow(private_interfaces)]
pub fn futex_wake_all(word: &AtomicU32) {
    crate::sync::futex_wake_all(word);
}

/// Linux `membarrier(2)`: the heavy half of an asymmetric fence between
/// processes. A publisher of a ring index leaves out the store-load fence
/// its wake-up check would otherwise need (a locked instruction that waits
/// for the index's, and the descriptor's, cache lines to be owned), and
/// each side that depends on that order (a sleeper after announcing
/// itself, a departing or arriving guest after moving its entry) runs a
/// barrier on every such publisher instead: rare operations pay for the
/// common one.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
mod membarrier {
    use std::sync::OnceLock;

    use rustix::thread::{MembarrierCommand as Command, MembarrierQuery as Query};

    /// The kernel's answer to `QUERY`, asked once: whether the two
    /// commands are there (a seccomp filter or an old kernel may refuse).
    /// A process started with [`super::NO_MEMBARRIER_ENV`] set to `1`
    /// takes them as refused without asking.
    pub(super) fn supported() -> bool {
        static SUPPORTED: OnceLock<bool> = OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            if std::env::var_os(super::NO_MEMBARRIER_ENV).is_some_and(|v| v == "1") {
                return false;
            }
            // A refused query reads as no command at all.
            rustix::thread::membarrier_query()
                .contains(Query::GLOBAL_EXPEDITED | Query::REGISTER_GLOBAL_EXPEDITED)
        })
    }

    pub(super) fn registered() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| {
            supported() && rustix::thread::membarrier(Command::RegisterGlobalExpedited).is_ok()
        })
    }

    pub(super) fn fence_publishers() -> bool {
        supported() && rustix::thread::membarrier(Command::GlobalExpedited).is_ok()
    }
}

/// The environment variable that, set to `1`, makes a Linux process
/// behave as on a kernel that refuses `membarrier` (`shm.ring.wake`): it
/// publishes every ring index with a fence and, when it sleeps or moves
/// its entry, does not count on the barrier (it naps at most 1 ms, and
/// waits 1 ms before it looks). Set it in processes that share segments
/// with processes that never run the barrier, such as the portable build
/// (`--cfg shmhub_portable`) on Linux; read once, on first use.
pub const NO_MEMBARRIER_ENV: &str = "SHMHUB_NO_MEMBARRIER";

/// Whether this process publishes ring indices without a store-load fence
/// (see `membarrier` above): true once it is registered for the barriers
/// that sleepers run, which is tried once, on first use.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
#[inline]
pub(crate) fn publishes_without_fence() -> bool {
    membarrier::registered()
}

/// Whether the kernel offers the two `membarrier` commands this needs (a
/// seccomp filter or an old kernel may not); asked once.
#[cfg(all(test, target_os = "linux", not(shmhub_portable), not(loom)))]
pub(crate) fn membarrier_supported() -> bool {
    membarrier::supported()
}

/// Runs a full memory barrier on every running thread of every process
/// that publishes without a fence. False if the kernel refused, in which
/// case the caller cannot rely on such publishers' order and must not
/// sleep long on it.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub(crate) fn fence_publishers() -> bool {
    membarrier::fence_publishers()
}

/// Elsewhere every publication is fenced.
#[cfg(all(any(not(target_os = "linux"), shmhub_portable), not(loom)))]
#[inline]
pub(crate) fn publishes_without_fence() -> bool {
    false
}

/// Elsewhere nobody publishes without a fence: nothing to do.
#[cfg(all(any(not(target_os = "linux"), shmhub_portable), not(loom)))]
pub(crate) fn fence_publishers() -> bool {
    true
}

#[cfg(loom)]
std::thread_local! {
    /// Under loom: whether the model publishes without the fence. Loom
    /// runs a model's threads on the thread that checks it, so this is
    /// the model's alone.
    static UNFENCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Under loom: makes this thread's models publish ring indices with a
/// plain release store, and treat the barrier as refused: a sleeper that
/// would need it naps, and its nap ends at once ([`futex_wait`]), so the
/// models check the sleeps that go without it (`shm.ring.wake`, a
/// publisher that says it fences). Off, every publication is fenced.
#[cfg(all(loom, test))]
pub(crate) fn model_unfenced_publications(on: bool) {
    UNFENCED.with(|u| u.set(on));
}

/// Under loom: as [`model_unfenced_publications`] set it.
#[cfg(loom)]
pub(crate) fn publishes_without_fence() -> bool {
    UNFENCED.with(std::cell::Cell::get)
}

/// Under loom: no barrier to model; refused while publications are
/// unfenced, a no-op otherwise.
#[cfg(loom)]
pub(crate) fn fence_publishers() -> bool {
    !publishes_without_fence()
}

/// Number of CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bytes an unprivileged process may still allocate on the file system
/// holding `path` (`statvfs`: available blocks times the fragment size).
/// A segment file larger than this is sparse beyond what its file system
/// can hold: touching its last pages would fail (SIGBUS on tmpfs).
pub fn available_space(path: &std::path::Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Pins the calling thread to `cpu` (benchmarks keep each process on its own
/// core). Returns false if the kernel refused.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
pub fn pin_to_cpu(cpu: usize) -> bool {
    use rustix::thread::{CpuSet, sched_setaffinity};
    // A CPU past the set's end would panic in `CpuSet::set`.
    if cpu >= CpuSet::MAX_CPU {
        return false;
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    // No pid: the calling thread.
    sched_setaffinity(None, &set).is_ok()
}

/// Where there is no affinity call, pinning does nothing.
#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
pub fn pin_to_cpu(_cpu: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", not(shmhub_portable)))]
    #[test]
    fn start_time_of_self_is_known_and_stable() {
        let pid = current_pid();
        let t = process_start_time(pid);
        assert_ne!(t, 0);
        assert_eq!(process_liveness(pid, t), Liveness::Alive);
        assert_eq!(process_liveness(pid, t + 1), Liveness::Dead);
        assert_eq!(process_liveness(0, 0), Liveness::NoProcess);
    }

    // A pid that kill would take for a process group (past i32::MAX) is
    // never the recorded process.
    #[test]
    fn pids_past_the_signed_range_are_dead() {
        assert_eq!(process_liveness(i32::MAX as u32 + 1, 0), Liveness::Dead);
        assert_eq!(process_liveness(u32::MAX, 0), Liveness::Dead);
    }

    #[test]
    fn own_user_and_group_are_recognised() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine");
        std::fs::write(&path, b"").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(effective_uid(), meta.uid());
        assert!(in_group(rustix::process::getegid().as_raw()));
        // (gid_t)-2 is nobody's group.
        assert!(!in_group(u32::MAX - 1));
    }

    /// Pinning keeps a thread on the one CPU asked for; a CPU number past
    /// any CPU set is refused rather than a panic.
    #[cfg(all(target_os = "linux", not(shmhub_portable)))]
    #[test]
    fn pinning_leaves_one_cpu() {
        use rustix::thread::sched_getaffinity;
        std::thread::spawn(|| {
            let allowed = sched_getaffinity(None).unwrap();
            let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
                .find(|&c| allowed.is_set(c))
                .unwrap();
            assert!(pin_to_cpu(cpu));
            let now = sched_getaffinity(None).unwrap();
            assert_eq!(now.count(), 1);
            assert!(now.is_set(cpu));
            assert!(!pin_to_cpu(usize::MAX));
        })
        .join()
        .unwrap();
    }

    /// One wake reaches every sleeper on the word (the count is the
    /// kernel's signed "all"; as -1 it would wake one). Each thread is
    /// asleep in the kernel (state S) before the wake, and sleeps with a
    /// timeout of a minute, so only the wake returns it within the test's
    /// half-minute margin.
    #[cfg(all(target_os = "linux", not(shmhub_portable)))]
    #[test]
    fn futex_wake_all_wakes_every_sleeper() {
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let word = Arc::new(AtomicU32::new(0));
        let (tids, asleep) = std::sync::mpsc::channel();
        let sleepers: Vec<_> = (0..3)
            .map(|_| {
                let (word, tids) = (word.clone(), tids.clone());
                std::thread::spawn(move || {
                    tids.send(rustix::thread::gettid().as_raw_nonzero().get())
                        .unwrap();
                    let start = std::time::Instant::now();
                    futex_wait(&word, 0, Some(Duration::from_secs(60)));
                    start.elapsed()
                })
            })
            .collect();
        for _ in 0..3 {
            let tid = asleep.recv().unwrap();
            let stat = format!("/proc/self/task/{tid}/stat");
            // The state follows the command name's closing parenthesis.
            while !std::fs::read_to_string(&stat)
                .unwrap()
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
            {
                std::thread::yield_now();
            }
        }
        word.store(1, Ordering::Release);
        futex_wake_all(&word);
        for sleeper in sleepers {
            assert!(sleeper.join().unwrap() < Duration::from_secs(30));
        }
    }

    #[test]
    fn exited_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_liveness(pid, 0), Liveness::Dead);
    }

    #[test]
    fn available_space_of_the_temporary_directory() {
        let dir = std::env::temp_dir();
        assert!(available_space(&dir).is_ok());
        assert!(available_space(&dir.join("no such directory here")).is_err());
    }

    #[test]
    fn futex_wait_returns_on_timeout_and_on_changed_value() {
        let word = AtomicU32::new(5);
        let start = std::time::Instant::now();
        futex_wait(&word, 5, Some(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(10));
        // A value that already differs returns at once.
        let start = std::time::Instant::now();
        futex_wait(&word, 6, Some(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
