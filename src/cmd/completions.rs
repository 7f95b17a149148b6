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

/// Runs `shmhub completions` for `cmd`, the whole command's arguments:
/// a script that completes what `--help` lists, never the hidden command
/// (`bench-peer`: internal, for `bench`).
pub fn run(args: Args, cmd: clap::Command) -> anyhow::Result<Outcome> {
    let mut cmd = without_hidden_commands(&cmd);
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "shmhub", &mut script);
    // Written here rather than by the generator, so that a closed standard
    // output is an error we handle, not a panic in the generator.
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(Outcome::Done)
}

/// `cmd` with its hidden subcommands left out: the generators complete
/// every subcommand, hidden or not, and clap has no way to remove one, so
/// the command is built again from its own name, version, arguments and
/// visible subcommands.
fn without_hidden_commands(cmd: &clap::Command) -> clap::Command {
    let mut visible = clap::Command::new("shmhub")
        .propagate_version(cmd.is_propagate_version_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if cmd.get_version().is_some() {
        visible = visible.version(env!("CARGO_PKG_VERSION"));
    }
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}
