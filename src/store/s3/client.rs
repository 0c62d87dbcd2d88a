//! The SDK client (retries, timeouts, checksums, endpoint) and its failures translated into errors
//! that name the bucket, the endpoint, the likely cause and what to check.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tracing::instrument;

use super::settings::{ChecksumMode, MIN_PART_SIZE, S3Settings};
use super::{Inner, S3Store};
use crate::error::{Error, Result};

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

    fn endpoint(&self) -> String {
        self.inner
            .s
            .endpoint
            .clone()
            .unwrap_or_else(|| "AWS S3".into())
    }

    /// Maps an SDK failure to an error naming bucket, endpoint, the likely cause and what to check.
    pub(super) fn error<E>(&self, op: &str, key: &str, e: SdkError<E, HttpResponse>) -> Error
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
            _ if matches!(status, Some(409 | 412))
                || matches!(code.as_deref(), Some("PreconditionFailed" | "ConditionalRequestConflict")) =>
            (
                "an object of this name already exists (the write was conditional on it not existing)".into(),
                "another backup wrote an archive of the same second; nothing was overwritten, run the backup again",
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
}
