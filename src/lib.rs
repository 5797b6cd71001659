//! tsunagi: connects CRMs to SMS.

pub mod api;
pub mod app;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod providers;
pub mod store;
pub mod telemetry;
