//! `shmhub inspect --slots`: every allocated slot of every pool, who
//! holds it, the queued message naming it, and whether it looks leaked.

use shmhub::admin::{SlotHolder, SlotReport, SlotsReport, party_name};

use crate::cmd::exit::Outcome;
use crate::cmd::segment::{Segment, bad_entries};
use crate::cmd::table;
use crate::cmd::text::{print_line, print_report, ring_label};

/// Prints every allocated slot (`inspect --slots`); exit 1 after printing
/// if some peer entry could not be read.
pub fn run(segment: &Segment, json: bool) -> anyhow::Result<Outcome> {
    let report = segment.inspect_slots()?;
    print_report(&report, json, print_slots)?;
    bad_entries(&segment.path, &report.bad_peers)?;
    Ok(Outcome::Done)
}

fn print_slots(report: &SlotsReport) -> anyhow::Result<()> {
    if report.slots.is_empty() {
        return print_line("no slot is allocated in any pool");
    }
    let columns = [
        "pool",
        "slot",
        "generation",
        "holder",
        "holder alive",
        "queued as",
        "leaked?",
    ];
    table::print(table::of(columns, report.slots.iter().map(slot_row)))?;
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
