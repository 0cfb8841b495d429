//! The demo's nodereaper runs (`setup`, `run`, `journal`) and its checks of
//! the Chef server afterwards.

use super::*;

impl Demo {
    /// Runs `nodereaper setup` twice: in text to show it, then with
    /// `--output json` to read the queue URL (and to show it is idempotent).
    pub(super) async fn setup(&mut self) -> Result<Value> {
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

    pub(super) fn command(&self, env: &[(&str, &str)], args: &[&str]) -> tokio::process::Command {
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
    pub(super) fn echo(&self, env: &[(&str, &str)], args: &[&str]) {
        let vars: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        self.out.say(&format!(
            "  $ {vars}nodereaper --config {} {}",
            short(&self.config_path),
            args.join(" ")
        ));
    }

    /// Runs a nodereaper subcommand to completion, capturing its output.
    pub(super) async fn nodereaper(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<CliResult> {
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
    pub(super) async fn nodereaper_streamed(&self, args: &[&str]) -> Result<Option<i32>> {
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
    pub(super) async fn print_table(&self, chef: &ChefClient, nodes: &[Registered]) -> Result<()> {
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
    pub(super) async fn verify(
        &mut self,
        chef: &ChefClient,
        nodes: &[Registered],
        terminated: &[String],
        remaining: &[String],
        queues: &Queues,
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
        self.check_queues(queues).await
    }

    /// The queue is empty; the forged notification is in the DLQ, with why.
    async fn check_queues(&mut self, queues: &Queues) -> Result<()> {
        let (visible, hidden) = self.depth(&queues.queue_url).await?;
        self.out.check(
            visible + hidden == 0,
            &format!("queue {SETUP_NAME} is empty ({visible} visible, {hidden} in flight)"),
        );
        let dlq = self
            .sqs
            .receive_message()
            .queue_url(&queues.dlq_url)
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
