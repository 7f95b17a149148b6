//! The segment a command works on: the SEGMENT argument and whom to trust
//! with it, resolved to a path guarded against SIGBUS, and each way of
//! opening it (as the host, as a guest, for a read-only view) with errors
//! that name it; the side `send` and `recv` act as on it; what is already
//! at a path where one is to be created, and the directory a segment file
//! lives in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Arg;
use shmhub::admin::{BadPeer, PeekOptions, PeekReport, RawDump, SegmentReport, SlotsReport};
use shmhub::{
    CreateOptions, HolderStatus, OpenOptions, Party, PeerId, SegmentConfig, SegmentLayout, Sender,
    ShmGuest, ShmHost,
};

use super::error::{OnSegment, SegmentError, UsageError, library_text, seg_err};
use super::parse::{parse_peer_id, parse_role};
use super::signals;
use super::text::{counted, shown};

/// The side a command acts as on a segment it opened, which it holds
/// open; the library's ends (`Sender`, `Receiver`, `AnyReceiver`) do the
/// sending and receiving.
#[derive(Debug)]
pub enum Acting {
    /// The host.
    Host(Box<ShmHost>),
    /// A guest.
    Guest(Box<ShmGuest>),
}

impl Acting {
    /// The sending end towards `to`: the host's towards guest `to`, or a
    /// guest's towards the host.
    pub fn sender(&mut self, to: Party) -> shmhub::Result<&mut Sender> {
        match (self, to) {
            (Acting::Host(host), Party::Guest(peer)) => host.sender(peer),
            (Acting::Guest(guest), _) => Ok(guest.sender()),
            (Acting::Host(_), Party::Host) => Err(shmhub::Error::Unsupported {
                what: "the host sends to guests, not to itself",
            }),
        }
    }

    /// The segment's layout.
    pub fn layout(&self) -> &SegmentLayout {
        match self {
            Acting::Host(host) => host.layout(),
            Acting::Guest(guest) => guest.layout(),
        }
    }

    /// Checks that the segment file is still the one mapped.
    pub fn check_file(&self) -> shmhub::Result<()> {
        match self {
            Acting::Host(host) => host.check_file(),
            Acting::Guest(guest) => guest.check_file(),
        }
    }
}

/// What `send` and `recv` begin their arguments with: the side to act
/// as, and, for the host, the guest at the other end.
///
/// Each command words them for what it does ([`send_words`],
/// [`recv_words`]), so that its `--help` reads as it always did.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct SidesArgs {
    /// The side to act as: `host` or guest N.
    #[arg(long = "as", value_parser = parse_role, value_name = "host|N")]
    pub role: Party,
    /// With --as host: the guest at the other end.
    #[arg(long, value_parser = parse_peer_id, value_name = "N")]
    pub guest: Option<PeerId>,
}

/// How a command words [`SidesArgs`]: `--as`'s help, and the name and
/// help of the guest's option.
struct SidesWording {
    /// `--as`'s help.
    role: &'static str,
    /// The guest's option's long name.
    guest: &'static str,
    /// The guest's option's help.
    guest_help: &'static str,
}

/// `send`'s: it sends as `--as`, to the host or to the guest `--to` names.
const SEND_WORDING: SidesWording = SidesWording {
    role: "Send as `host` or as guest N",
    guest: "to",
    guest_help: "The guest to send to (with --as host)",
};
/// `recv`'s: it receives as `--as`, from the host or from the guest
/// `--from` names (any guest without it).
const RECV_WORDING: SidesWording = SidesWording {
    role: "Receive as `host` or as guest N",
    guest: "from",
    guest_help: "With --as host: only from guest N (default: any guest, fairly)",
};

/// `arg` as `send` words it, if it is one of [`SidesArgs`]'s (for its
/// `mut_args`).
pub fn send_words(arg: Arg) -> Arg {
    SEND_WORDING.word(arg)
}

/// `arg` as `recv` words it, if it is one of [`SidesArgs`]'s (for its
/// `mut_args`).
pub fn recv_words(arg: Arg) -> Arg {
    RECV_WORDING.word(arg)
}

impl SidesWording {
    /// `arg` in these words, if it is one of [`SidesArgs`]'s. A command
    /// applies it to every argument in place (`mut_args`; `mut_arg` would
    /// move the argument last), so that the shell completions keep
    /// listing `--as` first.
    fn word(&self, arg: Arg) -> Arg {
        match arg.get_id().as_str() {
            "role" => arg.help(self.role),
            "guest" => arg.long(self.guest).help(self.guest_help),
            _ => arg,
        }
    }
}

/// SEGMENT, for a command that makes a segment of its own (`demo`,
/// `bench`): its path, refused if anything is there already.
pub fn new_segment_path(name: &str) -> anyhow::Result<PathBuf> {
    let path = resolve_name(name)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(already_exists(&path, Maker::OwnSegment));
    }
    Ok(path)
}

/// SEGMENT `name` resolved to its path (`shm.file.path`); a name that
/// cannot be one (empty, `.`, `..`, too long, with a NUL) is a bad value
/// of the argument: a usage error (exit 2), like any other.
fn resolve_name(name: &str) -> Result<PathBuf, UsageError> {
    shmhub::admin::resolve_segment(name).map_err(|e| UsageError(e.to_string()))
}

/// Creates a segment that this process owns and deletes when it ends
/// (`demo`, `bench`), with every page reserved now, so that a file system
/// without room for it fails here rather than faulting later; a SIGBUS on
/// it deletes it too (see [`signals::guard_sigbus_owned`]).
pub fn create_owned(path: &Path, config: SegmentConfig) -> Result<ShmHost, SegmentError> {
    let options = CreateOptions {
        preallocate: true,
        ..CreateOptions::default()
    };
    signals::guard_sigbus(path);
    let host = ShmHost::create_with(path, config, options).on_segment(path)?;
    signals::guard_sigbus_owned(path);
    Ok(host)
}

/// What every command that opens a segment to use it ends its arguments
/// with: SEGMENT, whom to trust, and `--json`.
///
/// A command flattens it after its own options, so that
/// `--allow-foreign-owner` and `--json` are listed after them in
/// `--help`, as they always were; a positional argument of its own goes
/// after it, so that SEGMENT stays the first. A command whose JSON has a
/// shape worth naming names it in `--json`'s help (with `mut_arg`).
#[derive(Debug, Clone, clap::Args)]
pub struct SegmentArgs {
    /// Segment path, or a bare name under /dev/shm.
    pub segment: String,
    /// Whom to trust.
    #[command(flatten)]
    pub trust: Trust,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl SegmentArgs {
    /// The segment, resolved and guarded (see [`Segment::resolve`]), to
    /// be opened trusting whom `--allow-foreign-owner` says.
    pub fn resolve(&self) -> anyhow::Result<Segment> {
        let mut segment = Segment::resolve(&self.segment)?;
        segment.opener = self.trust.opener();
        Ok(segment)
    }

    /// The segment, resolved (see [`SegmentArgs::resolve`]) and opened as
    /// its host.
    pub fn open_host(&self) -> anyhow::Result<(Segment, ShmHost)> {
        let segment = self.resolve()?;
        let host = segment.open_host()?;
        Ok((segment, host))
    }
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
    pub fn opener(&self) -> OpenOptions {
        OpenOptions::new().allow_foreign_owner(self.allow_foreign_owner)
    }
}

/// A segment named on the command line, ready to be opened: every way of
/// opening it returns an error that names it (see [`seg_err`]), so a
/// subcommand opens it with one call and a `?`.
#[derive(Debug)]
pub struct Segment {
    /// SEGMENT as the user typed it, for the commands a message suggests.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Whom to trust when opening it to use it (the read-only views need
    /// no trust: they cannot change it).
    opener: OpenOptions,
}

impl Segment {
    /// Resolves SEGMENT `name` to its path and makes a SIGBUS on that file
    /// an error naming it (see [`signals::guard_sigbus`]). A segment
    /// resolved this way is opened refusing another user's file.
    pub fn resolve(name: &str) -> anyhow::Result<Self> {
        let path = resolve_name(name)?;
        signals::guard_sigbus(&path);
        Ok(Segment {
            name: name.to_string(),
            path,
            opener: OpenOptions::new(),
        })
    }

    /// How the segment is opened to be used: whom it trusts.
    pub fn opener(&self) -> OpenOptions {
        self.opener
    }

    /// Opens it as its host.
    pub fn open_host(&self) -> Result<ShmHost, SegmentError> {
        self.opener.open_host(&self.path).on_segment(&self.path)
    }

    /// Takes up guest `peer`'s entry, which this process or a script
    /// claimed before.
    pub fn resume(&self, peer: PeerId) -> Result<ShmGuest, SegmentError> {
        self.opener.resume(&self.path, peer).on_segment(&self.path)
    }

    /// Opens it to act as `party`: as its host, or as guest N (an entry
    /// claimed before, taken up).
    pub fn act_as(&self, party: Party) -> Result<Acting, SegmentError> {
        Ok(match party {
            Party::Host => Acting::Host(Box::new(self.open_host()?)),
            Party::Guest(n) => Acting::Guest(Box::new(self.resume(n)?)),
        })
    }

    /// Claims guest entry `peer`, which the host reserved.
    pub fn attach_with_id(&self, peer: PeerId) -> Result<ShmGuest, SegmentError> {
        self.opener
            .attach_with_id(&self.path, peer)
            .on_segment(&self.path)
    }

    /// Releases guest entry `peer`, claimed for a script.
    pub fn release(&self, peer: PeerId) -> Result<(), SegmentError> {
        self.opener.release(&self.path, peer).on_segment(&self.path)
    }

    /// A read-only view of the header, peers, rings and pools.
    pub fn inspect(&self) -> Result<SegmentReport, SegmentError> {
        shmhub::admin::inspect_path(&self.path).map_err(|e| view_err(&self.path, e))
    }

    /// A read-only view of every allocated slot.
    pub fn inspect_slots(&self) -> Result<SlotsReport, SegmentError> {
        shmhub::admin::inspect_slots(&self.path).map_err(|e| view_err(&self.path, e))
    }

    /// Every field as stored, of a damaged file too.
    pub fn inspect_raw(&self) -> Result<RawDump, SegmentError> {
        shmhub::admin::inspect_raw(&self.path).on_segment(&self.path)
    }

    /// A read-only view of the messages queued in its rings.
    pub fn peek(&self, options: &PeekOptions) -> Result<PeekReport, SegmentError> {
        shmhub::admin::peek_path(&self.path, options).map_err(|e| view_err(&self.path, e))
    }
}

/// The process id of guest `peer`'s holder when that process is dead (a
/// guest killed without detaching: its entry stays until reclaimed; 0 if
/// the entry cannot be read); `None` while it lives, or when no process
/// holds the entry.
pub fn dead_holder(host: &ShmHost, peer: PeerId) -> shmhub::Result<Option<u32>> {
    if host.status().holder_status(peer)? != HolderStatus::Dead {
        return Ok(None);
    }
    let pid = host.status().peer(peer).map_or(0, |e| e.pid);
    Ok(Some(pid))
}

/// What is already at a path where a segment was to be created.
pub struct Existing {
    /// In words, following "PATH: already exists": `: a segment whose
    /// host (pid 7) is alive`, ` and is not a regular file`, ...
    pub what: String,
    /// The `shmhub rm` that removes it, if it is a segment (one that
    /// `create --force` replaces); `None`: shmhub never deletes it.
    pub rm: Option<&'static str>,
    /// Whether it is a segment that another process is creating right
    /// now: its magic not written yet (see [`being_created`]).
    pub being_created: bool,
}

/// How recently a segment without its magic must have changed to be taken
/// for one that another process is creating, rather than one whose
/// creation was interrupted: creating writes the magic within
/// milliseconds, after sizing the file (reserving every page first, with
/// `--preallocate`, can take seconds on a large one).
const CREATION_WINDOW: Duration = Duration::from_secs(10);

/// How long [`already_exists`] gives a segment another process is
/// creating to be published before it says what is there.
const CREATION_GRACE: Duration = Duration::from_secs(1);

/// Looks at what is at `path` (read-only, never blocking): a segment, and
/// whether its host lives; a segment another process is creating; a
/// damaged segment; or something that is not a segment at all.
pub fn existing(path: &Path) -> Existing {
    use shmhub::{Error as E, HostStatus};
    let mut being_created = false;
    // A bad entry does not stop `rm` (it judges that entry by its
    // presence lock), so it is not what is said about the segment.
    let (what, rm) = match shmhub::admin::inspect_path(path) {
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
        Err(E::NotReady) if changed_within(path, CREATION_WINDOW) => {
            being_created = true;
            (
                ": a segment that another process is creating (its magic is not written yet)"
                    .to_string(),
                None,
            )
        }
        Err(E::NotReady) => (
            ": a segment whose creation never finished (no magic: its creator stopped \
             before publishing it; rm(1) deletes it)"
                .to_string(),
            None,
        ),
        Err(e @ (E::CorruptHeader { .. } | E::Corrupt(_) | E::VersionMismatch { .. })) => {
            (format!(": a damaged segment ({e})"), Some("rm --force"))
        }
        Err(E::Symlink { .. }) => (" and is a symbolic link".to_string(), None),
        Err(E::NotAFile { .. }) => (" and is not a regular file".to_string(), None),
        Err(E::TooSmall { len, .. }) => (
            format!(
                " and is not a shmhub segment (a file of {})",
                counted(len, "byte", "bytes")
            ),
            None,
        ),
        Err(e @ E::NotASegment { .. }) => (format!(" and is not a shmhub segment ({e})"), None),
        Err(E::Io { cause, .. }) => (format!(" ({cause})"), None),
        Err(e) => (format!(" ({})", library_text(&e)), None),
    };
    Existing {
        what,
        rm,
        being_created,
    }
}

/// Whether the file at `path` is one that another process may be creating
/// right now: changed within `window`, and either empty (created, not yet
/// sized) or a segment without its magic.
fn being_created(path: &Path, window: Duration) -> bool {
    changed_within(path, window)
        && match shmhub::admin::inspect_path(path) {
            Err(shmhub::Error::NotReady) => true,
            Err(shmhub::Error::TooSmall { len, .. }) => len == 0,
            _ => false,
        }
}

/// Whether the file at `path` (not followed if a link) was modified less
/// than `window` ago.
fn changed_within(path: &Path, window: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < window))
}

/// The command that meant to make a segment where one already is, which
/// decides what [`already_exists`] advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker {
    /// `create`, which `--force` and `rm` can help.
    Create,
    /// A command that makes a segment of its own (`demo`, `bench`), which
    /// can only be given another name.
    OwnSegment,
}

/// The error for a path that a new segment cannot be created at because
/// something is already there: what that is (see [`existing`]), then what
/// `maker` can do about it. A file that another process has just begun to
/// create (two `create`s of one name at once) is given a moment to be
/// published first, so that what is said about it is what it became.
pub fn already_exists(path: &Path, maker: Maker) -> anyhow::Error {
    let start = Instant::now();
    while start.elapsed() < CREATION_GRACE && being_created(path, CREATION_WINDOW) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let shown = shown(path);
    let Existing {
        what,
        rm,
        being_created,
    } = existing(path);
    let advice = match (maker, rm) {
        (Maker::Create, _) if being_created => {
            "try again once it is made (then --force replaces it)".to_string()
        }
        (Maker::Create, Some(rm)) => format!(
            "--force replaces it (asking its host and guests to leave), `shmhub {rm} {shown}` removes it"
        ),
        (Maker::Create, None) => "it is never replaced, not even with --force".to_string(),
        (Maker::OwnSegment, _) => "choose another --segment".to_string(),
    };
    anyhow!("{shown}: already exists{what}; {advice}")
}

/// The directory a segment file at `path` lives in.
pub fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Inspects the segment, requiring every entry to be readable:
/// `inspect --watch` compares one report's rings with the next one's by
/// position, and an entry missing from one would shift the comparison.
pub fn inspect_every_entry(path: &Path) -> shmhub::Result<SegmentReport> {
    shmhub::admin::inspect_path(path).and_then(SegmentReport::require_all_entries)
}

/// Like [`seg_err`], for a read-only view refused by a damaged segment:
/// says that `inspect --raw` still shows it.
fn view_err(path: &Path, e: shmhub::Error) -> SegmentError {
    use shmhub::Error as E;
    let damaged = matches!(
        e,
        E::CorruptHeader { .. } | E::Corrupt(_) | E::VersionMismatch { .. }
    );
    let e = seg_err(path, e);
    if damaged {
        e.followed_by(format_args!(
            "; `shmhub inspect {} --raw` shows it field by field",
            shown(&path)
        ))
    } else {
        e
    }
}

/// The error that ends a view of a segment with entries that could not be
/// read, after what could be read was printed: exit 1.
pub fn bad_entries(path: &Path, bad: &[BadPeer]) -> anyhow::Result<()> {
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let others = match bad.len() {
        1 => String::new(),
        n => format!(" and {} other entries", n - 1),
    };
    Err(anyhow::anyhow!(
        "{}: corrupt segment: {}{others}; the entries that could be read are shown, \
         `shmhub inspect {} --raw` shows every field",
        shown(&path),
        first.reason,
        shown(&path)
    ))
}
