//! Where segment files live.
//!
//! shm[impl shm.file.path]

use std::path::{Path, PathBuf};

/// Environment variable that overrides the directory bare names resolve in.
pub const SHM_DIR_ENV: &str = "SHMHUB_SHM_DIR";

/// A segment name that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid segment name {name:?}: {reason}")]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// The directory bare segment names resolve in: `$SHMHUB_SHM_DIR` if set,
/// else `/dev/shm` where it exists, else the temporary directory.
pub fn shm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(SHM_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let dev_shm = Path::new("/dev/shm");
    if dev_shm.is_dir() {
        dev_shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Resolves a SEGMENT argument: anything containing `/` is a path, used as
/// given; a bare name resolves inside [`shm_dir`] and cannot leave it.
///
/// ```
/// use shmhub::admin::resolve_segment;
///
/// assert_eq!(resolve_segment("./x.shm").unwrap(), std::path::PathBuf::from("./x.shm"));
/// assert!(resolve_segment("demo").unwrap().ends_with("demo"));
/// assert!(resolve_segment("..").is_err());
/// ```
pub fn resolve_segment(arg: &str) -> Result<PathBuf, NameError> {
    let refuse = |reason| NameError {
        name: arg.to_string(),
        reason,
    };
    if arg.is_empty() {
        return Err(refuse("it is empty"));
    }
    if arg.contains('\0') {
        return Err(refuse("it contains a NUL byte"));
    }
    if arg.contains('/') {
        return Ok(PathBuf::from(arg));
    }
    if arg == "." || arg == ".." {
        return Err(refuse("it names a directory, not a file"));
    }
    if arg.len() > 255 {
        return Err(refuse("it is longer than 255 bytes"));
    }
    Ok(shm_dir().join(arg))
}

/// Writes a path as a string, replacing what is not UTF-8, so that a report
/// naming a file with such a name still serializes (serde's own impl
/// refuses it).
#[cfg(feature = "serde")]
pub(crate) fn serialize_lossy<S: serde::Serializer>(
    path: &std::path::Path,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    // shm[verify shm.file.path]
    #[test]
    fn bare_names_stay_in_the_shm_dir() {
        let resolved = resolve_segment("app.shm").unwrap();
        assert_eq!(resolved.parent().unwrap(), shm_dir());
        for bad in ["", ".", "..", "a\0b"] {
            assert!(resolve_segment(bad).is_err(), "{bad:?}");
        }
        assert!(resolve_segment(&"x".repeat(256)).is_err());
    }

    // shm[verify shm.file.path]
    #[test]
    fn paths_are_kept_as_given() {
        assert_eq!(
            resolve_segment("/tmp/a.shm").unwrap(),
            PathBuf::from("/tmp/a.shm")
        );
        assert_eq!(
            resolve_segment("../a.shm").unwrap(),
            PathBuf::from("../a.shm")
        );
    }
}
