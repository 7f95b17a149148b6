//! `shmhub completions`: shell completion scripts.

use std::io::Write;

use clap_complete::Shell;

use super::exit::Outcome;

/// Arguments of `shmhub completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  shmhub completions bash > /etc/bash_completion.d/shmhub")]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Runs `shmhub completions` for `cmd`, the whole command's arguments.
pub fn run(args: Args, mut cmd: clap::Command) -> anyhow::Result<Outcome> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "shmhub", &mut script);
    // Written here rather than by the generator, so that a closed standard
    // output is an error we handle, not a panic in the generator.
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(Outcome::Done)
}
