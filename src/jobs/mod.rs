//! One-shot jobs the CLI (and the daemon's periodic sweep) run: the
//! reconciliation sweep, restore from the journal, the doctor checks and the
//! AWS wiring set-up.

pub mod automate_sweep;
pub mod doctor;
pub mod doctor_estate;
pub mod permissions;
pub mod restore;
pub mod restore_estate;
pub mod routing;
pub mod setup;
pub mod sweep;
