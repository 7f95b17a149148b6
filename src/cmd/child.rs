//! This same binary, run again as a child process for another of its
//! subcommands: `demo`'s guest (`guest-echo`), the benchmark's peers
//! (`bench-peer`).

use std::process::{Command, Stdio};

use anyhow::Context;

/// This same binary, to be run as `subcommand`; the caller adds the
/// subcommand's arguments. Its standard input is closed unless the caller
/// gives it one: what the user pipes into this command is this command's,
/// and a child reading it would take it away.
pub fn this_binary(subcommand: &str) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("locating the shmhub binary")?;
    let mut command = Command::new(exe);
    command.arg(subcommand).stdin(Stdio::null());
    Ok(command)
}
