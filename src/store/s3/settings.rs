//! What the bucket is and how requests to it are made (`S3_*`), validated by `cli::config`.

/// `S3_CHECKSUM`: what integrity checksums requests carry. AWS's default streaming checksum trailers are
/// rejected by several S3-compatible servers, so the default sends them only when an operation requires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    WhenRequired,
    Crc32,
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix ("" or ending with '/').
    pub prefix: String,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub region: Option<String>,
    pub storage_class: Option<String>,
    pub sse: Option<Sse>,
    pub checksum: ChecksumMode,
    pub part_size: usize,
    pub max_in_flight: usize,
    pub max_attempts: u32,
}

impl S3Settings {
    pub fn normalize_prefix(p: &str) -> String {
        let p = p.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        }
    }
}

/// Parts are at least 5 MiB (the S3 minimum for all but the last) and there are at most 10,000.
pub const MIN_PART_SIZE: usize = 5 << 20;
pub(super) const MAX_PARTS: i32 = 10_000;
