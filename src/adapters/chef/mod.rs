//! Chef Infra Server side: request signing, credentials, the HTTP client and
//! the instance-id -> registration resolver.

pub mod auth;
pub mod client;
pub mod credentials;
pub mod server;

pub use client::{ChefClient, ChefSettings};
pub use server::{AclObject, ClientKey, ServerInfo, ServerKind};

use crate::core::error::{Classify, Retry};

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
        #[source]
        source: auth::AuthError,
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
