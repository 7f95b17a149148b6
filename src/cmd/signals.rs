//! Process signals for long-running commands: SIGINT/SIGTERM end a held
//! command cleanly; SIGBUS (the mapped file shrank under us) ends it with a
//! clear message and exit 1 instead of a crash.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static TERMINATE: AtomicBool = AtomicBool::new(false);
static SIGBUS_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_terminate(_signal: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

extern "C" fn on_sigbus(_signal: libc::c_int) {
    let fallback: &[u8] = b"error: segment file was truncated under us (SIGBUS)\n";
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

/// Makes SIGINT and SIGTERM set a flag (see [`terminate_requested`])
/// instead of killing the process, so held commands can clean up.
pub fn catch_termination() {
    install(libc::SIGINT, on_terminate);
    install(libc::SIGTERM, on_terminate);
}

/// Whether SIGINT or SIGTERM has arrived.
pub fn terminate_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
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
