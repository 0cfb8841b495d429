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
    /// The AWS service called, as shown to people: `SQS`, `EC2`,
    /// `AutoScaling`, `STS`, `S3`, `SSM`, `Secrets Manager`.
    pub service: &'static str,
    /// The API operation, as AWS names it (e.g. `DescribeInstances`).
    pub operation: &'static str,
    /// What the call was about: a queue URL, an instance id, a bucket/key...
    pub target: String,
    /// The AWS error code (e.g. `ThrottlingException`), when there is one.
    pub code: Option<String>,
    /// AWS's own error message, or the SDK's description of a transport
    /// failure when AWS never answered.
    pub message: String,
    /// Whether the same call may succeed later (throttling, 5xx, timeouts)
    /// or never will.
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
    /// 401: the server did not accept the request signature: the host clock
    /// is off by more than 15 minutes or the key is not `client`'s. Blames
    /// nodereaper's setup, never the message.
    Unauthorized {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// The API client nodereaper signed as (`chef.client_name`).
        client: String,
        /// The server's `error` text, or the start of its body.
        detail: String,
    },
    #[error(
        "Chef server {server} denied {method} {object} (403 Forbidden: {detail}). {}",
        crate::core::chef_permissions::explain_forbidden(.method, .object, .client)
    )]
    /// 403: the signature was good but `client` lacks permission (Chef ACLs)
    /// on the object. Blames nodereaper's setup, never the message. The
    /// message names the permission this request needed
    /// ([`crate::core::chef_permissions::needed_for`]), not the server's
    /// text, which names the HTTP method's permission.
    Forbidden {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// The API client nodereaper signed as (`chef.client_name`).
        client: String,
        /// The server's `error` text, or the start of its body.
        detail: String,
    },
    #[error("Chef server {server}: {method} {object} answered {status}: {detail}")]
    /// Any other non-success HTTP status (404, 409, 5xx, ...). 5xx, 408 and
    /// 429 are transient; the rest permanent.
    Status {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// The HTTP status code.
        status: u16,
        /// The server's `error` text, or the start of its body.
        detail: String,
    },
    #[error(
        "Chef server {server}: {method} {object} answered 404 for the collection itself ({detail}): \
         the organization in chef.server_url is wrong or missing, so no registration can be \
         looked up; check the /organizations/ORG part of chef.server_url"
    )]
    /// 404 for a collection (`/nodes`, `/clients`, `/search/node`): a wrong
    /// or missing organization. Every lookup would say "absent", so this
    /// blames nodereaper's setup, never the message (messages are held).
    NoOrganization {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The collection asked for (e.g. `/nodes`).
        object: String,
        /// The server's `error` text, or the start of its body.
        detail: String,
    },
    #[error(
        "Chef server {server}: DELETE {object} answered 200 with an empty body, so nothing was \
         deleted. The server URL is probably wrong (an /organizations/ORG path on a server that \
         has none, or a proxy answering for it)"
    )]
    /// A DELETE answered 200 with an empty body; Chef Server returns the
    /// deleted object, so nothing was deleted and the URL is probably wrong.
    EmptyDelete {
        /// The Chef server URL as configured.
        server: String,
        /// The path of the object that was to be deleted.
        object: String,
    },
    #[error(
        "Chef server {server}: {method} {object} answered {status} redirecting to {location:?}; \
         not followed (the signed headers must not go elsewhere): set chef.server_url to the final URL"
    )]
    /// A 3xx answer. Not followed, so the signed headers are never sent to
    /// another host; `chef.server_url` should be the final URL.
    Redirect {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// The 3xx HTTP status code.
        status: u16,
        /// The `Location` header, or `(no Location header)`.
        location: String,
    },
    #[error("Chef server {server}: {method} {object} failed: {source}")]
    /// No HTTP answer: DNS, connect, TLS or timeout failure. Transient.
    Transport {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    #[error("Chef server {server}: {method} {object}: unexpected response: {detail}")]
    /// The server answered successfully but not in the shape the Chef API
    /// documents (e.g. a body that is not JSON); also used for setup failures
    /// of the client itself (method `setup`).
    BadResponse {
        /// The Chef server URL as configured (`chef.server_url`, without a
        /// trailing `/`).
        server: String,
        /// The HTTP method (`GET`, `DELETE`, ...).
        method: String,
        /// The path asked for, below the server URL (e.g. `/nodes/web-1`).
        object: String,
        /// What was wrong with the answer.
        detail: String,
    },
    #[error("cannot sign a request to {server}: {source}")]
    /// The request could not be signed (e.g. an unusable private key).
    Signing {
        /// The Chef server URL as configured.
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
                | ChefError::NoOrganization { .. }
                | ChefError::Redirect { .. }
        )
    }
}

/// A failure reading or writing the deletion journal (the record of every
/// deleted node and client, kept so they can be restored).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A local file or directory could not be read or written. Transient: a
    /// full disk may clear, and nothing is deleted before the journal is written.
    #[error("journal {location}: {detail}: {source}")]
    Io {
        /// The file or directory path.
        location: String,
        /// What nodereaper was doing (e.g. which file it was opening).
        detail: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An entry could not be read or encoded as JSON. Permanent.
    #[error("journal {location}: line {line}: {detail}")]
    Corrupt {
        /// The file path, or `s3://bucket/prefix`.
        location: String,
        /// The 1-based line number of a local index file; 0 when no line applies
        /// (e.g. an S3 object).
        line: usize,
        /// What was wrong.
        detail: String,
    },
    /// An S3 call of an S3-backed journal failed; retry as the AWS error says.
    #[error("journal {location}: {source}")]
    S3 {
        /// The journal's `s3://bucket/prefix`.
        location: String,
        /// The failed S3 call.
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
    UnknownAccount {
        /// The 12-digit account id the event names.
        account: String,
        /// nodereaper's own account id (from STS `GetCallerIdentity`).
        own: String,
    },
    /// The role of a configured account gave credentials of another
    /// account: asking there would find none of this account's instances,
    /// so each would look gone. nodereaper's configuration, not the
    /// message, is wrong: the message is held.
    #[error("[[aws.accounts]] {account}: role {role_arn} gives credentials of account {actual} (STS GetCallerIdentity), not {account}; refusing to verify this account's instances elsewhere")]
    WrongRoleAccount {
        /// The configured account id.
        account: String,
        /// The configured role.
        role_arn: String,
        /// The account STS says the assumed credentials belong to.
        actual: String,
    },
    /// Finding our own account or assuming the account's role failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl Classify for PlacementError {
    fn retry(&self) -> Retry {
        match self {
            PlacementError::UnknownAccount { .. } | PlacementError::WrongRoleAccount { .. } => {
                Retry::Permanent
            }
            PlacementError::Aws(e) => e.retry(),
        }
    }

    fn blames_message(&self) -> bool {
        match self {
            PlacementError::UnknownAccount { .. } => true,
            PlacementError::WrongRoleAccount { .. } => false,
            PlacementError::Aws(e) => e.blames_message(),
        }
    }
}
