//! A second goiardi server for the tests of several Chef targets: the goiardi
//! of another stack dir (its moto is stopped: only goiardi is used). goiardi
//! has no organizations (`/organizations/X` is not routed), so two servers
//! stand in for two orgs: routing only ever picks a server URL.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use nodereaper::adapters::chef::auth::{SignVersion, SigningKey};
use nodereaper::adapters::chef::{ChefClient, ChefSettings};

use super::repo_root;

/// A second server: its URL and admin key.
pub struct SecondServer {
    pub url: String,
    pub admin_key: PathBuf,
}

impl SecondServer {
    /// Starts (or finds running) the goiardi of `target/stack-NAME`.
    pub fn start(name: &str) -> Self {
        let dir = repo_root().join(format!("target/stack-{name}"));
        let run = |cmd: &str| {
            let out = Command::new(repo_root().join("scripts/stack.sh"))
                .arg(cmd)
                .env("NODEREAPER_STACK_DIR", &dir)
                .output()
                .expect("run scripts/stack.sh");
            assert!(
                out.status.success(),
                "stack.sh {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let env_file = run("up");
        let env_file = PathBuf::from(env_file.lines().last().unwrap_or_default().trim());
        let text = std::fs::read_to_string(&env_file).expect("second stack env");
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let server = Self {
            url: vars["NODEREAPER_CHEF_URL"].to_string(),
            admin_key: PathBuf::from(vars["NODEREAPER_CHEF_ADMIN_KEY"]),
        };
        run("stop-moto");
        server
    }

    /// Its admin client.
    pub fn admin(&self) -> ChefClient {
        ChefClient::new(ChefSettings {
            server_url: url::Url::parse(&self.url).expect("url"),
            client_name: "admin".into(),
            key: SigningKey::from_pem(&std::fs::read_to_string(&self.admin_key).expect("key"))
                .expect("key"),
            sign_version: SignVersion::V1_3,
            timeout: std::time::Duration::from_secs(10),
            ca_bundle: None,
            insecure_skip_tls_verify: false,
            page_size: 1000,
        })
        .expect("second server's client")
    }
}
