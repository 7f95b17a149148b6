//! A guest's calls: attach to a segment, send to the host, receive from
//! it, detach.

use std::ffi::{CStr, c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shmhub::{MsgDesc, Received, ShmGuest, Timeout};

use crate::error::{Failure, c_string, call};
use crate::handle::{self, Dest, Handle, Wrapper, put_out};
use crate::text::shown;
use crate::{SHMHUB_ERR_BUFFER_TOO_SMALL, SHMHUB_ERR_TIMED_OUT, SHMHUB_OK, shmhub_config};

/// A guest: a process attached to a segment (opaque to C). Made by
/// `shmhub_guest_attach()` or `shmhub_guest_attach_id()`, freed by
/// `shmhub_guest_detach()`.
#[derive(Debug)]
pub struct shmhub_guest(Handle<GuestState>);

impl Wrapper for shmhub_guest {
    type State = GuestState;
    fn handle(&self) -> &Handle<GuestState> {
        &self.0
    }
}

/// What a guest handle holds.
#[derive(Debug)]
pub(crate) struct GuestState {
    /// The message taken off the ring that did not fit the caller's
    /// buffer: the next receive returns it. Declared before `guest`, so
    /// dropped (its slot freed) before it.
    held: Option<Received>,
    guest: ShmGuest,
    path: PathBuf,
    /// "PATH: timed out", made once.
    timed_out: Arc<CStr>,
}

impl GuestState {
    fn fail(&self, e: shmhub::Error) -> Failure {
        Failure::library(&self.path, e)
    }
}

/// The guest handle for `guest`, attached to `path`.
fn attached(path: &Path, guest: ShmGuest) -> *mut shmhub_guest {
    let state = GuestState {
        held: None,
        guest,
        path: path.to_path_buf(),
        timed_out: c_string(format!("{}: timed out", shown(path))).into(),
    };
    Box::into_raw(Box::new(shmhub_guest(Handle::new(state))))
}

/// Attaches to the segment file at `path` as a new guest, taking the first
/// free entry. Returns NULL on failure (`shmhub_last_error_code()`:
/// `SHMHUB_ERR_IO` if there is no such file, `SHMHUB_ERR_CORRUPT` if it is
/// not a segment, `SHMHUB_ERR_BUSY` if every entry is taken, ...).
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_attach(path: *const c_char) -> *mut shmhub_guest {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let path = unsafe { handle::path(path) }?;
        let guest = ShmGuest::attach_path(path).map_err(|e| Failure::library(path, e))?;
        Ok(attached(path, guest))
    })
}

/// Attaches to the segment file at `path` in entry `peer`, which the host
/// reserved for this guest (`shmhub_host_reserve_peer`), and receives
/// what the host sent to it meanwhile. Returns NULL on failure
/// (`SHMHUB_ERR_BUSY` if the entry is not reserved, ...).
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_attach_id(
    path: *const c_char,
    peer: u8,
) -> *mut shmhub_guest {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let path = unsafe { handle::path(path) }?;
        let guest =
            ShmGuest::attach_path_with_id(path, peer).map_err(|e| Failure::library(path, e))?;
        Ok(attached(path, guest))
    })
}

/// This guest's id (1 to 255), or `SHMHUB_ERR_INVALID` for NULL.
///
/// # Safety
///
/// `guest` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_peer_id(guest: *mut shmhub_guest) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let guest = unsafe { handle::handle(guest, "guest") }?;
        guest.with(|g| Ok(c_int::from(g.guest.peer_id().get())))
    })
}

/// Sends the `len` bytes at `data` to the host, waiting up to
/// `timeout_ms` milliseconds for room (-1: as long as it takes, until the
/// host leaves; 0: not at all). Payloads of up to 32 bytes travel inside
/// the descriptor, larger ones in a slot of this guest's pool. The bytes
/// are copied: `data` is free again when this returns.
///
/// Returns `SHMHUB_OK`, or a negative code: `SHMHUB_ERR_FULL` (no room in
/// time; nothing sent), `SHMHUB_ERR_TOO_LARGE`, `SHMHUB_ERR_PEER_GONE`
/// (the host left), `SHMHUB_ERR_INVALID`, ...
///
/// # Safety
///
/// `guest` is NULL or a live handle; `data` is NULL or points to `len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_send(
    guest: *mut shmhub_guest,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let guest = unsafe { handle::handle(guest, "guest") }?;
        let timeout = handle::timeout(timeout_ms)?;
        // SAFETY: passed on from this function's contract.
        let data = unsafe { handle::bytes(data, len) }?;
        guest.with(|g| {
            let result = g.guest.sender().send(MsgDesc::default(), data, timeout);
            result.map_err(|e| g.fail(e))
        })?;
        Ok(SHMHUB_OK as c_int)
    })
}

/// Receives the next message from the host, waiting up to `timeout_ms`
/// milliseconds (-1: as long as it takes, until the host leaves; 0: not at
/// all). Copies its payload into `buf` (`cap` bytes) and returns its
/// length.
///
/// A message larger than `cap` is not lost: the call returns
/// `SHMHUB_ERR_BUFFER_TOO_SMALL` and keeps it first in line. `buf` NULL
/// with `cap` 0 asks for the length: the call waits as a receive does,
/// returns the next message's length, and keeps it; receive it next with a
/// buffer that large.
///
/// Returns the length (0 or more), or a negative code:
/// `SHMHUB_ERR_TIMED_OUT`, `SHMHUB_ERR_PEER_GONE` (the host left and
/// everything it sent has been read), `SHMHUB_ERR_BUFFER_TOO_SMALL`,
/// `SHMHUB_ERR_INVALID`, ...
///
/// # Safety
///
/// `guest` is NULL or a live handle; `buf` is NULL or points to `cap`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_recv(
    guest: *mut shmhub_guest,
    buf: *mut u8,
    cap: usize,
    timeout_ms: i64,
) -> i64 {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let guest = unsafe { handle::handle(guest, "guest") }?;
        let timeout = handle::timeout(timeout_ms)?;
        let dest = Dest::new(buf, cap)?;
        let len = guest.with(|g| {
            let received = match g.held.take() {
                Some(held) => held,
                None => loop {
                    match g.guest.receiver().recv(timeout) {
                        Ok(Some(received)) => break received,
                        Ok(None) if timeout == Timeout::Never => continue,
                        Ok(None) => {
                            return Err(Failure::shared(SHMHUB_ERR_TIMED_OUT, &g.timed_out));
                        }
                        Err(e) => return Err(g.fail(e)),
                    }
                },
            };
            let len = received.payload().len();
            // SAFETY: `buf` has `cap` writable bytes (this function's
            // contract), apart from the segment the payload lies in.
            if unsafe { dest.put(received.payload()) } {
                return Ok(len);
            }
            g.held = Some(received);
            match dest {
                Dest::Ask => Ok(len),
                Dest::Buffer { cap, .. } => Err(Failure::new(
                    SHMHUB_ERR_BUFFER_TOO_SMALL,
                    format!(
                        "{}: the message from the host is {len} bytes, more than the buffer's {cap}; it stays queued",
                        shown(&g.path)
                    ),
                )),
            }
        })?;
        Ok(len as i64)
    })
}

/// Writes the segment's sizes to `*cfg_out` (every field filled in).
/// Returns `SHMHUB_OK`, or `SHMHUB_ERR_INVALID` for a NULL argument.
///
/// # Safety
///
/// `guest` is NULL or a live handle; `cfg_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_config(
    guest: *mut shmhub_guest,
    cfg_out: *mut shmhub_config,
) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let guest = unsafe { handle::handle(guest, "guest") }?;
        if cfg_out.is_null() {
            return Err(Failure::null("cfg_out"));
        }
        let config = guest.with(|g| Ok(shmhub_config::from(g.guest.layout().config)))?;
        // SAFETY: non-NULL and writable (this function's contract).
        unsafe { put_out(cfg_out, config) };
        Ok(SHMHUB_OK as c_int)
    })
}

/// Detaches and frees the handle: what the host sent and this guest did
/// not read is dropped, and the entry is freed for another guest once the
/// host has read what this guest sent. NULL does nothing. A failure to
/// detach cleanly (the segment was removed meanwhile, say) is left in
/// `shmhub_last_error`; the handle is freed all the same.
///
/// # Safety
///
/// `guest` is NULL or a live handle not yet detached; it is not used
/// again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_guest_detach(guest: *mut shmhub_guest) {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let Some(handle) = (unsafe { handle::take_back(guest) })? else {
            return Ok(());
        };
        let GuestState {
            held, guest, path, ..
        } = handle.0.into_state();
        // Its slot goes back before the guest leaves.
        drop(held);
        guest.detach().map_err(|e| Failure::library(&path, e))
    })
}
