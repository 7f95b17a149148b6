//! `shmhub inspect SEGMENT --watch`: the tables redrawn every interval,
//! with messages per second on each ring and the holder changes since the
//! last frame; JSON Lines when asked or when output is not a terminal.
//!
//! It only ever looks (read-only, like `inspect`), so watching changes
//! nothing.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};
use serde_json::json;
use shmhub::admin::{Event, SegmentReport, Snapshot};

use super::json::to_json;
use super::tables::{Live, Part, tables};
use crate::cmd::clock::{self, Zone};
use crate::cmd::error::seg_err;
use crate::cmd::exit::Outcome;
use crate::cmd::segment::inspect_every_entry;
use crate::cmd::text::{describe, print_line, shown};
use crate::cmd::{signals, table};

/// Watches the segment at `path` until a termination signal (exit 0), its
/// removal (exit 0, with a note) or an error (exit 1).
pub fn run(
    path: &Path,
    interval: Duration,
    all: bool,
    json: bool,
    zone: Zone,
) -> anyhow::Result<Outcome> {
    if interval.is_zero() {
        crate::usage!("--interval must be more than 0");
    }
    signals::catch_termination();
    let terminal = std::io::stdout().is_terminal();
    let as_json = json || !terminal;
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Frames go to the alternate screen, so that the scrollback keeps what
    // was there before and no frames. It is left before anything else is
    // said (the removal's note here, an error by `main` once this returns):
    // said on the alternate screen, it would vanish with it.
    let screen = (!as_json).then(AlternateScreen::enter).transpose()?;
    let end = frames(path, interval, all, as_json, zone, colour);
    drop(screen);
    if let Ok(End::Removed) = end {
        eprintln!("{}: the segment was removed", shown(&path));
    }
    end.map(|_| Outcome::Done)
}

/// How a watch ended, other than by an error.
enum End {
    /// A termination signal came.
    Stopped,
    /// The segment was removed after the first frame.
    Removed,
}

/// Draws a frame every `interval` (a JSON line if `as_json`) until a
/// signal, the segment's removal or an error.
fn frames(
    path: &Path,
    interval: Duration,
    all: bool,
    as_json: bool,
    zone: Zone,
    colour: bool,
) -> anyhow::Result<End> {
    let mut previous: Option<(SegmentReport, Instant)> = None;
    let mut frame = Vec::new();
    loop {
        // Frames are compared entry by entry: every entry must be readable.
        let report = match inspect_every_entry(path) {
            Ok(report) => report,
            Err(shmhub::Error::Io { cause, .. })
                if cause.kind() == std::io::ErrorKind::NotFound && previous.is_some() =>
            {
                return Ok(End::Removed);
            }
            Err(e) => return Err(seg_err(path, e).into()),
        };
        let now = Instant::now();
        let (rates, changes) = match &previous {
            Some((before, at)) => (
                rates(before, &report, now.duration_since(*at)),
                shmhub::admin::changes(&Snapshot::of(before), &Snapshot::of(&report)),
            ),
            None => (vec![(0.0, 0.0); report.peers.len()], Vec::new()),
        };
        if as_json {
            print_line(frame_json(&report, &rates, &changes)?)?;
        } else {
            frame = frame_lines(&report, all, zone, Live { rates, colour }, &changes);
            show(&frame)?;
        }
        previous = Some((report, now));
        if wait_redrawing(interval, &frame)? {
            return Ok(End::Stopped);
        }
    }
}

/// Messages per second on each guest's two rings (to the host, to the
/// guest), from how far each tail moved in `elapsed`.
fn rates(before: &SegmentReport, after: &SegmentReport, elapsed: Duration) -> Vec<(f64, f64)> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    before
        .peers
        .iter()
        .zip(&after.peers)
        .map(|(b, a)| {
            let moved = |x: u32, y: u32| f64::from(y.wrapping_sub(x)) / secs;
            (
                moved(b.to_host.tail, a.to_host.tail),
                moved(b.to_guest.tail, a.to_guest.tail),
            )
        })
        .collect()
}

/// One JSON Lines frame.
fn frame_json(
    report: &SegmentReport,
    rates: &[(f64, f64)],
    changes: &[Event],
) -> serde_json::Result<serde_json::Value> {
    let mut frame = to_json(report)?;
    let now = clock::now_ns();
    frame["time"] = json!(clock::utc(now));
    frame["time_unix_ms"] = json!(now / 1_000_000);
    frame["rates"] = rates
        .iter()
        .enumerate()
        .map(|(i, (up, down))| json!({ "peer_id": i + 1, "to_host_per_s": up, "to_guest_per_s": down }))
        .collect();
    frame["changes"] = json!(changes);
    Ok(frame)
}

/// The terminal's alternate screen, cursor hidden, for as long as this
/// lives: left again, cursor shown, when it is dropped, which every way out
/// of the watch does (a signal sets a flag that ends the loop; an error
/// returns through it).
struct AlternateScreen;

impl AlternateScreen {
    fn enter() -> std::io::Result<Self> {
        // Terminal size changes redraw the frame at once, not at the next
        // interval. Registered once: a second watch in one process is not
        // a thing, but a second registration would be harmless.
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        REGISTERED.call_once(|| {
            // Fails only for a signal that cannot be caught; SIGWINCH can.
            let _ = signal_hook::flag::register(libc::SIGWINCH, &RESIZED);
        });
        execute!(std::io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(AlternateScreen)
    }
}

impl Drop for AlternateScreen {
    fn drop(&mut self) {
        let _ = execute!(std::io::stdout(), Show, LeaveAlternateScreen);
    }
}

/// Set by SIGWINCH: the terminal changed size since the last frame.
static RESIZED: AtomicBool = AtomicBool::new(false);

/// How often a wait between frames looks for a resize or a signal.
const RESIZE_CHECK: Duration = Duration::from_millis(50);

/// Waits out `interval`; redraws `frame` at once, fitted anew, when the
/// terminal is resized meanwhile. True if a termination signal came.
fn wait_redrawing(interval: Duration, frame: &[String]) -> anyhow::Result<bool> {
    let deadline = Instant::now() + interval;
    loop {
        if signals::terminate_requested() {
            return Ok(true);
        }
        if RESIZED.swap(false, Ordering::Relaxed) {
            show(frame)?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        std::thread::sleep(left.min(RESIZE_CHECK));
    }
}

/// The lines of a frame that fit a terminal of `size` (columns, rows;
/// all of them where the terminal does not say): the last row that fits
/// says how many more there are, and each line is cut at the width, so
/// that no line wraps onto a second row and a frame never scrolls the
/// screen.
fn fitted(mut lines: Vec<String>, size: Option<(u16, u16)>) -> Vec<String> {
    let Some((columns, rows)) = size else {
        return lines;
    };
    let rows = usize::from(rows);
    if rows > 0 && lines.len() > rows {
        let hidden = lines.len() - (rows - 1);
        lines.truncate(rows - 1);
        lines.push(format!(
            "... {hidden} more lines (a taller terminal shows them)"
        ));
    }
    if columns > 0 {
        for line in &mut lines {
            clip(line, usize::from(columns));
        }
    }
    lines
}

/// Cuts `line` to `columns` display columns, its last one a `…` when
/// anything was cut. Escape sequences (colours) take no column and are
/// kept; a colour cut off in its middle is reset, so that it does not
/// run on into the cleared rest of the row.
fn clip(line: &mut String, columns: usize) {
    use unicode_width::UnicodeWidthChar;
    let mut used = 0;
    let mut escaped = false;
    let mut in_escape = false;
    // Where the line is cut if it does not fit: after the last character
    // that leaves a column for the `…`.
    let mut cut = None;
    for (at, c) in line.char_indices() {
        if in_escape {
            in_escape = !(c.is_ascii_alphabetic() || c == '~');
            continue;
        }
        if c == '\x1b' {
            escaped = true;
            in_escape = true;
            continue;
        }
        let width = c.width().unwrap_or(0);
        if used + width > columns.saturating_sub(1) && cut.is_none() {
            cut = Some(at);
        }
        used += width;
        if used > columns {
            break;
        }
    }
    if used <= columns {
        return;
    }
    line.truncate(cut.unwrap_or(0));
    line.push('…');
    if escaped {
        line.push_str("\x1b[0m");
    }
}

/// The lines of one frame: the tables, then the changes seen.
fn frame_lines(
    report: &SegmentReport,
    all: bool,
    zone: Zone,
    live: Live,
    changes: &[Event],
) -> Vec<String> {
    let mut lines = Vec::new();
    for part in tables(report, all, zone, Some(&live)) {
        let block = match part {
            Part::Table(t) => table::render(*t),
            Part::Note(note) => note,
        };
        lines.extend(block.lines().map(str::to_string));
    }
    for event in changes {
        lines.push(format!("change: {}", describe(*event)));
    }
    lines
}

/// Draws `frame` over the last one: from the top left, as much as fits,
/// each row cleared before its line is drawn (after it, the clear would
/// erase a line as wide as the row: the cursor stays on its last column),
/// then the rest of the screen cleared. No line ends the last row, which
/// would scroll.
fn show(frame: &[String]) -> anyhow::Result<()> {
    let lines = fitted(frame.to_vec(), crossterm::terminal::size().ok());
    let mut out = std::io::stdout().lock();
    queue!(out, MoveTo(0, 0))?;
    for (i, line) in lines.iter().enumerate() {
        queue!(out, Clear(ClearType::UntilNewLine), Print(line))?;
        if i + 1 < lines.len() {
            queue!(out, Print('\n'))?;
        }
    }
    queue!(out, Clear(ClearType::FromCursorDown))?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::clip;

    fn clipped(line: &str, columns: usize) -> String {
        let mut line = line.to_string();
        clip(&mut line, columns);
        line
    }

    #[test]
    fn a_line_that_fits_is_kept_whole() {
        assert_eq!(clipped("abcd", 4), "abcd");
        assert_eq!(clipped("\x1b[31mabcd\x1b[0m", 4), "\x1b[31mabcd\x1b[0m");
    }

    #[test]
    fn a_wider_line_is_cut_at_the_width_in_display_columns() {
        assert_eq!(clipped("abcdef", 4), "abc…");
        // Each of these takes two columns.
        assert_eq!(clipped("日本語です", 6), "日本…");
        assert_eq!(clipped("日本語です", 7), "日本語…");
        // Colours take no column, and one cut off is reset.
        assert_eq!(clipped("\x1b[31mabcdef", 4), "\x1b[31mabc…\x1b[0m");
    }
}
