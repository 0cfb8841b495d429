//! The decision: given a termination event and what EC2 says, act or refuse.
//! Pure functions, no I/O.

use serde::Serialize;

use crate::core::ec2::InstanceInfo;

pub use super::protect::Protection;

/// What to do with a termination after checking EC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verification {
    /// The instance is gone or going: deregister.
    Confirmed { evidence: String },
    /// The instance is alive: the event is forged, stale or premature. Nothing
    /// is deleted; the message goes to the DLQ with this reason.
    Refused { reason: String },
    /// The instance opted out (tag): acknowledge without touching Chef.
    Protected { reason: String },
}

/// Checks a termination against EC2's view of the instance.
///
/// `info` is `None` when EC2 does not know the id at all: terminated
/// instances disappear from DescribeInstances about an hour after
/// termination, so an unknown id counts as gone. A running instance is only
/// accepted while Auto Scaling is terminating it (lifecycle hook wait).
pub fn verify(info: Option<&InstanceInfo>, protection: &Protection) -> Verification {
    let Some(info) = info else {
        return Verification::Confirmed {
            evidence: "EC2 no longer knows the instance".into(),
        };
    };
    if let Some(reason) = protection.instance_reason(info) {
        return Verification::Protected { reason };
    }
    let terminating_in_asg = info
        .asg_lifecycle_state
        .as_deref()
        .is_some_and(|s| s.starts_with("Terminating"));
    match info.state.as_str() {
        // shutting-down only ever leads to terminated.
        state @ ("terminated" | "shutting-down") => Verification::Confirmed {
            evidence: format!("EC2 state {state}"),
        },
        state if terminating_in_asg => Verification::Confirmed {
            evidence: format!(
                "EC2 state {state}, Auto Scaling lifecycle state {}",
                info.asg_lifecycle_state.as_deref().unwrap_or_default()
            ),
        },
        state => Verification::Refused {
            reason: format!(
                "instance {} is {state}{} according to EC2; refusing to deregister it (forged, stale or premature event)",
                info.instance_id,
                info.asg_lifecycle_state
                    .as_deref()
                    .map(|s| format!(" (Auto Scaling lifecycle state {s})"))
                    .unwrap_or_default()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProtectConfig;
    use std::collections::HashMap;

    fn info(state: &str, asg: Option<&str>) -> InstanceInfo {
        InstanceInfo {
            instance_id: "i-0123456789abcdef0".into(),
            state: state.into(),
            tags: HashMap::new(),
            asg_lifecycle_state: asg.map(str::to_string),
        }
    }

    fn protection() -> Protection {
        Protection::new(&ProtectConfig::default())
    }

    #[test]
    fn unknown_and_terminated_are_confirmed() {
        assert!(matches!(
            verify(None, &protection()),
            Verification::Confirmed { .. }
        ));
        assert!(matches!(
            verify(Some(&info("terminated", None)), &protection()),
            Verification::Confirmed { .. }
        ));
    }

    #[test]
    fn running_instance_is_refused() {
        let v = verify(Some(&info("running", Some("InService"))), &protection());
        match v {
            Verification::Refused { reason } => assert!(
                reason.contains("running") && reason.contains("InService"),
                "{reason}"
            ),
            other => panic!("expected refusal, got {other:?}"),
        }
        let stopped = verify(Some(&info("stopped", None)), &protection());
        assert!(matches!(stopped, Verification::Refused { .. }));
    }

    #[test]
    fn lifecycle_wait_is_confirmed_while_running() {
        let v = verify(
            Some(&info("running", Some("Terminating:Wait"))),
            &protection(),
        );
        assert!(matches!(v, Verification::Confirmed { .. }), "{v:?}");
    }

    #[test]
    fn shutting_down_state_change_needs_opt_in() {
        assert!(matches!(
            verify(Some(&info("shutting-down", None)), &protection()),
            Verification::Confirmed { .. }
        ));
    }

    #[test]
    fn opt_out_tag_protects() {
        let mut i = info("terminated", None);
        i.tags.insert("nodereaper:protect".into(), "yes".into());
        assert!(matches!(
            verify(Some(&i), &protection()),
            Verification::Protected { .. }
        ));
    }
}
