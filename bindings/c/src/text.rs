//! Error lines as the `shmhub` command prints them (after its `error: `):
//! a path written so that no name can split the line or move a terminal's
//! cursor, and every message on one line.

use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as the command prints it: as it is, except a backslash written
/// `\\`, escape, newline, carriage return and tab written `\e`, `\n`, `\r`
/// and `\t`, and every other byte that is not part of a printable
/// character written `\xNN`.
pub(crate) fn shown(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        escape(&mut out, chunk.valid(), true);
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// `message` on one line: what [`shown`] escapes, escaped, except the
/// backslash (names in it were shown already).
pub(crate) fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    escape(&mut out, message, false);
    out
}

/// A library message that names `path` the way `Path::display` writes it,
/// with the path [`shown`] instead, on one line.
pub(crate) fn naming(message: &str, path: &Path) -> String {
    let raw = path.display().to_string();
    let escaped = shown(path);
    if raw == escaped {
        one_line(message)
    } else {
        one_line(&message.replace(&raw, &escaped))
    }
}

fn escape(out: &mut String, text: &str, backslash: bool) {
    for c in text.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\x1b' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unprintable(c) => {
                let mut bytes = [0; 4];
                for byte in c.encode_utf8(&mut bytes).bytes() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            c => out.push(c),
        }
    }
}

/// A control character, a bidirectional control, a line or paragraph
/// separator.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn names_and_messages_stay_on_one_line() {
        let odd = Path::new(OsStr::from_bytes(b"/tmp/a\nb\\c\xff"));
        assert_eq!(shown(odd), "/tmp/a\\nb\\\\c\\xff");
        assert_eq!(one_line("x\ty\0"), "x\\ty\\x00");
        let message = format!("{}: not a regular file", odd.display());
        assert_eq!(
            naming(&message, odd),
            format!("{}: not a regular file", shown(odd))
        );
        assert_eq!(shown(Path::new("/dev/shm/plain")), "/dev/shm/plain");
    }
}
