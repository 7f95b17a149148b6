//! `shmhub.Peer`: a snapshot of one guest entry, as `Host.peers()` lists
//! them.

use pyo3::prelude::*;
use shmhub::{HolderStatus, PeerEntry};

/// One guest entry as it was when :meth:`Host.peers` looked.
///
/// Attributes:
///     peer_id: the guest's id.
///     state: ``"reserved"``, ``"attached"``, ``"goodbye"`` (left, with
///         messages the host has not read yet) or ``"quarantined"`` (cut
///         off, see :class:`CutOff`).
///     holder: ``"alive"``, ``"dead"`` (reclaimable), ``"stale"``,
///         ``"scripted"`` (claimed by a command, held by no process) or
///         ``"no process"``.
///     pid: the holding process, or None.
///     epoch: how many times the entry has been claimed.
///     host_slots_held: how many of the host's slots the guest holds.
#[pyclass(module = "shmhub", frozen, get_all)]
pub(crate) struct Peer {
    peer_id: u8,
    state: String,
    holder: String,
    pid: Option<u32>,
    epoch: u32,
    host_slots_held: u32,
}

impl Peer {
    pub(crate) fn new(entry: &PeerEntry, holder: HolderStatus) -> Self {
        Peer {
            peer_id: entry.peer_id.get(),
            state: entry.state.to_string(),
            holder: holder.to_string(),
            pid: (entry.pid != 0).then_some(entry.pid),
            epoch: entry.epoch,
            host_slots_held: entry.host_slots_held,
        }
    }
}

#[pymethods]
impl Peer {
    fn __repr__(&self) -> String {
        let pid = self.pid.map_or("None".to_string(), |p| p.to_string());
        format!(
            "Peer(peer_id={}, state={:?}, holder={:?}, pid={pid}, epoch={}, host_slots_held={})",
            self.peer_id, self.state, self.holder, self.epoch, self.host_slots_held
        )
    }
}
