//! The `shmhub` command: parse, then dispatch.

mod cmd;

use cmd::error::error_line;
use cmd::exit::{self, EXIT_DONE, EXIT_USAGE};

fn main() {
    let cli = cmd::parse();
    let code = match cmd::run(cli) {
        Ok(outcome) => outcome.code(),
        Err(e) => {
            let code = exit::code(&e);
            // Exit 0 is an output whose reader went away: nobody to tell.
            // The line escapes whatever in the message is not printable:
            // names that came from a file system anyone can write to.
            if code != EXIT_DONE {
                eprintln!("error: {}", error_line(&e));
            }
            if code == EXIT_USAGE {
                eprintln!("For more information, try '--help'.");
            }
            code
        }
    };
    std::process::exit(code);
}
