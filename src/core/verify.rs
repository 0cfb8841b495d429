//! The decision: given what EC2 says about an instance, is it gone? For a
//! termination event: act or refuse ([`verify`]); for a sweep, the stricter
//! [`Departure::is_gone`]. Also when a node last checked in ([`ohai_time`]).
//! Pure functions, no I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::core::ec2::{Ec2State, InstanceInfo};

pub use super::protect::Protection;

/// What to do with a termination after checking EC2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verification {
    /// The instance is gone or going: deregister.
    Confirmed {
        /// What EC2 said that confirms it.
        evidence: String,
    },
    /// The instance is alive: the event is forged, stale or premature. Nothing
    /// is deleted; the message goes to the DLQ with this reason.
    Refused {
        /// Why, with the instance's state.
        reason: String,
    },
    /// The instance opted out (tag): acknowledge without touching Chef.
    Protected {
        /// The protection that applies.
        reason: String,
    },
}

/// How far an instance is from gone, by what EC2 (and Auto Scaling) report:
/// the one "is the instance gone" rule. Events and sweeps both read it, each
/// with the bar its evidence allows ([`Departure::is_gone`],
/// [`Departure::is_gone_or_going`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// EC2 does not know the id: terminated instances disappear from
    /// DescribeInstances about an hour after termination.
    Unknown,
    /// EC2 state `terminated`.
    Terminated,
    /// EC2 state `shutting-down`, which only ever leads to `terminated`.
    ShuttingDown,
    /// Alive in EC2 while Auto Scaling terminates it (lifecycle state
    /// `Terminating...`, e.g. a termination hook's wait).
    LeavingGroup,
    /// Alive (or in a state nodereaper does not know), and nothing is
    /// terminating it.
    Alive,
}

impl Departure {
    /// Classifies EC2's view of an instance (`None`: EC2 does not know it).
    pub fn of(info: Option<&InstanceInfo>) -> Self {
        let Some(info) = info else {
            return Self::Unknown;
        };
        let terminating_in_asg = info
            .asg_lifecycle_state
            .as_deref()
            .is_some_and(|s| s.starts_with("Terminating"));
        match info.state {
            Ec2State::Terminated => Self::Terminated,
            Ec2State::ShuttingDown => Self::ShuttingDown,
            _ if terminating_in_asg => Self::LeavingGroup,
            _ => Self::Alive,
        }
    }

    /// Gone for good (unknown to EC2, or terminated): the bar for a sweep,
    /// which acts without an event announcing the termination.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Unknown | Self::Terminated)
    }

    /// Gone, or certainly going (shutting down, or being terminated by Auto
    /// Scaling): the bar for an event that announces the termination.
    pub fn is_gone_or_going(self) -> bool {
        self != Self::Alive
    }
}

/// When a node last ran Chef: `automatic.ohai_time` of a full node, or a
/// top-level `ohai_time` (a partial-search row).
pub fn ohai_time(node: &Value) -> Option<DateTime<Utc>> {
    node.pointer("/automatic/ohai_time")
        .or_else(|| node.get("ohai_time"))
        .and_then(check_in_time)
}

/// An `ohai_time` value (seconds since the epoch, fractional) as a time;
/// `None` when it is not a number or out of range.
pub fn check_in_time(ohai_time: &Value) -> Option<DateTime<Utc>> {
    let secs = ohai_time.as_f64()?;
    DateTime::from_timestamp_millis((secs * 1000.0) as i64)
}

/// Checks a termination against EC2's view of the instance.
///
/// `info` is `None` when EC2 does not know the id at all, which counts as
/// gone. An opted-out instance is protected. Otherwise the instance must be
/// gone or going ([`Departure::is_gone_or_going`]): a running instance is
/// only accepted while Auto Scaling is terminating it (lifecycle hook wait).
pub fn verify(info: Option<&InstanceInfo>, protection: &Protection) -> Verification {
    let departure = Departure::of(info);
    let Some(info) = info else {
        return Verification::Confirmed {
            evidence: "EC2 no longer knows the instance".into(),
        };
    };
    if let Some(reason) = protection.instance_reason(info) {
        return Verification::Protected { reason };
    }
    let state = &info.state;
    match departure {
        Departure::LeavingGroup => Verification::Confirmed {
            evidence: format!(
                "EC2 state {state}, Auto Scaling lifecycle state {}",
                info.asg_lifecycle_state.as_deref().unwrap_or_default()
            ),
        },
        d if d.is_gone_or_going() => Verification::Confirmed {
            evidence: format!("EC2 state {state}"),
        },
        _ => Verification::Refused {
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
    use crate::core::protect::ProtectConfig;
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

    #[test]
    fn sweep_needs_gone_for_good_events_accept_going() {
        let of = |state: &str, asg: Option<&str>| Departure::of(Some(&info(state, asg)));
        assert!(Departure::of(None).is_gone());
        assert!(of("terminated", None).is_gone());
        for going in [
            of("shutting-down", None),
            of("running", Some("Terminating:Wait")),
        ] {
            assert!(!going.is_gone() && going.is_gone_or_going(), "{going:?}");
        }
        // An unexpected state name is never gone, nor going by itself.
        for alive in [
            of("running", Some("InService")),
            of("stopped", None),
            of("rebooting", None),
        ] {
            assert_eq!(alive, Departure::Alive);
            assert!(!alive.is_gone_or_going());
        }
    }

    #[test]
    fn ohai_time_of_a_node_or_a_search_row() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 500_000_000);
        assert_eq!(
            ohai_time(&serde_json::json!({"automatic": {"ohai_time": 1_700_000_000.5}})),
            t
        );
        assert_eq!(
            ohai_time(&serde_json::json!({"ohai_time": 1_700_000_000.5})),
            t
        );
        assert_eq!(
            ohai_time(&serde_json::json!({"ohai_time": "yesterday"})),
            None
        );
        assert_eq!(ohai_time(&serde_json::json!({})), None);
    }
}
