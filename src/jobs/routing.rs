//! `doctor`'s view of several Chef targets: the routing table, and every
//! target's own Chef checks (each prefixed with the target's name).

use crate::config::Config;

use super::doctor::Check;

/// The routing rules in the order they apply, one per line.
pub fn routing_table(cfg: &Config) -> String {
    let mut lines = Vec::new();
    for name in cfg.target_names() {
        let url = cfg
            .for_target(&name)
            .and_then(|c| c.chef.server_url)
            .unwrap_or_else(|| "(from the credentials profile)".into());
        lines.push(format!("target {name}: {url}"));
    }
    for q in &cfg.queues {
        if let Some(t) = &q.target {
            lines.push(format!("1. queue {} -> {t}", q.url));
        }
    }
    lines.push("2. hook NotificationMetadata \"nodereaper:target=NAME\" (or JSON {\"nodereaper_target\": NAME}) -> NAME".into());
    if let Some(key) = cfg.group_tag_key() {
        lines.push(format!(
            "3. Auto Scaling group tag {key}=NAME -> NAME (DescribeTags in the group's account and region, cached {} s)",
            crate::act::targets::GROUP_TAG_TTL.as_secs()
        ));
    }
    for r in &cfg.routes {
        lines.push(format!(
            "4. account {} region {} -> {}",
            r.account,
            r.region.as_deref().unwrap_or("(any)"),
            r.target
        ));
    }
    if cfg.has_targets() && cfg.routing.search_all_targets {
        lines.push("5. otherwise, search every target: registered on exactly one -> that one; on several -> the DLQ (refused); on none -> not registered".into());
    }
    lines.push(match cfg.target_names().as_slice() {
        [only] => format!("otherwise -> {only}"),
        _ => "otherwise (or when rules disagree) -> the DLQ with the reason".into(),
    });
    lines.join("\n  ")
}

/// The routing table as a (passing) check, for `doctor`.
pub fn routing_check(cfg: &Config) -> Check {
    Check::pass("routing", format!("\n  {}", routing_table(cfg)))
}

/// Names every check from `from` on as target `name`'s.
pub fn label_target_checks(checks: &mut [Check], from: usize, name: &str) {
    for c in checks.iter_mut().skip(from) {
        c.name = format!("[{name}] {}", c.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{QueueConfig, RouteConfig, TargetConfig};

    #[test]
    fn table_lists_targets_and_rules_in_order() {
        let mut cfg = Config::default();
        for name in ["a", "b"] {
            cfg.chef.targets.push(TargetConfig {
                name: name.into(),
                server_url: format!("https://{name}.example/organizations/x"),
                ..Default::default()
            });
        }
        cfg.queues.push(QueueConfig {
            url: "https://sqs.example/q".into(),
            region: None,
            dlq_url: None,
            target: Some("a".into()),
        });
        cfg.routes.push(RouteConfig {
            account: "123456789012".into(),
            region: None,
            target: "b".into(),
        });
        let t = routing_table(&cfg);
        assert!(
            t.contains("target a: https://a.example/organizations/x"),
            "{t}"
        );
        assert!(t.contains("1. queue https://sqs.example/q -> a"), "{t}");
        assert!(
            t.contains("4. account 123456789012 region (any) -> b"),
            "{t}"
        );
        assert!(
            t.contains("3. Auto Scaling group tag nodereaper:target=NAME -> NAME"),
            "{t}"
        );
        assert!(!t.contains("5. otherwise, search every target"), "{t}");
        assert!(t.ends_with("the DLQ with the reason"), "{t}");
        cfg.routing.search_all_targets = true;
        cfg.routing.group_tag = String::new();
        let t = routing_table(&cfg);
        assert!(t.contains("5. otherwise, search every target"), "{t}");
        assert!(!t.contains("group tag"), "{t}");
    }
}
