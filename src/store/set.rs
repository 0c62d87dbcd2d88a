//! The stores a command works on, as one set: the primary store (the backup volume, or the bucket when
//! it is the only one) and, when both are configured, the bucket as the off-site copy. Writing to both,
//! catching the copy up, finding a backup and the room for a scratch file are questions asked of the set;
//! no caller looks inside it.

use std::collections::HashSet;
use std::path::PathBuf;

use jiff::Timestamp;
use tracing::{error, info, instrument};

use super::s3::S3Settings;
use super::tee::{SecondaryFailure, TeeSink};
use super::{ArchiveSink, BackupKind, BackupStore, LocalStore, S3Store, StoredBackup, Which};
use crate::archive::ArchiveName;
use crate::error::{Error, Result};
use crate::lock::DirLock;
use crate::retention::Policy;

/// Which stores to use (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    Local,
    S3,
    Both,
}

/// Where backups are written and read, validated.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backup_dir: PathBuf,
    pub prefix: String,
    pub choice: StoreChoice,
    /// Present exactly when `choice` includes the bucket.
    pub s3: Option<S3Settings>,
}

pub struct StoreSet {
    local: Option<LocalStore>,
    s3: Option<S3Store>,
}

impl StoreSet {
    #[instrument(skip_all, fields(choice = ?cfg.choice))]
    pub async fn open(cfg: &StoreConfig) -> Result<StoreSet> {
        let local = matches!(cfg.choice, StoreChoice::Local | StoreChoice::Both)
            .then(|| LocalStore::new(&cfg.backup_dir, &cfg.prefix));
        let s3 = match (&cfg.s3, cfg.choice) {
            (Some(settings), StoreChoice::S3 | StoreChoice::Both) => {
                Some(S3Store::connect(settings.clone(), &cfg.prefix).await?)
            }
            _ => None,
        };
        Ok(StoreSet { local, s3 })
    }

    /// Every store, the backup volume first.
    pub fn all(&self) -> Vec<&dyn BackupStore> {
        self.by_kind().into_iter().map(|(_, s)| s).collect()
    }

    /// Each store with its kind (`local`, `s3`), for the metrics.
    pub fn by_kind(&self) -> Vec<(&'static str, &dyn BackupStore)> {
        let mut v: Vec<(&'static str, &dyn BackupStore)> = Vec::new();
        if let Some(l) = &self.local {
            v.push(("local", l));
        }
        if let Some(s) = &self.s3 {
            v.push(("s3", s));
        }
        v
    }

    /// One backup (or prune) at a time on the backup volume; checks the volume is there first.
    pub fn lock(&self) -> Result<Option<DirLock>> {
        match &self.local {
            Some(local) => {
                local.check_dir()?;
                Ok(Some(DirLock::acquire(local.dir())?))
            }
            None => Ok(None),
        }
    }

    /// The complete backups of every store, oldest first (a backup in both stores is listed twice).
    pub async fn list(&self) -> Result<Vec<StoredBackup>> {
        let mut backups = Vec::new();
        for store in self.all() {
            backups.extend(store.list().await?);
        }
        backups.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then_with(|| a.location.cmp(&b.location))
        });
        Ok(backups)
    }

    /// The store holding the backup `which` means, and the backup: a name from the first store that has
    /// it (the backup volume before the bucket); `latest` and `--before` from the store whose match is
    /// newest.
    #[instrument(skip(self))]
    pub async fn resolve(&self, which: &Which) -> Result<(&dyn BackupStore, StoredBackup)> {
        let stores = self.all();
        let mut best: Option<(&dyn BackupStore, StoredBackup)> = None;
        let mut first_err = None;
        for &store in &stores {
            match store.resolve(which).await {
                Ok(b) if matches!(which, Which::Named(_)) => return Ok((store, b)),
                Ok(b) => {
                    if best.as_ref().is_none_or(|(_, o)| b.created > o.created) {
                        best = Some((store, b));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (best, first_err) {
            (Some(found), _) => Ok(found),
            (None, Some(Error::NotFound { what, .. })) if matches!(which, Which::Before(_)) => {
                Err(Error::NotFound {
                    what,
                    location: self.locations(),
                })
            }
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::config("no store configured")),
        }
    }

    /// The locations, comma-separated.
    pub fn locations(&self) -> String {
        self.all()
            .iter()
            .map(|s| s.location())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Starts writing a backup: checks the off-site store first. With a backup volume, an unreachable
    /// bucket must not stop the backup (it is reported afterwards); alone, it is the error.
    pub async fn begin_write(&self) -> Result<Destinations<'_>> {
        let mut failure = None;
        let offsite = match (&self.s3, &self.local) {
            (Some(s3), local) => match s3.preflight().await {
                Ok(()) => Some(s3),
                Err(e) if local.is_some() => {
                    error!(error = %e, "off-site store unavailable; backing up to the backup volume only");
                    failure = Some(e.to_string());
                    None
                }
                Err(e) => return Err(e),
            },
            (None, _) => None,
        };
        if self.local.is_none() && offsite.is_none() {
            return Err(Error::config(
                "no store selected: use --store local, s3 or both",
            ));
        }
        Ok(Destinations {
            local: self.local.as_ref(),
            offsite,
            failure,
            tee: None,
        })
    }
}

/// The stores a new archive goes to; after the archive is committed, [`Destinations::written`] says
/// where it is complete.
pub struct Destinations<'a> {
    local: Option<&'a LocalStore>,
    offsite: Option<&'a S3Store>,
    failure: Option<String>,
    tee: Option<SecondaryFailure>,
}

impl<'a> Destinations<'a> {
    /// True when a new archive of this name would collide with one in a destination (complete,
    /// partial, or an upload under way). With a backup volume, a bucket that cannot be asked does not
    /// stop the backup (its upload fails and is reported as the off-site failure).
    pub async fn name_taken(&self, name: &ArchiveName) -> Result<bool> {
        if self.local.is_some_and(|l| l.name_taken(name)) {
            return Ok(true);
        }
        match (self.offsite, self.local) {
            (Some(s3), None) => s3.name_taken(name).await,
            (Some(s3), Some(_)) => Ok(s3.name_taken(name).await.unwrap_or_else(|e| {
                error!(error = %e, "cannot check the name in the bucket");
                false
            })),
            (None, _) => Ok(false),
        }
    }

    /// One sink writing to every destination: the volume must succeed, the bucket may fail on the way.
    pub fn create(&mut self, name: &ArchiveName) -> Result<Box<dyn ArchiveSink>> {
        Ok(match (self.local, self.offsite) {
            (Some(local), Some(s3)) => {
                let (tee, failure) = TeeSink::new(local.create(name)?, s3.create(name)?);
                self.tee = Some(failure);
                Box::new(tee)
            }
            (Some(local), None) => local.create(name)?,
            (None, Some(s3)) => s3.create(name)?,
            (None, None) => unreachable!("begin_write refuses an empty set"),
        })
    }

    /// Where the committed archive is complete, and why the off-site copy is not (if it is not).
    pub fn written(mut self) -> Written<'a> {
        if let Some(f) = self
            .tee
            .take()
            .and_then(|f| f.lock().expect("failure lock").take())
        {
            self.failure = Some(f);
        }
        Written {
            local: self.local,
            offsite: self.offsite.filter(|_| self.failure.is_none()),
            offsite_failure: self.failure,
        }
    }
}

pub struct Written<'a> {
    local: Option<&'a LocalStore>,
    offsite: Option<&'a S3Store>,
    pub offsite_failure: Option<String>,
}

impl Written<'_> {
    /// The stores holding the new archive (retention runs on each).
    pub fn stores(&self) -> Vec<&dyn BackupStore> {
        let mut v: Vec<&dyn BackupStore> = Vec::new();
        if let Some(l) = self.local {
            v.push(l);
        }
        if let Some(s) = self.offsite {
            v.push(s);
        }
        v
    }

    pub fn locations(&self) -> Vec<String> {
        self.stores().iter().map(|s| s.location()).collect()
    }

    /// Uploads complete local backups that the bucket lacks (an earlier upload failed) and that
    /// retention keeps, so the off-site copy catches up on the next successful run.
    #[instrument(skip_all)]
    pub async fn reconcile(&self, policy: &Policy) -> Result<Vec<String>> {
        let (Some(local), Some(s3)) = (self.local, self.offsite) else {
            return Ok(Vec::new());
        };
        let remote: HashSet<String> = s3.list().await?.into_iter().map(|b| b.name).collect();
        let locals = local.list().await?;
        let input: Vec<(&str, Timestamp, bool)> = locals
            .iter()
            .map(|b| (b.name.as_str(), b.created, b.kind == BackupKind::Safety))
            .collect();
        let keep: HashSet<&str> =
            crate::retention::plan_with_safety(&input, policy, Timestamp::now())
                .keep
                .into_iter()
                .map(|(n, _)| n)
                .collect();
        let mut uploaded = Vec::new();
        for b in locals
            .iter()
            .filter(|b| keep.contains(b.name.as_str()) && !remote.contains(&b.name))
        {
            info!(archive = %b.name, "uploading a backup missing from the bucket");
            s3.upload_file(local.dir().join(&b.name), local.sidecar(&b.name).await?)
                .await?;
            uploaded.push(b.name.clone());
        }
        Ok(uploaded)
    }
}
