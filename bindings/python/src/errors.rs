//! The `shmhub.Error` hierarchy, and the library's errors raised as its
//! exceptions.
//!
//! The classes are made at import with `type(name, bases, namespace)`
//! rather than `pyo3::create_exception!`, which allows one base only: a
//! time-out is both a `shmhub.Error` and the built-in `TimeoutError`, a
//! payload too large both a `shmhub.Error` and a `ValueError`.

use std::path::Path;

use pyo3::exceptions::{PyException, PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use shmhub::{Error, ErrorKind, QuarantineReason};

/// Every class of the hierarchy, made once per interpreter.
pub(crate) struct Classes {
    error: Py<PyType>,
    timed_out: Py<PyType>,
    full: Py<PyType>,
    gone: Py<PyType>,
    host_gone: Py<PyType>,
    peer_gone: Py<PyType>,
    cut_off: Py<PyType>,
    busy: Py<PyType>,
    corrupt: Py<PyType>,
    file_error: Py<PyType>,
    invalid: Py<PyType>,
    too_large: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

const ERROR_DOC: &str = "Base class of every error shmhub raises about a segment.

Attributes:
    kind: what a caller can do about it: \"retry\" (the same call may
        succeed later), \"busy\" (someone else holds what it needs),
        \"gone\" (the other side left or died), \"cut_off\" (a guest
        broke the protocol or was evicted), \"corrupt\" (the segment
        breaks the protocol), \"io\" (the file itself), \"invalid\" (the
        call's own arguments).
    path: the segment file the call was working on, or None.

``str(error)`` is the line the ``shmhub`` command prints after
``error: ``: the segment's path, then the cause.";

const TIMED_OUT_DOC: &str = "A wait ran out of time: nothing came within a receive's
timeout, or a role another process holds was not let go in time. Also a
built-in TimeoutError.";

const FULL_DOC: &str = "A send found no room within its timeout: the ring was full, the
sender's slot pool had no free slot, or the receiving guest held its share
of the host's slots. Nothing was sent. A TimedOut, so a TimeoutError.";

const GONE_DOC: &str = "The other side has left the segment or died.";

const HOST_GONE_DOC: &str = "The host said goodbye, or its process died without saying it, and
nothing it sent is left to read.";

const PEER_GONE_DOC: &str = "The guest left or died, or this guest's own entry was reclaimed.

Attributes:
    peer_id: the guest.";

const CUT_OFF_DOC: &str = "The host cut a guest off: it broke the protocol in its own part of
the segment (its entry, its ring, a descriptor it sent), or the host
evicted it (Host.evict). The segment and every other guest go on; that
guest is gone for good. A host's receive from any guest raises this once
for a guest it cuts off, then serves the others; every later call to or
from that guest raises it again.

Attributes:
    peer_id: the guest cut off.
    reason: \"entry\", \"ring\", \"descriptor\" or \"evicted\".";

const BUSY_DOC: &str = "Someone else has what the call needs: another process holds the
role or the entry, every entry is taken, or the entry is in another
state. Retrying helps only once they let go.";

const CORRUPT_DOC: &str = "The file is not a segment this build can use, or what it holds
breaks the protocol. Nothing was read through the bad value.";

const FILE_ERROR_DOC: &str = "The file itself: a system call failed (``errno`` set), the path is
a symbolic link, not a regular file or another user's, or the file changed
under the mapping. Also a built-in OSError.";

const INVALID_DOC: &str = "The call's own arguments cannot work: a configuration that cannot
be laid out, a peer id out of range. Also a built-in ValueError.";

const TOO_LARGE_DOC: &str = "The payload is larger than the segment's max payload. Nothing was
sent.

Attributes:
    size: the payload's length in bytes.
    max_payload: the segment's limit.";

impl Classes {
    /// The classes, made at the first call.
    pub(crate) fn get(py: Python<'_>) -> PyResult<&Classes> {
        CLASSES.get_or_try_init(py, || Classes::make(py))
    }

    fn make(py: Python<'_>) -> PyResult<Classes> {
        let exception = py.get_type::<PyException>();
        let error = make_class(py, "Error", &[&exception], ERROR_DOC)?;
        let timed_out = make_class(
            py,
            "TimedOut",
            &[&error, &py.get_type::<PyTimeoutError>()],
            TIMED_OUT_DOC,
        )?;
        let full = make_class(py, "Full", &[&timed_out], FULL_DOC)?;
        let gone = make_class(py, "Gone", &[&error], GONE_DOC)?;
        let invalid = make_class(
            py,
            "Invalid",
            &[&error, &py.get_type::<PyValueError>()],
            INVALID_DOC,
        )?;
        Ok(Classes {
            host_gone: make_class(py, "HostGone", &[&gone], HOST_GONE_DOC)?.unbind(),
            peer_gone: make_class(py, "PeerGone", &[&gone], PEER_GONE_DOC)?.unbind(),
            cut_off: make_class(py, "CutOff", &[&gone], CUT_OFF_DOC)?.unbind(),
            busy: make_class(py, "Busy", &[&error], BUSY_DOC)?.unbind(),
            corrupt: make_class(py, "Corrupt", &[&error], CORRUPT_DOC)?.unbind(),
            file_error: make_class(
                py,
                "FileError",
                &[&error, &py.get_type::<PyOSError>()],
                FILE_ERROR_DOC,
            )?
            .unbind(),
            too_large: make_class(py, "TooLarge", &[&invalid], TOO_LARGE_DOC)?.unbind(),
            error: error.unbind(),
            timed_out: timed_out.unbind(),
            full: full.unbind(),
            gone: gone.unbind(),
            invalid: invalid.unbind(),
        })
    }

    /// Every class, to add to the module.
    pub(crate) fn all(&self) -> [&Py<PyType>; 12] {
        [
            &self.error,
            &self.timed_out,
            &self.full,
            &self.gone,
            &self.host_gone,
            &self.peer_gone,
            &self.cut_off,
            &self.busy,
            &self.corrupt,
            &self.file_error,
            &self.invalid,
            &self.too_large,
        ]
    }

    /// The class a library error is raised as.
    fn of(&self, e: &Error) -> &Py<PyType> {
        match e {
            Error::RingFull { .. } | Error::PoolExhausted { .. } | Error::ShareExhausted { .. } => {
                &self.full
            }
            Error::HostGone | Error::HostDied { .. } => &self.host_gone,
            Error::PeerGone { .. } | Error::PeerDied { .. } => &self.peer_gone,
            Error::PayloadTooLarge { .. } => &self.too_large,
            e => match e.kind() {
                ErrorKind::Retry => &self.timed_out,
                ErrorKind::Busy => &self.busy,
                ErrorKind::Gone => &self.gone,
                ErrorKind::CutOff => &self.cut_off,
                ErrorKind::Corrupt => &self.corrupt,
                ErrorKind::Io => &self.file_error,
                ErrorKind::Invalid => &self.invalid,
                _ => &self.error,
            },
        }
    }
}

/// `type(name, bases, {"__doc__": doc, "__module__": "shmhub"})`.
fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    bases: &[&Bound<'py, PyType>],
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__doc__", doc)?;
    namespace.set_item("__module__", "shmhub")?;
    let bases = PyTuple::new(py, bases)?;
    Ok(py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?)
}

/// The line the command prints for `e` on the segment at `path`, after
/// `error: `: the path, then the library's message (which names the file
/// itself for the errors that are about it).
pub(crate) fn message(path: &Path, e: &Error) -> String {
    match e {
        // Arguments, not the file: the command refuses these before it
        // touches a segment, naming the argument.
        Error::Layout(_) => e.to_string(),
        e if e.path().is_some() => e.to_string(),
        e => format!("{}: {e}", path.display()),
    }
}

/// `e`, on the segment at `path`, as the exception of its class.
pub(crate) fn to_py(py: Python<'_>, path: &Path, e: Error) -> PyErr {
    let raised = Classes::get(py).and_then(|classes| raise(py, classes.of(&e), e.kind(), path, &e));
    raised.unwrap_or_else(|err| err)
}

/// `e` as a `TimedOut` (kind "retry") if it is a role another process
/// still held when the whole timeout had been waited out, which the
/// command also reports as timed out; as [`to_py`] otherwise.
pub(crate) fn timed_out(py: Python<'_>, path: &Path, e: Error) -> PyErr {
    if !matches!(e, Error::Busy { .. }) {
        return to_py(py, path, e);
    }
    let raised = Classes::get(py)
        .and_then(|classes| raise(py, &classes.timed_out, ErrorKind::Retry, path, &e));
    raised.unwrap_or_else(|err| err)
}

/// An instance of `class` for `e`, with its attributes.
fn raise(
    py: Python<'_>,
    class: &Py<PyType>,
    kind: ErrorKind,
    path: &Path,
    e: &Error,
) -> PyResult<PyErr> {
    let error = class.bind(py).call1((message(path, e),))?;
    error.setattr("kind", kind_name(kind))?;
    error.setattr("path", e.path().unwrap_or(path).as_os_str())?;
    match e {
        Error::PeerGone { peer_id } => error.setattr("peer_id", peer_id.get())?,
        Error::PeerDied { peer_id, pid } => {
            error.setattr("peer_id", peer_id.get())?;
            error.setattr("pid", pid)?;
        }
        Error::Quarantined {
            peer_id, reason, ..
        } => {
            error.setattr("peer_id", peer_id.get())?;
            error.setattr("reason", reason_name(*reason))?;
        }
        Error::PayloadTooLarge { len, max } => {
            error.setattr("size", len)?;
            error.setattr("max_payload", max)?;
        }
        Error::Io { cause, .. } => {
            if let Some(errno) = cause.raw_os_error() {
                error.setattr("errno", errno)?;
            }
        }
        Error::AlreadyExists { .. } => error.setattr("errno", libc::EEXIST)?,
        _ => {}
    }
    Ok(PyErr::from_value(error))
}

/// An [`Invalid`](Classes::invalid) with `message`, for an argument the
/// library's types cannot even hold (a peer id past 255, a negative size).
pub(crate) fn invalid(py: Python<'_>, path: Option<&Path>, message: String) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let error = Classes::get(py)?.invalid.bind(py).call1((message,))?;
        error.setattr("kind", "invalid")?;
        error.setattr("path", path.map(Path::as_os_str))?;
        Ok(PyErr::from_value(error))
    };
    make().unwrap_or_else(|err| err)
}

/// The name of a kind, as `Error.kind` gives it.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Retry => "retry",
        ErrorKind::Busy => "busy",
        ErrorKind::Gone => "gone",
        ErrorKind::CutOff => "cut_off",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Io => "io",
        ErrorKind::Invalid => "invalid",
        _ => "other",
    }
}

/// The name of why a guest was cut off, as `CutOff.reason` gives it.
fn reason_name(reason: QuarantineReason) -> &'static str {
    match reason {
        QuarantineReason::Entry => "entry",
        QuarantineReason::Ring => "ring",
        QuarantineReason::Descriptor => "descriptor",
        QuarantineReason::Evicted => "evicted",
        _ => "other",
    }
}
