//! Which Chef Infra Server permission each nodereaper feature needs: the one
//! table that `setup --print-iam-policy` prints, `doctor` probes and 403
//! messages quote.
//!
//! How Chef Infra Server decides (chef/chef-server, `src/oc_erchef/apps/`):
//! - a named node or client needs the HTTP method's permission on the object
//!   itself (GET read, PUT update, DELETE delete:
//!   `oc_chef_wm/src/oc_chef_wm_base.erl` `http_method_to_authz_perm`);
//! - POST /nodes and POST /clients need CREATE on the container
//!   (`chef_wm_nodes.erl`, `chef_wm_clients.erl` `create_in_container`); only
//!   `admins` has it on the clients container by default
//!   (`oc_chef_authz/src/oc_chef_authz_org_creator.erl`);
//! - GET or PUT of an `_acl` needs GRANT on the object
//!   (`oc_chef_wm_acl.erl` `check_acl_auth` -> `has_grant_on`);
//! - POST /clients/NAME/keys needs UPDATE on the client, GET of keys
//!   membership in `public_key_read_access` (`oc_chef_wm_keys.erl`);
//! - a container's ACL only seeds objects created afterwards, so existing
//!   objects need the grant too (`knife acl bulk add`).
//!
//! The server's own 403 text names the permission its HTTP method maps to
//! ("missing read permission" for a GET `_acl` that needs GRANT), so
//! nodereaper's messages say what was really missing.

/// A Chef ACL permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Create objects in a container.
    Create,
    /// Read the object.
    Read,
    /// Change the object (PUT, keys).
    Update,
    /// Delete the object.
    Delete,
    /// Read and change the object's ACL.
    Grant,
}

impl Permission {
    /// The name `knife acl` and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Grant => "grant",
        }
    }
}

/// The object types nodereaper touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Chef nodes (`/nodes`).
    Nodes,
    /// API clients (`/clients`).
    Clients,
}

impl Kind {
    /// The container's (and `knife acl`'s object type) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Nodes => "nodes",
            Kind::Clients => "clients",
        }
    }

    fn one(self) -> &'static str {
        match self {
            Kind::Nodes => "node",
            Kind::Clients => "client",
        }
    }
}

/// What nodereaper does that needs Chef permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Reading and deleting registrations (daemon, Lambda, deregister, sweep).
    Deletion,
    /// Backing up the node's and client's ACLs before deleting them.
    AclBackup,
    /// `restore`: re-creating the node and the client.
    Restore,
    /// `restore`: posting the client's backed-up keys.
    RestoreKeys,
    /// `restore --force`: replacing an existing node.
    RestoreForce,
    /// `restore`: putting the backed-up ACLs back.
    RestoreAcls,
}

impl Feature {
    /// The feature in a few words.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Deletion => "deleting registrations",
            Feature::AclBackup => "ACL backup",
            Feature::Restore => "restore",
            Feature::RestoreKeys => "restore of client keys",
            Feature::RestoreForce => "restore --force",
            Feature::RestoreAcls => "restore of ACLs",
        }
    }

    /// What is lost without it.
    pub fn lost(self) -> &'static str {
        match self {
            Feature::Deletion => {
                "nothing is deleted: messages are held and retried, the sweep reports only"
            }
            Feature::AclBackup => {
                "deletions go ahead without the node's and client's ACLs in the journal \
                 (journal.require_acl_backup = true refuses them instead); a restored node's \
                 ACL then names nodereaper only, so the instance's chef-client gets 403 saving it"
            }
            Feature::Restore => "`restore` cannot re-create the client or the node",
            Feature::RestoreKeys => "`restore` cannot give the client back its keys",
            Feature::RestoreForce => "`restore --force` cannot replace an existing node",
            Feature::RestoreAcls => "`restore` cannot put the backed-up ACLs back",
        }
    }
}

/// One row of the table: a feature, the permissions it needs and where.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// What needs it.
    pub feature: Feature,
    /// The permissions.
    pub permissions: &'static [Permission],
    /// On which object types.
    pub kinds: &'static [Kind],
    /// Also on every existing object (a container's ACL only seeds new
    /// ones); false when nodereaper holds it as the creator of the objects
    /// concerned, so the containers suffice.
    pub existing_objects: bool,
}

/// The table: every Chef permission nodereaper's client needs, by feature.
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        feature: Feature::Deletion,
        permissions: &[Permission::Read, Permission::Delete],
        kinds: &[Kind::Nodes, Kind::Clients],
        existing_objects: true,
    },
    Requirement {
        feature: Feature::AclBackup,
        permissions: &[Permission::Grant],
        kinds: &[Kind::Nodes, Kind::Clients],
        existing_objects: true,
    },
    Requirement {
        feature: Feature::Restore,
        permissions: &[Permission::Create],
        kinds: &[Kind::Nodes, Kind::Clients],
        existing_objects: false,
    },
    Requirement {
        // nodereaper re-created the client, so it holds update as its
        // creator; the container grant covers a client created otherwise.
        feature: Feature::RestoreKeys,
        permissions: &[Permission::Update],
        kinds: &[Kind::Clients],
        existing_objects: false,
    },
    Requirement {
        feature: Feature::RestoreForce,
        permissions: &[Permission::Update],
        kinds: &[Kind::Nodes],
        existing_objects: true,
    },
    Requirement {
        // The creator of the re-created objects holds grant; the ACL backup
        // row grants it on existing objects as well.
        feature: Feature::RestoreAcls,
        permissions: &[Permission::Grant],
        kinds: &[Kind::Nodes, Kind::Clients],
        existing_objects: false,
    },
];

/// The row of `feature`.
pub fn requirement(feature: Feature) -> &'static Requirement {
    REQUIREMENTS
        .iter()
        .find(|r| r.feature == feature)
        .unwrap_or(&REQUIREMENTS[0])
}

fn perms(list: &[Permission]) -> String {
    list.iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl Requirement {
    /// "read,delete on nodes and clients".
    pub fn describe(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
        format!("{} on {}", perms(self.permissions), kinds.join(" and "))
    }

    /// The `knife acl` commands granting this row to `client`.
    pub fn knife_commands(&self, client: &str) -> Vec<String> {
        self.knife_commands_for(client, self.kinds)
    }

    /// The `knife acl` commands granting this row's permissions on `kinds`.
    pub fn knife_commands_for(&self, client: &str, kinds: &[Kind]) -> Vec<String> {
        let p = perms(self.permissions);
        let mut out = Vec::new();
        for kind in kinds {
            let k = kind.as_str();
            out.push(format!("knife acl add client {client} containers {k} {p}"));
            if self.existing_objects {
                out.push(format!(
                    "knife acl bulk add client {client} {k} '.*' {p} --yes"
                ));
            }
        }
        out
    }
}

/// Every `knife acl` command for the whole table, merged per container and
/// per object type (what `setup --print-iam-policy` prints).
pub fn all_knife_commands(client: &str) -> Vec<String> {
    let mut out = Vec::new();
    for kind in [Kind::Nodes, Kind::Clients] {
        let mut containers: Vec<Permission> = Vec::new();
        let mut existing: Vec<Permission> = Vec::new();
        for r in REQUIREMENTS.iter().filter(|r| r.kinds.contains(&kind)) {
            containers.extend(r.permissions);
            if r.existing_objects {
                existing.extend(r.permissions);
            }
        }
        containers.sort();
        containers.dedup();
        existing.sort();
        existing.dedup();
        let k = kind.as_str();
        out.push(format!(
            "knife acl add client {client} containers {k} {}",
            perms(&containers)
        ));
        out.push(format!(
            "knife acl bulk add client {client} {k} '.*' {} --yes",
            perms(&existing)
        ));
    }
    out
}

/// What one request needs: the permission, on what, for which feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The feature the request serves.
    pub feature: Option<Feature>,
    /// "grant on node web-1", "create on the clients container", ...
    pub what: String,
    /// How to grant it.
    pub fix: String,
}

/// What a request (`method` and the path below the server URL, as in
/// `/nodes/web-1/_acl`) needs on Chef Infra Server; `None` for a request
/// nodereaper does not make.
pub fn needed_for(method: &str, object: &str, client: &str) -> Option<Need> {
    let path = object.split('?').next().unwrap_or(object);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = |s: &str| match s {
        "nodes" => Some(Kind::Nodes),
        "clients" => Some(Kind::Clients),
        _ => None,
    };
    let on_object = |perm: Permission, k: Kind, name: &str, feature: Feature| Need {
        feature: Some(feature),
        what: format!("{} on {} {name}", perm.as_str(), k.one()),
        fix: format!(
            "knife acl add client {client} {} {name} {}; for every {}: {}",
            k.as_str(),
            perm.as_str(),
            k.one(),
            knife_pair(client, k, perm)
        ),
    };
    match (method, parts.as_slice()) {
        (m, [k, name, "_acl", ..]) => {
            let k = kind(k)?;
            let feature = if m == "GET" {
                Feature::AclBackup
            } else {
                Feature::RestoreAcls
            };
            Some(on_object(Permission::Grant, k, name, feature))
        }
        ("GET", ["clients", _, "keys", ..]) => Some(Need {
            feature: None,
            what: "membership in the public_key_read_access group (key backup)".into(),
            fix: format!("knife group add client {client} public_key_read_access"),
        }),
        (_, ["clients", name, "keys", ..]) => Some(on_object(
            Permission::Update,
            Kind::Clients,
            name,
            Feature::RestoreKeys,
        )),
        ("POST", [k]) => {
            let k = kind(k)?;
            Some(Need {
                feature: Some(Feature::Restore),
                what: format!("create on the {} container", k.as_str()),
                fix: format!(
                    "knife acl add client {client} containers {} create",
                    k.as_str()
                ),
            })
        }
        ("GET", [k]) => {
            let k = kind(k)?;
            Some(Need {
                feature: Some(Feature::Deletion),
                what: format!("read on the {} container", k.as_str()),
                fix: format!(
                    "knife acl add client {client} containers {} read",
                    k.as_str()
                ),
            })
        }
        (m, [k, name]) => {
            let k = kind(k)?;
            let (perm, feature) = match m {
                "GET" => (Permission::Read, Feature::Deletion),
                "DELETE" => (Permission::Delete, Feature::Deletion),
                "PUT" => (Permission::Update, Feature::RestoreForce),
                _ => return None,
            };
            Some(on_object(perm, k, name, feature))
        }
        _ => None,
    }
}

fn knife_pair(client: &str, k: Kind, perm: Permission) -> String {
    format!(
        "knife acl add client {client} containers {k} {p} and knife acl bulk add client {client} {k} '.*' {p} --yes",
        k = k.as_str(),
        p = perm.as_str()
    )
}

/// The sentence a 403 message ends with: what the request needed and how
/// to grant it.
pub fn explain_forbidden(method: &str, object: &str, client: &str) -> String {
    match needed_for(method, object, client) {
        Some(need) => {
            let feature = need
                .feature
                .map(|f| format!(" ({})", f.as_str()))
                .unwrap_or_default();
            format!(
                "Client {client:?} needs {}{feature}: {}",
                need.what, need.fix
            )
        }
        None => format!(
            "Client {client:?} lacks a Chef permission this request needs \
             (see `nodereaper setup --print-iam-policy`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_names_its_permission() {
        let need = |m, o| needed_for(m, o, "nr").expect("known").what;
        assert_eq!(need("GET", "/nodes/web-1"), "read on node web-1");
        assert_eq!(need("DELETE", "/clients/web-1"), "delete on client web-1");
        assert_eq!(
            need("GET", "/nodes/web-1/_acl?detail=granular"),
            "grant on node web-1"
        );
        assert_eq!(
            need("PUT", "/clients/web-1/_acl/read"),
            "grant on client web-1"
        );
        assert_eq!(need("POST", "/clients"), "create on the clients container");
        assert_eq!(
            need("POST", "/clients/web-1/keys"),
            "update on client web-1"
        );
        assert_eq!(need("PUT", "/nodes/web-1"), "update on node web-1");
        assert!(needed_for("GET", "/search/node", "nr").is_none());
    }

    #[test]
    fn a_forbidden_acl_read_names_grant_and_the_knife_command() {
        let text = explain_forbidden("GET", "/nodes/web-1/_acl", "nodereaper");
        assert!(text.contains("grant on node web-1 (ACL backup)"), "{text}");
        assert!(
            text.contains("knife acl add client nodereaper containers nodes grant"),
            "{text}"
        );
        assert!(!text.contains("read and delete"), "{text}");
    }

    #[test]
    fn the_printed_commands_cover_every_row() {
        let all = all_knife_commands("nr").join("\n");
        assert!(all
            .contains("knife acl add client nr containers nodes create,read,update,delete,grant"));
        assert!(all.contains(
            "knife acl add client nr containers clients create,read,update,delete,grant"
        ));
        assert!(
            all.contains("knife acl bulk add client nr nodes '.*' read,update,delete,grant --yes")
        );
        assert!(all.contains("knife acl bulk add client nr clients '.*' read,delete,grant --yes"));
        assert_eq!(
            requirement(Feature::AclBackup).describe(),
            "grant on nodes and clients"
        );
    }
}
