//! An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, R2, Backblaze…). Archives are streamed as
//! multipart uploads while they are produced (bounded parts in flight); the sidecar object is written only
//! after the archive object completes, so a half-uploaded backup is never listed.
//!
//! - `settings`: what the bucket is and how requests are made; `client`: the SDK client and its errors
//!   translated into what to check; `list`: complete backups and stale uploads; `sink`: the multipart
//!   upload an archive is written into.

mod client;
mod list;
mod settings;
mod sink;

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, instrument};

pub use settings::{ChecksumMode, MIN_PART_SIZE, S3Settings, Sse};

use super::{ArchiveSink, BackupStore, StoredBackup};
use crate::archive::manifest::MAX_SIDECAR_BYTES;
use crate::archive::name::SIDECAR_SUFFIX;
use crate::archive::{ArchiveName, Sidecar};
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    s: S3Settings,
    backup_prefix: String,
}

impl S3Store {
    async fn delete_key(&self, key: &str) -> Result<()> {
        self.inner
            .client
            .delete_object()
            .bucket(&self.inner.s.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("delete", key, e))
    }

    /// `GetObject` of `key`; `op` names the step in an error.
    async fn get(&self, op: &str, key: &str) -> Result<GetObjectOutput> {
        self.inner
            .client
            .get_object()
            .bucket(&self.inner.s.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(op, key, e))
    }

    fn key(&self, file: &str) -> String {
        format!("{}{file}", self.inner.s.prefix)
    }
}

#[async_trait]
impl BackupStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.inner.s.bucket, self.inner.s.prefix)
    }

    async fn list(&self) -> Result<Vec<StoredBackup>> {
        self.complete_backups().await
    }

    async fn sidecar(&self, name: &str) -> Result<Sidecar> {
        let key = self.key(&format!("{name}{SIDECAR_SUFFIX}"));
        let out = self.get("get sidecar", &key).await?;
        if out.content_length().unwrap_or(0) as u64 > MAX_SIDECAR_BYTES {
            return Err(Error::archive(
                name,
                format!(
                    "sidecar object {key} is larger than {} MiB: not ours, refused unread",
                    MAX_SIDECAR_BYTES >> 20
                ),
            ));
        }
        let bytes = out.body.collect().await.map_err(|e| Error::S3 {
            op: "read sidecar".into(),
            location: key.clone(),
            problem: e.to_string(),
            hint: "connectivity to the S3 endpoint".into(),
        })?;
        serde_json::from_slice(&bytes.into_bytes())
            .map_err(|e| Error::archive(name, format!("sidecar object {key} is not valid: {e}")))
    }

    #[instrument(skip(self))]
    async fn open(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let key = self.key(name);
        let out = self.get("download", &key).await?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let mut body = out.body;
        tokio::spawn(async move {
            loop {
                let item = match body.next().await {
                    None => return,
                    Some(Ok(b)) => Ok(b),
                    Some(Err(e)) => Err(io::Error::other(format!("download interrupted: {e}"))),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Box::new(BodyReader {
            rx,
            cur: Bytes::new(),
        }))
    }

    fn create(&self, name: &ArchiveName) -> Result<Box<dyn ArchiveSink>> {
        self.multipart_sink(name)
    }

    #[instrument(skip(self))]
    async fn delete(&self, name: &str) -> Result<()> {
        for key in [self.key(&format!("{name}{SIDECAR_SUFFIX}")), self.key(name)] {
            self.delete_key(&key).await?;
        }
        info!(archive = name, "deleted from bucket");
        Ok(())
    }

    async fn remove_stale_partials(&self, age: Duration, dry_run: bool) -> Result<Vec<String>> {
        self.abort_stale_uploads(age, dry_run).await
    }
}

struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = self.cur.len().min(out.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
