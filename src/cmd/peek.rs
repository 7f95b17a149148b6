//! `shmhub peek`: the messages queued in rings, without taking them.

use shmhub::admin::{PeekOptions, PeekReport, QueuedMessage, RingPeek};
use shmhub::{Direction, PeerId, PeerState};

use super::exit::Outcome;
use super::parse::parse_peer_id;
use super::segment::Segment;
use super::table;
use super::text::{print_line, print_report, ring_label};

const EXAMPLES: &str = "\
Examples:
  shmhub peek demo                              # every ring that holds something
  shmhub peek demo --peer 1 --direction to-guest --limit 5
  shmhub peek demo --json | jq '.rings[].messages[] | select(.problem)'";

/// Which way a ring carries messages, as `--direction` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Way {
    /// From a guest to the host.
    ToHost,
    /// From the host to a guest.
    ToGuest,
}

/// Arguments of `shmhub peek`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Only guest N's rings, shown even when empty (default: every ring
    /// that holds something).
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub peer: Option<PeerId>,
    /// Only the rings carrying messages this way (default: both).
    #[arg(long, value_enum, value_name = "to-host|to-guest")]
    pub direction: Option<Way>,
    /// List at most N messages of each ring, from its head (the count of
    /// queued messages stays exact).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Runs `shmhub peek`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let segment = Segment::resolve(&args.segment)?;
    let options = PeekOptions {
        peer: args.peer,
        direction: args.direction.map(|way| match way {
            Way::ToHost => Direction::GuestToHost,
            Way::ToGuest => Direction::HostToGuest,
        }),
        limit: args.limit,
    };
    let report = segment.peek(&options)?;
    print_report(&report, args.json, |report| print_text(report, args.limit))?;
    Ok(Outcome::Done)
}

/// A ring in words, with who sends and who receives:
/// `peer 1 to guest (host -> peer 1)`.
fn ring_name(peer: PeerId, direction: Direction) -> String {
    let (from, to) = direction.ends(peer);
    format!("{} ({from} -> {to})", ring_label(peer, direction))
}

fn print_text(report: &PeekReport, limit: Option<usize>) -> anyhow::Result<()> {
    if report.rings.is_empty() {
        return print_line("nothing is queued in any ring");
    }
    for ring in &report.rings {
        print_ring(ring, limit)?;
    }
    Ok(())
}

fn print_ring(ring: &RingPeek, limit: Option<usize>) -> anyhow::Result<()> {
    print_line(format!(
        "{}: {} queued (head {}, tail {}, capacity {}){}",
        ring_name(ring.peer, ring.direction),
        ring.queued,
        ring.head,
        ring.tail,
        ring.capacity,
        cut_off(ring)
    ))?;
    if !ring.messages.is_empty() {
        let columns = [
            "position",
            "id",
            "type",
            "method",
            "flags",
            "len",
            "placement",
            "preview",
        ];
        table::print(table::of(columns, ring.messages.iter().map(row)))?;
    }
    let hidden = ring.queued as usize - ring.messages.len();
    if hidden > 0 {
        print_line(format!(
            "({hidden} more not listed; --limit {} lists at most that many per ring)",
            limit.unwrap_or_default()
        ))?;
    }
    Ok(())
}

/// What a ring's line adds when its guest is cut off
/// (`shm.peer.quarantine`), or about to be: whoever would receive its
/// messages never will, which a listing of them alone would hide.
fn cut_off(ring: &RingPeek) -> String {
    let peer = ring.peer;
    match (ring.state, ring.quarantine) {
        (Some(PeerState::Quarantined), reason) => {
            let why = reason.map_or_else(|| "no reason recorded".to_string(), |r| r.to_string());
            format!(
                "; peer {peer} (quarantined: {why}) is cut off: nothing on this ring is received"
            )
        }
        (None, _) => format!(
            "; peer {peer}'s entry holds no known state ({}): a host cuts it off when it looks",
            ring.raw_state
        ),
        _ => String::new(),
    }
}

/// One message as table cells.
fn row(m: &QueuedMessage) -> Vec<String> {
    let kind = match m.msg_type_name {
        Some(name) => format!("{name} ({})", m.msg_type),
        None => m.msg_type.to_string(),
    };
    let placement = match m.slot {
        None => "inline".to_string(),
        Some(s) if s.offset == 0 => format!("slot {} gen {}", s.index, s.generation),
        Some(s) => format!("slot {} gen {} +{}", s.index, s.generation, s.offset),
    };
    let preview = match (&m.problem, &m.preview) {
        (Some(reason), _) => format!("invalid: {reason}"),
        (None, Some(p)) => {
            let shown = match &p.text {
                Some(text) => format!("{text:?}"),
                None => format!("hex {}", p.hex),
            };
            if p.truncated {
                format!("{shown}...")
            } else {
                shown
            }
        }
        (None, None) => String::new(),
    };
    vec![
        m.position.to_string(),
        m.id.to_string(),
        kind,
        m.method_id.to_string(),
        format!("{:#06x}", m.flags),
        m.len.to_string(),
        placement,
        preview,
    ]
}
