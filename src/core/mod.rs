//! Pure domain rules shared by every path (events, sweep, deregister): no I/O
//! and no dependency on adapters, actions, runners or jobs.

pub mod chef;
pub mod chef_permissions;
pub mod ec2;
pub mod error;
pub mod event;
pub mod groups;
pub mod ids;
pub mod journal;
pub mod placement;
pub mod protect;
pub mod routing;
pub mod template;
pub mod verify;
pub mod x509;
pub mod zone;
