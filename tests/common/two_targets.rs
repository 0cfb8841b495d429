//! Two Chef targets for the tests of routing: "a" (the shared stack's
//! goiardi) and "b" (a second stack's), each holding a same-named twin of
//! every registration, so a termination routed to the wrong server would
//! visibly delete the wrong twin.

use std::path::Path;
use std::sync::OnceLock;

use nodereaper::adapters::chef::ChefClient;
use nodereaper::config::{Config, QueueConfig, TargetConfig};
use nodereaper::ports::ChefApi;

use super::*;

/// The second goiardi.
pub fn server_b() -> &'static second_server::SecondServer {
    static B: OnceLock<second_server::SecondServer> = OnceLock::new();
    B.get_or_init(|| second_server::SecondServer::start("targets-b"))
}

pub fn admin_b() -> ChefClient {
    server_b().admin()
}

/// Targets "a" (the shared stack's goiardi) and "b"; `queues` as (URL,
/// target).
pub fn config(queues: &[(&str, Option<&str>)], journal: &Path) -> Config {
    stack();
    let b = server_b();
    let mut cfg = daemon_config(&[], journal);
    let a_url = cfg.chef.server_url.take().expect("a url");
    cfg.chef.client_key = None;
    cfg.chef.targets = vec![
        TargetConfig {
            name: "a".into(),
            server_url: a_url,
            client_key: Some(stack().admin_key()),
            ..Default::default()
        },
        TargetConfig {
            name: "b".into(),
            server_url: b.url.clone(),
            client_key: Some(b.admin_key.clone()),
            ..Default::default()
        },
    ];
    cfg.queues = queues
        .iter()
        .map(|(url, target)| QueueConfig {
            url: url.to_string(),
            region: None,
            dlq_url: None,
            target: target.map(str::to_owned),
        })
        .collect();
    cfg.validate(Path::new("targets-test"))
        .expect("valid config");
    cfg
}

/// A node and client named `name` recording `instance` on both servers.
pub async fn twins(name: &str, instance: &str) {
    register(&admin(), name, Some(instance)).await;
    register(&admin_b(), name, Some(instance)).await;
}

pub async fn registered(chef: &ChefClient, name: &str) -> bool {
    chef.get_node(name).await.expect("node").is_some()
        && chef.get_client(name).await.expect("client").is_some()
}
