//! How the outside world fails, one error type per port: each names what
//! failed on which object and says (via [`Classify`]) whether retrying can
//! help and whether the message or nodereaper's own setup is to blame.
//! The adapters build these; the pipeline only classifies them.

use crate::core::error::{Classify, Retry};

/// A failed AWS call: which service, which operation, on what, and whether
/// retrying can help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("AWS {service} {operation} on {target} failed: {message}")]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub target: String,
    /// The AWS error code (e.g. `ThrottlingException`), when there is one.
    pub code: Option<String>,
    pub message: String,
    pub retry: Retry,
    /// HTTP status of the answer, when there was one.
    pub status: Option<u16>,
}

impl Classify for AwsError {
    fn retry(&self) -> Retry {
        self.retry
    }

    /// Permission and credential errors are nodereaper's, not the message's:
    /// every message would fail alike, so messages are held, not dead-lettered.
    fn blames_message(&self) -> bool {
        !self.is_denied()
    }
}

/// AWS error codes that mean "nodereaper may not do this" or "its
/// credentials are bad": an IAM or credentials mistake, never the message's.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
    "AuthFailure",
    "AuthorizationError",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "OptInRequired",
    "AWS.SimpleQueueService.NonExistentQueue",
    "InvalidSecurity",
    "KMS.AccessDeniedException",
];

impl AwsError {
    /// An error found in an otherwise successful answer.
    pub fn invalid(
        service: &'static str,
        operation: &'static str,
        target: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        AwsError {
            service,
            operation,
            target: target.into(),
            code: None,
            message: message.into(),
            retry: Retry::Permanent,
            status: None,
        }
    }

    /// Whether AWS refused nodereaper itself (IAM, credentials), as opposed
    /// to the request or the message.
    pub fn is_denied(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| DENIED_CODES.contains(&c))
            || self.status == Some(403)
    }
}

/// Everything that can go wrong talking to a Chef server. Every variant names
/// the server, the object and (when there is one) the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ChefError {
    #[error(
        "Chef server {server} refused the signed request {method} {object} (401 Unauthorized: {detail}). \
         Either the clock of this host differs from the server's by more than 15 minutes \
         (check NTP; `nodereaper doctor` measures the skew), or the key does not belong to \
         client {client:?} (check client_name and client_key)"
    )]
    Unauthorized {
        server: String,
        method: String,
        object: String,
        client: String,
        detail: String,
    },
    #[error(
        "Chef server {server} denied {method} {object} (403 Forbidden: {detail}). Client {client:?} \
         needs read and delete permission on nodes and clients (grant it via an ACL or make it an admin)"
    )]
    Forbidden {
        server: String,
        method: String,
        object: String,
        client: String,
        detail: String,
    },
    #[error("Chef server {server}: {method} {object} answered {status}: {detail}")]
    Status {
        server: String,
        method: String,
        object: String,
        status: u16,
        detail: String,
    },
    #[error(
        "Chef server {server}: DELETE {object} answered 200 with an empty body, so nothing was \
         deleted. The server URL is probably wrong (an /organizations/ORG path on a server that \
         has none, or a proxy answering for it)"
    )]
    EmptyDelete { server: String, object: String },
    #[error(
        "Chef server {server}: {method} {object} answered {status} redirecting to {location:?}; \
         not followed (the signed headers must not go elsewhere): set chef.server_url to the final URL"
    )]
    Redirect {
        server: String,
        method: String,
        object: String,
        status: u16,
        location: String,
    },
    #[error("Chef server {server}: {method} {object} failed: {source}")]
    Transport {
        server: String,
        method: String,
        object: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Chef server {server}: {method} {object}: unexpected response: {detail}")]
    BadResponse {
        server: String,
        method: String,
        object: String,
        detail: String,
    },
    #[error("cannot sign a request to {server}: {source}")]
    Signing {
        server: String,
        /// The signing failure (an `auth::AuthError` of the Chef adapter).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Classify for ChefError {
    fn retry(&self) -> Retry {
        match self {
            ChefError::Transport { .. } => Retry::Transient,
            ChefError::Status { status, .. }
                if *status >= 500 || *status == 429 || *status == 408 =>
            {
                Retry::Transient
            }
            _ => Retry::Permanent,
        }
    }

    fn blames_message(&self) -> bool {
        !matches!(
            self,
            ChefError::Unauthorized { .. }
                | ChefError::Forbidden { .. }
                | ChefError::Signing { .. }
                | ChefError::EmptyDelete { .. }
                | ChefError::Redirect { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {location}: {detail}: {source}")]
    Io {
        location: String,
        detail: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {location}: line {line}: {detail}")]
    Corrupt {
        location: String,
        line: usize,
        detail: String,
    },
    #[error("journal {location}: {source}")]
    S3 {
        location: String,
        #[source]
        source: Box<AwsError>,
    },
}

impl Classify for JournalError {
    fn retry(&self) -> Retry {
        match self {
            // A full disk or an S3 outage may pass; either way nothing is deleted.
            JournalError::Io { .. } => Retry::Transient,
            JournalError::S3 { source, .. } => source.retry(),
            JournalError::Corrupt { .. } => Retry::Permanent,
        }
    }
}

/// Why the services of a placement are not available.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlacementError {
    /// The event names an account that is neither nodereaper's own nor
    /// configured in `[[aws.accounts]]`: nobody can say whether the instance
    /// is gone, so the event is refused.
    #[error("the event is from AWS account {account}, which is neither nodereaper's own ({own}) nor configured in [[aws.accounts]]; refusing to act on an instance nodereaper cannot verify")]
    UnknownAccount { account: String, own: String },
    /// Finding our own account or assuming the account's role failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl Classify for PlacementError {
    fn retry(&self) -> Retry {
        match self {
            PlacementError::UnknownAccount { .. } => Retry::Permanent,
            PlacementError::Aws(e) => e.retry(),
        }
    }

    fn blames_message(&self) -> bool {
        match self {
            PlacementError::UnknownAccount { .. } => true,
            PlacementError::Aws(e) => e.blames_message(),
        }
    }
}
