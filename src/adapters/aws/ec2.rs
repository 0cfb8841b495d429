//! EC2 adapter for [`InstanceInventory`]: DescribeInstances with an
//! `instance-id` filter, so unknown ids are simply absent instead of failing
//! the whole call (as `InstanceIds=[...]` would with InvalidInstanceID.NotFound).
//! For a sweep's thousands of ids it reads the region page by page instead
//! ([`InstanceInventory::describe_all`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;

use super::AwsError;
use crate::core::ec2::{Ec2State, IDS_PER_DESCRIBE};
use crate::ports::{InstanceInfo, InstanceInventory};

/// From this many ids on, `describe_all` reads the region page by page
/// (1,000 instances per call) instead of asking per id (200 per call).
pub const SCAN_FROM_IDS: usize = 1000;

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
    /// [`InstanceInventory::describe_all`] reads the whole region from this
    /// many ids on.
    scan_from: usize,
    /// Instances per page of a region read (EC2 accepts 5 to 1,000).
    scan_page_size: i32,
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
            scan_from: SCAN_FROM_IDS,
            scan_page_size: 1000,
        }
    }

    /// EC2 states only, no DescribeAutoScalingInstances (for sweeps).
    pub fn states_only(mut self) -> Self {
        self.lifecycle_states = false;
        self
    }

    /// Reads the region for `describe_all` from `ids` ids on, `page_size`
    /// instances per page (tests use small values; the defaults are 1,000
    /// and 1,000).
    pub fn scan_from(mut self, ids: usize, page_size: i32) -> Self {
        self.scan_from = ids;
        self.scan_page_size = page_size;
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
            insert_instances(&page, |_| true, out);
        }
        Ok(())
    }

    /// Asks for `ids` by id, [`IDS_PER_DESCRIBE`] per call.
    async fn describe_by_id(
        &self,
        ids: &[String],
        out: &mut HashMap<String, InstanceInfo>,
    ) -> Result<(), AwsError> {
        for chunk in ids.chunks(IDS_PER_DESCRIBE) {
            let started = std::time::Instant::now();
            let result = self.describe_chunk(chunk, out).await;
            crate::telemetry::metrics::aws_request(
                "ec2",
                "DescribeInstances",
                result.is_ok(),
                started.elapsed(),
            );
            result?;
        }
        Ok(())
    }

    /// Reads the whole region, unfiltered, [`Self::scan_page_size`]
    /// instances per page, for at most `max_pages` pages; keeps the
    /// instances in `wanted`. Returns whether the read reached the end.
    async fn scan_region(
        &self,
        wanted: &HashSet<&str>,
        max_pages: usize,
        out: &mut HashMap<String, InstanceInfo>,
    ) -> Result<bool, AwsError> {
        let mut pages = self
            .client
            .describe_instances()
            .max_results(self.scan_page_size)
            .into_paginator()
            .send();
        for _ in 0..max_pages {
            let started = std::time::Instant::now();
            let Some(page) = pages.next().await else {
                return Ok(true);
            };
            self.calls[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::telemetry::metrics::aws_request(
                "ec2",
                "DescribeInstances",
                page.is_ok(),
                started.elapsed(),
            );
            let page = page.map_err(|e| {
                AwsError::from_sdk(
                    "EC2",
                    "DescribeInstances",
                    format!("all instances in {}", self.region),
                    e,
                )
            })?;
            insert_instances(&page, |id| wanted.contains(id), out);
            if page.next_token().is_none_or(str::is_empty) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Adds the instances of one DescribeInstances page that `keep` accepts.
fn insert_instances(
    page: &DescribeInstancesOutput,
    keep: impl Fn(&str) -> bool,
    out: &mut HashMap<String, InstanceInfo>,
) {
    for instance in page.reservations().iter().flat_map(|r| r.instances()) {
        let Some(id) = instance.instance_id().filter(|id| keep(id)) else {
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

/// Sorted, without duplicates.
fn unique_ids(ids: &[String]) -> Vec<String> {
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    unique
}

#[async_trait]
impl InstanceInventory for Ec2Inventory {
    async fn describe(&self, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        let unique = unique_ids(ids);
        let mut out = HashMap::with_capacity(unique.len());
        self.describe_by_id(&unique, &mut out).await?;
        if self.lifecycle_states {
            self.add_lifecycle_states(&mut out).await?;
        }
        Ok(out)
    }

    /// For many ids (a sweep of thousands of nodes), reads the region page
    /// by page instead: 1,000 instances per call against 200 ids per call.
    /// The read stops after as many pages as asking by id would take, so it
    /// never costs more than twice that. Every id the read did not see is
    /// then asked for by id: an instance launched while the pages were read
    /// may be missing from them, and only EC2 answering for that very id
    /// makes it unknown (gone).
    async fn describe_all(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, InstanceInfo>, AwsError> {
        let unique = unique_ids(ids);
        if unique.len() < self.scan_from {
            return self.describe(&unique).await;
        }
        let mut out = HashMap::with_capacity(unique.len());
        let wanted: HashSet<&str> = unique.iter().map(String::as_str).collect();
        let by_id_calls = unique.len().div_ceil(IDS_PER_DESCRIBE);
        self.scan_region(&wanted, by_id_calls, &mut out).await?;
        let unseen: Vec<String> = unique
            .iter()
            .filter(|id| !out.contains_key(id.as_str()))
            .cloned()
            .collect();
        self.describe_by_id(&unseen, &mut out).await?;
        if self.lifecycle_states {
            self.add_lifecycle_states(&mut out).await?;
        }
        Ok(out)
    }
}
