//! `shmhub inspect --raw`: every field with its offset, raw and decoded
//! value and whether it is valid; works on damaged and truncated files.

use anyhow::anyhow;
use shmhub::{FieldStatus, RawDump};

use crate::cmd::exit::Outcome;
use crate::cmd::segment::Segment;
use crate::cmd::table;
use crate::cmd::text::print_line;

/// Dumps every field (`inspect --raw`); exit 1 after printing if a field
/// is invalid or the file is not whole.
pub fn run(segment: &Segment, json: bool) -> anyhow::Result<Outcome> {
    let dump = segment.inspect_raw()?;
    if json {
        print_line(serde_json::to_value(&dump)?)?;
    } else {
        print_raw(&dump)?;
    }
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
    Err(anyhow!(
        "{}: {}",
        segment.path.display(),
        problems.join("; ")
    ))
}

fn print_raw(dump: &RawDump) -> anyhow::Result<()> {
    print_line(format!(
        "{}: {} bytes{}",
        dump.path.display(),
        dump.file_len,
        match dump.expected_len {
            Some(n) if n != dump.file_len => format!(" (its header describes a segment of {n})"),
            _ => String::new(),
        }
    ))?;
    let mut t = table::new(["offset", "field", "raw", "decoded", "check"]);
    for section in &dump.sections {
        for f in &section.fields {
            let check = match (f.status, &f.reason) {
                (FieldStatus::Ok, _) => "ok".to_string(),
                (FieldStatus::Invalid, reason) => {
                    format!("invalid: {}", reason.as_deref().unwrap_or_default())
                }
                (FieldStatus::Unchecked, reason) => {
                    format!("unchecked: {}", reason.as_deref().unwrap_or_default())
                }
            };
            t.add_row(vec![
                f.offset.to_string(),
                format!("{}.{}", section.name, f.name),
                f.hex.clone(),
                f.decoded.clone(),
                check,
            ]);
        }
    }
    if dump.sections.iter().any(|s| !s.fields.is_empty()) {
        table::print(t)?;
    }
    for note in &dump.notes {
        print_line(format!("({note})"))?;
    }
    Ok(())
}
