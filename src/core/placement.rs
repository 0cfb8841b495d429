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

impl Placement {
    /// `account` (nodereaper's own when `None`) in `region`.
    pub fn new(account: Option<&str>, region: &str) -> Self {
        Placement {
            account: account.map(str::to_owned),
            region: region.to_owned(),
        }
    }
}

/// The account Ohai recorded for the node's instance
/// (`automatic.ec2.account_id`, from the instance identity document).
pub fn recorded_account(node: &serde_json::Value) -> Option<&str> {
    node.pointer("/automatic/ec2/account_id")
        .and_then(serde_json::Value::as_str)
        .filter(|a| !a.is_empty())
}

/// The zone Ohai recorded for the node's instance
/// (`automatic.ec2.placement_availability_zone`).
pub fn recorded_zone(node: &serde_json::Value) -> Option<&str> {
    node.pointer("/automatic/ec2/placement_availability_zone")
        .and_then(serde_json::Value::as_str)
        .filter(|z| !z.is_empty())
}

/// Why a node is not the instance EC2 was asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misplaced {
    /// The node records another account than the one asked.
    OtherAccount(String),
    /// The node's zone is in another region than the one asked.
    OtherRegion(String),
}

impl Misplaced {
    /// The refusal, in words.
    pub fn reason(&self) -> &str {
        match self {
            Misplaced::OtherAccount(r) | Misplaced::OtherRegion(r) => r,
        }
    }
}

/// Whether the node's own record of where its instance lives (Ohai's
/// account and zone) contradicts where EC2 was asked (`asked`, whose account
/// is the one the answer came from; `None` when that is not known).
///
/// "Unknown to EC2" means "gone" only in the right account and region: a
/// node recording an account must record the one asked (so a node of an
/// account nodereaper cannot ask is never matched), and a node recording a
/// zone must record one of the region asked. A node recording neither is not
/// contradicted (nothing to compare; see docs/SAFETY.md).
pub fn misplaced(node: &serde_json::Value, asked: &Placement) -> Option<Misplaced> {
    if let Some(recorded) = recorded_account(node) {
        if asked.account.as_deref() != Some(recorded) {
            return Some(Misplaced::OtherAccount(format!(
                "the node records AWS account {recorded} but the instance was verified in {}; refusing to delete it",
                match &asked.account {
                    Some(a) => format!("account {a}"),
                    None => "an account nodereaper could not identify".into(),
                }
            )));
        }
    }
    let zone = recorded_zone(node)?;
    let node_region = crate::core::zone::region_of_zone(zone)?;
    (node_region != asked.region).then(|| {
        Misplaced::OtherRegion(format!(
            "the node records Availability Zone {zone} (region {node_region}) but the instance was verified in {}; refusing to delete it",
            asked.region
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(account: Option<&str>, zone: Option<&str>) -> serde_json::Value {
        let mut ec2 = json!({"instance_id": "i-0123456789abcdef0"});
        if let Some(a) = account {
            ec2["account_id"] = json!(a);
        }
        if let Some(z) = zone {
            ec2["placement_availability_zone"] = json!(z);
        }
        json!({"automatic": {"ec2": ec2}})
    }

    #[test]
    fn a_node_recording_the_account_and_region_asked_is_not_misplaced() {
        let asked = Placement::new(Some("123456789012"), "eu-west-1");
        assert_eq!(
            misplaced(&node(Some("123456789012"), Some("eu-west-1b")), &asked),
            None
        );
        assert_eq!(misplaced(&node(None, Some("eu-west-1b")), &asked), None);
        assert_eq!(misplaced(&node(Some("123456789012"), None), &asked), None);
        assert_eq!(misplaced(&node(None, None), &asked), None);
    }

    #[test]
    fn another_account_or_an_unidentified_one_is_refused_naming_both() {
        let asked = Placement::new(Some("123456789012"), "us-east-1");
        let other = node(Some("111111111111"), Some("us-east-1a"));
        let Some(Misplaced::OtherAccount(reason)) = misplaced(&other, &asked) else {
            panic!("another account accepted");
        };
        assert!(
            reason.contains("111111111111") && reason.contains("123456789012"),
            "{reason}"
        );
        let unidentified = Placement::new(None, "us-east-1");
        assert!(matches!(
            misplaced(&other, &unidentified),
            Some(Misplaced::OtherAccount(_))
        ));
    }

    #[test]
    fn a_zone_of_another_region_is_refused_naming_both() {
        let asked = Placement::new(Some("123456789012"), "us-east-1");
        let Some(Misplaced::OtherRegion(reason)) =
            misplaced(&node(Some("123456789012"), Some("eu-central-1b")), &asked)
        else {
            panic!("another region accepted");
        };
        assert!(
            reason.contains("eu-central-1") && reason.contains("us-east-1"),
            "{reason}"
        );
        // A zone nodereaper cannot map is no evidence either way.
        assert_eq!(misplaced(&node(None, Some("nowhere")), &asked), None);
    }
}
