//! `eternia-backup backup`: lock → database preflight and snapshot → Kubernetes export → stream
//! `pg_dump` into a new archive (row counts taken in the same snapshot meanwhile) → sidecar → retention.
//! A failure at any step removes only the new partial archive; existing backups are never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{error, info, instrument};

use crate::archive::ArchiveName;
use crate::archive::codec::EncodeOptions;
use crate::archive::manifest::{
    ArchiveDigest, DatabaseInfo, FORMAT_VERSION, KubernetesInfo, Manifest, Sidecar,
};
use crate::archive::writer::ArchiveWriter;
use crate::commands::list::human_size;
use crate::commands::prune::{PruneReport, STALE_PARTIAL_AGE, prune};
use crate::error::{Error, Result};
use crate::kube::export::{Export, ExportFilter};
use crate::kube::lease::LeaseConfig;
use crate::lock::DirLock;
use crate::postgres::PgTarget;
use crate::postgres::dump::{DumpOptions, dump_into};
use crate::postgres::snapshot::Snapshot;
use crate::retention::Policy;
use crate::store::select::Stores;
use crate::store::tee::TeeSink;
use crate::store::{ArchiveSink, BackupStore, LocalStore, S3Store};

/// Everything a backup needs, already parsed and validated.
pub struct BackupPlan {
    pub prefix: String,
    pub stores: Stores,
    pub target: PgTarget,
    /// `None`: no Kubernetes export.
    pub kubernetes: Option<KubernetesSource>,
    pub encode: EncodeOptions,
    pub dump: DumpOptions,
    pub retention: Option<Policy>,
    pub progress_interval: Duration,
    /// Checked before starting: a backup does not run while a restore holds it.
    pub lease: Option<LeaseConfig>,
}

pub struct KubernetesSource {
    pub client: Option<kube::Client>,
    pub namespace: String,
    pub filter: ExportFilter,
}

#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub duration: Duration,
    pub dump_bytes: u64,
    pub tables: usize,
    pub rows: i64,
    pub config_maps: u32,
    pub secrets: u32,
    pub retention: Vec<PruneReport>,
    /// Locations that hold the new archive.
    pub locations: Vec<String>,
}

impl BackupSummary {
    pub fn one_line(&self) -> String {
        format!(
            "backup {} complete: {} in {:.1}s, {} tables / {} rows, {} ConfigMaps, {} Secrets, sha256 {}",
            self.name,
            human_size(self.size),
            self.duration.as_secs_f64(),
            self.tables,
            self.rows,
            self.config_maps,
            self.secrets,
            self.sha256
        )
    }
}

#[instrument(skip_all, fields(database = %plan.target))]
pub async fn run(plan: BackupPlan) -> Result<BackupSummary> {
    let started = Instant::now();
    let _lock = match &plan.stores.local {
        Some(local) => {
            local.check_dir()?;
            Some(DirLock::acquire(local.dir())?)
        }
        None => None,
    };
    // The off-site store is checked first; with a local volume its failure must not stop the backup.
    let mut offsite_failure: Option<String> = None;
    let s3 = match (&plan.stores.s3, &plan.stores.local) {
        (Some(s3), local) => match s3.preflight().await {
            Ok(()) => Some(s3),
            Err(e) if local.is_some() => {
                error!(error = %e, "off-site store unavailable; backing up to the backup volume only");
                offsite_failure = Some(e.to_string());
                None
            }
            Err(e) => return Err(e),
        },
        (None, _) => None,
    };
    let (created, name) = fresh_name(&plan).await;
    let file_name = name.file_name();
    info!(archive = %file_name, "backup starting");

    let client = match &plan.kubernetes {
        None => None,
        Some(k) => Some(match &k.client {
            Some(c) => c.clone(),
            None => crate::kube::client().await?,
        }),
    };
    if let (Some(client), Some(cfg)) = (&client, &plan.lease)
        && let Some(holder) = crate::kube::lease::holder(client.clone(), cfg).await?
    {
        return Err(Error::SkippedForRestore {
            lease: format!("{}/{}", cfg.namespace, cfg.name),
            holder,
        });
    }
    // Preflight: reach the database (and take the snapshot) before creating anything on the volume.
    let mut snapshot = Snapshot::open(&plan.target).await?;
    let export = match (&plan.kubernetes, client) {
        (Some(k), Some(client)) => {
            Some(crate::kube::export::export_namespace(client, &k.namespace, &k.filter).await?)
        }
        _ => None,
    };

    let (sink, tee_failure): (Box<dyn ArchiveSink>, _) = match (&plan.stores.local, s3) {
        (Some(local), Some(s3)) => {
            let (tee, failure) = TeeSink::new(local.create(&name)?, s3.create(&name)?);
            (Box::new(tee), Some(failure))
        }
        (Some(local), None) => (local.create(&name)?, None),
        (None, Some(s3)) => (s3.create(&name)?, None),
        (None, None) => {
            return Err(Error::config(
                "no store selected: use --store local, s3 or both",
            ));
        }
    };
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = spawn_progress(progress.clone(), plan.progress_interval, file_name.clone());

    let (target, dump_opts, encode, snapshot_id) = (
        plan.target.clone(),
        plan.dump.clone(),
        plan.encode.clone(),
        snapshot.id.clone(),
    );
    let objects = export
        .as_ref()
        .map(|e| e.objects.clone())
        .unwrap_or_default();
    let counter = progress.clone();
    let writing = tokio::task::spawn_blocking(move || -> Result<_> {
        let write_err = |e| Error::storage("cannot write archive", "the archive being written", e);
        let mut w = ArchiveWriter::new(sink, &encode, created).map_err(write_err)?;
        for obj in &objects {
            w.append(&obj.path, &obj.yaml, None).map_err(write_err)?;
        }
        let stats = dump_into(&mut w, &target, Some(&snapshot_id), &dump_opts, &counter)?;
        Ok((w, stats))
    });
    let counts = snapshot.count_rows(&plan.target).await;
    let written = writing.await.expect("archive writer task");
    let (database_name, server_version) =
        (snapshot.database.clone(), snapshot.server_version.clone());
    snapshot.close().await;
    ticker.abort();
    let (writer, stats) = written?;
    let tables = counts?;

    let database = DatabaseInfo {
        name: database_name,
        server_version,
        dump_format: "custom".into(),
        dump_bytes: stats.bytes,
        chunks: stats.chunks,
        tables,
    };
    let kubernetes = export.as_ref().map(|e: &Export| KubernetesInfo {
        namespace: e.namespace.clone(),
        config_maps: e.config_maps,
        secrets: e.secrets,
    });
    let (compression, encrypted) = (name.compression, name.encrypted);
    let manifest_name = file_name.clone();
    let (sink, manifest, digest) = tokio::task::spawn_blocking(move || {
        writer.finish(|entries| Manifest {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            name: manifest_name,
            created,
            compression,
            encrypted,
            database,
            kubernetes,
            entries,
        })
    })
    .await
    .expect("archive finish task")
    .map_err(|e| Error::storage("cannot write archive", &file_name, e))?;
    let sidecar = Sidecar {
        manifest,
        archive: ArchiveDigest {
            file: file_name.clone(),
            size: digest.size,
            sha256: digest.sha256.clone(),
        },
    };
    tokio::task::spawn_blocking({
        let sidecar = sidecar.clone();
        move || sink.commit(&sidecar)
    })
    .await
    .expect("archive commit task")?;

    let m = &sidecar.manifest;
    let mut summary = BackupSummary {
        name: file_name,
        size: digest.size,
        sha256: digest.sha256,
        duration: started.elapsed(),
        dump_bytes: stats.bytes,
        tables: m.database.tables.len(),
        rows: m.database.tables.iter().map(|t| t.rows).sum(),
        config_maps: m.kubernetes.as_ref().map_or(0, |k| k.config_maps),
        secrets: m.kubernetes.as_ref().map_or(0, |k| k.secrets),
        retention: Vec::new(),
        locations: Vec::new(),
    };
    if let Some(f) = tee_failure.and_then(|f| f.lock().expect("failure lock").take()) {
        offsite_failure = Some(f);
    }
    let s3_ok = s3.is_some() && offsite_failure.is_none();
    summary.locations = plan.stores.local.iter().map(|l| l.location()).collect();
    if let (Some(s3), true) = (s3, s3_ok) {
        summary.locations.push(s3.location());
    }
    info!(
        archive = %summary.name,
        size_bytes = summary.size,
        duration_s = format!("{:.1}", summary.duration.as_secs_f64()),
        dump_bytes = summary.dump_bytes,
        tables = summary.tables,
        rows = summary.rows,
        config_maps = summary.config_maps,
        secrets = summary.secrets,
        sha256 = %summary.sha256,
        "{}", summary.one_line()
    );

    // Retention only after a successful backup, per store, under the same lock.
    if let Some(policy) = &plan.retention {
        let retention_failed = |e: Error| Error::Retention {
            backup: summary.name.clone(),
            source: Box::new(e),
        };
        if let Some(local) = &plan.stores.local {
            summary.retention.push(
                prune(local, policy, Timestamp::now(), STALE_PARTIAL_AGE, false)
                    .await
                    .map_err(retention_failed)?,
            );
        }
        if let (Some(s3), true) = (s3, s3_ok) {
            if let Some(local) = &plan.stores.local
                && let Err(e) = reconcile(local, s3, policy).await
            {
                offsite_failure = Some(format!(
                    "re-uploading earlier backups missing from the bucket: {e}"
                ));
            }
            summary.retention.push(
                prune(s3, policy, Timestamp::now(), STALE_PARTIAL_AGE, false)
                    .await
                    .map_err(retention_failed)?,
            );
        }
    }
    if let Some(problem) = offsite_failure {
        return Err(Error::Offsite {
            backup: summary.name,
            problem,
        });
    }
    Ok(summary)
}

/// Names have one-second resolution: when a backup of this second already exists (a manual run right
/// after the scheduled one), or a killed run of this second left its `.partial`, wait for the next
/// second rather than ever overwrite either.
async fn fresh_name(plan: &BackupPlan) -> (Timestamp, ArchiveName) {
    loop {
        let created = Timestamp::now();
        let name = ArchiveName::new(
            &plan.prefix,
            created,
            plan.encode.compression,
            !plan.encode.recipients.is_empty(),
        );
        if !plan
            .stores
            .local
            .as_ref()
            .is_some_and(|l| l.name_taken(&name))
        {
            return (created, name);
        }
        tokio::time::sleep(Duration::from_millis(
            1000 - u64::from(created.subsec_millisecond().unsigned_abs()) + 5,
        ))
        .await;
    }
}

/// Uploads complete local backups that the bucket lacks (an earlier upload failed) and that retention
/// keeps, so the off-site copy catches up on the next successful run.
#[instrument(skip_all)]
async fn reconcile(local: &LocalStore, s3: &S3Store, policy: &Policy) -> Result<Vec<String>> {
    let remote: std::collections::HashSet<String> =
        s3.list().await?.into_iter().map(|b| b.name).collect();
    let locals = local.list().await?;
    let input: Vec<(&str, Timestamp)> = locals
        .iter()
        .map(|b| (b.name.as_str(), b.created))
        .collect();
    let keep: Vec<&str> = crate::retention::plan(&input, policy, Timestamp::now())
        .keep
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut uploaded = Vec::new();
    for b in locals
        .iter()
        .filter(|b| keep.contains(&b.name.as_str()) && !remote.contains(&b.name))
    {
        info!(archive = %b.name, "uploading a backup missing from the bucket");
        s3.upload_file(local.dir().join(&b.name), local.sidecar(&b.name).await?)
            .await?;
        uploaded.push(b.name.clone());
    }
    Ok(uploaded)
}

fn spawn_progress(
    bytes: Arc<AtomicU64>,
    every: Duration,
    archive: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tick.tick().await;
            let b = bytes.load(Ordering::Relaxed);
            let secs = start.elapsed().as_secs_f64();
            info!(
                archive = %archive,
                bytes_dumped = b,
                rate_mib_s = format!("{:.1}", b as f64 / (1 << 20) as f64 / secs.max(0.001)),
                elapsed_s = format!("{secs:.0}"),
                "backup in progress: {} dumped",
                human_size(b)
            );
        }
    })
}
