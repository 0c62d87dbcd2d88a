//! Writing to the bucket: an archive streamed as a multipart upload (parts uploaded while the next is
//! filled, at most `max_in_flight` in memory), committed by completing the upload and then writing the
//! sidecar object; dropped without commit, the upload is aborted.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::{debug, info, instrument, warn};

use super::S3Store;
use super::settings::{ChecksumMode, MAX_PARTS, Sse};
use crate::archive::{ArchiveName, Sidecar};
use crate::error::{Error, Result};
use crate::store::{ArchiveSink, BackupStore};

impl S3Store {
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

    pub(super) fn multipart_sink(&self, name: &ArchiveName) -> Result<Box<dyn ArchiveSink>> {
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
                // Never replace an archive of the same name (two runs in one second).
                .if_none_match("*")
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
        // A sidecar already under this name belongs to another run of the same second. Servers that
        // ignore `If-None-Match` (Garage) would let the write below replace it: look first, and take this
        // run's archive back out so that nothing pairs it with the other run's sidecar.
        if self.rt.block_on(self.store.exists(&self.sidecar_key))? {
            let _ = self.rt.block_on(self.store.delete_key(&self.key));
            return Err(Error::S3 {
                op: "write sidecar".into(),
                location: format!("s3://{}/{}", s.bucket, self.sidecar_key),
                problem: "an object of this name already exists: another backup wrote this second's archive".into(),
                hint: "nothing was overwritten; run the backup again".into(),
            });
        }
        let json = serde_json::to_vec_pretty(sidecar).expect("sidecar serializes");
        let (sse, kms_key) = sse_headers(&s.sse);
        self.rt.block_on(async {
            client
                .put_object()
                .bucket(&s.bucket)
                .key(&self.sidecar_key)
                .if_none_match("*")
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
