//! What EC2 says about an instance: its state and tags, as the inventory port
//! reports them.

use std::collections::HashMap;
use std::fmt;

/// Instance ids one DescribeInstances call filters on (EC2 accepts at most
/// 200 values per filter). Inventories split larger requests into calls of
/// this size; a caller reporting progress may ask in batches of it, so each
/// batch costs one call (plus pages).
pub const IDS_PER_DESCRIBE: usize = 200;

/// What EC2 says about an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceInfo {
    /// The EC2 instance id (`i-...`).
    pub instance_id: String,
    /// EC2 state (`State.Name`).
    pub state: Ec2State,
    /// The instance's tags, key to value.
    pub tags: HashMap<String, String>,
    /// Auto Scaling lifecycle state (e.g. `Terminating:Wait`), looked up only
    /// for instances EC2 still reports alive: during a termination lifecycle
    /// hook the instance is `running` while the group is terminating it.
    pub asg_lifecycle_state: Option<String>,
}

/// An EC2 instance state (`InstanceState.Name`), serialised as EC2 names it.
///
/// A name EC2 may add later (or a missing one) is kept as [`Ec2State::Other`]
/// and never counts as gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ec2State {
    /// `pending`: launching.
    Pending,
    /// `running`.
    Running,
    /// `shutting-down`: terminating; only ever leads to `terminated`.
    ShuttingDown,
    /// `terminated`.
    Terminated,
    /// `stopping`.
    Stopping,
    /// `stopped`.
    Stopped,
    /// Any other name, as EC2 sent it.
    Other(String),
}

impl Ec2State {
    /// The state EC2 names `name`; an unknown name is [`Ec2State::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            other => Self::Other(other.to_string()),
        }
    }

    /// EC2's name of the state.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Other(name) => name,
        }
    }

    /// `shutting-down` or `terminated`: the instance is ending and will not
    /// come back.
    pub fn is_ending(&self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }
}

impl From<&str> for Ec2State {
    fn from(name: &str) -> Self {
        Self::from_name(name)
    }
}

impl fmt::Display for Ec2State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Ec2State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for name in [
            "pending",
            "running",
            "shutting-down",
            "terminated",
            "stopping",
            "stopped",
            "unknown",
            "rebooting",
        ] {
            let state = Ec2State::from_name(name);
            assert_eq!(state.as_str(), name);
            assert_eq!(
                serde_json::to_value(&state).expect("serialises"),
                serde_json::json!(name)
            );
        }
        assert_eq!(
            Ec2State::from_name("rebooting"),
            Ec2State::Other("rebooting".into())
        );
        assert!(!Ec2State::from_name("rebooting").is_ending());
        assert!(Ec2State::from_name("shutting-down").is_ending());
    }
}
