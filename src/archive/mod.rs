//! The archive format (version 1): a compressed tar stream of dump chunks, Kubernetes objects and a
//! final `manifest.json`, optionally age-encrypted, with a sidecar manifest beside it.

pub mod codec;
pub mod manifest;
pub mod name;
pub mod reader;
pub mod writer;

pub use manifest::{Manifest, Sidecar};
pub use name::{ArchiveName, Compression};
