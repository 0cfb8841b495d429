//! The subcommands of the `nodereaper` binary: arguments and output. The
//! work itself is in the library.

pub mod daemon;
pub mod deregister;
pub mod docs;
pub mod doctor;
pub mod journal;
pub mod parse;
pub mod setup;
pub mod sweep;

pub use std::process::ExitCode;

/// Output format of a command.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}
