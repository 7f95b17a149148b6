//! The host's calls: create a segment, send to a guest, receive from any
//! guest or from one, reserve and reclaim entries, destroy (which removes
//! the file).

use std::collections::VecDeque;
use std::ffi::{CStr, c_char, c_int};
use std::path::PathBuf;
use std::sync::Arc;

use shmhub::{MsgDesc, Received, ShmHost, Timeout};

use crate::error::{Failure, c_string, call};
use crate::handle::{self, Dest, Handle, Wrapper, put_out};
use crate::text::shown;
use crate::{SHMHUB_ERR_BUFFER_TOO_SMALL, SHMHUB_ERR_TIMED_OUT, shmhub_config};

/// A host: the process that created a segment (opaque to C). Made by
/// `shmhub_host_create()`, freed by `shmhub_host_destroy()`.
#[derive(Debug)]
pub struct shmhub_host(Handle<HostState>);

impl Wrapper for shmhub_host {
    type State = HostState;
    fn handle(&self) -> &Handle<HostState> {
        &self.0
    }
}

/// What a host handle holds.
#[derive(Debug)]
pub(crate) struct HostState {
    /// Messages taken off their ring that did not fit the caller's buffer,
    /// at most one per guest, oldest first: the next receive that may
    /// return them does. Declared before `host`, so dropped (their slots
    /// freed) before it.
    held: VecDeque<(u8, Received)>,
    host: ShmHost,
    path: PathBuf,
    /// "PATH: timed out", made once.
    timed_out: Arc<CStr>,
}

impl HostState {
    fn fail(&self, e: shmhub::Error) -> Failure {
        Failure::library(&self.path, e)
    }

    /// The next message from any guest, held: the oldest held one, else
    /// one off the rings (round-robin), waiting up to `timeout`. Returns
    /// where in `held` it is.
    fn recv_any(&mut self, timeout: Timeout) -> Result<usize, Failure> {
        if self.held.is_empty() {
            let (from, received) = loop {
                match self.host.any_receiver().recv(timeout) {
                    Ok(Some(found)) => break found,
                    Ok(None) if timeout == Timeout::Never => continue,
                    Ok(None) => return Err(Failure::shared(SHMHUB_ERR_TIMED_OUT, &self.timed_out)),
                    Err(e) => return Err(self.fail(e)),
                }
            };
            self.held.push_back((from.get(), received));
        }
        Ok(0)
    }

    /// The next message from guest `peer`, held: the one held from it,
    /// else one off its ring, waiting up to `timeout`. Returns where in
    /// `held` it is.
    fn recv_from(&mut self, peer: u8, timeout: Timeout) -> Result<usize, Failure> {
        if let Some(at) = self.held.iter().position(|(from, _)| *from == peer) {
            return Ok(at);
        }
        let receiver = self
            .host
            .receiver(peer)
            .map_err(|e| Failure::library(&self.path, e))?;
        let received = loop {
            match receiver.recv(timeout) {
                Ok(Some(received)) => break received,
                Ok(None) if timeout == Timeout::Never => continue,
                Ok(None) => return Err(Failure::shared(SHMHUB_ERR_TIMED_OUT, &self.timed_out)),
                Err(e) => return Err(Failure::library(&self.path, e)),
            }
        };
        self.held.push_back((peer, received));
        Ok(self.held.len() - 1)
    }

    /// Hands the held message at `at` to `dest`: its sender and length,
    /// and it is no longer held if it was copied out.
    ///
    /// # Safety
    ///
    /// As [`Dest::put`].
    unsafe fn deliver(&mut self, at: usize, dest: &Dest) -> Result<(u8, usize), Failure> {
        let (from, received) = &self.held[at];
        let (from, payload) = (*from, received.payload());
        let len = payload.len();
        // SAFETY: passed on from this function's contract.
        if unsafe { dest.put(payload) } {
            self.held.remove(at);
            return Ok((from, len));
        }
        match dest {
            Dest::Ask => Ok((from, len)),
            Dest::Buffer { cap, .. } => Err(Failure::new(
                SHMHUB_ERR_BUFFER_TOO_SMALL,
                format!(
                    "{}: the message from peer {from} is {len} bytes, more than the buffer's {cap}; it stays queued",
                    shown(&self.path)
                ),
            )),
        }
    }
}

/// Creates a segment file at `path` (which must not exist yet) and becomes
/// its host. `cfg` NULL: the default sizes (see `shmhub_config_default()`);
/// a field of `cfg` left 0 takes its default.
///
/// The path is used as given (`/dev/shm/NAME` is where the `shmhub`
/// command looks for a bare NAME). Returns NULL on failure
/// (`shmhub_last_error_code()`: `SHMHUB_ERR_IO` if the file exists or
/// cannot be made, `SHMHUB_ERR_INVALID` for a NULL path or sizes that
/// cannot be laid out).
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string; `cfg` is NULL or points to a
/// `shmhub_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_create(
    path: *const c_char,
    cfg: *const shmhub_config,
) -> *mut shmhub_host {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let path = unsafe { handle::path(path) }?;
        // SAFETY: `cfg` is NULL or points to a shmhub_config (this
        // function's contract); it is copied out at once.
        let config = unsafe { cfg.as_ref() }.copied().map_or_else(
            shmhub::SegmentConfig::default,
            shmhub_config::to_segment_config,
        );
        let host = ShmHost::create(path, config).map_err(|e| Failure::library(path, e))?;
        let timed_out = c_string(format!("{}: timed out", shown(path))).into();
        let state = HostState {
            held: VecDeque::new(),
            host,
            path: path.to_path_buf(),
            timed_out,
        };
        Ok(Box::into_raw(Box::new(shmhub_host(Handle::new(state)))))
    })
}

/// Says goodbye to the guests, removes the segment file and frees the
/// handle (and any message held for a short buffer). NULL does nothing.
/// Guests still attached see `SHMHUB_ERR_PEER_GONE` once they have read
/// what the host sent.
///
/// # Safety
///
/// `host` is NULL or a handle from `shmhub_host_create()` not yet
/// destroyed; it is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_destroy(host: *mut shmhub_host) {
    call(|| {
        // SAFETY: passed on from this function's contract.
        drop(unsafe { handle::take_back(host) }?);
        Ok(())
    })
}

/// Sends the `len` bytes at `data` to guest `peer` (1 to `max_guests`),
/// waiting up to `timeout_ms` milliseconds for room (-1: as long as it
/// takes, until the guest leaves; 0: not at all). Payloads of up to 32
/// bytes travel inside the descriptor, larger ones in a slot of the host's
/// pool. The bytes are copied: `data` is free again when this returns.
///
/// Returns `SHMHUB_OK`, or a negative code: `SHMHUB_ERR_FULL` (no room in
/// time; nothing sent), `SHMHUB_ERR_TOO_LARGE`, `SHMHUB_ERR_PEER_GONE`,
/// `SHMHUB_ERR_BUSY` (nobody ever attached as `peer`),
/// `SHMHUB_ERR_INVALID` (`peer` out of range, NULL `host`, NULL `data`
/// with `len` above 0), ...
///
/// # Safety
///
/// `host` is NULL or a live handle; `data` is NULL or points to `len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_send(
    host: *mut shmhub_host,
    peer: u8,
    data: *const u8,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let timeout = handle::timeout(timeout_ms)?;
        // SAFETY: passed on from this function's contract.
        let data = unsafe { handle::bytes(data, len) }?;
        host.with(|h| {
            let sender = h
                .host
                .sender(peer)
                .map_err(|e| Failure::library(&h.path, e))?;
            sender
                .send(MsgDesc::default(), data, timeout)
                .map_err(|e| Failure::library(&h.path, e))
        })?;
        Ok(crate::SHMHUB_OK as c_int)
    })
}

/// Receives the next message from any guest (round-robin, so that a busy
/// guest cannot starve the others), waiting up to `timeout_ms`
/// milliseconds (-1: as long as it takes; 0: not at all). Copies its
/// payload into `buf` (`cap` bytes), writes the sender's id to `*peer_out`
/// (unless `peer_out` is NULL), and returns the payload's length.
///
/// A message larger than `cap` is not lost: the call returns
/// `SHMHUB_ERR_BUFFER_TOO_SMALL` (with `*peer_out` set) and keeps the
/// message first in line. `buf` NULL with `cap` 0 asks for the length: the
/// call waits as a receive does, returns the next message's length and
/// sender, and keeps it; receive it next with a buffer that large.
///
/// Returns the length (0 or more), or a negative code:
/// `SHMHUB_ERR_TIMED_OUT`, `SHMHUB_ERR_BUFFER_TOO_SMALL`,
/// `SHMHUB_ERR_INVALID` (NULL `host`, NULL `buf` with `cap` above 0), ...
///
/// # Safety
///
/// `host` is NULL or a live handle; `peer_out` is NULL or writable; `buf`
/// is NULL or points to `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_recv(
    host: *mut shmhub_host,
    peer_out: *mut u8,
    buf: *mut u8,
    cap: usize,
    timeout_ms: i64,
) -> i64 {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let timeout = handle::timeout(timeout_ms)?;
        let dest = Dest::new(buf, cap)?;
        let (from, len) = host.with(|h| {
            let at = h.recv_any(timeout)?;
            // SAFETY: `buf` has `cap` writable bytes (this function's
            // contract), apart from the segment the payload lies in.
            let delivered = unsafe { h.deliver(at, &dest) };
            if let Err(Failure {
                code: SHMHUB_ERR_BUFFER_TOO_SMALL,
                ..
            }) = &delivered
            {
                // SAFETY: passed on from this function's contract.
                unsafe { put_out(peer_out, h.held[at].0) };
            }
            delivered
        })?;
        // SAFETY: passed on from this function's contract.
        unsafe { put_out(peer_out, from) };
        Ok(len as i64)
    })
}

/// Receives the next message from guest `peer` alone, as
/// `shmhub_host_recv()` does (a NULL `buf` with `cap` 0 asks its length;
/// one too large for `cap` stays queued). Returns its length, or a
/// negative code: `SHMHUB_ERR_TIMED_OUT`, `SHMHUB_ERR_PEER_GONE` (the
/// guest left and everything it sent has been read),
/// `SHMHUB_ERR_BUFFER_TOO_SMALL`, `SHMHUB_ERR_INVALID` (`peer` out of
/// range), `SHMHUB_ERR_BUSY` (nobody ever attached as `peer`), ...
///
/// # Safety
///
/// `host` is NULL or a live handle; `buf` is NULL or points to `cap`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_recv_from(
    host: *mut shmhub_host,
    peer: u8,
    buf: *mut u8,
    cap: usize,
    timeout_ms: i64,
) -> i64 {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let timeout = handle::timeout(timeout_ms)?;
        let dest = Dest::new(buf, cap)?;
        let (_, len) = host.with(|h| {
            let at = h.recv_from(peer, timeout)?;
            // SAFETY: `buf` has `cap` writable bytes (this function's
            // contract), apart from the segment the payload lies in.
            unsafe { h.deliver(at, &dest) }
        })?;
        Ok(len as i64)
    })
}

/// Sets an empty guest entry aside for a guest the host is about to start
/// (which attaches with `shmhub_guest_attach_id`); messages sent to it
/// meanwhile wait in its ring. Returns its id (1 to 255), or a negative
/// code: `SHMHUB_ERR_BUSY` when every entry is taken, ...
///
/// # Safety
///
/// `host` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_reserve_peer(host: *mut shmhub_host) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let id = host.with(|h| h.host.reserve_peer().map_err(|e| h.fail(e)))?;
        Ok(c_int::from(id.get()))
    })
}

/// Returns reserved entry `peer` to empty (its guest was never started).
/// Returns `SHMHUB_OK`, or a negative code: `SHMHUB_ERR_BUSY` if the entry
/// is not reserved, `SHMHUB_ERR_INVALID` for an id out of range, ...
///
/// # Safety
///
/// `host` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_release_peer(host: *mut shmhub_host, peer: u8) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        host.with(|h| h.host.release_peer(peer).map_err(|e| h.fail(e)))?;
        Ok(crate::SHMHUB_OK as c_int)
    })
}

/// Frees the entries of guests whose process died without detaching (and
/// reservations whose reserving process died): their rings emptied, their
/// slots returned, the entries free for new guests. Returns how many
/// guests were reclaimed (0 or more), or a negative code.
///
/// # Safety
///
/// `host` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_reclaim_dead(host: *mut shmhub_host) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let reclaimed = host.with(|h| {
            // A held message's guest may be among them: its slot stays
            // this process's until the message is received or the handle
            // destroyed.
            h.host.reclaim_dead().map_err(|e| h.fail(e))
        })?;
        Ok(reclaimed.len() as c_int)
    })
}

/// Cuts guest `peer` off now (an eviction): from here on every send to
/// it and receive from it, and the guest's own sends and receives, fail
/// with `SHMHUB_ERR_CUT_OFF`, while the other guests go on. Its entry is
/// freed at once if no process holds it, and otherwise by the first
/// `shmhub_host_reclaim_dead()` after its process is gone (a process that
/// lives may still write to it).
///
/// Returns 1 if the entry was freed, 0 if it waits for its process to go,
/// or a negative code: `SHMHUB_ERR_INVALID` (`peer` out of range),
/// `SHMHUB_ERR_BUSY` (the entry is empty or only reserved), ...
///
/// # Safety
///
/// `host` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_evict(host: *mut shmhub_host, peer: u8) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        let freed = host.with(|h| h.host.evict(peer).map_err(|e| h.fail(e)))?;
        Ok(c_int::from(freed))
    })
}

/// Writes the segment's sizes to `*cfg_out` (every field filled in).
/// Returns `SHMHUB_OK`, or `SHMHUB_ERR_INVALID` for a NULL argument.
///
/// # Safety
///
/// `host` is NULL or a live handle; `cfg_out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmhub_host_config(
    host: *mut shmhub_host,
    cfg_out: *mut shmhub_config,
) -> c_int {
    call(|| {
        // SAFETY: passed on from this function's contract.
        let host = unsafe { handle::handle(host, "host") }?;
        if cfg_out.is_null() {
            return Err(Failure::null("cfg_out"));
        }
        let config = host.with(|h| Ok(shmhub_config::from(h.host.layout().config)))?;
        // SAFETY: non-NULL and writable (this function's contract).
        unsafe { put_out(cfg_out, config) };
        Ok(crate::SHMHUB_OK as c_int)
    })
}
