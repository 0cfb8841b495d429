//! The nodereaper demo: a complete scale-in, end to end, on the local stack.
//!
//! Run it through `scripts/demo.sh`, which starts the stack (goiardi as the
//! Chef Infra Server, moto as AWS), builds nodereaper and then runs:
//!
//! ```text
//! cargo run --release --example demo -- --env-file target/stack-demo/stack.env
//! ```
//!
//! What it does:
//! 1. cleans up what a previous run left behind (the group, its instances,
//!    the demo's nodes and clients, the messages in the demo's queues);
//! 2. creates the Auto Scaling group `demo-web` (4 instances) in moto and
//!    two instances outside it (`chef-server-1`, `db-1`);
//! 3. registers a Chef node and API client for each instance, as
//!    chef-client's first run would;
//! 4. writes a nodereaper configuration and runs the real CLI:
//!    `nodereaper setup --name nodereaper-demo --asg demo-web`;
//! 5. scales the group in from 4 to 1 instance;
//! 6. publishes, to the topic setup created, the notifications Auto Scaling
//!    sends for each terminated instance (moto does not publish them), plus
//!    one forged notification for db-1, whose instance still runs;
//! 7. runs `nodereaper run --exit-when-idle` until the queue is drained;
//! 8. shows the Chef server afterwards and `nodereaper journal`, and checks
//!    that exactly the 3 terminated instances were deregistered;
//! 9. checks the rest of the estate (`demo/estate.rs`): the terminated
//!    clients are gone from the chef-vault item the web clients shared, and
//!    the demo's local webhook receiver got one templated POST per
//!    terminated instance, each signature verified. The exit status is 1
//!    when any check fails.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    Filter, InstanceType, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName as Qa;
use clap::Parser;
use nodereaper::adapters::chef::ChefClient;
use nodereaper::config::Config;
use nodereaper::ports::ChefApi;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use aws::{asg_terminate_notification, node_json};

#[path = "demo/aws.rs"]
mod aws;
#[path = "demo/cli.rs"]
mod cli;
#[path = "demo/estate.rs"]
mod estate;
#[path = "demo/flow.rs"]
mod flow;
use flow::Queues;

/// The Auto Scaling group of the demo.
const GROUP: &str = "demo-web";
/// `nodereaper setup --name`: the SNS topic and the SQS queue (+ `-dlq`).
const SETUP_NAME: &str = "nodereaper-demo";
/// Tag on the instances the demo launches outside the group.
const DEMO_TAG: &str = "nodereaper-demo";
/// Instances in the group before and after the scale-in.
const BEFORE: i32 = 4;
const AFTER: i32 = 1;
/// Nodes that must survive: protected by name, and not in the group.
const PROTECTED_NODE: &str = "chef-server-1";
const DB_NODE: &str = "db-1";
/// moto's account.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const AMI: &str = "ami-12c6146b";
/// Longest a `nodereaper run --exit-when-idle` may take here.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the nodereaper demo against the local stack (see scripts/demo.sh).
#[derive(Parser)]
struct Args {
    /// The stack's env file, as printed by `scripts/stack.sh up`.
    #[arg(long)]
    env_file: PathBuf,
    /// The nodereaper binary (default: target/release/nodereaper).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Keep the configuration and the journal in this directory (emptied
    /// first); default: a temporary directory removed at the end.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    match run(args).await {
        Ok(0) => {
            println!(
                "\nDemo finished in {:.1}s: every check passed.",
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!(
                "\nDemo FAILED after {:.1}s: {failures} check(s) did not pass (see above).",
                started.elapsed().as_secs_f64()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("\ndemo error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Output: section headers, indented blocks, check marks.
struct Out {
    color: bool,
    section: usize,
    failures: usize,
}

impl Out {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn section(&mut self, title: &str) {
        self.section += 1;
        let line = format!("== {}. {title} ", self.section);
        let pad = "=".repeat(78usize.saturating_sub(line.chars().count()));
        println!("\n{}", self.paint("1;36", &format!("{line}{pad}")));
    }

    fn say(&self, text: &str) {
        println!("{text}");
    }

    /// A block of someone else's output, indented and framed.
    fn block(&self, text: &str) {
        for line in text.lines() {
            println!("  {} {line}", self.paint("2", "|"));
        }
    }

    fn check(&mut self, ok: bool, what: &str) {
        if ok {
            println!("  {} {what}", self.paint("32", "ok  "));
        } else {
            self.failures += 1;
            println!("  {} {what}", self.paint("1;31", "FAIL"));
        }
    }
}

/// Everything the demo talks to.
struct Demo {
    out: Out,
    bin: PathBuf,
    config_path: PathBuf,
    /// Environment for the nodereaper subprocesses.
    child_env: Vec<(String, String)>,
    ec2: aws_sdk_ec2::Client,
    asg: aws_sdk_autoscaling::Client,
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
}

/// One registered node.
#[derive(Clone)]
struct Registered {
    node: String,
    instance_id: String,
    role: &'static str,
}

/// The output of one nodereaper subcommand.
struct CliResult {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The stack's settings (its env file) and the nodereaper binary.
struct Stack {
    vars: HashMap<String, String>,
    chef_url: String,
    admin_name: String,
    admin_key: String,
    moto_url: String,
    bin: PathBuf,
}

async fn run(args: Args) -> Result<usize> {
    let stack = read_stack(&args)?;
    let (work_dir, _temp) = work_dir(&args)?;
    let mut demo = Demo::connect(&stack, &work_dir).await;
    println!(
        "nodereaper demo: an Auto Scaling group scales in; nodereaper removes the terminated\n\
         instances' Chef registrations, and nothing else.\n  \
         Chef Infra Server: goiardi at {}\n  \
         AWS:               moto at {} (region {REGION})\n  \
         nodereaper:        {}\n  \
         work directory:    {}",
        stack.chef_url,
        stack.moto_url,
        short(&demo.bin),
        short(&work_dir)
    );

    // The configuration, first without a queue: setup needs none, and the
    // demo's own Chef client is built from it by the library.
    let journal_dir = work_dir.join("journal");
    let receiver = estate::Receiver::start().await?;
    let estate_toml = estate::config_toml(&receiver, &work_dir)?;
    let settings = ConfigText {
        estate: &estate_toml,
        chef_url: &stack.chef_url,
        admin_name: &stack.admin_name,
        admin_key: &stack.admin_key,
        moto_url: &stack.moto_url,
        journal_dir: &journal_dir,
    };
    std::fs::write(&demo.config_path, settings.render(None))?;
    let config = Config::load(&demo.config_path)?;
    let chef = nodereaper::app::chef_client(&config)?;

    let (group_ids, nodes) = demo.prepare(&chef, &stack).await?;
    let queues = demo.configure(&settings).await?;
    demo.out.section("BEFORE: the Chef server");
    demo.print_table(&chef, &nodes).await?;
    let (terminated, remaining) = demo.scale_in(&group_ids).await?;
    let db_id = nodes
        .iter()
        .find(|r| r.role == "db")
        .map(|r| r.instance_id.clone())
        .unwrap_or_default();
    demo.notify(&queues, &terminated, &db_id).await?;
    demo.run_daemon().await?;

    demo.out.section("AFTER: the Chef server");
    demo.print_table(&chef, &nodes).await?;
    demo.verify(&chef, &nodes, &terminated, &remaining, &queues)
        .await?;
    demo.check_estate(&chef, &receiver, &nodes, (&terminated, &remaining))
        .await?;
    demo.check_journal(&terminated).await?;
    if args.work_dir.is_some() {
        demo.try_next(&args, &nodes, &terminated);
    }
    Ok(demo.out.failures)
}

/// The stack's env file and the binary, checked.
fn read_stack(args: &Args) -> Result<Stack> {
    let vars = read_env_file(&args.env_file)?;
    let var = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("{k} missing from {}", args.env_file.display()))
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = args
        .bin
        .clone()
        .unwrap_or_else(|| repo.join("target/release/nodereaper"));
    if !bin.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release)",
            bin.display()
        );
    }
    Ok(Stack {
        chef_url: var("NODEREAPER_CHEF_URL")?,
        admin_name: var("NODEREAPER_CHEF_ADMIN_NAME")?,
        admin_key: var("NODEREAPER_CHEF_ADMIN_KEY")?,
        moto_url: var("NODEREAPER_MOTO_URL")?,
        vars,
        bin,
    })
}

/// Where the configuration and the journal go: `--work-dir` (emptied, only
/// when an earlier demo made it), else a temporary directory (kept alive by
/// the second value).
fn work_dir(args: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(dir) = &args.work_dir else {
        let t = tempfile::Builder::new()
            .prefix("nodereaper-demo-")
            .tempdir()?;
        return Ok((t.path().to_path_buf(), Some(t)));
    };
    if dir.exists() {
        // Only ever empty a directory an earlier demo run made.
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join("nodereaper.toml").is_file() {
            bail!(
                "--work-dir {} is not empty and holds no nodereaper.toml: not a demo \
                 directory, refusing to empty it",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok((dir.canonicalize()?, None))
}

/// The configuration file, as a newcomer would write it.
struct ConfigText<'a> {
    chef_url: &'a str,
    admin_name: &'a str,
    admin_key: &'a str,
    moto_url: &'a str,
    journal_dir: &'a Path,
    /// `[vault]` and `[webhook]` ([`estate::config_toml`]).
    estate: &'a str,
}

impl ConfigText<'_> {
    fn render(&self, queue_url: Option<&str>) -> String {
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let queues = match queue_url {
            Some(url) => format!("[[queues]]\nurl = {}\n", q(url)),
            None => "# [[queues]] is added once `nodereaper setup` has created the queue.\n".into(),
        };
        format!(
            "# The Chef Infra Server: the local goiardi, as its admin client.\n\
             [chef]\n\
             server_url = {chef}\n\
             # goiardi on 127.0.0.1 speaks plain http (never in production).\n\
             allow_plain_http = true\n\
             client_name = {name}\n\
             client_key = {key}\n\
             \n\
             # AWS: every service is the local moto.\n\
             [aws]\n\
             region = {region}\n\
             endpoint_url = {moto}\n\
             \n\
             {queues}\
             \n\
             [pipeline]\n\
             wait_time = \"1s\"  # SQS long poll (default 20s): the demo wants a quick exit\n\
             \n\
             [protect]\n\
             node_names = [\"chef-server-*\"]  # never deleted, whatever an event says\n\
             \n\
             [journal]\n\
             dir = {journal}  # a backup of every deleted node and client\n\
             \n\
             [http]\n\
             listen = \"127.0.0.1:0\"  # /metrics, /healthz, /readyz on a free port\n\
             \n\
             [log]\n\
             format = \"text\"\n\
             \n\
             {estate}",
            chef = q(self.chef_url),
            name = q(self.admin_name),
            key = q(self.admin_key),
            region = q(REGION),
            moto = q(self.moto_url),
            journal = q(&self.journal_dir.display().to_string()),
            estate = self.estate,
        )
    }
}

fn read_env_file(path: &Path) -> Result<HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// A path relative to the current directory when it is below it.
fn short(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn json_str(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("setup's JSON output has no {key}: {v}"))
}
