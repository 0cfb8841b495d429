//! Auto Scaling group tags: the group tag that names an event's Chef target
//! (routing rule 3). Group tags outlive the group's instances, so a
//! terminated instance's group still answers.

use async_trait::async_trait;

use super::error::AwsError;

/// Reads one tag of an Auto Scaling group, in one account and region.
#[async_trait]
pub trait GroupTags: Send + Sync {
    /// The value of tag `key` on group `group`; `None` when the group has no
    /// such tag (or no longer exists).
    async fn group_tag(&self, group: &str, key: &str) -> Result<Option<String>, AwsError>;
}
