//! Setup's errors: the fatal [`SetupError`], and the per-group step error
//! that tells "the endpoint does not implement this call" from a failure.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{ChangeAction, Resource};
use crate::adapters::aws::AwsError;
use crate::core::error::{Classify, Retry};

/// AWS error codes meaning "this endpoint does not implement the call".
const UNSUPPORTED_CODES: [&str; 4] = [
    "NotImplemented",
    "NotImplementedException",
    "InvalidAction",
    "UnknownOperationException",
];

/// A setup failure: which resource, and the AWS error (or the bad input).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An AWS call failed; `error` names the resource as its target.
    #[error("{error}")]
    Aws {
        /// The resource (`<kind> <name>`) or lookup the call was for.
        resource: String,
        /// The classified AWS error.
        error: Box<AwsError>,
    },
    /// The spec (or the environment) asks for what AWS would refuse.
    #[error("invalid setup: {0}")]
    Invalid(String),
}

impl SetupError {
    /// An SDK error of `service` `operation` on `resource`.
    pub(super) fn aws<E>(
        resource: impl ToString,
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.to_string();
        let error = AwsError::from_sdk(service, operation, &resource, err);
        SetupError::Aws {
            resource,
            error: Box::new(error),
        }
    }

    /// An answer of `service` `operation` that lacks what setup needs.
    pub(super) fn answer(
        resource: impl ToString,
        service: &'static str,
        operation: &'static str,
        message: &str,
    ) -> Self {
        let resource = resource.to_string();
        let error = AwsError::invalid(service, operation, &resource, message);
        SetupError::Aws {
            resource,
            error: Box::new(error),
        }
    }
}

impl Classify for SetupError {
    fn retry(&self) -> Retry {
        match self {
            SetupError::Aws { error, .. } => error.retry(),
            SetupError::Invalid(_) => Retry::Permanent,
        }
    }

    /// Setup handles no message.
    fn blames_message(&self) -> bool {
        false
    }
}

/// A per-group step's failure: fatal, or "the endpoint does not implement
/// this call" (reported with the reason, setup goes on).
pub(super) enum StepError {
    Fatal(SetupError),
    Unsupported(String),
}

impl From<SetupError> for StepError {
    fn from(e: SetupError) -> Self {
        StepError::Fatal(e)
    }
}

/// What a per-group step did, with the detail to report.
pub(super) type StepOutcome = Result<(ChangeAction, String), StepError>;

/// Classifies an SDK error of a per-group step.
pub(super) fn step_err<E>(
    resource: &Resource,
    service: &'static str,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // An AWS error code saying so, or an HTTP 500/501 without any AWS error
    // code (moto answers unimplemented actions with a bare HTML 500).
    let status = err.raw_response().map(|r| r.status().as_u16());
    let answer = match (err.code(), status) {
        (Some(code), _) if UNSUPPORTED_CODES.contains(&code) => code.to_string(),
        (None, Some(s @ (500 | 501))) => format!("HTTP {s} without an AWS error code"),
        _ => return StepError::Fatal(SetupError::aws(resource, service, operation, err)),
    };
    let error = AwsError::from_sdk(service, operation, resource.to_string(), err);
    tracing::debug!(%resource, %error, "call not implemented by the endpoint");
    StepError::Unsupported(format!(
        "{service} {operation} is not implemented by this endpoint ({answer})"
    ))
}
