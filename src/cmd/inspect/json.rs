//! `shmhub inspect --json`: the report as one JSON document.

use serde_json::json;
use shmhub::admin::{RingState, SegmentReport};

use crate::cmd::clock;
use crate::cmd::text::owner_json;

/// The report as `--json` prints it.
pub fn to_json(r: &SegmentReport) -> serde_json::Value {
    let h = &r.header;
    let l = &h.layout;
    json!({
        "path": r.path,
        "owner": r.owner.as_ref().map(owner_json),
        "header": {
            "version": h.version,
            "total_size": l.total_size,
            "max_guests": l.config.max_guests,
            "ring_capacity": l.config.ring_capacity,
            "slot_size": l.config.slot_size,
            "slots_per_pool": l.config.slots_per_pool,
            "max_payload": l.config.max_payload,
            "heartbeat_interval_ms": l.config.heartbeat_interval_ms,
            "host_slots_per_guest": h.host_slots_per_guest,
            "peer_table_offset": l.peer_table_offset,
            "rings_offset": l.rings_offset,
            "ring_size": l.ring_size,
            "pools_offset": l.pools_offset,
            "pool_stride": l.pool_stride,
            "created": clock::utc(h.created_unix_ns),
            "created_unix_ns": h.created_unix_ns,
            "host_pid": h.host_pid,
            "host_goodbye": h.host_goodbye,
        },
        "host": r.host,
        "peers": r.peers.iter().map(|p| json!({
            "peer_id": p.entry.peer_id,
            "state": p.entry.state,
            "quarantine": p.entry.quarantine,
            "epoch": p.entry.epoch,
            "pid": p.entry.pid,
            "held": p.entry.held,
            "holder": p.holder,
            "heartbeat_age_ms": p.heartbeat_age_ms,
            "host_slots_held": p.entry.host_slots_held,
            "to_host": ring_json(&p.to_host),
            "to_guest": ring_json(&p.to_guest),
        })).collect::<Vec<_>>(),
        "bad_peers": r.bad_peers.iter().map(|b| json!({
            "peer_id": b.peer_id,
            "raw_state": b.raw_state,
            "reason": b.reason,
            "to_host": ring_json(&b.to_host),
            "to_guest": ring_json(&b.to_guest),
        })).collect::<Vec<_>>(),
        "pools": r.pools,
        "host_slot_share": r.host_slot_share,
    })
}

fn ring_json(ring: &RingState) -> serde_json::Value {
    json!({ "head": ring.head, "tail": ring.tail, "capacity": ring.capacity, "len": ring.len() })
}
