//! `shmhub inspect`'s tables: the header, the peer entries with their
//! rings, and the pools; `--watch` adds rates and colours.

use comfy_table::{Cell, Table};
use shmhub::admin::{BadPeer, PeerReport, RingState, SegmentReport};
use shmhub::{PeerId, PeerState};

use crate::cmd::clock::{self, Zone, heartbeat_interval};
use crate::cmd::table;
use crate::cmd::text::{human_bytes, owner_text, print_line, shown};

/// A ring's fill, `queued/capacity`, or its indices when they make no
/// sense.
fn fill(ring: &RingState) -> String {
    match ring.len() {
        Some(n) => format!("{n}/{}", ring.capacity),
        None => format!("corrupt ({}..{})", ring.head, ring.tail),
    }
}

/// Prints `r` as tables (`all`: empty entries and idle pools too), with
/// times in `zone`.
pub fn print_tables(r: &SegmentReport, all: bool, zone: Zone) -> anyhow::Result<()> {
    for part in tables(r, all, zone, None) {
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
    Table(Box<Table>),
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
fn holder_cell(status: shmhub::HolderStatus, colour: bool) -> Cell {
    use comfy_table::Color;
    let cell = Cell::new(status);
    match (colour, status) {
        (true, shmhub::HolderStatus::Dead) => cell.fg(Color::Red),
        (true, shmhub::HolderStatus::Stale) => cell.fg(Color::Yellow),
        _ => cell,
    }
}

/// `r` as tables and notes, times in `zone`, with rates and colours when
/// `live`.
pub fn tables(r: &SegmentReport, all: bool, zone: Zone, live: Option<&Live>) -> Vec<Part> {
    let quiet = if all {
        Vec::new()
    } else {
        quiet_guests(r, live)
    };
    let (peers, hidden) = peer_table(r, all, live, &quiet);
    let mut parts = vec![
        Part::Table(Box::new(header_table(r, zone))),
        Part::Table(Box::new(peers)),
    ];
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
    if !quiet.is_empty() {
        parts.push(Part::Note(format!(
            "({} quiet guests hidden, peers {}: attached, alive or scripted, nothing queued, no host slot held; --all shows them)",
            quiet.len(),
            id_ranges(&quiet)
        )));
    }
    parts.push(Part::Table(Box::new(pool_table(r, all, &quiet))));
    parts
}

/// Rows past which quiet guests are summarized rather than listed.
const MANY_ROWS: usize = 16;

/// With more than [`MANY_ROWS`] entries in use, the guests with nothing
/// to show (attached, their holder alive or a script's, both rings empty,
/// none of the host's slots held, no traffic while watching), so that a
/// table of hundreds of plugins shows the few that are doing something.
/// Fewer, every entry in use is listed.
fn quiet_guests(r: &SegmentReport, live: Option<&Live>) -> Vec<PeerId> {
    let in_use = r
        .peers
        .iter()
        .filter(|p| p.entry.state != PeerState::Empty)
        .count()
        + r.bad_peers.len();
    if in_use <= MANY_ROWS {
        return Vec::new();
    }
    r.peers
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let rates = live.map_or((0.0, 0.0), |l| l.rates.get(*i).copied().unwrap_or_default());
            p.entry.state == PeerState::Attached
                && matches!(
                    p.holder,
                    shmhub::HolderStatus::Alive | shmhub::HolderStatus::Scripted
                )
                && p.to_host.is_empty()
                && p.to_guest.is_empty()
                && p.entry.host_slots_held == 0
                && rates == (0.0, 0.0)
        })
        .map(|(_, p)| p.entry.peer_id)
        .collect()
}

/// Ids as ranges: `1-3, 7, 9-12`.
fn id_ranges(ids: &[PeerId]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1].get() == end.get().wrapping_add(1) {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// The header's fields, as people read them.
fn header_table(r: &SegmentReport, zone: Zone) -> Table {
    let h = &r.header;
    let c = &h.layout.config;
    let created = format!(
        "{} ({} ago)",
        clock::rfc3339(h.created_unix_ns, zone),
        clock::human_age(clock::age_secs(h.created_unix_ns))
    );
    let host = if h.host_pid == 0 {
        r.host.to_string()
    } else {
        format!("pid {} ({})", h.host_pid, r.host)
    };
    let total = h.layout.total_size;
    let rows: Vec<(&str, String)> = vec![
        ("path", shown(&r.path).to_string()),
        (
            "owner",
            r.owner.as_ref().map_or_else(|| "-".into(), owner_text),
        ),
        ("version", h.version.to_string()),
        (
            "total size",
            format!("{} ({total} bytes)", human_bytes(total)),
        ),
        ("created", created),
        ("host", host),
        ("max guests", c.max_guests.to_string()),
        ("ring capacity", c.ring_capacity.to_string()),
        ("slot size", human_bytes(c.slot_size.into())),
        ("slots per pool", c.slots_per_pool.to_string()),
        ("max payload", human_bytes(c.max_payload.into())),
        ("host slots per guest", host_share(r)),
        ("heartbeat", heartbeat_interval(c.heartbeat_interval_ms)),
    ];
    let mut header = table::new(["header", "value"]);
    for (k, v) in rows {
        header.add_row(vec![k.to_string(), v]);
    }
    header
}

/// How many of the host's slots one guest may hold: fixed, or the fair
/// share it works out to now.
fn host_share(r: &SegmentReport) -> String {
    if r.header.host_slots_per_guest != 0 {
        return r.header.host_slots_per_guest.to_string();
    }
    match r.host_slot_share {
        Some(share) => format!("{share} (the fair share)"),
        None => "? (the fair share; an entry cannot be read)".into(),
    }
}

/// One row per peer entry, by peer id (the entries that could not be
/// read too), with rates when `live`; and how many empty entries were
/// left out (all are shown when `all`).
fn peer_table(
    r: &SegmentReport,
    all: bool,
    live: Option<&Live>,
    quiet: &[PeerId],
) -> (Table, usize) {
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
    let mut rows: Vec<(PeerId, Vec<Cell>)> = r
        .bad_peers
        .iter()
        .map(|b| (b.peer_id, bad_peer_row(b, live.is_some())))
        .collect();
    let mut hidden = 0;
    for (i, p) in r.peers.iter().enumerate() {
        let idle =
            p.entry.state == PeerState::Empty && p.to_host.is_empty() && p.to_guest.is_empty();
        if idle && !all {
            hidden += 1;
            continue;
        }
        if quiet.contains(&p.entry.peer_id) {
            continue;
        }
        // Rates are kept by position in `peers`: every entry is there
        // when watching, which needs all of them readable.
        let rates = live.map(|l| l.rates.get(i).copied().unwrap_or_default());
        let colour = live.is_some_and(|l| l.colour);
        rows.push((p.entry.peer_id, peer_row(r, p, colour, rates)));
    }
    rows.sort_by_key(|(id, _)| *id);
    let mut peers = table::new(columns);
    for (_, row) in rows {
        peers.add_row(row);
    }
    (peers, hidden)
}

/// An entry that could not be read: its id, raw state and ring fill; `?`
/// for the rest; blank rate columns when `live`.
fn bad_peer_row(b: &BadPeer, live: bool) -> Vec<Cell> {
    let mut row: Vec<Cell> = [
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
    .map(Cell::new)
    .collect();
    if live {
        row.extend([Cell::new(""), Cell::new("")]);
    }
    row
}

/// One entry's row; `rates` (to the host, to the guest) when watching.
fn peer_row(
    r: &SegmentReport,
    p: &PeerReport,
    colour: bool,
    rates: Option<(f64, f64)>,
) -> Vec<Cell> {
    let e = &p.entry;
    let mut row = vec![
        Cell::new(e.peer_id),
        Cell::new(match e.quarantine {
            Some(reason) => format!("{} ({reason})", e.state),
            None => e.state.to_string(),
        }),
        Cell::new(e.epoch),
        Cell::new(if e.pid == 0 {
            "-".into()
        } else {
            e.pid.to_string()
        }),
        holder_cell(p.holder, colour),
        // Blank where nobody beats: heartbeats off, or no process.
        Cell::new(
            p.heartbeat_age_ms
                .map(clock::heartbeat_age)
                .unwrap_or_default(),
        ),
        Cell::new(fill(&p.to_host)),
        Cell::new(fill(&p.to_guest)),
        // The host's slots it holds, of its share.
        Cell::new(format!(
            "{}/{}",
            e.host_slots_held,
            r.host_slot_share.map_or("?".into(), |s| s.to_string())
        )),
    ];
    if let Some((up, down)) = rates {
        row.push(Cell::new(format!("{up:.0}")));
        row.push(Cell::new(format!("{down:.0}")));
    }
    row
}

/// Every pool's use; those of empty entries, idle, only when `all`, and
/// those of `quiet` guests only when in use.
fn pool_table(r: &SegmentReport, all: bool, quiet: &[PeerId]) -> Table {
    let mut pools = table::new(["pool", "slot size", "used", "free"]);
    for p in &r.pools {
        let owner_idle = p.owner != 0
            && p.usage.used == 0
            && r.peers
                .iter()
                .any(|e| e.entry.peer_id == p.owner && e.entry.state == PeerState::Empty);
        let quiet_owner = quiet.iter().any(|&q| q == p.owner);
        if (owner_idle || (quiet_owner && p.usage.used == 0)) && !all {
            continue;
        }
        pools.add_row(vec![
            p.owner_name.clone(),
            human_bytes(p.slot_size.into()),
            p.usage.used.to_string(),
            p.usage.free.to_string(),
        ]);
    }
    pools
}
