//! Pure domain rules shared by every path (events, sweep, deregister): no I/O
//! and no dependency on adapters.

pub mod placement;
pub mod zone;
