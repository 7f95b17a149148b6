//! Names of users and groups, from the system's user database: what
//! `getpwuid_r(3)` and `getgrgid_r(3)` find through NSS (`/etc/passwd` and
//! `/etc/group`, and LDAP, SSSD or systemd-userdb where the system is set
//! up for them), never the files read by hand.

use std::ffi::{CStr, OsStr, OsString, c_char, c_int};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;

/// The name of user `uid`, if the user database has an entry for it.
pub fn user_name(uid: u32) -> Option<OsString> {
    name_of(uid, libc::getpwuid_r, |entry: &libc::passwd| entry.pw_name)
}

/// The name of group `gid`, if the group database has an entry for it.
pub fn group_name(gid: u32) -> Option<OsString> {
    name_of(gid, libc::getgrgid_r, |entry: &libc::group| entry.gr_name)
}

/// `getpwuid_r` or `getgrgid_r`: fills in the entry of an id, its strings
/// in the buffer given, and points the result at the entry (null when
/// there is none).
type Lookup<E> = unsafe extern "C" fn(u32, *mut E, *mut c_char, usize, *mut *mut E) -> c_int;

/// The most buffer a lookup is given: an entry whose strings need more is
/// shown as its number.
const MAX_BUFFER: usize = 1 << 20;

/// The name in the entry `lookup` finds for `id`, growing the buffer for
/// its strings as long as the lookup says it is too small (`ERANGE`);
/// `None` when there is no entry, or the database cannot be read.
fn name_of<E>(id: u32, lookup: Lookup<E>, name: fn(&E) -> *const c_char) -> Option<OsString> {
    let mut buffer: Vec<c_char> = vec![0; 1024];
    loop {
        let mut entry = MaybeUninit::<E>::uninit();
        let mut found: *mut E = std::ptr::null_mut();
        // SAFETY: `lookup` keeps getpwuid_r's contract (it is getpwuid_r,
        // getgrgid_r, or the tests' fake; see `Lookup`): given pointers to
        // an entry, a buffer of `buffer.len()` bytes and a result pointer,
        // all this frame's and untouched during the call, it writes within
        // them alone.
        let rc = unsafe {
            lookup(
                id,
                entry.as_mut_ptr(),
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return None,
            0 => {
                // SAFETY: a lookup that returns 0 with a non-null result
                // has pointed it at `entry`, which it filled in; the name
                // in it is a NUL-terminated string in `buffer` (or null).
                // Both stay alive and unchanged until the name is copied.
                let name = unsafe {
                    let name = name(&*found);
                    if name.is_null() {
                        return None;
                    }
                    CStr::from_ptr(name)
                };
                return Some(OsStr::from_bytes(name.to_bytes()).to_os_string());
            }
            libc::EINTR => {}
            libc::ERANGE if buffer.len() < MAX_BUFFER => buffer.resize(buffer.len() * 2, 0),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of the fake database below: a name and nothing else.
    struct Entry {
        name: *const c_char,
    }

    /// A database whose only entry, id 7, has a name that fits only in a
    /// buffer of 4 KiB or more: smaller buffers get ERANGE.
    unsafe extern "C" fn fake_lookup(
        id: u32,
        entry: *mut Entry,
        buffer: *mut c_char,
        len: usize,
        result: *mut *mut Entry,
    ) -> c_int {
        const NAME: &[u8] = b"grown\0";
        // SAFETY: `name_of` passes a writable result pointer, an entry and
        // a buffer of `len` bytes, as getpwuid_r's callers must.
        unsafe {
            *result = std::ptr::null_mut();
            if id != 7 {
                return 0;
            }
            if len < 4096 {
                return libc::ERANGE;
            }
            std::ptr::copy_nonoverlapping(NAME.as_ptr().cast(), buffer, NAME.len());
            entry.write(Entry { name: buffer });
            *result = entry;
        }
        0
    }

    #[test]
    fn a_small_buffer_is_grown_and_no_entry_is_none() {
        let name = |entry: &Entry| entry.name;
        assert_eq!(name_of(7, fake_lookup, name), Some("grown".into()));
        assert_eq!(name_of(8, fake_lookup, name), None);
    }

    #[test]
    fn root_is_named_root() {
        assert_eq!(user_name(0), Some("root".into()));
        assert_eq!(group_name(0), Some("root".into()));
    }
}
