//! Protection rules: registrations nodereaper must never delete.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::ec2::InstanceInfo;

/// `[protect]`: nodes and clients that are never deleted.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectConfig {
    /// Glob patterns (`*`, `?`, `[...]`) on node names that are never deleted.
    pub node_names: Vec<String>,
    /// Roles whose nodes are never deleted (exact names).
    pub roles: Vec<String>,
    /// Chef environments whose nodes are never deleted (exact names).
    pub environments: Vec<String>,
    /// Policy groups whose nodes are never deleted (exact names).
    pub policy_groups: Vec<String>,
    /// Instances carrying this tag (any value but "false") are left alone;
    /// `""` switches the opt-out tag off. Seen only while EC2 still knows the
    /// instance (about an hour after termination).
    pub instance_tag: Option<String>,
    /// Nodes with this Chef tag (`normal.tags`, as `knife tag create` sets
    /// it) are never deleted; checked on every path, EC2 or not. `""` off.
    pub node_tag: Option<String>,
    /// Glob patterns on client names that are never deleted (besides
    /// validator and admin clients and nodereaper's own identity).
    pub client_names: Vec<String>,
    /// Chef Infra Server groups whose member clients (directly or through
    /// nested groups) are never deleted, besides `admins`, which always is.
    pub client_groups: Vec<String>,
}

impl Default for ProtectConfig {
    fn default() -> Self {
        Self {
            node_names: Vec::new(),
            roles: Vec::new(),
            environments: Vec::new(),
            policy_groups: Vec::new(),
            instance_tag: Some("nodereaper:protect".into()),
            node_tag: Some("nodereaper:protect".into()),
            client_names: vec!["*-validator".into()],
            client_groups: Vec::new(),
        }
    }
}

/// Compiled [`ProtectConfig`].
#[derive(Debug, Clone, Default)]
pub struct Protection {
    names: Vec<glob::Pattern>,
    roles: Vec<String>,
    environments: Vec<String>,
    policy_groups: Vec<String>,
    instance_tag: Option<String>,
    node_tag: Option<String>,
    client_names: Vec<glob::Pattern>,
    client_groups: Vec<String>,
    /// nodereaper's own client name: never deleted.
    own_client: Option<String>,
}

impl Protection {
    /// Patterns were validated with the configuration; an invalid one here is
    /// skipped with an error log rather than silently matching nothing.
    pub fn new(cfg: &ProtectConfig) -> Self {
        let compile = |key: &str, patterns: &[String]| -> Vec<glob::Pattern> {
            patterns
                .iter()
                .filter_map(|p| match glob::Pattern::new(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(pattern = %p, error = %e, key, "invalid protect pattern");
                        None
                    }
                })
                .collect()
        };
        Self {
            names: compile("protect.node_names", &cfg.node_names),
            client_names: compile("protect.client_names", &cfg.client_names),
            client_groups: cfg.client_groups.clone(),
            node_tag: cfg.node_tag.clone().filter(|t| !t.is_empty()),
            own_client: None,
            roles: cfg.roles.clone(),
            environments: cfg.environments.clone(),
            policy_groups: cfg.policy_groups.clone(),
            // An empty tag name switches the opt-out tag off.
            instance_tag: cfg.instance_tag.clone().filter(|t| !t.is_empty()),
        }
    }

    /// nodereaper's own client, which it must never delete.
    pub fn with_own_client(mut self, name: impl Into<String>) -> Self {
        self.own_client = Some(name.into());
        self
    }

    /// Why a client must not be deleted with its node, if it must not: a
    /// validator or admin client, nodereaper's own identity, or a protected
    /// name. An instance can rename its own node (clients may create nodes),
    /// so the client named after a node is not necessarily the instance's.
    pub fn client_reason(&self, name: &str, client: Option<&Value>) -> Option<String> {
        if self.own_client.as_deref() == Some(name) {
            return Some(format!("client {name:?} is nodereaper's own identity"));
        }
        if let Some(p) = self.client_names.iter().find(|p| p.matches(name)) {
            return Some(format!(
                "client name {name:?} matches protected pattern {:?}",
                p.as_str()
            ));
        }
        let client = client?;
        for flag in ["validator", "admin"] {
            if client.get(flag).and_then(Value::as_bool) == Some(true) {
                return Some(format!(
                    "client {name:?} is {} {flag} client",
                    if flag == "admin" { "an" } else { "a" }
                ));
            }
        }
        None
    }

    /// The groups whose member clients are never deleted: `admins` (Chef
    /// Infra Server's admins are its members; API v1 client bodies carry no
    /// `admin` flag) and `protect.client_groups`.
    pub fn protected_groups(&self) -> Vec<String> {
        let mut groups = vec![crate::core::groups::ADMINS.to_string()];
        for g in &self.client_groups {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        groups
    }

    /// Only the configured `protect.client_groups` (not `admins`).
    pub fn configured_client_groups(&self) -> &[String] {
        &self.client_groups
    }

    /// Why a node must be left alone, if it must.
    pub fn node_reason(&self, name: &str, node: Option<&Value>) -> Option<String> {
        if let Some(p) = self.names.iter().find(|p| p.matches(name)) {
            return Some(format!(
                "node name {name:?} matches protected pattern {:?}",
                p.as_str()
            ));
        }
        let node = node?;
        // The Chef-side marker (`knife tag create NODE nodereaper:protect`)
        // outlives the instance, unlike its EC2 tag.
        if let Some(tag) = &self.node_tag {
            let tagged = node
                .pointer("/normal/tags")
                .and_then(Value::as_array)
                .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(tag)));
            if tagged {
                return Some(format!("node {name:?} carries the Chef tag {tag:?}"));
            }
        }
        if let Some(env) = node.get("chef_environment").and_then(Value::as_str) {
            if self.environments.iter().any(|e| e == env) {
                return Some(format!("node {name:?} is in protected environment {env:?}"));
            }
        }
        if let Some(group) = node.get("policy_group").and_then(Value::as_str) {
            if self.policy_groups.iter().any(|g| g == group) {
                return Some(format!(
                    "node {name:?} is in protected policy group {group:?}"
                ));
            }
        }
        if let Some(role) = node_roles(node)
            .into_iter()
            .find(|r| self.roles.contains(r))
        {
            return Some(format!("node {name:?} has protected role {role:?}"));
        }
        None
    }

    /// Why an instance must be left alone (its opt-out tag), if it must.
    pub fn instance_reason(&self, info: &InstanceInfo) -> Option<String> {
        let tag = self.instance_tag.as_ref()?;
        let value = info.tags.get(tag)?;
        if value.eq_ignore_ascii_case("false") {
            return None;
        }
        Some(format!(
            "instance {} carries the opt-out tag {tag}={value:?}",
            info.instance_id
        ))
    }
}

/// Roles of a node: the expanded `automatic.roles` plus `role[...]` entries of
/// the run list.
pub fn node_roles(node: &Value) -> Vec<String> {
    let mut roles: Vec<String> = node
        .pointer("/automatic/roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    roles.extend(
        node.get("run_list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|item| item.strip_prefix("role[")?.strip_suffix(']'))
            .map(str::to_string),
    );
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn protection() -> Protection {
        Protection::new(&ProtectConfig {
            node_names: vec!["chef-server*".into(), "bastion-?".into()],
            roles: vec!["database".into()],
            environments: vec!["_protected".into()],
            policy_groups: vec!["prod-critical".into()],
            instance_tag: Some("nodereaper:protect".into()),
            node_tag: Some("nodereaper:protect".into()),
            client_names: vec!["*-validator".into()],
            client_groups: vec!["deployers".into()],
        })
        .with_own_client("nodereaper")
    }

    #[test]
    fn chef_tag_protects_after_ec2_forgot_the_instance() {
        let p = protection();
        let tagged = json!({"normal": {"tags": ["web", "nodereaper:protect"]}});
        assert!(p
            .node_reason("n", Some(&tagged))
            .unwrap_or_default()
            .contains("Chef tag"));
        let other_tags = json!({"normal": {"tags": ["web"]}});
        assert!(p.node_reason("n", Some(&other_tags)).is_none());
        // A tag elsewhere (e.g. an attribute named like it) does not count.
        let elsewhere = json!({"automatic": {"tags": ["nodereaper:protect"]}});
        assert!(p.node_reason("n", Some(&elsewhere)).is_none());
    }

    #[test]
    fn validator_admin_own_and_named_clients_are_never_deleted() {
        let p = protection();
        let reason = |name: &str, client: Value| p.client_reason(name, Some(&client));
        assert!(reason("acme-validator", json!({"validator": false})).is_some());
        assert!(reason("chef-validator-x", json!({"validator": true})).is_some());
        assert!(reason("web-1", json!({"admin": true})).is_some());
        assert!(reason("nodereaper", json!({})).is_some());
        assert!(reason("web-1", json!({"validator": false, "admin": false})).is_none());
        assert!(p.client_reason("web-1", None).is_none());
    }

    #[test]
    fn admins_and_configured_groups_are_protected_once_each() {
        let p = protection();
        assert_eq!(p.protected_groups(), vec!["admins", "deployers"]);
        let twice = Protection::new(&ProtectConfig {
            client_groups: vec!["admins".into()],
            ..ProtectConfig::default()
        });
        assert_eq!(twice.protected_groups(), vec!["admins"]);
        assert_eq!(twice.configured_client_groups(), ["admins".to_string()]);
    }

    #[test]
    fn name_patterns() {
        let p = protection();
        assert!(p.node_reason("chef-server-1", None).is_some());
        assert!(p.node_reason("bastion-a", None).is_some());
        assert!(p.node_reason("bastion-ab", None).is_none());
        assert!(p.node_reason("web-1", None).is_none());
    }

    #[test]
    fn roles_environments_policy_groups() {
        let p = protection();
        let by_run_list = json!({"run_list": ["recipe[base]", "role[database]"]});
        assert!(p
            .node_reason("n", Some(&by_run_list))
            .unwrap_or_default()
            .contains("database"));
        let by_expanded = json!({"automatic": {"roles": ["database"]}});
        assert!(p.node_reason("n", Some(&by_expanded)).is_some());
        let by_env = json!({"chef_environment": "_protected"});
        assert!(p.node_reason("n", Some(&by_env)).is_some());
        let by_group = json!({"policy_group": "prod-critical"});
        assert!(p.node_reason("n", Some(&by_group)).is_some());
        let plain =
            json!({"chef_environment": "prod", "run_list": ["role[web]"], "policy_group": "prod"});
        assert!(p.node_reason("n", Some(&plain)).is_none());
    }

    #[test]
    fn opt_out_tag() {
        let p = protection();
        let mut info = InstanceInfo {
            instance_id: "i-0123456789abcdef0".into(),
            state: "terminated".into(),
            tags: HashMap::new(),
            asg_lifecycle_state: None,
        };
        assert!(p.instance_reason(&info).is_none());
        info.tags.insert("nodereaper:protect".into(), "true".into());
        assert!(p.instance_reason(&info).is_some());
        info.tags
            .insert("nodereaper:protect".into(), "false".into());
        assert!(p.instance_reason(&info).is_none());
    }
}
