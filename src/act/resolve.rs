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
    /// The Chef node's name (the instance id itself, or the search's one match).
    pub node_name: String,
    /// The API client to delete with the node: [`Resolver::client_name_for`]
    /// the node name. Not checked to exist here.
    pub client_name: String,
    /// How it was found: "node name" or the search query.
    pub found_by: String,
    /// The node as read from the server.
    #[serde(skip)]
    pub node: Option<Value>,
}

/// Why the registration of an instance could not be resolved safely. Every
/// variant but [`ResolveError::Chef`] is permanent and blames the message:
/// nodereaper refuses rather than guess.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Asking the Chef server failed; retry and blame as that error says.
    #[error(transparent)]
    Chef(#[from] ChefError),
    /// The id given is not `i-` followed by 8 or 17 hex digits, so it is never
    /// put into a search query.
    #[error("{value:?} is not an EC2 instance id (expected i- followed by 8 or 17 hex digits)")]
    InvalidInstanceId {
        /// The id as given.
        value: String,
    },
    #[error(
        "search {query:?} on {server} matched {} nodes ({}); refusing to guess which one belongs to {instance_id}",
        nodes.len(),
        nodes.join(", ")
    )]
    /// No node is named like the instance and the search matched more than
    /// one node.
    Ambiguous {
        /// Base URL of the Chef server that was asked.
        server: String,
        /// The instance whose registration was looked for.
        instance_id: String,
        /// The search query, after `{instance_id}` was filled in.
        query: String,
        /// Every matching node name, sorted.
        nodes: Vec<String>,
    },
    #[error(
        "node {node:?} on {server} (found by {found_by}) records no automatic ec2.instance_id, so nothing proves it belonged to {instance_id}; refusing to delete it"
    )]
    /// The node found has no automatic `ec2.instance_id` (Ohai's), so
    /// nothing proves it belonged to the instance.
    Unrecorded {
        /// Base URL of the Chef server that was asked.
        server: String,
        /// The node found.
        node: String,
        /// How the node was found: `node name` or `search "QUERY"`.
        found_by: String,
        /// The instance whose registration was looked for.
        instance_id: String,
    },
    #[error("{kind} name {name:?} cannot be addressed safely in a Chef API URL (expected letters, digits, '_', '-', '.', ':' and not \".\" or \"..\"); refusing to touch it")]
    /// The name cannot be put into a Chef API URL unchanged (see
    /// [`is_safe_name`]).
    UnsafeName {
        /// What the name is of: `node` or `client`.
        kind: &'static str,
        /// The name as found or given.
        name: String,
    },
    #[error(
        "node {node:?} on {server} (found by {found_by}) records ec2.instance_id {recorded:?}, not {instance_id}; refusing to delete it"
    )]
    /// The node found records, in its automatic `ec2.instance_id`, another
    /// instance (a stale search index or a reused name).
    Mismatch {
        /// Base URL of the Chef server that was asked.
        server: String,
        /// The node found.
        node: String,
        /// How the node was found: `node name` or `search "QUERY"`.
        found_by: String,
        /// The instance whose registration was looked for.
        instance_id: String,
        /// The instance id the node records.
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
    /// The API client name of `node`: the client name template with `{node}`
    /// replaced (by default the node's own name, as `knife bootstrap` makes it).
    pub fn client_name_for(&self, node: &str) -> String {
        self.client_name_template.replace("{node}", node)
    }

    /// The node search query for `instance_id`: the query template with
    /// `{instance_id}` replaced.
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
