//! Types everything shares; pure, no I/O.

pub mod consent;
pub mod hygiene;
pub mod idempotency;
pub mod ids;
pub mod phone;
pub mod segment;
pub mod source;
pub mod state;
pub mod template;
pub mod text;
