//! What both targets do with a region: inspect it, attach to it as a
//! guest, open it as a host, receive and send. Shared with `mod common;`.

use std::time::Duration;

use shmhub::{Frame, HeapRegion, MsgDesc, Region, ShmGuest, ShmHost, msg_type};

/// Receives per loop at most (a ring holds at most 65536, but a corrupt
/// one could keep a loop busy; the bound keeps every input fast).
const MAX_RECEIVES: usize = 64;

pub fn region_of(data: &[u8], len: usize) -> Option<Region> {
    let heap = HeapRegion::new_zeroed(len).ok()?;
    let region = heap.region();
    let n = data.len().min(len);
    region.write(0, &data[..n]).ok()?;
    Some(region)
}

fn frame(id: u64, len: usize) -> Frame {
    Frame::new(MsgDesc::new(msg_type::DATA, id), vec![0x5A; len])
}

fn host_session(host: &mut ShmHost) {
    let guests = host.layout().config.max_guests.min(255) as u8;
    let _ = host.status().header();
    let _ = host.peers();
    for _ in 0..MAX_RECEIVES {
        match host.try_recv() {
            Ok(Some((_, f))) => {
                let _ = f.payload().len();
            }
            _ => break,
        }
    }
    for p in 0..=guests.saturating_add(1).min(8) {
        for _ in 0..MAX_RECEIVES {
            match host.try_recv_from(p) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = host.receiver(p).unwrap().recv_batch(8, Some(Duration::ZERO), |r| {
            let _ = r.payload().iter().map(|&b| u32::from(b)).sum::<u32>();
        });
        let _ = host.try_send(p, frame(1, 5));
        let _ = host.try_send(p, frame(2, 100));
    }
    let _ = host.reclaim_dead();
    let _ = host.try_recv();
}

fn guest_session(guest: &mut ShmGuest) {
    let _ = guest.status().header();
    let _ = guest.status().host_status();
    for _ in 0..MAX_RECEIVES {
        match guest.try_recv() {
            Ok(Some(f)) => {
                let _ = f.payload().len();
            }
            _ => break,
        }
    }
    let _ = guest.receiver().recv_batch(8, Some(Duration::ZERO), |r| {
        let _ = r.payload().iter().map(|&b| u32::from(b)).sum::<u32>();
    });
    let _ = guest.try_send(frame(3, 7));
    let _ = guest.try_send(frame(4, 90));
}

/// The read-only views: whatever the bytes, they report or refuse.
fn look(region: &Region) {
    let _ = shmhub::admin::inspect_region(region, None);
    let _ = shmhub::admin::peek_region(region, &shmhub::admin::PeekOptions::default());
    let limited = shmhub::admin::PeekOptions {
        peer: shmhub::PeerId::new(1),
        limit: Some(3),
        ..shmhub::admin::PeekOptions::default()
    };
    let _ = shmhub::admin::peek_region(region, &limited);
    let _ = shmhub::admin::inspect_slots_region(region, None);
}

pub fn exercise(region: Region) {
    look(&region);
    if let Ok(mut guest) = ShmGuest::attach(region.clone()) {
        guest_session(&mut guest);
        let _ = guest.detach();
    }
    if let Ok(mut host) = ShmHost::open_region(region.clone()) {
        host_session(&mut host);
    }
    for p in [1u8, 2, 255] {
        if let Ok(mut guest) = ShmGuest::attach_with_id(region.clone(), p) {
            guest_session(&mut guest);
        }
    }
    look(&region);
}
