//! What EC2 says about an instance.

use std::collections::HashMap;

/// What EC2 says about an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceInfo {
    pub instance_id: String,
    /// EC2 state name: pending, running, shutting-down, terminated, stopping, stopped.
    pub state: String,
    pub tags: HashMap<String, String>,
    /// Auto Scaling lifecycle state (e.g. `Terminating:Wait`), looked up only
    /// for instances EC2 still reports alive: during a termination lifecycle
    /// hook the instance is `running` while the group is terminating it.
    pub asg_lifecycle_state: Option<String>,
}
