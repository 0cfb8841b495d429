//! What setup did (or would do), typed: one [`Change`] per [`Resource`],
//! printed as `<action> <kind> <name>: <detail>` lines.

use std::fmt;

use serde::{Serialize, Serializer};

use super::error::{StepError, StepOutcome};
use super::{Setup, SetupError};

/// What setup did (or would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Did not exist; created.
    Created,
    /// Existed and differed; changed to the spec.
    Updated,
    /// Existed as the spec wants.
    Unchanged,
    /// Dry run: does not exist, would be created.
    WouldCreate,
    /// Dry run: differs from the spec, would be changed.
    WouldUpdate,
    /// Not done; setup went on (see [`SetupReport::warnings`]).
    Failed,
}

impl ChangeAction {
    /// `Created`/`Updated` when applying, `WouldCreate`/`WouldUpdate` in a
    /// dry run, by whether the resource `exists`.
    pub(super) fn planned(dry_run: bool, exists: bool) -> Self {
        match (dry_run, exists) {
            (false, false) => Self::Created,
            (false, true) => Self::Updated,
            (true, false) => Self::WouldCreate,
            (true, true) => Self::WouldUpdate,
        }
    }

    /// The word printed in the text report, e.g. `would create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::WouldCreate => "would create",
            Self::WouldUpdate => "would update",
            Self::Failed => "FAILED",
        }
    }
}

/// The kinds of resource setup manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// The SNS topic `<name>`.
    SnsTopic,
    /// The dead-letter queue `<name>-dlq`.
    SqsDlq,
    /// The queue `<name>`.
    SqsQueue,
    /// The policy of the queue `<name>`.
    SqsQueuePolicy,
    /// The topic's subscription of the queue (named after the base name).
    SnsSubscription,
    /// The EventBridge rule `<name>-asg-terminate`.
    EventbridgeRule,
    /// The queue as a target of the rule (named after the rule).
    EventbridgeTarget,
    /// A group's notification configuration (named after the group).
    AsgNotification,
    /// A group's lifecycle hook, named `<group>/<hook>`.
    AsgLifecycleHook,
}

impl ResourceKind {
    /// The kind as printed, e.g. `sqs-queue-policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SnsTopic => "sns-topic",
            Self::SqsDlq => "sqs-dlq",
            Self::SqsQueue => "sqs-queue",
            Self::SqsQueuePolicy => "sqs-queue-policy",
            Self::SnsSubscription => "sns-subscription",
            Self::EventbridgeRule => "eventbridge-rule",
            Self::EventbridgeTarget => "eventbridge-target",
            Self::AsgNotification => "asg-notification",
            Self::AsgLifecycleHook => "asg-lifecycle-hook",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource setup manages. Displayed (and serialized) as
/// `<kind> <name>`, e.g. `sqs-dlq nodereaper-dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its name (for a lifecycle hook `<group>/<hook>`).
    pub name: String,
}

impl Resource {
    /// The resource `kind` named `name`.
    pub fn new(kind: ResourceKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The resource changed (or not).
    pub resource: Resource,
    /// What was (or would be) done to it.
    pub action: ChangeAction,
    /// What is (or would be) there, or the differences `have -> want`.
    pub detail: String,
}

/// The outcome of [`setup`](super::setup). URLs and ARNs are `None` for what
/// does not exist (yet: dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SetupReport {
    /// One change per resource, in the order setup visited them.
    pub changes: Vec<Change>,
    /// URL of the queue `<name>`.
    pub queue_url: Option<String>,
    /// URL of the DLQ.
    pub dlq_url: Option<String>,
    /// ARN of the queue `<name>`.
    pub queue_arn: Option<String>,
    /// ARN of the DLQ.
    pub dlq_arn: Option<String>,
    /// ARN of the SNS topic.
    pub topic_arn: Option<String>,
    /// Non-fatal problems, one per [`ChangeAction::Failed`] change, plus advice.
    pub warnings: Vec<String>,
}

impl SetupReport {
    /// No step failed (a CLI should exit non-zero otherwise).
    pub fn is_complete(&self) -> bool {
        self.changes
            .iter()
            .all(|c| c.action != ChangeAction::Failed)
    }

    /// The change of the resource `kind` named `name`.
    pub fn get(&self, kind: ResourceKind, name: &str) -> Option<&Change> {
        self.changes
            .iter()
            .find(|c| c.resource.kind == kind && c.resource.name == name)
    }

    pub(super) fn push(
        &mut self,
        resource: Resource,
        action: ChangeAction,
        detail: impl Into<String>,
    ) {
        let detail = detail.into();
        tracing::info!(%resource, action = action.as_str(), %detail, "setup");
        self.changes.push(Change {
            resource,
            action,
            detail,
        });
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            writeln!(f, "{:<13} {}: {}", c.action.as_str(), c.resource, c.detail)?;
        }
        for (label, value) in [
            ("queue url", &self.queue_url),
            ("dlq url", &self.dlq_url),
            ("topic arn", &self.topic_arn),
        ] {
            if let Some(v) = value {
                writeln!(f, "{label}: {v}")?;
            }
        }
        self.warnings
            .iter()
            .try_for_each(|w| writeln!(f, "warning: {w}"))
    }
}

impl Setup<'_> {
    /// Reports a per-group step; "not implemented" becomes `Failed` + warning.
    pub(super) fn record_step(
        &mut self,
        resource: Resource,
        outcome: StepOutcome,
    ) -> Result<(), SetupError> {
        match outcome {
            Ok((action, detail)) => self.report.push(resource, action, detail),
            Err(StepError::Fatal(e)) => return Err(e),
            Err(StepError::Unsupported(reason)) => {
                let detail = format!("not done: {reason}");
                tracing::warn!(%resource, %detail, "setup step failed");
                self.report.warnings.push(format!("{resource}: {detail}"));
                self.report.push(resource, ChangeAction::Failed, detail);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_prints_and_serializes_as_kind_and_name() {
        let r = Resource::new(ResourceKind::AsgLifecycleHook, "web/nodereaper-terminate");
        assert_eq!(r.to_string(), "asg-lifecycle-hook web/nodereaper-terminate");
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            serde_json::json!("asg-lifecycle-hook web/nodereaper-terminate")
        );
    }
}
