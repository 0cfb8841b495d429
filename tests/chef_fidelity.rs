//! Chef Infra Server behaviour that goiardi cannot show, against the
//! in-test double of Chef Infra Server in `tests/chef_double/` (each of its
//! modules cites the chef/chef-server file it follows). Everything goiardi can
//! show stays on goiardi (tests/journal.rs, tests/chef_api.rs, tests/sweep.rs).

mod chef_double;
mod common;

use std::path::Path;

use chef_double::{fill_index, public_key, register, Double, FAKE_PRIVATE_KEY, TEST_KEY};
use nodereaper::adapters::chef::{AclObject, ChefClient, ClientKey, ServerKind};
use nodereaper::adapters::journal::{EntryFilter, JournalEntry, LocalJournal};
use nodereaper::jobs::restore::{AclAction, ClientAction, NodeAction};
use nodereaper::ports::{ChefApi, Journal};
use serde_json::json;

#[tokio::test]
async fn search_with_short_pages_mid_way_and_total_of_all_finds_every_node_once() {
    let double = Double::start().await;
    let expected = double.with(|s| fill_index(s, 950));
    let chef = double.client(100);
    // The sweep's call (src/jobs/sweep.rs): a partial search over all nodes.
    let keys: &[(&str, &[&str])] = &[("name", &["name"]), ("id", &["ec2", "instance_id"])];
    let rows = chef
        .partial_search_nodes("*:*", keys)
        .await
        .expect("partial search");
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    names.dedup();
    assert_eq!(names, expected);
    assert_eq!(rows[0]["id"], json!(format!("i-{:017x}", 0)));
    // Short pages were served (not one page was full past the first stale row).
    let pages: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|(l, _)| l.starts_with("POST /organizations/acme/search/node"))
        .collect();
    let index_len = double.with(|s| s.index.len());
    assert_eq!(pages.len(), index_len.div_ceil(100), "pages: {pages:?}");
    assert!(
        pages.iter().all(|(l, _)| !l.contains("sort=")),
        "no goiardi sort on Chef Infra"
    );
    // The full-object search pages the same way.
    let mut full = chef.search_node_names("*:*").await.expect("search");
    full.sort();
    assert_eq!(full, expected);
    assert_eq!(
        chef.server_info().await.expect("info").kind,
        ServerKind::ChefInfra
    );
}

#[tokio::test]
async fn search_total_capped_at_10000_pages_until_an_empty_page() {
    let double = Double::start().await;
    let expected = double.with(|s| {
        s.cap_total = true;
        fill_index(s, 10_300)
    });
    let chef = double.client(1000);
    let mut names = chef.search_node_names("*:*").await.expect("search");
    assert_eq!(names.len(), expected.len(), "every node exactly once");
    names.sort();
    assert_eq!(names, expected);
    let last = double
        .requests()
        .into_iter()
        .rfind(|(l, _)| l.starts_with("GET /organizations/acme/search/node"))
        .expect("requests");
    let index_len = double.with(|s| s.index.len());
    assert!(
        last.0
            .contains(&format!("start={}", index_len.div_ceil(1000) * 1000)),
        "the last request is the empty page after the end: {last:?}"
    );
}

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
    assert_eq!(posted.1["public_key"], json!(public_key("default")));
    assert!(posted.1.get("admin").is_none() && posted.1.get("create_key").is_none());
    let keys = double.with(|s| s.clients[name].1.clone());
    assert_eq!(keys.len(), 2);
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

fn write_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let key = dir.join("nodereaper.pem");
    std::fs::write(&key, TEST_KEY).expect("key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let path = dir.join("nodereaper.toml");
    std::fs::write(
        &path,
        format!(
            "[chef]\nserver_url = \"{url}\"\nallow_plain_http = true\nclient_name = \"nodereaper\"\nclient_key = \"{}\"\n[journal]\ndir = \"{}\"\n",
            key.display(),
            dir.join("journal").display()
        ),
    )
    .expect("config");
    path
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
