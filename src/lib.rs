//! eternia-backup: backup and one-command restore for a PostgreSQL-backed application on Kubernetes.
//!
//! `main` only parses the command line and calls [`app::run`]; everything else lives here.

pub mod app;
pub mod archive;
pub mod cli;
pub mod commands;
pub mod error;
pub mod kube;
pub mod lock;
pub mod memory;
pub mod notify;
pub mod postgres;
pub mod retention;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhook;

pub use error::{Error, Result};
