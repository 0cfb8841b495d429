//! The demo's rest of the estate: a chef-vault item the web clients can
//! read (nodereaper removes each terminated client's entry), and a local
//! webhook receiver that verifies nodereaper's signature on every POST.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::adapters::webhook::SIGNATURE_HEADER;
use nodereaper::ports::estate::DataBags;
use nodereaper::ports::ChefApi;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

use super::Out;

/// The demo's vault data bag and item.
pub const VAULT_BAG: &str = "demo-secrets";
/// The vault item; chef-vault keeps its keys in `app_config_keys`.
pub const VAULT_ITEM: &str = "app_config";
/// The webhook's HMAC secret, shared by nodereaper and the receiver.
const SECRET: &str = "demo-webhook-secret: shared by nodereaper and the receiver";

/// The POSTs received: (signature verified, body).
type Received = Arc<Mutex<Vec<(bool, Bytes)>>>;

/// A webhook receiver on a free loopback port: every POST, and whether its
/// `X-Nodereaper-Signature` verified.
pub struct Receiver {
    got: Received,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
}

async fn receive(State(got): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = verify(SECRET.as_bytes(), &headers, &body);
    if let Ok(mut got) = got.lock() {
        got.push((verified, body));
    }
    if verified {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// What a receiver does before trusting a body: constant-time HMAC-SHA256
/// verification of the exact bytes against `sha256=<hex>`.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(hex) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
    else {
        return false;
    };
    let tag: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    tag.is_some_and(|tag| ring::hmac::verify(&key, body, &tag).is_ok())
}

impl Receiver {
    /// Starts the receiver (it lives as long as the demo).
    pub async fn start() -> Result<Self> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the webhook receiver on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver {
            got,
            url: format!("http://{addr}/hook"),
        })
    }

    /// Every POST so far: (signature verified, body as JSON or null).
    fn received(&self) -> Vec<(bool, Value)> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .map(|(ok, b)| (*ok, serde_json::from_slice(b).unwrap_or(Value::Null)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Writes the webhook secret file; the `[vault]` and `[webhook]` sections.
pub fn config_toml(receiver: &Receiver, work_dir: &Path) -> Result<String> {
    let secret_file = work_dir.join("webhook-secret");
    std::fs::write(&secret_file, SECRET)
        .with_context(|| format!("cannot write {}", secret_file.display()))?;
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    Ok(format!(
        "[vault]\n\
         enabled = true  # remove deleted clients from chef-vault items\n\
         data_bags = [{bag}]\n\
         \n\
         [webhook]\n\
         url = {url}  # the demo's own receiver\n\
         allow_plain_http = true  # local receiver only (never in production)\n\
         secret_file = {secret}  # HMAC-SHA256 key of X-Nodereaper-Signature\n\
         template = '{{\"text\": \"nodereaper {{{{outcome}}}} {{{{node_name}}}} ({{{{instance_id}}}}, {{{{fqdn}}}})\", \"instance_id\": \"{{{{instance_id}}}}\", \"node\": \"{{{{node_name}}}}\", \"group\": \"{{{{group}}}}\"}}'\n",
        bag = q(VAULT_BAG),
        url = q(&receiver.url),
        secret = q(&secret_file.display().to_string()),
    ))
}

/// chef-vault's `ItemKeys.encode_key` (chef/chef-vault
/// `lib/chef-vault/item_keys.rb`): PKCS#1 v1.5 encryption of the item's
/// shared secret with the public key, then `Base64.encode64` (a newline
/// after every 60 characters and at the end).
fn encode_key(public: &RsaPublicKey, secret: &[u8]) -> Result<String> {
    let encrypted = public
        .encrypt(&mut rand::thread_rng(), Pkcs1v15Encrypt, secret)
        .context("RSA encryption of the vault secret")?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(encrypted);
    Ok(b64
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect())
}

fn public_key(pem: &str) -> Result<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .context("expected an RSA public key (PEM)")
}

/// The vault `demo-secrets/app_config`, as `knife vault create ... -A ADMIN
/// -S` would leave it: the admin and every web client listed in
/// `app_config_keys` (default mode), each with the item's secret encrypted
/// with its public key. The encrypted item itself is a stand-in: nodereaper
/// only ever touches the keys item.
pub async fn create_vault(
    chef: &ChefClient,
    admin: (&str, &Path),
    clients: &[String],
) -> Result<()> {
    let _ = chef
        .send(reqwest::Method::DELETE, &["data", VAULT_BAG], &[], None)
        .await;
    let made = chef
        .send(
            reqwest::Method::POST,
            &["data"],
            &[],
            Some(&json!({ "name": VAULT_BAG })),
        )
        .await
        .context("cannot create the vault data bag")?;
    if !made.status.is_success() {
        bail!(
            "creating data bag {VAULT_BAG}: the server answered {}",
            made.status
        );
    }
    let secret: [u8; 32] = rand::random();
    let admin_pem = std::fs::read_to_string(admin.1)
        .with_context(|| format!("cannot read {}", admin.1.display()))?;
    let admin_key = RsaPrivateKey::from_pkcs1_pem(&admin_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(&admin_pem))
        .context("the admin key: expected an RSA private key")?;
    let mut keys = json!({
        "id": format!("{VAULT_ITEM}_keys"),
        "admins": [admin.0],
        "clients": clients,
        "search_query": "role:web",
        "mode": "default",
    });
    keys[admin.0] = json!(encode_key(&admin_key.to_public_key(), &secret)?);
    for name in clients {
        let client = chef
            .get_client(name)
            .await?
            .with_context(|| format!("client {name} missing"))?;
        let pem = client["public_key"]
            .as_str()
            .with_context(|| format!("client {name} has no public_key"))?;
        keys[name.as_str()] = json!(encode_key(&public_key(pem)?, &secret)?);
    }
    let item = json!({"id": VAULT_ITEM, "db_password": {"encrypted_data": "(stand-in)",
        "cipher": "aes-256-gcm", "version": 3}});
    for body in [&item, &keys] {
        chef.create_item(VAULT_BAG, body)
            .await
            .context("cannot create the vault items")?;
    }
    Ok(())
}

/// The clients `app_config_keys` lists, and those it holds a secret for.
async fn vault_clients(chef: &ChefClient) -> Result<(Vec<String>, Vec<String>)> {
    let keys = chef
        .get_item(VAULT_BAG, &format!("{VAULT_ITEM}_keys"))
        .await?
        .context("app_config_keys is gone")?;
    let listed: Vec<String> = keys["clients"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let with_secret: Vec<String> = keys
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| k.starts_with("web-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok((listed, with_secret))
}

/// Prints the vault's client list.
pub async fn show_vault(out: &Out, chef: &ChefClient) -> Result<()> {
    let (listed, _) = vault_clients(chef).await?;
    out.say(&format!(
        "  chef-vault {VAULT_BAG}/{VAULT_ITEM}: clients = [{}]",
        listed.join(", ")
    ));
    Ok(())
}

/// Shows and checks the vault and the webhooks after the run: the
/// terminated clients gone from the vault, the kept ones still there; one
/// signed, templated POST per terminated instance.
pub async fn check(
    out: &mut Out,
    chef: &ChefClient,
    receiver: &Receiver,
    terminated: &[(String, String)],
    kept_clients: &[String],
) -> Result<()> {
    show_vault(out, chef).await?;
    let (listed, with_secret) = vault_clients(chef).await?;
    let gone: Vec<&str> = terminated.iter().map(|(n, _)| n.as_str()).collect();
    let still: Vec<&&str> = gone
        .iter()
        .filter(|n| listed.iter().any(|l| l == **n) || with_secret.iter().any(|s| s == **n))
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    let mut want = kept_clients.to_vec();
    want.sort();
    out.check(
        still.is_empty() && sorted == want,
        &format!(
            "chef-vault: the {} terminated clients' entries (name and encrypted secret) are gone from {VAULT_ITEM}_keys; {} kept",
            gone.len(),
            kept_clients.join(", ")
        ),
    );
    let got = receiver.received();
    out.say(&format!("  the receiver got {} POSTs:", got.len()));
    for (ok, body) in &got {
        out.block(&format!(
            "{} {}",
            if *ok {
                "signature verified:"
            } else {
                "BAD SIGNATURE:"
            },
            body
        ));
    }
    let mut ids: Vec<&str> = got
        .iter()
        .filter(|(ok, b)| {
            *ok && b["group"] == super::GROUP
                && b["text"].as_str().is_some_and(|t| t.contains("deleted"))
        })
        .filter_map(|(_, b)| b["instance_id"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut expected: Vec<&str> = terminated.iter().map(|(_, i)| i.as_str()).collect();
    expected.sort_unstable();
    out.check(
        ids == expected && got.iter().all(|(ok, _)| *ok),
        &format!(
            "webhook: a templated POST for each of the {} terminated instances (group {}), every signature verified by the receiver",
            expected.len(),
            super::GROUP
        ),
    );
    Ok(())
}
