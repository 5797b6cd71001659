//! Behaviour of tsunagi through its real HTTP API and command line.

mod capture;
mod cli;
mod errors;
mod fake_kintone;
mod fake_salesforce;
mod harness;
mod idempotency;
mod kintone;
mod messages;
mod numbers;
mod ops;
mod opt_outs;
mod otp;
mod postgres;
mod recovery;
mod replay;
mod routes;
mod salesforce;
mod salesforce_external_services;
mod sandbox;
mod scheduling;
mod segmentation;
mod senders;
mod smpp;
mod templates;
mod twilio;
