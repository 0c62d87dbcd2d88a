//! Where archives live. Each location (the backup volume, an S3-compatible bucket) implements
//! [`BackupStore`]; the operations see them through [`StoreSet`], the primary store plus the optional
//! off-site copy, which writes to both, resolves `latest`/a name/`--before` and reconciles the copy.
//!
//! - `local`: the backup volume; `s3`: the bucket; `tee`: one archive written to both at once.
//! - `set`: the stores a command works on, opened from a [`StoreConfig`].

pub mod local;
pub mod s3;
pub mod set;
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
pub use set::{StoreChoice, StoreConfig, StoreSet};

/// Which backup a command means: the newest, one by name, or the newest created at or before a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Latest,
    Named(String),
    Before(Timestamp),
}

impl Which {
    /// `latest` or an archive name, as typed on the command line or in Slack.
    pub fn from_arg(arg: &str) -> Which {
        if arg == "latest" {
            Which::Latest
        } else {
            Which::Named(arg.to_owned())
        }
    }

    /// How a missing backup is named in an error.
    fn describe(&self) -> String {
        match self {
            Which::Latest => "at all (latest requested)".into(),
            Which::Named(n) => format!("named {n}"),
            Which::Before(t) => format!("created at or before {t}"),
        }
    }
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Which::Latest => f.write_str("latest"),
            Which::Named(n) => f.write_str(n),
            Which::Before(t) => write!(f, "--before={t}"),
        }
    }
}

/// A complete backup: archive plus sidecar.
#[derive(Debug, Clone, Serialize)]
pub struct StoredBackup {
    pub name: String,
    pub created: Timestamp,
    pub size: u64,
    pub compression: Compression,
    pub encrypted: bool,
    pub location: String,
    /// `backup` (scheduled or by hand) or `safety` (taken by a restore before it changed anything).
    pub kind: BackupKind,
    /// SHA-256 of the archive file, when the listing already read the sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Backup,
    Safety,
}

impl BackupKind {
    pub fn of(name: &ArchiveName) -> BackupKind {
        if name.safety {
            BackupKind::Safety
        } else {
            BackupKind::Backup
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Backup => "backup",
            BackupKind::Safety => "safety",
        }
    }
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

    /// The complete backup `which` means in this store. An archive that exists without its sidecar is
    /// named as incomplete rather than missing.
    async fn resolve(&self, which: &Which) -> Result<StoredBackup> {
        let all = self.list().await?;
        // A safety backup holds the state a restore replaced: never what `latest` or `--before` means
        // (a retried `restore latest` must restore the same archive), only restored by its name.
        let backups = || all.iter().filter(|b| b.kind == BackupKind::Backup);
        let found = match which {
            Which::Latest => backups().next_back().cloned(),
            Which::Named(n) => all.iter().find(|b| b.name == *n).cloned(),
            Which::Before(t) => backups().rev().find(|b| b.created <= *t).cloned(),
        };
        if let (None, Which::Named(n)) = (&found, which)
            && self.open(n).await.is_ok()
        {
            return Err(Error::archive(
                n,
                "its sidecar manifest is missing: the backup is incomplete (interrupted, or still being written) and is not trusted",
            ));
        }
        found.ok_or_else(|| Error::NotFound {
            what: which.describe(),
            location: self.location(),
        })
    }
}
