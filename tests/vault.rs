//! chef-vault on the real stack (goiardi with authentication): a deleted
//! client is removed from the vaults it could read (default and sparse
//! mode), left in the one where it is an admin, and a restore puts its
//! entries back so that its ORIGINAL private key decrypts the secrets again.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use nodereaper::act::resolve::Resolver;
use nodereaper::act::{DeletionLimiter, Outcome, Reaper, Request, RequestSource, Target};
use nodereaper::adapters::chef::ChefClient;
use nodereaper::adapters::journal::{EntryFilter, LocalJournal};
use nodereaper::adapters::vault::{sparse_id, VaultTarget};
use nodereaper::core::verify::Protection;
use nodereaper::ports::estate::{DataBags, EstateTarget};
use nodereaper::ports::{ChefApi, Journal};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

/// chef-vault's `ItemKeys.encode_key` (chef/chef-vault
/// `lib/chef-vault/item_keys.rb`): Ruby's `OpenSSL::PKey::RSA#public_encrypt`
/// (PKCS#1 v1.5 padding) of the item's shared secret, then `Base64.encode64`
/// (a newline after every 60 characters and at the end).
fn encode_key(public_pem: &str, secret: &[u8]) -> String {
    let key = RsaPublicKey::from_public_key_pem(public_pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(public_pem))
        .expect("client public key");
    let encrypted = key
        .encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, secret)
        .expect("encrypt");
    let b64 = base64::engine::general_purpose::STANDARD.encode(encrypted);
    let mut out = String::new();
    for chunk in b64.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out
}

/// What chef-vault's `ItemKeys#[]` hands the client: its encrypted secret,
/// decrypted with its private key.
fn decrypt(private_pem: &str, encoded: &str) -> Vec<u8> {
    let key = RsaPrivateKey::from_pkcs1_pem(private_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(private_pem))
        .expect("client private key");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.replace('\n', ""))
        .expect("base64");
    key.decrypt(Pkcs1v15Encrypt, &bytes).expect("decrypt")
}

/// A keys item as `ItemKeys#save` writes it: `id`, `admins`, `clients`,
/// `search_query`, `mode`, and (default mode) each name's encrypted
/// secret as a key; in sparse mode each secret goes to an item
/// `ITEM_key_NAME` of its own (`sparse_id`). Returns the sparse items.
fn keys_item(
    id: &str,
    mode: &str,
    admins: &[(&str, String)],
    clients: &[(&str, String)],
) -> (Value, Vec<Value>) {
    let mut item = json!({
        "id": id,
        "admins": admins.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "clients": clients.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "search_query": [],
        "mode": mode,
    });
    let mut sparse = Vec::new();
    for (name, secret) in admins.iter().chain(clients) {
        if mode == "sparse" {
            sparse.push(json!({"id": sparse_id(id, name), *name: secret}));
        } else {
            item[*name] = json!(secret);
        }
    }
    (item, sparse)
}

async fn create_bag(chef: &ChefClient, bag: &str) {
    let resp = chef
        .send(
            reqwest::Method::POST,
            &["data"],
            &[],
            Some(&json!({"name": bag})),
        )
        .await
        .expect("create bag");
    assert!(resp.status.is_success(), "create bag: {}", resp.status);
}

struct Fixture {
    bag: String,
    client: String,
    private_key: String,
    /// The shared secret of each vault item, by keys item id.
    secrets: Vec<(String, Vec<u8>)>,
}

/// A client with its own key pair and a node; a vault data bag with four
/// items: `a` and `b` (default mode) and `c` (sparse) list the client, `d`
/// lists it as an admin. Another client `other-*` is in every item.
async fn fixture(admin: &ChefClient) -> Fixture {
    let client = unique("vault-node");
    admin
        .create_node(&node_json(
            &client,
            Some(&fake_instance_id()),
            std::time::Duration::from_secs(7200),
        ))
        .await
        .expect("node");
    let private_key = new_client(admin, &client, false).await;
    let other = unique("other");
    new_client(admin, &other, false).await;
    let public = |name: String| async move {
        let c = admin.get_client(&name).await.expect("get").expect("client");
        c["public_key"].as_str().expect("public_key").to_string()
    };
    let (mine, theirs) = (public(client.clone()).await, public(other.clone()).await);
    let bag = unique("vault");
    create_bag(admin, &bag).await;
    let mut secrets = Vec::new();
    for (item, mode, admin_of) in [
        ("a", "default", false),
        ("b", "default", false),
        ("c", "sparse", false),
        ("d", "default", true),
    ] {
        let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let id = format!("{item}_keys");
        let me = (client.as_str(), encode_key(&mine, &secret));
        let them = (other.as_str(), encode_key(&theirs, &secret));
        let (admins, clients) = if admin_of {
            (vec![me], vec![them])
        } else {
            (vec![], vec![me, them])
        };
        let (keys, sparse) = keys_item(&id, mode, &admins, &clients);
        for i in std::iter::once(keys).chain(sparse) {
            admin.create_item(&bag, &i).await.expect("create item");
        }
        secrets.push((id, secret));
    }
    Fixture {
        bag,
        client,
        private_key,
        secrets,
    }
}

fn reaper(chef: Arc<ChefClient>, journal: Arc<dyn Journal>, vault: Arc<VaultTarget>) -> Reaper {
    Reaper {
        chef,
        journal,
        resolver: Resolver::default(),
        protection: Protection::default(),
        limiter: Arc::new(DeletionLimiter::new(0)),
        acl_backup: Default::default(),
        estate: vec![vault],
    }
}

fn request(node: &str, dry_run: bool) -> Request {
    Request {
        target: Target::Node(node.to_string()),
        source: RequestSource::Deregister,
        reason: "test".into(),
        message_id: None,
        dry_run,
        recheck: None,
        verified_region: None,
        group: None,
    }
}

/// The client's encrypted secret in a keys item (default or sparse), if any.
async fn stored_secret(chef: &ChefClient, bag: &str, id: &str, client: &str) -> Option<String> {
    let keys = chef
        .get_item(bag, id)
        .await
        .expect("get")
        .expect("keys item");
    if let Some(s) = keys.get(client) {
        return s.as_str().map(str::to_string);
    }
    let sparse = chef
        .get_item(bag, &sparse_id(id, client))
        .await
        .expect("get")?;
    sparse[client].as_str().map(str::to_string)
}

async fn listed(chef: &ChefClient, bag: &str, id: &str, list: &str, client: &str) -> bool {
    let keys = chef
        .get_item(bag, id)
        .await
        .expect("get")
        .expect("keys item");
    keys[list]
        .as_array()
        .expect("list")
        .iter()
        .any(|v| v.as_str() == Some(client))
}

#[tokio::test]
async fn deleted_client_leaves_three_vaults_stays_admin_of_one_and_restore_brings_its_key_back() {
    let admin = Arc::new(admin());
    let f = fixture(&admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let journal: Arc<dyn Journal> = Arc::new(LocalJournal::open(dir.path()).expect("journal"));
    let vault = Arc::new(VaultTarget::new(admin.clone(), Vec::new()));
    let outcome = reaper(admin.clone(), journal.clone(), vault.clone())
        .reap(&request(&f.client, false))
        .await
        .expect("reap");
    assert!(matches!(outcome, Outcome::Deleted { .. }), "{outcome:?}");
    assert!(node_gone(&admin, &f.client).await);

    for (id, _) in &f.secrets[..3] {
        assert!(
            !listed(&admin, &f.bag, id, "clients", &f.client).await,
            "{id} still lists the client"
        );
        assert_eq!(
            stored_secret(&admin, &f.bag, id, &f.client).await,
            None,
            "{id} keeps its secret"
        );
    }
    // The admin vault is untouched; the other client keeps all four.
    assert!(listed(&admin, &f.bag, "d_keys", "admins", &f.client).await);
    assert!(stored_secret(&admin, &f.bag, "d_keys", &f.client)
        .await
        .is_some());
    let other = admin
        .get_item(&f.bag, "a_keys")
        .await
        .expect("get")
        .expect("a");
    assert_eq!(other["clients"].as_array().expect("clients").len(), 1);

    // The journal holds the removed entries, recorded before the deletion.
    let entries = journal.entries().await.expect("entries");
    let entry = entries
        .iter()
        .find(|e| e.node_name == f.client)
        .expect("entry");
    let backup = &entry
        .estate
        .iter()
        .find(|b| b.target == "vault")
        .expect("vault backup")
        .data;
    assert_eq!(backup["entries"].as_array().expect("entries").len(), 3);
    assert_eq!(backup["admin_of"], json!([format!("{}/d_keys", f.bag)]));

    // Restore: the client with its original key, then its vault entries.
    let filter = EntryFilter {
        node: Some(f.client.clone()),
        ..Default::default()
    };
    let regs = nodereaper::jobs::restore::select(journal.as_ref(), &filter)
        .await
        .expect("select");
    let mut restored = nodereaper::jobs::restore::restore(admin.as_ref(), &regs[0], false)
        .await
        .expect("restore");
    let targets: Vec<Arc<dyn EstateTarget>> = vec![vault.clone()];
    nodereaper::jobs::restore_estate::restore(&targets, &regs[0].estate, &mut restored).await;
    assert!(!restored.partial(), "{:?}", restored.notes);
    for (id, secret) in &f.secrets {
        assert!(
            listed(
                &admin,
                &f.bag,
                id,
                if id == "d_keys" { "admins" } else { "clients" },
                &f.client
            )
            .await,
            "{id} lists the client again"
        );
        let stored = stored_secret(&admin, &f.bag, id, &f.client)
            .await
            .expect("secret back");
        assert_eq!(
            &decrypt(&f.private_key, &stored),
            secret,
            "{id}: the original key decrypts it"
        );
    }
}

#[tokio::test]
async fn dry_run_leaves_every_vault_alone() {
    let admin = Arc::new(admin());
    let f = fixture(&admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let journal: Arc<dyn Journal> = Arc::new(LocalJournal::open(dir.path()).expect("journal"));
    let vault = Arc::new(VaultTarget::new(admin.clone(), vec![f.bag.clone()]));
    let outcome = reaper(admin.clone(), journal, vault)
        .reap(&request(&f.client, true))
        .await
        .expect("reap");
    assert!(
        matches!(outcome, Outcome::WouldDelete { .. }),
        "{outcome:?}"
    );
    for (id, _) in &f.secrets[..3] {
        assert!(listed(&admin, &f.bag, id, "clients", &f.client).await);
        assert!(stored_secret(&admin, &f.bag, id, &f.client).await.is_some());
    }
}

/// The commands end to end, as an operator runs them: `deregister --node`
/// with `[vault]` enabled removes the client from its vaults, `restore`
/// puts the entries back and says so.
#[tokio::test]
async fn deregister_and_restore_commands_clean_and_restore_the_vaults() {
    let admin = Arc::new(admin());
    let f = fixture(&admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("nodereaper.toml");
    std::fs::write(
        &config,
        format!(
            "[chef]\nserver_url = \"{}\"\nallow_plain_http = true\nclient_name = \"admin\"\nclient_key = \"{}\"\n[journal]\ndir = \"{}\"\n[vault]\nenabled = true\ndata_bags = [\"{}\"]\n",
            stack().chef_url(),
            stack().admin_key().display(),
            dir.path().join("journal").display(),
            f.bag
        ),
    )
    .expect("config");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nodereaper"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run nodereaper")
    };
    let done = run(&["deregister", "--node", &f.client]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(!listed(&admin, &f.bag, "a_keys", "clients", &f.client).await);
    assert_eq!(
        stored_secret(&admin, &f.bag, "c_keys", &f.client).await,
        None
    );
    let restored = run(&["restore", &f.client]);
    let out = String::from_utf8_lossy(&restored.stdout);
    assert!(
        restored.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        out.contains("estate vault: client") && out.contains("3 vault item(s)"),
        "{out}"
    );
    for (id, secret) in &f.secrets[..3] {
        let stored = stored_secret(&admin, &f.bag, id, &f.client)
            .await
            .expect("back");
        assert_eq!(&decrypt(&f.private_key, &stored), secret, "{id}");
    }
}

/// Three deletions at once (the daemon's workers) editing one keys item:
/// each client's entry is removed, none written back by another's edit.
#[tokio::test]
async fn concurrent_deletions_each_leave_a_shared_vault() {
    use nodereaper::ports::estate::{Departure, EstateTarget};
    let admin = Arc::new(admin());
    let bag = unique("vault-shared");
    create_bag(&admin, &bag).await;
    let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let name = unique("shared");
        new_client(&admin, &name, false).await;
        let c = admin.get_client(&name).await.expect("get").expect("client");
        let key = encode_key(c["public_key"].as_str().expect("public_key"), &secret);
        clients.push((name, key));
    }
    let listed_clients: Vec<(&str, String)> = clients
        .iter()
        .map(|(n, k)| (n.as_str(), k.clone()))
        .collect();
    let (keys, _) = keys_item("app_keys", "default", &[], &listed_clients);
    admin.create_item(&bag, &keys).await.expect("keys item");
    let vault = VaultTarget::new(admin.clone(), vec![bag.clone()]);
    let departure = |name: &str| Departure {
        journal_id: unique("j"),
        source: "event".into(),
        instance_id: None,
        account: None,
        region: None,
        group: None,
        node_name: name.to_string(),
        client_name: name.to_string(),
        node: None,
    };
    let gone: Vec<Departure> = clients[..3].iter().map(|(n, _)| departure(n)).collect();
    let mut backups = Vec::new();
    for d in &gone {
        backups.push(vault.backup(d).await.expect("backup"));
    }
    let cleans = gone
        .iter()
        .zip(&backups)
        .map(|(d, b)| vault.clean(d, b.as_ref()));
    for done in futures::future::join_all(cleans).await {
        done.expect("clean");
    }
    for (name, _) in &clients[..3] {
        assert!(
            !listed(&admin, &bag, "app_keys", "clients", name).await,
            "{name} still listed"
        );
        assert!(
            stored_secret(&admin, &bag, "app_keys", name)
                .await
                .is_none(),
            "{name}'s secret kept"
        );
    }
    let kept = &clients[3].0;
    assert!(
        listed(&admin, &bag, "app_keys", "clients", kept).await,
        "the fourth stays"
    );
}
