//! `shmhub inspect --slots` and `inspect --raw`: who holds each slot, and
//! a field-by-field dump that works on damaged files.

use std::path::Path;

use anyhow::anyhow;
use shmhub::{FieldStatus, RawDump, SlotHolder, SlotReport, SlotsReport, party_name};

use super::error::seg_err;
use super::exit::Outcome;
use super::inspect::{bad_entries, view_err};
use super::peek::ring_label;
use super::table;
use super::text::print_line;

/// Prints every allocated slot (`inspect --slots`); exit 1 after printing
/// if some peer entry could not be read.
pub fn slots(path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let report = shmhub::inspect_slots(path).map_err(|e| view_err(path, e))?;
    if json {
        print_line(serde_json::to_value(&report)?)?;
    } else {
        print_slots(&report)?;
    }
    bad_entries(path, &report.bad_peers)?;
    Ok(Outcome::Done)
}

fn print_slots(report: &SlotsReport) -> anyhow::Result<()> {
    if report.slots.is_empty() {
        return print_line("no slot is allocated in any pool");
    }
    let mut t = table::new([
        "pool",
        "slot",
        "generation",
        "holder",
        "holder alive",
        "queued as",
        "leaked?",
    ]);
    for s in &report.slots {
        t.add_row(slot_row(s));
    }
    table::print(t)?;
    let leaked = report.slots.iter().filter(|s| s.leaked).count();
    print_line(format!(
        "{} allocated, {leaked} look leaked (held by nobody alive, named by no queued message)",
        report.slots.len()
    ))
}

fn slot_row(s: &SlotReport) -> Vec<String> {
    let holder = match (s.holder, s.holder_party) {
        (SlotHolder::None, _) => "none".to_string(),
        (SlotHolder::Sender, _) => "sender".to_string(),
        (SlotHolder::Receiver, Some(p)) => format!("receiver {}", party_name(p)),
        (SlotHolder::Receiver, None) | (SlotHolder::Unknown, _) => {
            format!("unknown (code {})", s.holder_code)
        }
    };
    let alive = match s.holder_alive {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let queued = s
        .queued
        .map(|q| format!("{} #{}", ring_label(q.peer, q.direction), q.position))
        .unwrap_or_default();
    vec![
        s.pool_name.clone(),
        s.slot.to_string(),
        s.generation.to_string(),
        holder,
        alive.to_string(),
        queued,
        if s.leaked { "leaked?" } else { "" }.to_string(),
    ]
}

/// Dumps every field (`inspect --raw`); exit 1 after printing if a field
/// is invalid or the file is not whole.
pub fn raw(path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let dump = shmhub::inspect_raw(path).map_err(|e| seg_err(path, e))?;
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
    Err(anyhow!("{}: {}", path.display(), problems.join("; ")))
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
