//! Fixtures that the unit tests of more than one module start from.

use std::path::PathBuf;

use crate::host::ShmHost;
use crate::layout::SegmentConfig;
use crate::mmap::OwnerCheck;
use crate::segment::Segment;

/// A segment file of two guests with its host, and the same file opened a
/// second time, as another process has it: where a test of two processes
/// racing over one entry starts.
pub(crate) struct TwoOpenings {
    /// The host that created the file.
    pub(crate) host: ShmHost,
    /// The other process's opening.
    pub(crate) other: Segment,
    /// The file.
    pub(crate) path: PathBuf,
    /// Declared last, so removed last: the openings go first.
    _dir: tempfile::TempDir,
}

impl TwoOpenings {
    /// A new segment file named `name` in a directory of its own.
    pub(crate) fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let config = SegmentConfig {
            max_guests: 2,
            ..SegmentConfig::default()
        };
        let host = ShmHost::create(&path, config).unwrap();
        let other = Segment::open_path(&path, OwnerCheck::Required).unwrap();
        TwoOpenings {
            host,
            other,
            path,
            _dir: dir,
        }
    }
}
