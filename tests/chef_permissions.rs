//! Least privilege on Chef Infra Server, against the double's authorization
//! model (tests/chef_double/authz.rs, after oc_chef_wm_base.erl,
//! oc_chef_wm_acl.erl and oc_chef_authz_org_creator.erl): what nodereaper
//! does, and what `doctor` says, with read+delete only and with the full
//! set of permissions its table names (src/core/chef_permissions.rs).

mod chef_double;

use std::sync::Arc;

use chef_double::{authz, register, Double, Server};
use nodereaper::act::backup::AclBackupPolicy;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, RequestSource, Target};
use nodereaper::adapters::chef::{AclObject, ChefClient};
use nodereaper::adapters::journal::{EntryFilter, LocalJournal};
use nodereaper::core::chef_permissions::REQUIREMENTS;
use nodereaper::core::journal::AclBackup;
use nodereaper::core::verify::Protection;
use nodereaper::jobs::doctor::Check;
use nodereaper::jobs::restore::{AclAction, ClientAction, NodeAction};
use nodereaper::ports::ChefApi;
use serde_json::json;

const ME: &str = authz::NODEREAPER;

/// nodereaper's own client, as the server holds it (a client has every
/// permission on itself: oc_bifrost create_and_add_permissions.sql).
fn own_client(s: &mut Server) {
    s.clients.insert(
        ME.into(),
        (
            json!({"name": ME, "clientname": ME, "orgname": chef_double::ORG, "validator": false,
                "json_class": "Chef::ApiClient", "chef_type": "client"}),
            Default::default(),
        ),
    );
    s.acls
        .insert(("clients".into(), ME.into()), chef_double::acl_for(ME));
}

/// The documented least privilege of the delete path only: nodereaper out
/// of `admins`, read+delete on the nodes and clients containers and on
/// every existing node and client.
fn read_delete_only(s: &mut Server) {
    authz::demote(s, ME);
    for kind in ["nodes", "clients"] {
        authz::grant(s, ME, kind, &["read", "delete"]);
    }
}

/// Every row of the permission table, granted as `setup --print-iam-policy`
/// prints it (containers, and existing objects where the row says so).
fn full_set(s: &mut Server) {
    authz::demote(s, ME);
    for r in REQUIREMENTS {
        let perms: Vec<&str> = r.permissions.iter().map(|p| p.as_str()).collect();
        for kind in r.kinds {
            authz::grant(s, ME, kind.as_str(), &perms);
        }
    }
}

async fn setup(narrow: fn(&mut Server)) -> (Double, ChefClient) {
    let double = Double::start().await;
    double.with(|s| {
        own_client(s);
        register(s, "web-1", &[("default", "infinity")]);
        narrow(s);
    });
    let chef = double.client(1000);
    (double, chef)
}

async fn doctor(chef: &ChefClient) -> Vec<Check> {
    nodereaper::jobs::permissions::chef_permission_checks(chef, &|n: &str| n.to_string()).await
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

fn reaper(double: &Double, dir: &std::path::Path, policy: AclBackupPolicy) -> Reaper {
    Reaper {
        chef: Arc::new(double.client(1000)) as Arc<dyn ChefApi>,
        journal: Arc::new(LocalJournal::open(dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: policy,
        estate: Vec::new(),
    }
}

fn deregister(node: &str) -> Request {
    Request {
        target: Target::Node(node.into()),
        source: RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run: false,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

#[tokio::test]
async fn with_read_and_delete_only_doctor_names_grant_and_create_as_missing() {
    let (double, chef) = setup(read_delete_only).await;
    let checks = doctor(&chef).await;
    for kind in ["nodes", "clients"] {
        let c = check(&checks, &format!("chef grant on {kind} (ACL backup)"));
        assert!(!c.ok, "{c:?}");
        assert!(
            c.detail.contains(&format!("grant on {kind} is missing"))
                && c.detail.contains("restored node's ACL"),
            "{c:?}"
        );
        assert!(
            c.fix.as_deref().unwrap_or_default().contains(&format!(
                "knife acl add client nodereaper containers {kind} grant"
            )),
            "{c:?}"
        );
    }
    let create = check(&checks, "chef create on clients (restore)");
    assert!(!create.ok, "{create:?}");
    assert!(
        create.detail.contains("cannot re-create the client")
            && create
                .fix
                .as_deref()
                .unwrap_or_default()
                .contains("knife acl add client nodereaper containers clients create"),
        "{create:?}"
    );
    // The probes changed nothing: the client nodereaper named is not re-created.
    assert_eq!(double.with(|s| s.clients.len()), 2);
}

#[tokio::test]
async fn with_the_full_set_doctor_passes_every_permission_check() {
    let (double, chef) = setup(full_set).await;
    let checks = doctor(&chef).await;
    assert!(checks.len() >= 4, "{checks:#?}");
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert!(check(&checks, "chef grant on nodes (ACL backup)")
        .detail
        .contains("GET /nodes/web-1/_acl allowed"));
    // The CREATE probe answered 409 and left nothing behind.
    assert_eq!(double.with(|s| s.clients.len()), 2);
    assert!(double.with(|s| s.denied.is_empty()));
}

#[tokio::test]
async fn the_create_probe_is_never_sent_when_nodereaper_is_not_a_client() {
    // nodereaper signs as a user (or its client is gone): a POST /clients
    // naming it would create a client, so the probe is not sent.
    let double = Double::start().await;
    double.with(|s| register(s, "web-1", &[("default", "infinity")]));
    let chef = double.client(1000);
    let checks = doctor(&chef).await;
    let c = check(&checks, "chef create on clients (restore)");
    assert!(c.ok && c.detail.contains("not measured"), "{c:?}");
    assert!(
        double
            .requests()
            .iter()
            .all(|(l, _)| l != "POST /organizations/acme/clients"),
        "no POST /clients"
    );
    assert!(!double.with(|s| s.clients.contains_key(ME)));
}

#[tokio::test]
async fn a_refused_request_names_the_permission_it_needed() {
    let (_double, chef) = setup(read_delete_only).await;
    let err = chef
        .get_acl(AclObject::Node, "web-1")
        .await
        .expect_err("grant is missing")
        .to_string();
    // The server says "missing read permission" (its HTTP method's); the
    // message says what was really needed.
    assert!(
        err.contains("missing read permission")
            && err.contains("needs grant on node web-1 (ACL backup)")
            && err.contains("knife acl add client nodereaper nodes web-1 grant"),
        "{err}"
    );
    assert!(!err.contains("read and delete"), "{err}");
    let err = chef
        .create_client("web-9", Some(&chef_double::public_key("web-9")), false)
        .await
        .expect_err("create is missing")
        .to_string();
    assert!(
        err.contains("needs create on the clients container (restore)"),
        "{err}"
    );
}

#[tokio::test]
async fn deregister_without_grant_deletes_and_records_the_acls_as_not_backed_up() {
    let (double, chef) = setup(read_delete_only).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(&double, dir.path(), AclBackupPolicy::Optional);
    let outcome = reaper.reap(&deregister("web-1")).await.expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    assert!(double.with(|s| !s.nodes.contains_key("web-1") && !s.clients.contains_key("web-1")));
    let entries = reaper.journal.entries().await.expect("entries");
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.acl_backup, Some(AclBackup::Forbidden), "{e:?}");
    assert!(e.node_acl.is_none() && e.client_acl.is_none());
    assert!(
        e.notes
            .iter()
            .any(|n| n.contains("ACL of node web-1 not backed up")
                && n.contains("grant on node web-1")),
        "{:?}",
        e.notes
    );
    // On disk, as an operator reads it.
    let index = std::fs::read_to_string(dir.path().join("index.jsonl")).expect("index");
    assert!(index.contains(r#""acl_backup":"forbidden""#), "{index}");
    // The start-up probe says so too (log + gauge).
    nodereaper::act::backup::announce_acl_backup(
        &chef,
        ME,
        &|n: &str| n.to_string(),
        AclBackupPolicy::Optional,
    )
    .await;
    assert_eq!(
        nodereaper::telemetry::metrics::get()
            .acl_backup_forbidden
            .get(),
        1
    );
}

#[tokio::test]
async fn require_acl_backup_refuses_the_deletion_and_deletes_nothing() {
    let (double, _chef) = setup(read_delete_only).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(&double, dir.path(), AclBackupPolicy::Required);
    let err = reaper
        .reap(&deregister("web-1"))
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("require_acl_backup") && err.contains("grant on"),
        "{err}"
    );
    assert!(double.with(|s| s.nodes.contains_key("web-1") && s.clients.contains_key("web-1")));
    assert!(
        double
            .requests()
            .iter()
            .all(|(l, _)| !l.starts_with("DELETE")),
        "nothing deleted"
    );
    assert!(reaper.journal.entries().await.expect("entries").is_empty());
}

#[tokio::test]
async fn with_the_full_set_deregister_backs_up_acls_and_restore_brings_everything_back() {
    let (double, chef) = setup(full_set).await;
    let original = double.with(|s| {
        (
            s.acls[&("nodes".to_string(), "web-1".to_string())].clone(),
            s.acls[&("clients".to_string(), "web-1".to_string())].clone(),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    // Refusing without ACLs costs nothing when they can be read.
    let reaper = reaper(&double, dir.path(), AclBackupPolicy::Required);
    let outcome = reaper.reap(&deregister("web-1")).await.expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    let entries = reaper.journal.entries().await.expect("entries");
    assert_eq!(entries[0].acl_backup, Some(AclBackup::BackedUp));

    let regs = nodereaper::jobs::restore::select(reaper.journal.as_ref(), &EntryFilter::default())
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
    let now = double.with(|s| {
        (
            s.acls[&("nodes".to_string(), "web-1".to_string())].clone(),
            s.acls[&("clients".to_string(), "web-1".to_string())].clone(),
        )
    });
    assert_eq!(now, original);
    assert_eq!(double.with(|s| s.denied.clone()), Vec::<String>::new());
}
