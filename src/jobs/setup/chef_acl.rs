//! The Chef part of `setup --print-iam-policy`: which Chef permission each
//! feature needs, as `knife acl` commands, from the one table in
//! [`crate::core::chef_permissions`]. Printed for an operator; nothing is
//! changed.

use serde_json::{json, Value};

use crate::core::chef_permissions::{all_knife_commands, REQUIREMENTS};

/// The Chef permissions of nodereaper's API client `client`, by feature,
/// with the `knife acl` commands granting them.
pub fn chef_acl_note(client: &str) -> String {
    let mut out = format!(
        "nodereaper's Chef API client ({client}) needs these Chef Infra Server permissions \
         (knife acl ships with Chef Infra Client / Workstation >= 16, formerly the knife-acl \
         plugin). A container's ACL only seeds objects created afterwards, so `knife acl bulk \
         add` grants the same on existing objects. `nodereaper doctor` probes what it can.\n"
    );
    for r in REQUIREMENTS {
        out.push_str(&format!(
            "\n{}: {}\n  without it: {}\n",
            r.feature.as_str(),
            r.describe(),
            r.feature.lost()
        ));
        for cmd in r.knife_commands(client) {
            out.push_str(&format!("  {cmd}\n"));
        }
    }
    out.push_str("\nEverything above at once:\n");
    for cmd in all_knife_commands(client) {
        out.push_str(&format!("  {cmd}\n"));
    }
    out.push_str(&format!(
        "\nThe deletion path alone needs only read,delete; without grant, set \
         journal.require_acl_backup = true to refuse deletions whose ACLs cannot be \
         backed up (default: delete anyway, with a warning). Without create on the clients \
         container (admins only, by default), run `restore` with an admin identity \
         (`nodereaper --config admin.toml restore ...`). Preferably grant a group holding \
         the client (knife group create reapers; knife group add client {client} reapers; \
         then the commands with `group reapers` in place of `client {client}`). Search \
         (/search/node) needs no ACL of its own; results are filtered by each node's read \
         ACL, which read on nodes covers."
    ));
    out
}

/// The same table as JSON (`setup --print-iam-policy --output json`).
pub fn chef_permissions_json(client: &str) -> Value {
    Value::Array(
        REQUIREMENTS
            .iter()
            .map(|r| {
                json!({
                    "feature": r.feature.as_str(),
                    "permissions": r.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "on": r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                    "existing_objects": r.existing_objects,
                    "without_it": r.feature.lost(),
                    "knife": r.knife_commands(client),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_grant_and_create_with_their_commands() {
        let note = chef_acl_note("reaper");
        assert!(
            note.contains("ACL backup: grant on nodes and clients"),
            "{note}"
        );
        assert!(
            note.contains("restore: create on nodes and clients"),
            "{note}"
        );
        assert!(note.contains("knife acl add client reaper containers clients create"));
        assert!(note.contains("knife acl bulk add client reaper nodes '.*' grant --yes"));
        assert!(!note.contains("do not make it an admin"));
        let json = chef_permissions_json("reaper");
        assert_eq!(json.as_array().map(Vec::len), Some(REQUIREMENTS.len()));
    }
}
