//! eternia-backup: backup and one-command restore for a PostgreSQL-backed application on Kubernetes.
//!
//! Dependencies point one way, top to bottom (docs/architecture.md draws the tree):
//!
//! - `cli`: clap arguments → typed configuration → an operation → printed report and exit code.
//! - `webhook`: the restore webhook (`serve`); uses `kube`, `store` and the operations, never `cli`.
//! - `commands`: the operations (`backup`, `list`, `verify`, `prune`, `restore`, `drill`).
//! - `store`, `postgres`, `kube`, `archive`, `retention`, `notify`: the work itself.
//! - `error`, `units`, `lock`, `memory`, `telemetry`, `tls`: what every layer uses.
//!
//! `main` only parses the command line and calls [`cli::run`].

pub mod cli;
pub mod webhook;

pub mod commands;

pub mod archive;
pub mod kube;
pub mod notify;
pub mod postgres;
pub mod retention;
pub mod store;

pub mod error;
pub mod interrupt;
pub mod lock;
pub mod memory;
pub mod telemetry;
pub mod tls;
pub mod units;

pub use error::{Error, Result};
