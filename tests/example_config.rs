//! `examples/nodereaper.toml` is valid, and documents every configuration key.
//!
//! How "every key" is checked, robustly:
//!
//! * The example has active keys and commented-out keys (optional settings
//!   that are unset by default, or mutually exclusive with an active one).
//!   A commented-out key is written exactly `# key = value`: one `#`, one
//!   space, the key, ` = `, the value. Prose and multi-line examples inside comments are
//!   indented further (`#   url = ...`) and are left alone.
//! * [`documented_text`] uncomments those lines. The result must parse with
//!   `Config::parse` (so `deny_unknown_fields` also rejects a typo or a wrong
//!   type in a commented-out key), and its dotted key paths are collected
//!   from the text itself: not from the parsed `Config` re-serialised, which
//!   would fill in every absent key with its default and hide omissions.
//! * [`fully_populated`] builds a `Config` with every `Option` set and every
//!   list non-empty, with exhaustive struct literals (no `..Default::default()`):
//!   adding a field to any config struct stops this test from compiling until
//!   the field is added here, and then the key-set comparison below fails
//!   until the example documents it. (Serialising `Config::default()` alone
//!   would miss every `Option` that defaults to `None`, since TOML has no null.)
//! * The two key sets must be equal: nothing missing from the example, nothing
//!   in the example that the code does not have.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodereaper::config::{
    AwsConfig, ChefConfig, Config, HttpConfig, JournalConfig, LogConfig, PipelineConfig,
    ProtectConfig, QueueConfig, RouteConfig, SweepConfig, TargetConfig, TargetProtect, TargetSweep,
    ENV_OVERRIDES,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/nodereaper.toml")
}

fn example_text() -> String {
    let path = example_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `# key = value` (exactly one space after one `#`, spaces around `=`)
/// -> `key = value`; any other line is not a commented-out key.
fn uncomment_key(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ")?;
    let key_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(rest.len());
    if key_len == 0 {
        return None;
    }
    rest[key_len..].starts_with(" = ").then_some(rest)
}

/// The example with its commented-out keys enabled.
fn documented_text(text: &str) -> String {
    text.lines()
        .map(|line| uncomment_key(line).unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every dotted key path of a TOML document, tables included; the elements
/// of an array of tables share the array's path (`queues.url`). Values are
/// never looked into otherwise (a list of strings is one key).
fn key_paths(toml_text: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(&path, t, out),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(t) = item {
                            walk(&path, t, out);
                        }
                    }
                }
                _ => {}
            }
            out.insert(path);
        }
    }
    let table: toml::Table = toml::from_str(toml_text).expect("valid TOML");
    let mut out = BTreeSet::new();
    walk("", &table, &mut out);
    out
}

fn keys_of(config: &Config) -> BTreeSet<String> {
    key_paths(&toml::to_string(config).expect("config serialises to TOML"))
}

/// Every field set: `Some` for options, one element in lists. Exhaustive
/// struct literals on purpose (see the module comment).
fn fully_populated() -> Config {
    let d = Config::default();
    Config {
        chef: ChefConfig {
            server_url: Some("https://chef.example.com/organizations/acme".into()),
            client_name: Some("nodereaper".into()),
            client_key: Some(PathBuf::from("/etc/nodereaper/chef-client.pem")),
            client_key_pem: Some("-----BEGIN RSA PRIVATE KEY-----\n".into()),
            client_key_secret: Some(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:k".into(),
            ),
            client_key_parameter: Some("/nodereaper/chef-key".into()),
            profile: Some("nodereaper".into()),
            credentials_file: Some(PathBuf::from("/etc/nodereaper/credentials")),
            sign_version: d.chef.sign_version,
            timeout: d.chef.timeout,
            ca_bundle: Some(PathBuf::from("/etc/nodereaper/chef-ca.pem")),
            insecure_skip_tls_verify: d.chef.insecure_skip_tls_verify,
            allow_insecure_key_permissions: d.chef.allow_insecure_key_permissions,
            allow_plain_http: d.chef.allow_plain_http,
            search_query: d.chef.search_query.clone(),
            client_name_template: d.chef.client_name_template.clone(),
            page_size: d.chef.page_size,
            targets: vec![TargetConfig {
                name: "prod".into(),
                server_url: "https://chef.example.com/organizations/prod".into(),
                client_name: Some("nodereaper".into()),
                client_key: Some(PathBuf::from("/etc/nodereaper/prod.pem")),
                client_key_pem: Some("-----BEGIN RSA PRIVATE KEY-----\n".into()),
                client_key_secret: Some("nodereaper/chef-key-prod".into()),
                client_key_parameter: Some("/nodereaper/chef-key-prod".into()),
                profile: Some("prod".into()),
                credentials_file: Some(PathBuf::from("/etc/nodereaper/credentials")),
                sign_version: Some(d.chef.sign_version),
                protect: TargetProtect {
                    node_names: vec!["prod-db-*".into()],
                    roles: vec!["database".into()],
                    environments: vec!["prod-core".into()],
                    policy_groups: vec!["core".into()],
                    client_names: vec!["prod-admin-*".into()],
                    client_groups: vec!["prod-admins".into()],
                },
                sweep: TargetSweep {
                    max_candidates: Some(20),
                    max_candidate_share: Some(0.1),
                },
            }],
        },
        aws: AwsConfig {
            region: Some("us-east-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            accounts: vec![nodereaper::config::AccountConfig {
                id: "210987654321".into(),
                role_arn: "arn:aws:iam::210987654321:role/nodereaper-verify".into(),
                external_id: Some("nodereaper".into()),
            }],
        },
        queues: vec![QueueConfig {
            url: "https://sqs.us-east-1.amazonaws.com/123456789012/nodereaper".into(),
            region: Some("us-east-1".into()),
            dlq_url: Some("https://sqs.us-east-1.amazonaws.com/123456789012/nodereaper-dlq".into()),
            target: Some("prod".into()),
        }],
        routes: vec![RouteConfig {
            account: "210987654321".into(),
            region: Some("eu-west-1".into()),
            target: "prod".into(),
        }],
        routing: nodereaper::config::RoutingConfig {
            group_tag: d.routing.group_tag.clone(),
            search_all_targets: d.routing.search_all_targets,
        },
        pipeline: PipelineConfig {
            workers: d.pipeline.workers,
            wait_time: d.pipeline.wait_time,
            batch_size: d.pipeline.batch_size,
            verify_instance_state: d.pipeline.verify_instance_state,
            shutting_down_is_termination: d.pipeline.shutting_down_is_termination,
            other_events: d.pipeline.other_events,
            max_deletions_per_minute: d.pipeline.max_deletions_per_minute,
            retry_backoff_base: d.pipeline.retry_backoff_base,
            retry_backoff_max: d.pipeline.retry_backoff_max,
            lifecycle_heartbeat_interval: d.pipeline.lifecycle_heartbeat_interval,
            shutdown_deadline: d.pipeline.shutdown_deadline,
            breaker_threshold: d.pipeline.breaker_threshold,
            breaker_cooldown: d.pipeline.breaker_cooldown,
            dry_run: d.pipeline.dry_run,
            lifecycle_hooks: d.pipeline.lifecycle_hooks.clone(),
            storm_brake_after: d.pipeline.storm_brake_after,
            unreachable_region_attempts: d.pipeline.unreachable_region_attempts,
        },
        protect: ProtectConfig {
            node_names: vec!["bastion-*".into()],
            roles: vec!["chef-server".into()],
            environments: vec!["ops".into()],
            policy_groups: vec!["ops".into()],
            instance_tag: Some("nodereaper:protect".into()),
            node_tag: Some("nodereaper:protect".into()),
            client_names: vec!["*-validator".into()],
            client_groups: Vec::new(),
        },
        journal: JournalConfig {
            dir: d.journal.dir.clone(),
            s3_bucket: Some("acme-nodereaper-journal".into()),
            s3_prefix: d.journal.s3_prefix.clone(),
            s3_kms_key_id: Some("alias/nodereaper-journal".into()),
            retention: d.journal.retention,
            require_acl_backup: true,
        },
        sweep: SweepConfig {
            interval: Some(Duration::from_secs(6 * 3600)),
            apply_in_daemon: d.sweep.apply_in_daemon,
            grace_period: d.sweep.grace_period,
            max_candidates: d.sweep.max_candidates,
            max_candidate_share: d.sweep.max_candidate_share,
            max_deletions_per_day: d.sweep.max_deletions_per_day,
            regions: vec!["us-east-1".into()],
            instance_id_attribute: d.sweep.instance_id_attribute.clone(),
            region_attribute: d.sweep.region_attribute.clone(),
        },
        http: HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9797))),
        },
        log: LogConfig {
            format: d.log.format,
            level: d.log.level.clone(),
        },
        vault: nodereaper::config::VaultConfig {
            enabled: true,
            data_bags: vec!["secrets".into()],
        },
        webhook: nodereaper::config::WebhookConfig {
            url: Some("https://hooks.example.com/nodereaper".into()),
            secret_file: Some(PathBuf::from("/etc/nodereaper/webhook-secret")),
            secret_id: Some("nodereaper/webhook".into()),
            timeout: d.webhook.timeout,
            attempts: d.webhook.attempts,
            backoff: d.webhook.backoff,
            allow_plain_http: d.webhook.allow_plain_http,
            template: Some(r#"{"text": "{{node_name}}"}"#.into()),
            template_file: Some(PathBuf::from("/etc/nodereaper/webhook-template.json")),
        },
        automate: nodereaper::config::AutomateConfig {
            url: Some("https://automate.example.com".into()),
            token_file: Some(PathBuf::from("/etc/nodereaper/automate-token")),
            token_id: Some("nodereaper/automate".into()),
            organization: Some("acme".into()),
            service_hostname: Some("chef.example.com".into()),
            timeout: d.automate.timeout,
            attempts: d.automate.attempts,
            backoff: d.automate.backoff,
            allow_plain_http: d.automate.allow_plain_http,
        },
    }
}

/// Key paths written in the example, active or commented out.
fn documented_keys() -> BTreeSet<String> {
    let text = documented_text(&example_text());
    if let Err(e) = Config::parse(&text, &example_path()) {
        panic!(
            "the example with its `# key = value` lines uncommented does not parse \
             (a typo, a wrong type, or a key both active and commented out): {e}"
        )
    }
    key_paths(&text)
}

#[test]
fn example_parses_and_validates() {
    let path = example_path();
    let config = Config::parse(&example_text(), &path).unwrap_or_else(|e| panic!("{e}"));
    config.validate(&path).unwrap_or_else(|e| panic!("{e}"));

    // Production-realistic and safe values.
    let server = config
        .chef
        .server_url
        .as_deref()
        .expect("chef.server_url set");
    assert!(
        server.starts_with("https://") && server.contains("/organizations/"),
        "chef.server_url should be an https URL with /organizations/ORG, got {server:?}"
    );
    assert_eq!(config.queues.len(), 1, "one [[queues]] table");
    assert!(
        config.queues[0].url.starts_with("https://sqs."),
        "{:?}",
        config.queues[0].url
    );
    assert!(config.pipeline.verify_instance_state);
    assert!(!config.pipeline.dry_run);
    assert!(!config.chef.insecure_skip_tls_verify);
    assert!(!config.chef.allow_insecure_key_permissions);
    assert!(config.pipeline.max_deletions_per_minute > 0);
    assert!(!config.sweep.apply_in_daemon);
}

#[test]
fn example_documents_exactly_the_config_keys() {
    let in_example = documented_keys();
    let in_code = keys_of(&fully_populated());
    let missing: Vec<_> = in_code.difference(&in_example).collect();
    let unknown: Vec<_> = in_example.difference(&in_code).collect();
    assert!(
        missing.is_empty(),
        "keys of the Config struct missing from examples/nodereaper.toml \
         (add them, active or as `# key = value`): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys in examples/nodereaper.toml that the Config struct does not have: {unknown:?}"
    );

    // The brief's minimum, stated directly: every key `Config::default()`
    // serialises is in the example.
    let defaults = keys_of(&Config::default());
    let missing: Vec<_> = defaults.difference(&in_example).collect();
    assert!(missing.is_empty(), "default keys missing: {missing:?}");
}

#[test]
fn example_header_lists_every_env_override() {
    let text = example_text();
    for (var, key) in ENV_OVERRIDES {
        assert!(
            text.contains(var),
            "examples/nodereaper.toml does not mention {var} (overrides {key})"
        );
    }
}
