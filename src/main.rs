//! The `shmhub` command: parse, then dispatch.

mod cmd;

use clap::Parser;

use cmd::common::{Interrupted, TimedOut, UsageError, is_broken_pipe};

fn main() {
    let cli = cmd::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(cmd::Outcome::Done) => 0,
        Ok(cmd::Outcome::TimedOut) => cmd::EXIT_TIMEOUT,
        Ok(cmd::Outcome::Exit(code)) => code,
        // The reader of our output went away (`shmhub inspect x | head -1`):
        // nothing is wrong with the segment, and nobody is left to tell.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.is::<UsageError>()) {
                eprintln!("For more information, try '--help'.");
                cmd::EXIT_USAGE
            } else if e.chain().any(|c| c.is::<TimedOut>()) {
                cmd::EXIT_TIMEOUT
            } else if let Some(Interrupted(signal)) =
                e.chain().find_map(|c| c.downcast_ref::<Interrupted>())
            {
                128 + signal
            } else {
                cmd::EXIT_ERROR
            }
        }
    };
    std::process::exit(code);
}
