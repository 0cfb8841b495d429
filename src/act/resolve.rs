//! From an EC2 instance id to its Chef registrations.
//!
//! 1. A node named exactly like the instance id;
//! 2. else the configured search (default `ec2_instance_id:{instance_id}`);
//!    more than one match is refused, never guessed.
//!
//! A found node whose `ec2.instance_id` names another instance is refused too:
//! the search index may be stale, and deleting the wrong node is the one
//! mistake nodereaper must not make.

use serde::Serialize;
use serde_json::Value;

use crate::adapters::chef::ChefError;
use crate::core::error::{Classify, Retry};
use crate::core::event::is_instance_id;
use crate::ports::ChefApi;

/// How registrations are looked up.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// Search query with `{instance_id}`.
    pub query_template: String,
    /// Client name with `{node}`.
    pub client_name_template: String,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            query_template: "ec2_instance_id:{instance_id}".into(),
            client_name_template: "{node}".into(),
        }
    }
}

/// A node (and its client) found for an instance.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub node_name: String,
    pub client_name: String,
    /// How it was found: "node name" or the search query.
    pub found_by: String,
    /// The node as read from the server.
    #[serde(skip)]
    pub node: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Chef(#[from] ChefError),
    #[error("{value:?} is not an EC2 instance id (expected i- followed by 8 or 17 hex digits)")]
    InvalidInstanceId { value: String },
    #[error(
        "search {query:?} on {server} matched {} nodes ({}); refusing to guess which one belongs to {instance_id}",
        nodes.len(),
        nodes.join(", ")
    )]
    Ambiguous {
        server: String,
        instance_id: String,
        query: String,
        nodes: Vec<String>,
    },
    #[error(
        "node {node:?} on {server} (found by {found_by}) records no automatic ec2.instance_id, so nothing proves it belonged to {instance_id}; refusing to delete it"
    )]
    Unrecorded {
        server: String,
        node: String,
        found_by: String,
        instance_id: String,
    },
    #[error("{kind} name {name:?} cannot be addressed safely in a Chef API URL (expected letters, digits, '_', '-', '.', ':' and not \".\" or \"..\"); refusing to touch it")]
    UnsafeName { kind: &'static str, name: String },
    #[error(
        "node {node:?} on {server} (found by {found_by}) records ec2.instance_id {recorded:?}, not {instance_id}; refusing to delete it"
    )]
    Mismatch {
        server: String,
        node: String,
        found_by: String,
        instance_id: String,
        recorded: String,
    },
}

impl Classify for ResolveError {
    fn retry(&self) -> Retry {
        match self {
            ResolveError::Chef(e) => e.retry(),
            _ => Retry::Permanent,
        }
    }

    fn blames_message(&self) -> bool {
        match self {
            ResolveError::Chef(e) => e.blames_message(),
            _ => true,
        }
    }
}

/// Whether `name` is a Chef object name that a URL path segment carries
/// unchanged: Chef's own rule (letters, digits, `_`, `-`, `.`, `:`), and
/// never `.` or `..`, which URL joining would drop or climb.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The instance id recorded in a node's automatic attributes (Ohai).
pub fn recorded_instance_id(node: &Value) -> Option<&str> {
    node.pointer("/automatic/ec2/instance_id")
        .and_then(Value::as_str)
}

impl Resolver {
    pub fn client_name_for(&self, node: &str) -> String {
        self.client_name_template.replace("{node}", node)
    }

    pub fn query_for(&self, instance_id: &str) -> String {
        self.query_template.replace("{instance_id}", instance_id)
    }

    /// Finds the registration of `instance_id`, `None` when there is none.
    pub async fn resolve(
        &self,
        chef: &dyn ChefApi,
        instance_id: &str,
    ) -> Result<Option<Registration>, ResolveError> {
        // The id ends up in a search query: only well-formed ids get there.
        if !is_instance_id(instance_id) {
            return Err(ResolveError::InvalidInstanceId {
                value: instance_id.to_string(),
            });
        }
        let (name, node, found_by) = match chef.get_node(instance_id).await? {
            Some(node) => (instance_id.to_string(), Some(node), "node name".to_string()),
            None => {
                let query = self.query_for(instance_id);
                let mut names = chef.search_node_names(&query).await?;
                names.sort();
                names.dedup();
                match names.len() {
                    0 => return Ok(None),
                    1 => {
                        let name = names.remove(0);
                        // The index may be ahead of the store (just deleted).
                        let node = chef.get_node(&name).await?;
                        if node.is_none() {
                            return Ok(None);
                        }
                        (name, node, format!("search {query:?}"))
                    }
                    _ => {
                        return Err(ResolveError::Ambiguous {
                            server: chef.server().to_string(),
                            instance_id: instance_id.to_string(),
                            query,
                            nodes: names,
                        })
                    }
                }
            }
        };
        if !is_safe_name(&name) {
            return Err(ResolveError::UnsafeName { kind: "node", name });
        }
        // Only Ohai's automatic attribute counts: search also matches
        // `normal`/`override` attributes, which any client can set on its node.
        match node.as_ref().and_then(recorded_instance_id) {
            Some(recorded) if recorded == instance_id => {}
            Some(recorded) => {
                return Err(ResolveError::Mismatch {
                    server: chef.server().to_string(),
                    node: name,
                    found_by,
                    instance_id: instance_id.to_string(),
                    recorded: recorded.to_string(),
                })
            }
            None => {
                return Err(ResolveError::Unrecorded {
                    server: chef.server().to_string(),
                    node: name,
                    found_by,
                    instance_id: instance_id.to_string(),
                })
            }
        }
        Ok(Some(Registration {
            client_name: self.client_name_for(&name),
            node_name: name,
            found_by,
            node,
        }))
    }
}
