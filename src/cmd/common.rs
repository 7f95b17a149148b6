//! Argument parsers and helpers shared by the subcommands.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// An error that ends the command with exit code 3 (timed out).
#[derive(Debug)]
pub struct TimedOut(pub String);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// A termination signal (SIGINT, SIGTERM, SIGHUP) stopped a waiting
/// command before it was done: exit code 128 + the signal number, as a
/// shell reports a process killed by it.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", super::signals::name(self.0))
    }
}

impl std::error::Error for Interrupted {}

/// How long one wait lasts before a waiting command looks at signals again.
pub const WAIT_SLICE: Duration = Duration::from_millis(100);

/// An error in how the command was called: exit code 2, like the
/// argument parser's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::cmd::common::UsageError(format!($($arg)*))))
    };
}

/// Writes one line to standard output. A closed output (`| head`) comes
/// back as an error that ends the command quietly, never as a panic.
pub fn print_line(text: impl fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Whether an error is standard output having been closed by its reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prefixes a library error with the segment path, unless it names the
/// path already.
pub fn seg_err(path: &Path, e: shmhub::Error) -> anyhow::Error {
    use shmhub::Error as E;
    match e {
        E::Io { path, cause } if cause.kind() == std::io::ErrorKind::PermissionDenied => {
            anyhow!("{}: {cause}{}", path.display(), who_may_use(&path))
        }
        E::ForeignOwner { path, .. } => anyhow!(
            "{}: owned by another user{}: refusing to trust a segment another user controls \
             (a squatter could be waiting for guests' data); --allow-foreign-owner opens it anyway",
            path.display(),
            who_may_use(&path)
        ),
        E::NoSpace { path, needed } => anyhow!(
            "{}: no space left on the file system for {}",
            path.display(),
            human_bytes(needed)
        ),
        E::Io { .. }
        | E::Symlink { .. }
        | E::NotAFile { .. }
        | E::TooSmall { .. }
        | E::TooLarge { .. }
        | E::Truncated { .. }
        | E::Replaced { .. }
        | E::Removed { .. } => anyhow!(e),
        E::RingFull { .. }
        | E::PoolExhausted { .. }
        | E::ShareExhausted { .. }
        | E::Timeout
        | E::Changing { .. } => {
            anyhow!(TimedOut(format!("{}: {e}", path.display())))
        }
        e => anyhow!("{}: {e}", path.display()),
    }
}

/// The owner of a file as people read it: `alice:staff 0600`.
pub fn owner_text(owner: &shmhub::FileOwner) -> String {
    format!(
        "{}:{} {:04o}",
        account_name("/etc/passwd", owner.uid),
        account_name("/etc/group", owner.gid),
        owner.mode
    )
}

/// Who may use the file at `path`, for a permission error: its mode and
/// owner, e.g. ` (mode 0600, owner root)`; empty if it cannot be read.
fn who_may_use(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return String::new();
    };
    format!(
        " (mode {:04o}, owner {}, group {})",
        meta.mode() & 0o7777,
        account_name("/etc/passwd", meta.uid()),
        account_name("/etc/group", meta.gid()),
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

/// What is already at a path where a segment was to be created.
pub struct Existing {
    /// In words, following "PATH: already exists": `: a segment whose
    /// host (pid 7) is alive`, ` and is not a regular file`, ...
    pub what: String,
    /// The `shmhub rm` that removes it, if it is a segment (one that
    /// `create --force` replaces); `None`: shmhub never deletes it.
    pub rm: Option<&'static str>,
}

/// Looks at what is at `path` (read-only, never blocking): a segment, and
/// whether its host lives; a damaged segment; or something that is not a
/// segment at all.
pub fn existing(path: &Path) -> Existing {
    use shmhub::{Error as E, HostStatus};
    let report = shmhub::inspect_path(path).and_then(shmhub::SegmentReport::require_all_entries);
    let (what, rm) = match report {
        Ok(report) => {
            let pid = report.header.host_pid;
            let host = match report.host {
                HostStatus::Alive => format!("whose host (pid {pid}) is alive"),
                HostStatus::Dead => format!("whose host (pid {pid}) is dead"),
                HostStatus::Gone => "whose host has left (goodbye)".to_string(),
                HostStatus::NoProcess => "with no host process (a plain create)".to_string(),
            };
            (format!(": a segment {host}"), Some("rm"))
        }
        Err(e @ (E::CorruptHeader { .. } | E::Corrupt(_) | E::VersionMismatch { .. })) => {
            (format!(": a damaged segment ({e})"), Some("rm --force"))
        }
        Err(E::Symlink { .. }) => (" and is a symbolic link".to_string(), None),
        Err(E::NotAFile { .. }) => (" and is not a regular file".to_string(), None),
        Err(E::TooSmall { len, .. }) => (
            format!(" and is not a shmhub segment (a file of {len} bytes)"),
            None,
        ),
        Err(e @ (E::NotASegment { .. } | E::NotReady)) => {
            (format!(" and is not a shmhub segment ({e})"), None)
        }
        Err(E::Io { cause, .. }) => (format!(" ({cause})"), None),
        Err(e) => (format!(" ({e})"), None),
    };
    Existing { what, rm }
}

/// The error for a path that a new segment cannot be created at because
/// something is already there: what that is (see [`existing`]), then what
/// to do: for `create`, `--force` and `rm` where they apply; for the
/// commands that make a segment of their own, another name.
pub fn already_exists(path: &Path, create: bool) -> anyhow::Error {
    let shown = path.display();
    let Existing { what, rm } = existing(path);
    let advice = match (create, rm) {
        (true, Some(rm)) => format!(
            "--force replaces it (asking its host and guests to leave), `shmhub {rm} {shown}` removes it"
        ),
        (true, None) => "it is never replaced, not even with --force".to_string(),
        (false, _) => "choose another --segment".to_string(),
    };
    anyhow!("{shown}: already exists{what}; {advice}")
}

/// Like [`seg_err`], for a command that waited up to its `--timeout`: a
/// role that another process still held when the time was up is a timeout
/// too (exit 3), so that scripts that retry on 3 catch it.
pub fn seg_err_timed(path: &Path, e: shmhub::Error) -> anyhow::Error {
    match e {
        shmhub::Error::Busy { .. } => anyhow!(TimedOut(format!("{}: {e}", path.display()))),
        e => seg_err(path, e),
    }
}

/// The error that ends a held command: when the segment file itself has
/// changed (truncated, replaced, removed), that is the cause to report,
/// whatever the operation that tripped over it said.
pub fn held_error(path: &Path, file_check: shmhub::Result<()>, e: shmhub::Error) -> anyhow::Error {
    match file_check {
        Err(changed) => seg_err(path, changed),
        Ok(()) => seg_err(path, e),
    }
}

/// Parses a byte size: a whole number, optionally followed by a unit.
/// Units are binary and case-insensitive: `k`, `kb` and `kib` all mean
/// 1024 bytes, and likewise `m`, `g` and `t`; `b` (or nothing) means bytes.
/// So `4096`, `4k`, `4KiB` and `4KB` are the same size.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!("{text:?} is not a size (try 4096, 4KiB, 1MiB)"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "unknown size unit {:?} in {text:?} (use B, KiB, MiB, GiB or TiB; K, KB and KiB all mean 1024 bytes)",
                unit
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a size that must fit in a `u32`.
pub fn parse_size_u32(text: &str) -> Result<u32, String> {
    let n = parse_size(text)?;
    u32::try_from(n).map_err(|_| format!("{text:?} is too large (at most 4GiB - 1)"))
}

/// Parses a duration: `0`, `250ms`, `5s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 5s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m, h)"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a message type: a name (`data`, `request`, ...) or a number.
pub fn parse_msg_type(text: &str) -> Result<u16, String> {
    if let Some((_, v)) = shmhub::msg_type::NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
    {
        return Ok(*v);
    }
    text.parse().map_err(|_| {
        let names: Vec<&str> = shmhub::msg_type::NAMES.iter().map(|(n, _)| *n).collect();
        format!(
            "{text:?} is not a message type (a number 0..=65535 or one of {})",
            names.join(", ")
        )
    })
}

/// The flag that says whom a command trusts, shared by every command that
/// opens a segment to use it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Trust {
    /// Open the segment even if another user owns it (not root, nor a
    /// 0660 file of one of your groups): for someone who really means it.
    #[arg(long)]
    pub allow_foreign_owner: bool,
}

impl Trust {
    /// How to open the segment.
    pub fn opener(&self) -> shmhub::OpenOptions {
        shmhub::OpenOptions::new().allow_foreign_owner(self.allow_foreign_owner)
    }
}

/// Who a command acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The host.
    Host,
    /// Guest N.
    Guest(shmhub::PeerId),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Host => f.write_str("host"),
            Role::Guest(n) => write!(f, "peer {n}"),
        }
    }
}

/// A role as JSON: `"host"` or the peer id.
pub fn role_value(role: Role) -> serde_json::Value {
    match role {
        Role::Host => serde_json::json!("host"),
        Role::Guest(n) => serde_json::json!(n),
    }
}

/// Parses `--as`: `host` or a peer id.
pub fn parse_role(text: &str) -> Result<Role, String> {
    if text.eq_ignore_ascii_case("host") {
        return Ok(Role::Host);
    }
    match text.parse::<shmhub::PeerId>() {
        Ok(n) if n >= 1 => Ok(Role::Guest(n)),
        _ => Err(format!(
            "{text:?} is not a role: use 'host' or a peer id 1..=255"
        )),
    }
}

/// Parses a peer id `1..=255`.
pub fn parse_peer_id(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a peer id (1..=255)")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for same in ["4096", "4k", "4K", "4kb", "4KB", "4kib", "4KiB", "4 KiB"] {
            assert_eq!(parse_size(same), Ok(4096), "{same}");
        }
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert_eq!(parse_size("3MB"), Ok(3 << 20));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size_u32("4GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn roles_and_types() {
        assert_eq!(parse_role("host"), Ok(Role::Host));
        assert_eq!(parse_role("3"), Ok(Role::Guest(3)));
        assert!(parse_role("0").is_err());
        assert!(parse_role("256").is_err());
        assert_eq!(parse_msg_type("request"), Ok(2));
        assert_eq!(parse_msg_type("700"), Ok(700));
        assert!(parse_msg_type("nope").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
    }
}
