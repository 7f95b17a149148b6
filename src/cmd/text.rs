//! Words and lines for people: printing, names and paths, sizes,
//! owners, rings, events, progress.

use std::ffi::OsStr;
use std::fmt;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmhub::admin::Event;
use shmhub::{Direction, PeerId, QuarantineReason};

use super::accounts;

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

/// A name or a path as the command prints it for people (tables, lines,
/// error messages): every byte that is not part of a printable character
/// written as an escape, so that no name can move the cursor, recolour
/// the terminal or split a line, and no two names print alike. See
/// [`shown`].
#[derive(Clone, Copy)]
pub struct Shown<'a>(&'a OsStr);

/// `name` (a segment name, a path, an account name) as the command prints
/// it for people: as it is, except
///
/// - a backslash, written `\\`;
/// - escape, newline, carriage return and tab, written `\e`, `\n`, `\r`
///   and `\t`;
/// - every other byte that is not part of a printable character: other
///   control characters (C0, DEL, C1), the characters that reorder text
///   or break a line (bidirectional controls, U+2028, U+2029), and bytes
///   that are not UTF-8, written `\xNN`, byte by byte (a character by
///   the bytes of its UTF-8 encoding).
///
/// An ordinary name prints as it is; bash reads the printed text between
/// `$'` and `'` as the name again (a `'` in it written `\'`).
///
/// JSON keeps the exact name (see [`path_json`]).
pub fn shown<P: AsRef<OsStr> + ?Sized>(name: &P) -> Shown<'_> {
    Shown(name.as_ref())
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.as_bytes().utf8_chunks() {
            escape(f, chunk.valid(), Backslash::Escaped)?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// A message as one line for a terminal: every character [`shown`]
/// escapes written as it writes it, except the backslash, left as it is
/// (the names in the message were [`shown`] already). For what the
/// command prints that it did not write itself: the library's messages,
/// the operating system's.
pub struct OneLine<'a>(pub &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, Backslash::AsIs)
    }
}

/// A message that names `path` the way `Path::display` writes it (the
/// library's messages do), with the path [`shown`], as one line
/// ([`OneLine`]).
pub fn naming(message: &str, path: &Path) -> String {
    let raw = path.display().to_string();
    let escaped = shown(path).to_string();
    let message = if raw == escaped {
        message.to_string()
    } else {
        message.replace(&raw, &escaped)
    };
    OneLine(&message).to_string()
}

/// `path` in JSON: the exact string, which JSON escapes itself; a path
/// that is not UTF-8, which no JSON string can hold, as [`shown`] prints
/// it.
pub fn path_json(path: &Path) -> serde_json::Value {
    match path.to_str() {
        Some(text) => text.into(),
        None => shown(path).to_string().into(),
    }
}

/// Whether [`escape`] escapes the backslash: it does in a name, so that
/// the text reads back as the name; a message whose names were escaped
/// already keeps its backslashes as they are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backslash {
    Escaped,
    AsIs,
}

/// Writes `text` with the characters [`shown`] escapes escaped, the
/// backslash as `backslash` says.
fn escape(out: &mut impl fmt::Write, text: &str, backslash: Backslash) -> fmt::Result {
    let mut plain = 0;
    for (at, c) in text.char_indices() {
        let short = match c {
            '\\' if backslash == Backslash::Escaped => "\\\\",
            '\x1b' => "\\e",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if unprintable(c) => "",
            _ => continue,
        };
        out.write_str(&text[plain..at])?;
        plain = at + c.len_utf8();
        if short.is_empty() {
            for byte in text[at..plain].bytes() {
                write!(out, "\\x{byte:02x}")?;
            }
        } else {
            out.write_str(short)?;
        }
    }
    out.write_str(&text[plain..])
}

/// Whether `c` does something to a terminal or to the text around it
/// rather than print: a control character, a bidirectional control, a
/// line or paragraph separator.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether an error is standard output having been closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The owner of a file as people read it: `alice:staff 0600`, each name
/// from the system's user database ([`user_text`], [`group_text`]).
pub fn owner_text(owner: &shmhub::admin::FileOwner) -> String {
    format!(
        "{}:{} {}",
        user_text(owner.uid),
        group_text(owner.gid),
        mode_text(owner.mode)
    )
}

/// A file's permission bits as people write them, in octal: `0600`,
/// `0660`. JSON gives a mode as this string too, wherever it appears
/// (`create --json`, the `owner` of `inspect --json` and `ls --json`).
pub fn mode_text(mode: u32) -> String {
    format!("{mode:04o}")
}

/// The owner of a file in JSON: `{"uid","gid","mode"}`, the mode as
/// [`mode_text`] writes it.
pub fn owner_json(owner: &shmhub::admin::FileOwner) -> serde_json::Value {
    serde_json::json!({
        "uid": owner.uid,
        "gid": owner.gid,
        "mode": mode_text(owner.mode),
    })
}

/// User `uid` as people read it: its name in the system's user database
/// ([`shown`]), or the number where it has none.
pub fn user_text(uid: u32) -> String {
    account_text(accounts::user_name(uid), uid)
}

/// Group `gid` as people read it: its name in the system's group
/// database ([`shown`]), or the number where it has none.
pub fn group_text(gid: u32) -> String {
    account_text(accounts::group_name(gid), gid)
}

fn account_text(name: Option<std::ffi::OsString>, id: u32) -> String {
    name.map_or_else(|| id.to_string(), |name| shown(&name).to_string())
}

/// Whether progress should be drawn (stderr is a terminal).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// How many columns the terminal on stderr has, if it says.
fn stderr_columns() -> Option<u16> {
    // The controlling terminal's size: the bar is drawn only when stderr
    // is a terminal, which is that one.
    crossterm::terminal::size()
        .ok()
        .map(|(columns, _)| columns)
        .filter(|&columns| columns > 0)
}

/// The progress line for a terminal `columns` wide: the parts that fit,
/// the bar taking what is left, so that the line never wraps (a wrapped
/// line is not cleared when the bar redraws, and leaves rows behind).
fn progress_template(columns: Option<u16>) -> &'static str {
    match columns {
        Some(c) if c >= 80 => "{msg} {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        Some(c) if c >= 50 => "{msg} {wide_bar} {pos}/{len}",
        Some(c) if c >= 30 => "{wide_bar} {pos}/{len}",
        // Too narrow, or a terminal that will not say its width: the
        // count alone, short enough for any line.
        _ => "{pos}/{len}",
    }
}

/// Standard error as a terminal of a width we measured ourselves: a
/// terminal that reports 0 rows or 0 columns is taken by the terminal
/// library for 80 columns, and a line padded to 80 wraps on a narrower
/// one, leaving a row behind at every redraw.
#[derive(Debug)]
struct StderrTerminal {
    columns: u16,
}

impl StderrTerminal {
    fn write(&self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        std::io::stderr().lock().write_all(text.as_bytes())
    }

    fn moved(&self, n: usize, direction: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{direction}"))
    }
}

impl indicatif::TermLike for StderrTerminal {
    fn width(&self) -> u16 {
        self.columns
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        use std::io::Write;
        std::io::stderr().flush()
    }
}

/// A progress bar for `total` steps on stderr, hidden unless stderr is a
/// terminal, and fitted to its width (a terminal that does not say its
/// width gets the count alone, a line short enough for any).
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let columns = stderr_columns();
    let terminal = StderrTerminal {
        columns: columns.unwrap_or(20),
    };
    let target = ProgressDrawTarget::term_like(Box::new(terminal));
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template(progress_template(columns))
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

/// `n` things in words, singular for one: `1 guest`, `8 guests`,
/// `1 entry`, `3 entries`.
pub fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
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

/// A ring in a few words: `peer 1 to guest`.
pub fn ring_label(peer: PeerId, direction: Direction) -> String {
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
        Event::Quarantined {
            peer,
            reason: Some(QuarantineReason::Evicted),
        } => format!("peer {peer} evicted by the host (cut off)"),
        Event::Quarantined {
            peer,
            reason: Some(reason),
        } => format!("peer {peer} cut off for breaking the protocol ({reason})"),
        Event::Quarantined { peer, reason: None } => {
            format!("peer {peer} cut off for breaking the protocol")
        }
        Event::Reclaimed { peer } => format!("peer {peer} reclaimed"),
        Event::HostLeft => "the host said goodbye".to_string(),
        Event::HostDied { pid } => format!("the host died (pid {pid})"),
        Event::BadState { peer, raw_state } => {
            format!("peer {peer} has a bad state word {raw_state}")
        }
        Event::Removed => "the segment was removed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_they_are_unless_they_would_not_print() {
        let cases: [(&[u8], &str); 9] = [
            (b"demo-1.shm", "demo-1.shm"),
            ("caf\u{e9} 2".as_bytes(), "caf\u{e9} 2"),
            (b"a\\b", "a\\\\b"),
            (b"esc\x1b[31mred", "esc\\e[31mred"),
            (b"a\nb\rc\td", "a\\nb\\rc\\td"),
            (b"bell\x07del\x7f", "bell\\x07del\\x7f"),
            ("c1\u{85}".as_bytes(), "c1\\xc2\\x85"),
            ("rtl\u{202e}".as_bytes(), "rtl\\xe2\\x80\\xae"),
            (b"bad\xff\xfe.", "bad\\xff\\xfe."),
        ];
        for (name, printed) in cases {
            assert_eq!(shown(OsStr::from_bytes(name)).to_string(), printed);
        }
    }

    #[test]
    fn library_messages_name_their_file_escaped_on_one_line() {
        let path = Path::new("/dev/shm/x\x1b[2J");
        let message = format!("{}: segment file was removed", path.display());
        assert_eq!(
            naming(&message, path),
            "/dev/shm/x\\e[2J: segment file was removed"
        );
        // Already shown names keep their backslashes; controls are escaped.
        assert_eq!(OneLine("a\\e\nb").to_string(), "a\\e\\nb");
        assert_eq!(path_json(path), "/dev/shm/x\x1b[2J");
        assert_eq!(
            path_json(Path::new(OsStr::from_bytes(b"/x\xff"))),
            "/x\\xff"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        for (bytes, text) in [(512, "512 B"), (4096, "4.0 KiB"), (3 << 20, "3.0 MiB")] {
            assert_eq!(human_bytes(bytes), text);
        }
    }
}
