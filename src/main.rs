//! The `shmhub` command: parse, then dispatch.

mod cmd;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(cmd::Outcome::Done) => 0,
        Ok(cmd::Outcome::TimedOut) => cmd::EXIT_TIMEOUT,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.is::<cmd::common::TimedOut>()) {
                cmd::EXIT_TIMEOUT
            } else {
                cmd::EXIT_ERROR
            }
        }
    };
    std::process::exit(code);
}
