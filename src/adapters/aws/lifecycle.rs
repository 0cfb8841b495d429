//! Auto Scaling adapter for [`Lifecycle`]: heartbeat and CONTINUE.

use async_trait::async_trait;
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use super::AwsError;
use crate::core::error::Classify;
use crate::core::ids::InstanceId;
use crate::ports::{Completion, Lifecycle, LifecycleAction};

/// [`Lifecycle`] on the Auto Scaling API of one account and region. An
/// expired or already completed action answers [`Completion::NoLongerActive`].
pub struct AsgLifecycle {
    client: Client,
}

impl AsgLifecycle {
    /// Wraps an Auto Scaling client already set up for the account and region.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// AWS answers a completion or heartbeat for an expired, already completed or
/// unknown action with a ValidationError "No active Lifecycle Action found".
/// That action needs nothing more from us.
fn no_longer_active(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("ValidationError")
        && message.is_some_and(|m| m.contains("No active Lifecycle Action found"))
}

fn target(action: &LifecycleAction) -> String {
    format!(
        "hook {} of {} for {}",
        action.hook_name, action.auto_scaling_group, action.instance_id
    )
}

/// Runs one lifecycle call, records its latency, and maps the answer.
async fn call<T, E>(
    operation: &'static str,
    action: &LifecycleAction,
    request: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> Result<Completion, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let started = std::time::Instant::now();
    let result = request.await;
    crate::telemetry::metrics::aws_request(
        "autoscaling",
        operation,
        result.is_ok(),
        started.elapsed(),
    );
    match result {
        Ok(_) => Ok(Completion::Completed),
        Err(e) if no_longer_active(e.code(), e.message()) => Ok(Completion::NoLongerActive),
        Err(e) => Err(AwsError::from_sdk(
            "AutoScaling",
            operation,
            target(action),
            e,
        )),
    }
}

#[async_trait]
impl Lifecycle for AsgLifecycle {
    async fn heartbeat(&self, action: &LifecycleAction) -> Result<Completion, AwsError> {
        let request = self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&action.auto_scaling_group)
            .lifecycle_hook_name(&action.hook_name)
            .set_lifecycle_action_token(action.token.clone())
            .instance_id(action.instance_id.as_str())
            .send();
        call("RecordLifecycleActionHeartbeat", action, request).await
    }

    async fn complete_continue(&self, action: &LifecycleAction) -> Result<Completion, AwsError> {
        let request = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&action.auto_scaling_group)
            .lifecycle_hook_name(&action.hook_name)
            .set_lifecycle_action_token(action.token.clone())
            .instance_id(action.instance_id.as_str())
            .lifecycle_action_result("CONTINUE")
            .send();
        call("CompleteLifecycleAction", action, request).await
    }

    /// Completes a lifecycle action that cannot exist (group, hook and token
    /// named for the probe). AWS checks permission before the arguments: a
    /// validation error means the call is allowed, AccessDenied that it is
    /// still not.
    async fn probe(&self) -> Result<(), AwsError> {
        let action = LifecycleAction {
            auto_scaling_group: "nodereaper-permission-probe".into(),
            hook_name: "nodereaper-permission-probe".into(),
            token: Some("00000000-0000-0000-0000-000000000000".into()),
            instance_id: probe_instance_id()?,
            metadata: None,
        };
        match self.complete_continue(&action).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_denied() || e.is_transient() => Err(e),
            Err(_) => Ok(()),
        }
    }
}

/// An instance id no instance has (all digits zero), for the permission
/// probe.
const PROBE_INSTANCE_ID: &str = "i-00000000000000000";

/// [`PROBE_INSTANCE_ID`] as an [`InstanceId`]; it is well-formed, so this
/// never fails (the test below checks), but nothing here panics.
fn probe_instance_id() -> Result<InstanceId, AwsError> {
    InstanceId::parse(PROBE_INSTANCE_ID).map_err(|e| {
        AwsError::invalid(
            "AutoScaling",
            "CompleteLifecycleAction",
            PROBE_INSTANCE_ID,
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_names_a_well_formed_instance_id() {
        assert!(probe_instance_id().is_ok());
    }

    #[test]
    fn expired_actions_are_recognised() {
        assert!(no_longer_active(
            Some("ValidationError"),
            Some("No active Lifecycle Action found with instance ID i-0123456789abcdef0")
        ));
        assert!(!no_longer_active(
            Some("ValidationError"),
            Some("1 validation error detected")
        ));
        assert!(!no_longer_active(Some("Throttling"), None));
    }
}
