//! The demo's AWS side (moto): the group, its instances, the queues, and
//! the cleanup of an earlier run.

use super::*;

impl Demo {
    /// Removes what a previous demo run left: the group and its launch
    /// template, the instances outside it, the demo's Chef objects and the
    /// messages in its queues. Chef objects are gone anyway when goiardi
    /// restarted (it keeps everything in memory).
    pub(super) async fn cleanup(&mut self, chef: &ChefClient) -> Result<()> {
        let mut removed = self.cleanup_aws().await?;
        removed.extend(cleanup_chef(chef).await?);
        removed.extend(self.cleanup_queues().await?);
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

    /// The group, its launch template and the demo's instances outside it.
    async fn cleanup_aws(&self) -> Result<Vec<String>> {
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
        Ok(removed)
    }

    /// The messages left in the demo's queues.
    async fn cleanup_queues(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
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
        Ok(removed)
    }

    /// Deletes every message of a queue; returns how many. (PurgeQueue is
    /// allowed once a minute only, and moto enforces that.) Messages still
    /// in flight after an interrupted run are purged.
    pub(super) async fn drain(&self, url: &str) -> Result<u64> {
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
    pub(super) async fn create_group(&self) -> Result<Vec<String>> {
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

    pub(super) async fn group_instances(&self) -> Result<Vec<String>> {
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

    pub(super) async fn group_arn(&self) -> Result<String> {
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
    pub(super) async fn launch_standalone(&self, name: &str) -> Result<String> {
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
    pub(super) async fn ec2_states(&self, ids: &[String]) -> Result<HashMap<String, String>> {
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
    pub(super) async fn depth(&self, url: &str) -> Result<(u64, u64)> {
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
}

/// The demo's nodes and clients.
async fn cleanup_chef(chef: &ChefClient) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let ours = |name: &str| name.starts_with("web-") || name == PROTECTED_NODE || name == DB_NODE;
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
    Ok(removed)
}

/// Names of every API client (`GET /clients`).
pub(super) async fn list_clients(chef: &ChefClient) -> Result<Vec<String>> {
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

/// A random UUID (version 4 layout), as AWS uses for request and activity ids.
pub(super) fn uuid() -> String {
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
pub(super) fn node_json(r: &Registered) -> Value {
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
pub(super) fn asg_terminate_notification(instance_id: &str, group_arn: &str) -> String {
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
