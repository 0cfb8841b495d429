//! AWS side: SDK configuration, typed errors, and the adapters behind the
//! [`crate::ports`] traits (SQS queue, EC2 inventory, Auto Scaling lifecycle).

pub mod ec2;
pub mod fleet;
pub mod lifecycle;
pub mod permissions;
pub mod sqs;
pub mod tags;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::config::AwsConfig;
use crate::core::error::Retry;
pub use crate::ports::AwsError;

/// AWS error codes that mean "slow down / try later".
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "RequestExpired",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.KmsThrottled",
];

impl AwsError {
    /// Classifies an SDK error: transport failures, timeouts, 5xx and
    /// throttling are transient; everything else is permanent.
    pub fn from_sdk<E>(
        service: &'static str,
        operation: &'static str,
        target: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let target = target.into();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message, retry) = sdk_error_parts(&err, status);
        // An answer the SDK could not parse may still carry AWS's error: moto
        // answers an SQS denial in XML even on the JSON protocol.
        let (code, message) = match (code, &err) {
            (None, _) => match err.raw_response().and_then(xml_error) {
                Some((c, m)) => (Some(c), m),
                None => (None, message),
            },
            (code, _) => (code, message),
        };
        let message = match (&code, status) {
            (Some(c), Some(s)) => format!("{c} (HTTP {s}): {message}"),
            (Some(c), None) => format!("{c}: {message}"),
            (None, Some(s)) => format!("HTTP {s}: {message}"),
            (None, None) => message,
        };
        let mut error = AwsError {
            service,
            operation,
            target,
            code,
            message,
            retry,
            status,
        };
        if error.is_denied() {
            // Denied is never transient, whatever the body looked like.
            error.retry = Retry::Permanent;
            crate::telemetry::events::aws_denied(
                permissions::lookup(service, operation).map(|c| c.action),
            );
            if let Some(hint) = permissions::denial_hint(service, operation) {
                error.message = format!("{}; {hint}", error.message);
            }
        }
        error
    }
}

/// Code, message and retry class of an SDK error, from what the SDK parsed
/// and the HTTP status: transport failures, timeouts, 5xx and throttling are
/// transient; everything else is permanent.
fn sdk_error_parts<E>(
    err: &SdkError<E, HttpResponse>,
    status: Option<u16>,
) -> (Option<String>, String, Retry)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let code = e.code().map(str::to_string);
            let message = e.message().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(err)
                )
            });
            let transient = code
                .as_deref()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || status.is_some_and(|s| s >= 500 || s == 429);
            let retry = if transient {
                Retry::Transient
            } else {
                Retry::Permanent
            };
            (code, message, retry)
        }
        SdkError::ConstructionFailure(_) => (
            None,
            format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
            Retry::Permanent,
        ),
        // Timeouts, dispatch (connection) failures, unparseable responses
        // from a struggling endpoint: try again later.
        _ => (
            None,
            format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
            if status.is_some_and(|s| (400..500).contains(&s) && s != 429) {
                Retry::Permanent
            } else {
                Retry::Transient
            },
        ),
    }
}

/// `<Code>` and `<Message>` of an XML error body (AWS query protocol, S3,
/// and moto's answers to any protocol).
fn xml_error(response: &HttpResponse) -> Option<(String, String)> {
    let body = std::str::from_utf8(response.body().bytes()?).ok()?;
    let element = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let len = body[start..].find(&format!("</{name}>"))?;
        Some(body[start..start + len].trim().to_string())
    };
    let code = element("Code").filter(|c| !c.is_empty())?;
    Some((code, element("Message").unwrap_or_default()))
}

/// The HTTPS client every AWS SDK client uses: hyper 1 + rustls 0.23 with
/// ring, the same TLS stack as the Chef client (one crypto backend in the
/// binary). Trusts the platform's root certificates, like the SDK default.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Loads the SDK configuration: the standard credential chain, the region
/// (argument, else `aws.region`, else the chain), and the endpoint override
/// (`aws.endpoint_url`, else `AWS_ENDPOINT_URL`, which the SDK reads itself).
pub async fn sdk_config(aws: &AwsConfig, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
    if let Some(r) = region.or(aws.region.as_deref()) {
        loader = loader.region(Region::new(r.to_string()));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    // The SDK waits forever on a hung endpoint by default. Long polls last
    // up to 20 s, so an attempt may take 30 s before it counts as failed.
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_attempt_timeout(std::time::Duration::from_secs(30))
            .operation_timeout(std::time::Duration::from_secs(90))
            .build(),
    );
    loader.load().await
}

/// The region in an SQS queue URL (`https://sqs.REGION.amazonaws.com/...`).
pub fn region_from_queue_url(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_string();
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if region.contains('-') => Some(region.to_string()),
        (Some(region), Some("queue")) if region.contains('-') => Some(region.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Classify;

    fn error(code: Option<&str>, status: Option<u16>, retry: Retry) -> AwsError {
        AwsError {
            service: "EC2",
            operation: "DescribeInstances",
            target: "x".into(),
            code: code.map(str::to_string),
            message: "m".into(),
            retry,
            status,
        }
    }

    #[test]
    fn permission_and_credential_errors_hold_instead_of_poisoning() {
        for code in [
            "AccessDenied",
            "UnauthorizedOperation",
            "ExpiredToken",
            "InvalidClientTokenId",
            "AccessDeniedException",
        ] {
            let e = error(Some(code), Some(400), Retry::Permanent);
            assert!(!e.blames_message(), "{code}");
        }
        assert!(!error(None, Some(403), Retry::Permanent).blames_message());
        // A bad request is the message's fault (poison), throttling is transient.
        assert!(error(Some("InvalidParameterValue"), Some(400), Retry::Permanent).blames_message());
        assert!(error(Some("Throttling"), Some(400), Retry::Transient).is_transient());
    }

    #[test]
    fn a_403_with_an_xml_body_on_the_json_protocol_is_a_named_denial() {
        // moto answers an SQS (JSON protocol) denial in XML: the SDK cannot
        // parse it, the status and the XML body still tell.
        let body = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: u is not \
                    authorized to perform: sqs:ReceiveMessage</Message></Error></ErrorResponse>";
        let raw = HttpResponse::new(
            403.try_into().expect("status"),
            aws_smithy_types::body::SdkBody::from(body),
        );
        let err: SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError, _> =
            SdkError::response_error("unexpected token '<'", raw);
        let denied = || {
            crate::telemetry::metrics::get()
                .aws_denied
                .with_label_values(&["sqs:ReceiveMessage"])
                .get()
        };
        let before = denied();
        let e = AwsError::from_sdk("SQS", "ReceiveMessage", "q", err);
        assert!(e.is_denied() && !e.blames_message(), "{e}");
        // Counted under the IAM action (other tests may count too: at least one).
        assert!(denied() > before);
        assert_eq!(e.code.as_deref(), Some("AccessDenied"));
        assert!(e.to_string().contains("statement \"ConsumeQueues\""), "{e}");
    }

    #[test]
    fn queue_url_regions() {
        assert_eq!(
            region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_queue_url("https://us-east-2.queue.amazonaws.com/123456789012/q")
                .as_deref(),
            Some("us-east-2")
        );
        assert_eq!(
            region_from_queue_url("http://127.0.0.1:5000/123456789012/q"),
            None
        );
    }
}
