//! Process signals for the commands.
//!
//! - SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped ssh session)
//!   set a flag (through `signal-hook`) instead of killing the process, so that a held or waiting
//!   command stops at its next check and cleans up: a held host deletes its
//!   file, a held guest releases its entry, a send never leaves a slot
//!   half-sent.
//! - SIGBUS (a page of the mapped file could not be reached) ends the
//!   command with one `error: PATH: cause` line and exit 1 instead of a
//!   crash. The cause is told apart in the handler: a file now shorter than
//!   when it was opened was truncated by another process; a file of
//!   unchanged length lives on a file system with no space left for the
//!   page (a sparse segment on a full tmpfs). A command that owns its
//!   segment (`create --hold`, `demo`, `bench`) deletes the file first, as
//!   it would have on its way out.
//! - SIGXFSZ (a file larger than `ulimit -f` allows) is ignored, so that
//!   the call that would grow the file fails with an error instead.

use std::io::IsTerminal;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

/// How long one wait lasts before a waiting command looks at signals
/// again: short enough that Ctrl-C feels immediate.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The termination signal that arrived (0: none yet), set by
/// `signal-hook`'s handler.
static SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// The signals that ask a command to stop.
const TERMINATION: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// What the SIGBUS handler needs to report on one segment file. Set up
/// before the file is mapped and never freed (a replaced one is leaked), so
/// the handler can read it at any moment without locks or allocation.
struct BusGuard {
    /// `error: PATH: `, ready to write.
    prefix: Box<[u8]>,
    /// A descriptor on the file, kept open for the handler's `fstat`;
    /// -1 while the file does not exist yet (`create`).
    fd: libc::c_int,
    /// The file's length when the guard was set: the length the command
    /// maps, since every command maps the whole file.
    len: u64,
    /// The path, NUL-terminated, when the handler is to delete the file
    /// (this process owns the segment); empty otherwise.
    remove: Box<[u8]>,
}

static BUS_GUARD: AtomicPtr<BusGuard> = AtomicPtr::new(std::ptr::null_mut());

/// Whether stderr is a terminal (a progress bar may be drawn on it), told
/// before any fault: the handler then clears the bar's line first.
static STDERR_TERMINAL: AtomicBool = AtomicBool::new(false);

/// A line built on the stack: the SIGBUS handler may not allocate.
struct Line {
    buf: [u8; 4608],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }

    fn number(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }
}

/// The SIGBUS handler: one `error:` line on stderr, then `_exit(1)`. It
/// uses only async-signal-safe calls (`fstat`, `write`, `_exit`) and stack
/// memory.
extern "C" fn on_sigbus(_signal: libc::c_int) {
    let mut line = Line {
        buf: [0; 4608],
        len: 0,
    };
    if STDERR_TERMINAL.load(Ordering::Relaxed) {
        // Back to the start of the line and clear it: a progress bar may
        // be half drawn there.
        line.push(b"\r\x1b[2K");
    }
    let guard = BUS_GUARD.load(Ordering::Acquire);
    if guard.is_null() {
        line.push(b"error: a page of a mapped file could not be reached (SIGBUS): the file was truncated, or its file system is full\n");
    } else {
        // SAFETY: a non-null BUS_GUARD points to a leaked, never-freed
        // BusGuard that was fully written before it was published (release
        // store, acquire load).
        let guard = unsafe { &*guard };
        line.push(&guard.prefix);
        let mut size = None;
        if guard.fd >= 0 {
            // SAFETY: all-zero is a valid stat; fstat fills it in from a
            // descriptor the guard keeps open, and is async-signal-safe.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: as above; `stat` outlives the call.
            if unsafe { libc::fstat(guard.fd, &mut stat) } == 0 {
                size = Some(u64::try_from(stat.st_size).unwrap_or(0));
            }
        }
        match size {
            Some(now) if now < guard.len => {
                line.push(b"segment file was truncated to ")
                    .number(now)
                    .push(b" bytes by another process while mapped (")
                    .number(guard.len)
                    .push(b" bytes) (SIGBUS)");
            }
            Some(_) => {
                line.push(b"no space left on the file system for a page of the segment (SIGBUS; `shmhub create --preallocate` reserves every page)");
            }
            None if guard.fd < 0 => {
                line.push(
                    b"no space left on the file system for a page of the new segment (SIGBUS)",
                );
            }
            None => {
                line.push(b"a page of the mapped segment file could not be reached (SIGBUS)");
            }
        }
        if remove_owned(guard) {
            line.push(b"; removed it");
        }
        line.push(b"\n");
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the line is on
    // this handler's stack.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::_exit(1);
    }
}

/// In the SIGBUS handler: deletes the guarded file if this process owns it
/// and the path still names it (same device and inode as the descriptor);
/// returns whether it did. Only `fstat`, `lstat` and `unlink`, which are
/// async-signal-safe.
fn remove_owned(guard: &BusGuard) -> bool {
    if guard.remove.is_empty() || guard.fd < 0 {
        return false;
    }
    // SAFETY: all-zero is a valid stat; fstat and lstat fill them in from
    // the guard's open descriptor and its NUL-terminated path, and unlink
    // reads that path; all are async-signal-safe.
    unsafe {
        let mut open: libc::stat = std::mem::zeroed();
        let mut named: libc::stat = std::mem::zeroed();
        let path = guard.remove.as_ptr().cast::<libc::c_char>();
        libc::fstat(guard.fd, &mut open) == 0
            && libc::lstat(path, &mut named) == 0
            && (open.st_dev, open.st_ino) == (named.st_dev, named.st_ino)
            && libc::unlink(path) == 0
    }
}

/// Installs a handler of our own for SIGBUS, or ignores SIGXFSZ: the
/// termination signals go through `signal-hook`, but no crate offers a
/// handler that reports the faulting file and ends the process from inside
/// the handler (returning from a SIGBUS handler faults again).
fn install(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: sigaction is given a zero-initialized, then filled, sigaction
    // struct that lives for the call; the SIGBUS handler calls only
    // async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag (see [`received`]) instead
/// of killing the process, so that held and waiting commands can clean up.
pub fn catch_termination() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for signal in TERMINATION {
            let value = usize::try_from(signal).unwrap_or(usize::MAX);
            // Fails only for a signal that cannot be caught; these can.
            let _ = signal_hook::flag::register_usize(signal, &SIGNAL, value);
        }
    });
}

/// Installed for every command before it runs: a SIGBUS is reported (see
/// [`guard_sigbus`] for naming the file), and SIGXFSZ is ignored so that
/// growing a file past `ulimit -f` is an error (EFBIG), not a death.
pub fn catch_faults() {
    STDERR_TERMINAL.store(std::io::stderr().is_terminal(), Ordering::Relaxed);
    install(
        libc::SIGBUS,
        on_sigbus as extern "C" fn(libc::c_int) as usize,
    );
    install(libc::SIGXFSZ, libc::SIG_IGN);
}

/// The termination signal that has arrived, if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(i32::try_from(signal).unwrap_or(i32::MAX)),
    }
}

/// Whether SIGINT, SIGTERM or SIGHUP has arrived.
pub fn terminate_requested() -> bool {
    received().is_some()
}

/// Sleeps for `duration`, looking for a termination signal every
/// [`WAIT_SLICE`]; true if one came.
pub fn sleep_unless_signalled(duration: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        if terminate_requested() {
            return true;
        }
        let left = duration.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(WAIT_SLICE));
    }
    terminate_requested()
}

/// The name of a termination signal, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Makes a SIGBUS name `path` and its cause: `error: PATH: segment file was
/// truncated ...` when the file has become shorter than it is now, `error:
/// PATH: no space left on the file system ...` when its length is unchanged.
/// Call it before the file is mapped, and again once a file that did not
/// exist yet has been created (`create`), so the handler watches that file.
///
/// The file is opened here (`O_PATH`: no access to its contents, no effect
/// on a FIFO or a device) and kept open for the handler's `fstat`.
pub fn guard_sigbus(path: &Path) {
    arm(path, AfterFault::KeepFile);
}

/// [`guard_sigbus`] for a segment this process created and deletes when it
/// ends (`create --hold`, `demo`, `bench`): the handler deletes the file
/// too, if the path still names it, so that a fault leaves nothing behind.
pub fn guard_sigbus_owned(path: &Path) {
    arm(path, AfterFault::DeleteFile);
}

/// What the SIGBUS handler does with the segment file once it has said
/// what happened: only this process's own segment is deleted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterFault {
    KeepFile,
    DeleteFile,
}

fn arm(path: &Path, after: AfterFault) {
    catch_faults();
    let mut prefix = b"error: ".to_vec();
    prefix.extend_from_slice(path.as_os_str().as_bytes());
    prefix.extend_from_slice(b": ");
    #[cfg(target_os = "linux")]
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    #[cfg(not(target_os = "linux"))]
    let flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .and_then(|file| Ok((file.metadata()?.len(), file)));
    let (fd, len) = match opened {
        Ok((len, file)) => (file.into_raw_fd(), len),
        Err(_) => (-1, 0),
    };
    let mut remove = Vec::new();
    if after == AfterFault::DeleteFile {
        remove.extend_from_slice(path.as_os_str().as_bytes());
        remove.push(0);
    }
    let guard = Box::new(BusGuard {
        prefix: prefix.into_boxed_slice(),
        fd,
        len,
        remove: remove.into_boxed_slice(),
    });
    let old = BUS_GUARD.swap(Box::into_raw(guard), Ordering::AcqRel);
    // The previous guard is leaked, not freed: a handler may be reading it.
    // Its descriptor is closed, though, or it would keep a file that
    // `create --force` deleted (and its space) alive. A fault is handled on
    // the thread that faulted, and only the thread re-arming here touches
    // mappings, so no handler is using it; at worst one would report "could
    // not be reached".
    if !old.is_null() {
        // SAFETY: `old` came from Box::into_raw above and is never freed.
        let fd = unsafe { (*old).fd };
        if fd >= 0 {
            // SAFETY: the descriptor was opened by `arm` and is owned by the
            // guard alone; nothing else closes it.
            drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
    }
}
