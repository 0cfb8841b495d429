//! Where an instance lives: the account and region EC2 must be asked in.
//!
//! "Unknown to EC2" only means "gone" when the right account and region were
//! asked; the placement of every termination comes from the event itself
//! (see [`crate::core::event::Termination`]), never from wherever the
//! queue happens to be, except for the region of a raw lifecycle hook
//! message, which names none.

use std::fmt;

use serde::Serialize;

/// An AWS account (or nodereaper's own, when `None`) and a region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Placement {
    /// `None`: the account nodereaper's own credentials belong to.
    pub account: Option<String>,
    /// The AWS region name, e.g. `eu-west-1`.
    pub region: String,
}

impl Placement {
    /// The placement of an event: its own account and region, else the
    /// queue's region and nodereaper's own account.
    pub fn of_event(account: Option<&str>, region: Option<&str>, queue_region: &str) -> Self {
        Placement {
            account: account.map(str::to_owned),
            region: region.unwrap_or(queue_region).to_owned(),
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.account {
            Some(a) => write!(f, "account {a}, region {}", self.region),
            None => write!(f, "own account, region {}", self.region),
        }
    }
}
