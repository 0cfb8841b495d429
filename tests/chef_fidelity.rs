//! Chef Infra Server behaviour that goiardi cannot show, against the
//! in-test double of Chef Infra Server in `tests/chef_double/` (each of its
//! modules cites the chef/chef-server file it follows). Everything goiardi can
//! show stays on goiardi (tests/journal.rs, tests/chef_api.rs, tests/sweep.rs).
//! Search is in tests/chef_search.rs.

mod chef_double;
mod common;

use std::sync::Arc;

use chef_double::{groups, public_key, register, write_config, Double, FAKE_PRIVATE_KEY};
use nodereaper::act::{Outcome, Request as ReapRequest, RequestSource, Target};
use nodereaper::adapters::chef::{AclObject, ChefClient, ClientKey, ServerKind};
use nodereaper::adapters::journal::{EntryFilter, JournalEntry, LocalJournal};
use nodereaper::core::ids::InstanceId;
use nodereaper::core::protect::ProtectConfig;
use nodereaper::jobs::restore::{AclAction, ClientAction, NodeAction};
use nodereaper::ports::{ChefApi, Journal};
use serde_json::json;

/// What the reaper records, with the server extras (keys, ACLs, version).
async fn back_up(chef: &ChefClient, name: &str) -> JournalEntry {
    let node = chef.get_node(name).await.expect("node");
    let client = chef.get_client(name).await.expect("client");
    let mut entry = JournalEntry::new(
        "deregister",
        "test",
        None,
        None,
        name,
        Some(name.to_string()),
        chef.server(),
        node,
        client,
    );
    nodereaper::act::backup::add_server_extras(&mut entry, chef)
        .await
        .expect("extras");
    entry
}

#[tokio::test]
async fn v1_backup_and_restore_bring_back_keys_and_acls() {
    let double = Double::start().await;
    let name = "web-1";
    double.with(|s| {
        register(
            s,
            name,
            &[("default", "infinity"), ("rotated", "2030-01-01T00:00:00Z")],
        )
    });
    let original_node_acl =
        double.with(|s| s.acls[&("nodes".to_string(), name.to_string())].clone());
    let chef = double.client(1000);

    let entry = back_up(&chef, name).await;
    assert_eq!(entry.server_kind, Some(ServerKind::ChefInfra));
    assert_eq!(entry.api_version, Some(1));
    let client_body = entry.client.as_ref().expect("client");
    assert!(
        client_body.get("public_key").is_none(),
        "a v1 client body has no key"
    );
    assert_eq!(
        entry.client_keys.as_deref(),
        Some(
            &[
                ClientKey {
                    name: "default".into(),
                    public_key: public_key("default"),
                    expiration_date: "infinity".into()
                },
                ClientKey {
                    name: "rotated".into(),
                    public_key: public_key("rotated"),
                    expiration_date: "2030-01-01T00:00:00Z".into()
                },
            ][..]
        )
    );
    assert_eq!(entry.node_acl.as_ref(), Some(&original_node_acl));
    assert!(entry.client_acl.is_some());

    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path()).expect("journal");
    journal.record(&entry).await.expect("record");
    chef.delete_client(name).await.expect("delete client");
    chef.delete_node(name).await.expect("delete node");
    // Deleting the client removed it from every ACL.
    assert!(double.with(|s| s.acls.is_empty()));

    let regs = nodereaper::jobs::restore::select(&journal, &EntryFilter::default())
        .await
        .expect("select");
    let restored = nodereaper::jobs::restore::restore(&chef, &regs[0], false)
        .await
        .expect("restore");
    assert_eq!(
        restored.client_action,
        ClientAction::CreatedWithOriginalKeys
    );
    assert_eq!(restored.node_action, NodeAction::Created);
    assert_eq!(
        restored.acl_action,
        AclAction::Restored,
        "{:?}",
        restored.notes
    );
    assert!(restored.private_key.is_none());

    // The client came back with its original keys, created as API v1 wants.
    let posted = double
        .requests()
        .into_iter()
        .find(|(l, _)| l == "POST /organizations/acme/clients")
        .expect("POST /clients");
    // Without a key (API v1), then every key with its own date.
    assert!(
        posted.1.get("public_key").is_none()
            && posted.1.get("admin").is_none()
            && posted.1.get("create_key").is_none(),
        "{posted:?}"
    );
    let keys = double.with(|s| s.clients[name].1.clone());
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys["default"],
        (public_key("default"), "infinity".to_string())
    );
    assert_eq!(
        keys["rotated"],
        (public_key("rotated"), "2030-01-01T00:00:00Z".to_string())
    );
    // The node's ACL names the instance's client again, not only nodereaper.
    let node_acl = double.with(|s| s.acls[&("nodes".to_string(), name.to_string())].clone());
    assert_eq!(node_acl, original_node_acl);
    assert_eq!(node_acl["update"]["clients"], json!([name]));
}

#[tokio::test]
async fn v1_client_without_backed_up_keys_gets_a_new_key_shown_once() {
    let double = Double::start().await;
    let name = "web-2";
    double.with(|s| register(s, name, &[("default", "infinity")]));
    let chef = double.client(1000);
    let mut entry = back_up(&chef, name).await;
    // As if the keys could not be read (403) at backup time.
    entry.client_keys = None;
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = LocalJournal::open(dir.path().join("journal").as_path()).expect("journal");
    journal.record(&entry).await.expect("record");
    chef.delete_client(name).await.expect("delete");
    chef.delete_node(name).await.expect("delete");

    // Through the command, as an operator runs it: the key goes to --key-out.
    let config = write_config(dir.path(), &double.url);
    let key_file = dir.path().join("web-2.pem");
    // Async: the double answers on this test's runtime meanwhile.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .args(["restore", name, "--key-out"])
        .arg(&key_file)
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("client created_with_new_key"), "{stdout}");
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "the key goes to the file only: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file"),
        FAKE_PRIVATE_KEY
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let posted = double
        .requests()
        .into_iter()
        .find(|(l, _)| l == "POST /organizations/acme/clients")
        .expect("POST /clients");
    assert_eq!(posted.1["create_key"], json!(true));
}

#[tokio::test]
async fn doctor_reports_chef_infra_server_and_its_api_version() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &double.url);
    // AWS checks go to the local moto (never to AWS).
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        common::stack().moto_url()
    ));
    std::fs::write(&config, text).expect("config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(&config)
        .arg("doctor")
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("PASS chef server kind: Chef Infra Server, API v1: client keys"),
        "{stdout}"
    );
    // A 404 there proves nothing about the delete permission: UNKNOWN, never PASS.
    for kind in ["nodes", "clients"] {
        assert!(
            stdout.contains(&format!("UNKNOWN chef delete permission on {kind}"))
                && !stdout.contains(&format!("PASS chef delete permission on {kind}")),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn acl_calls_check_the_answer_shape() {
    let double = Double::start().await;
    double.with(|s| register(s, "web-3", &[("default", "infinity")]));
    let chef = double.client(1000);
    let acl = chef
        .get_acl(AclObject::Node, "web-3")
        .await
        .expect("acl")
        .expect("present");
    assert!(acl["read"]["groups"].is_array());
    let requests = double.requests();
    assert!(
        requests
            .iter()
            .any(|(l, _)| l == "GET /organizations/acme/nodes/web-3/_acl?detail=granular"),
        "{requests:?}"
    );
    assert!(chef
        .get_acl(AclObject::Node, "missing")
        .await
        .expect("acl")
        .is_none());
}

fn deregister(target: Target) -> ReapRequest {
    ReapRequest {
        target,
        source: RequestSource::Event,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

fn deletes_of(double: &Double, name: &str) -> Vec<String> {
    double
        .requests()
        .into_iter()
        .map(|(l, _)| l)
        .filter(|l| l.starts_with("DELETE") && l.ends_with(&format!("/{name}")))
        .collect()
}

/// safety-review H3: an instance names its node after a service client in
/// `admins` and records its own instance id there; at its termination the
/// search finds that node. API v1 client bodies have no `admin` flag: only
/// the group says who is an admin (oc_chef_authz_org_creator.erl).
#[tokio::test]
async fn v1_admin_group_member_is_never_deleted_beside_a_normal_client() {
    let double = Double::start().await;
    let id = "i-0123456789abcdef0";
    double.with(|s| {
        groups::default_groups(s);
        register(s, "ci-admin", &[("default", "infinity")]);
        register(s, "web-7", &[("default", "infinity")]);
        s.groups
            .get_mut("admins")
            .expect("admins")
            .clients
            .push("ci-admin".into());
        // The event path finds ci-admin by search only (no node named after the id).
        s.index = vec!["ci-admin".into()];
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let reaper = chef_double::reaper(
        Arc::new(double.client(1000)),
        dir.path(),
        &ProtectConfig::default(),
    );
    let instance = InstanceId::parse(id).expect("id");
    let hostile = reaper
        .reap(&deregister(Target::Instance(instance)))
        .await
        .expect("reap");
    assert!(
        matches!(&hostile, Outcome::Refused { reason, .. } if reason.contains("admins")),
        "{hostile:?}"
    );
    let by_name = reaper
        .reap(&deregister(Target::Node("ci-admin".into())))
        .await
        .expect("reap");
    assert_eq!(by_name.label(), "refused", "{by_name:?}");
    assert!(deletes_of(&double, "ci-admin").is_empty());
    assert!(double.with(|s| s.clients.contains_key("ci-admin") && s.nodes.contains_key("ci-admin")));
    // The happy twin: a client in no protected group goes.
    let happy = reaper
        .reap(&deregister(Target::Node("web-7".into())))
        .await
        .expect("reap");
    assert_eq!(happy.label(), "deleted", "{happy:?}");
    assert!(double.with(|s| !s.clients.contains_key("web-7")));
}

#[tokio::test]
async fn members_of_configured_client_groups_are_never_deleted_even_nested() {
    let double = Double::start().await;
    double.with(|s| {
        groups::default_groups(s);
        for name in ["deploy-bot", "web-8"] {
            register(s, name, &[("default", "infinity")]);
        }
        s.groups.insert(
            "deployers".into(),
            groups::Members {
                groups: vec!["bots".into()],
                ..Default::default()
            },
        );
        s.groups.insert(
            "bots".into(),
            groups::Members {
                clients: vec!["deploy-bot".into()],
                ..Default::default()
            },
        );
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let protect = ProtectConfig {
        client_groups: vec!["deployers".into()],
        ..ProtectConfig::default()
    };
    let reaper = chef_double::reaper(Arc::new(double.client(1000)), dir.path(), &protect);
    let hostile = reaper
        .reap(&deregister(Target::Node("deploy-bot".into())))
        .await
        .expect("reap");
    assert!(
        matches!(&hostile, Outcome::Refused { reason, .. } if reason.contains("deployers > bots")),
        "{hostile:?}"
    );
    assert!(double.with(|s| s.clients.contains_key("deploy-bot")));
    let happy = reaper
        .reap(&deregister(Target::Node("web-8".into())))
        .await
        .expect("reap");
    assert_eq!(happy.label(), "deleted", "{happy:?}");
}

/// A protected group that cannot be read (outage, or 403 without read on
/// `admins`) holds the deletion: nothing is deleted on a guess.
#[tokio::test]
async fn unreadable_admins_group_holds_the_deletion() {
    let double = Double::start().await;
    double.with(|s| {
        groups::default_groups(s);
        register(s, "web-9", &[("default", "infinity")]);
        s.fail.push("GET /organizations/acme/groups/admins".into());
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let reaper = chef_double::reaper(
        Arc::new(double.client(1000)),
        dir.path(),
        &ProtectConfig::default(),
    );
    let err = reaper
        .reap(&deregister(Target::Node("web-9".into())))
        .await
        .expect_err("held");
    assert!(err.to_string().contains("/groups/admins"), "{err}");
    // Held by the protection check itself, before any backup was begun
    // (the backup would list the groups).
    let listed = double
        .requests()
        .into_iter()
        .any(|(l, _)| l == "GET /organizations/acme/groups");
    assert!(!listed, "the protection check must not let the reap go on");
    assert!(double.with(|s| s.clients.contains_key("web-9") && s.nodes.contains_key("web-9")));
    assert!(deletes_of(&double, "web-9").is_empty());
}

/// The double validates as erchef does (each rule cites its file in
/// tests/chef_double/): POST /clients, POST keys, PUT _acl.
#[tokio::test]
async fn double_validates_clients_keys_and_acls_like_erchef() {
    use reqwest::Method;
    let double = Double::start().await;
    double.with(|s| register(s, "web-10", &[("default", "infinity")]));
    let chef = double.client(1000);
    let status = |segments: &'static [&'static str], method: Method, body: serde_json::Value| {
        let chef = &chef;
        async move {
            chef.send(method, segments, &[], Some(&body))
                .await
                .expect("send")
                .status
                .as_u16()
        }
    };
    let pk = public_key("x");
    let both = json!({"name": "c1", "public_key": pk, "create_key": true});
    assert_eq!(status(&["clients"], Method::POST, both).await, 400);
    let dup = json!({"name": "web-10"});
    assert_eq!(status(&["clients"], Method::POST, dup).await, 409);
    let keyless = json!({"name": "c2", "validator": false});
    assert_eq!(status(&["clients"], Method::POST, keyless).await, 201);
    assert!(double.with(|s| s.clients["c2"].1.is_empty()), "no key");
    let keys: &[&str] = &["clients", "web-10", "keys"];
    let no_date = json!({"name": "k1", "public_key": pk});
    assert_eq!(status(keys, Method::POST, no_date).await, 400);
    let dup_key = json!({"name": "default", "public_key": pk, "expiration_date": "infinity"});
    assert_eq!(status(keys, Method::POST, dup_key).await, 409);
    let ok_key = json!({"name": "k1", "public_key": pk, "expiration_date": "2031-06-01T00:00:00Z"});
    assert_eq!(status(keys, Method::POST, ok_key).await, 201);
    let acl: &[&str] = &["nodes", "web-10", "_acl", "read"];
    let no_actors = json!({"read": {"groups": []}});
    assert_eq!(status(acl, Method::PUT, no_actors).await, 400);
    let clients_without_users =
        json!({"read": {"actors": [], "groups": [], "clients": ["web-10"]}});
    assert_eq!(status(acl, Method::PUT, clients_without_users).await, 400);
    let actors_and_clients =
        json!({"read": {"actors": ["x"], "groups": [], "clients": ["web-10"], "users": []}});
    assert_eq!(status(acl, Method::PUT, actors_and_clients).await, 400);
    let good =
        json!({"read": {"actors": [], "groups": ["admins"], "clients": ["web-10"], "users": []}});
    assert_eq!(status(acl, Method::PUT, good).await, 200);
}
