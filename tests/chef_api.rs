//! Chef API client and `deregister`, against goiardi with authentication on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::stream::{self, StreamExt};
use nodereaper::act::resolve::{ResolveError, Resolver};
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, Target};
use nodereaper::adapters::chef::auth::SignVersion;
use nodereaper::adapters::chef::ChefError;
use nodereaper::adapters::journal::LocalJournal;
use nodereaper::core::verify::Protection;
use nodereaper::ports::{ChefApi, Deleted, Journal};
use serde_json::Value;

fn reaper(chef: Arc<dyn ChefApi>, journal_dir: &std::path::Path) -> Reaper {
    Reaper {
        chef,
        journal: Arc::new(LocalJournal::open(journal_dir).expect("journal")),
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: Vec::new(),
    }
}

fn request(target: Target, dry_run: bool) -> Request {
    Request {
        target,
        source: nodereaper::act::RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

#[tokio::test]
async fn every_signing_version_is_accepted_by_goiardi() {
    let admin = admin();
    let name = unique("signer");
    let key = new_client(&admin, &name, true).await;
    for version in [SignVersion::V1_0, SignVersion::V1_1, SignVersion::V1_3] {
        let chef = chef_as(&name, &key, version);
        let got = chef
            .get_client(&name)
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(got.expect("client exists")["name"], name, "{version}");
    }
}

#[tokio::test]
async fn deregister_by_instance_id_then_already_gone() {
    let admin = Arc::new(admin());
    let instance = fake_instance_id();
    let node = unique("web");
    register(&admin, &node, Some(&instance)).await;
    let journal_dir = tempfile::tempdir().expect("tempdir");
    let reaper = reaper(admin.clone(), journal_dir.path());

    // Dry run first: shows the plan, touches nothing.
    let plan = reaper
        .reap(&request(
            Target::Instance(instance.parse().expect("valid id")),
            true,
        ))
        .await
        .expect("dry run");
    match &plan {
        Outcome::WouldDelete { plan } => {
            assert_eq!(plan.node_name, node);
            assert_eq!(plan.client_name, node);
            assert!(plan.node_exists && plan.client_exists);
            assert!(
                plan.found_by.contains("ec2_instance_id"),
                "{}",
                plan.found_by
            );
        }
        other => panic!("expected a plan, got {other:?}"),
    }
    assert!(
        admin.get_node(&node).await.expect("get").is_some(),
        "dry run deleted the node"
    );

    let outcome = reaper
        .reap(&request(
            Target::Instance(instance.parse().expect("valid id")),
            false,
        ))
        .await
        .expect("deregister");
    match &outcome {
        Outcome::Deleted {
            node: n, client: c, ..
        } => {
            assert_eq!(*n, Deleted::Removed);
            assert_eq!(*c, Deleted::Removed);
        }
        other => panic!("expected deletion, got {other:?}"),
    }
    assert!(
        admin.get_node(&node).await.expect("get node").is_none(),
        "node still there"
    );
    assert!(
        admin.get_client(&node).await.expect("get client").is_none(),
        "client still there"
    );

    // The journal holds both objects as they were.
    let entries = LocalJournal::open(journal_dir.path())
        .expect("journal")
        .entries()
        .await
        .expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].node.as_ref().expect("node backup")["name"], node);
    assert_eq!(
        entries[0].client.as_ref().expect("client backup")["name"],
        node
    );
    assert_eq!(entries[0].instance_id.as_deref(), Some(instance.as_str()));

    let again = reaper
        .reap(&request(
            Target::Instance(instance.parse().expect("valid id")),
            false,
        ))
        .await
        .expect("second run");
    assert!(matches!(again, Outcome::AlreadyGone { .. }), "{again:?}");

    // DELETE of a missing object is "already gone", not an error.
    assert_eq!(
        admin.delete_node(&node).await.expect("delete"),
        Deleted::AlreadyGone
    );
    assert_eq!(
        admin.delete_client(&node).await.expect("delete"),
        Deleted::AlreadyGone
    );
}

#[tokio::test]
async fn node_named_after_instance_is_found_without_search() {
    let admin = Arc::new(admin());
    let instance = fake_instance_id();
    register(&admin, &instance, Some(&instance)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = reaper(admin.clone(), dir.path())
        .reap(&request(
            Target::Instance(instance.parse().expect("valid id")),
            false,
        ))
        .await
        .expect("deregister");
    match outcome {
        Outcome::Deleted { plan, .. } => assert_eq!(plan.found_by, "node name"),
        other => panic!("{other:?}"),
    }
    assert!(admin.get_node(&instance).await.expect("get").is_none());
}

#[tokio::test]
async fn ambiguous_match_is_refused_and_nothing_deleted() {
    let admin = Arc::new(admin());
    let instance = fake_instance_id();
    let a = unique("twin-a");
    let b = unique("twin-b");
    register(&admin, &a, Some(&instance)).await;
    register(&admin, &b, Some(&instance)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let err = reaper(admin.clone(), dir.path())
        .reap(&request(
            Target::Instance(instance.parse().expect("valid id")),
            false,
        ))
        .await
        .expect_err("must refuse");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            nodereaper::act::ReapError::Resolve(ResolveError::Ambiguous { .. })
        ),
        "{text}"
    );
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    for name in [&a, &b] {
        assert!(
            admin.get_node(name).await.expect("get").is_some(),
            "{name} was deleted"
        );
        assert!(
            admin.get_client(name).await.expect("get").is_some(),
            "{name} client was deleted"
        );
    }
}

#[tokio::test]
async fn wrong_key_and_bad_signature_are_rejected_as_unauthorized() {
    let admin = admin();
    let name = unique("victim");
    let _real_key = new_client(&admin, &name, true).await;
    let other = unique("other");
    let other_key = new_client(&admin, &other, true).await;

    // Right client name, someone else's key.
    let impostor = chef_as(&name, &other_key, SignVersion::V1_3);
    let err = impostor
        .get_node("anything")
        .await
        .expect_err("must be rejected");
    assert!(matches!(err, ChefError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("15 minutes") && text.contains(&name),
        "{text}"
    );
    assert!(!nodereaper::core::error::Classify::is_transient(&err));

    // A correctly formed request whose signature lines were tampered with.
    let url = format!("{}/nodes", stack().chef_url());
    let key =
        nodereaper::adapters::chef::auth::SigningKey::from_pem(&admin_key_pem()).expect("key");
    let headers = nodereaper::adapters::chef::auth::sign(
        &key,
        SignVersion::V1_3,
        &nodereaper::adapters::chef::auth::RequestToSign {
            method: "GET",
            path: "/nodes",
            body: b"",
            user_id: "admin",
            timestamp: chrono::Utc::now(),
            server_api_version: "1",
        },
    )
    .expect("sign");
    let mut req = reqwest::Client::new()
        .get(&url)
        .header("X-Ops-Server-API-Version", "1")
        .header("Accept", "application/json");
    for (k, v) in headers {
        let v = if k == "X-Ops-Authorization-1" {
            // Another first character than the one signed (base64): a
            // fixed "A" would be no change once in 64 signatures.
            let other = if v.starts_with('A') { 'B' } else { 'A' };
            format!("{other}{}", &v[1..])
        } else {
            v
        };
        req = req.header(k, v);
    }
    let status = req.send().await.expect("send").status();
    assert_eq!(status.as_u16(), 401, "tampered signature must be refused");

    // A timestamp 20 minutes off is refused too (the clock-skew case).
    let skewed = nodereaper::adapters::chef::auth::sign(
        &key,
        SignVersion::V1_3,
        &nodereaper::adapters::chef::auth::RequestToSign {
            method: "GET",
            path: "/nodes",
            body: b"",
            user_id: "admin",
            timestamp: chrono::Utc::now() - chrono::Duration::minutes(20),
            server_api_version: "1",
        },
    )
    .expect("sign");
    let mut req = reqwest::Client::new()
        .get(&url)
        .header("X-Ops-Server-API-Version", "1");
    for (k, v) in skewed {
        req = req.header(k, v);
    }
    assert_eq!(
        req.send().await.expect("send").status().as_u16(),
        401,
        "skewed clock must be refused"
    );
}

#[tokio::test]
async fn organization_path_on_goiardi_is_an_empty_delete_error() {
    // goiardi has no organizations: /organizations/ORG/... falls through to an
    // empty 200 that deletes nothing. That must never count as a deletion.
    let admin = admin();
    let node = unique("orgless");
    register(&admin, &node, Some(&fake_instance_id())).await;
    let org_url = format!("{}/organizations/acme", stack().chef_url());
    let chef =
        nodereaper::adapters::chef::ChefClient::new(nodereaper::adapters::chef::ChefSettings {
            server_url: url::Url::parse(&org_url).expect("url"),
            client_name: "admin".into(),
            key: nodereaper::adapters::chef::auth::SigningKey::from_pem(&admin_key_pem())
                .expect("key"),
            sign_version: SignVersion::V1_3,
            timeout: Duration::from_secs(10),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size: 1000,
        })
        .expect("client");
    let err = chef
        .delete_node(&node)
        .await
        .expect_err("empty 200 must be an error");
    assert!(matches!(err, ChefError::EmptyDelete { .. }), "{err}");
    assert!(admin.get_node(&node).await.expect("get").is_some());
}

#[tokio::test]
async fn search_paging_returns_every_node_exactly_once() {
    let admin = Arc::new(admin());
    let batch = unique("paging").replace('-', "");
    let count = 1234usize;
    let names: Vec<String> = (0..count).map(|i| format!("{batch}-{i:05}")).collect();
    stream::iter(names.iter().cloned())
        .for_each_concurrent(32, |name| {
            let admin = admin.clone();
            let batch = batch.clone();
            async move {
                let mut node =
                    node_json(&name, Some(&fake_instance_id()), Duration::from_secs(7200));
                node["normal"]["batch"] = Value::String(batch);
                admin.create_node(&node).await.expect("create node");
            }
        })
        .await;
    let query = format!("batch:{batch}");
    // goiardi indexes new nodes asynchronously: on a loaded machine a search
    // right after 1,234 creates may not see them all yet. Wait for the index
    // (paging that loses rows never gets there, and fails below).
    let mut found = Vec::new();
    for _ in 0..60 {
        found = admin.search_node_names(&query).await.expect("search");
        if found.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(found.len(), count, "full search rows");
    found.sort();
    found.dedup();
    assert_eq!(found.len(), count, "duplicates across pages");
    assert_eq!(found, names);

    let rows = admin
        .partial_search_nodes(
            &query,
            &[("name", &["name"]), ("iid", &["ec2", "instance_id"])],
        )
        .await
        .expect("partial search");
    let mut partial: Vec<String> = rows
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(partial.len(), count, "partial search rows");
    partial.sort();
    partial.dedup();
    assert_eq!(
        partial, names,
        "partial search pages must not overlap or skip"
    );
    assert!(rows
        .iter()
        .all(|r| r["iid"].as_str().is_some_and(|s| s.starts_with("i-"))));
    assert!(admin.is_goiardi());
}

/// A redirect would carry the signed headers to another URL: it is never
/// followed, and the error names the Location.
#[tokio::test]
async fn redirects_are_not_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Where the redirect points: counts every connection it gets.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let elsewhere_addr = elsewhere.local_addr().expect("addr");
    let contacted = Arc::new(AtomicUsize::new(0));
    let counter = contacted.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = elsewhere.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // The "Chef server": answers every request with a 302.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let location = format!("http://{elsewhere_addr}/nodes/web-1");
    let answer = format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tokio::spawn(async move {
        while let Ok((mut s, _)) = server.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let chef =
        nodereaper::adapters::chef::ChefClient::new(nodereaper::adapters::chef::ChefSettings {
            server_url: url::Url::parse(&format!("http://{server_addr}")).expect("url"),
            client_name: "admin".into(),
            key: nodereaper::adapters::chef::auth::SigningKey::from_pem(&admin_key_pem())
                .expect("key"),
            sign_version: SignVersion::V1_3,
            timeout: Duration::from_secs(5),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size: 1000,
        })
        .expect("client");
    let err = chef
        .get_node("web-1")
        .await
        .expect_err("a redirect is an error");
    assert!(matches!(err, ChefError::Redirect { .. }), "{err}");
    assert!(err.to_string().contains(&location), "{err}");
    let err = chef
        .delete_node("web-1")
        .await
        .expect_err("a redirect is an error");
    assert!(matches!(err, ChefError::Redirect { .. }), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}
