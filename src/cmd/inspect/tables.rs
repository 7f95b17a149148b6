//! `shmhub inspect`'s tables: the header, the peer entries with their
//! rings, and the pools; `--watch` adds rates and colours.

use shmhub::{PeerState, RingState, SegmentReport};

use crate::cmd::table;
use crate::cmd::text::{human_bytes, owner_text, print_line};

fn fill(ring: &RingState) -> String {
    match ring.len() {
        Some(n) => format!("{n}/{}", ring.capacity),
        None => format!("corrupt ({}..{})", ring.head, ring.tail),
    }
}

/// Prints `r` as tables (`all`: empty entries and idle pools too).
pub fn print_tables(r: &SegmentReport, all: bool) -> anyhow::Result<()> {
    for part in tables(r, all, None) {
        match part {
            Part::Table(t) => table::print(*t)?,
            Part::Note(note) => print_line(note)?,
        }
    }
    Ok(())
}

/// A piece of `inspect`'s output.
pub enum Part {
    /// A table, laid out when printed.
    Table(Box<comfy_table::Table>),
    /// A line of text.
    Note(String),
}

/// What `--watch` adds to the tables: messages per second on each ring
/// (guest `p` at `p - 1`: to the host, to the guest), and whether to
/// colour holders.
pub struct Live {
    /// Messages per second on each guest's two rings.
    pub rates: Vec<(f64, f64)>,
    /// Dead holders in red, stale ones in yellow.
    pub colour: bool,
}

/// A holder's status as a cell: coloured when `colour`.
fn holder_cell(status: shmhub::HolderStatus, colour: bool) -> comfy_table::Cell {
    use comfy_table::{Cell, Color};
    let cell = Cell::new(status);
    match (colour, status) {
        (true, shmhub::HolderStatus::Dead) => cell.fg(Color::Red),
        (true, shmhub::HolderStatus::Stale) => cell.fg(Color::Yellow),
        _ => cell,
    }
}

/// `r` as tables and notes, with rates and colours when `live`.
pub fn tables(r: &SegmentReport, all: bool, live: Option<&Live>) -> Vec<Part> {
    let mut parts = Vec::new();
    let h = &r.header;
    let c = &h.layout.config;
    let mut header = table::new(["header", "value"]);
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(h.created_unix_ns);
    let age = std::time::SystemTime::now()
        .duration_since(created)
        .unwrap_or_default();
    let host = if h.host_pid == 0 {
        r.host.to_string()
    } else {
        format!("pid {} ({})", h.host_pid, r.host)
    };
    let rows: Vec<(&str, String)> = vec![
        ("path", r.path.display().to_string()),
        (
            "owner",
            r.owner
                .as_ref()
                .map(owner_text)
                .unwrap_or_else(|| "-".into()),
        ),
        ("version", h.version.to_string()),
        (
            "total size",
            format!(
                "{} ({} bytes)",
                human_bytes(h.layout.total_size),
                h.layout.total_size
            ),
        ),
        ("created", format!("{}s ago", age.as_secs())),
        ("host", host),
        ("max guests", c.max_guests.to_string()),
        ("ring capacity", c.ring_capacity.to_string()),
        ("slot size", human_bytes(c.slot_size.into())),
        ("slots per pool", c.slots_per_pool.to_string()),
        ("max payload", human_bytes(c.max_payload.into())),
        (
            "host slots per guest",
            if h.host_slots_per_guest == 0 {
                match r.host_slot_share {
                    Some(share) => format!("{share} (the fair share)"),
                    None => "? (the fair share; an entry cannot be read)".into(),
                }
            } else {
                h.host_slots_per_guest.to_string()
            },
        ),
        (
            "heartbeat",
            if c.heartbeat_interval_ms == 0 {
                "off".into()
            } else {
                format!("{} ms", c.heartbeat_interval_ms)
            },
        ),
    ];
    for (k, v) in rows {
        header.add_row(vec![k.to_string(), v]);
    }
    parts.push(Part::Table(Box::new(header)));

    let mut columns = vec![
        "peer",
        "state",
        "epoch",
        "holder pid",
        "holder",
        "heartbeat age",
        "to host",
        "to guest",
        "host slots",
    ];
    if live.is_some() {
        columns.extend(["to host/s", "to guest/s"]);
    }
    let mut peers = table::new(columns);
    let colour = live.is_some_and(|l| l.colour);
    let mut hidden = 0;
    // Rows by peer id: the entries read, and those that could not be.
    let mut rows: Vec<(u8, Vec<comfy_table::Cell>)> = r
        .bad_peers
        .iter()
        .map(|b| {
            let mut row: Vec<comfy_table::Cell> = [
                b.peer_id.to_string(),
                format!("invalid ({})", b.raw_state),
                "?".into(),
                "?".into(),
                "?".into(),
                String::new(),
                fill(&b.to_host),
                fill(&b.to_guest),
                "?".into(),
            ]
            .into_iter()
            .map(comfy_table::Cell::new)
            .collect();
            if live.is_some() {
                row.extend([comfy_table::Cell::new(""), comfy_table::Cell::new("")]);
            }
            (b.peer_id, row)
        })
        .collect();
    for (i, p) in r.peers.iter().enumerate() {
        let idle =
            p.entry.state == PeerState::Empty && p.to_host.is_empty() && p.to_guest.is_empty();
        if idle && !all {
            hidden += 1;
            continue;
        }
        let mut row = vec![
            comfy_table::Cell::new(p.entry.peer_id),
            comfy_table::Cell::new(p.entry.state),
            comfy_table::Cell::new(p.entry.epoch),
            comfy_table::Cell::new(if p.entry.pid == 0 {
                "-".into()
            } else {
                p.entry.pid.to_string()
            }),
            holder_cell(p.holder, colour),
            // Blank where nobody beats: heartbeats off, or no process.
            comfy_table::Cell::new(
                p.heartbeat_age_ms
                    .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
            ),
            comfy_table::Cell::new(fill(&p.to_host)),
            comfy_table::Cell::new(fill(&p.to_guest)),
            // The host's slots it holds, of its share.
            comfy_table::Cell::new(format!(
                "{}/{}",
                p.entry.host_slots_held,
                r.host_slot_share.map_or("?".into(), |s| s.to_string())
            )),
        ];
        if let Some(live) = live {
            let (up, down) = live.rates.get(i).copied().unwrap_or_default();
            row.push(comfy_table::Cell::new(format!("{up:.0}")));
            row.push(comfy_table::Cell::new(format!("{down:.0}")));
        }
        rows.push((p.entry.peer_id, row));
    }
    rows.sort_by_key(|(id, _)| *id);
    for (_, row) in rows {
        peers.add_row(row);
    }
    parts.push(Part::Table(Box::new(peers)));
    for b in &r.bad_peers {
        parts.push(Part::Note(format!(
            "({}; --raw shows every field)",
            b.reason
        )));
    }
    if hidden > 0 {
        let entries = if hidden == 1 { "entry" } else { "entries" };
        parts.push(Part::Note(format!(
            "({hidden} empty {entries} hidden; --all shows them)"
        )));
    }

    let mut pools = table::new(["pool", "slot size", "used", "free"]);
    for p in &r.pools {
        let owner_idle = p.owner != 0
            && p.usage.used == 0
            && r.peers
                .iter()
                .any(|e| e.entry.peer_id == p.owner && e.entry.state == PeerState::Empty);
        if owner_idle && !all {
            continue;
        }
        pools.add_row(vec![
            p.owner_name.clone(),
            human_bytes(p.slot_size.into()),
            p.usage.used.to_string(),
            p.usage.free.to_string(),
        ]);
    }
    parts.push(Part::Table(Box::new(pools)));
    parts
}
