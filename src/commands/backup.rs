//! `eternia-backup backup`: lock → database preflight and snapshot → Kubernetes export → stream
//! `pg_dump` into a new archive (row counts taken in the same snapshot meanwhile) → sidecar → retention.
//! A failure at any step removes only the new partial archive; existing backups are never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{info, instrument, warn};

use crate::archive::ArchiveName;
use crate::archive::codec::EncodeOptions;
use crate::archive::manifest::{
    ArchiveDigest, DatabaseInfo, FORMAT_VERSION, KubernetesInfo, Manifest, Sidecar,
};
use crate::archive::writer::ArchiveWriter;
use crate::commands::prune::{PruneReport, STALE_PARTIAL_AGE, prune};
use crate::error::{Error, Result};
use crate::kube::Cluster;
use crate::kube::export::{Export, ExportFilter};
use crate::kube::lease::LeaseConfig;
use crate::notify::{Message, Notifier};
use crate::postgres::PgTarget;
use crate::postgres::dump::{DumpOptions, dump_into};
use crate::postgres::globals::{GLOBALS_ENTRY, Globals};
use crate::postgres::snapshot::Snapshot;
use crate::retention::Policy;
use crate::store::set::Destinations;
use crate::store::{ArchiveSink, StoreSet};
use crate::units::human_size;

/// Everything a backup needs, parsed and validated (see `cli::config`).
#[derive(Clone)]
pub struct BackupConfig {
    pub prefix: String,
    pub target: PgTarget,
    /// `None`: no Kubernetes export.
    pub kubernetes: Option<KubernetesSource>,
    pub encode: EncodeOptions,
    pub dump: DumpOptions,
    pub retention: Option<Policy>,
    pub progress_interval: Duration,
    /// Checked before starting: a backup does not run while a restore holds it.
    pub lease: Option<LeaseConfig>,
    /// A restore's safety backup: named and marked as such, never `latest`.
    pub safety: bool,
}

/// The namespace whose ConfigMaps and Secrets go into the archive.
#[derive(Clone)]
pub struct KubernetesSource {
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

/// A backup, then a notification of its outcome when a notifier is configured: failures always (the
/// off-site copy failing with a warning), success with `--notify-on-success`. A backup skipped for a
/// restore, or one that found another running, is not news.
pub async fn run_and_notify(
    cfg: &BackupConfig,
    stores: &StoreSet,
    cluster: &Cluster,
    notifier: Option<&Notifier>,
) -> Result<BackupSummary> {
    let result = run(cfg, stores, cluster).await;
    let Some(n) = notifier else { return result };
    let message = match &result {
        Ok(s) if n.on_success => Some(
            Message::new(
                ":white_check_mark: Backup complete",
                format!(":white_check_mark: {}", s.one_line()),
            )
            .field("Backup", format!("`{}`", s.name))
            .field("Size", human_size(s.size))
            .field("Duration", format!("{:.1} s", s.duration.as_secs_f64()))
            .field("Stores", s.locations.join(", "))
            .field("Database", format!("{} tables / {} rows", s.tables, s.rows))
            .field(
                "Kubernetes",
                format!("{} ConfigMaps, {} Secrets", s.config_maps, s.secrets),
            ),
        ),
        Ok(_) | Err(Error::AlreadyRunning { .. } | Error::SkippedForRestore { .. }) => None,
        Err(e @ Error::Offsite { .. }) => Some(Message::failure(
            ":warning: Off-site copy failed",
            format!(":warning: eternia-backup: {e}"),
            e,
        )),
        Err(e) => Some(Message::failure(
            ":x: Backup FAILED",
            format!(":x: eternia-backup: backup FAILED: {e}"),
            e,
        )),
    };
    if let Some(m) = message {
        n.send_message(&m).await;
    }
    result
}

#[instrument(skip_all, fields(database = %cfg.target))]
pub async fn run(
    cfg: &BackupConfig,
    stores: &StoreSet,
    cluster: &Cluster,
) -> Result<BackupSummary> {
    let started = Instant::now();
    let _lock = stores.lock()?;
    // The off-site store is checked first; with a local volume its failure must not stop the backup.
    let mut destinations = stores.begin_write().await?;
    let (created, name) = fresh_name(cfg, &destinations).await?;
    let file_name = name.file_name();
    info!(archive = %file_name, "backup starting");
    crate::interrupt::step(format!("writing backup {file_name}"));

    let client = match &cfg.kubernetes {
        Some(_) => Some(cluster.client().await?),
        None => None,
    };
    if let (Some(client), Some(lease)) = (&client, &cfg.lease)
        && let Some(holder) = crate::kube::lease::holder(client.clone(), lease).await?
    {
        return Err(Error::SkippedForRestore {
            lease: format!("{}/{}", lease.namespace, lease.name),
            holder,
        });
    }
    // Preflight: reach the database (and take the snapshot) before creating anything on the volume.
    let snapshot = Snapshot::open(&cfg.target).await?;
    let pg_dump_version = dump_client_version(cfg, &snapshot.server_version)?;
    let globals = read_globals(&cfg.target).await;
    let export = match (&cfg.kubernetes, client) {
        (Some(k), Some(client)) => {
            Some(crate::kube::export::export_namespace(client, &k.namespace, &k.filter).await?)
        }
        _ => None,
    };

    let sink = destinations.create(&name)?;
    let contents = Contents {
        export: export.as_ref(),
        globals: globals.as_ref(),
        pg_dump_version,
    };
    let dumped = write_archive(cfg, sink, snapshot, contents, created, &file_name).await?;
    let sidecar = finish_archive(dumped, &name, created, export.as_ref()).await?;
    let written = destinations.written();

    let m = &sidecar.manifest;
    let mut summary = BackupSummary {
        name: file_name,
        size: sidecar.archive.size,
        sha256: sidecar.archive.sha256.clone(),
        duration: started.elapsed(),
        dump_bytes: m.database.dump_bytes,
        tables: m.database.tables.len(),
        rows: m.database.tables.iter().map(|t| t.rows).sum(),
        config_maps: m.kubernetes.as_ref().map_or(0, |k| k.config_maps),
        secrets: m.kubernetes.as_ref().map_or(0, |k| k.secrets),
        retention: Vec::new(),
        locations: written.locations(),
    };
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

    let mut offsite_failure = written.offsite_failure.clone();
    // Retention only after a successful backup, per store, under the same lock.
    if let Some(policy) = &cfg.retention {
        if let Err(e) = written.reconcile(policy).await {
            offsite_failure = Some(format!(
                "re-uploading earlier backups missing from the bucket: {e}"
            ));
        }
        for store in written.stores() {
            let report = prune(store, policy, Timestamp::now(), STALE_PARTIAL_AGE, false)
                .await
                .map_err(|e| Error::Retention {
                    backup: summary.name.clone(),
                    source: Box::new(e),
                })?;
            summary.retention.push(report);
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

/// The archive's contents, written: the tar stream still open, and what went into it.
struct Dumped {
    writer: ArchiveWriter<Box<dyn ArchiveSink>>,
    database: DatabaseInfo,
}

/// What goes into the archive besides the dump.
struct Contents<'a> {
    export: Option<&'a Export>,
    globals: Option<&'a Globals>,
    pg_dump_version: Option<String>,
}

/// The roles, database state and owners (see [`Globals`]), on a connection of their own (a failed
/// catalog read must not end the snapshot's transaction). A role that may not read them still gets its
/// backup, without them: a restore then creates no roles and maps no owners.
async fn read_globals(target: &PgTarget) -> Option<Globals> {
    let read = async {
        let mut conn = crate::postgres::snapshot::connect(target).await?;
        let g = Globals::read(&mut conn, target).await;
        let _ = sqlx::Connection::close(conn).await;
        g
    };
    match read.await {
        Ok(g) => Some(g),
        Err(e) => {
            warn!(error = %e, "cannot read the roles and owners the database uses; the archive holds no globals");
            None
        }
    }
}

/// The version of the `pg_dump` that will run, refused when older than the server (it would fail, or
/// miss what the newer server has). A `pg_dump` that does not say is run anyway, its version unrecorded.
fn dump_client_version(cfg: &BackupConfig, server_version: &str) -> Result<Option<String>> {
    match crate::postgres::version::client_version(&cfg.dump.pg_dump) {
        Ok(v) => {
            crate::postgres::version::check_dump_client(&v, server_version, &cfg.dump.pg_dump)?;
            Ok(Some(v))
        }
        Err(e) => {
            warn!(error = %e, "cannot tell pg_dump's version; it is not recorded in the manifest");
            Ok(None)
        }
    }
}

/// Streams the exported objects, the globals and `pg_dump` (in the snapshot) into the archive, while
/// the row counts are taken in the same snapshot.
async fn write_archive(
    cfg: &BackupConfig,
    sink: Box<dyn ArchiveSink>,
    mut snapshot: Snapshot,
    contents: Contents<'_>,
    created: Timestamp,
    file_name: &str,
) -> Result<Dumped> {
    let progress = Arc::new(AtomicU64::new(0));
    let ticker = spawn_progress(
        progress.clone(),
        cfg.progress_interval,
        file_name.to_owned(),
    );
    let (target, dump_opts, encode, snapshot_id) = (
        cfg.target.clone(),
        cfg.dump.clone(),
        cfg.encode.clone(),
        snapshot.id.clone(),
    );
    let objects = contents
        .export
        .map(|e| e.objects.clone())
        .unwrap_or_default();
    let globals = contents
        .globals
        .map(|g| serde_json::to_vec_pretty(g).expect("globals serialise"));
    let writing = tokio::task::spawn_blocking(move || -> Result<_> {
        let write_err = |e| Error::storage("cannot write archive", "the archive being written", e);
        let mut w = ArchiveWriter::new(sink, &encode, created).map_err(write_err)?;
        for obj in &objects {
            w.append(&obj.path, &obj.yaml, None).map_err(write_err)?;
        }
        if let Some(g) = &globals {
            w.append(GLOBALS_ENTRY, g, None).map_err(write_err)?;
        }
        let stats = dump_into(&mut w, &target, Some(&snapshot_id), &dump_opts, &progress)?;
        Ok((w, stats))
    });
    let counts = snapshot.count_rows(&cfg.target).await;
    let written = writing.await.expect("archive writer task");
    let (name, server_version) = (snapshot.database.clone(), snapshot.server_version.clone());
    snapshot.close().await;
    ticker.abort();
    let (writer, stats) = written?;
    Ok(Dumped {
        writer,
        database: DatabaseInfo {
            name,
            server_version,
            pg_dump_version: contents.pg_dump_version,
            dump_format: "custom".into(),
            dump_bytes: stats.bytes,
            chunks: stats.chunks,
            tables: counts?,
        },
    })
}

/// Ends the tar stream with the manifest, then commits the archive and its sidecar.
async fn finish_archive(
    dumped: Dumped,
    name: &ArchiveName,
    created: Timestamp,
    export: Option<&Export>,
) -> Result<Sidecar> {
    let file_name = name.file_name();
    let kubernetes = export.map(|e| KubernetesInfo {
        namespace: e.namespace.clone(),
        config_maps: e.config_maps,
        secrets: e.secrets,
    });
    let (compression, encrypted, safety) = (name.compression, name.encrypted, name.safety);
    let (manifest_name, database) = (file_name.clone(), dumped.database);
    let (sink, manifest, digest) = tokio::task::spawn_blocking(move || {
        dumped.writer.finish(|entries| Manifest {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            name: manifest_name,
            created,
            compression,
            encrypted,
            database,
            kubernetes,
            entries,
            safety,
        })
    })
    .await
    .expect("archive finish task")
    .map_err(|e| Error::storage("cannot write archive", &file_name, e))?;
    let sidecar = Sidecar {
        manifest,
        archive: ArchiveDigest {
            file: file_name,
            size: digest.size,
            sha256: digest.sha256,
        },
    };
    tokio::task::spawn_blocking({
        let sidecar = sidecar.clone();
        move || sink.commit(&sidecar)
    })
    .await
    .expect("archive commit task")?;
    Ok(sidecar)
}

/// Names have one-second resolution: when a backup of this second already exists (a manual run right
/// after the scheduled one), or a killed run of this second left its `.partial`, wait for the next
/// second rather than ever overwrite either.
async fn fresh_name(
    cfg: &BackupConfig,
    destinations: &Destinations<'_>,
) -> Result<(Timestamp, ArchiveName)> {
    loop {
        let created = Timestamp::now();
        let name = ArchiveName::new(
            &cfg.prefix,
            created,
            cfg.encode.compression,
            !cfg.encode.recipients.is_empty(),
        )
        .as_safety(cfg.safety);
        if !destinations.name_taken(&name).await? {
            return Ok((created, name));
        }
        crate::archive::name::sleep_into_next_second(created).await;
    }
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
