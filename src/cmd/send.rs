//! `shmhub send`: send messages as the host or as a guest.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use shmhub::{Frame, MsgDesc, ShmGuest, ShmHost};

use super::common::{
    Role, parse_duration, parse_msg_type, parse_peer_id, parse_role, print_line, progress_bar,
    seg_err,
};
use super::{Outcome, segment_path};

const EXAMPLES: &str = "\
Examples:
  shmhub send demo --as host --to 1 hello
  shmhub send demo --as 1 --file photo.jpg
  echo hi | shmhub send demo --as 2 -
  shmhub send demo --as host --to 1 --count 10000 --msg-type request ping";

/// Arguments of `shmhub send`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Send as `host` or as guest N.
    #[arg(long = "as", value_parser = parse_role, value_name = "host|N")]
    pub role: Role,
    /// The guest to send to (with --as host).
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub to: Option<u8>,
    /// The payload; `-` reads standard input.
    #[arg(value_name = "MESSAGE", conflicts_with = "file")]
    pub message: Option<String>,
    /// Read the payload from a file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Message type: a number or data, request, response, error, ping, pong.
    #[arg(long, default_value = "data", value_parser = parse_msg_type, value_name = "TYPE")]
    pub msg_type: u16,
    /// Message id (with --count, ids count up from it).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub id: u64,
    /// Method id.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub method: u32,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub count: u64,
    /// How long to wait for room in a full ring or a free slot (then exit 3).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

enum Sender {
    Host(Box<ShmHost>, u8),
    Guest(Box<ShmGuest>),
}

impl Sender {
    fn send(&mut self, frame: &Frame, timeout: Duration) -> shmhub::Result<()> {
        match self {
            Sender::Host(host, to) => host.send_timeout(*to, frame, Some(timeout)),
            Sender::Guest(guest) => guest.send_timeout(frame, Some(timeout)),
        }
    }

    fn max_payload(&self) -> u32 {
        match self {
            Sender::Host(host, _) => host.config().max_payload,
            Sender::Guest(guest) => guest.config().max_payload,
        }
    }
}

fn read_payload(args: &Args) -> anyhow::Result<Vec<u8>> {
    if let Some(file) = &args.file {
        return std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()));
    }
    match args.message.as_deref() {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            Ok(buf)
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
        None => crate::usage!("no payload: give MESSAGE, --file PATH, or - for standard input"),
    }
}

/// Runs `shmhub send`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let path = segment_path(&args.segment)?;
    if args.count == 0 {
        crate::usage!("--count must be at least 1");
    }
    let (to, opened) = match (args.role, args.to) {
        (Role::Host, Some(to)) => (
            Role::Guest(to),
            ShmHost::open(&path).map(|h| Sender::Host(Box::new(h), to)),
        ),
        (Role::Host, None) => crate::usage!("--as host needs --to N (the guest to send to)"),
        (Role::Guest(_), Some(_)) => {
            crate::usage!("--to goes with --as host; a guest always sends to the host")
        }
        (Role::Guest(n), None) => (
            Role::Host,
            ShmGuest::resume(&path, n).map(|g| Sender::Guest(Box::new(g))),
        ),
    };
    let payload = read_payload(&args)?;
    let mut sender = opened.map_err(|e| seg_err(&path, e))?;
    // Refuse an oversized payload before anything is written.
    if payload.len() > sender.max_payload() as usize {
        bail!(
            "{}: payload of {} bytes exceeds the segment's max payload of {} bytes",
            path.display(),
            payload.len(),
            sender.max_payload()
        );
    }
    let bar = if args.count > 1 {
        Some(progress_bar(args.count, "sending"))
    } else {
        None
    };
    let mut sent = 0u64;
    let mut frame = Frame::new(
        MsgDesc {
            msg_type: args.msg_type,
            method_id: args.method,
            ..MsgDesc::default()
        },
        payload,
    );
    for i in 0..args.count {
        frame.desc.id = args.id.wrapping_add(i);
        if let Err(e) = sender.send(&frame, args.timeout) {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            let err = seg_err(&path, e);
            return Err(if sent > 0 {
                err.context(format!("sent {sent} of {} messages", args.count))
            } else {
                err
            });
        }
        sent += 1;
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let len = frame.payload().len();
    if args.json {
        let to_value = match to {
            Role::Host => json!("host"),
            Role::Guest(n) => json!(n),
        };
        let from_value = match args.role {
            Role::Host => json!("host"),
            Role::Guest(n) => json!(n),
        };
        print_line(
            json!({ "from": from_value, "to": to_value, "sent": sent, "len": len, "placement": if frame.fits_inline() { "inline" } else { "slot" } }),
        )?;
    }
    Ok(Outcome::Done)
}
