//! Listing the bucket: complete backups (an archive object with its sidecar object) and the multipart
//! uploads interrupted backups left.

use std::time::Duration;

use jiff::Timestamp;
use tracing::{debug, info, instrument};

use super::S3Store;
use crate::archive::ArchiveName;
use crate::archive::name::SIDECAR_SUFFIX;
use crate::error::Result;
use crate::store::{BackupKind, BackupStore, StoredBackup};

impl S3Store {
    /// True when an object exists under `key`.
    pub(super) async fn exists(&self, key: &str) -> Result<bool> {
        match self
            .inner
            .client
            .head_object()
            .bucket(&self.inner.s.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(self.error("check object", key, e)),
        }
    }

    /// True when this name is in use here: its archive or sidecar exists, or an upload of it is under way
    /// (another run of the same second).
    pub async fn name_taken(&self, name: &ArchiveName) -> Result<bool> {
        let (archive, sidecar) = (self.key(&name.file_name()), self.key(&name.sidecar_name()));
        if self.exists(&archive).await? || self.exists(&sidecar).await? {
            return Ok(true);
        }
        let uploads = self
            .inner
            .client
            .list_multipart_uploads()
            .bucket(&self.inner.s.bucket)
            .prefix(&archive)
            .send()
            .await
            .map_err(|e| self.error("list multipart uploads", &archive, e))?;
        Ok(uploads
            .uploads()
            .iter()
            .any(|u| u.key() == Some(archive.as_str())))
    }

    /// Every object key under the prefix, following continuation tokens.
    async fn list_keys(&self) -> Result<Vec<(String, u64)>> {
        let mut pages = self
            .inner
            .client
            .list_objects_v2()
            .bucket(&self.inner.s.bucket)
            .prefix(self.key(&format!("{}-", self.inner.backup_prefix)))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list objects", &self.inner.s.prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_owned(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
        }
        Ok(out)
    }

    #[instrument(skip(self), fields(bucket = %self.inner.s.bucket, prefix = %self.inner.s.prefix))]
    pub(super) async fn complete_backups(&self) -> Result<Vec<StoredBackup>> {
        let keys = self.list_keys().await?;
        let names: std::collections::HashSet<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let mut out = Vec::new();
        for (key, size) in &keys {
            let Some(file) = key.strip_prefix(&self.inner.s.prefix) else {
                continue;
            };
            let Some(name) = ArchiveName::parse(&self.inner.backup_prefix, file) else {
                continue;
            };
            if !names.contains(format!("{key}{SIDECAR_SUFFIX}").as_str()) {
                debug!(key, "no sidecar object: incomplete backup, not listed");
                continue;
            }
            out.push(StoredBackup {
                name: file.to_owned(),
                created: name.created,
                size: *size,
                compression: name.compression,
                encrypted: name.encrypted,
                kind: BackupKind::of(&name),
                location: self.location(),
                sha256: None,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Aborts multipart uploads under the prefix that were started more than `age` ago.
    #[instrument(skip(self))]
    pub(super) async fn abort_stale_uploads(
        &self,
        age: Duration,
        dry_run: bool,
    ) -> Result<Vec<String>> {
        let cutoff = Timestamp::now().as_second() - age.as_secs() as i64;
        let mut removed = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .inner
                .client
                .list_multipart_uploads()
                .bucket(&self.inner.s.bucket)
                .prefix(self.key(&format!("{}-", self.inner.backup_prefix)))
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.error("list multipart uploads", &self.inner.s.prefix, e))?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                if u.initiated().map(|t| t.secs()).unwrap_or(i64::MAX) > cutoff {
                    continue;
                }
                if !dry_run {
                    self.inner
                        .client
                        .abort_multipart_upload()
                        .bucket(&self.inner.s.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(|e| self.error("abort multipart upload", key, e))?;
                    info!(
                        key,
                        "aborted stale multipart upload of an interrupted backup"
                    );
                }
                removed.push(format!("{key} (multipart upload)"));
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_owned);
                id_marker = page.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() && id_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(removed)
    }
}
