//! Which Chef target a registration is restored to: the one it was deleted
//! from (the journal entry's target, else the configured target with the
//! entry's server URL), or `restore --to TARGET` on purpose. Never a guess.

use crate::config::Config;

use super::Registration;

/// Where one registration goes back to.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// The target's name.
    pub name: String,
    /// The configuration as that target sees it ([`Config::for_target`]).
    pub config: Config,
}

/// Why a registration has no target to go back to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {reason}")]
pub struct NoRestoreTarget {
    /// The node.
    pub node: String,
    /// Why.
    pub reason: String,
}

/// The target `reg` is restored to, `to` overriding the recorded one.
pub fn restore_target(
    config: &Config,
    reg: &Registration,
    to: Option<&str>,
) -> Result<RestoreTarget, NoRestoreTarget> {
    let refuse = |reason: String| NoRestoreTarget {
        node: reg.node_name.clone(),
        reason,
    };
    let names = config.target_names();
    let name = match (to, &reg.target) {
        (Some(to), _) => to.to_string(),
        (None, Some(recorded)) => recorded.clone(),
        (None, None) if !config.has_targets() => crate::config::DEFAULT_TARGET.to_string(),
        (None, None) => {
            let same =
                |url: &str| url.trim_end_matches('/') == reg.chef_server.trim_end_matches('/');
            let matching: Vec<&str> = config
                .chef
                .targets
                .iter()
                .filter(|t| same(&t.server_url))
                .map(|t| t.name.as_str())
                .collect();
            match matching.as_slice() {
                [one] => one.to_string(),
                _ => {
                    return Err(refuse(format!(
                        "the journal records server {} and no target; {} configured target(s) have that URL: restore --to TARGET (one of {names:?})",
                        reg.chef_server,
                        matching.len()
                    )))
                }
            }
        }
    };
    let cfg = config.for_target(&name).ok_or_else(|| {
        refuse(format!(
            "target {name:?} is not configured (targets: {names:?}); restore --to TARGET on purpose"
        ))
    })?;
    Ok(RestoreTarget { name, config: cfg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetConfig;

    fn reg(target: Option<&str>, server: &str) -> Registration {
        let mut e = crate::core::journal::JournalEntry::new(
            "event", "t", None, None, "web-1", None, server, None, None,
        );
        e.target = target.map(str::to_owned);
        Registration::merge(vec![e]).expect("registration")
    }

    fn two() -> Config {
        let mut cfg = Config::default();
        for (name, url) in [
            ("a", "https://a.example/organizations/x"),
            ("b", "https://b.example/organizations/x"),
        ] {
            cfg.chef.targets.push(TargetConfig {
                name: name.into(),
                server_url: url.into(),
                ..Default::default()
            });
        }
        cfg
    }

    fn name(r: Result<RestoreTarget, NoRestoreTarget>) -> String {
        r.expect("target").name
    }

    #[test]
    fn back_to_the_recorded_target_or_the_url_or_on_purpose() {
        let cfg = two();
        assert_eq!(
            name(restore_target(
                &cfg,
                &reg(Some("b"), "https://a.example/organizations/x"),
                None
            )),
            "b"
        );
        assert_eq!(
            name(restore_target(
                &cfg,
                &reg(None, "https://b.example/organizations/x/"),
                None
            )),
            "b"
        );
        assert_eq!(
            name(restore_target(
                &cfg,
                &reg(Some("b"), "https://b.example"),
                Some("a")
            )),
            "a"
        );
        let single = Config::default();
        assert_eq!(
            name(restore_target(&single, &reg(None, "http://chef"), None)),
            "default"
        );
    }

    /// Same-named nodes deleted from two targets (each entry written
    /// through the target's journal) stay two registrations.
    #[tokio::test]
    async fn twins_of_two_targets_are_never_merged() {
        use crate::act::TargetJournal;
        use crate::ports::Journal;
        let world = crate::testing::FakeWorld::new(crate::testing::World::default());
        let inner: std::sync::Arc<dyn Journal> = world.journal();
        for (target, server) in [("a", "https://a.example"), ("b", "https://b.example")] {
            let entry = crate::core::journal::JournalEntry::new(
                "event",
                "t",
                None,
                Some("i-0123456789abcdef0".into()),
                "web-1",
                None,
                server,
                Some(serde_json::json!({"name": "web-1"})),
                None,
            );
            let journal = TargetJournal {
                inner: inner.clone(),
                target: target.into(),
            };
            journal.record(&entry).await.expect("record");
        }
        let regs = super::super::select(inner.as_ref(), &Default::default())
            .await
            .expect("select");
        let mut got: Vec<(Option<String>, String)> = regs
            .iter()
            .map(|r| (r.target.clone(), r.chef_server.clone()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (Some("a".into()), "https://a.example".into()),
                (Some("b".into()), "https://b.example".into())
            ]
        );
    }

    #[test]
    fn no_target_is_guessed() {
        let cfg = two();
        let e = restore_target(&cfg, &reg(None, "https://c.example"), None).unwrap_err();
        assert!(e.reason.contains("restore --to TARGET"), "{e}");
        let e = restore_target(
            &cfg,
            &reg(Some("gone"), "https://a.example/organizations/x"),
            None,
        )
        .unwrap_err();
        assert!(e.reason.contains("\"gone\" is not configured"), "{e}");
        // A journal of several targets restored with a single [chef]: not to it by default.
        let e = restore_target(
            &Config::default(),
            &reg(Some("b"), "https://b.example"),
            None,
        )
        .unwrap_err();
        assert!(e.reason.contains("\"b\" is not configured"), "{e}");
    }
}
