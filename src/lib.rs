//! tsunagi: connects CRMs to SMS.

pub mod api;
pub mod app;
pub mod capture;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod inbound;
pub mod links;
pub mod mapping;
pub mod messaging;
pub mod numbers;
pub mod otp;
pub mod providers;
pub mod replay;
pub mod reports;
pub mod store;
pub mod telemetry;
pub mod writeback;
