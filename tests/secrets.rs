//! The Chef key from Secrets Manager and SSM Parameter Store (moto), with
//! rotation: a 401 from goiardi makes nodereaper read the key once more.

mod common;

use std::time::Duration;

use common::*;
use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::{ChefClient, ChefError, ChefSettings};
use nodereaper::adapters::secrets::{self, KeyStore, RotatingChef};
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
use serde_json::json;

/// A new key for the client: deleted and created again (goiardi generates it).
async fn rotate_on_server(admin: &ChefClient, name: &str) -> String {
    admin.delete_client(name).await.expect("delete client");
    new_client(admin, name, true).await
}

fn config(name: &str) -> Config {
    let mut cfg = Config::default();
    cfg.chef.server_url = Some(stack().chef_url().to_string());
    // goiardi on 127.0.0.1 speaks plain http (never allowed without this).
    cfg.chef.allow_plain_http = true;
    cfg.chef.client_name = Some(name.to_string());
    cfg.aws.region = Some("us-east-1".into());
    cfg.aws.endpoint_url = Some(stack().moto_url().to_string());
    cfg
}

async fn secretsmanager() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&aws().await)
}

async fn ssm() -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&aws().await)
}

async fn put_parameter(name: &str, value: &str) {
    ssm()
        .await
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .expect("put parameter");
}

#[tokio::test]
async fn key_from_secrets_manager_and_ssm() {
    let admin = admin();
    let name = unique("sm-client");
    let pem = new_client(&admin, &name, true).await;

    let secret = unique("nodereaper/chef-key");
    let arn = secretsmanager()
        .await
        .create_secret()
        .name(&secret)
        .secret_string(&pem)
        .send()
        .await
        .expect("secret")
        .arn()
        .expect("arn")
        .to_string();
    // By name and by ARN; the one-off client and the rotating one.
    for id in [&secret, &arn] {
        let mut cfg = config(&name);
        cfg.chef.client_key_secret = Some(id.clone());
        let chef = app::chef_client(&cfg).expect("chef client from the secret");
        assert_eq!(
            chef.get_client(&name)
                .await
                .expect("signed")
                .expect("exists")["name"],
            json!(name)
        );
        let api = app::chef_api(&cfg).await.expect("chef api");
        assert!(api.get_client(&name).await.expect("signed").is_some());
    }

    let parameter = format!("/{}", unique("nodereaper/chef-key"));
    put_parameter(&parameter, &pem).await;
    let mut cfg = config(&name);
    cfg.chef.client_key_parameter = Some(parameter.clone());
    let api = app::chef_api(&cfg).await.expect("chef api from SSM");
    assert!(api.get_client(&name).await.expect("signed").is_some());
    // The doctor reads it too.
    let checks = nodereaper::jobs::doctor::run(&cfg, "test").await;
    let key_check = checks
        .iter()
        .find(|c| c.name == "chef key")
        .expect("chef key check");
    assert!(key_check.ok, "{key_check:?}");
    assert!(key_check.detail.contains(&parameter), "{key_check:?}");

    // --print-iam-policy carries the read permission for the configured store.
    let policy = nodereaper::jobs::setup::iam_policy_for(&[], &[], None, &cfg.chef).to_string();
    assert!(
        policy.contains("ssm:GetParameter") && policy.contains(&format!("parameter{parameter}")),
        "{policy}"
    );
    let policy = nodereaper::jobs::setup::iam_policy_for(&[], &[], None, &config(&name).chef);
    assert!(!policy.to_string().contains("ChefKey"), "{policy}");
}

#[tokio::test]
async fn errors_name_the_secret_and_what_is_wrong() {
    let name = unique("missing");
    let mut cfg = config(&name);
    cfg.chef.client_key_secret = Some("nodereaper/does-not-exist".into());
    let err = app::chef_client(&cfg)
        .err()
        .expect("no such secret")
        .to_string();
    assert!(
        err.contains("Secrets Manager secret nodereaper/does-not-exist")
            && err.contains("does not exist"),
        "{err}"
    );
    let checks = nodereaper::jobs::doctor::run(&cfg, "test").await;
    let key_check = checks
        .iter()
        .find(|c| c.name == "chef key")
        .expect("chef key check");
    assert!(!key_check.ok);
    assert!(
        key_check
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("secretsmanager:GetSecretValue"),
        "{key_check:?}"
    );

    let parameter = format!("/{}", unique("not-a-key"));
    put_parameter(&parameter, "hello").await;
    let mut cfg = config(&name);
    cfg.chef.client_key_parameter = Some(parameter.clone());
    let err = app::chef_api(&cfg)
        .await
        .err()
        .expect("not a key")
        .to_string();
    assert!(
        err.contains(&format!("SSM parameter {parameter}"))
            && err.contains("not a usable RSA private key")
            && !err.contains("hello"),
        "{err}"
    );
}

fn factory(name: String) -> secrets::ClientFactory {
    Box::new(move |key: SigningKey| {
        ChefClient::new(ChefSettings {
            server_url: url::Url::parse(stack().chef_url()).expect("url"),
            client_name: name.clone(),
            key,
            sign_version: SignVersion::V1_3,
            timeout: Duration::from_secs(10),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size: 1000,
        })
        .map_err(Box::new)
    })
}

/// Rotation: the key is replaced on the server and in the store; the next
/// request gets a 401, nodereaper reads the store once more, retries, and
/// succeeds. A 401 with an unchanged key is not retried.
#[tokio::test]
async fn rotated_key_is_refetched_once_on_401() {
    let admin = admin();
    let name = unique("rotating");
    let old_pem = new_client(&admin, &name, true).await;
    let secret = unique("nodereaper/rotating");
    secretsmanager()
        .await
        .create_secret()
        .name(&secret)
        .secret_string(&old_pem)
        .send()
        .await
        .expect("secret");
    let cfg = config(&name);
    let store = KeyStore::SecretsManager(secret.clone());
    let chef = RotatingChef::connect(&cfg.aws, store, factory(name.clone()))
        .await
        .expect("connect")
        .with_min_refetch_interval(Duration::ZERO);
    assert!(chef
        .get_client(&name)
        .await
        .expect("old key works")
        .is_some());
    assert_eq!(chef.rotations(), 0);

    // Rotate: new key on the Chef server; the store still has the old one.
    let new_pem = rotate_on_server(&admin, &name).await;
    let err = chef
        .get_node("anything")
        .await
        .expect_err("the old key is refused");
    assert!(matches!(err, ChefError::Unauthorized { .. }), "{err}");
    assert_eq!(chef.rotations(), 0, "unchanged key: no new client");

    // The store gets the new key: the next 401 re-reads it and the request succeeds.
    secretsmanager()
        .await
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(&new_pem)
        .send()
        .await
        .expect("rotate secret");
    assert!(chef
        .get_client(&name)
        .await
        .expect("retried with the new key")
        .is_some());
    assert_eq!(chef.rotations(), 1);
    // And it stays on the new key: no further re-reads.
    for _ in 0..3 {
        chef.list_nodes().await.expect("new key");
    }
    assert_eq!(chef.rotations(), 1);

    // SSM works the same way, with the minimum interval keeping a wrong key
    // from turning every request into a store read.
    let parameter = format!("/{}", unique("nodereaper/rotating"));
    put_parameter(&parameter, &new_pem).await;
    let chef = RotatingChef::connect(
        &cfg.aws,
        KeyStore::SsmParameter(parameter.clone()),
        factory(name.clone()),
    )
    .await
    .expect("connect");
    let newest = rotate_on_server(&admin, &name).await;
    put_parameter(&parameter, &newest).await;
    // Connected less than 10 s ago: the first 401 is not followed by a re-read.
    assert!(chef.get_client(&name).await.is_err());
    let chef = chef.with_min_refetch_interval(Duration::ZERO);
    assert!(chef.get_client(&name).await.expect("re-read").is_some());
    assert_eq!(chef.rotations(), 1);
}
