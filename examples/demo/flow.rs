//! The demo's steps, in the order `run` takes them: connect, prepare the
//! fleet, configure, scale in, notify, run the daemon, check.

use super::*;

/// What `nodereaper setup` created.
pub(super) struct Queues {
    pub(super) queue_url: String,
    pub(super) dlq_url: String,
    pub(super) topic_arn: String,
}

impl Demo {
    /// The AWS clients on moto and the subprocesses' environment.
    pub(super) async fn connect(stack: &Stack, work_dir: &Path) -> Demo {
        let vars = &stack.vars;
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
            .endpoint_url(&stack.moto_url)
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
        Demo {
            out: Out {
                color,
                section: 0,
                failures: 0,
            },
            bin: stack.bin.clone(),
            config_path: work_dir.join("nodereaper.toml"),
            child_env,
            ec2: aws_sdk_ec2::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
        }
    }

    /// Cleans up, creates the group and the two instances outside it, and
    /// registers a node and client for each (plus the web clients' vault).
    pub(super) async fn prepare(
        &mut self,
        chef: &ChefClient,
        stack: &Stack,
    ) -> Result<(Vec<String>, Vec<Registered>)> {
        self.out.section("Cleaning up after any previous run");
        self.cleanup(chef).await?;
        self.out
            .section("Creating the Auto Scaling group demo-web in moto (4 instances)");
        let group_ids = self.create_group().await?;
        self.out.say(&format!(
            "  group {GROUP}: {} instances: {}",
            group_ids.len(),
            group_ids.join(", ")
        ));
        let server_id = self.launch_standalone(PROTECTED_NODE).await?;
        let db_id = self.launch_standalone(DB_NODE).await?;
        self.out.say(&format!(
            "  outside the group: {PROTECTED_NODE} on {server_id}, {DB_NODE} on {db_id}"
        ));
        let mut nodes: Vec<Registered> = group_ids
            .iter()
            .map(|id| Registered {
                node: format!("web-{}", &id[id.len().saturating_sub(6)..]),
                instance_id: id.clone(),
                role: "web",
            })
            .collect();
        for (node, instance_id, role) in [
            (PROTECTED_NODE, server_id, "chef-server"),
            (DB_NODE, db_id, "db"),
        ] {
            nodes.push(Registered {
                node: node.into(),
                instance_id,
                role,
            });
        }
        self.register(chef, stack, &nodes).await?;
        Ok((group_ids, nodes))
    }

    /// A node and a client per instance, and the vault the web clients read.
    async fn register(
        &mut self,
        chef: &ChefClient,
        stack: &Stack,
        nodes: &[Registered],
    ) -> Result<()> {
        self.out
            .section("Registering a Chef node and API client for every instance");
        for r in nodes {
            chef.create_node(&node_json(r))
                .await
                .with_context(|| format!("cannot create node {}", r.node))?;
            chef.create_client(&r.node, None, false)
                .await
                .with_context(|| format!("cannot create client {}", r.node))?;
        }
        self.out.say(&format!(
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
        let admin = (stack.admin_name.as_str(), Path::new(&stack.admin_key));
        estate::create_vault(chef, admin, &web).await?;
        self.out.say(
            "  and a chef-vault item the web clients can read (knife vault create ... -S 'role:web'):",
        );
        estate::show_vault(&self.out, chef).await
    }

    /// Shows the configuration, runs `nodereaper setup`, and adds the queue
    /// it made to the configuration.
    pub(super) async fn configure(&mut self, settings: &ConfigText<'_>) -> Result<Queues> {
        self.out.section("The nodereaper configuration");
        self.out.say(&format!("  {}:", short(&self.config_path)));
        self.out.block(&settings.render(None));
        self.out.section(&format!(
            "nodereaper setup --name {SETUP_NAME} --asg {GROUP}"
        ));
        let setup = self.setup().await?;
        let queues = Queues {
            queue_url: json_str(&setup, "queue_url")?,
            dlq_url: json_str(&setup, "dlq_url")?,
            topic_arn: json_str(&setup, "topic_arn")?,
        };
        std::fs::write(&self.config_path, settings.render(Some(&queues.queue_url)))?;
        self.out.say(&format!(
            "  The queue URL from `setup --output json` goes into the configuration:\n  \
             [[queues]] url = \"{}\"",
            queues.queue_url
        ));
        Ok(queues)
    }

    /// Scales the group in; (terminated, remaining) instance ids.
    pub(super) async fn scale_in(
        &mut self,
        group_ids: &[String],
    ) -> Result<(Vec<String>, Vec<String>)> {
        self.out.section(&format!(
            "Scaling {GROUP} in from {BEFORE} to {AFTER} instance"
        ));
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(GROUP)
            .min_size(0)
            .desired_capacity(AFTER)
            .send()
            .await
            .context("UpdateAutoScalingGroup")?;
        let remaining = self.group_instances().await?;
        let terminated: Vec<String> = group_ids
            .iter()
            .filter(|id| !remaining.contains(id))
            .cloned()
            .collect();
        let states = self.ec2_states(group_ids).await?;
        self.out.say(&format!(
            "  The equivalent of `aws autoscaling update-auto-scaling-group --auto-scaling-group-name {GROUP} \
             --min-size 0 --desired-capacity {AFTER}`. EC2 now says:"
        ));
        for id in group_ids {
            self.out.say(&format!(
                "  {id}: {}",
                states.get(id).map_or("unknown", String::as_str)
            ));
        }
        self.out.check(
            terminated.len() == (BEFORE - AFTER) as usize
                && terminated
                    .iter()
                    .all(|id| states.get(id).map(String::as_str) == Some("terminated")),
            &format!("Auto Scaling terminated {} instances", BEFORE - AFTER),
        );
        Ok((terminated, remaining))
    }

    /// Publishes Auto Scaling's notifications (moto does not), plus a
    /// forged one for the running db instance.
    pub(super) async fn notify(
        &mut self,
        queues: &Queues,
        terminated: &[String],
        db_id: &str,
    ) -> Result<()> {
        self.out
            .section("Auto Scaling's notifications, delivered by SNS to the queue");
        self.out.say(&format!(
            "  moto does not publish Auto Scaling notifications, so the demo publishes to the topic\n  \
             exactly what Auto Scaling sends there: one autoscaling:EC2_INSTANCE_TERMINATE per\n  \
             terminated instance ({} messages). Plus one FORGED notification for {DB_NODE}'s\n  \
             instance {db_id}, which still runs: nodereaper must refuse it.",
            terminated.len()
        ));
        let group_arn = self.group_arn().await?;
        let mut first = None;
        for id in terminated.iter().map(String::as_str).chain([db_id]) {
            let message = asg_terminate_notification(id, &group_arn);
            self.sns
                .publish()
                .topic_arn(&queues.topic_arn)
                .subject(format!("Auto Scaling: termination for group \"{GROUP}\""))
                .message(&message)
                .send()
                .await
                .context("SNS Publish")?;
            first.get_or_insert(message);
        }
        if let (Some(m), Some(id)) = (first, terminated.first()) {
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&m)?)?;
            self.out
                .say(&format!("  The first one (the SNS Message, for {id}):"));
            self.out.block(&pretty);
        }
        let (visible, hidden) = self.depth(&queues.queue_url).await?;
        self.out.check(
            visible + hidden == terminated.len() as u64 + 1,
            &format!("{visible} messages wait in queue {SETUP_NAME}"),
        );
        Ok(())
    }

    /// `nodereaper run --exit-when-idle`, its log shown as it comes.
    pub(super) async fn run_daemon(&mut self) -> Result<()> {
        self.out
            .section("nodereaper run --exit-when-idle (the daemon, until the queue is empty)");
        let started = Instant::now();
        let run = self
            .nodereaper_streamed(&["run", "--exit-when-idle"])
            .await?;
        let took = started.elapsed().as_secs_f64();
        match run {
            Some(code) => self.out.check(
                code == 0,
                &format!("nodereaper run exited with status {code} after {took:.1}s"),
            ),
            None => self.out.check(
                false,
                &format!("nodereaper run did not exit within {RUN_TIMEOUT:?}; the demo stopped it"),
            ),
        }
        Ok(())
    }

    /// The vault and the webhooks after the run ([`estate::check`]).
    pub(super) async fn check_estate(
        &mut self,
        chef: &ChefClient,
        receiver: &estate::Receiver,
        nodes: &[Registered],
        (terminated, remaining): (&[String], &[String]),
    ) -> Result<()> {
        self.out
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
        estate::check(&mut self.out, chef, receiver, &gone, &kept_web).await
    }

    /// `nodereaper journal`, and the journal holds exactly the deletions.
    pub(super) async fn check_journal(&mut self, terminated: &[String]) -> Result<()> {
        self.out
            .section("nodereaper journal (the backup of everything deleted)");
        let journal = self.nodereaper(&[], &["journal"]).await?;
        self.out.block(&journal.stdout);
        self.out
            .check(journal.code == 0, "nodereaper journal succeeded");
        let entries = nodereaper::app::journal(&Config::load(&self.config_path)?)
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
        self.out.check(
            journaled == expected,
            &format!(
                "the journal holds exactly the {} deleted registrations (node and client JSON)",
                expected.len()
            ),
        );
        Ok(())
    }

    /// What to try next with the configuration and journal left behind.
    pub(super) fn try_next(&mut self, args: &Args, nodes: &[Registered], terminated: &[String]) {
        let restore_example = nodes
            .iter()
            .find(|r| terminated.contains(&r.instance_id))
            .map_or("NODE", |r| r.node.as_str());
        self.out.section("Try next");
        let cfg = short(&self.config_path);
        let bin = short(&self.bin);
        self.out.say(&format!(
            "  The configuration and the journal stay in {}. With the stack's AWS settings:\n  \
             set -a; . {}; set +a\n  \
             {bin} --config {cfg} restore {restore_example}   # back from the journal\n  \
             {bin} --config {cfg} sweep     # Chef nodes whose instance is gone\n  \
             {bin} --config {cfg} doctor    # checks every setting",
            short(self.config_path.parent().unwrap_or(Path::new("."))),
            short(&args.env_file)
        ));
    }
}
