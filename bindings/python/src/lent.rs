//! Zero-copy receives: a message's payload lent as a read-only
//! `memoryview` of the slot it lies in, the slot freed when the last view
//! of it is released.
//!
//! The view's owner is a small object of a type made here by hand
//! (`PyType_FromSpec`) with the buffer slot, which pyo3 leaves out of
//! classes built for the stable ABI of 3.9 (see `buffer.rs`). It holds the
//! library's [`Received`]: every memoryview made from it (and every slice,
//! cast or numpy array made from those) keeps it alive, and when the last
//! goes, its deallocation drops the [`Received`], which frees the slot. A
//! `with` block around the view releases it at the block's end, and with
//! it the slot, unless a view made from it is still alive.

use std::ffi::{c_int, c_void};
use std::ptr;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi::{self, Py_ssize_t, PyObject};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyMemoryView, PyType};
use shmhub::Received;

use crate::buffer::{PyBuffer, PyBuffer_FillInfo};
use crate::wait::Owner;

/// The instance layout of the owner type.
#[repr(C)]
struct LentObject {
    ob_base: PyObject,
    /// The message, boxed; null in an instance made from Python
    /// (`type(view.obj)()`), which lends nothing.
    received: *mut Received,
    /// The process that received it; in a child it forked, the message is
    /// forgotten rather than dropped (see `Owner`).
    owner: Owner,
}

static LENT_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

const LENT_DOC: &std::ffi::CStr = c"The owner of a payload lent in place by recv_view(): it frees the message's slot when the last view of it is released.";

/// The owner type, made at the first zero-copy receive.
fn lent_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    let ty = LENT_TYPE.get_or_try_init(py, || {
        let mut slots = [
            slot(ffi::Py_bf_getbuffer, get_buffer as *mut c_void),
            slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
            slot(ffi::Py_tp_doc, LENT_DOC.as_ptr() as *mut c_void),
            slot(0, ptr::null_mut()),
        ];
        let mut spec = ffi::PyType_Spec {
            name: c"shmhub.Lent".as_ptr(),
            basicsize: c_int::try_from(size_of::<LentObject>())?,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT as _,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: the spec and its slots are valid for the call (CPython
        // copies what it keeps; the name and doc are 'static); the GIL is
        // held.
        let raw = unsafe { ffi::PyType_FromSpec(&mut spec) };
        // SAFETY: a new reference, or null with an exception set.
        let ty = unsafe { Bound::from_owned_ptr_or_err(py, raw)? };
        Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
    })?;
    Ok(ty.bind(py))
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// `received`'s payload as a read-only memoryview (format `B`); the slot
/// is freed when the last view of it is released.
///
/// A payload carried inline in the descriptor (32 bytes at most) is
/// copied into a `bytes`, which costs less than a lent view.
pub(crate) fn lend<'py>(py: Python<'py>, received: Received) -> PyResult<Bound<'py, PyMemoryView>> {
    if !received.desc().is_slot() {
        return PyMemoryView::from(&PyBytes::new(py, received.payload()));
    }
    let owner = lent_type(py)?.call0()?;
    let this = owner.as_ptr().cast::<LentObject>();
    // SAFETY: `owner` is a fresh instance of the owner type, laid out as
    // `LentObject` (its basicsize), zeroed by the allocator; nothing else
    // refers to it yet.
    unsafe {
        (*this).received = Box::into_raw(Box::new(received));
        (*this).owner = Owner::this_process();
    }
    PyMemoryView::from(&owner)
}

/// `bf_getbuffer`: the payload, read-only.
unsafe extern "C" fn get_buffer(obj: *mut PyObject, view: *mut PyBuffer, flags: c_int) -> c_int {
    // SAFETY: CPython calls this with the GIL held on an instance of the
    // owner type, laid out as `LentObject`.
    let received = unsafe { (*obj.cast::<LentObject>()).received };
    if received.is_null() {
        Python::attach(|py| PyBufferError::new_err("this object lends no payload").restore(py));
        // SAFETY: `view` is the caller's; on failure its `obj` must be null.
        unsafe { (*view).obj = ptr::null_mut() };
        return -1;
    }
    // SAFETY: `received` was boxed by `lend` and is freed only by
    // `dealloc`, which cannot run while this export holds a reference to
    // `obj` (`PyBuffer_FillInfo` takes one). Its payload lies in the
    // segment's mapping, which the `Received` keeps mapped, and the slot
    // is this receiver's until the `Received` drops.
    let payload = unsafe { (*received).payload() };
    let len = payload.len() as Py_ssize_t;
    // SAFETY: as above; read-only (1): a request for a writable buffer is
    // refused with BufferError by `PyBuffer_FillInfo`.
    unsafe { PyBuffer_FillInfo(view, obj, payload.as_ptr().cast_mut().cast(), len, 1, flags) }
}

/// `tp_dealloc`: drops the message (freeing its slot), then the object.
/// In a forked child, the message is forgotten: its slot is still lent to
/// the parent, which reads it and frees it.
unsafe extern "C" fn dealloc(obj: *mut PyObject) {
    // SAFETY: CPython calls this once, with the GIL held, when the last
    // reference (and so the last export) is gone; the box came from `lend`.
    unsafe {
        let this = obj.cast::<LentObject>();
        let received = std::mem::replace(&mut (*this).received, ptr::null_mut());
        if !received.is_null() {
            let received = Box::from_raw(received);
            if (*this).owner.is_this_process() {
                drop(received);
            } else {
                std::mem::forget(received);
            }
        }
        let ty = ffi::Py_TYPE(obj);
        let free = ffi::PyType_GetSlot(ty, ffi::Py_tp_free);
        let free: ffi::freefunc = std::mem::transmute(free);
        free(obj.cast());
        // Instances of a heap type hold a reference to it.
        ffi::Py_DECREF(ty.cast());
    }
}
