//! [`DataBags`] over the signed Chef client: `/data`, `/data/BAG`,
//! `/data/BAG/ITEM` (Chef Infra Server and goiardi alike).

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::adapters::chef::{ChefClient, ChefError};
use crate::ports::estate::DataBags;
use crate::ports::Deleted;

/// The error for a non-success answer to `method` on `object`.
fn status_error(
    chef: &ChefClient,
    method: &Method,
    object: &str,
    status: StatusCode,
    body: &[u8],
) -> ChefError {
    let detail: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let (server, method, object) = (chef_server(chef), method.to_string(), object.to_string());
    match status {
        StatusCode::UNAUTHORIZED => ChefError::Unauthorized {
            server,
            method,
            object,
            client: chef.client_name().to_string(),
            detail,
        },
        StatusCode::FORBIDDEN => ChefError::Forbidden {
            server,
            method,
            object,
            client: chef.client_name().to_string(),
            detail,
        },
        _ => ChefError::Status {
            server,
            method,
            object,
            status: status.as_u16(),
            detail,
        },
    }
}

fn chef_server(chef: &ChefClient) -> String {
    use crate::ports::ChefApi;
    chef.server().to_string()
}

/// Sends; `Ok(None)` for a 404, the JSON body (or `Null` when empty) for a
/// success, an error naming the object otherwise.
async fn call(
    chef: &ChefClient,
    method: Method,
    segments: &[&str],
    body: Option<&Value>,
) -> Result<Option<Value>, ChefError> {
    let object = format!("/{}", segments.join("/"));
    let resp = chef.send(method.clone(), segments, &[], body).await?;
    if resp.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status.is_success() {
        return Err(status_error(
            chef,
            &method,
            &object,
            resp.status,
            &resp.body,
        ));
    }
    if resp.body.is_empty() {
        return Ok(Some(Value::Null));
    }
    serde_json::from_slice(&resp.body)
        .map(Some)
        .map_err(|e| ChefError::BadResponse {
            server: chef_server(chef),
            method: method.to_string(),
            object,
            detail: format!("body is not JSON: {e}"),
        })
}

/// The keys of a `{name: url}` listing.
fn names(listing: Value) -> Vec<String> {
    listing
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[async_trait]
impl DataBags for ChefClient {
    async fn list_bags(&self) -> Result<Vec<String>, ChefError> {
        Ok(call(self, Method::GET, &["data"], None)
            .await?
            .map(names)
            .unwrap_or_default())
    }

    async fn list_items(&self, bag: &str) -> Result<Option<Vec<String>>, ChefError> {
        Ok(call(self, Method::GET, &["data", bag], None)
            .await?
            .map(names))
    }

    async fn get_item(&self, bag: &str, id: &str) -> Result<Option<Value>, ChefError> {
        call(self, Method::GET, &["data", bag, id], None).await
    }

    async fn put_item(&self, bag: &str, id: &str, item: &Value) -> Result<(), ChefError> {
        match call(self, Method::PUT, &["data", bag, id], Some(item)).await? {
            Some(_) => Ok(()),
            None => Err(status_error(
                self,
                &Method::PUT,
                &format!("/data/{bag}/{id}"),
                StatusCode::NOT_FOUND,
                b"the item (or its data bag) is gone",
            )),
        }
    }

    async fn create_item(&self, bag: &str, item: &Value) -> Result<(), ChefError> {
        match call(self, Method::POST, &["data", bag], Some(item)).await? {
            Some(_) => Ok(()),
            None => Err(status_error(
                self,
                &Method::POST,
                &format!("/data/{bag}"),
                StatusCode::NOT_FOUND,
                b"the data bag is gone",
            )),
        }
    }

    async fn delete_item(&self, bag: &str, id: &str) -> Result<Deleted, ChefError> {
        Ok(
            match call(self, Method::DELETE, &["data", bag, id], None).await? {
                Some(_) => Deleted::Removed,
                None => Deleted::AlreadyGone,
            },
        )
    }
}
