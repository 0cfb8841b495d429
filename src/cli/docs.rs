//! `nodereaper completions SHELL` and `nodereaper manpages DIR`: shell
//! completion scripts and man pages generated from the clap definition, so
//! they always match the binary. scripts/package.sh runs the freshly built
//! binary to put them into the .deb and the .rpm; nothing is generated at
//! build time (no build script: the build stays as fast as it is).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

use super::ExitCode;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args)]
pub struct ManpagesArgs {
    /// Directory to write nodereaper.1 and one nodereaper-COMMAND.1 per command
    /// into (created if missing).
    pub dir: PathBuf,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(mut cmd: Command, args: &CompletionsArgs) -> Result<ExitCode> {
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics when its writer fails (a
    // closed pipe); this way that is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the man pages into `args.dir` and prints their paths.
pub fn manpages(cmd: Command, args: &ManpagesArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| {
        format!(
            "cannot create the man page directory {}",
            args.dir.display()
        )
    })?;
    let mut cmd = cmd;
    // Propagates version and the global --config to the subcommands.
    cmd.build();
    let top = cmd.get_name().to_string();
    write_page(&cmd, &args.dir.join(format!("{top}.1")))?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // clap names are &'static str (no "string" feature); a handful of
        // short strings for a process that exits right after.
        let name: &'static str = format!("{top}-{}", sub.get_name()).leak();
        let page = sub.clone().name(name).display_name(name);
        write_page(&page, &args.dir.join(format!("{name}.1")))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(cmd: &Command, path: &Path) -> Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("cannot render the man page {}", path.display()))?;
    std::fs::write(path, buf)
        .with_context(|| format!("cannot write the man page {}", path.display()))?;
    writeln!(std::io::stdout(), "{}", path.display()).context("cannot write to stdout")?;
    Ok(())
}
