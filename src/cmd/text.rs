//! Words and lines for people: printing, sizes, owners, rings, events,
//! progress.

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmhub::Direction;
use shmhub::admin::Event;

/// Writes one line to standard output. A closed output (`| head`) comes
/// back as an error that ends the command quietly, never as a panic.
pub fn print_line(text: impl fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Prints `report` as one JSON document when `json`, else as `text` lays
/// it out for people.
pub fn print_report<T: serde::Serialize>(
    report: &T,
    json: bool,
    text: impl FnOnce(&T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if json {
        print_line(serde_json::to_value(report)?)
    } else {
        text(report)
    }
}

/// Whether an error is standard output having been closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The owner of a file as people read it: `alice:staff 0600`.
pub fn owner_text(owner: &shmhub::admin::FileOwner) -> String {
    format!(
        "{}:{} {:04o}",
        account_name("/etc/passwd", owner.uid),
        account_name("/etc/group", owner.gid),
        owner.mode
    )
}

/// The name of user or group `id` from a passwd-format file, or the number
/// where it has none.
pub fn account_name(database: &str, id: u32) -> String {
    let id_text = id.to_string();
    std::fs::read_to_string(database)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == id_text).then(|| name.to_string())
            })
        })
        .unwrap_or(id_text)
}

/// Whether progress should be drawn (stderr is a terminal).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar for `total` steps on stderr, hidden unless stderr is a
/// terminal.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, eta {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A spinner on stderr, hidden unless stderr is a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// An age as people read it: `42s`, `17m`, `3h`, `5d`.
pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Human form of a byte count: `512 B`, `4.0 KiB`, `37.1 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A heartbeat interval in words: `off` or `N ms`.
pub fn heartbeat(interval_ms: u32) -> String {
    if interval_ms == 0 {
        "off".into()
    } else {
        format!("{interval_ms} ms")
    }
}

/// A ring in a few words: `peer 1 to guest`.
pub fn ring_label(peer: u8, direction: Direction) -> String {
    let way = match direction {
        Direction::GuestToHost => "to host",
        Direction::HostToGuest => "to guest",
    };
    format!("peer {peer} {way}")
}

/// An event in words.
pub fn describe(event: Event) -> String {
    match event {
        Event::Attached { peer, pid: 0, .. } => format!("peer {peer} attached (scripted)"),
        Event::Attached { peer, pid, .. } => format!("peer {peer} attached (pid {pid})"),
        Event::Detached { peer } => format!("peer {peer} detached"),
        Event::SaidGoodbye { peer } => {
            format!("peer {peer} said goodbye (the host has its messages to read)")
        }
        Event::Reserved { peer } => format!("peer {peer} reserved by the host"),
        Event::Released { peer } => format!("peer {peer} released (never attached)"),
        Event::HolderDied { peer, pid } => format!("peer {peer} died (pid {pid})"),
        Event::HolderStale { peer, pid } => {
            format!("peer {peer} stale (pid {pid} runs but stopped beating)")
        }
        Event::Reclaimed { peer } => format!("peer {peer} reclaimed"),
        Event::HostLeft => "the host said goodbye".to_string(),
        Event::HostDied { pid } => format!("the host died (pid {pid})"),
        Event::Removed => "the segment was removed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_as_people_write_them() {
        for (bytes, text) in [(512, "512 B"), (4096, "4.0 KiB"), (3 << 20, "3.0 MiB")] {
            assert_eq!(human_bytes(bytes), text);
        }
        let (minute, hour, day) = (60, 3600, 86400);
        for (secs, text) in [
            (5, "5s"),
            (10 * minute, "10m"),
            (3 * hour, "3h"),
            (9 * day, "9d"),
        ] {
            assert_eq!(human_age(secs), text);
        }
    }
}
