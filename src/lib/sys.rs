//! Thin, documented wrappers over the operating-system calls the segment
//! protocol needs: clocks, process liveness, futexes and CPU affinity (the
//! advisory locks are in `locks.rs`).

#[cfg(not(loom))]
use std::sync::atomic::AtomicU32;
use std::time::Duration;

#[cfg(loom)]
use crate::sync::atomic::AtomicU32;

/// Nanoseconds on `CLOCK_MONOTONIC`, which on Linux is one clock for every
/// process of the machine, so heartbeats written by one process can be
/// compared with the time read by another.
pub fn monotonic_ns() -> u64 {
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
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether this process is in group `gid` (its effective group or one of
/// its supplementary groups).
pub fn in_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: with a size of 0, getgroups writes nothing and returns how
    // many supplementary groups there are.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(count) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: the buffer holds `count` gid_t values, and getgroups writes
    // at most that many (returning how many it wrote).
    let written = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    let written = usize::try_from(written).unwrap_or(0).min(len);
    groups[..written].contains(&gid)
}

/// When process `pid` started, or 0 where that cannot be read. Stored
/// beside a pid so that a recycled pid is not mistaken for the process
/// that wrote it. On Linux: clock ticks since boot (field 22 of
/// `/proc/PID/stat`).
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
pub fn process_start_time(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) is in parentheses and may contain spaces;
    // the fields after the last ')' are plain numbers.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    rest.split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
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
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return Liveness::Dead;
    };
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the
    // pid exists and may be signalled.
    let rc = unsafe { libc::kill(pid_t, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
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
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 4-byte atomic for the duration of
    // the call; FUTEX_WAIT only reads it and compares with `expected`; the
    // timespec (if any) outlives the call. Spurious returns are harmless.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        );
    }
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
#[cfg(all(target_os = "linux", not(shmhub_portable), not(loom)))]
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it does not access
    // memory. `word` is valid for the duration of the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
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

/// Under loom: a model of the futex (see `sync::futex_wait`). The caller
/// sleeps until [`futex_wake_all`] on the same word if it holds `expected`;
/// the timeout is not modelled, so a lost wake-up is a loom deadlock.
#[cfg(loom)]
#[allow(private_interfaces)]
pub fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
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

    const QUERY: libc::c_long = 0;
    const GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
    const REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

    fn call(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier takes two integers (command, flags) and a CPU
        // id that these commands ignore; it touches no memory of ours.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    }

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
            let both = GLOBAL_EXPEDITED | REGISTER_GLOBAL_EXPEDITED;
            let commands = call(QUERY);
            commands >= 0 && commands & both == both
        })
    }

    pub(super) fn registered() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| supported() && call(REGISTER_GLOBAL_EXPEDITED) == 0)
    }

    pub(super) fn fence_publishers() -> bool {
        supported() && call(GLOBAL_EXPEDITED) == 0
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

/// Elsewhere (and under loom, which models the fenced protocol) every
/// publication is fenced.
#[cfg(not(all(target_os = "linux", not(shmhub_portable), not(loom))))]
#[inline]
pub(crate) fn publishes_without_fence() -> bool {
    false
}

/// Elsewhere nobody publishes without a fence: nothing to do.
#[cfg(not(all(target_os = "linux", not(shmhub_portable), not(loom))))]
pub(crate) fn fence_publishers() -> bool {
    true
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
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs is plain data, so all zeroes is a valid value.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stats` a valid,
    // owned statvfs that the call fills in; both outlive the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Both are 32 bits wide on some targets, 64 on others.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(stats.f_bavail), u64::from(stats.f_frsize));
    Ok(blocks.saturating_mul(block_size))
}

/// Pins the calling thread to `cpu` (benchmarks keep each process on its own
/// core). Returns false if the kernel refused.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside
    // the set we own, and sched_setaffinity reads it for the call (pid 0 is
    // the calling thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
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
