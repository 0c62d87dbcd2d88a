//! Integration tests of the backup engine: the real binary, the real PostgreSQL on 127.0.0.1:5432,
//! the real `kube::Client` against an in-memory API. One test binary on purpose (link time).

mod helpers;

mod archive_safety;
mod backup_cli;
mod encryption;
mod faults;
mod fuzz_inputs;
mod kube_export;
mod kube_restore;
mod lease;
mod notifications;
mod restore;
mod restore_anywhere;
mod restore_hooks;
mod retention_cli;
mod s3;
mod secrets_leak;
mod several_databases;
mod status;
mod stream_load;
mod webhook;
