//! `eternia-backup verify NAME|latest`: the whole-file SHA-256 against the sidecar, then every entry
//! against the manifest (decrypting when an identity is given). Changes nothing.

use std::io::{self, Read};

use tracing::{info, instrument};

use std::path::PathBuf;

use crate::archive::codec::{
    HashingReader, decoder_with_identity_file, hash_alongside, read_ahead,
};
use crate::archive::manifest::{FORMAT_VERSION, chunk_number};
use crate::archive::reader::walk;
use crate::error::{Error, Result};
use crate::postgres::dump_offsets::DumpWriter;
use crate::store::{BackupStore, StoredBackup};

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub name: String,
    pub size: u64,
    pub entries: usize,
    /// False for an encrypted archive checked without an identity (whole-file checksum only).
    pub contents_checked: bool,
    /// The archived Kubernetes objects (YAML), read during the check.
    pub objects: Vec<Vec<u8>>,
}

const MAX_OBJECT_BYTES: u64 = 4 << 20;

/// Finds a complete backup, naming an archive that exists without its sidecar as incomplete.
pub async fn find(store: &dyn BackupStore, which: &str) -> Result<StoredBackup> {
    match store.resolve(which).await {
        Err(Error::NotFound { .. }) if which != "latest" && store.open(which).await.is_ok() => {
            Err(Error::archive(
                which,
                "its sidecar manifest is missing: the backup is incomplete (interrupted, or still being written) and is not trusted",
            ))
        }
        other => other,
    }
}

/// The first store (local before S3) that has `which`; for `latest`, the store with the newest backup.
pub async fn store_holding<'a>(
    stores: &[&'a dyn BackupStore],
    which: &str,
) -> Result<&'a dyn BackupStore> {
    let mut best: Option<(&'a dyn BackupStore, jiff::Timestamp)> = None;
    let mut first_err = None;
    for &store in stores {
        match store.resolve(which).await {
            Ok(_) if which != "latest" => return Ok(store),
            Ok(b) => {
                if best.is_none_or(|(_, t)| b.created > t) {
                    best = Some((store, b.created));
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (best, first_err, stores.first()) {
        (Some((s, _)), _, _) => Ok(s),
        // Let `find` explain (e.g. an archive without its sidecar) on the first store.
        (None, _, Some(&first)) if which != "latest" => Ok(first),
        (None, Some(e), _) => Err(e),
        (None, None, _) => Err(Error::config("no store configured")),
    }
}

#[instrument(skip(store), fields(location = %store.location()))]
pub async fn verify(
    store: &dyn BackupStore,
    which: &str,
    identity_file: Option<PathBuf>,
    extract_dump: Option<PathBuf>,
) -> Result<VerifyReport> {
    let backup = find(store, which).await?;
    let name = backup.name.clone();
    let sidecar = store.sidecar(&name).await?;
    let manifest = &sidecar.manifest;
    if manifest.format_version != FORMAT_VERSION {
        return Err(Error::archive(
            &name,
            format!(
                "format version {} is not supported by this eternia-backup; upgrade it",
                manifest.format_version
            ),
        ));
    }
    if manifest.name != name || sidecar.archive.file != name {
        return Err(Error::archive(
            &name,
            "the sidecar manifest belongs to another archive",
        ));
    }

    let expected = sidecar.archive.clone();
    let check_whole = {
        let n = name.clone();
        move |size: u64, sha: String| -> Result<()> {
            if size != expected.size {
                return Err(Error::archive(
                    &n,
                    format!(
                        "the file is {size} bytes, the sidecar says {} (truncated?)",
                        expected.size
                    ),
                ));
            }
            if sha != expected.sha256 {
                return Err(Error::archive(
                    &n,
                    "the SHA-256 of the archive file does not match its sidecar manifest",
                ));
            }
            Ok(())
        }
    };

    if backup.encrypted && identity_file.is_none() {
        let whole = store.open(&name).await?;
        let n = name.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut r = HashingReader::new(whole);
            io::copy(&mut r, &mut io::sink())
                .map_err(|e| Error::archive(&n, format!("cannot read the archive: {e}")))?;
            let (size, sha) = r.finish();
            check_whole(size, sha)
        })
        .await
        .expect("verify task")?;
        info!(archive = %name, "whole-file checksum OK; contents not checked: encrypted and no AGE_IDENTITY_FILE given");
        return Ok(VerifyReport {
            name,
            size: backup.size,
            entries: 0,
            contents_checked: false,
            objects: Vec::new(),
        });
    }
    let input = store.open(&name).await?;
    let (compression, encrypted, size) =
        (backup.compression, backup.encrypted, sidecar.archive.size);
    let manifest = manifest.clone();
    let n = name.clone();
    let (summary, objects) = tokio::task::spawn_blocking(move || -> Result<_> {
        // One read of the archive: the whole-file SHA-256 is computed beside the content check. A
        // whole-file mismatch is reported before any content error (it is the more basic fact).
        let (piped, whole) = hash_alongside(input);
        let contents = check_contents(
            piped,
            &manifest,
            compression,
            encrypted,
            identity_file,
            extract_dump,
        );
        let (size, sha) = whole
            .join()
            .expect("hashing thread")
            .map_err(|e| Error::archive(&n, format!("cannot read the archive: {e}")))?;
        check_whole(size, sha)?;
        contents
    })
    .await
    .expect("verify task")?;
    info!(archive = %name, entries = summary.entries, bytes = summary.bytes, "verified: every checksum matches");
    Ok(VerifyReport {
        name,
        size,
        entries: summary.entries,
        contents_checked: true,
        objects,
    })
}

/// Every entry against the manifest; the archived objects kept, the dump chunks optionally extracted.
fn check_contents(
    input: impl Read + Send + 'static,
    manifest: &crate::archive::manifest::Manifest,
    compression: crate::archive::Compression,
    encrypted: bool,
    identity_file: Option<PathBuf>,
    extract_dump: Option<PathBuf>,
) -> Result<(crate::archive::reader::WalkSummary, Vec<Vec<u8>>)> {
    {
        // Decryption and decompression on a thread of their own, beside the checksums.
        let decoded = read_ahead(decoder_with_identity_file(
            input,
            compression,
            encrypted,
            identity_file.as_deref(),
        )?);
        // The ConfigMaps/Secrets are small (etcd caps objects at ~1.5 MiB): keep them for the restore.
        let mut objects = Vec::new();
        // With `extract_dump`, the dump chunks are written to that file on the way (for pg_restore -j):
        // it is only used once every checksum matched.
        let mut dump = match &extract_dump {
            Some(p) => Some(
                DumpWriter::create(p, manifest.database.dump_bytes)
                    .map_err(|e| dump_write_error(p, e))?,
            ),
            None => None,
        };
        let summary = walk(&manifest.name, decoded, manifest, |path, r| {
            if path.starts_with("kubernetes/") {
                let mut v = Vec::new();
                r.take(MAX_OBJECT_BYTES).read_to_end(&mut v)?;
                objects.push(v);
            } else if let (Some(w), true) = (dump.as_mut(), chunk_number(path).is_some()) {
                w.copy_from(r)?;
            }
            Ok(())
        })?;
        if let (Some(w), Some(p)) = (dump, &extract_dump) {
            w.finish().map_err(|e| dump_write_error(p, e))?;
        }
        Ok((summary, objects))
    }
}

fn dump_write_error(path: &std::path::Path, e: io::Error) -> Error {
    let mut err = Error::storage("cannot write the dump for pg_restore -j", path, e);
    if let Error::Storage { source, hint, .. } = &mut err
        && matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    {
        *hint =
            "the volume needs room for the whole dump with --jobs above 1; free some or restore \
                 without --jobs (the dump is then streamed and needs no room)"
                .into();
    }
    err
}
