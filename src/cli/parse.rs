//! `nodereaper parse`: how a message body is classified.

use std::path::PathBuf;

use nodereaper::core::event;

use anyhow::{Context, Result};
use clap::Args;

use super::ExitCode;

#[derive(Args)]
pub struct ParseArgs {
    /// File holding the message body; stdin when absent.
    pub file: Option<PathBuf>,
    /// Treat EC2 state-change `shutting-down` as a termination.
    #[arg(long)]
    pub shutting_down_is_termination: bool,
}

pub fn parse(args: &ParseArgs) -> Result<ExitCode> {
    let body = match &args.file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        None => std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?,
    };
    let opts = event::ParseOptions {
        shutting_down_is_termination: args.shutting_down_is_termination,
    };
    match event::parse(&body, &opts) {
        Ok(event) => {
            println!("{}", serde_json::to_string_pretty(&event)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("poison: {e}");
            Ok(ExitCode::from(3))
        }
    }
}
