//! `eternia-backup verify NAME|latest`: the whole-file SHA-256 against the sidecar, then every entry
//! against the manifest (decrypting when an identity is given). Changes nothing.

use std::io::{self, Read};

use tracing::{info, instrument};

use std::path::PathBuf;

use crate::archive::codec::{
    HashingReader, decoder_with_identity_file, hash_alongside, read_ahead,
};
use crate::archive::manifest::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
use crate::archive::reader::{EntryCheck, walk_checking};
use crate::error::{Error, Result};
use crate::store::{BackupStore, StoreSet, StoredBackup, Which};

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub name: String,
    pub location: String,
    pub size: u64,
    pub entries: usize,
    /// False for an encrypted archive checked without an identity (whole-file checksum only).
    pub contents_checked: bool,
}

pub use crate::archive::reader::Visit;

/// `eternia-backup verify`: finds the backup in the stores and checks it.
pub async fn run(
    stores: &StoreSet,
    which: &Which,
    identity_file: Option<PathBuf>,
) -> Result<VerifyReport> {
    let (store, backup) = stores.resolve(which).await?;
    check(store, &backup, identity_file, ())
        .await
        .map(|(r, ())| r)
}

/// Checks one backup: the manifest's format and name, the whole-file checksum, and (unless it is
/// encrypted and no identity is given) every entry, passing each to `visitor` on the way.
#[instrument(skip(store, backup, visitor), fields(location = %store.location(), archive = %backup.name))]
pub async fn check<V: Visit>(
    store: &dyn BackupStore,
    backup: &StoredBackup,
    identity_file: Option<PathBuf>,
    visitor: V,
) -> Result<(VerifyReport, V)> {
    check_opened(
        store,
        backup,
        None,
        identity_file,
        EntryCheck::Checksum,
        visitor,
    )
    .await
}

/// [`check`], reading the archive from `opened` when the caller opened it already (a restore opens it
/// before it changes anything, so that a store that cannot be read fails while nothing is changed), and
/// checking each entry as `entries` says (the whole-file checksum always).
pub async fn check_opened<V: Visit>(
    store: &dyn BackupStore,
    backup: &StoredBackup,
    opened: Option<Box<dyn Read + Send>>,
    identity_file: Option<PathBuf>,
    entries: EntryCheck,
    mut visitor: V,
) -> Result<(VerifyReport, V)> {
    let name = backup.name.clone();
    let location = store.location();
    let sidecar = store.sidecar(&name).await?;
    let manifest = &sidecar.manifest;
    check_sidecar(&sidecar, &name)?;

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

    let input = match opened {
        Some(r) => r,
        None => store.open(&name).await?,
    };
    if backup.encrypted && identity_file.is_none() {
        let whole = input;
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
        return Ok((
            VerifyReport {
                name,
                location,
                size: backup.size,
                entries: 0,
                contents_checked: false,
            },
            visitor,
        ));
    }
    let (compression, encrypted, size) =
        (backup.compression, backup.encrypted, sidecar.archive.size);
    let manifest = manifest.clone();
    let n = name.clone();
    let (summary, visitor) = tokio::task::spawn_blocking(move || -> Result<_> {
        // One read of the archive: the whole-file SHA-256 is computed beside the content check. A
        // whole-file mismatch is reported before any content error (it is the more basic fact).
        let (piped, whole) = hash_alongside(input);
        let contents = check_contents(
            piped,
            &manifest,
            compression,
            encrypted,
            identity_file,
            entries,
            &mut visitor,
        )
        .map(|summary| (summary, visitor));
        let (size, sha) = whole
            .join()
            .expect("hashing thread")
            .map_err(|e| Error::archive(&n, format!("cannot read the archive: {e}")))?;
        check_whole(size, sha)?;
        contents
    })
    .await
    .expect("verify task")?;
    let what = match entries {
        EntryCheck::Checksum => "verified: every checksum matches",
        EntryCheck::SizeOnly => {
            "read again: the whole-file checksum matches, the same bytes as verified"
        }
    };
    info!(archive = %name, entries = summary.entries, bytes = summary.bytes, "{what}");
    Ok((
        VerifyReport {
            name,
            location,
            size,
            entries: summary.entries,
            contents_checked: true,
        },
        visitor,
    ))
}

/// The sidecar is of a format this version reads, and of this archive.
pub fn check_sidecar(sidecar: &crate::archive::manifest::Sidecar, name: &str) -> Result<()> {
    let manifest = &sidecar.manifest;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&manifest.format_version) {
        return Err(Error::archive(
            name,
            format!(
                "format version {} is not supported by this eternia-backup; upgrade it",
                manifest.format_version
            ),
        ));
    }
    if !manifest.more_databases.is_empty() && manifest.format_version < 3 {
        return Err(Error::archive(
            name,
            "the manifest lists several databases but claims a format of one",
        ));
    }
    if manifest.name != name || sidecar.archive.file != name {
        return Err(Error::archive(
            name,
            "the sidecar manifest belongs to another archive",
        ));
    }
    Ok(())
}

/// Every entry against the manifest, each passed to the visitor on the way.
fn check_contents(
    input: impl Read + Send + 'static,
    manifest: &crate::archive::manifest::Manifest,
    compression: crate::archive::Compression,
    encrypted: bool,
    identity_file: Option<PathBuf>,
    entries: EntryCheck,
    visitor: &mut impl Visit,
) -> Result<crate::archive::reader::WalkSummary> {
    // Decryption and decompression on a thread of their own, beside the checksums.
    let decoded = read_ahead(decoder_with_identity_file(
        input,
        compression,
        encrypted,
        identity_file.as_deref(),
    )?);
    walk_checking(&manifest.name, decoded, manifest, entries, |path, r| {
        visitor.entry(path, r)
    })
}
