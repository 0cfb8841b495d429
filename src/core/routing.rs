//! Which Chef target (server or organization) a termination belongs to.
//!
//! Every rule is explicit in the configuration; none guesses:
//!
//! 1. the queue: `[[queues]] target = "prod"`;
//! 2. the lifecycle hook's `NotificationMetadata`, when it carries
//!    nodereaper's marker: `nodereaper:target=prod` (one whitespace-, comma-
//!    or semicolon-separated token among any other text) or a JSON object
//!    with `"nodereaper_target": "prod"`;
//! 3. the Auto Scaling group's tag (`[routing] group_tag`, by default
//!    `nodereaper:target`): its value names the target (the tag is read by
//!    the caller; here only its value counts);
//! 4. the account and region: `[[routes]] account = "…" region = "…"
//!    target = "…"` (a route with a region wins over one without).
//!
//! Every rule that applies must name the same target: a queue that says
//! `prod` and a hook that says `staging` is refused, as is a marker or tag
//! naming a target that is not configured. An event no rule routes goes to
//! the only target when there is one; else [`decide`] says so (`None`) and
//! the caller may search every target (rule 5, `[routing]
//! search_all_targets`, in `act::targets`) or refuses.

use serde::Serialize;

/// The rules, from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoutingTable {
    /// Every configured target name.
    pub targets: Vec<String>,
    /// Account (and region) -> target.
    pub accounts: Vec<AccountRoute>,
    /// The Auto Scaling group tag key naming the target (rule 3); `None`:
    /// the rule is off. Asked only with several targets.
    pub group_tag: Option<String>,
    /// Rule 5: with several targets and no rule routing, search every
    /// target for the instance's registration.
    pub search_all_targets: bool,
}

/// One `[[routes]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRoute {
    /// The 12-digit account id.
    pub account: String,
    /// `None`: every region of the account.
    pub region: Option<String>,
    /// The target's name.
    pub target: String,
}

/// What is known about an event when it is routed.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// The queue the event came from (for the reason).
    pub queue: &'a str,
    /// That queue's `target`, if it names one.
    pub queue_target: Option<&'a str>,
    /// The lifecycle hook's `NotificationMetadata`, if any.
    pub metadata: Option<&'a str>,
    /// The instance's account, when known.
    pub account: Option<&'a str>,
    /// The instance's region.
    pub region: &'a str,
    /// The instance's Auto Scaling group, when the event names it.
    pub group: Option<&'a str>,
    /// The value of the group's [`RoutingTable::group_tag`], when read and
    /// present.
    pub group_target: Option<&'a str>,
}

/// Which rule chose the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The only configured target, and no rule named another.
    Only,
    /// `[[queues]] target`.
    Queue,
    /// The lifecycle hook's notification metadata.
    HookMetadata,
    /// The Auto Scaling group's tag.
    GroupTag,
    /// `[[routes]]` account (and region).
    Account,
    /// Found registered on exactly one target (`search_all_targets`).
    Search,
}

impl Rule {
    /// The rule's name in logs and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Only => "only target",
            Rule::Queue => "queue",
            Rule::HookMetadata => "hook metadata",
            Rule::GroupTag => "group tag",
            Rule::Account => "account route",
            Rule::Search => "search of every target",
        }
    }
}

/// The target an event goes to, and the rule that said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The target's name.
    pub target: String,
    /// The (first) rule that chose it.
    pub rule: Rule,
}

/// Why an event cannot be routed (it goes to the DLQ with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot route to a Chef target: {0}")]
pub struct Unroutable(pub String);

impl crate::core::error::Classify for Unroutable {
    /// The message is at fault, for good: the DLQ, with the reason.
    fn retry(&self) -> crate::core::error::Retry {
        crate::core::error::Retry::Permanent
    }
}

/// The marker `nodereaper setup --hook-target NAME` writes into a hook's
/// `NotificationMetadata`: what [`metadata_target`] reads back as `NAME`.
pub fn metadata_marker(target: &str) -> String {
    format!("nodereaper:target={target}")
}

/// The nodereaper marker in hook metadata: `Ok(None)` when there is none.
pub fn metadata_target(metadata: &str) -> Result<Option<String>, Unroutable> {
    let text = metadata.trim();
    if text.starts_with('{') {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) {
            return match map.get("nodereaper_target") {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(Unroutable(format!(
                    "hook metadata field \"nodereaper_target\": expected a string, got {other}"
                ))),
            };
        }
    }
    let mut found: Option<&str> = None;
    for token in text.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
        if let Some(name) = token.strip_prefix("nodereaper:target=") {
            match found {
                Some(prev) if prev != name => {
                    return Err(Unroutable(format!(
                        "hook metadata names two targets, {prev:?} and {name:?}"
                    )))
                }
                _ => found = Some(name),
            }
        }
    }
    Ok(found.map(str::to_owned))
}

/// The account route for `account` and `region`: one with that region wins
/// over an account-wide one; two that disagree refuse.
fn account_target(
    table: &RoutingTable,
    account: &str,
    region: &str,
) -> Result<Option<String>, Unroutable> {
    for regional in [true, false] {
        let mut names: Vec<&str> = table
            .accounts
            .iter()
            .filter(|r| r.account == account)
            .filter(|r| match &r.region {
                Some(rg) => regional && rg == region,
                None => !regional,
            })
            .map(|r| r.target.as_str())
            .collect();
        names.dedup();
        match names.as_slice() {
            [] => continue,
            [one] => return Ok(Some((*one).to_owned())),
            many => {
                return Err(Unroutable(format!(
                    "account routes for {account} in {region} name several targets: {}",
                    many.join(", ")
                )))
            }
        }
    }
    Ok(None)
}

/// Routes one event. See the module documentation for the rules. An event
/// no rule routes, with several targets, is refused ([`unrouted`]).
pub fn route(table: &RoutingTable, input: &RouteInput<'_>) -> Result<Route, Unroutable> {
    decide(table, input)?.ok_or_else(|| unrouted(table, input))
}

/// What the rules say: `Ok(None)` when none applies and several targets are
/// configured (the caller searches them or refuses with [`unrouted`]).
pub fn decide(table: &RoutingTable, input: &RouteInput<'_>) -> Result<Option<Route>, Unroutable> {
    let mut said: Vec<(Rule, String)> = Vec::new();
    if let Some(t) = input.queue_target {
        said.push((Rule::Queue, t.to_owned()));
    }
    if let Some(t) = input.metadata.map(metadata_target).transpose()?.flatten() {
        said.push((Rule::HookMetadata, t));
    }
    if let Some(t) = input.group_target {
        said.push((Rule::GroupTag, t.to_owned()));
    }
    if let Some(account) = input.account {
        if let Some(t) = account_target(table, account, input.region)? {
            said.push((Rule::Account, t));
        }
    }
    for (rule, name) in &said {
        if !table.targets.iter().any(|t| t == name) {
            return Err(Unroutable(format!(
                "the {} names target {name:?}, which is not configured (targets: {})",
                rule.as_str(),
                table.targets.join(", ")
            )));
        }
    }
    if let Some((first_rule, first)) = said.first() {
        if let Some((rule, other)) = said.iter().find(|(_, t)| t != first) {
            return Err(Unroutable(format!(
                "the {} says {first:?} but the {} says {other:?}",
                first_rule.as_str(),
                rule.as_str()
            )));
        }
        return Ok(Some(Route {
            target: first.clone(),
            rule: *first_rule,
        }));
    }
    Ok(match table.targets.as_slice() {
        [only] => Some(Route {
            target: only.clone(),
            rule: Rule::Only,
        }),
        _ => None,
    })
}

/// Why no rule routes `input`: every rule's input, and how to set one.
pub fn unrouted(table: &RoutingTable, input: &RouteInput<'_>) -> Unroutable {
    let group = match (input.group, &table.group_tag) {
        (Some(g), Some(key)) => format!("group {g} without tag {key}"),
        (Some(g), None) => format!("group {g}"),
        (None, _) => "no group".into(),
    };
    Unroutable(format!(
        "no rule routes it (queue {}, account {}, region {}, {group}, hook metadata {}): set [[queues]] target, a hook's NotificationMetadata \"nodereaper:target=NAME\", the group's tag or a [[routes]] entry",
        input.queue,
        input.account.unwrap_or("(own)"),
        input.region,
        if input.metadata.is_some() { "without a nodereaper:target marker" } else { "none" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RoutingTable {
        RoutingTable {
            targets: vec!["prod".into(), "staging".into()],
            accounts: vec![
                AccountRoute {
                    account: "111111111111".into(),
                    region: None,
                    target: "staging".into(),
                },
                AccountRoute {
                    account: "111111111111".into(),
                    region: Some("eu-west-1".into()),
                    target: "prod".into(),
                },
            ],
            ..Default::default()
        }
    }

    fn input<'a>(
        queue: &'a str,
        metadata: Option<&'a str>,
        account: Option<&'a str>,
    ) -> RouteInput<'a> {
        RouteInput {
            queue,
            queue_target: (queue == "https://q/prod").then_some("prod"),
            metadata,
            account,
            region: "us-east-1",
            group: None,
            group_target: None,
        }
    }

    fn target(r: Result<Route, Unroutable>) -> String {
        r.expect("routed").target
    }

    #[test]
    fn queue_rule_routes() {
        let r = route(&table(), &input("https://q/prod", None, None)).expect("routed");
        assert_eq!((r.target.as_str(), r.rule), ("prod", Rule::Queue));
    }

    #[test]
    fn metadata_marker_forms() {
        assert_eq!(
            metadata_target("nodereaper:target=prod").unwrap(),
            Some("prod".into())
        );
        assert_eq!(
            metadata_target("team=web; nodereaper:target=prod, x").unwrap(),
            Some("prod".into())
        );
        assert_eq!(
            metadata_target(r#"{"nodereaper_target":"staging","x":1}"#).unwrap(),
            Some("staging".into())
        );
        assert_eq!(
            metadata_target("free text from someone else").unwrap(),
            None
        );
        assert_eq!(metadata_target(r#"{"other":"x"}"#).unwrap(), None);
        assert!(metadata_target(r#"{"nodereaper_target":3}"#).is_err());
        assert!(metadata_target("nodereaper:target=a nodereaper:target=b").is_err());
    }

    #[test]
    fn metadata_routes_and_unknown_target_refuses() {
        let t = table();
        assert_eq!(
            target(route(
                &t,
                &input("https://q/other", Some("nodereaper:target=staging"), None)
            )),
            "staging"
        );
        let e = route(
            &t,
            &input("https://q/other", Some("nodereaper:target=prd"), None),
        )
        .unwrap_err();
        assert!(e.0.contains("\"prd\", which is not configured"), "{e}");
    }

    #[test]
    fn account_routes_regional_first() {
        let t = table();
        let mut i = input("https://q/other", None, Some("111111111111"));
        assert_eq!(target(route(&t, &i)), "staging");
        i.region = "eu-west-1";
        assert_eq!(target(route(&t, &i)), "prod");
    }

    #[test]
    fn disagreeing_rules_refuse() {
        let e = route(
            &table(),
            &input("https://q/prod", Some("nodereaper:target=staging"), None),
        )
        .unwrap_err();
        assert!(
            e.0.contains("queue says \"prod\" but the hook metadata says \"staging\""),
            "{e}"
        );
        // The happy twin: agreeing rules route.
        assert_eq!(
            target(route(
                &table(),
                &input("https://q/prod", Some("nodereaper:target=prod"), None)
            )),
            "prod"
        );
    }

    #[test]
    fn unrouted_event_refuses_with_several_targets_and_goes_to_the_only_one() {
        let e = route(
            &table(),
            &input("https://q/other", None, Some("222222222222")),
        )
        .unwrap_err();
        assert!(e.0.contains("no rule routes it"), "{e}");
        let single = RoutingTable {
            targets: vec!["default".into()],
            ..Default::default()
        };
        let r = route(&single, &input("https://q/other", None, None)).expect("routed");
        assert_eq!((r.target.as_str(), r.rule), ("default", Rule::Only));
    }

    #[test]
    fn group_tag_routes_must_agree_and_name_a_configured_target() {
        let t = table();
        let mut i = input("https://q/other", None, None);
        i.group = Some("web-asg");
        i.group_target = Some("staging");
        let r = route(&t, &i).expect("routed");
        assert_eq!((r.target.as_str(), r.rule), ("staging", Rule::GroupTag));
        i.group_target = Some("qa");
        let e = route(&t, &i).unwrap_err();
        assert!(e.0.contains("the group tag names target \"qa\""), "{e}");
        // The queue says prod, the tag says staging: both names in the reason.
        let mut i = input("https://q/prod", None, None);
        i.group_target = Some("staging");
        let e = route(&t, &i).unwrap_err();
        assert!(
            e.0.contains("queue says \"prod\" but the group tag says \"staging\""),
            "{e}"
        );
        // The happy twin: agreeing.
        i.group_target = Some("prod");
        assert_eq!(target(route(&t, &i)), "prod");
    }

    #[test]
    fn decide_leaves_an_unrouted_event_to_the_caller() {
        let i = input("https://q/other", None, Some("222222222222"));
        assert_eq!(decide(&table(), &i).expect("no refusal"), None);
        assert!(decide(&table(), &input("https://q/prod", None, None))
            .expect("routed")
            .is_some());
    }
}
