//! `shmhub inspect`: a read-only dump of a segment.

use serde_json::json;
use shmhub::{PeerState, RingState, SegmentReport};

use super::common::{human_bytes, print_line, seg_err};
use super::{Outcome, segment_path, signals, table};

const EXAMPLES: &str = "\
Examples:
  shmhub inspect demo
  shmhub inspect demo --all                 # include empty peer entries
  shmhub inspect /dev/shm/app.shm --json | jq '.peers[] | select(.state == \"attached\")'";

/// Arguments of `shmhub inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Show empty peer entries and unused pools too.
    #[arg(long)]
    pub all: bool,
    /// Print one JSON document (always includes every entry).
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub inspect`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    signals::guard_sigbus(&path);
    let report = shmhub::inspect_path(&path).map_err(|e| seg_err(&path, e))?;
    if args.json {
        print_line(to_json(&report))?;
    } else {
        print_tables(&report, args.all)?;
    }
    Ok(Outcome::Done)
}

fn to_json(r: &SegmentReport) -> serde_json::Value {
    let h = &r.header;
    let l = &h.layout;
    json!({
        "path": r.path,
        "header": {
            "version": h.version,
            "total_size": l.total_size,
            "max_guests": l.config.max_guests,
            "ring_capacity": l.config.ring_capacity,
            "slot_size": l.config.slot_size,
            "slots_per_pool": l.config.slots_per_pool,
            "max_payload": l.config.max_payload,
            "heartbeat_interval_ms": l.config.heartbeat_interval_ms,
            "peer_table_offset": l.peer_table_offset,
            "rings_offset": l.rings_offset,
            "ring_size": l.ring_size,
            "pools_offset": l.pools_offset,
            "pool_stride": l.pool_stride,
            "created_unix_ns": h.created_unix_ns,
            "host_pid": h.host_pid,
            "host_goodbye": h.host_goodbye,
        },
        "host": r.host,
        "peers": r.peers.iter().map(|p| json!({
            "peer_id": p.entry.peer_id,
            "state": p.entry.state,
            "epoch": p.entry.epoch,
            "pid": p.entry.pid,
            "held": p.entry.held,
            "holder": p.holder,
            "heartbeat_age_ms": p.heartbeat_age_ms,
            "to_host": ring_json(&p.to_host),
            "to_guest": ring_json(&p.to_guest),
        })).collect::<Vec<_>>(),
        "pools": r.pools,
    })
}

fn ring_json(ring: &RingState) -> serde_json::Value {
    json!({ "head": ring.head, "tail": ring.tail, "capacity": ring.capacity, "len": ring.len() })
}

fn fill(ring: &RingState) -> String {
    match ring.len() {
        Some(n) => format!("{n}/{}", ring.capacity),
        None => format!("corrupt ({}..{})", ring.head, ring.tail),
    }
}

pub fn print_tables(r: &SegmentReport, all: bool) -> anyhow::Result<()> {
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
    table::print(header)?;

    let mut peers = table::new([
        "peer",
        "state",
        "epoch",
        "holder pid",
        "holder",
        "heartbeat age",
        "to host",
        "to guest",
    ]);
    let mut hidden = 0;
    for p in &r.peers {
        let idle =
            p.entry.state == PeerState::Empty && p.to_host.is_empty() && p.to_guest.is_empty();
        if idle && !all {
            hidden += 1;
            continue;
        }
        peers.add_row(vec![
            p.entry.peer_id.to_string(),
            p.entry.state.to_string(),
            p.entry.epoch.to_string(),
            if p.entry.pid == 0 {
                "-".into()
            } else {
                p.entry.pid.to_string()
            },
            p.holder.to_string(),
            // Blank where nobody beats: heartbeats off, or no process.
            p.heartbeat_age_ms
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default(),
            fill(&p.to_host),
            fill(&p.to_guest),
        ]);
    }
    table::print(peers)?;
    if hidden > 0 {
        let entries = if hidden == 1 { "entry" } else { "entries" };
        print_line(format_args!(
            "({hidden} empty {entries} hidden; --all shows them)"
        ))?;
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
    table::print(pools)
}
