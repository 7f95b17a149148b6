//! The `shmhub` Python module: shared-memory segments between one host
//! process and its guests, bound to the `shmhub` library.
//!
//! Python sees `Host`, `Guest`, `Peer` and the `Error` hierarchy; the
//! modules here: `host` and `guest` (the classes), `wait` (timeouts in
//! seconds, the GIL released and Ctrl-C noticed while waiting), `buffer`
//! (bytes-like payloads in, `bytes` out), `lent` (payloads lent in place
//! as memoryviews), `errors` (the exceptions), `peer`, and `ready` (the
//! readiness descriptor for event loops, and what `recv_async` keeps).

mod buffer;
mod errors;
mod guest;
mod host;
mod lent;
mod peer;
mod ready;
mod wait;

use pyo3::prelude::*;

/// Shared-memory IPC segments: one host process and up to 255 guest
/// processes exchanging messages through one memory-mapped file.
///
/// A :class:`Host` creates the segment (usually under ``/dev/shm``);
/// guests attach to it by path (:meth:`Guest.attach`). Payloads are any
/// bytes-like object, copied once into shared memory; they come out as
/// ``bytes``, or lent in place as a ``memoryview`` (``recv_view``).
/// Timeouts are in seconds, None to wait as long as it takes; failures are
/// exceptions of the :class:`Error` hierarchy.
#[pymodule]
#[pyo3(name = "shmhub")]
fn shmhub_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    wait::watch_forks()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("INLINE_CAPACITY", shmhub::INLINE_CAPACITY)?;
    m.add_class::<host::Host>()?;
    m.add_class::<guest::Guest>()?;
    m.add_class::<peer::Peer>()?;
    m.add_class::<ready::Readiness>()?;
    m.add_class::<ready::Ended>()?;
    for class in errors::Classes::get(py)?.all() {
        let class = class.bind(py);
        m.add(class.name()?, class)?;
    }
    Ok(())
}
