//! The `shmhub` command: argument definitions and dispatch. Each
//! subcommand lives in its own file (`inspect` and `bench` in folders of
//! their own) with its arguments, its calls into the library and its
//! printing.
//!
//! The files form floors, each naming only those below it, never one
//! above nor one that names it back:
//!
//! 1. `signals` (the process's signals), `parse` (argument values),
//!    `accounts` (user and group names, from the system's user database),
//!    `text` (words and lines for people, owners named through
//!    `accounts`) and `child` (this binary run again as a child process);
//! 2. `error` (the errors that carry their exit code) and `exit` (the
//!    outcome of a command and the exit code of each error);
//! 3. `segment` (SEGMENT, whom to trust, opening it with errors that name
//!    it), `table`, `output` and `held` (what several subcommands print
//!    or run);
//! 4. the subcommands, which may use one another's pieces (`demo` prints
//!    `inspect`'s tables) but never in a loop;
//! 5. this file, which names them all.

use clap::{CommandFactory, Parser, Subcommand};

pub mod accounts;
pub mod attach;
pub mod bench;
pub use bench::peer as bench_peer;
pub mod child;
pub mod clock;
pub mod completions;
pub mod create;
pub mod demo;
pub mod detach;
pub mod error;
pub mod events;
pub mod evict;
pub mod exit;
pub mod gc;
pub mod guest_echo;
pub mod held;
pub mod inspect;
pub mod ls;
pub mod man;
pub mod output;
pub mod parse;
pub mod peek;
pub mod reclaim;
pub mod recv;
pub mod rm;
pub mod segment;
pub mod send;
pub mod signals;
pub mod spawn;
pub mod table;
pub mod text;

use exit::Outcome;

const AFTER_HELP: &str = "\
SEGMENT is a path (anything containing '/'), or a bare name that resolves to
/dev/shm/NAME (the temporary directory where /dev/shm is missing; override
with SHMHUB_SHM_DIR).

Exit codes:
  0  done
  1  error (one line on stderr starting with 'error:')
  2  usage error
  3  timed out, nothing to receive, or (peek, inspect --slots) the segment
     changed while it was read: try again
  128 + N  a waiting command (send, recv) or bench stopped by signal N
     (SIGHUP 129, SIGINT 130, SIGTERM 143)

Example session:
  shmhub create demo --slot-size 4KiB
  shmhub attach demo                       # prints the peer id, e.g. 1
  shmhub send demo --as host --to 1 hello
  shmhub recv demo --as 1                  # prints hello
  shmhub inspect demo
  shmhub rm demo";

/// Create, attach to, message through, inspect and remove shared-memory
/// IPC segments.
#[derive(Debug, Parser)]
#[command(name = "shmhub", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and initialize a segment.
    Create(create::Args),
    /// Claim a guest entry and print its peer id.
    Attach(attach::Args),
    /// Send messages as the host or as a guest.
    Send(send::Args),
    /// Receive messages as the host or as a guest.
    Recv(recv::Args),
    /// Show header, peers, rings and pools (read-only).
    Inspect(inspect::Args),
    /// Show the messages queued in rings without taking them (read-only).
    Peek(peek::Args),
    /// Ask everyone to leave, then delete the segment file.
    Rm(rm::Args),
    /// Release a guest entry claimed for scripted use.
    Detach(detach::Args),
    /// List every segment, with host and guest liveness.
    Ls(ls::Args),
    /// Remove the segments nobody can use any more.
    Gc(gc::Args),
    /// Stream what happens to a segment: attaches, deaths, reclaims.
    Events(events::Args),
    /// Run a guest program on an entry reserved for it.
    Spawn(spawn::Args),
    /// A guest that sends every message back, for scripts (run it with spawn).
    GuestEcho(guest_echo::Args),
    /// Reclaim the entries of guests whose process died.
    Reclaim(reclaim::Args),
    /// Cut a guest off; its entry is freed once its process is gone.
    Evict(evict::Args),
    /// Show everything working end to end on a temporary segment.
    Demo(demo::Args),
    /// Measure round trips and throughput against sockets, pipes and memcpy.
    Bench(bench::Args),
    /// Print shell completions.
    Completions(completions::Args),
    /// Print the manual pages, or install them into a directory.
    Man(man::Args),
    /// Internal: the second process of `bench`.
    #[command(hide = true)]
    BenchPeer(bench_peer::Args),
}

/// The command line, parsed as clap parses it, except that a name (or
/// any value) that starts with `-` and so reads as an option gets an error
/// that says to put it after `--`: clap says so of `-x` but not of a
/// `--name` that looks like one of the command's flags, and takes `-hub`
/// for `-h` (help, exit 0) where the user meant a segment named `-hub`.
/// Exits as clap does on a usage error (2) or on `--help` (0).
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut error = match Cli::try_parse_from(&args) {
        Ok(cli) => return cli,
        Err(error) => error,
    };
    let subcommand = args
        .get(1)
        .and_then(|a| a.to_str())
        .filter(|a| !a.starts_with('-'));
    let mut cmd = Cli::command();
    cmd.build();
    let takes_values = subcommand
        .and_then(|name| cmd.find_subcommand(name))
        .is_some_and(|sub| sub.get_positionals().next().is_some());
    if takes_values {
        use clap::error::ErrorKind;
        match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                if let Some(word) = short_flag_lookalike(&args[2..]) {
                    let sub = cmd
                        .find_subcommand_mut(subcommand.unwrap_or_default())
                        .expect("found above");
                    error = sub.error(
                        ErrorKind::UnknownArgument,
                        format!(
                            "unexpected argument '{word}' found (-h and -V are the only short \
                             options)\n\n  tip: to pass '{word}' as a value, use '-- {word}'"
                        ),
                    );
                }
            }
            ErrorKind::UnknownArgument => add_dash_dash_tip(&mut error),
            _ => {}
        }
    }
    error.exit()
}

/// The first argument before `--` that clap would read as `-h` or `-V`
/// followed by more letters (`-hub`, `-Vx`): the command has no other
/// short options, so it was meant as a value.
fn short_flag_lookalike(args: &[std::ffi::OsString]) -> Option<String> {
    args.iter()
        .map_while(|a| a.to_str().filter(|a| *a != "--"))
        .find(|a| a.len() > 2 && (a.starts_with("-h") || a.starts_with("-V")))
        .map(str::to_string)
}

/// Adds clap's own tip for a value that reads as an option (`use '--
/// --name'`) to an unknown-argument error that lacks it: clap leaves it
/// out when the argument looks like one of the command's flags.
fn add_dash_dash_tip(error: &mut clap::Error) {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(word)) = error.get(ContextKind::InvalidArg) else {
        return;
    };
    if !word.starts_with('-') {
        return;
    }
    let tip = format!("to pass '{word}' as a value, use '-- {word}'");
    let mut tips = match error.get(ContextKind::Suggested) {
        Some(ContextValue::StyledStrs(tips)) => tips.clone(),
        _ => Vec::new(),
    };
    if tips
        .iter()
        .any(|t| t.to_string().contains("as a value, use '--"))
    {
        return;
    }
    tips.push(tip.into());
    error.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // Whatever the command, a fault on a mapped file is reported, never
    // died of; commands that map a segment name it with
    // `signals::guard_sigbus` before mapping it.
    signals::catch_faults();
    match cli.command {
        Command::Create(args) => create::run(args),
        Command::Attach(args) => attach::run(args),
        Command::Send(args) => send::run(args),
        Command::Recv(args) => recv::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Peek(args) => peek::run(args),
        Command::Rm(args) => rm::run(args),
        Command::Detach(args) => detach::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Events(args) => events::run(args),
        Command::Spawn(args) => spawn::run(args),
        Command::Reclaim(args) => reclaim::run(args),
        Command::Evict(args) => evict::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Completions(args) => completions::run(args, Cli::command()),
        Command::Man(args) => man::run(args, Cli::command()),
        Command::GuestEcho(args) => guest_echo::run(args),
        Command::BenchPeer(args) => bench_peer::run(args),
    }
}
