//! `shmhub.Host`: creates a segment, sends to its guests and receives from
//! them, and removes the file when it is closed.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::PyTraverseError;
use pyo3::exceptions::PyValueError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmhub::{
    CreateOptions, Error, FileMode, MsgDesc, PeerId, PeerState, SegmentConfig, ShmHost, Timeout,
    msg_type,
};

use crate::buffer::{to_bytes, with_bytes};
use crate::errors::{self, to_py};
use crate::lent::lend;
use crate::peer::Peer;
use crate::ready::{self, AsyncSlot, Ended, Readiness};
use crate::wait::{Failed, Owner, Patience, in_slices};

/// The host of a segment: creates the file, sends to each guest and
/// receives from all of them, and deletes the file when it is closed,
/// garbage-collected, or leaves a ``with`` block.
///
/// Make one with :meth:`Host.create`. One call runs at a time on a host:
/// a call from another thread waits its turn, which a waiting call gives
/// up every 20 ms. In a child process forked from its creator, a host is
/// closed (calls raise ``ValueError``) and closing it there does nothing.
#[pyclass(module = "shmhub", frozen)]
pub(crate) struct Host {
    /// `None` once closed.
    inner: Mutex<Option<ShmHost>>,
    /// The process that created it.
    owner: Owner,
    /// What `recv_async` waits with.
    aio: AsyncSlot,
    path: PathBuf,
    max_guests: u32,
    max_payload: u32,
}

/// The descriptor of every message sent from Python: a data message.
pub(crate) fn data_desc() -> MsgDesc {
    MsgDesc::new(msg_type::DATA, 0)
}

impl Host {
    /// The host, locked; call with the GIL released (see `in_slices`).
    fn lock(&self) -> Result<MutexGuard<'_, Option<ShmHost>>, Failed> {
        self.owner.lock(&self.inner)
    }

    /// Runs `call` on the open host with the GIL released.
    fn with_host<T: Send>(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&mut ShmHost) -> shmhub::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.lock()?.as_mut() {
            Some(host) => call(host).map_err(Failed::Lib),
            None => Err(Failed::Closed),
        })
        .map_err(|f| self.error(py, f))
    }

    /// A failure as the exception to raise.
    fn error(&self, py: Python<'_>, failed: Failed) -> PyErr {
        match failed {
            Failed::Lib(e) => to_py(py, &self.path, e),
            Failed::Closed => PyValueError::new_err("the host is closed"),
            Failed::Forked(owner) => PyValueError::new_err(Owner::forked_message("host", owner)),
            Failed::Py(e) => e,
        }
    }

    /// `peer_id` as a guest id of this segment, or `shmhub.Invalid`.
    fn guest(&self, py: Python<'_>, peer_id: i64) -> PyResult<PeerId> {
        match u8::try_from(peer_id).ok().and_then(PeerId::new) {
            Some(p) if u32::from(p) <= self.max_guests => Ok(p),
            _ => Err(errors::invalid(
                py,
                Some(&self.path),
                format!(
                    "{}: peer id {peer_id} is out of range (this segment has guests 1..={})",
                    self.path.display(),
                    self.max_guests
                ),
            )),
        }
    }

    /// Receives with `recv` in slices as `patience` says; a time-out is
    /// `shmhub.TimedOut`.
    fn recv_in_slices<T: Send>(
        &self,
        py: Python<'_>,
        patience: Patience,
        mut recv: impl FnMut(&mut ShmHost, Timeout) -> shmhub::Result<Option<T>> + Send,
    ) -> PyResult<T> {
        let mut busy = None;
        let got = in_slices(py, patience, |timeout| {
            let mut guard = self.lock()?;
            let host = guard.as_mut().ok_or(Failed::Closed)?;
            match recv(host, timeout) {
                // A receiving role another process holds is waited out.
                Err(e @ Error::Busy { .. }) => {
                    busy = Some(e);
                    Ok(None)
                }
                got => got.map_err(Failed::Lib),
            }
        });
        match got {
            Ok(Some(got)) => Ok(got),
            Ok(None) => Err(errors::timed_out(
                py,
                &self.path,
                busy.unwrap_or(Error::Timeout),
            )),
            Err(failed) => Err(self.error(py, failed)),
        }
    }
}

#[pymethods]
impl Host {
    /// Creates a segment file at ``path`` (which must not exist) and
    /// becomes its host.
    ///
    /// Args:
    ///     path: where to create it, usually under ``/dev/shm``.
    ///     max_guests: guests that can attach at once, 1 to 255.
    ///     ring_capacity: descriptors per ring, a power of two 2 to 65536.
    ///     slot_size: bytes per payload slot, a multiple of 64.
    ///     slots_per_pool: slots in each pool (the host's and each guest's).
    ///     max_payload: largest payload of a message; default ``slot_size``.
    ///     heartbeat_ms: heartbeat interval of guests, 0 (default) for none.
    ///     host_slots_per_guest: how many of the host's slots one guest may
    ///         hold at once; 0 (default) for the fair share.
    ///     preallocate: reserve every page of the file now.
    ///     mode: permission bits of the file, ``0o600`` or ``0o660``.
    ///
    /// Raises:
    ///     shmhub.Invalid: a configuration that cannot be laid out.
    ///     shmhub.FileError: the file exists or cannot be made.
    #[staticmethod]
    #[pyo3(signature = (
        path, *, max_guests = 8, ring_capacity = 256, slot_size = 65536,
        slots_per_pool = 64, max_payload = None, heartbeat_ms = 0,
        host_slots_per_guest = 0, preallocate = false, mode = 0o600,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        max_guests: i64,
        ring_capacity: i64,
        slot_size: i64,
        slots_per_pool: i64,
        max_payload: Option<i64>,
        heartbeat_ms: i64,
        host_slots_per_guest: i64,
        preallocate: bool,
        mode: u32,
    ) -> PyResult<Host> {
        let size = |field: &str, value: i64| {
            u32::try_from(value).map_err(|_| {
                errors::invalid(py, None, format!("invalid {field} = {value}: out of range"))
            })
        };
        let slot_size = size("slot_size", slot_size)?;
        let config = SegmentConfig {
            max_guests: size("max_guests", max_guests)?,
            ring_capacity: size("ring_capacity", ring_capacity)?,
            slot_size,
            slots_per_pool: size("slots_per_pool", slots_per_pool)?,
            max_payload: max_payload.map_or(Ok(slot_size), |m| size("max_payload", m))?,
            heartbeat_interval_ms: size("heartbeat_ms", heartbeat_ms)?,
        };
        let mode = match mode {
            0o600 => FileMode::OwnerOnly,
            0o660 => FileMode::OwnerAndGroup,
            _ => {
                return Err(errors::invalid(
                    py,
                    None,
                    format!("invalid mode = {mode:#o}: must be 0o600 or 0o660"),
                ));
            }
        };
        let options = CreateOptions {
            mode,
            preallocate,
            host_slots_per_guest: size("host_slots_per_guest", host_slots_per_guest)?,
        };
        let host = py
            .detach(|| ShmHost::create_with(&path, config, options))
            .map_err(|e| to_py(py, &path, e))?;
        Ok(Host {
            inner: Mutex::new(Some(host)),
            owner: Owner::this_process(),
            aio: AsyncSlot::default(),
            max_guests: config.max_guests,
            max_payload: config.max_payload,
            path,
        })
    }

    /// The segment file's path, as given to :meth:`create`.
    #[getter]
    fn path(&self) -> &OsStr {
        self.path.as_os_str()
    }

    /// How many guests can attach at once.
    #[getter]
    fn max_guests(&self) -> u32 {
        self.max_guests
    }

    /// The largest payload a message may carry, in bytes.
    #[getter]
    fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Whether :meth:`close` has run (the file is gone); always True in a
    /// forked child.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.lock().map_or(true, |host| host.is_none()))
    }

    /// Sends ``data`` (any bytes-like object) to guest ``peer_id``,
    /// waiting up to ``timeout`` seconds (None: as long as it takes) for
    /// room. The bytes are copied once, into the segment.
    ///
    /// Raises:
    ///     shmhub.Full: no room within the timeout (a TimeoutError);
    ///         nothing was sent.
    ///     shmhub.TooLarge: ``data`` is longer than ``max_payload``.
    ///     shmhub.PeerGone: the guest left or died.
    #[pyo3(signature = (peer_id, data, timeout = None))]
    fn send(
        &self,
        py: Python<'_>,
        peer_id: i64,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let patience = Patience::from_seconds(timeout)?;
        let peer = self.guest(py, peer_id)?;
        with_bytes(data, |payload| {
            let mut full = None;
            let sent = in_slices(py, patience, |timeout| {
                let mut guard = self.lock()?;
                let host = guard.as_mut().ok_or(Failed::Closed)?;
                match host.send_with(peer, data_desc(), payload, timeout) {
                    Ok(()) => Ok(Some(())),
                    Err(e) if retry_send(&e, patience) => {
                        full = Some(e);
                        Ok(None)
                    }
                    Err(e) => Err(Failed::Lib(e)),
                }
            });
            match sent {
                Ok(Some(())) => Ok(()),
                Ok(None) => Err(errors::timed_out(
                    py,
                    &self.path,
                    full.unwrap_or(Error::Timeout),
                )),
                Err(failed) => Err(self.error(py, failed)),
            }
        })?
    }

    /// Receives the next message from any guest, waiting up to ``timeout``
    /// seconds (None: as long as it takes); guests are served in turn.
    ///
    /// Returns:
    ///     ``(peer_id, payload)``, the payload a new ``bytes``.
    ///
    /// Raises:
    ///     shmhub.TimedOut: nothing came within the timeout (a
    ///         TimeoutError).
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<(u8, Bound<'py, PyBytes>)> {
        let patience = Patience::from_seconds(timeout)?;
        let (from, received) = self.recv_in_slices(py, patience, |host, timeout| {
            host.any_receiver().recv(timeout)
        })?;
        Ok((from.get(), to_bytes(py, received.payload())?))
    }

    /// The next message from any guest if one is queued, as
    /// ``(peer_id, payload)``; None if nothing is.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<(u8, Bound<'py, PyBytes>)>> {
        let got = self.with_host(py, |host| host.any_receiver().recv(Timeout::NoWait))?;
        got.map(|(from, received)| Ok((from.get(), to_bytes(py, received.payload())?)))
            .transpose()
    }

    /// Receives the next message from guest ``peer_id`` alone, waiting up
    /// to ``timeout`` seconds (None: as long as it takes); returns its
    /// payload as ``bytes``.
    ///
    /// Raises:
    ///     shmhub.TimedOut: nothing came within the timeout.
    ///     shmhub.PeerGone: the guest left or died, and nothing it sent is
    ///         left to read.
    #[pyo3(signature = (peer_id, timeout = None))]
    fn recv_from<'py>(
        &self,
        py: Python<'py>,
        peer_id: i64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let patience = Patience::from_seconds(timeout)?;
        let peer = self.guest(py, peer_id)?;
        let received = self.recv_in_slices(py, patience, |host, timeout| {
            host.receiver(peer)?.recv(timeout)
        })?;
        to_bytes(py, received.payload())
    }

    /// Receives the next message from any guest without copying it:
    /// returns ``(peer_id, view)``, ``view`` a read-only ``memoryview`` of
    /// the payload where it lies in the segment. Use the view in a
    /// ``with`` block: its slot goes back to the guest's pool when the
    /// block ends (or, if views made from it live on, when the last of
    /// them is released). Waits as :meth:`recv` does.
    #[pyo3(signature = (timeout = None))]
    fn recv_view<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<(u8, Bound<'py, PyMemoryView>)> {
        let patience = Patience::from_seconds(timeout)?;
        let (from, received) = self.recv_in_slices(py, patience, |host, timeout| {
            host.any_receiver().recv(timeout)
        })?;
        Ok((from.get(), lend(py, received)?))
    }

    /// A descriptor for an event loop, readable when a message from any
    /// guest is queued or a guest's process ended: see :class:`Readiness`
    /// for how to use it. Each call makes a new one; close it when done
    /// (it does not keep the file from being deleted when the host closes).
    ///
    /// Raises:
    ///     shmhub.FileError: the descriptor or its thread cannot be made.
    ///     shmhub.Invalid: not on Linux.
    fn readiness(&self, py: Python<'_>) -> PyResult<Readiness> {
        let inner = self.with_host(py, |host| ready::of_host(host))?;
        Ok(Readiness::new(inner, &self.path, None))
    }

    /// Receives the next message from any guest in an asyncio task:
    /// ``peer_id, payload = await host.recv_async()``. The task waits in
    /// the event loop (``loop.add_reader`` on a :class:`Readiness` the host
    /// makes at the first call and closes with itself), holding no thread;
    /// any number of tasks may await it at once. Cancelling it loses no
    /// message.
    ///
    /// Returns:
    ///     ``(peer_id, payload)``, the payload a new ``bytes``.
    ///
    /// Raises:
    ///     shmhub.PeerGone: once for each guest whose process ended while
    ///         the host waited, when nothing is left to read (``e.peer_id``,
    ///         ``e.pid``); reclaim its entry with :meth:`reclaim_dead`.
    ///     ValueError: the host is closed (also while a task awaits).
    fn recv_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let host = slf.get();
        host.aio.recv(slf.as_any(), || host.readiness(slf.py()))
    }

    /// The exception `recv_async` raises for a guest's process that ended.
    fn _ended_error(&self, py: Python<'_>, ended: &Ended) -> Py<PyAny> {
        ended.error(py, &self.path).into_value(py).into_any()
    }

    /// Sets an empty entry aside for a guest about to be started, which
    /// attaches with ``Guest.attach(path, peer_id=...)``; returns its id.
    /// Messages sent to it meanwhile wait in its ring.
    ///
    /// Raises:
    ///     shmhub.Busy: every entry is taken.
    fn reserve_peer(&self, py: Python<'_>) -> PyResult<u8> {
        self.with_host(py, ShmHost::reserve_peer).map(PeerId::get)
    }

    /// Returns a reserved entry to empty (its guest was never started).
    fn release_peer(&self, py: Python<'_>, peer_id: i64) -> PyResult<()> {
        let peer = self.guest(py, peer_id)?;
        self.with_host(py, |host| host.release_peer(peer))
    }

    /// Cuts guest ``peer_id`` off: from now on every call to or from it
    /// (its own included) raises :class:`CutOff`, and what it sent and was
    /// not received is dropped. Its entry is freed at once if its process
    /// is gone, else by the first :meth:`reclaim_dead` after it is.
    /// Returns whether the entry was freed.
    ///
    /// Raises:
    ///     shmhub.Busy: nobody holds the entry (empty or reserved).
    fn evict(&self, py: Python<'_>, peer_id: i64) -> PyResult<bool> {
        let peer = self.guest(py, peer_id)?;
        self.with_host(py, |host| host.evict(peer))
    }

    /// Reclaims the entries of guests whose process died: their rings are
    /// emptied, their slots returned, their entries empty again. Returns
    /// the ids reclaimed.
    fn reclaim_dead(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        // As numbers: pyo3 turns a `Vec<u8>` into `bytes`.
        let reclaimed = self.with_host(py, ShmHost::reclaim_dead)?;
        Ok(reclaimed.into_iter().map(u32::from).collect())
    }

    /// The entries in use (not empty), in id order. An entry whose state
    /// word holds no state the protocol knows (a stray or hostile write)
    /// is left out rather than raising: ``shmhub inspect`` shows it.
    fn peers(&self, py: Python<'_>) -> PyResult<Vec<Peer>> {
        let entries = self.with_host(py, |host| {
            host.peers()?
                .into_iter()
                .filter(|entry| entry.state != PeerState::Empty)
                .filter_map(|entry| match host.status().holder_status(entry.peer_id) {
                    Ok(holder) => Some(Ok((entry, holder))),
                    // Gone bad since the first look: left out as well.
                    Err(shmhub::Error::Corrupt(_)) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<shmhub::Result<Vec<_>>>()
        })?;
        Ok(entries
            .into_iter()
            .map(|(entry, holder)| Peer::new(&entry, holder))
            .collect())
    }

    /// Says goodbye to the guests and deletes the segment file. Later
    /// calls raise ``ValueError``; closing again, or in a forked child,
    /// does nothing. Tasks awaiting :meth:`recv_async` raise
    /// ``ValueError``; descriptors from :meth:`readiness` stay open until
    /// closed themselves.
    fn close(&self, py: Python<'_>) {
        if !self.owner.is_this_process() {
            return;
        }
        let host = py.detach(|| self.lock().ok().and_then(|mut host| host.take()));
        py.detach(move || drop(host));
        self.aio.close(py);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.aio.traverse(&visit)
    }

    fn __clear__(&self) {
        self.aio.clear();
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) { "closed" } else { "open" };
        format!(
            "<shmhub.Host {:?} {state}>",
            self.path.display().to_string()
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.owner.forget_in_child(&mut self.inner);
    }
}

/// Whether a send that failed with `e` within one slice is tried again in
/// the next: a full ring or pool is waited out; so is a sending role
/// another process holds, but only for a call given a timeout (without
/// one, it is not backpressure, and fails at once, as in the library).
pub(crate) fn retry_send(e: &Error, patience: Patience) -> bool {
    e.is_retryable() || (matches!(e, Error::Busy { .. }) && !patience.is_forever())
}
