//! The deletion journal: a restorable backup of every object before it is
//! deleted. No backup, no delete.
//!
//! Layout of the local journal directory:
//! - `index.jsonl`: one [`JournalEntry`] summary per line (without the objects);
//! - `objects/<entry id>.node.json` and `objects/<entry id>.client.json`.
//!
//! Both are fsynced (files and directory) before [`Journal::record`] returns.

pub mod local;
pub mod s3;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Classify, Retry};

pub use local::LocalJournal;
pub use s3::S3Journal;

/// One deletion, as backed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Unique, sortable: `20261125T101500.123Z-<node>-<random>`.
    pub id: String,
    pub recorded_at: DateTime<Utc>,
    /// `event`, `deregister` or `sweep`.
    pub source: String,
    /// Why it was deleted (human text).
    pub reason: String,
    pub message_id: Option<String>,
    pub instance_id: Option<String>,
    pub node_name: String,
    pub client_name: Option<String>,
    pub chef_server: String,
    /// Full node JSON as read just before deletion (None: there was no node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Value>,
    /// Full client JSON as read just before deletion (None: there was no client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
}

impl JournalEntry {
    /// A new entry with a fresh id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: &str,
        reason: impl Into<String>,
        message_id: Option<String>,
        instance_id: Option<String>,
        node_name: &str,
        client_name: Option<String>,
        chef_server: &str,
        node: Option<Value>,
        client: Option<Value>,
    ) -> Self {
        let now = Utc::now();
        let suffix: u32 = rand::random();
        let safe_name: String = node_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        Self {
            id: format!(
                "{}-{safe_name}-{suffix:08x}",
                now.format("%Y%m%dT%H%M%S%.3fZ")
            ),
            recorded_at: now,
            source: source.into(),
            reason: reason.into(),
            message_id,
            instance_id,
            node_name: node_name.into(),
            client_name,
            chef_server: chef_server.into(),
            node,
            client,
        }
    }

    /// The entry without the object bodies (what the index holds).
    pub fn summary(&self) -> JournalEntry {
        JournalEntry {
            node: None,
            client: None,
            ..self.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {location}: {detail}: {source}")]
    Io {
        location: String,
        detail: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {location}: line {line}: {detail}")]
    Corrupt {
        location: String,
        line: usize,
        detail: String,
    },
    #[error("journal {location}: {source}")]
    S3 {
        location: String,
        #[source]
        source: Box<crate::aws::AwsError>,
    },
}

impl Classify for JournalError {
    fn retry(&self) -> Retry {
        match self {
            // A full disk or an S3 outage may pass; either way nothing is deleted.
            JournalError::Io { .. } => Retry::Transient,
            JournalError::S3 { source, .. } => source.retry(),
            JournalError::Corrupt { .. } => Retry::Permanent,
        }
    }
}

/// Filters for `nodereaper journal` and `restore --since`.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub since: Option<DateTime<Utc>>,
    pub node: Option<String>,
    pub instance: Option<String>,
}

impl EntryFilter {
    pub fn matches(&self, e: &JournalEntry) -> bool {
        self.since.is_none_or(|s| e.recorded_at >= s)
            && self.node.as_ref().is_none_or(|n| &e.node_name == n)
            && self
                .instance
                .as_ref()
                .is_none_or(|i| e.instance_id.as_ref() == Some(i))
    }
}
