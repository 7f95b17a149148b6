//! `shmhub inspect --raw`: every field with its offset, raw and decoded
//! value and whether it is valid; works on damaged and truncated files.

use anyhow::anyhow;
use shmhub::admin::{FieldStatus, RawDump, RawField};

use crate::cmd::exit::Outcome;
use crate::cmd::segment::Segment;
use crate::cmd::table;
use crate::cmd::text::{counted, print_line, print_report, shown};

/// Dumps every field (`inspect --raw`); exit 1 after printing if a field
/// is invalid or the file is not whole.
pub fn run(segment: &Segment, json: bool) -> anyhow::Result<Outcome> {
    let dump = segment.inspect_raw()?;
    print_report(&dump, json, print_raw)?;
    if dump.is_sound() {
        return Ok(Outcome::Done);
    }
    let invalid: Vec<String> = dump
        .invalid()
        .map(|(section, f)| {
            format!(
                "{section}.{}: {}",
                f.name,
                f.reason.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let mut problems = Vec::new();
    match invalid.as_slice() {
        [] => {}
        [one] => problems.push(format!("1 invalid field ({one})")),
        [first, rest @ ..] => {
            problems.push(format!("{} invalid fields (first {first})", rest.len() + 1))
        }
    }
    problems.extend(dump.notes.iter().cloned());
    Err(anyhow!("{}: {}", shown(&segment.path), problems.join("; ")))
}

/// One field as table cells: offset, `section.field`, raw, decoded, and
/// its check.
fn field_row(section: &str, f: &RawField) -> Vec<String> {
    let check = match (f.status, &f.reason) {
        (FieldStatus::Ok, _) => "ok".to_string(),
        (FieldStatus::Invalid, reason) => {
            format!("invalid: {}", reason.as_deref().unwrap_or_default())
        }
        (FieldStatus::Unchecked, reason) => {
            format!("unchecked: {}", reason.as_deref().unwrap_or_default())
        }
    };
    vec![
        f.offset.to_string(),
        format!("{section}.{}", f.name),
        f.hex.clone(),
        f.decoded.clone(),
        check,
    ]
}

fn print_raw(dump: &RawDump) -> anyhow::Result<()> {
    print_line(format!(
        "{}: {}{}",
        shown(&dump.path),
        counted(dump.file_len, "byte", "bytes"),
        match dump.expected_len {
            Some(n) if n != dump.file_len => format!(" (its header describes a segment of {n})"),
            _ => String::new(),
        }
    ))?;
    let rows = dump
        .sections
        .iter()
        .flat_map(|section| section.fields.iter().map(|f| field_row(&section.name, f)));
    let t = table::of(["offset", "field", "raw", "decoded", "check"], rows);
    if dump.sections.iter().any(|s| !s.fields.is_empty()) {
        table::print(t)?;
    }
    for note in &dump.notes {
        print_line(format!("({note})"))?;
    }
    Ok(())
}
