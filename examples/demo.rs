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

#[path = "demo/estate.rs"]
mod estate;

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

async fn run(args: Args) -> Result<usize> {
    let vars = read_env_file(&args.env_file)?;
    let var = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("{k} missing from {}", args.env_file.display()))
    };
    let chef_url = var("NODEREAPER_CHEF_URL")?;
    let admin_name = var("NODEREAPER_CHEF_ADMIN_NAME")?;
    let admin_key = var("NODEREAPER_CHEF_ADMIN_KEY")?;
    let moto_url = var("NODEREAPER_MOTO_URL")?;
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
    // Where the configuration and the journal go.
    let _temp;
    let work_dir = match &args.work_dir {
        Some(dir) => {
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
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot empty {}", dir.display()))?;
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.canonicalize()?
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("nodereaper-demo-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            _temp = t;
            p
        }
    };

    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // The subprocesses talk to moto with its dummy credentials; nothing from
    // the caller's NODEREAPER_* overrides may change their configuration.
    let mut child_env: Vec<(String, String)> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ]
    .iter()
    .filter_map(|k| vars.get(*k).map(|v| (k.to_string(), v.clone())))
    .collect();
    child_env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    if !color {
        child_env.push(("NO_COLOR".into(), "1".into()));
    }

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(nodereaper::adapters::aws::https_client())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&moto_url)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            vars.get("AWS_ACCESS_KEY_ID")
                .map_or("testing", String::as_str),
            vars.get("AWS_SECRET_ACCESS_KEY")
                .map_or("testing", String::as_str),
            None,
            None,
            "nodereaper-demo",
        ))
        .load()
        .await;
    let mut demo = Demo {
        out: Out {
            color,
            section: 0,
            failures: 0,
        },
        bin,
        config_path: work_dir.join("nodereaper.toml"),
        child_env,
        ec2: aws_sdk_ec2::Client::new(&sdk),
        asg: aws_sdk_autoscaling::Client::new(&sdk),
        sns: aws_sdk_sns::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
    };
    println!(
        "nodereaper demo: an Auto Scaling group scales in; nodereaper removes the terminated\n\
         instances' Chef registrations, and nothing else.\n  \
         Chef Infra Server: goiardi at {chef_url}\n  \
         AWS:               moto at {moto_url} (region {REGION})\n  \
         nodereaper:        {}\n  \
         work directory:    {}",
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
        chef_url: &chef_url,
        admin_name: &admin_name,
        admin_key: &admin_key,
        moto_url: &moto_url,
        journal_dir: &journal_dir,
    };
    std::fs::write(&demo.config_path, settings.render(None))?;
    let config = Config::load(&demo.config_path)?;
    let chef = nodereaper::app::chef_client(&config)?;

    demo.out.section("Cleaning up after any previous run");
    demo.cleanup(&chef).await?;

    demo.out
        .section("Creating the Auto Scaling group demo-web in moto (4 instances)");
    let group_ids = demo.create_group().await?;
    demo.out.say(&format!(
        "  group {GROUP}: {} instances: {}",
        group_ids.len(),
        group_ids.join(", ")
    ));
    let server_id = demo.launch_standalone(PROTECTED_NODE).await?;
    let db_id = demo.launch_standalone(DB_NODE).await?;
    demo.out.say(&format!(
        "  outside the group: {PROTECTED_NODE} on {server_id}, {DB_NODE} on {db_id}"
    ));

    demo.out
        .section("Registering a Chef node and API client for every instance");
    let mut nodes: Vec<Registered> = group_ids
        .iter()
        .map(|id| Registered {
            node: format!("web-{}", &id[id.len().saturating_sub(6)..]),
            instance_id: id.clone(),
            role: "web",
        })
        .collect();
    nodes.push(Registered {
        node: PROTECTED_NODE.into(),
        instance_id: server_id.clone(),
        role: "chef-server",
    });
    nodes.push(Registered {
        node: DB_NODE.into(),
        instance_id: db_id.clone(),
        role: "db",
    });
    for r in &nodes {
        chef.create_node(&node_json(r))
            .await
            .with_context(|| format!("cannot create node {}", r.node))?;
        chef.create_client(&r.node, None, false)
            .await
            .with_context(|| format!("cannot create client {}", r.node))?;
    }
    demo.out.say(&format!(
        "  {} nodes and {} clients, as chef-client's first run creates them (automatic.ec2.instance_id\n  \
         set by Ohai, last check-in 3 hours ago)",
        nodes.len(),
        nodes.len()
    ));
    let web: Vec<String> = nodes
        .iter()
        .filter(|r| r.role == "web")
        .map(|r| r.node.clone())
        .collect();
    estate::create_vault(&chef, (&admin_name, Path::new(&admin_key)), &web).await?;
    demo.out.say(
        "  and a chef-vault item the web clients can read (knife vault create ... -S 'role:web'):",
    );
    estate::show_vault(&demo.out, &chef).await?;

    demo.out.section("The nodereaper configuration");
    demo.out.say(&format!("  {}:", short(&demo.config_path)));
    demo.out.block(&settings.render(None));

    demo.out.section(&format!(
        "nodereaper setup --name {SETUP_NAME} --asg {GROUP}"
    ));
    let setup = demo.setup().await?;
    let queue_url = json_str(&setup, "queue_url")?;
    let dlq_url = json_str(&setup, "dlq_url")?;
    let topic_arn = json_str(&setup, "topic_arn")?;
    std::fs::write(&demo.config_path, settings.render(Some(&queue_url)))?;
    demo.out.say(&format!(
        "  The queue URL from `setup --output json` goes into the configuration:\n  \
         [[queues]] url = \"{queue_url}\""
    ));

    demo.out.section("BEFORE: the Chef server");
    demo.print_table(&chef, &nodes).await?;

    demo.out.section(&format!(
        "Scaling {GROUP} in from {BEFORE} to {AFTER} instance"
    ));
    demo.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(GROUP)
        .min_size(0)
        .desired_capacity(AFTER)
        .send()
        .await
        .context("UpdateAutoScalingGroup")?;
    let remaining = demo.group_instances().await?;
    let terminated: Vec<String> = group_ids
        .iter()
        .filter(|id| !remaining.contains(id))
        .cloned()
        .collect();
    let states = demo.ec2_states(&group_ids).await?;
    demo.out.say(&format!(
        "  The equivalent of `aws autoscaling update-auto-scaling-group --auto-scaling-group-name {GROUP} \
         --min-size 0 --desired-capacity {AFTER}`. EC2 now says:"
    ));
    for id in &group_ids {
        demo.out.say(&format!(
            "  {id}: {}",
            states.get(id).map_or("unknown", String::as_str)
        ));
    }
    demo.out.check(
        terminated.len() == (BEFORE - AFTER) as usize
            && terminated
                .iter()
                .all(|id| states.get(id).map(String::as_str) == Some("terminated")),
        &format!("Auto Scaling terminated {} instances", BEFORE - AFTER),
    );

    demo.out
        .section("Auto Scaling's notifications, delivered by SNS to the queue");
    demo.out.say(&format!(
        "  moto does not publish Auto Scaling notifications, so the demo publishes to the topic\n  \
         exactly what Auto Scaling sends there: one autoscaling:EC2_INSTANCE_TERMINATE per\n  \
         terminated instance ({} messages). Plus one FORGED notification for {DB_NODE}'s\n  \
         instance {db_id}, which still runs: nodereaper must refuse it.",
        terminated.len()
    ));
    let group_arn = demo.group_arn().await?;
    let mut first = None;
    for id in terminated.iter().chain(std::iter::once(&db_id)) {
        let message = asg_terminate_notification(id, &group_arn);
        demo.sns
            .publish()
            .topic_arn(&topic_arn)
            .subject(format!("Auto Scaling: termination for group \"{GROUP}\""))
            .message(&message)
            .send()
            .await
            .context("SNS Publish")?;
        first.get_or_insert(message);
    }
    if let (Some(m), Some(id)) = (first, terminated.first()) {
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&m)?)?;
        demo.out
            .say(&format!("  The first one (the SNS Message, for {id}):"));
        demo.out.block(&pretty);
    }
    let (visible, hidden) = demo.depth(&queue_url).await?;
    demo.out.check(
        visible + hidden == terminated.len() as u64 + 1,
        &format!("{visible} messages wait in queue {SETUP_NAME}"),
    );

    demo.out
        .section("nodereaper run --exit-when-idle (the daemon, until the queue is empty)");
    let started = Instant::now();
    let run = demo
        .nodereaper_streamed(&["run", "--exit-when-idle"])
        .await?;
    let took = started.elapsed().as_secs_f64();
    match run {
        Some(code) => demo.out.check(
            code == 0,
            &format!("nodereaper run exited with status {code} after {took:.1}s"),
        ),
        None => demo.out.check(
            false,
            &format!("nodereaper run did not exit within {RUN_TIMEOUT:?}; the demo stopped it"),
        ),
    }

    demo.out.section("AFTER: the Chef server");
    demo.print_table(&chef, &nodes).await?;
    demo.verify(&chef, &nodes, &terminated, &remaining, &queue_url, &dlq_url)
        .await?;

    demo.out
        .section("The rest of the estate: chef-vault and the signed webhook");
    let gone: Vec<(String, String)> = nodes
        .iter()
        .filter(|r| terminated.contains(&r.instance_id))
        .map(|r| (r.node.clone(), r.instance_id.clone()))
        .collect();
    let kept_web: Vec<String> = nodes
        .iter()
        .filter(|r| r.role == "web" && remaining.contains(&r.instance_id))
        .map(|r| r.node.clone())
        .collect();
    estate::check(&mut demo.out, &chef, &receiver, &gone, &kept_web).await?;

    demo.out
        .section("nodereaper journal (the backup of everything deleted)");
    let journal = demo.nodereaper(&[], &["journal"]).await?;
    demo.out.block(&journal.stdout);
    demo.out
        .check(journal.code == 0, "nodereaper journal succeeded");
    let entries = nodereaper::app::journal(&Config::load(&demo.config_path)?)
        .await?
        .entries()
        .await?;
    let mut journaled: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.instance_id.as_deref())
        .collect();
    journaled.sort_unstable();
    let mut expected: Vec<&str> = terminated.iter().map(String::as_str).collect();
    expected.sort_unstable();
    demo.out.check(
        journaled == expected,
        &format!(
            "the journal holds exactly the {} deleted registrations (node and client JSON)",
            expected.len()
        ),
    );

    let restore_example = nodes
        .iter()
        .find(|r| terminated.contains(&r.instance_id))
        .map_or("NODE", |r| r.node.as_str());
    if args.work_dir.is_some() {
        demo.out.section("Try next");
        let cfg = short(&demo.config_path);
        let bin = short(&demo.bin);
        demo.out.say(&format!(
            "  The configuration and the journal stay in {}. With the stack's AWS settings:\n  \
             set -a; . {}; set +a\n  \
             {bin} --config {cfg} restore {restore_example}   # back from the journal\n  \
             {bin} --config {cfg} sweep     # Chef nodes whose instance is gone\n  \
             {bin} --config {cfg} doctor    # checks every setting",
            short(demo.config_path.parent().unwrap_or(Path::new("."))),
            short(&args.env_file)
        ));
    }
    Ok(demo.out.failures)
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

impl Demo {
    /// Removes what a previous demo run left: the group and its launch
    /// template, the instances outside it, the demo's Chef objects and the
    /// messages in its queues. Chef objects are gone anyway when goiardi
    /// restarted (it keeps everything in memory).
    async fn cleanup(&mut self, chef: &ChefClient) -> Result<()> {
        let mut removed = Vec::new();
        let groups = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .context("DescribeAutoScalingGroups")?;
        if !groups.auto_scaling_groups().is_empty() {
            self.asg
                .delete_auto_scaling_group()
                .auto_scaling_group_name(GROUP)
                .force_delete(true)
                .send()
                .await
                .context("DeleteAutoScalingGroup")?;
            removed.push(format!("Auto Scaling group {GROUP}"));
        }
        let templates = self
            .ec2
            .describe_launch_templates()
            .filters(
                Filter::builder()
                    .name("launch-template-name")
                    .values(GROUP)
                    .build(),
            )
            .send()
            .await
            .context("DescribeLaunchTemplates")?;
        if !templates.launch_templates().is_empty() {
            self.ec2
                .delete_launch_template()
                .launch_template_name(GROUP)
                .send()
                .await
                .context("DeleteLaunchTemplate")?;
            removed.push(format!("launch template {GROUP}"));
        }
        let reservations = self
            .ec2
            .describe_instances()
            .filters(Filter::builder().name("tag-key").values(DEMO_TAG).build())
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .context("DescribeInstances")?;
        let leftover: Vec<String> = reservations
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        if !leftover.is_empty() {
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(leftover.clone()))
                .send()
                .await
                .context("TerminateInstances")?;
            removed.push(format!("instances {}", leftover.join(", ")));
        }
        let ours =
            |name: &str| name.starts_with("web-") || name == PROTECTED_NODE || name == DB_NODE;
        let (mut nodes, mut clients) = (0, 0);
        for node in chef.list_nodes().await? {
            if ours(&node) {
                chef.delete_node(&node).await?;
                nodes += 1;
            }
        }
        // A client outlives its node after a `nodereaper restore` of the node alone.
        for client in list_clients(chef).await? {
            if ours(&client) {
                chef.delete_client(&client).await?;
                clients += 1;
            }
        }
        if nodes + clients > 0 {
            removed.push(format!(
                "{} and {} from Chef",
                plural(nodes, "node"),
                plural(clients, "client")
            ));
        }
        for name in [SETUP_NAME.to_string(), format!("{SETUP_NAME}-dlq")] {
            if let Ok(q) = self.sqs.get_queue_url().queue_name(&name).send().await {
                if let Some(url) = q.queue_url() {
                    let drained = self.drain(url).await?;
                    if drained > 0 {
                        removed.push(format!("{} from queue {name}", plural(drained, "message")));
                    }
                }
            }
        }
        if removed.is_empty() {
            self.out
                .say("  nothing to clean up (first run on this stack)");
        } else {
            for r in removed {
                self.out.say(&format!("  removed {r}"));
            }
        }
        Ok(())
    }

    /// Deletes every message of a queue; returns how many. (PurgeQueue is
    /// allowed once a minute only, and moto enforces that.) Messages still
    /// in flight after an interrupted run are purged.
    async fn drain(&self, url: &str) -> Result<u64> {
        let mut count = 0;
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .context("ReceiveMessage")?;
            if out.messages().is_empty() {
                break;
            }
            for m in out.messages() {
                if let Some(handle) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .context("DeleteMessage")?;
                    count += 1;
                }
            }
        }
        let (_, hidden) = self.depth(url).await?;
        if hidden > 0 {
            self.sqs
                .purge_queue()
                .queue_url(url)
                .send()
                .await
                .context("PurgeQueue (messages in flight from an interrupted run)")?;
            count += hidden;
        }
        Ok(count)
    }

    /// The launch template and the group; returns the group's instance ids.
    async fn create_group(&self) -> Result<Vec<String>> {
        self.ec2
            .create_launch_template()
            .launch_template_name(GROUP)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(AMI)
                    .instance_type(InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .context("CreateLaunchTemplate")?;
        self.asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(GROUP)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(GROUP)
                    .version("$Latest")
                    .build(),
            )
            .min_size(BEFORE)
            .max_size(BEFORE)
            .desired_capacity(BEFORE)
            .availability_zones(format!("{REGION}a"))
            .send()
            .await
            .context("CreateAutoScalingGroup")?;
        let ids = self.group_instances().await?;
        if ids.len() != BEFORE as usize {
            bail!(
                "moto launched {} instances for {GROUP}, expected {BEFORE}",
                ids.len()
            );
        }
        Ok(ids)
    }

    async fn group_instances(&self) -> Result<Vec<String>> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .context("DescribeAutoScalingGroups")?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    async fn group_arn(&self) -> Result<String> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(GROUP)
            .send()
            .await
            .context("DescribeAutoScalingGroups")?;
        Ok(out
            .auto_scaling_groups()
            .first()
            .and_then(|g| g.auto_scaling_group_arn())
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:{}:autoScalingGroupName/{GROUP}",
                    uuid()
                )
            }))
    }

    /// One running instance outside the group, tagged Name=NAME.
    async fn launch_standalone(&self, name: &str) -> Result<String> {
        let out = self
            .ec2
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("Name").value(name).build())
                    .tags(Tag::builder().key(DEMO_TAG).value("true").build())
                    .build(),
            )
            .send()
            .await
            .context("RunInstances")?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .context("RunInstances returned no instance")
    }

    /// EC2 state name of each instance.
    async fn ec2_states(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        let out = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .context("DescribeInstances")?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_string(),
                    i.state()?.name()?.as_str().to_string(),
                ))
            })
            .collect())
    }

    /// (visible, in flight) messages.
    async fn depth(&self, url: &str) -> Result<(u64, u64)> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(Qa::ApproximateNumberOfMessages)
            .attribute_names(Qa::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("GetQueueAttributes")?;
        let get = |a: Qa| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(Qa::ApproximateNumberOfMessages),
            get(Qa::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// Runs `nodereaper setup` twice: in text to show it, then with
    /// `--output json` to read the queue URL (and to show it is idempotent).
    async fn setup(&mut self) -> Result<Value> {
        let base = ["setup", "--name", SETUP_NAME, "--asg", GROUP];
        // moto answers the Auto Scaling notification calls with HTTP 500,
        // which the SDK retries with backoff: 1-3 s lost per run.
        let no_retry = [("AWS_MAX_ATTEMPTS", "1")];
        let text = self.nodereaper(&no_retry, &base).await?;
        self.out.block(&text.stdout);
        if text.code != 0 {
            self.out.say(&format!(
                "  (exit status {}: moto 5.2 lacks Auto Scaling's notification API (HTTP 500, not worth retrying), so asg-notification fails; on AWS it is done. Step 8 stands in for it.)",
                text.code
            ));
        }
        let mut args = base.to_vec();
        args.extend(["--output", "json"]);
        let again = self.nodereaper(&no_retry, &args).await?;
        let report: Value = serde_json::from_str(&again.stdout).with_context(|| {
            format!(
                "`nodereaper setup --output json` did not print JSON (exit status {}):\n{}{}",
                again.code, again.stdout, again.stderr
            )
        })?;
        let changes = report["changes"].as_array().cloned().unwrap_or_default();
        let failed: Vec<&str> = changes
            .iter()
            .filter(|c| c["action"] == "failed")
            .filter_map(|c| c["resource"].as_str())
            .collect();
        let changed: Vec<&str> = changes
            .iter()
            .filter(|c| c["action"] != "failed" && c["action"] != "unchanged")
            .filter_map(|c| c["resource"].as_str())
            .collect();
        let notification = format!("asg-notification {GROUP}");
        self.out.check(
            failed.iter().all(|f| *f == notification),
            &format!(
                "the topic, the queue, its DLQ, the queue policy and the subscription are in place{}",
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(" (only {notification} failed: the moto gap)")
                }
            ),
        );
        self.out.check(
            changed.is_empty(),
            "a second run of setup (--output json) changes nothing: setup is idempotent",
        );
        if failed.iter().any(|f| *f != notification) {
            bail!("nodereaper setup failed: {}", again.stdout);
        }
        Ok(report)
    }

    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--config").arg(&self.config_path).args(args);
        for (k, _) in nodereaper::config::ENV_OVERRIDES {
            cmd.env_remove(k);
        }
        cmd.env_remove("NODEREAPER_CONFIG");
        cmd.envs(self.child_env.iter().map(|(k, v)| (k, v)));
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// `$ [VAR=value ]nodereaper --config FILE ARGS`
    fn echo(&self, env: &[(&str, &str)], args: &[&str]) {
        let vars: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        self.out.say(&format!(
            "  $ {vars}nodereaper --config {} {}",
            short(&self.config_path),
            args.join(" ")
        ));
    }

    /// Runs a nodereaper subcommand to completion, capturing its output.
    async fn nodereaper(&self, env: &[(&str, &str)], args: &[&str]) -> Result<CliResult> {
        self.echo(env, args);
        let out = self
            .command(env, args)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        Ok(CliResult {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs a nodereaper subcommand, printing its log (stderr) as it comes;
    /// its exit status, or None when it had to be stopped after [`RUN_TIMEOUT`].
    async fn nodereaper_streamed(&self, args: &[&str]) -> Result<Option<i32>> {
        self.echo(&[], args);
        let mut child = self
            .command(&[], args)
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let bar = self.out.paint("2", "|");
        let printer = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                println!("  {bar} {line}");
            }
        });
        let status = match tokio::time::timeout(RUN_TIMEOUT, child.wait()).await {
            Ok(status) => Some(status?.code().unwrap_or(-1)),
            Err(_) => {
                child.kill().await?;
                None
            }
        };
        let _ = printer.await;
        Ok(status)
    }

    /// NODE | INSTANCE | EC2 STATE | GROUP | CHEF NODE | CHEF CLIENT
    async fn print_table(&self, chef: &ChefClient, nodes: &[Registered]) -> Result<()> {
        let ids: Vec<String> = nodes.iter().map(|r| r.instance_id.clone()).collect();
        let states = self.ec2_states(&ids).await?;
        let in_group = self.group_instances().await?;
        let present = |b: bool| if b { "registered" } else { "-- deleted" };
        let mut lines = vec![format!(
            "{:<16} {:<21} {:<11} {:<10} {:<12} {:<12} NOTE",
            "NODE", "INSTANCE", "EC2 STATE", "GROUP", "CHEF NODE", "CHEF CLIENT"
        )];
        for r in nodes {
            let node = chef.get_node(&r.node).await?.is_some();
            let client = chef.get_client(&r.node).await?.is_some();
            let note = match r.role {
                "chef-server" => "protected: protect.node_names = [\"chef-server-*\"]",
                "db" => "not in the group",
                _ => "",
            };
            lines.push(format!(
                "{:<16} {:<21} {:<11} {:<10} {:<12} {:<12} {note}",
                r.node,
                r.instance_id,
                states.get(&r.instance_id).map_or("?", String::as_str),
                if in_group.contains(&r.instance_id) {
                    GROUP
                } else {
                    "-"
                },
                present(node),
                present(client),
            ));
        }
        self.out.block(&lines.join("\n"));
        Ok(())
    }

    /// The demo double-checks itself.
    async fn verify(
        &mut self,
        chef: &ChefClient,
        nodes: &[Registered],
        terminated: &[String],
        remaining: &[String],
        queue_url: &str,
        dlq_url: &str,
    ) -> Result<()> {
        // For each expectation (deleted / kept): the nodes, and the wrong ones.
        let mut expect: BTreeMap<bool, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for r in nodes {
            let node = chef.get_node(&r.node).await?.is_some();
            let client = chef.get_client(&r.node).await?.is_some();
            let should_go = terminated.contains(&r.instance_id);
            let entry = expect.entry(should_go).or_default();
            entry.0.push(r.node.clone());
            if (node, client) != (!should_go, !should_go) {
                entry.1.push(format!(
                    "{} (node {}, client {})",
                    r.node,
                    if node { "present" } else { "absent" },
                    if client { "present" } else { "absent" },
                ));
            }
        }
        let (gone, gone_wrong) = expect.remove(&true).unwrap_or_default();
        let (kept, kept_wrong) = expect.remove(&false).unwrap_or_default();
        let wrong = |w: &[String]| {
            if w.is_empty() {
                String::new()
            } else {
                format!("; WRONG: {}", w.join(", "))
            }
        };
        self.out.check(
            gone_wrong.is_empty() && gone.len() == terminated.len(),
            &format!(
                "deleted: the nodes and clients of the {} terminated instances ({}){}",
                terminated.len(),
                gone.join(", "),
                wrong(&gone_wrong)
            ),
        );
        let kept_web: Vec<&str> = nodes
            .iter()
            .filter(|r| remaining.contains(&r.instance_id))
            .map(|r| r.node.as_str())
            .collect();
        self.out.check(
            kept_wrong.is_empty() && kept.len() == nodes.len() - terminated.len(),
            &format!(
                "kept: {} ({} still in {GROUP}; {PROTECTED_NODE} protected; {DB_NODE} running, \
                 its forged notification refused){}",
                kept.join(", "),
                kept_web.join(", "),
                wrong(&kept_wrong)
            ),
        );
        let (visible, hidden) = self.depth(queue_url).await?;
        self.out.check(
            visible + hidden == 0,
            &format!("queue {SETUP_NAME} is empty ({visible} visible, {hidden} in flight)"),
        );
        let dlq = self
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(0)
            .send()
            .await
            .context("ReceiveMessage (DLQ)")?;
        let reasons: Vec<String> = dlq
            .messages()
            .iter()
            .filter_map(|m| {
                m.message_attributes()?
                    .get(nodereaper::adapters::aws::sqs::REASON_ATTRIBUTE)?
                    .string_value()
                    .map(str::to_string)
            })
            .collect();
        self.out.check(
            reasons.len() == 1,
            &format!(
                "the forged notification went to the DLQ {SETUP_NAME}-dlq{}",
                reasons
                    .first()
                    .map(|r| format!(", with the reason:\n         {r}"))
                    .unwrap_or_default()
            ),
        );
        Ok(())
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

/// Names of every API client (`GET /clients`).
async fn list_clients(chef: &ChefClient) -> Result<Vec<String>> {
    let r = chef
        .send(reqwest::Method::GET, &["clients"], &[], None)
        .await?;
    if !r.status.is_success() {
        bail!("GET /clients answered {}", r.status);
    }
    let map: serde_json::Map<String, Value> =
        serde_json::from_slice(&r.body).context("GET /clients: not a JSON object")?;
    Ok(map.into_iter().map(|(k, _)| k).collect())
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

/// A random UUID (version 4 layout), as AWS uses for request and activity ids.
fn uuid() -> String {
    let b: u128 = rand::random();
    let h = format!("{b:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A node as chef-client saves it on its first run, with Ohai's EC2 data.
fn node_json(r: &Registered) -> Value {
    let ohai_time = (chrono::Utc::now() - chrono::Duration::hours(3)).timestamp() as f64;
    json!({
        "name": r.node,
        "chef_type": "node",
        "json_class": "Chef::Node",
        "chef_environment": "_default",
        "run_list": [format!("role[{}]", r.role)],
        "normal": {"tags": []},
        "default": {},
        "override": {},
        "automatic": {
            "hostname": r.node,
            "fqdn": format!("{}.demo.internal", r.node),
            "ohai_time": ohai_time,
            "roles": [r.role],
            "cloud": {"provider": "ec2"},
            "ec2": {
                "instance_id": r.instance_id,
                "placement_availability_zone": format!("{REGION}a"),
                "instance_type": "t3.micro",
                "ami_id": AMI,
            },
        },
    })
}

/// The `Message` Auto Scaling publishes to a group's notification topic
/// when it terminates an instance (autoscaling:EC2_INSTANCE_TERMINATE).
fn asg_terminate_notification(instance_id: &str, group_arn: &str) -> String {
    let now = chrono::Utc::now();
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let start = now - chrono::Duration::seconds(58);
    let activity = uuid();
    json!({
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
        "Progress": 50,
        "AccountId": ACCOUNT,
        "Description": format!("Terminating EC2 instance: {instance_id}"),
        "RequestId": activity,
        "EndTime": ts(now),
        "AutoScalingGroupARN": group_arn,
        "ActivityId": activity,
        "StartTime": ts(start),
        "Service": "AWS Auto Scaling",
        "Time": ts(now),
        "EC2InstanceId": instance_id,
        "StatusCode": "InProgress",
        "StatusMessage": "",
        "Details": {"Subnet ID": "subnet-0a1b2c3d", "Availability Zone": format!("{REGION}a")},
        "AutoScalingGroupName": GROUP,
        "Cause": format!(
            "At {}Z a user request update of AutoScalingGroup constraints to min: 0, max: {BEFORE}, desired: {AFTER} \
             changing the desired capacity from {BEFORE} to {AFTER}.  At {}Z an instance was taken out of service in \
             response to a difference between desired and actual capacity, shrinking the capacity from {BEFORE} to {AFTER}.  \
             At {}Z instance {instance_id} was selected for termination.",
            start.format("%Y-%m-%dT%H:%M:%S"),
            start.format("%Y-%m-%dT%H:%M:%S"),
            start.format("%Y-%m-%dT%H:%M:%S"),
        ),
        "Event": "autoscaling:EC2_INSTANCE_TERMINATE",
    })
    .to_string()
}
