//! `nodereaper journal` and `nodereaper restore`.

use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::journal::EntryFilter;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{ExitCode, Output};

#[derive(Args)]
pub struct JournalArgs {
    /// Only entries recorded at or after this time (RFC 3339, or a duration ago like "24h").
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long)]
    pub instance: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Node to restore (its newest journal entry).
    #[arg(required_unless_present = "since")]
    pub node: Option<String>,
    /// Restore every node deleted at or after this time (RFC 3339 or "2h").
    #[arg(long, conflicts_with = "node")]
    pub since: Option<String>,
    /// Replace a node that exists on the server.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// "2026-11-25T10:00:00Z" or a duration ago ("24h").
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(text)
        .with_context(|| format!("--since {text:?}: expected an RFC 3339 time (2026-11-25T10:00:00Z) or a duration like 24h"))?;
    Ok(chrono::Utc::now() - chrono::Duration::from_std(ago)?)
}

pub async fn journal(config: Config, args: JournalArgs) -> Result<ExitCode> {
    let journal = app::journal(&config).await?;
    let filter = EntryFilter {
        since: args.since.as_deref().map(parse_since).transpose()?,
        node: args.node,
        instance: args.instance,
    };
    let entries: Vec<_> = journal
        .entries()
        .await?
        .into_iter()
        .filter(|e| filter.matches(e))
        .collect();
    if args.output == Output::Json {
        let summaries: Vec<_> = entries.iter().map(|e| e.summary()).collect();
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<25} {:<10} {:<36} {:<21} REASON",
        "RECORDED (UTC)", "SOURCE", "NODE", "INSTANCE"
    );
    for e in &entries {
        println!(
            "{:<25} {:<10} {:<36} {:<21} {}",
            e.recorded_at.format("%Y-%m-%d %H:%M:%S"),
            e.source,
            e.node_name,
            e.instance_id.as_deref().unwrap_or("-"),
            e.reason
        );
    }
    println!("{} entries", entries.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(config: Config, args: RestoreArgs) -> Result<ExitCode> {
    let chef = app::chef_client(&config)?;
    let journal = app::journal(&config).await?;
    let filter = EntryFilter {
        since: args.since.as_deref().map(parse_since).transpose()?,
        node: args.node.clone(),
        instance: None,
    };
    let entries = nodereaper::restore::select(journal.as_ref(), &filter).await?;
    if entries.is_empty() {
        bail!(
            "the journal has no matching entry{}",
            args.node
                .map(|n| format!(" for node {n:?}"))
                .unwrap_or_default()
        );
    }
    let mut results = Vec::new();
    let mut failed = 0;
    for entry in &entries {
        match nodereaper::restore::restore(&chef, entry, args.force).await {
            Ok(r) => results.push(serde_json::to_value(&r)?),
            Err(e) => {
                failed += 1;
                results.push(serde_json::json!({"entry_id": entry.id, "node": entry.node_name, "error": e.to_string()}));
            }
        }
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            match r.get("error").and_then(|e| e.as_str()) {
                Some(err) => println!(
                    "{}: NOT restored: {err}",
                    r["node"].as_str().unwrap_or_default()
                ),
                None => {
                    println!(
                        "{}: node {}, client {} (from {})",
                        r["node"].as_str().unwrap_or_default(),
                        r["node_action"].as_str().unwrap_or_default(),
                        r["client_action"].as_str().unwrap_or_default(),
                        r["entry_id"].as_str().unwrap_or_default()
                    );
                    if let Some(note) = r.get("note").and_then(|n| n.as_str()) {
                        println!("  note: {note}");
                    }
                }
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
