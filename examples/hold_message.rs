//! A guest that takes one message in place and keeps it, never freeing
//! its slot, until it is killed: a plugin stuck (or dead) in the middle of
//! its work, for trying out `shmhub inspect SEGMENT --slots` (see
//! "Debugging a stuck segment" in `docs/cli.md`).
//!
//! ```sh
//! cargo run --example hold_message -- /dev/shm/app   # prints its peer id, then what it holds
//! ```
use std::time::Duration;

use shmhub::ShmGuest;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: hold_message SEGMENT-PATH");
        std::process::exit(2);
    };
    let mut guest = ShmGuest::attach_path(&path)?;
    println!("{}", guest.peer_id());
    let received = loop {
        if let Some(received) = guest.receiver().recv(Some(Duration::from_secs(1)))? {
            break received;
        }
    };
    println!(
        "holding message {} ({} bytes) from the host",
        received.desc().id,
        received.payload().len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
