//! Journal in an S3 bucket, for fleets running several replicas: one object
//! per entry (`<prefix><entry id>.json`, entry and objects together). The PUT
//! is acknowledged (durable in S3) before the delete is sent.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{JournalEntry, JournalError};
use crate::aws::AwsError;
use crate::ports::Journal;

pub struct S3Journal {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Journal {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
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

#[async_trait]
impl Journal for S3Journal {
    /// PUTs and deletes `<prefix>.probe` the way entries are written.
    async fn probe(&self) -> Result<(), JournalError> {
        let key = format!("{}.probe", self.prefix);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "PutObject", &key, e)))?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "DeleteObject", &key, e)))?;
        Ok(())
    }

    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let key = format!("{}{}.json", self.prefix, entry.id);
        let body = serde_json::to_vec_pretty(entry).map_err(|e| JournalError::Corrupt {
            location: self.location(),
            line: 0,
            detail: format!("cannot encode entry {}: {e}", entry.id),
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "PutObject", &key, e)))?;
        Ok(())
    }

    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
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
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.s3_err(AwsError::from_sdk("S3", "GetObject", &key, e)))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| {
                    self.s3_err(AwsError::invalid("S3", "GetObject", &key, e.to_string()))
                })?
                .into_bytes();
            let entry = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                location: format!("s3://{}/{key}", self.bucket),
                line: e.line(),
                detail: format!("expected a JSON journal entry: {e}"),
            })?;
            out.push(entry);
        }
        Ok(out)
    }
}
