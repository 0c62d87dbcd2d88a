//! Where archives live. Every location (the backup volume, later a bucket) implements [`BackupStore`];
//! `list`, `verify`, `prune` and `backup` only talk to the trait.

pub mod local;
pub mod s3;
pub mod select;
pub mod tee;

use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;

use crate::archive::{ArchiveName, Compression, Sidecar};
use crate::error::{Error, Result};

pub use local::LocalStore;
pub use s3::S3Store;

/// A complete backup: archive plus sidecar.
#[derive(Debug, Clone, Serialize)]
pub struct StoredBackup {
    pub name: String,
    pub created: Timestamp,
    pub size: u64,
    pub compression: Compression,
    pub encrypted: bool,
    pub location: String,
    /// SHA-256 of the archive file, when the listing already read the sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A half-written archive. Dropping it without `commit` removes what was written.
pub trait ArchiveSink: Write + Send {
    /// Makes the archive durable under its final name, then writes the sidecar that makes it complete.
    fn commit(self: Box<Self>, sidecar: &Sidecar) -> Result<()>;
}

#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Human-readable location, e.g. `local:/backups`.
    fn location(&self) -> String;

    /// Complete backups of this store's prefix, oldest first. Files that are not ours are ignored.
    async fn list(&self) -> Result<Vec<StoredBackup>>;

    /// The sidecar manifest of a complete backup.
    async fn sidecar(&self, name: &str) -> Result<Sidecar>;

    /// Opens the archive bytes for reading (from a blocking context: the reader may block).
    async fn open(&self, name: &str) -> Result<Box<dyn Read + Send>>;

    /// Starts writing a new archive; never overwrites an existing one.
    fn create(&self, name: &ArchiveName) -> Result<Box<dyn ArchiveSink>>;

    /// Deletes a backup: sidecar first (so it is no longer complete), then the archive.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Removes leftovers of interrupted backups older than `age`; returns what was (or would be) removed.
    async fn remove_stale_partials(&self, age: Duration, dry_run: bool) -> Result<Vec<String>>;

    /// `latest` or an exact archive name, among the complete backups.
    async fn resolve(&self, which: &str) -> Result<StoredBackup> {
        let all = self.list().await?;
        let found = if which == "latest" {
            all.into_iter().next_back()
        } else {
            all.into_iter().find(|b| b.name == which)
        };
        found.ok_or_else(|| Error::NotFound {
            what: if which == "latest" {
                "at all (latest requested)".into()
            } else {
                format!("named {which}")
            },
            location: self.location(),
        })
    }
}
