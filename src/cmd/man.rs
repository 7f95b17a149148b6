//! `shmhub man`: manual pages, made from the same argument definitions as
//! `--help`, so that they cannot say something else.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap_mangen::Man;

use super::exit::Outcome;
use super::text::{print_line, shown};

const EXAMPLES: &str = "\
Examples:
  shmhub man | man -l -                     # read shmhub(1) now
  shmhub man send | man -l -                # shmhub-send(1)
  shmhub man --out-dir /usr/local/share/man/man1   # install every page";

/// Arguments of `shmhub man`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The subcommand whose page to print (default: shmhub(1) itself).
    #[arg(conflicts_with = "out_dir")]
    pub command: Option<String>,
    /// Write every page (shmhub.1 and shmhub-CMD.1 for each command) into
    /// this directory instead, and print their paths.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Runs `shmhub man` for `cmd`, the whole command's arguments.
pub fn run(args: Args, cmd: clap::Command) -> anyhow::Result<Outcome> {
    let pages = pages(cmd);
    if let Some(dir) = &args.out_dir {
        write_pages(dir, &pages)?;
        return Ok(Outcome::Done);
    }
    let wanted = match &args.command {
        None => "shmhub".to_string(),
        Some(name) => format!("shmhub-{name}"),
    };
    let Some((_, page)) = pages.iter().find(|(name, _)| *name == wanted) else {
        let known: Vec<&str> = pages
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("shmhub-"))
            .collect();
        crate::usage!(
            "no manual page for {:?}; the commands are {}",
            args.command.unwrap_or_default(),
            known.join(", ")
        );
    };
    // Written here, so that a closed standard output is an error we
    // report, not a panic.
    let mut out = std::io::stdout().lock();
    out.write_all(page)?;
    out.flush()?;
    Ok(Outcome::Done)
}

/// Every page, named as its file is without `.1`: `shmhub`, then
/// `shmhub-CMD` for each command `--help` lists (not the hidden internal
/// ones, nor clap's `help`).
pub fn pages(cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    let mut cmd = cmd.disable_help_subcommand(true);
    // Building gives each subcommand its display name (`shmhub-send`),
    // which titles its page, and the version each page ends with.
    cmd.build();
    let mut pages = vec![("shmhub".to_string(), render(cmd.clone()))];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("shmhub-{}", sub.get_name()), str::to_string);
        pages.push((name, render(sub.clone())));
    }
    pages
}

fn render(cmd: clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    // Rendering into memory fails only if the writer does, and a Vec
    // does not.
    let _ = Man::new(cmd).render(&mut page);
    page
}

/// Writes each page to `dir/NAME.1`, each through a temporary file renamed
/// into place, so that an interrupted or failed run leaves no half page
/// for `man` to show.
fn write_pages(dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{}: not a directory", shown(&dir)),
        Err(e) => return Err(e).with_context(|| shown(&dir).to_string()),
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let partial = dir.join(format!(".{name}.1.partial"));
        let written =
            std::fs::write(&partial, page).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e).with_context(|| format!("{}: could not write the page", shown(&path)));
        }
        print_line(shown(&path))?;
    }
    Ok(())
}
