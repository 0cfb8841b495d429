//! Deregister then restore on the Chef Infra Server double
//! (`tests/chef_double/`): keys exactly as they were (names, public keys,
//! expiration dates, no key the client did not have), keys stored as X.509
//! certificates, group memberships, new private keys never lost, and
//! `restore --force` never overwriting another instance's node.

mod chef_double;

use std::path::Path;
use std::sync::Arc;

use chef_double::{groups, public_key, register, write_config, Double, FAKE_PRIVATE_KEY};
use nodereaper::act::{Request, RequestSource, Target};
use nodereaper::adapters::chef::ChefClient;
use nodereaper::adapters::journal::{EntryFilter, LocalJournal};
use nodereaper::core::protect::ProtectConfig;
use nodereaper::jobs::restore::{self, AclAction, ClientAction, NodeAction, RestoreError};
use nodereaper::ports::Journal;
use serde_json::json;

/// `nodereaper deregister --node NAME`, through the reaper.
async fn deregister(chef: ChefClient, journal: &Path, name: &str) {
    let outcome = chef_double::reaper(Arc::new(chef), journal, &ProtectConfig::default())
        .reap(&Request {
            target: Target::Node(name.into()),
            source: RequestSource::Deregister,
            reason: "test".into(),
            message_id: None,
            dry_run: false,
            recheck: None,
            verified_region: None,
            group: None,
        })
        .await
        .expect("reap");
    assert_eq!(outcome.label(), "deleted", "{outcome:?}");
}

async fn registration(journal: &Path, name: &str) -> restore::Registration {
    let journal = LocalJournal::open(journal).expect("journal");
    let filter = EntryFilter {
        node: Some(name.into()),
        ..Default::default()
    };
    let mut regs = restore::select(&journal, &filter).await.expect("select");
    assert_eq!(regs.len(), 1);
    regs.remove(0)
}

/// issue 19 "Keys exactly as they were", with the full permission set:
/// every key with its date, group memberships and ACLs come back, and the
/// server refused no request on the way.
#[tokio::test]
async fn deregister_then_restore_brings_back_keys_dates_groups_and_acls() {
    let double = Double::start().await;
    let keys = [
        ("default", "2031-06-01T00:00:00Z"),
        ("expired", "2020-01-01T00:00:00Z"),
        ("ci", "infinity"),
    ];
    double.with(|s| {
        groups::default_groups(s);
        s.groups.insert("monitoring".into(), Default::default());
        register(s, "web-1", &keys);
        s.groups
            .get_mut("monitoring")
            .expect("group")
            .clients
            .push("web-1".into());
    });
    let before = double.with(|s| {
        (
            s.clients["web-1"].1.clone(),
            s.acls[&("nodes".to_string(), "web-1".to_string())].clone(),
            s.acls[&("clients".to_string(), "web-1".to_string())].clone(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    deregister(double.client(1000), dir.path(), "web-1").await;
    // Deleting the client removed it from its groups on the server.
    assert!(double.with(|s| s
        .groups
        .values()
        .all(|g| !g.clients.contains(&"web-1".into()))));

    let reg = registration(dir.path(), "web-1").await;
    assert_eq!(
        reg.client_groups.as_deref(),
        Some(&["clients".to_string(), "monitoring".to_string()][..])
    );
    let chef = double.client(1000);
    let restored = restore::restore(&chef, &reg, false).await.expect("restore");
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
    assert!(!restored.partial(), "{:?}", restored.notes);

    // Exactly the keys it had, each with its own date (2031 and the expired
    // one included, not `infinity`).
    let after = double.with(|s| s.clients["web-1"].1.clone());
    assert_eq!(after, before.0);
    assert_eq!(
        after["default"],
        (public_key("default"), "2031-06-01T00:00:00Z".to_string())
    );
    double.with(|s| {
        assert!(s.groups["monitoring"]
            .clients
            .contains(&"web-1".to_string()));
        assert_eq!(
            s.groups["clients"]
                .clients
                .iter()
                .filter(|c| *c == "web-1")
                .count(),
            1,
            "once in `clients`"
        );
        assert_eq!(
            s.acls[&("nodes".to_string(), "web-1".to_string())],
            before.1
        );
        assert_eq!(
            s.acls[&("clients".to_string(), "web-1".to_string())],
            before.2
        );
    });
    let refused: Vec<_> = double
        .requests()
        .into_iter()
        .zip(double.with(|s| s.statuses.clone()))
        .filter(|((line, _), status)| *status >= 400 && !line.starts_with("GET"))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
}

/// A client with no `default` key gets none back (POST /clients with a
/// `public_key` would create one that never expires).
#[tokio::test]
async fn client_without_default_key_gets_none_back() {
    let double = Double::start().await;
    double.with(|s| register(s, "web-2", &[("ci", "2031-06-01T00:00:00Z")]));
    let before = double.with(|s| s.clients["web-2"].1.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    deregister(double.client(1000), dir.path(), "web-2").await;
    let reg = registration(dir.path(), "web-2").await;
    let restored = restore::restore(&double.client(1000), &reg, false)
        .await
        .expect("restore");
    assert!(!restored.partial(), "{:?}", restored.notes);
    let after = double.with(|s| s.clients["web-2"].1.clone());
    assert!(!after.contains_key("default"), "{after:?}");
    assert_eq!(after, before);
}

/// Chef 11 era clients keep their key as an X.509 certificate: the backup
/// holds the certificate's public key instead of failing the deletion, and
/// restore posts that key back.
#[tokio::test]
async fn certificate_key_is_backed_up_as_its_public_key() {
    let double = Double::start().await;
    let cert = include_str!("fixtures/old-client-cert.pem");
    let public = include_str!("fixtures/test-client.pub.pem");
    double.with(|s| {
        register(s, "old-1", &[("default", "infinity")]);
        s.clients
            .get_mut("old-1")
            .expect("client")
            .1
            .insert("default".into(), (cert.to_string(), "infinity".to_string()));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    deregister(double.client(1000), dir.path(), "old-1").await;
    let reg = registration(dir.path(), "old-1").await;
    let keys = reg.client_keys.clone().expect("keys");
    assert_eq!(keys[0].public_key, public);
    restore::restore(&double.client(1000), &reg, false)
        .await
        .expect("restore");
    let after = double.with(|s| s.clients["old-1"].1.clone());
    assert_eq!(
        after["default"],
        (public.to_string(), "infinity".to_string())
    );
}

/// A journal entry of `name` without keys: restore must make a new key pair.
async fn keyless_backup(double: &Double, dir: &Path, name: &str) {
    double.with(|s| register(s, name, &[("default", "infinity")]));
    deregister(double.client(1000), &dir.join("journal"), name).await;
    // As if the keys could not be read (403) at backup time.
    let journal = LocalJournal::open(&dir.join("journal")).expect("journal");
    let mut entry = journal.entries().await.expect("entries").remove(0);
    entry.client_keys = None;
    entry.client.as_mut().expect("client")["public_key"] = json!(null);
    std::fs::remove_dir_all(dir.join("journal")).expect("rm");
    let rewritten = LocalJournal::open(&dir.join("journal")).expect("journal");
    rewritten.record(&entry).await.expect("record");
}

async fn run_restore(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
        .arg("--config")
        .arg(config)
        .arg("restore")
        .args(args)
        .output()
        .await
        .expect("run")
}

/// safety-review M6: a --key-out that cannot be written refuses the
/// restore before anything is created (the happy twin, a writable
/// --key-out, is chef_fidelity::v1_client_without_backed_up_keys_gets_a_new_key_shown_once).
#[tokio::test]
async fn existing_key_out_refuses_before_creating_anything() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    keyless_backup(&double, dir.path(), "web-3").await;
    let config = write_config(dir.path(), &double.url);
    let key_file = dir.path().join("web-3.pem");
    std::fs::write(&key_file, "someone else's key").expect("existing");
    let out = run_restore(
        &config,
        &["web-3", "--key-out", key_file.to_str().expect("path")],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to restore"), "{stderr}");
    let posts: Vec<_> = double
        .requests()
        .into_iter()
        .filter(|(l, _)| l.starts_with("POST"))
        .collect();
    assert!(posts.is_empty(), "nothing may be created: {posts:?}");
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("read"),
        "someone else's key"
    );
}

/// safety-review M6: the node cannot be created after the client got a
/// new key pair: the key is still written (--key-out) or printed.
#[tokio::test]
async fn new_key_survives_a_failed_node_creation() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    keyless_backup(&double, dir.path(), "web-4").await;
    let config = write_config(dir.path(), &double.url);
    double.with(|s| s.fail.push("POST /organizations/acme/nodes".into()));
    let out = run_restore(&config, &["web-4"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("NOT restored"), "{stdout}");
    assert!(
        stdout.contains(FAKE_PRIVATE_KEY),
        "the key is printed: {stdout}"
    );

    // Again with --key-out: the key lands in the file.
    double.with(|s| {
        s.clients.remove("web-4");
    });
    let key_file = dir.path().join("web-4.pem");
    let out = run_restore(
        &config,
        &["web-4", "--key-out", key_file.to_str().expect("path")],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key"),
        FAKE_PRIVATE_KEY
    );
}

/// safety-review M7: `restore --force` over a node that another instance
/// registered since is refused; over the same registration it backs the
/// live node up to the journal first.
#[tokio::test]
async fn restore_force_refuses_another_instances_node_and_backs_up_its_own() {
    let double = Double::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    double.with(|s| register(s, "web-5", &[("default", "infinity")]));
    deregister(double.client(1000), dir.path(), "web-5").await;
    let reg = registration(dir.path(), "web-5").await;
    let journal = LocalJournal::open(dir.path()).expect("journal");
    let chef = double.client(1000);

    // A new instance registered web-5 meanwhile.
    let newer = chef_double::node("web-5", "i-0fedcba9876543210");
    double.with(|s| {
        s.nodes.insert("web-5".into(), newer.clone());
        s.acls.insert(
            ("nodes".into(), "web-5".into()),
            chef_double::acl_for("web-5"),
        );
    });
    let err = restore::restore_with(&chef, &reg, true, Some(&journal))
        .await
        .expect_err("another instance's node");
    assert!(matches!(err, RestoreError::LiveInstance { .. }), "{err}");
    assert!(err.to_string().contains("i-0fedcba9876543210"), "{err}");
    assert_eq!(double.with(|s| s.nodes["web-5"].clone()), newer);

    // The same registration (same instance): replaced, after a backup.
    let mut same = newer.clone();
    same["automatic"]["ec2"]["instance_id"] = json!("i-0123456789abcdef0");
    same["normal"] = json!({"changed": true});
    double.with(|s| s.nodes.insert("web-5".into(), same.clone()));
    let forced = restore::restore_with(&chef, &reg, true, Some(&journal))
        .await
        .expect("force");
    assert_eq!(forced.node_action, NodeAction::Replaced);
    assert!(!forced.partial(), "{:?}", forced.notes);
    let entries = journal.entries().await.expect("entries");
    let backup = entries
        .iter()
        .find(|e| e.source == "restore")
        .expect("the replaced node was journaled");
    assert_eq!(backup.node.as_ref(), Some(&same));
    // Without a journal --force refuses rather than overwrite unbacked.
    let err = restore::restore(&chef, &reg, true)
        .await
        .expect_err("no journal");
    assert!(matches!(err, RestoreError::ForceNeedsJournal(_)), "{err}");
}
