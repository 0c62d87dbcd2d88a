//! `manifest.json` (last entry of every archive) and the sidecar `<archive>.manifest.json` beside it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::name::Compression;

pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this version reads (1: no `database/globals.json`, no `pg_dump_version`).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const DUMP_CHUNK_PREFIX: &str = "database/pgdump.";
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
    pub compression: Compression,
    pub encrypted: bool,
    pub database: DatabaseInfo,
    pub kubernetes: Option<KubernetesInfo>,
    pub entries: Vec<EntryDigest>,
    /// A restore's safety backup (absent, and so false, in every other archive and in older ones).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub safety: bool,
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

/// The number of a dump chunk entry (`database/pgdump.000042` → 42).
pub fn chunk_number(path: &str) -> Option<u32> {
    let digits = path.strip_prefix(DUMP_CHUNK_PREFIX)?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn chunk_path(n: u32) -> String {
    format!("{DUMP_CHUNK_PREFIX}{n:06}")
}
