//! Bytes across the boundary: a payload borrowed from any bytes-like
//! object on the way in, copied into a new `bytes` on the way out.
//!
//! The buffer protocol is part of the stable ABI only from Python 3.11,
//! and this module is built for the stable ABI of 3.9 (`abi3-py39`), so
//! pyo3 leaves it out. Its three entry points have been exported by every
//! CPython 3 on the platforms the library supports (Linux, macOS), with
//! the same `Py_buffer` layout since 3.3 (3.11 made it stable because it
//! had not changed): they are declared here, as 3.11 declares them.

use std::ffi::{c_char, c_int, c_void};
use std::mem::MaybeUninit;

use pyo3::ffi::{self, Py_ssize_t, PyObject};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// `Py_buffer` as CPython 3.3 and later lay it out.
#[repr(C)]
pub(crate) struct PyBuffer {
    pub(crate) buf: *mut c_void,
    pub(crate) obj: *mut PyObject,
    pub(crate) len: Py_ssize_t,
    itemsize: Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut Py_ssize_t,
    strides: *mut Py_ssize_t,
    suboffsets: *mut Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_SIMPLE`: a contiguous run of bytes, read-only is fine.
const PYBUF_SIMPLE: c_int = 0;

// SAFETY: these are CPython's own declarations (Include/pybuffer.h of
// 3.11, where they joined the stable ABI; the same functions since 3.0),
// resolved against the interpreter that loads the module.
unsafe extern "C" {
    fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut PyBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut PyBuffer);
    pub(crate) fn PyBuffer_FillInfo(
        view: *mut PyBuffer,
        obj: *mut PyObject,
        buf: *mut c_void,
        len: Py_ssize_t,
        readonly: c_int,
        flags: c_int,
    ) -> c_int;
}

/// Calls `use_bytes` with the bytes of `data`, any object with the buffer
/// protocol (bytes, bytearray, memoryview, array, a numpy array...),
/// borrowed where they lie: no copy.
///
/// Raises `TypeError` for an object that is not bytes-like, and
/// `BufferError` for one whose bytes are not contiguous.
pub(crate) fn with_bytes<R>(
    data: &Bound<'_, PyAny>,
    use_bytes: impl FnOnce(&[u8]) -> R,
) -> PyResult<R> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(use_bytes(bytes.as_bytes()));
    }
    let mut view = MaybeUninit::<PyBuffer>::zeroed();
    // SAFETY: `data` is a live object and the GIL is held (its `Bound`
    // says so); `view` is writable memory of the layout CPython fills.
    if unsafe { PyObject_GetBuffer(data.as_ptr(), view.as_mut_ptr(), PYBUF_SIMPLE) } != 0 {
        return Err(PyErr::fetch(data.py()));
    }
    let mut held = Held {
        // SAFETY: a successful `PyObject_GetBuffer` filled it in.
        view: unsafe { view.assume_init() },
        _py: data.py(),
    };
    Ok(use_bytes(held.bytes()))
}

/// A buffer exported to this module, released when dropped (the GIL is
/// held for as long as it lives: it keeps the `Python` token).
struct Held<'py> {
    view: PyBuffer,
    _py: Python<'py>,
}

impl Held<'_> {
    fn bytes(&mut self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a `PyBUF_SIMPLE` export is `len` contiguous bytes at
        // `buf`, which stay there (the exporter may not free or resize
        // them) until `PyBuffer_Release`, which only `drop` calls; the
        // slice borrows `self`, so it cannot outlive that. Another thread
        // writing them meanwhile (a bytearray changed while it is sent)
        // races with the copy into the segment, as with any C extension
        // that reads a buffer with the GIL released: the message may hold
        // a mix, and nothing else is read through those bytes.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled by `PyObject_GetBuffer`, is released
        // once, here, and the GIL is held (`_py`).
        unsafe { PyBuffer_Release(&mut self.view) };
    }
}

/// Payloads at least this long are copied out with the GIL released; a
/// shorter copy takes less time than releasing and taking it back.
const RELEASE_GIL_FROM: usize = 64 * 1024;

/// A new `bytes` holding a copy of `payload`.
pub(crate) fn to_bytes<'py>(py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if payload.len() < RELEASE_GIL_FROM {
        return Ok(PyBytes::new(py, payload));
    }
    let len = Py_ssize_t::try_from(payload.len())?;
    // SAFETY: with a null source, `PyBytes_FromStringAndSize` allocates
    // `len` bytes left to the caller to fill; the GIL is held.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len) };
    // SAFETY: a new reference, or null with an exception set.
    let bytes = unsafe { Bound::from_owned_ptr_or_err(py, raw)? }.cast_into::<PyBytes>()?;
    // SAFETY: the object is a new `bytes` of `len` bytes that nothing else
    // can see yet, so this is the only access to its contents.
    let dest = unsafe {
        std::slice::from_raw_parts_mut(
            ffi::PyBytes_AsString(bytes.as_ptr()).cast::<u8>(),
            payload.len(),
        )
    };
    py.detach(|| dest.copy_from_slice(payload));
    Ok(bytes)
}
