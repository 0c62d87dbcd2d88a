//! Which stores a command works on, from `--store` and the S3 settings.

use crate::cli::{StoreArgs, StoreChoice};
use crate::error::{Error, Result};
use crate::store::s3::{S3Settings, Sse};
use crate::store::{BackupStore, LocalStore, S3Store};

pub struct Stores {
    pub local: Option<LocalStore>,
    pub s3: Option<S3Store>,
}

impl Stores {
    pub async fn open(
        backup_dir: &std::path::Path,
        prefix: &str,
        args: &StoreArgs,
    ) -> Result<Stores> {
        let bucket = args.s3_bucket.clone().filter(|b| !b.is_empty());
        let choice = args.store.unwrap_or(if bucket.is_some() {
            StoreChoice::Both
        } else {
            StoreChoice::Local
        });
        let local = matches!(choice, StoreChoice::Local | StoreChoice::Both)
            .then(|| LocalStore::new(backup_dir, prefix));
        let s3 = if matches!(choice, StoreChoice::S3 | StoreChoice::Both) {
            let bucket = bucket.ok_or_else(|| {
                Error::config("--store s3/both needs a bucket: set S3_BUCKET (s3-bucket in the backup-credentials Secret)")
            })?;
            Some(S3Store::connect(settings(bucket, args)?, prefix).await?)
        } else {
            None
        };
        Ok(Stores { local, s3 })
    }

    pub fn all(&self) -> Vec<&dyn BackupStore> {
        let mut v: Vec<&dyn BackupStore> = Vec::new();
        if let Some(l) = &self.local {
            v.push(l);
        }
        if let Some(s) = &self.s3 {
            v.push(s);
        }
        v
    }
}

fn settings(bucket: String, a: &StoreArgs) -> Result<S3Settings> {
    let sse = match a.s3_sse.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("AES256") => Some(Sse::Aes256),
        Some(s) if s.eq_ignore_ascii_case("aws:kms") => Some(Sse::Kms {
            key_id: a.s3_sse_kms_key_id.clone().filter(|k| !k.is_empty()),
        }),
        Some(other) => {
            return Err(Error::config(format!(
                "S3_SSE={other:?} is not supported; use AES256 or aws:kms"
            )));
        }
    };
    let part_size = usize::try_from(a.s3_part_size)
        .ok()
        .filter(|p| (crate::store::s3::MIN_PART_SIZE..=5 << 30).contains(p))
        .ok_or_else(|| Error::config("S3_PART_SIZE must be between 5MiB and 5GiB"))?;
    Ok(S3Settings {
        bucket,
        prefix: S3Settings::normalize_prefix(&a.s3_prefix),
        endpoint: a.s3_endpoint.clone().filter(|e| !e.is_empty()),
        force_path_style: a.s3_force_path_style,
        region: a.s3_region.clone().filter(|r| !r.is_empty()),
        storage_class: a.s3_storage_class.clone().filter(|c| !c.is_empty()),
        sse,
        checksum: a.s3_checksum,
        part_size,
        max_in_flight: a.s3_max_in_flight.clamp(1, 16),
        max_attempts: a.s3_max_attempts.clamp(1, 10),
    })
}
