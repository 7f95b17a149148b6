//! `shmhub.Readiness`: the library's readiness descriptor for Python's
//! event loops (`loop.add_reader`, `select`, `selectors`), the `Ended`
//! processes its drains report, and the state behind `recv_async`.
//!
//! The waiting of `recv_async` is asyncio's, so it is Python: the package's
//! `_aio` module (`python/shmhub/_aio.py`). A host or guest keeps the
//! `_aio.Waiter` it made at its first `recv_async` (its own descriptor,
//! and the deaths a drain found that no call has reported yet) in an
//! [`AsyncSlot`], which closes it with the host or guest.
//!
//! The descriptor exists on Linux only (eventfd, epoll, pidfds); elsewhere
//! `readiness()` and `recv_async()` raise `shmhub.Invalid`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, intern};
use shmhub::PeerId;

use crate::errors::to_py;
use crate::wait::{Failed, Owner};

pub(crate) use platform::{LibReadiness, of_guest, of_host};

/// Where the library has the descriptor: its own.
#[cfg(all(target_os = "linux", not(shmhub_portable)))]
mod platform {
    use shmhub::{Party, Receiver, Result, ShmHost};

    use super::Ended;

    pub(crate) use shmhub::Readiness as LibReadiness;

    /// The host's descriptor.
    pub(crate) fn of_host(host: &ShmHost) -> Result<LibReadiness> {
        host.readiness()
    }

    /// A guest's descriptor, on its receiving end.
    pub(crate) fn of_guest(rx: &Receiver) -> Result<LibReadiness> {
        rx.readiness()
    }

    /// Drains `ready`, with the processes it reports ended as [`Ended`]s.
    pub(crate) fn drain(ready: &LibReadiness) -> Result<Vec<Ended>> {
        let ended = ready.drain()?.into_iter().map(|ended| {
            let peer_id = match ended.party {
                Party::Guest(p) => Some(p),
                _ => None,
            };
            Ended {
                peer_id,
                pid: ended.pid,
                goodbye: ended.goodbye,
            }
        });
        Ok(ended.collect())
    }
}

/// Where the library has no descriptor (macOS, the portable build): none
/// is ever made, and asking for one is `shmhub.Invalid`.
#[cfg(not(all(target_os = "linux", not(shmhub_portable))))]
mod platform {
    use std::os::fd::{AsRawFd, RawFd};

    use shmhub::{Error, Receiver, Result, ShmHost};

    use super::Ended;

    /// A descriptor that cannot exist.
    #[derive(Debug)]
    pub(crate) enum LibReadiness {}

    const UNSUPPORTED: Error = Error::Unsupported {
        what: "readiness descriptors need Linux (eventfd, epoll and pidfds)",
    };

    /// The host's descriptor.
    pub(crate) fn of_host(_host: &ShmHost) -> Result<LibReadiness> {
        Err(UNSUPPORTED)
    }

    /// A guest's descriptor, on its receiving end.
    pub(crate) fn of_guest(_rx: &Receiver) -> Result<LibReadiness> {
        Err(UNSUPPORTED)
    }

    pub(crate) fn drain(ready: &LibReadiness) -> Result<Vec<Ended>> {
        match *ready {}
    }

    impl AsRawFd for LibReadiness {
        fn as_raw_fd(&self) -> RawFd {
            match *self {}
        }
    }

    /// Dropped where the library's is dropped (with the GIL released, as
    /// it joins a thread), though there is never one.
    impl Drop for LibReadiness {
        fn drop(&mut self) {
            match *self {}
        }
    }
}

/// A file descriptor that becomes readable when its host or guest has
/// something to do: a message to receive, or a process on the other side
/// (a guest's, for a host; the host's, for a guest) that ended. Made by
/// :meth:`Host.readiness` and :meth:`Guest.readiness`.
///
/// It is level-triggered: once readable it stays readable until
/// :meth:`drain` is called, and after a drain it is readable again at once
/// if something is still queued. The way to use it, in any event loop
/// (``loop.add_reader(ready, callback)``, ``select``, ``selectors``):
///
/// 1. wait until it is readable;
/// 2. call :meth:`drain` once (it returns the processes that ended);
/// 3. receive with ``try_recv()`` until it returns None.
///
/// Draining before receiving loses no message: one that comes after the
/// drain makes the descriptor readable again.
///
/// A small thread of this process watches the segment for it. Close it
/// with :meth:`close` or a ``with`` block (garbage collection closes it
/// too). It keeps the segment mapped, not the host's file: closing the
/// host deletes the file even while a descriptor is open. In a child
/// process forked from its maker it is closed.
#[pyclass(module = "shmhub", frozen)]
pub(crate) struct Readiness {
    /// `None` once closed.
    inner: Mutex<Option<LibReadiness>>,
    /// The process that made it: in a child it forked, the waker thread
    /// does not exist, so the descriptor is forgotten, not dropped.
    owner: Owner,
    path: PathBuf,
    /// Whose descriptor: the host's (`None`) or a guest's.
    peer_id: Option<PeerId>,
}

impl Readiness {
    /// Wraps `inner`, the descriptor of the host (`peer_id` None) or of
    /// guest `peer_id` on the segment at `path`.
    pub(crate) fn new(inner: LibReadiness, path: &Path, peer_id: Option<PeerId>) -> Self {
        Readiness {
            inner: Mutex::new(Some(inner)),
            owner: Owner::this_process(),
            path: path.to_path_buf(),
            peer_id,
        }
    }

    /// Runs `call` on the open descriptor with the GIL released.
    fn with_open<T: Send>(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&LibReadiness) -> shmhub::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| match self.owner.lock(&self.inner)?.as_ref() {
            Some(ready) => call(ready).map_err(Failed::Lib),
            None => Err(Failed::Closed),
        })
        .map_err(|failed| match failed {
            Failed::Lib(e) => to_py(py, &self.path, e),
            Failed::Forked(owner) => {
                PyValueError::new_err(Owner::forked_message("readiness descriptor", owner))
            }
            Failed::Closed => PyValueError::new_err("the readiness descriptor is closed"),
            Failed::Py(e) => e,
        })
    }
}

#[pymethods]
impl Readiness {
    /// The descriptor's number, for ``select``, ``selectors`` and
    /// ``loop.add_reader`` (which also take the object itself).
    ///
    /// Raises:
    ///     ValueError: it is closed.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        self.with_open(py, |ready| Ok(ready.as_raw_fd()))
    }

    /// Makes the descriptor unreadable until the next message (at once if
    /// one is queued) and returns the processes on the other side that
    /// ended since the last drain, each reported once, as
    /// :class:`Ended` objects. Call it once each time the descriptor is
    /// readable, before receiving.
    ///
    /// Raises:
    ///     ValueError: it is closed.
    ///     shmhub.FileError: a system call on the descriptor failed.
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<Ended>> {
        self.with_open(py, platform::drain)
    }

    /// Whether :meth:`close` has run; True in a forked child.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.owner.lock(&self.inner).map_or(true, |r| r.is_none()))
    }

    /// Closes the descriptor and stops the thread that watched for it.
    /// Take it out of any event loop first (``loop.remove_reader``), as
    /// for a socket. Closing again, or in a forked child, does nothing.
    fn close(&self, py: Python<'_>) {
        let ready = py.detach(|| self.owner.lock(&self.inner).ok().and_then(|mut r| r.take()));
        // Joins the watching thread, which never takes the GIL.
        py.detach(move || drop(ready));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let whose = match self.peer_id {
            None => "host".to_string(),
            Some(p) => format!("guest {p}"),
        };
        let state = match self.fileno(py) {
            Ok(fd) => format!("fd {fd}"),
            Err(_) => "closed".to_string(),
        };
        format!(
            "<shmhub.Readiness of {whose} {:?} {state}>",
            self.path.display().to_string()
        )
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.owner.forget_in_child(&mut self.inner);
    }
}

/// A party on the other side that is gone, as :meth:`Readiness.drain`
/// reports it: its process ended, or the host said goodbye.
///
/// Attributes:
///     peer_id: the guest whose process it was, or None for the host.
///     pid: its process id.
///     goodbye: True for a host that said goodbye (its process may still
///         run), False for a process that ended.
#[pyclass(module = "shmhub", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Ended {
    peer_id: Option<PeerId>,
    #[pyo3(get)]
    pid: u32,
    #[pyo3(get)]
    goodbye: bool,
}

impl Ended {
    /// What a receive raises once this process is found ended with nothing
    /// of it left to read: as the library's async receive, a guest's death
    /// (`PeerDied`, raised as `shmhub.PeerGone`) or the host's (`HostDied`,
    /// `shmhub.HostGone`).
    pub(crate) fn error(&self, py: Python<'_>, path: &Path) -> PyErr {
        let e = match self.peer_id {
            Some(peer_id) => shmhub::Error::PeerDied {
                peer_id,
                pid: self.pid,
            },
            None if self.goodbye => shmhub::Error::HostGone,
            None => shmhub::Error::HostDied { pid: self.pid },
        };
        to_py(py, path, e)
    }
}

#[pymethods]
impl Ended {
    #[getter]
    fn peer_id(&self) -> Option<u8> {
        self.peer_id.map(PeerId::get)
    }

    fn __repr__(&self) -> String {
        let peer_id = self.peer_id.map_or("None".to_string(), |p| p.to_string());
        format!(
            "Ended(peer_id={peer_id}, pid={}, goodbye={})",
            self.pid,
            if self.goodbye { "True" } else { "False" }
        )
    }
}

/// A host's or guest's `_aio.Waiter`, made at its first `recv_async`;
/// empty again once the host is closed or the guest detached.
///
/// The lock is only taken with the GIL held and never across a call into
/// Python, so that no thread waits for it while another waits for the GIL.
#[derive(Default)]
pub(crate) struct AsyncSlot(Mutex<Option<Py<PyAny>>>);

/// The `_aio` module's `Waiter` class and `recv` coroutine function.
static AIO: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn aio(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    AIO.get_or_try_init(py, || {
        let module = py.import("shmhub._aio")?;
        Ok((
            module.getattr("Waiter")?.unbind(),
            module.getattr("recv")?.unbind(),
        ))
    })
}

impl AsyncSlot {
    /// `_aio.recv(endpoint, waiter)`: the coroutine of a `recv_async` on
    /// `endpoint`, its waiter made with a descriptor from `make` at the
    /// first call.
    pub(crate) fn recv<'py>(
        &self,
        endpoint: &Bound<'py, PyAny>,
        make: impl FnOnce() -> PyResult<Readiness>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = endpoint.py();
        let (waiter_class, recv) = aio(py)?;
        let waiter = match self.get(py) {
            Some(waiter) => waiter,
            None => {
                // Made without the lock (it calls into Python); another
                // thread that made one meanwhile wins, and this one closes.
                let made = waiter_class.call1(py, (make()?,))?;
                let mut slot = self.lock();
                match &*slot {
                    Some(theirs) => {
                        let theirs = theirs.clone_ref(py);
                        drop(slot);
                        made.call_method0(py, intern!(py, "close"))?;
                        theirs
                    }
                    None => {
                        *slot = Some(made.clone_ref(py));
                        made
                    }
                }
            }
        };
        recv.bind(py).call1((endpoint, waiter))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.lock().as_ref().map(|waiter| waiter.clone_ref(py))
    }

    /// Closes the waiter, if one was made: its descriptor is closed and
    /// the tasks awaiting it wake up to find their host or guest closed.
    pub(crate) fn close(&self, py: Python<'_>) {
        let Some(waiter) = self.lock().take() else {
            return;
        };
        if let Err(e) = waiter.call_method0(py, intern!(py, "close")) {
            // Raised in a close, which itself cannot fail: as a destructor's.
            e.write_unraisable(py, Some(waiter.bind(py)));
        }
    }

    /// For the garbage collector: the waiter can be part of a cycle (a
    /// task awaiting it holds the host or guest that holds it).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // Never blocks: a slot locked now is skipped, not waited for.
        if let Ok(slot) = self.0.try_lock() {
            visit.call(&*slot)?;
        }
        Ok(())
    }

    /// Breaks such a cycle (the garbage collector's `tp_clear`).
    pub(crate) fn clear(&self) {
        if let Ok(mut slot) = self.0.try_lock() {
            drop(slot.take());
        }
    }
}
