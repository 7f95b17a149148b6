//! Process signals for the commands.
//!
//! - SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped ssh session)
//!   set a flag instead of killing the process, so that a held or waiting
//!   command stops at its next check and cleans up: a held host deletes its
//!   file, a held guest releases its entry, a send never leaves a slot
//!   half-sent.
//! - SIGBUS (a page of the mapped file could not be reached: the file was
//!   truncated, or the file system is full) ends the command with one
//!   `error: PATH: cause` line and exit 1 instead of a crash.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// The termination signal that arrived (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGBUS_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_terminate(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::SeqCst);
}

extern "C" fn on_sigbus(_signal: libc::c_int) {
    let fallback: &[u8] = b"error: a mapped segment file could not be read (SIGBUS)\n";
    let msg = SIGBUS_MESSAGE.get().map_or(fallback, Vec::as_slice);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a
    // static byte buffer that is never freed or mutated after being set.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(1);
    }
}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: sigaction is given a zero-initialized, then filled, sigaction
    // struct that lives for the call; the handlers only touch an atomic, or
    // call async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut action.sa_mask);
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag (see [`received`]) instead
/// of killing the process, so that held and waiting commands can clean up.
pub fn catch_termination() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        install(signal, on_terminate);
    }
}

/// The termination signal that has arrived, if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Whether SIGINT, SIGTERM or SIGHUP has arrived.
pub fn terminate_requested() -> bool {
    received().is_some()
}

/// Sleeps for `duration`, looking for a termination signal every 100 ms;
/// true if one came.
pub fn sleep_unless_signalled(duration: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        if terminate_requested() {
            return true;
        }
        let left = duration.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(std::time::Duration::from_millis(100)));
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

/// Turns a SIGBUS (an access past the end of a mapped file that another
/// process truncated) into `error: PATH: ...` and exit 1.
pub fn guard_sigbus(path: &Path) {
    let msg = format!(
        "error: {}: segment file was truncated by another process while mapped (SIGBUS)\n",
        path.display()
    );
    let _ = SIGBUS_MESSAGE.set(msg.into_bytes());
    install(libc::SIGBUS, on_sigbus);
}
