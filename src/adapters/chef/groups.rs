//! Groups and keyless clients on Chef Infra Server (see
//! [`crate::core::groups`] for the server files followed): GET/PUT
//! /groups/NAME, GET /groups, and POST /clients without a key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::ChefClient;
use super::response::{object_name, snippet};
use super::ChefError;
use crate::core::groups::Group;

/// How long a group read for the protection check may be reused: a client
/// added to `admins` (or a `protect.client_groups` group) is protected at
/// most this long after the change.
pub const GROUP_CACHE_TTL: Duration = Duration::from_secs(60);

/// Groups read recently: name -> (when, answer).
#[derive(Default)]
pub struct GroupCache(Mutex<HashMap<String, (Instant, Option<Group>)>>);

impl GroupCache {
    fn get(&self, name: &str, max_age: Duration) -> Option<Option<Group>> {
        let map = self.0.lock().ok()?;
        let (at, group) = map.get(name)?;
        (at.elapsed() < max_age).then(|| group.clone())
    }

    fn put(&self, name: &str, group: Option<Group>) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(name.to_string(), (Instant::now(), group));
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(name);
        }
    }
}

impl ChefClient {
    fn bad_answer(&self, method: &str, segments: &[&str], detail: String) -> ChefError {
        ChefError::BadResponse {
            server: self.server_url().to_string(),
            method: method.into(),
            object: object_name(segments),
            detail,
        }
    }

    fn server_url(&self) -> &str {
        crate::ports::ChefApi::server(self)
    }

    /// GET /groups/NAME; with `max_age`, an answer read that recently is
    /// reused. None: 404.
    pub(super) async fn read_group(
        &self,
        name: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<Group>, ChefError> {
        if let Some(cached) = max_age.and_then(|age| self.groups.get(name, age)) {
            return Ok(cached);
        }
        let segments = ["groups", name];
        let group = match self.get_object(&segments).await? {
            None => None,
            Some(answer) => Some(Group::from_answer(&answer).ok_or_else(|| {
                self.bad_answer(
                    "GET",
                    &segments,
                    format!(
                        "expected {{groupname, actors, users, clients, groups}}: {}",
                        snippet(answer.to_string().as_bytes())
                    ),
                )
            })?),
        };
        self.groups.put(name, group.clone());
        Ok(group)
    }

    /// GET /groups: `{NAME: URI, ...}`.
    pub(super) async fn group_names(&self) -> Result<Vec<String>, ChefError> {
        let segments = ["groups"];
        let listing = self.get_object(&segments).await?.ok_or_else(|| {
            self.bad_answer("GET", &segments, "404: no groups endpoint here".into())
        })?;
        match listing.as_object() {
            Some(map) => Ok(map.keys().cloned().collect()),
            None => Err(self.bad_answer(
                "GET",
                &segments,
                "expected a JSON object mapping group names to URLs".into(),
            )),
        }
    }

    /// PUT /groups/NAME with the members of `group`.
    pub(super) async fn write_group(&self, group: &Group) -> Result<(), ChefError> {
        let segments = ["groups", group.name.as_str()];
        self.groups.forget(&group.name);
        self.write_object(Method::PUT, &segments, &group.put_body())
            .await
            .map(drop)
    }

    /// POST /clients with neither `public_key` nor `create_key`.
    pub(super) async fn create_keyless(
        &self,
        name: &str,
        validator: bool,
    ) -> Result<(), ChefError> {
        let info = self.detect_server().await?;
        if !info.has_keys_endpoint() {
            return Err(self.bad_answer(
                "POST",
                &["clients"],
                format!(
                    "{} API v{} cannot create a client without a key",
                    info.kind, info.api_version
                ),
            ));
        }
        let body = info.create_keyless_client_body(name, validator);
        let answer: Value = self.write_object(Method::POST, &["clients"], &body).await?;
        if crate::core::chef::created_private_key(&answer).is_some() {
            // Never expected (no create_key sent); a key we did not ask for
            // would otherwise be lost silently.
            tracing::warn!(
                client = name,
                "the server generated a key for a client created without one"
            );
        }
        Ok(())
    }
}
