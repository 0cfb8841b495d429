//! Several Chef organizations and servers in one deployment.
//!
//! `[[chef.targets]]` lists them: each has a `name`, its own `server_url`
//! (the org URL) and identity, and may add protect rules. Every other
//! `[chef]` key (timeout, CA bundle, search query, client name template, and
//! the identity keys a target leaves unset) is shared from `[chef]`. Without
//! `[[chef.targets]]`, the `[chef]` section alone is the one target, named
//! [`DEFAULT_TARGET`].
//!
//! `[[routes]]` (and `[[queues]] target`, and the lifecycle hook's
//! notification metadata) say which target an event belongs to; the rules
//! themselves live in [`crate::core::routing`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, SignVersion};
use crate::core::routing::{AccountRoute, RoutingTable};

/// The name of the one target a single `[chef]` section configures.
pub const DEFAULT_TARGET: &str = "default";

/// Longest target name (it labels logs, metrics and journal entries).
pub const MAX_TARGET_NAME_LEN: usize = 32;

/// One `[[chef.targets]]` entry: a Chef server (org) and who nodereaper is
/// on it. Unset identity keys are taken from `[chef]`; a target that sets any
/// key source (`client_key`, `client_key_pem`, `client_key_secret`,
/// `client_key_parameter`) uses only its own.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Lowercase `[a-z0-9_-]`, 1 to 32 characters, unique.
    pub name: String,
    /// `https://chef.example/organizations/ORG` (required: never shared).
    pub server_url: String,
    /// The Chef API client nodereaper signs as on this target.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Path of the client's private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The key inline.
    #[serde(default)]
    pub client_key_pem: Option<String>,
    /// The key from AWS Secrets Manager (secret id or ARN).
    #[serde(default)]
    pub client_key_secret: Option<String>,
    /// The key from an SSM Parameter Store SecureString parameter.
    #[serde(default)]
    pub client_key_parameter: Option<String>,
    /// A `~/.chef/credentials` profile for this target.
    #[serde(default)]
    pub profile: Option<String>,
    /// The credentials file holding `profile`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Request signing protocol; default: `chef.sign_version`.
    #[serde(default)]
    pub sign_version: Option<SignVersion>,
    /// Protect rules added to `[protect]` for this target (never removed).
    #[serde(default)]
    pub protect: TargetProtect,
    /// Sweep caps of this target instead of `[sweep]`'s.
    #[serde(default)]
    pub sweep: TargetSweep,
}

/// The blast-radius caps one target's sweeps use instead of `[sweep]`'s
/// (`sweep.max_deletions_per_day` stays one cap over every target).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetSweep {
    /// Instead of `sweep.max_candidates`.
    pub max_candidates: Option<usize>,
    /// Instead of `sweep.max_candidate_share`.
    pub max_candidate_share: Option<f64>,
}

/// Protect rules one target adds to `[protect]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetProtect {
    /// Node name globs added to `protect.node_names`.
    pub node_names: Vec<String>,
    /// Roles added to `protect.roles`.
    pub roles: Vec<String>,
    /// Environments added to `protect.environments`.
    pub environments: Vec<String>,
    /// Policy groups added to `protect.policy_groups`.
    pub policy_groups: Vec<String>,
    /// Client name globs added to `protect.client_names`.
    pub client_names: Vec<String>,
    /// Groups added to `protect.client_groups`.
    pub client_groups: Vec<String>,
}

/// One `[[routes]]` entry: events of this account (and region, if given)
/// belong to `target`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The 12-digit AWS account id.
    pub account: String,
    /// The region; unset: every region of the account.
    #[serde(default)]
    pub region: Option<String>,
    /// The target's name.
    pub target: String,
}

/// The default `[routing] group_tag`.
pub const DEFAULT_GROUP_TAG: &str = "nodereaper:target";

/// `[routing]`: the rules that need AWS or Chef to be asked. Used only with
/// several targets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The Auto Scaling group tag key whose value names the target (rule 3,
    /// read with DescribeTags); `""` turns the rule off.
    pub group_tag: String,
    /// Rule 5 (opt-in): when no rule routes, look the instance up on every
    /// target; registered on exactly one: that one; on several: refused.
    pub search_all_targets: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            group_tag: DEFAULT_GROUP_TAG.into(),
            search_all_targets: false,
        }
    }
}

/// Whether `name` is a valid target name.
pub fn valid_target_name(name: &str) -> bool {
    (1..=MAX_TARGET_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Config {
    /// Whether `[[chef.targets]]` lists several targets (else `[chef]` is
    /// the one target, [`DEFAULT_TARGET`]).
    pub fn has_targets(&self) -> bool {
        !self.chef.targets.is_empty()
    }

    /// The target names, in configuration order.
    pub fn target_names(&self) -> Vec<String> {
        if self.has_targets() {
            self.chef.targets.iter().map(|t| t.name.clone()).collect()
        } else {
            vec![DEFAULT_TARGET.to_string()]
        }
    }

    /// The whole configuration as target `name` sees it: `[chef]` with the
    /// target's URL and identity, `[protect]` with its additions, `[sweep]`
    /// with its caps, and no `[[chef.targets]]`. `None`: no such target.
    pub fn for_target(&self, name: &str) -> Option<Config> {
        if !self.has_targets() {
            return (name == DEFAULT_TARGET).then(|| self.clone());
        }
        let t = self.chef.targets.iter().find(|t| t.name == name)?;
        let mut cfg = self.clone();
        cfg.chef.targets.clear();
        let c = &mut cfg.chef;
        c.server_url = Some(t.server_url.clone());
        if t.client_name.is_some() {
            c.client_name = t.client_name.clone();
        }
        let own_key = t.client_key.is_some()
            || t.client_key_pem.is_some()
            || t.client_key_secret.is_some()
            || t.client_key_parameter.is_some();
        if own_key {
            c.client_key = t.client_key.clone();
            c.client_key_pem = t.client_key_pem.clone();
            c.client_key_secret = t.client_key_secret.clone();
            c.client_key_parameter = t.client_key_parameter.clone();
        }
        if t.profile.is_some() {
            c.profile = t.profile.clone();
        }
        if t.credentials_file.is_some() {
            c.credentials_file = t.credentials_file.clone();
        }
        if let Some(v) = t.sign_version {
            c.sign_version = v;
        }
        let p = &mut cfg.protect;
        let add = &t.protect;
        p.node_names.extend(add.node_names.iter().cloned());
        p.roles.extend(add.roles.iter().cloned());
        p.environments.extend(add.environments.iter().cloned());
        p.policy_groups.extend(add.policy_groups.iter().cloned());
        p.client_names.extend(add.client_names.iter().cloned());
        p.client_groups.extend(add.client_groups.iter().cloned());
        if let Some(n) = t.sweep.max_candidates {
            cfg.sweep.max_candidates = n;
        }
        if let Some(share) = t.sweep.max_candidate_share {
            cfg.sweep.max_candidate_share = share;
        }
        Some(cfg)
    }

    /// The configuration of the first target: what commands that serve one
    /// target (sweep, deregister, doctor's single checks) use.
    pub fn primary_target(&self) -> Config {
        match self.chef.targets.first() {
            Some(t) => self.for_target(&t.name).unwrap_or_else(|| self.clone()),
            None => self.clone(),
        }
    }

    /// The routing rules, for [`crate::core::routing::route`].
    pub fn routing_table(&self) -> RoutingTable {
        RoutingTable {
            targets: self.target_names(),
            accounts: self
                .routes
                .iter()
                .map(|r| AccountRoute {
                    account: r.account.clone(),
                    region: r.region.clone(),
                    target: r.target.clone(),
                })
                .collect(),
            group_tag: self.group_tag_key().map(str::to_owned),
            search_all_targets: self.has_targets() && self.routing.search_all_targets,
        }
    }

    /// `NODEREAPER_CHEF_TARGETS` and `NODEREAPER_ROUTES`: JSON arrays of the
    /// objects `[[chef.targets]]` and `[[routes]]` hold (same keys), which
    /// replace the file's lists (Lambda and CloudFormation pass them so).
    pub(super) fn apply_env_targets(
        &mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        fn list<T: serde::de::DeserializeOwned>(
            name: &str,
            value: &str,
            what: &str,
        ) -> Result<Vec<T>, ConfigError> {
            serde_json::from_str(value).map_err(|e| ConfigError::Invalid {
                file: std::path::PathBuf::from("(environment)"),
                key: name.into(),
                expected: format!("a JSON array of {what} objects: {e}"),
            })
        }
        let non_empty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("NODEREAPER_CHEF_TARGETS") {
            self.chef.targets = list("NODEREAPER_CHEF_TARGETS", &v, "[[chef.targets]]")?;
        }
        if let Some(v) = non_empty("NODEREAPER_ROUTES") {
            self.routes = list("NODEREAPER_ROUTES", &v, "[[routes]]")?;
        }
        Ok(())
    }

    /// The group tag key of rule 3, when several targets are configured and
    /// the rule is not turned off: then DescribeTags is called (and needs
    /// `autoscaling:DescribeTags`).
    pub fn group_tag_key(&self) -> Option<&str> {
        let key = self.routing.group_tag.as_str();
        (self.has_targets() && !key.is_empty()).then_some(key)
    }

    /// Each `[[chef.targets]]` entry: a valid, unique name, and its own view
    /// of the configuration passing every `[chef]` rule.
    fn validate_target_entries(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, expected: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            expected,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (i, t) in self.chef.targets.iter().enumerate() {
            if !valid_target_name(&t.name) {
                return Err(invalid(
                    format!("chef.targets[{i}].name"),
                    format!(
                        "1 to {MAX_TARGET_NAME_LEN} characters of a-z, 0-9, _ and -, got {:?}",
                        t.name
                    ),
                ));
            }
            if seen.contains(&t.name.as_str()) {
                return Err(invalid(
                    format!("chef.targets[{i}].name"),
                    format!("a unique name: duplicate {:?}", t.name),
                ));
            }
            seen.push(&t.name);
            // Each target's own view must pass every [chef] rule.
            if let Some(cfg) = self.for_target(&t.name) {
                cfg.validate_chef(file)
                    .map_err(|e| retarget(e, &format!("chef.targets[{i}]")))?;
            }
            if let Some(share) = t
                .sweep
                .max_candidate_share
                .filter(|s| !(0.0..=1.0).contains(s))
            {
                return Err(invalid(
                    format!("chef.targets[{i}].sweep.max_candidate_share"),
                    format!("a share from 0.0 to 1.0, got {share}"),
                ));
            }
        }
        Ok(())
    }

    /// `[[chef.targets]]`, `[[routes]]` and `queues[].target`.
    pub(super) fn validate_targets(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, expected: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            expected,
        };
        if self.has_targets() && self.chef.server_url.is_some() {
            return Err(invalid(
                "chef.server_url".into(),
                "unset when [[chef.targets]] is given (each target has its own server_url)".into(),
            ));
        }
        self.validate_target_entries(file)?;
        let names = self.target_names();
        let known = |n: &str| names.iter().any(|t| t == n);
        for (i, q) in self.queues.iter().enumerate() {
            if let Some(t) = q.target.as_deref().filter(|t| !known(t)) {
                return Err(invalid(
                    format!("queues[{i}].target"),
                    format!("one of the targets {names:?}, got {t:?}"),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !crate::core::event::is_account_id(&r.account) {
                return Err(invalid(
                    format!("routes[{i}].account"),
                    format!("a 12-digit AWS account id, got {:?}", r.account),
                ));
            }
            if r.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(invalid(
                    format!("routes[{i}].region"),
                    "a region name, or the key left out".into(),
                ));
            }
            if !known(&r.target) {
                return Err(invalid(
                    format!("routes[{i}].target"),
                    format!("one of the targets {names:?}, got {:?}", r.target),
                ));
            }
        }
        let tag = &self.routing.group_tag;
        if tag.len() > 128 || tag.trim() != tag {
            return Err(invalid(
                "routing.group_tag".into(),
                format!("an Auto Scaling tag key (at most 128 characters, no surrounding blanks; \"\" turns the rule off), got {tag:?}"),
            ));
        }
        Ok(())
    }
}

/// A `[chef]` error found in a target's view, renamed to the target's key.
fn retarget(e: ConfigError, prefix: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            file,
            key,
            expected,
        } => ConfigError::Invalid {
            file,
            key: key.replacen("chef", prefix, 1),
            expected,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[chef]
client_name = "nodereaper"
client_key = "/etc/nodereaper/shared.pem"
allow_plain_http = true

[[chef.targets]]
name = "prod"
server_url = "https://chef-a.example/organizations/prod"
[chef.targets.protect]
roles = ["database"]

[[chef.targets]]
name = "staging"
server_url = "https://chef-b.example/organizations/staging"
client_name = "reaper-staging"
client_key_secret = "nodereaper/staging"
sign_version = "1.1"

[[queues]]
url = "https://sqs.us-east-1.amazonaws.com/123456789012/prod"
target = "prod"

[[routes]]
account = "210987654321"
target = "staging"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let path = Path::new("t.toml");
        let cfg = Config::parse(text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("invalid").to_string()
    }

    #[test]
    fn each_target_sees_its_own_url_identity_and_added_protection() {
        let cfg = parse(TWO).expect("valid");
        assert_eq!(cfg.target_names(), ["prod", "staging"]);
        let prod = cfg.for_target("prod").expect("prod");
        assert_eq!(
            prod.chef.server_url.as_deref(),
            Some("https://chef-a.example/organizations/prod")
        );
        assert_eq!(
            prod.chef.client_key,
            Some(PathBuf::from("/etc/nodereaper/shared.pem"))
        );
        assert_eq!(prod.protect.roles, ["database"]);
        assert!(prod.chef.targets.is_empty());
        let staging = cfg.for_target("staging").expect("staging");
        assert_eq!(staging.chef.client_name.as_deref(), Some("reaper-staging"));
        // Its own key source replaces the shared one entirely.
        assert_eq!(staging.chef.client_key, None);
        assert_eq!(
            staging.chef.client_key_secret.as_deref(),
            Some("nodereaper/staging")
        );
        assert_eq!(staging.chef.sign_version, SignVersion::V1_1);
        assert!(staging.protect.roles.is_empty());
        assert!(cfg.for_target("default").is_none());
        assert_eq!(cfg.primary_target().chef.server_url, prod.chef.server_url);
    }

    #[test]
    fn a_target_sweeps_within_its_own_caps_or_the_shared_ones() {
        let text = TWO.replace(
            "[chef.targets.protect]",
            "[chef.targets.sweep]\nmax_candidates = 3\nmax_candidate_share = 0.5\n[chef.targets.protect]",
        );
        let cfg = parse(&format!("{text}\n[sweep]\nmax_candidates = 40\n")).expect("valid");
        let prod = cfg.for_target("prod").expect("prod");
        assert_eq!(prod.sweep.max_candidates, 3);
        assert_eq!(prod.sweep.max_candidate_share, 0.5);
        let staging = cfg.for_target("staging").expect("staging");
        assert_eq!(staging.sweep.max_candidates, 40, "[sweep]'s cap");
        assert_eq!(staging.sweep.max_candidate_share, 0.2, "the default share");
        let e = error(&text.replace("0.5", "1.5"));
        assert!(
            e.contains("chef.targets[0].sweep.max_candidate_share") && e.contains("1.5"),
            "{e}"
        );
    }

    #[test]
    fn targets_and_routes_from_the_environment_or_a_named_refusal() {
        let env = |targets: &'static str| {
            move |k: &str| match k {
                "NODEREAPER_CHEF_TARGETS" => Some(targets.to_string()),
                "NODEREAPER_ROUTES" => {
                    Some(r#"[{"account": "210987654321", "target": "b"}]"#.to_string())
                }
                _ => None,
            }
        };
        let mut cfg = Config::default();
        cfg.apply_env(env(
            r#"[{"name": "a", "server_url": "https://c/organizations/a"},
                {"name": "b", "server_url": "https://c/organizations/b", "sweep": {"max_candidates": 3}}]"#,
        ))
        .expect("targets");
        assert_eq!(cfg.target_names(), ["a", "b"]);
        assert_eq!(cfg.routes[0].target, "b");
        assert_eq!(cfg.for_target("b").expect("b").sweep.max_candidates, 3);
        for bad in [r#"{"name": "a"}"#, r#"[{"name": "a", "url": "x"}]"#, "[{"] {
            let e = Config::default()
                .apply_env(env(bad))
                .expect_err("refused")
                .to_string();
            assert!(
                e.contains("NODEREAPER_CHEF_TARGETS") && e.contains("JSON array"),
                "{e}"
            );
        }
    }

    #[test]
    fn single_chef_section_is_the_default_target() {
        let cfg = parse("[chef]\nserver_url = \"https://chef.example/organizations/acme\"\n")
            .expect("valid");
        assert_eq!(cfg.target_names(), [DEFAULT_TARGET]);
        assert!(cfg.for_target(DEFAULT_TARGET).is_some());
        assert!(cfg.for_target("prod").is_none());
    }

    #[test]
    fn bad_target_names_are_refused_naming_the_field() {
        let dup = TWO.replace("name = \"staging\"", "name = \"prod\"");
        let e = error(&dup);
        assert!(
            e.contains("chef.targets[1].name") && e.contains("duplicate \"prod\""),
            "{e}"
        );
        let e = error(&TWO.replace("name = \"staging\"", "name = \"Staging\""));
        assert!(e.contains("chef.targets[1].name"), "{e}");
        let long = format!("name = \"{}\"", "a".repeat(MAX_TARGET_NAME_LEN + 1));
        assert!(error(&TWO.replace("name = \"staging\"", &long)).contains("chef.targets[1].name"));
    }

    #[test]
    fn routes_and_queues_must_name_configured_targets() {
        let e = error(&TWO.replace("target = \"prod\"", "target = \"prd\""));
        assert!(
            e.contains("queues[0].target") && e.contains("\"prd\""),
            "{e}"
        );
        let e = error(&TWO.replace("target = \"staging\"", "target = \"stg\""));
        assert!(e.contains("routes[0].target"), "{e}");
        let e = error(&TWO.replace("account = \"210987654321\"", "account = \"21\""));
        assert!(e.contains("routes[0].account"), "{e}");
    }

    #[test]
    fn a_target_is_checked_like_chef() {
        let e = error(&TWO.replace("https://chef-b.example", "ftp://chef-b.example"));
        assert!(e.contains("chef.targets[1].server_url"), "{e}");
        let e = error(&TWO.replace(
            "client_key_secret = \"nodereaper/staging\"",
            "client_key_secret = \"nodereaper/staging\"\nclient_key_parameter = \"/p\"",
        ));
        assert!(e.contains("chef.targets[1]."), "{e}");
        let e = error(&TWO.replace("[chef]\n", "[chef]\nserver_url = \"https://x.example\"\n"));
        assert!(e.contains("`chef.server_url`"), "{e}");
    }
}
