//! Chef Infra Server groups: who is an admin, and which memberships go
//! with a client when it is deleted.
//!
//! Sources (chef/chef-server, src/oc_erchef/apps):
//! - oc_chef_authz/src/oc_chef_group.erl `assemble_group_ejson`: GET
//!   /groups/NAME answers `{actors: clients ++ users, users, clients, groups,
//!   orgname, name, groupname}`;
//! - `update_from_ejson`: PUT /groups/NAME reads the members under
//!   `actors`: `{"groupname": .., "actors": {"clients": [..], "users": [..],
//!   "groups": [..]}}`, a list left out keeps its members, a list given
//!   replaces them (`update`: the difference is removed in bifrost);
//! - oc_chef_wm/src/oc_chef_wm_named_group.erl: GET needs read, PUT update
//!   on the group;
//! - oc_chef_authz/src/oc_chef_authz_org_creator.erl: on Chef Infra Server
//!   an admin is a member of the `admins` group (API v1 client bodies have
//!   no `admin` field), and only `admins` and the org creator may read it
//!   by default;
//! - oc_bifrost/schema/deploy/base.sql `group_actor_relations ... ON DELETE
//!   CASCADE`: deleting a client removes it from every group.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The group whose members are Chef Infra Server's admins.
pub const ADMINS: &str = "admins";

/// How many groups (nested ones included) are read when looking for a
/// member; past it the client counts as a member (fail closed).
pub const MAX_GROUPS_FOLLOWED: usize = 64;

/// One group as GET /groups/NAME answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// `groupname`.
    pub name: String,
    /// Member clients.
    pub clients: Vec<String>,
    /// Member users.
    pub users: Vec<String>,
    /// Member groups (their members are members too).
    pub groups: Vec<String>,
    /// `actors` (clients ++ users) when the answer did not split them
    /// (servers before the `clients`/`users` fields): any name here may be
    /// a client.
    pub unsplit_actors: Vec<String>,
}

impl Group {
    /// A GET /groups/NAME answer; None unless it has the documented shape.
    pub fn from_answer(v: &Value) -> Option<Group> {
        let obj = v.as_object()?;
        let name = obj
            .get("groupname")
            .or_else(|| obj.get("name"))
            .and_then(Value::as_str)?;
        let list = |k: &str| -> Option<Vec<String>> {
            match obj.get(k) {
                None => Some(Vec::new()),
                Some(v) => v
                    .as_array()?
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect(),
            }
        };
        let split = obj.contains_key("clients") || obj.contains_key("users");
        if !split && !obj.contains_key("actors") {
            return None;
        }
        Some(Group {
            name: name.to_string(),
            clients: list("clients")?,
            users: list("users")?,
            groups: list("groups")?,
            unsplit_actors: if split { Vec::new() } else { list("actors")? },
        })
    }

    /// Does the group list `client` directly (as a client, or as an actor
    /// the answer does not say is a user)?
    pub fn lists_client(&self, client: &str) -> bool {
        self.clients.iter().any(|c| c == client) || self.unsplit_actors.iter().any(|c| c == client)
    }

    /// Can this group be written back without losing members (the answer
    /// said which actors are clients and which are users)?
    pub fn is_writable(&self) -> bool {
        self.unsplit_actors.is_empty()
    }

    /// The PUT /groups/NAME body that gives the group these members.
    pub fn put_body(&self) -> Value {
        json!({
            "groupname": self.name,
            "actors": {"clients": self.clients, "users": self.users, "groups": self.groups},
        })
    }

    /// The group with `client` added (unchanged when already listed).
    pub fn with_client(&self, client: &str) -> Group {
        let mut g = self.clone();
        if !g.clients.iter().any(|c| c == client) {
            g.clients.push(client.to_string());
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_server_shapes() {
        let answer = json!({"actors": ["ci", "pivotal"], "users": ["pivotal"], "clients": ["ci"],
            "groups": ["ops"], "orgname": "acme", "name": "admins", "groupname": "admins"});
        let g = Group::from_answer(&answer).expect("group");
        assert!(g.lists_client("ci") && !g.lists_client("pivotal") && g.is_writable());
        assert_eq!(
            g.with_client("web-1").put_body(),
            json!({"groupname": "admins", "actors": {"clients": ["ci", "web-1"], "users": ["pivotal"], "groups": ["ops"]}})
        );
        // An answer without the split: every actor may be a client.
        let old = Group::from_answer(&json!({"groupname": "g", "actors": ["x"], "groups": []}))
            .expect("group");
        assert!(old.lists_client("x") && !old.is_writable());
        assert!(Group::from_answer(&json!({"name": "n"})).is_none());
        assert!(Group::from_answer(&json!({"groupname": "n", "clients": "x"})).is_none());
    }
}
