//! `shmhub.Guest`: attaches to a segment, sends to its host and receives
//! from it, and detaches when it is done.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::PyTraverseError;
use pyo3::exceptions::PyValueError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmhub::{Error, PeerId, Received, Receiver, Sender, ShmGuest, Timeout};

use crate::buffer::{to_bytes, with_bytes};
use crate::errors::{self, to_py};
use crate::host::{data_desc, retry_send};
use crate::lent::lend;
use crate::ready::{self, AsyncSlot, Ended, Readiness};
use crate::wait::{Failed, Owner, Patience, in_slices};

/// A guest of a segment: holds one peer entry, sends to the host and
/// receives from it. Make one with :meth:`Guest.attach`; it detaches when
/// :meth:`detach` is called, when it is garbage-collected, or when it
/// leaves a ``with`` block.
///
/// Sending and receiving are separate: one thread may wait in
/// :meth:`recv` while another sends. In a child process forked from the
/// one that attached it, a guest is detached (calls raise ``ValueError``)
/// and detaching it there does nothing.
#[pyclass(module = "shmhub", frozen)]
pub(crate) struct Guest {
    /// The process that attached it.
    owner: Owner,
    /// The sending end; `None` once detached.
    tx: Mutex<Option<Sender>>,
    /// The receiving end; `None` once detached. The entry is this guest's
    /// until both ends are dropped.
    rx: Mutex<Option<Receiver>>,
    /// What `recv_async` waits with.
    aio: AsyncSlot,
    path: PathBuf,
    peer_id: PeerId,
    max_payload: u32,
}

impl Guest {
    /// Locks an end; call with the GIL released (see `in_slices`).
    fn lock<'a, T>(&self, end: &'a Mutex<Option<T>>) -> Result<MutexGuard<'a, Option<T>>, Failed> {
        self.owner.lock(end)
    }

    /// A failure as the exception to raise.
    fn error(&self, py: Python<'_>, failed: Failed) -> PyErr {
        match failed {
            Failed::Lib(e) => to_py(py, &self.path, e),
            Failed::Closed => PyValueError::new_err("the guest is detached"),
            Failed::Forked(owner) => PyValueError::new_err(Owner::forked_message("guest", owner)),
            Failed::Py(e) => e,
        }
    }

    /// Receives in slices as `patience` says; a time-out is
    /// `shmhub.TimedOut`.
    fn recv_in_slices(&self, py: Python<'_>, patience: Patience) -> PyResult<Received> {
        let mut busy = None;
        let got = in_slices(py, patience, |timeout| {
            let mut guard = self.lock(&self.rx)?;
            let rx = guard.as_mut().ok_or(Failed::Closed)?;
            match rx.recv(timeout) {
                // A receiving role another process holds is waited out.
                Err(e @ Error::Busy { .. }) => {
                    busy = Some(e);
                    Ok(None)
                }
                got => got.map_err(Failed::Lib),
            }
        });
        match got {
            Ok(Some(received)) => Ok(received),
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
impl Guest {
    /// Maps the segment file at ``path`` and claims an empty entry, or,
    /// with ``peer_id``, the entry the host reserved for this guest
    /// (``Host.reserve_peer``).
    ///
    /// Raises:
    ///     shmhub.Busy: every entry is taken, or entry ``peer_id`` is not
    ///         reserved.
    ///     shmhub.FileError: no file, or not one this user may open.
    ///     shmhub.Corrupt: the file is not a segment.
    #[staticmethod]
    #[pyo3(signature = (path, peer_id = None))]
    fn attach(py: Python<'_>, path: PathBuf, peer_id: Option<i64>) -> PyResult<Guest> {
        let peer_id = peer_id
            .map(|id| {
                u8::try_from(id).map_err(|_| {
                    errors::invalid(
                        py,
                        Some(&path),
                        format!(
                            "{}: peer id {id} is out of range (guests are 1..=255)",
                            path.display()
                        ),
                    )
                })
            })
            .transpose()?;
        let guest = py
            .detach(|| match peer_id {
                Some(id) => ShmGuest::attach_path_with_id(&path, id),
                None => ShmGuest::attach_path(&path),
            })
            .map_err(|e| to_py(py, &path, e))?;
        let (peer_id, max_payload) = (guest.peer_id(), guest.layout().config.max_payload);
        let (tx, rx) = guest.into_split();
        Ok(Guest {
            owner: Owner::this_process(),
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            aio: AsyncSlot::default(),
            path,
            peer_id,
            max_payload,
        })
    }

    /// The segment file's path, as given to :meth:`attach`.
    #[getter]
    fn path(&self) -> &OsStr {
        self.path.as_os_str()
    }

    /// This guest's id, 1 to 255.
    #[getter]
    fn peer_id(&self) -> u8 {
        self.peer_id.get()
    }

    /// The largest payload a message may carry, in bytes.
    #[getter]
    fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Whether :meth:`detach` has run; always True in a forked child.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.lock(&self.rx).map_or(true, |rx| rx.is_none()))
    }

    /// Sends ``data`` (any bytes-like object) to the host, waiting up to
    /// ``timeout`` seconds (None: as long as it takes) for room. The bytes
    /// are copied once, into the segment.
    ///
    /// Raises:
    ///     shmhub.Full: no room within the timeout (a TimeoutError);
    ///         nothing was sent.
    ///     shmhub.TooLarge: ``data`` is longer than ``max_payload``.
    ///     shmhub.HostGone: the host left or died.
    #[pyo3(signature = (data, timeout = None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let patience = Patience::from_seconds(timeout)?;
        with_bytes(data, |payload| {
            let mut full = None;
            let sent = in_slices(py, patience, |timeout| {
                let mut guard = self.lock(&self.tx)?;
                let tx = guard.as_mut().ok_or(Failed::Closed)?;
                match tx.send(data_desc(), payload, timeout) {
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

    /// Receives the next message from the host, waiting up to ``timeout``
    /// seconds (None: as long as it takes); returns its payload as
    /// ``bytes``.
    ///
    /// Raises:
    ///     shmhub.TimedOut: nothing came within the timeout (a
    ///         TimeoutError).
    ///     shmhub.HostGone: the host left or died, and nothing it sent is
    ///         left to read.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let patience = Patience::from_seconds(timeout)?;
        let received = self.recv_in_slices(py, patience)?;
        to_bytes(py, received.payload())
    }

    /// The next message's payload if one is queued; None if nothing is
    /// (even once the host has left: ``recv`` says that).
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let got = py
            .detach(|| match self.lock(&self.rx)?.as_mut() {
                Some(rx) => rx.recv(Timeout::NoWait).map_err(Failed::Lib),
                None => Err(Failed::Closed),
            })
            .map_err(|f| self.error(py, f))?;
        got.map(|received| to_bytes(py, received.payload()))
            .transpose()
    }

    /// Receives the next message without copying it: returns a read-only
    /// ``memoryview`` of the payload where it lies in the segment. Use it
    /// in a ``with`` block: its slot goes back to the host's pool when the
    /// block ends (or, if views made from it live on, when the last of
    /// them is released). Waits as :meth:`recv` does.
    #[pyo3(signature = (timeout = None))]
    fn recv_view<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyMemoryView>> {
        let patience = Patience::from_seconds(timeout)?;
        let received = self.recv_in_slices(py, patience)?;
        lend(py, received)
    }

    /// A descriptor for an event loop, readable when a message from the
    /// host is queued or the host's process ended: see :class:`Readiness`
    /// for how to use it. Each call makes a new one; close it when done.
    ///
    /// Raises:
    ///     shmhub.FileError: the descriptor or its thread cannot be made.
    ///     shmhub.Invalid: not on Linux.
    fn readiness(&self, py: Python<'_>) -> PyResult<Readiness> {
        let inner = py
            .detach(|| match self.lock(&self.rx)?.as_ref() {
                Some(rx) => ready::of_guest(rx).map_err(Failed::Lib),
                None => Err(Failed::Closed),
            })
            .map_err(|f| self.error(py, f))?;
        Ok(Readiness::new(inner, &self.path, Some(self.peer_id)))
    }

    /// Receives the next message from the host in an asyncio task:
    /// ``payload = await guest.recv_async()``. The task waits in the event
    /// loop (``loop.add_reader`` on a :class:`Readiness` the guest makes at
    /// the first call and closes when it detaches), holding no thread.
    /// Cancelling it loses no message.
    ///
    /// Returns:
    ///     the payload, a new ``bytes``.
    ///
    /// Raises:
    ///     shmhub.HostGone: the host's process ended while the guest
    ///         waited, and nothing it sent is left to read (``e.kind`` is
    ///         ``"gone"``).
    ///     ValueError: the guest is detached (also while a task awaits).
    fn recv_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let guest = slf.get();
        guest.aio.recv(slf.as_any(), || guest.readiness(slf.py()))
    }

    /// The exception `recv_async` raises for the host's process that ended.
    fn _ended_error(&self, py: Python<'_>, ended: &Ended) -> Py<PyAny> {
        ended.error(py, &self.path).into_value(py).into_any()
    }

    /// Leaves the segment: what the host sent and this guest did not read
    /// is dropped, and the entry is freed. Later calls raise
    /// ``ValueError``; detaching again, or in a forked child, does
    /// nothing.
    fn detach(&self, py: Python<'_>) {
        if !self.owner.is_this_process() {
            return;
        }
        py.detach(|| {
            let tx = self.lock(&self.tx).ok().and_then(|mut tx| tx.take());
            let rx = self.lock(&self.rx).ok().and_then(|mut rx| rx.take());
            drop((tx, rx));
        });
        self.aio.close(py);
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.detach(py);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.aio.traverse(&visit)
    }

    fn __clear__(&self) {
        self.aio.clear();
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) {
            "detached"
        } else {
            "attached"
        };
        format!(
            "<shmhub.Guest {:?} peer {} {state}>",
            self.path.display().to_string(),
            self.peer_id
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.owner.forget_in_child(&mut self.tx);
        self.owner.forget_in_child(&mut self.rx);
    }
}
