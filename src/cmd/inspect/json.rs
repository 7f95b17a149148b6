//! `shmhub inspect --json`: the report as one JSON document.

use shmhub::admin::SegmentReport;

use crate::cmd::clock;
use crate::cmd::text::{owner_json, path_json};

/// The report as `--json` prints it: the library's report as it
/// serializes, with what the command writes its own way for every command
/// alike: the path (escaped where it is not UTF-8), the owner (names and an
/// octal mode) and the creation time (RFC 3339, UTC).
pub fn to_json(r: &SegmentReport) -> serde_json::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(r)?;
    doc["path"] = path_json(&r.path);
    doc["owner"] = r.owner.as_ref().map(owner_json).into();
    doc["header"]["created"] = clock::utc(r.header.created_unix_ns).into();
    Ok(doc)
}
