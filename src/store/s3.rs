//! An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Garage, R2, Backblaze…). Archives are streamed as
//! multipart uploads while they are produced (bounded parts in flight); the sidecar object is written only
//! after the archive object completes, so a half-uploaded backup is never listed.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use bytes::Bytes;
use futures::StreamExt;
use jiff::Timestamp;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, instrument, warn};

use super::{ArchiveSink, BackupStore, StoredBackup};
use crate::archive::name::SIDECAR_SUFFIX;
use crate::archive::{ArchiveName, Sidecar};
use crate::error::{Error, Result};

/// `S3_CHECKSUM`: what integrity checksums requests carry. AWS's default streaming checksum trailers are
/// rejected by several S3-compatible servers, so the default sends them only when an operation requires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    s: S3Settings,
    backup_prefix: String,
}

/// Parts are at least 5 MiB (the S3 minimum for all but the last) and there are at most 10,000.
pub const MIN_PART_SIZE: usize = 5 << 20;
const MAX_PARTS: i32 = 10_000;

impl S3Store {
    pub async fn connect(s: S3Settings, backup_prefix: &str) -> Result<S3Store> {
        if s.bucket.is_empty() {
            return Err(Error::config("S3_BUCKET is empty"));
        }
        if s.part_size < MIN_PART_SIZE {
            return Err(Error::config(
                "S3_PART_SIZE must be at least 5MiB (the S3 minimum part size)",
            ));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &s.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(s.force_path_style)
            .request_checksum_calculation(match s.checksum {
                ChecksumMode::WhenRequired => RequestChecksumCalculation::WhenRequired,
                _ => RequestChecksumCalculation::WhenSupported,
            })
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(s.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(500))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        if sdk.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        if let Some(ep) = &s.endpoint {
            b = b.endpoint_url(ep);
        }
        let client = Client::from_conf(b.build());
        Ok(S3Store {
            inner: Arc::new(Inner {
                client,
                s,
                backup_prefix: backup_prefix.to_owned(),
            }),
        })
    }

    fn key(&self, file: &str) -> String {
        format!("{}{file}", self.inner.s.prefix)
    }

    fn endpoint(&self) -> String {
        self.inner
            .s
            .endpoint
            .clone()
            .unwrap_or_else(|| "AWS S3".into())
    }

    /// Maps an SDK failure to an error naming bucket, endpoint, the likely cause and what to check.
    fn error<E>(&self, op: &str, key: &str, e: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_owned);
        let http403 = status == Some(403);
        let http404 = status == Some(404);
        let (problem, hint) = match (&e, code.as_deref()) {
            (SdkError::DispatchFailure(_), _) | (SdkError::TimeoutError(_), _) => (
                format!("cannot reach the endpoint ({})", DisplayErrorContext(&e)),
                "network connectivity to the S3 endpoint (S3_ENDPOINT, DNS, NetworkPolicy, proxy)",
            ),
            (_, Some("InvalidAccessKeyId")) => (
                "the access key is not known to the server".into(),
                "AWS_ACCESS_KEY_ID (aws-access-key in the Secret)",
            ),
            (_, Some("SignatureDoesNotMatch")) => (
                "the request signature does not match".into(),
                "AWS_SECRET_ACCESS_KEY (aws-secret-key in the Secret), and S3_CHECKSUM=when-required for S3-compatible servers",
            ),
            (_, Some("RequestTimeTooSkewed")) => (
                "the request time is too far from the server's".into(),
                "the node's clock (NTP)",
            ),
            (_, Some("NoSuchBucket")) => (
                "the bucket does not exist".into(),
                "S3_BUCKET (s3-bucket in the Secret), S3_ENDPOINT and AWS_REGION",
            ),
            (_, Some("AccessDenied")) | (_, Some("Forbidden")) => (
                format!("access denied ({})", e.message().unwrap_or("403")),
                "the credentials (wrong access or secret key) and the bucket policy: the key needs s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject and s3:AbortMultipartUpload on this bucket and prefix; also the node's clock",
            ),
            _ if http403 => (
                "access denied (HTTP 403)".into(),
                "the credentials (wrong access or secret key), the bucket policy and the node's clock",
            ),
            _ if http404 => (
                "not found (HTTP 404)".into(),
                "S3_BUCKET, S3_PREFIX and the object name",
            ),
            _ => (
                format!("{}", DisplayErrorContext(&e)),
                "the S3 endpoint's status; S3_CHECKSUM=when-required if the server rejects checksums or payload signatures",
            ),
        };
        Error::S3 {
            op: op.to_owned(),
            location: format!("s3://{}/{key} at {}", self.inner.s.bucket, self.endpoint()),
            problem,
            hint: hint.into(),
        }
    }

    /// Checks bucket access before a backup starts writing.
    #[instrument(skip(self), fields(bucket = %self.inner.s.bucket))]
    pub async fn preflight(&self) -> Result<()> {
        self.inner
            .client
            .head_bucket()
            .bucket(&self.inner.s.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("check bucket", "", e))
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

    /// Uploads a complete local archive and its sidecar (used to reconcile after a failed upload).
    #[instrument(skip(self, file, sidecar), fields(archive = %sidecar.archive.file))]
    pub async fn upload_file(&self, file: std::path::PathBuf, sidecar: Sidecar) -> Result<()> {
        let name = ArchiveName::parse(&self.inner.backup_prefix, &sidecar.archive.file)
            .ok_or_else(|| {
                Error::config(format!("{} is not an archive name", sidecar.archive.file))
            })?;
        let sink = self.create(&name)?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut sink = sink;
            let mut f = std::fs::File::open(&file)
                .map_err(|e| Error::storage("cannot open archive", &file, e))?;
            io::copy(&mut f, &mut sink)
                .map_err(|e| Error::storage("cannot upload archive", &file, e))?;
            sink.commit(&sidecar)
        })
        .await
        .expect("upload task")
    }
}

#[async_trait]
impl BackupStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.inner.s.bucket, self.inner.s.prefix)
    }

    #[instrument(skip(self), fields(bucket = %self.inner.s.bucket, prefix = %self.inner.s.prefix))]
    async fn list(&self) -> Result<Vec<StoredBackup>> {
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
                location: self.location(),
                sha256: None,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    async fn sidecar(&self, name: &str) -> Result<Sidecar> {
        let key = self.key(&format!("{name}{SIDECAR_SUFFIX}"));
        let out = self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.s.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("get sidecar", &key, e))?;
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
        let out = self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.s.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.error("download", &key, e))?;
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
        let key = self.key(&name.file_name());
        let sidecar_key = self.key(&name.sidecar_name());
        let in_flight = self.inner.s.max_in_flight.max(1);
        let (tx, rx) = mpsc::channel::<Part>(in_flight);
        let upload_id = Arc::new(Mutex::new(None::<String>));
        let store = self.clone();
        let uploader = tokio::spawn(upload_parts(store, key.clone(), rx, upload_id.clone()));
        Ok(Box::new(S3Sink {
            store: self.clone(),
            rt: Handle::current(),
            buf: Vec::new(),
            next_part: 1,
            tx: Some(tx),
            permits: Arc::new(Semaphore::new(in_flight)),
            uploader: Some(uploader),
            upload_id,
            key,
            sidecar_key,
            committed: false,
        }))
    }

    #[instrument(skip(self))]
    async fn delete(&self, name: &str) -> Result<()> {
        for key in [self.key(&format!("{name}{SIDECAR_SUFFIX}")), self.key(name)] {
            self.inner
                .client
                .delete_object()
                .bucket(&self.inner.s.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.error("delete", &key, e))?;
        }
        info!(archive = name, "deleted from bucket");
        Ok(())
    }

    /// Aborts multipart uploads under the prefix that were started more than `age` ago.
    #[instrument(skip(self))]
    async fn remove_stale_partials(&self, age: Duration, dry_run: bool) -> Result<Vec<String>> {
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

/// `x-amz-server-side-encryption` and the KMS key id, for every object written.
fn sse_headers(sse: &Option<Sse>) -> (Option<ServerSideEncryption>, Option<String>) {
    match sse {
        None => (None, None),
        Some(Sse::Aes256) => (Some(ServerSideEncryption::Aes256), None),
        Some(Sse::Kms { key_id }) => (Some(ServerSideEncryption::AwsKms), key_id.clone()),
    }
}

/// A part on its way: number, bytes, and the permit that bounds how many parts exist in memory.
type Part = (i32, Vec<u8>, OwnedSemaphorePermit);

/// The background half of a multipart upload: creates it, uploads parts with at most
/// `max_in_flight` concurrent requests, and returns the completed parts in order.
async fn upload_parts(
    store: S3Store,
    key: String,
    rx: mpsc::Receiver<Part>,
    upload_id: Arc<Mutex<Option<String>>>,
) -> Result<Vec<CompletedPart>> {
    let s = &store.inner.s;
    let algorithm = match s.checksum {
        ChecksumMode::WhenRequired => None,
        ChecksumMode::Crc32 => Some(ChecksumAlgorithm::Crc32),
        ChecksumMode::Sha256 => Some(ChecksumAlgorithm::Sha256),
    };
    let (sse, kms_key) = sse_headers(&s.sse);
    let created = store
        .inner
        .client
        .create_multipart_upload()
        .bucket(&s.bucket)
        .key(&key)
        .content_type("application/octet-stream")
        .set_storage_class(s.storage_class.as_deref().map(StorageClass::from))
        .set_server_side_encryption(sse)
        .set_ssekms_key_id(kms_key)
        .set_checksum_algorithm(algorithm.clone())
        .send()
        .await
        .map_err(|e| store.error("start multipart upload", &key, e))?;
    let id = created.upload_id().unwrap_or_default().to_owned();
    *upload_id.lock().expect("upload id lock") = Some(id.clone());
    debug!(key, "multipart upload started");

    let parts = tokio_stream_from(rx)
        .map(|(n, data, permit)| {
            let (store, key, id, algorithm) =
                (store.clone(), key.clone(), id.clone(), algorithm.clone());
            async move {
                let _permit = permit; // released when this part is uploaded (or failed)
                let len = data.len();
                let out = store
                    .inner
                    .client
                    .upload_part()
                    .bucket(&store.inner.s.bucket)
                    .key(&key)
                    .upload_id(&id)
                    .part_number(n)
                    .set_checksum_algorithm(algorithm)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| store.error(&format!("upload part {n}"), &key, e))?;
                debug!(part = n, bytes = len, "part uploaded");
                Ok::<_, Error>(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag().map(str::to_owned))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                        .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
                        .build(),
                )
            }
        })
        .buffered(s.max_in_flight.max(1));
    futures::pin_mut!(parts);
    let mut done = Vec::new();
    while let Some(p) = parts.next().await {
        done.push(p?);
    }
    Ok(done)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct S3Sink {
    store: S3Store,
    rt: Handle,
    buf: Vec<u8>,
    next_part: i32,
    tx: Option<mpsc::Sender<Part>>,
    /// `max_in_flight` permits: a part is only filled while fewer than that many are being uploaded.
    permits: Arc<Semaphore>,
    uploader: Option<tokio::task::JoinHandle<Result<Vec<CompletedPart>>>>,
    upload_id: Arc<Mutex<Option<String>>>,
    key: String,
    sidecar_key: String,
    committed: bool,
}

impl S3Sink {
    /// Hands a full part to the uploader; blocks while `max_in_flight` parts are already on their way.
    fn send_part(&mut self) -> io::Result<()> {
        if self.next_part > MAX_PARTS {
            return Err(io::Error::other(
                "the archive needs more than 10,000 parts: raise S3_PART_SIZE",
            ));
        }
        let permit = self
            .rt
            .block_on(self.permits.clone().acquire_owned())
            .map_err(|_| io::Error::other("upload already finished"))?;
        let part = std::mem::take(&mut self.buf);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        if tx.blocking_send((self.next_part, part, permit)).is_err() {
            // The uploader stopped: its own error (bucket, cause, what to check) is the one to report.
            let why = match self.uploader.take().map(|u| self.rt.block_on(u)) {
                Some(Ok(Err(e))) => e.to_string(),
                _ => "the S3 upload stopped".to_owned(),
            };
            return Err(io::Error::other(why));
        }
        self.next_part += 1;
        Ok(())
    }

    fn finish(&mut self, sidecar: &Sidecar) -> Result<()> {
        if !self.buf.is_empty() || self.next_part == 1 {
            // A failed send already carries the uploader's own error.
            self.send_part().map_err(|e| Error::S3 {
                op: "upload".into(),
                location: format!("s3://{}/{}", self.store.inner.s.bucket, self.key),
                problem: e.to_string(),
                hint: "the error above names what to check".into(),
            })?;
        }
        self.tx = None;
        let Some(uploader) = self.uploader.take() else {
            return Err(Error::S3 {
                op: "upload".into(),
                location: format!("s3://{}/{}", self.store.inner.s.bucket, self.key),
                problem: "the upload had already stopped".into(),
                hint: "the error logged before this one".into(),
            });
        };
        let parts = self.rt.block_on(uploader).map_err(|e| Error::S3 {
            op: "upload".into(),
            location: self.key.clone(),
            problem: format!("upload task failed: {e}"),
            hint: "report this as a bug".into(),
        })??;
        let id = self
            .upload_id
            .lock()
            .expect("upload id lock")
            .clone()
            .unwrap_or_default();
        let s = &self.store.inner.s;
        let client = &self.store.inner.client;
        self.rt.block_on(async {
            client
                .complete_multipart_upload()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.store.error("complete multipart upload", &self.key, e))
        })?;
        self.committed = true;
        let json = serde_json::to_vec_pretty(sidecar).expect("sidecar serializes");
        let (sse, kms_key) = sse_headers(&s.sse);
        self.rt.block_on(async {
            client
                .put_object()
                .bucket(&s.bucket)
                .key(&self.sidecar_key)
                .content_type("application/json")
                .set_storage_class(s.storage_class.as_deref().map(StorageClass::from))
                .set_server_side_encryption(sse)
                .set_ssekms_key_id(kms_key)
                .body(ByteStream::from(json))
                .send()
                .await
                .map_err(|e| self.store.error("write sidecar", &self.sidecar_key, e))
        })?;
        info!(key = %self.key, parts = self.next_part - 1, "uploaded to the bucket");
        Ok(())
    }
}

impl Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.store.inner.s.part_size);
        }
        let room = self.store.inner.s.part_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.store.inner.s.part_size {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveSink for S3Sink {
    fn commit(mut self: Box<Self>, sidecar: &Sidecar) -> Result<()> {
        self.finish(sidecar)
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Not completed: stop the uploader and abort the multipart upload so no parts linger.
        self.tx = None;
        if let Some(u) = self.uploader.take() {
            u.abort();
        }
        let Some(id) = self.upload_id.lock().expect("upload id lock").clone() else {
            return;
        };
        let (store, key, rt) = (self.store.clone(), self.key.clone(), self.rt.clone());
        let aborting = std::thread::spawn(move || {
            rt.block_on(async {
                let req = store.inner.client.abort_multipart_upload().bucket(&store.inner.s.bucket).key(&key).upload_id(&id).send();
                match tokio::time::timeout(Duration::from_secs(15), req).await {
                    Ok(Ok(_)) => info!(key, "aborted the incomplete multipart upload"),
                    Ok(Err(e)) => warn!(key, error = %store.error("abort multipart upload", &key, e), "could not abort; prune will"),
                    Err(_) => warn!(key, "aborting the multipart upload timed out; prune will retry"),
                }
            })
        });
        let _ = aborting.join();
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
