//! Writes the tar stream: entries with their SHA-256 recorded, then `manifest.json` last.

use std::io::{self, Write};

use jiff::Timestamp;

use super::codec::{EncodeOptions, Encoder, HashingWriter, sha256_hex};
use super::manifest::{EntryDigest, MANIFEST_ENTRY, Manifest};

pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Encoder<HashingWriter<W>>>,
    entries: Vec<EntryDigest>,
    mtime: u64,
}

/// What the storage received: size and SHA-256 of the whole archive file.
#[derive(Debug, Clone)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(sink: W, opts: &EncodeOptions, created: Timestamp) -> io::Result<Self> {
        let encoder = Encoder::new(HashingWriter::new(sink), opts)?;
        let mut tar = tar::Builder::new(encoder);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            tar,
            entries: Vec::new(),
            mtime: created.as_second().max(0) as u64,
        })
    }

    /// Appends one regular file. `sha256` may be given when the caller already hashed `data`.
    pub fn append(&mut self, path: &str, data: &[u8], sha256: Option<String>) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        self.tar.append_data(&mut header, path, data)?;
        self.entries.push(EntryDigest {
            path: path.to_owned(),
            size: data.len() as u64,
            sha256: sha256.unwrap_or_else(|| sha256_hex(data)),
        });
        Ok(())
    }

    pub fn entries(&self) -> &[EntryDigest] {
        &self.entries
    }

    /// Appends `manifest.json` built from the recorded entries, closes every layer and returns the sink.
    pub fn finish(
        mut self,
        build: impl FnOnce(Vec<EntryDigest>) -> Manifest,
    ) -> io::Result<(W, Manifest, Written)> {
        let manifest = build(std::mem::take(&mut self.entries));
        let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(self.mtime);
        self.tar
            .append_data(&mut header, MANIFEST_ENTRY, json.as_slice())?;
        let encoder = self.tar.into_inner()?;
        let (sink, size, sha256) = encoder.finish()?.finish();
        Ok((sink, manifest, Written { size, sha256 }))
    }
}
