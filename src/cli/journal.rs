//! `nodereaper journal` (list, show, verify, prune) and `nodereaper restore`.

use std::io::Write;
use std::path::{Path, PathBuf};

use nodereaper::adapters::chef::ServerInfo;
use nodereaper::adapters::journal::EntryFilter;
use nodereaper::app;
use nodereaper::config::Config;
use nodereaper::jobs::{
    self,
    restore::{Registration, RestoreError, Restored},
};
use nodereaper::ports::{ChefApi, Journal};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::{ExitCode, Output};

/// Arguments of `nodereaper journal`: a subcommand, or filters for the list.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JournalArgs {
    /// What to do; without one, list the entries.
    #[command(subcommand)]
    pub action: Option<JournalAction>,
    /// Only entries recorded at or after this time (RFC 3339, or a duration ago like "24h").
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries of this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Only entries of this EC2 instance id.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only entries of this Chef target (`[[chef.targets]]` name; an entry
    /// recording none matches the target with its server URL).
    #[arg(long)]
    pub target: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// `nodereaper journal` subcommands.
#[derive(Subcommand)]
pub enum JournalAction {
    /// Print one entry in full (JSON, with the backed-up objects).
    Show {
        /// Entry id, as `nodereaper journal` lists it.
        id: String,
    },
    /// Check every entry and its objects; exit 1 when anything is damaged.
    Verify {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Remove entries older than journal.retention (or --older-than).
    Prune {
        /// Override journal.retention, e.g. "30d".
        #[arg(long)]
        older_than: Option<String>,
    },
}

/// Arguments of `nodereaper restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// Node to restore (merged from every journal entry of that registration).
    #[arg(required_unless_present = "since")]
    pub node: Option<String>,
    /// Restore every node deleted at or after this time (RFC 3339 or "2h").
    #[arg(long, conflicts_with = "node")]
    pub since: Option<String>,
    /// Replace a node that exists on the server.
    #[arg(long)]
    pub force: bool,
    /// Restore to this Chef target (`[[chef.targets]]` name) instead of
    /// the one each registration was deleted from.
    #[arg(long, value_name = "TARGET")]
    pub to: Option<String>,
    /// Write the private key of a client re-created with a NEW key to this
    /// file (mode 0600) instead of printing it; with several such clients,
    /// FILE.CLIENT for each.
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
    /// Output format.
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

/// `nodereaper journal [show|verify|prune]`.
pub async fn journal(config: Config, args: JournalArgs) -> Result<ExitCode> {
    let journal = app::journal(&config).await?;
    let journal = journal.as_ref();
    match args.action {
        Some(JournalAction::Show { id }) => show(journal, &id).await,
        Some(JournalAction::Verify { output }) => verify(journal, output).await,
        Some(JournalAction::Prune { older_than }) => prune(&config, journal, older_than).await,
        None => list(&config, journal, args).await,
    }
}

/// `journal show ID`: the entry in full, as JSON.
async fn show(journal: &dyn Journal, id: &str) -> Result<ExitCode> {
    let entry = journal
        .entries()
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .with_context(|| {
            format!("the journal has no entry {id:?} (`nodereaper journal` lists the ids)")
        })?;
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(ExitCode::SUCCESS)
}

/// `journal verify`: every problem found; exit 1 when there is one.
async fn verify(journal: &dyn Journal, output: Output) -> Result<ExitCode> {
    let entries = journal.entries().await?.len();
    let damage = journal.verify().await?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"entries": entries, "damaged": damage})
            )?
        );
    } else {
        for d in &damage {
            println!("DAMAGED {d}");
        }
        println!("{entries} entries readable, {} problems", damage.len());
    }
    Ok(if damage.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `journal prune [--older-than D]`.
async fn prune(
    config: &Config,
    journal: &dyn Journal,
    older_than: Option<String>,
) -> Result<ExitCode> {
    let retention = match older_than {
        Some(text) => humantime::parse_duration(&text)
            .with_context(|| format!("--older-than {text:?}: expected a duration like 30d"))?,
        None => config.journal.retention,
    };
    let removed = nodereaper::adapters::journal::prune(journal, retention).await?;
    println!(
        "removed {removed} entries older than {}",
        humantime::format_duration(retention)
    );
    Ok(ExitCode::SUCCESS)
}

/// `journal [--since T] [--node N] [--instance I]`: the matching entries.
async fn list(config: &Config, journal: &dyn Journal, args: JournalArgs) -> Result<ExitCode> {
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
        .filter(|e| {
            args.target
                .as_deref()
                .is_none_or(|t| of_target(config, e, t))
        })
        .collect();
    if args.output == Output::Json {
        let summaries: Vec<_> = entries
            .iter()
            .map(|e| {
                let mut s = e.summary();
                s.damage = e.damage.clone();
                s
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<48} {:<10} {:<36} {:<21} {:<8} REASON",
        "ID", "SOURCE", "NODE", "INSTANCE", "CLIENT"
    );
    for e in &entries {
        let client = match (&e.client, e.client_status) {
            (Some(_), _) => "backed",
            (None, Some(nodereaper::adapters::journal::Presence::AlreadyGone)) => "gone",
            (None, _) => "-",
        };
        println!(
            "{:<48} {:<10} {:<36} {:<21} {:<8} {}",
            e.id,
            e.source,
            e.node_name,
            e.instance_id.as_deref().unwrap_or("-"),
            client,
            e.reason
        );
        for d in &e.damage {
            println!("  DAMAGED: {d}");
        }
    }
    println!("{} entries", entries.len());
    Ok(ExitCode::SUCCESS)
}

/// Whether entry `e` was deleted from target `name`: it records that
/// target, or records none and the server URL the target has.
fn of_target(config: &Config, e: &nodereaper::adapters::journal::JournalEntry, name: &str) -> bool {
    match &e.target {
        Some(t) => t == name,
        None => config
            .for_target(name)
            .and_then(|c| c.chef.server_url)
            .is_some_and(|u| u.trim_end_matches('/') == e.chef_server.trim_end_matches('/')),
    }
}

/// Each registration's target (the one it was deleted from, or `to`) and a
/// Chef client per target: all settled before anything is written.
fn restore_clients(
    config: &Config,
    registrations: &[Registration],
    to: Option<&str>,
) -> Result<(
    Vec<jobs::restore::RestoreTarget>,
    std::collections::BTreeMap<String, nodereaper::adapters::chef::ChefClient>,
)> {
    let mut targets = Vec::new();
    for reg in registrations {
        targets.push(jobs::restore::restore_target(config, reg, to)?);
    }
    let mut clients = std::collections::BTreeMap::new();
    for t in &targets {
        if !clients.contains_key(&t.name) {
            clients.insert(t.name.clone(), app::chef_client(&t.config)?);
        }
    }
    Ok((targets, clients))
}

/// Restores each registration to its target's Chef server, then its estate
/// backups (chef-vault entries) to that same target's server.
async fn restore_each<'a>(
    config: &Config,
    registrations: &'a [Registration],
    (targets, clients): (
        &[jobs::restore::RestoreTarget],
        &std::collections::BTreeMap<String, nodereaper::adapters::chef::ChefClient>,
    ),
    force: bool,
    journal: &dyn nodereaper::ports::Journal,
) -> Result<Vec<Attempt<'a>>> {
    let mut estates = std::collections::BTreeMap::new();
    let mut attempts: Vec<Attempt> = Vec::new();
    for (reg, target) in registrations.iter().zip(targets) {
        let chef = clients
            .get(&target.name)
            .with_context(|| format!("no Chef client for target {:?}", target.name))?;
        if config.has_targets() {
            eprintln!("{}: restoring to target {}", reg.node_name, target.name);
        }
        if !estates.contains_key(&target.name) {
            let estate = app::estate_targets(&target.config).await?;
            estates.insert(target.name.clone(), estate);
        }
        let mut result = jobs::restore::restore_with(chef, reg, force, Some(journal)).await;
        if let (Ok(restored), Some(estate)) = (&mut result, estates.get(&target.name)) {
            jobs::restore_estate::restore(estate, &reg.estate, restored).await;
        }
        attempts.push((reg, result));
    }
    Ok(attempts)
}

/// One registration's restore: what was restored, or why not.
type Attempt<'a> = (&'a Registration, Result<Restored, RestoreError>);

/// The registrations `args` selects that can be restored; `None` when every
/// one was deleted by an Automate sweep (said for each).
async fn restorable(
    journal: &dyn nodereaper::ports::Journal,
    args: &RestoreArgs,
) -> Result<Option<Vec<Registration>>> {
    let filter = EntryFilter {
        since: args.since.as_deref().map(parse_since).transpose()?,
        node: args.node.clone(),
        instance: None,
    };
    let mut registrations = jobs::restore::select(journal, &filter).await?;
    // What an Automate sweep deleted cannot come back: said, and left out.
    let before = registrations.len();
    registrations.retain(|reg| match jobs::automate_sweep::unrestorable(reg) {
        Some(why) => {
            println!("{}: NOT restored: {why}", reg.node_name);
            false
        }
        None => true,
    });
    if registrations.is_empty() && before > 0 {
        return Ok(None);
    }
    if registrations.is_empty() {
        bail!(
            "the journal has no matching entry{}",
            args.node
                .as_ref()
                .map(|n| format!(" for node {n:?}"))
                .unwrap_or_default()
        );
    }
    Ok(Some(registrations))
}

/// `nodereaper restore NODE | --since T`.
pub async fn restore(config: Config, args: RestoreArgs) -> Result<ExitCode> {
    let journal = app::journal(&config).await?;
    let Some(registrations) = restorable(journal.as_ref(), &args).await? else {
        return Ok(ExitCode::FAILURE);
    };
    // Each registration goes back to the target it was deleted from (or
    // --to).
    let (targets, clients) = restore_clients(&config, &registrations, args.to.as_deref())?;
    let first = clients
        .values()
        .next()
        .context("no Chef target to restore to")?;
    let info = first.server_info().await?;
    // Where new private keys go is settled before anything is created: a
    // --key-out that cannot be written refuses the restore up front.
    let reserved = match &args.key_out {
        Some(path) => reserve_key_files(path, &registrations)?,
        None => Vec::new(),
    };
    let attempts = restore_each(
        &config,
        &registrations,
        (&targets, &clients),
        args.force,
        journal.as_ref(),
    )
    .await?;
    // New private keys: shown once, never discarded (also from failures
    // that came after the client was created).
    let new_keys: Vec<(&str, &str)> = attempts
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(r) => Some((r.client.as_deref()?, r.private_key.as_deref()?)),
            Err(e) => e.new_key(),
        })
        .collect();
    let (unwritten, key_files) = match &args.key_out {
        Some(_) => write_new_keys(reserved, &new_keys),
        None => (new_keys.clone(), Vec::new()),
    };
    if args.output == Output::Json {
        print_restore_json(&attempts, &unwritten)?;
    } else {
        print_restore_text(&info, &attempts);
        for (client, pem) in &unwritten {
            println!("private key of client {client} (shown once, not stored):\n{pem}");
        }
    }
    for (client, path) in &key_files {
        eprintln!(
            "private key of client {client} written to {} (mode 0600)",
            path.display()
        );
    }
    let failed = attempts
        .iter()
        .filter(|(_, r)| r.as_ref().map_or(true, Restored::partial))
        .count();
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Client and private key (PEM).
type NewKey<'a> = (&'a str, &'a str);

/// Writes each new key into its reserved --key-out file; returns the keys
/// that could not be written (to be printed) and the files written.
/// Reserved files left unused are removed.
fn write_new_keys<'a>(
    mut reserved: Vec<Reserved>,
    new_keys: &[NewKey<'a>],
) -> (Vec<NewKey<'a>>, Vec<(&'a str, PathBuf)>) {
    let mut unwritten = Vec::new();
    let mut key_files = Vec::new();
    for &(client, pem) in new_keys {
        match write_reserved(&mut reserved, client, pem) {
            Ok(path) => key_files.push((client, path)),
            Err(e) => {
                eprintln!("{e:#}; the key is printed instead");
                unwritten.push((client, pem));
            }
        }
    }
    for (_, path, _) in reserved {
        // Reserved for a client that needed no new key after all.
        let _ = std::fs::remove_file(path);
    }
    (unwritten, key_files)
}

/// A key file created (empty, mode 0600) before the restore: client, path, file.
type Reserved = (String, PathBuf, std::fs::File);

/// Creates the --key-out file of every client that may get a new key pair
/// (`path` for one, `path.CLIENT` for several), before anything is
/// restored; any failure removes those created and refuses.
fn reserve_key_files(path: &Path, regs: &[Registration]) -> Result<Vec<Reserved>> {
    let clients: Vec<&str> = regs
        .iter()
        .filter(|r| jobs::restore::may_generate_key(r))
        .filter_map(|r| r.client_name.as_deref())
        .collect();
    let mut reserved: Vec<Reserved> = Vec::new();
    for client in &clients {
        let target = if clients.len() == 1 {
            path.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{client}", path.display()))
        };
        match create_key_file(&target) {
            Ok(file) => reserved.push((client.to_string(), target, file)),
            Err(e) => {
                for (_, p, _) in &reserved {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e.context(format!(
                    "refusing to restore: client {client} would get a new private key that could not be saved"
                )));
            }
        }
    }
    Ok(reserved)
}

/// Creates a private key file, owner-only, refusing to overwrite.
fn create_key_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).with_context(|| {
        format!(
            "--key-out {}: cannot create (it must not exist)",
            path.display()
        )
    })
}

/// Writes `pem` into the file reserved for `client` (or a new
/// `--key-out`-style file when none was reserved); returns its path.
fn write_reserved(reserved: &mut Vec<Reserved>, client: &str, pem: &str) -> Result<PathBuf> {
    let Some(i) = reserved.iter().position(|(c, _, _)| c == client) else {
        bail!("no --key-out file was reserved for client {client}");
    };
    let (_, path, mut file) = reserved.remove(i);
    file.write_all(pem.as_bytes())
        .and_then(|_| file.sync_all())
        .with_context(|| format!("--key-out {}: cannot write", path.display()))?;
    Ok(path)
}

/// The results as a JSON array; a new private key not written to a file
/// is included.
fn print_restore_json(attempts: &[Attempt], unwritten: &[(&str, &str)]) -> Result<()> {
    let key_of = |client: Option<&str>| {
        unwritten
            .iter()
            .find(|(c, _)| Some(*c) == client)
            .map(|(_, pem)| serde_json::json!(pem))
    };
    let mut results = Vec::new();
    for (reg, result) in attempts {
        results.push(match result {
            Ok(r) => {
                let mut v = serde_json::to_value(r)?;
                if let (Some(_), Some(pem)) = (&r.private_key, key_of(r.client.as_deref())) {
                    v["private_key"] = pem;
                }
                v
            }
            Err(e) => {
                let mut v = serde_json::json!({
                    "entry_id": reg.node_entry,
                    "entries": reg.entry_ids,
                    "node": reg.node_name,
                    "error": e.to_string(),
                });
                if let Some(pem) = e.new_key().and_then(|(c, _)| key_of(Some(c))) {
                    v["private_key"] = pem;
                }
                v
            }
        });
    }
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(())
}

/// One line per registration, with its notes.
fn print_restore_text(info: &ServerInfo, attempts: &[Attempt]) {
    println!("server: {} (API v{})", info.kind, info.api_version);
    for (reg, result) in attempts {
        match result {
            Err(e) => println!("{}: NOT restored: {e}", reg.node_name),
            Ok(r) => {
                println!(
                    "{}: node {}, client {}, ACL {} (entries {})",
                    r.node,
                    r.node_action,
                    r.client_action,
                    r.acl_action,
                    r.entries.join(", ")
                );
                for note in &r.notes {
                    println!("  note: {note}");
                }
            }
        }
    }
}
