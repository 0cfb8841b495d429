//! Journal in an S3 bucket, for fleets running several replicas: one object
//! per entry, `<prefix><entry id>.json` (entry id =
//! `YYYYMMDDTHHMMSS.mmmZ-<node>-<random>`, so keys sort by time), holding the
//! entry and all its objects. The PUT is acknowledged (durable in S3) before
//! the delete is sent, and asks for server-side encryption: SSE-S3
//! (`AES256`), or SSE-KMS with `journal.s3_kms_key_id`.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

use super::{Damage, JournalEntry, JournalError};
use crate::adapters::aws::AwsError;
use crate::ports::Journal;

/// [`Journal`] in S3: one object per entry under `bucket`/`prefix` (see the
/// module docs).
pub struct S3Journal {
    client: Client,
    bucket: String,
    prefix: String,
    /// SSE-KMS key; None: SSE-S3.
    kms_key_id: Option<String>,
}

impl S3Journal {
    /// A journal in `bucket` whose object keys start with `prefix` (used
    /// verbatim: include a trailing `/` for a folder), encrypted with SSE-S3
    /// until [`Self::with_kms_key`]. Makes no AWS call.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            kms_key_id: None,
        }
    }

    /// Encrypts new journal objects with this KMS key (SSE-KMS) instead of
    /// S3-managed keys (SSE-S3). `None` keeps SSE-S3.
    pub fn with_kms_key(mut self, kms_key_id: Option<String>) -> Self {
        self.kms_key_id = kms_key_id.filter(|k| !k.is_empty());
        self
    }

    async fn keys(&self) -> Result<Vec<String>, JournalError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                self.s3_err(AwsError::from_sdk(
                    "S3",
                    "ListObjectsV2",
                    self.location(),
                    e,
                ))
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| k.ends_with(".json"))
                    .map(str::to_string),
            );
        }
        keys.sort();
        Ok(keys)
    }

    /// Reads every entry. One object that cannot be read (archived to
    /// Glacier, a KMS key this identity may not use, pruned between the
    /// listing and the read, not JSON) is skipped with a warning naming its
    /// key, as the local journal skips a torn line: the others still list
    /// and restore. Only the listing itself failing fails the read.
    async fn read_all(&self) -> Result<(Vec<JournalEntry>, Vec<Damage>), JournalError> {
        self.read_since(None).await
    }

    /// Reads the entries whose id (the time it was recorded) is at or after
    /// `since` (every entry with `None`; an id without a time is read).
    async fn read_since(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<JournalEntry>, Vec<Damage>), JournalError> {
        let mut out = Vec::new();
        let mut damage = Vec::new();
        for key in self.keys().await? {
            let id = key.strip_prefix(&self.prefix).unwrap_or(&key);
            if since.is_some_and(|s| super::local::id_time(id).is_some_and(|t| t < s)) {
                continue;
            }
            let location = format!("s3://{}/{key}", self.bucket);
            let (problem, line) = match self.read_entry(&key).await {
                Ok(entry) => {
                    out.push(entry);
                    continue;
                }
                Err(Unreadable::Gone) => {
                    tracing::warn!(object = %location, "journal: skipping an entry removed while it was read (pruned?)");
                    continue;
                }
                Err(Unreadable::Read(e)) => (format!("cannot read: {e}"), None),
                Err(Unreadable::Json(e)) => (
                    format!("expected a JSON journal entry: {e}"),
                    Some(e.line()),
                ),
            };
            tracing::warn!(object = %location, "journal: skipping an unreadable entry: {problem}");
            damage.push(Damage {
                location,
                line,
                entry_id: None,
                problem,
            });
        }
        Ok((out, damage))
    }

    /// One entry object, GET and parsed.
    async fn read_entry(&self, key: &str) -> Result<JournalEntry, Unreadable> {
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(Unreadable::Gone)
            }
            Err(e) => {
                return Err(Unreadable::Read(AwsError::from_sdk(
                    "S3",
                    "GetObject",
                    key,
                    e,
                )))
            }
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| {
                Unreadable::Read(AwsError::invalid("S3", "GetObject", key, e.to_string()))
            })?
            .into_bytes();
        serde_json::from_slice(&bytes).map_err(Unreadable::Json)
    }

    /// PUTs one JSON object, encrypted at rest with the configured KMS key,
    /// else with S3-managed keys.
    async fn put(&self, key: &str, body: ByteStream) -> Result<(), JournalError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(body);
        let put = match &self.kms_key_id {
            Some(kms) => put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms),
            None => put.server_side_encryption(ServerSideEncryption::Aes256),
        };
        put.send()
            .await
            .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "PutObject", key, e)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), JournalError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "DeleteObject", key, e)))?;
        Ok(())
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn s3_err(&self, source: AwsError) -> JournalError {
        JournalError::S3 {
            location: self.location(),
            source: Box::new(source),
        }
    }
}

/// Why one entry object could not be read.
enum Unreadable {
    /// It was deleted after it was listed.
    Gone,
    /// S3 (or KMS behind it) refused or failed the GET.
    Read(AwsError),
    /// Not a journal entry.
    Json(serde_json::Error),
}

#[async_trait]
impl Journal for S3Journal {
    /// PUTs (with the entries' encryption) and deletes `<prefix>.probe`.
    async fn probe(&self) -> Result<(), JournalError> {
        let key = format!("{}.probe", self.prefix);
        self.put(&key, ByteStream::from_static(b"{}")).await?;
        self.delete(&key).await
    }

    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let key = format!("{}{}.json", self.prefix, entry.id);
        let body = serde_json::to_vec_pretty(entry).map_err(|e| JournalError::Corrupt {
            location: self.location(),
            line: 0,
            detail: format!("cannot encode entry {}: {e}", entry.id),
        })?;
        self.put(&key, ByteStream::from(body)).await
    }

    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        self.read_all().await.map(|(e, _)| e)
    }

    async fn entries_since(&self, since: DateTime<Utc>) -> Result<Vec<JournalEntry>, JournalError> {
        let (mut entries, _) = self.read_since(Some(since)).await?;
        // The key's time is when the entry was made; its field decides.
        entries.retain(|e| e.recorded_at >= since);
        Ok(entries)
    }

    async fn verify(&self) -> Result<Vec<Damage>, JournalError> {
        self.read_all().await.map(|(_, d)| d)
    }

    async fn remove_before(&self, cutoff: DateTime<Utc>) -> Result<usize, JournalError> {
        let mut removed = 0;
        for key in self.keys().await? {
            let id = key.strip_prefix(&self.prefix).unwrap_or(&key);
            if super::local::id_time(id).is_none_or(|t| t >= cutoff) {
                continue;
            }
            self.delete(&key).await?;
            removed += 1;
        }
        Ok(removed)
    }
}
