//! [`GroupTags`] on the Auto Scaling API: DescribeTags filtered to one group
//! and one key.

use async_trait::async_trait;
use aws_sdk_autoscaling::types::Filter;
use aws_sdk_autoscaling::Client;

use super::AwsError;
use crate::ports::GroupTags;

/// [`GroupTags`] of one account and region.
pub struct AsgGroupTags {
    client: Client,
}

impl AsgGroupTags {
    /// Wraps an Auto Scaling client already set up for the account and region.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl GroupTags for AsgGroupTags {
    async fn group_tag(&self, group: &str, key: &str) -> Result<Option<String>, AwsError> {
        let filter = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
        let started = std::time::Instant::now();
        let result = self
            .client
            .describe_tags()
            .filters(filter("auto-scaling-group", group))
            .filters(filter("key", key))
            .send()
            .await;
        crate::telemetry::metrics::aws_request(
            "autoscaling",
            "DescribeTags",
            result.is_ok(),
            started.elapsed(),
        );
        let answer = result.map_err(|e| {
            AwsError::from_sdk(
                "AutoScaling",
                "DescribeTags",
                format!("tag {key:?} of group {group}"),
                e,
            )
        })?;
        // The filters are the server's; only an exact match counts here.
        let mut values = answer
            .tags()
            .iter()
            .filter(|t| t.resource_id() == Some(group) && t.key() == Some(key))
            .filter_map(|t| t.value());
        Ok(values.next().map(str::to_owned))
    }
}
