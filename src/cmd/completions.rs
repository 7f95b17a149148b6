//! `shmhub completions`: shell completion scripts.

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Outcome};

/// Arguments of `shmhub completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  shmhub completions bash > /etc/bash_completion.d/shmhub")]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Runs `shmhub completions`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "shmhub", &mut std::io::stdout());
    Ok(Outcome::Done)
}
