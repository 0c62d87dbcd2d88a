//! `manifest.json` (last entry of every archive) and the sidecar `<archive>.manifest.json` beside it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::name::Compression;

/// 3: `finished`, and `more_databases` in a backup of several (each in a directory of its own). A binary
/// that reads only format 2 refuses it rather than restore part of it.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this version reads (1: no `database/globals.json`, no `pg_dump_version`; 2: no
/// `finished`, one database).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Where the first (or only) database's entries are: `database/pgdump.NNNNNN`, `database/globals.json`.
pub const FIRST_DATABASE_DIR: &str = "database";
/// The manifest is small; anything larger is not one of ours and is refused without reading it whole.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// The largest sidecar read: the manifest plus the archive's digest. A larger file is refused unread.
pub const MAX_SIDECAR_BYTES: u64 = MAX_MANIFEST_BYTES + (64 << 10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub tool_version: String,
    pub name: String,
    pub created: Timestamp,
    /// When the archive was complete (format 3 on): the backup took `finished - created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    pub compression: Compression,
    pub encrypted: bool,
    /// The first (or only) database: the one the backup's connection names.
    pub database: DatabaseInfo,
    /// The further databases of a backup of several (format 3), each in its own directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_databases: Vec<DatabaseInfo>,
    pub kubernetes: Option<KubernetesInfo>,
    pub entries: Vec<EntryDigest>,
    /// A restore's safety backup (absent, and so false, in every other archive and in older ones).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub safety: bool,
    /// The Kubernetes objects alone, no dump (a swap restore's safety backup; `database` then only
    /// names the database, with no chunks).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub objects_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseInfo {
    pub name: String,
    pub server_version: String,
    /// The `pg_dump` that wrote the dump (format 2 on; absent when it could not be told).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump_version: Option<String>,
    /// `custom` (pg_dump -Fc -Z0), split into `database/pgdump.NNNNNN` chunks.
    pub dump_format: String,
    pub dump_bytes: u64,
    pub chunks: u32,
    pub tables: Vec<TableCount>,
    /// The directory of its entries (absent: `database`, the first database's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl DatabaseInfo {
    /// An archive without a dump: the database named, nothing of it kept.
    pub fn none(name: &str) -> DatabaseInfo {
        DatabaseInfo {
            name: name.into(),
            server_version: String::new(),
            pg_dump_version: None,
            dump_format: "none".into(),
            dump_bytes: 0,
            chunks: 0,
            tables: Vec::new(),
            dir: None,
        }
    }

    pub fn dir(&self) -> &str {
        self.dir.as_deref().unwrap_or(FIRST_DATABASE_DIR)
    }

    /// The number of one of this database's dump chunks (`<dir>/pgdump.000042` → 42).
    pub fn chunk_number(&self, path: &str) -> Option<u32> {
        chunk_number_in(self.dir(), path)
    }

    pub fn chunk_path(&self, n: u32) -> String {
        chunk_path_in(self.dir(), n)
    }

    /// The entry with the roles, database state and owners (format 2 on).
    pub fn globals_entry(&self) -> String {
        format!("{}/globals.json", self.dir())
    }
}

impl Manifest {
    /// Every database in the archive, the first one first.
    pub fn databases(&self) -> impl Iterator<Item = &DatabaseInfo> {
        std::iter::once(&self.database).chain(&self.more_databases)
    }

    pub fn find_database(&self, name: &str) -> Option<&DatabaseInfo> {
        self.databases().find(|d| d.name == name)
    }

    /// The database (its index in [`Manifest::databases`]) and number of a dump chunk entry.
    pub fn chunk_of(&self, path: &str) -> Option<(usize, u32)> {
        self.databases()
            .enumerate()
            .find_map(|(i, d)| d.chunk_number(path).map(|n| (i, n)))
    }

    /// How long the backup took (format 3 on).
    pub fn duration(&self) -> Option<std::time::Duration> {
        let f = self.finished?;
        Some(std::time::Duration::from_millis(
            f.duration_since(self.created).as_millis().max(0) as u64,
        ))
    }
}

/// The directory of the `n`th further database (1-based) of a backup of several: by number, since a
/// database's name may hold any character.
pub fn further_database_dir(n: usize) -> String {
    format!("databases/{n}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCount {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesInfo {
    pub namespace: String,
    pub config_maps: u32,
    pub secrets: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDigest {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Written beside the archive once it is complete: the same manifest plus the digest of the whole file.
/// An archive without its sidecar is incomplete and never listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub manifest: Manifest,
    pub archive: ArchiveDigest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveDigest {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

fn chunk_number_in(dir: &str, path: &str) -> Option<u32> {
    let digits = path.strip_prefix(dir)?.strip_prefix("/pgdump.")?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn chunk_path_in(dir: &str, n: u32) -> String {
    format!("{dir}/pgdump.{n:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str, dir: Option<&str>) -> DatabaseInfo {
        DatabaseInfo {
            name: name.into(),
            server_version: "15.8".into(),
            pg_dump_version: None,
            dump_format: "custom".into(),
            dump_bytes: 0,
            chunks: 1,
            tables: Vec::new(),
            dir: dir.map(Into::into),
        }
    }

    #[test]
    fn each_database_owns_the_chunks_in_its_directory_only() {
        let first = db("app", None);
        let second = db("analytics", Some(&further_database_dir(1)));
        assert_eq!(first.chunk_path(7), "database/pgdump.000007");
        assert_eq!(second.chunk_path(7), "databases/1/pgdump.000007");
        assert_eq!(first.chunk_number("database/pgdump.000007"), Some(7));
        assert_eq!(first.chunk_number("databases/1/pgdump.000007"), None);
        assert_eq!(second.chunk_number("databases/1/pgdump.000007"), Some(7));
        assert_eq!(second.chunk_number("databases/10/pgdump.000007"), None);
        assert_eq!(first.chunk_number("database/pgdump.7"), None);
        assert_eq!(second.globals_entry(), "databases/1/globals.json");
    }
}
