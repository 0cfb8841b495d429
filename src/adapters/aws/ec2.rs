//! EC2 adapter for [`InstanceInventory`]: DescribeInstances with an
//! `instance-id` filter, so unknown ids are simply absent instead of failing
//! the whole call (as `InstanceIds=[...]` would with InvalidInstanceID.NotFound).
//!
//! A region read (unfiltered DescribeInstances, 1,000 instances a page) would
//! take fewer calls for a sweep of thousands of nodes. It was built and taken
//! out again: against moto each such page took over 30 s with 20,000
//! instances (the sweep hit its 90 s operation timeout), so it could not be
//! verified at scale here (docs/BENCHMARKS.md, "Sweep").

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

use super::AwsError;
use crate::core::ec2::{Ec2State, IDS_PER_DESCRIBE};
use crate::ports::{InstanceInfo, InstanceInventory};

/// Ids accepted per DescribeAutoScalingInstances call.
pub const IDS_PER_ASG_CALL: usize = 50;

/// EC2 (and Auto Scaling) of one region as an [`InstanceInventory`]; counts
/// the requests it makes.
pub struct Ec2Inventory {
    client: Client,
    autoscaling: aws_sdk_autoscaling::Client,
    region: String,
    /// DescribeInstances pages and DescribeAutoScalingInstances calls made.
    calls: [std::sync::atomic::AtomicU64; 2],
    /// Look up Auto Scaling lifecycle states of alive instances (events:
    /// a hook's instance runs while the group terminates it). A sweep only
    /// acts on terminated or unknown instances and needs none.
    lifecycle_states: bool,
}

impl Ec2Inventory {
    /// An inventory asking `client` (EC2) and `autoscaling` in `region`
    /// (named in errors), with Auto Scaling lifecycle states of alive
    /// instances.
    pub fn new(
        client: Client,
        autoscaling: aws_sdk_autoscaling::Client,
        region: impl Into<String>,
    ) -> Self {
        Self {
            client,
            autoscaling,
            region: region.into(),
            calls: Default::default(),
            lifecycle_states: true,
        }
    }

    /// EC2 states only, no DescribeAutoScalingInstances (for sweeps).
    pub fn states_only(mut self) -> Self {
        self.lifecycle_states = false;
        self
    }

    /// (DescribeInstances pages, DescribeAutoScalingInstances calls) so far.
    pub fn request_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.calls[0].load(Relaxed), self.calls[1].load(Relaxed))
    }

    /// Fills `asg_lifecycle_state` for instances EC2 still reports alive.
    async fn add_lifecycle_states(
        &self,
        out: &mut HashMap<String, InstanceInfo>,
    ) -> Result<(), AwsError> {
        let alive: Vec<String> = out
            .values()
            .filter(|i| !i.state.is_ending())
            .map(|i| i.instance_id.clone())
            .collect();
        for chunk in alive.chunks(IDS_PER_ASG_CALL) {
            let started = std::time::Instant::now();
            self.calls[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = self
                .autoscaling
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await;
            crate::telemetry::metrics::aws_request(
                "autoscaling",
                "DescribeAutoScalingInstances",
                result.is_ok(),
                started.elapsed(),
            );
            let page = result.map_err(|e| {
                AwsError::from_sdk(
                    "AutoScaling",
                    "DescribeAutoScalingInstances",
                    format!("{} instances in {}", chunk.len(), self.region),
                    e,
                )
            })?;
            for asg_instance in page.auto_scaling_instances() {
                if let (Some(id), Some(state)) =
                    (asg_instance.instance_id(), asg_instance.lifecycle_state())
                {
                    if let Some(info) = out.get_mut(id) {
                        info.asg_lifecycle_state = Some(state.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// The region this inventory asks.
    pub fn region(&self) -> &str {
        &self.region
    }

    async fn describe_chunk(
        &self,
        ids: &[String],
        out: &mut HashMap<String, InstanceInfo>,
    ) -> Result<(), AwsError> {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let mut pages = self
            .client
            .describe_instances()
            .filters(filter)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.calls[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let page = page.map_err(|e| {
                AwsError::from_sdk(
                    "EC2",
                    "DescribeInstances",
                    format!("{} instances in {}", ids.len(), self.region),
                    e,
                )
            })?;
            for reservation in page.reservations() {
                for instance in reservation.instances() {
                    let Some(id) = instance.instance_id() else {
                        continue;
                    };
                    let state = Ec2State::from_name(
                        instance
                            .state()
                            .and_then(|s| s.name())
                            .map_or("unknown", |n| n.as_str()),
                    );
                    let tags = instance
                        .tags()
                        .iter()
                        .filter_map(|t| {
                            Some((
                                t.key()?.to_string(),
                                t.value().unwrap_or_default().to_string(),
                            ))
                        })
                        .collect();
                    out.insert(
                        id.to_string(),
                        InstanceInfo {
                            instance_id: id.to_string(),
                            state,
                            tags,
                            asg_lifecycle_state: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl InstanceInventory for Ec2Inventory {
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut unique: Vec<String> = ids.to_vec();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(IDS_PER_DESCRIBE) {
            let started = std::time::Instant::now();
            let result = self.describe_chunk(chunk, &mut out).await;
            crate::telemetry::metrics::aws_request(
                "ec2",
                "DescribeInstances",
                result.is_ok(),
                started.elapsed(),
            );
            result?;
        }
        if self.lifecycle_states {
            self.add_lifecycle_states(&mut out).await?;
        }
        Ok(out)
    }
}
