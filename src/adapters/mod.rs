//! The outside world behind the [`crate::ports`] traits: the Chef server
//! (signed HTTP), AWS (SQS, EC2, Auto Scaling, STS, Secrets Manager/SSM) and
//! the deletion journal (local directory or S3).

pub mod automate;
pub mod aws;
pub mod chef;
pub mod estate_http;
pub mod journal;
pub mod secrets;
pub mod vault;
pub mod webhook;
