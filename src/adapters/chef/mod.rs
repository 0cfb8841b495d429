//! Chef Infra Server side: request signing, credentials, the HTTP client and
//! the instance-id -> registration resolver.

pub mod auth;
pub mod client;
pub mod credentials;
mod groups;
mod response;

pub use crate::core::chef::{AclObject, ClientKey, ServerInfo, ServerKind};
pub use client::{ChefClient, ChefSettings};

pub use crate::ports::ChefError;
