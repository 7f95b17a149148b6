//! The thread rules, through the exported calls as C makes them: a call
//! that overlaps another on the same handle is refused with
//! `SHMHUB_ERR_BUSY` (not a data race), a handle moves between threads,
//! and the last error is each thread's own.

use std::ffi::{CStr, CString, c_int};
use std::time::Duration;

use shmhub_c::*;

fn last_error() -> String {
    // SAFETY: never NULL; valid until the next failure on this thread.
    unsafe { CStr::from_ptr(shmhub_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A handle pointer that may cross threads (the rules say it may).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the calls on the pointee check that they do not overlap; that
// is what this test exercises.
unsafe impl<T> Send for Shared<T> {}

#[test]
fn an_overlapping_call_on_one_handle_is_refused_and_errors_are_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(
        dir.path()
            .join("threads.shm")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a NUL-terminated path and no configuration.
    let host = unsafe { shmhub_host_create(path.as_ptr(), std::ptr::null()) };
    assert!(!host.is_null(), "{}", last_error());
    // SAFETY: as above.
    let guest = unsafe { shmhub_guest_attach(path.as_ptr()) };
    assert!(!guest.is_null(), "{}", last_error());

    // One thread waits in a receive on the host handle...
    let waiting = Shared(host);
    let receiver = std::thread::spawn(move || {
        let host = waiting;
        let mut buf = [0u8; 16];
        let mut from = 0u8;
        // SAFETY: a live handle, a writable peer and buffer of 16 bytes.
        let n = unsafe { shmhub_host_recv(host.0, &mut from, buf.as_mut_ptr(), 16, 10_000) };
        (n, from, buf)
    });
    std::thread::sleep(Duration::from_millis(200));
    // ...so a send on it from this thread is refused, not run alongside.
    // SAFETY: a live handle and 2 readable bytes.
    let rc = unsafe { shmhub_host_send(host, 1, b"no".as_ptr(), 2, 0) };
    assert_eq!(rc, SHMHUB_ERR_BUSY as c_int);
    assert_eq!(shmhub_last_error_code(), SHMHUB_ERR_BUSY as c_int);
    assert!(
        last_error().contains("in use by another thread"),
        "{}",
        last_error()
    );

    // The guest's send ends the receive on the other thread.
    // SAFETY: a live handle and 2 readable bytes.
    let rc = unsafe { shmhub_guest_send(guest, b"hi".as_ptr(), 2, 1000) };
    assert_eq!(rc, SHMHUB_OK as c_int, "{}", last_error());
    let (n, from, buf) = receiver.join().unwrap();
    assert_eq!((n, from, &buf[..2]), (2, 1, &b"hi"[..]));
    // That thread failed nothing; this one's error is still its own.
    assert_eq!(shmhub_last_error_code(), SHMHUB_ERR_BUSY as c_int);

    // The handle, now free, is used from this thread.
    // SAFETY: a live handle and 2 readable bytes.
    let rc = unsafe { shmhub_host_send(host, 1, b"ok".as_ptr(), 2, 0) };
    assert_eq!(rc, SHMHUB_OK as c_int, "{}", last_error());
    // A failure on another thread is that thread's.
    let elsewhere = Shared(guest);
    let other = std::thread::spawn(move || {
        let g = elsewhere;
        // SAFETY: a live handle; a NULL buffer with a cap above 0 is an
        // error the call reports.
        let n = unsafe { shmhub_guest_recv(g.0, std::ptr::null_mut(), 1, 0) };
        (n, shmhub_last_error_code(), last_error())
    })
    .join()
    .unwrap();
    assert_eq!(
        other,
        (
            i64::from(SHMHUB_ERR_INVALID as c_int),
            SHMHUB_ERR_INVALID as c_int,
            "buf (with a cap above 0) is NULL".to_string()
        )
    );
    assert_eq!(shmhub_last_error_code(), SHMHUB_ERR_BUSY as c_int);

    // SAFETY: live handles, not used again.
    unsafe {
        shmhub_guest_detach(guest);
        shmhub_host_destroy(host);
    }
    assert!(!dir.path().join("threads.shm").exists());
}
