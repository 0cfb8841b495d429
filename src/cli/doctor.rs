//! `nodereaper doctor`.

use std::path::Path;

use nodereaper::config::Config;

use anyhow::Result;
use clap::Args;

use super::{ExitCode, Output};

/// Arguments of `nodereaper doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `nodereaper doctor`: exit 1 when a check failed. `path` is the
/// configuration file, if one was given.
pub async fn doctor(config: Config, path: Option<&Path>, args: DoctorArgs) -> Result<ExitCode> {
    let source = match path {
        Some(p) => p.display().to_string(),
        None => "configuration (defaults and environment)".into(),
    };
    let checks = nodereaper::jobs::doctor::run(&config, &source).await;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", nodereaper::jobs::doctor::render(&checks));
    }
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
