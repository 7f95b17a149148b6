//! What a C handle points to: a host's or a guest's state, used by one
//! call at a time. A call that overlaps another on the same handle is
//! refused (`SHMHUB_ERR_BUSY`) rather than let two threads change the
//! state at once.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Failure;
use crate::{SHMHUB_ERR_BUSY, SHMHUB_ERR_INTERNAL, SHMHUB_ERR_INVALID};

/// State `T` behind a flag that admits one call at a time.
#[derive(Debug)]
pub(crate) struct Handle<T> {
    in_call: AtomicBool,
    /// Set when a panic struck a call: the state may be half changed.
    broken: AtomicBool,
    state: UnsafeCell<T>,
}

// SAFETY: the state is reached only through `with`, which lets one call at
// a time have it (the `in_call` flag, taken with acquire and released with
// release ordering, as a lock is), so sharing a handle between threads
// moves the state between them, which `T: Send` allows.
unsafe impl<T: Send> Sync for Handle<T> {}

/// Releases the `in_call` flag when a call ends, marking the handle broken
/// if it ends in a panic.
struct InCall<'a, T>(&'a Handle<T>);

impl<T> Drop for InCall<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Relaxed);
        }
        self.0.in_call.store(false, Ordering::Release);
    }
}

impl<T> Handle<T> {
    /// A handle on `state`.
    pub(crate) fn new(state: T) -> Self {
        Handle {
            in_call: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            state: UnsafeCell::new(state),
        }
    }

    /// The state, the handle gone.
    pub(crate) fn into_state(self) -> T {
        self.state.into_inner()
    }

    /// Runs `f` on the state, unless another call is inside this handle or
    /// a panic broke it.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(Failure::new(
                SHMHUB_ERR_INTERNAL,
                "this handle is unusable after an internal error; destroy it",
            ));
        }
        if self
            .in_call
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Failure::new(
                SHMHUB_ERR_BUSY,
                "the handle is in use by another thread: calls on one handle must not overlap",
            ));
        }
        let _in_call = InCall(self);
        // SAFETY: this call holds the `in_call` flag, so no other call has a
        // reference to the state until `_in_call` drops after `f` returns.
        let state = unsafe { &mut *self.state.get() };
        f(state)
    }
}

/// A C handle type: a struct C sees as opaque around a [`Handle`].
pub(crate) trait Wrapper {
    /// What the handle holds.
    type State;
    /// The handle.
    fn handle(&self) -> &Handle<Self::State>;
}

/// Takes the handle `ptr` back from C to drop it; `None` for NULL, and an
/// error (the handle leaked instead) while another thread is inside a call
/// on it, which freeing it would pull the memory from under.
///
/// # Safety
///
/// `ptr` is NULL or was made by `Box::into_raw`, and is not used again by
/// the caller.
pub(crate) unsafe fn take_back<W: Wrapper>(ptr: *mut W) -> Result<Option<Box<W>>, Failure> {
    // SAFETY: by the contract above, a non-NULL `ptr` is a live handle made
    // by `Box::into_raw`; a shared reference only reads its flag.
    let Some(wrapper) = (unsafe { ptr.as_ref() }) else {
        return Ok(None);
    };
    if wrapper.handle().in_call.swap(true, Ordering::Acquire) {
        return Err(Failure::new(
            SHMHUB_ERR_BUSY,
            "the handle is in use by another thread: it was left allocated, not freed under that call",
        ));
    }
    // SAFETY: made by `Box::into_raw`, not used again by the caller, and no
    // call is inside it (the flag is now held for good).
    Ok(Some(unsafe { Box::from_raw(ptr) }))
}

/// The handle behind the C pointer `ptr`, or `SHMHUB_ERR_INVALID` for
/// NULL (`what` names the argument).
///
/// # Safety
///
/// `ptr` is NULL or a live handle made by `Box::into_raw` (not yet taken
/// back).
pub(crate) unsafe fn handle<'a, W: Wrapper + 'a>(
    ptr: *const W,
    what: &str,
) -> Result<&'a Handle<W::State>, Failure> {
    // SAFETY: by the contract above, a non-NULL `ptr` is a live handle;
    // calls on it share it only through `Handle::with`.
    let wrapper = unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))?;
    Ok(wrapper.handle())
}

/// Whether `timeout_ms` is a timeout a C caller may give: -1, 0 or more.
pub(crate) fn timeout(timeout_ms: i64) -> Result<shmhub::Timeout, Failure> {
    match timeout_ms {
        -1 => Ok(shmhub::Timeout::Never),
        0 => Ok(shmhub::Timeout::NoWait),
        ms if ms > 0 => Ok(shmhub::Timeout::After(std::time::Duration::from_millis(
            ms as u64,
        ))),
        ms => Err(Failure::new(
            SHMHUB_ERR_INVALID,
            format!(
                "timeout_ms is {ms}: -1 waits as long as it takes, 0 never waits, more waits that many milliseconds"
            ),
        )),
    }
}

/// The `len` bytes at `data` (NULL allowed for none).
///
/// # Safety
///
/// A non-NULL `data` points to `len` readable, initialized bytes that
/// nothing writes during the call.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::null("data (with a len above 0)"));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            SHMHUB_ERR_INVALID,
            format!("len {len} is larger than any buffer"),
        ));
    }
    // SAFETY: non-NULL, `len` bytes readable and unchanged during the call
    // (the contract above), and `len` at most isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The path in the C string `path`.
///
/// # Safety
///
/// A non-NULL `path` points to a NUL-terminated string.
pub(crate) unsafe fn path<'a>(
    path: *const std::ffi::c_char,
) -> Result<&'a std::path::Path, Failure> {
    use std::os::unix::ffi::OsStrExt;
    if path.is_null() {
        return Err(Failure::null("path"));
    }
    // SAFETY: non-NULL and NUL-terminated (the contract above).
    let bytes = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::new(SHMHUB_ERR_INVALID, "path is empty"));
    }
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)))
}

/// Where a receive puts a message: a buffer, or nowhere (asking the next
/// message's length).
pub(crate) enum Dest {
    /// A NULL buffer with a `cap` of 0: the length, the message kept.
    Ask,
    /// `cap` writable bytes at `ptr`.
    Buffer { ptr: *mut u8, cap: usize },
}

impl Dest {
    /// The receive buffer `buf` of `cap` bytes.
    pub(crate) fn new(buf: *mut u8, cap: usize) -> Result<Self, Failure> {
        match (buf.is_null(), cap) {
            (true, 0) => Ok(Dest::Ask),
            (true, _) => Err(Failure::null("buf (with a cap above 0)")),
            (false, cap) => Ok(Dest::Buffer { ptr: buf, cap }),
        }
    }

    /// Copies `payload` into the buffer; `false` (nothing written) if it
    /// does not fit, or if this only asks.
    ///
    /// # Safety
    ///
    /// A buffer's `ptr` points to `cap` writable bytes that do not overlap
    /// `payload`.
    pub(crate) unsafe fn put(&self, payload: &[u8]) -> bool {
        match *self {
            Dest::Ask => false,
            Dest::Buffer { ptr, cap } => {
                if payload.len() > cap {
                    return false;
                }
                // SAFETY: `payload.len()` is at most `cap`, and `ptr` has
                // `cap` writable bytes apart from `payload` (the contract
                // above); u8 needs no alignment.
                unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), ptr, payload.len()) };
                true
            }
        }
    }
}

/// Writes `value` to the out-pointer `out` unless it is NULL.
///
/// # Safety
///
/// A non-NULL `out` points to a writable `T`.
pub(crate) unsafe fn put_out<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable (the contract above).
        unsafe { out.write(value) };
    }
}

/// A handle may move between threads (and is used by one at a time): its
/// state must be `Send`.
const _: () = {
    const fn send<T: Send>() {}
    send::<crate::host::HostState>();
    send::<crate::guest::GuestState>();
};
