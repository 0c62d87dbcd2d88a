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
    further_database_dir,
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
use crate::postgres::globals::Globals;
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
    pub databases: Databases,
    /// The ConfigMaps/Secrets alone, no database (a swap restore's safety backup: the replaced
    /// database, kept under another name, is the way back for the data).
    pub objects_only: bool,
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
    /// How many databases the archive holds (1 unless `databases` named more).
    pub databases: usize,
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
        let databases = match self.databases {
            1 => String::new(),
            n => format!("{n} databases, "),
        };
        format!(
            "backup {} complete: {} in {:.1}s, {databases}{} tables / {} rows, {} ConfigMaps, {} Secrets, sha256 {}",
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
    // (A swap restore's safety backup holds the ConfigMaps/Secrets alone: see `objects_only`.)
    let (snapshot, pg_dump_version, globals, further) = if cfg.objects_only {
        (None, None, None, Vec::new())
    } else {
        let snapshot = Snapshot::open(&cfg.target).await?;
        let version = dump_client_version(cfg, &snapshot.server_version)?;
        let globals = read_globals(&cfg.target).await;
        (
            Some(snapshot),
            version,
            globals,
            further_databases(cfg).await?,
        )
    };
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
        further,
    };
    let dumped = write_archive(cfg, sink, snapshot, contents, created, &file_name).await?;
    let sidecar = finish_archive(dumped, &name, created, export.as_ref(), cfg.objects_only).await?;
    let written = destinations.written();

    let m = &sidecar.manifest;
    let mut summary = BackupSummary {
        name: file_name,
        size: sidecar.archive.size,
        sha256: sidecar.archive.sha256.clone(),
        duration: started.elapsed(),
        databases: m.databases().count(),
        dump_bytes: m.databases().map(|d| d.dump_bytes).sum(),
        tables: m.databases().map(|d| d.tables.len()).sum(),
        rows: m.databases().flat_map(|d| &d.tables).map(|t| t.rows).sum(),
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
    /// The first database first.
    databases: Vec<DatabaseInfo>,
}

/// What goes into the archive besides the dump.
struct Contents<'a> {
    export: Option<&'a Export>,
    /// The first database's (the others' are read as each is dumped).
    globals: Option<&'a Globals>,
    pg_dump_version: Option<String>,
    /// The databases after the first.
    further: Vec<String>,
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
            crate::postgres::version::check_dump_client(
                &v,
                server_version,
                &cfg.dump.pg_dump,
                &cfg.target.dbname,
            )?;
            Ok(Some(v))
        }
        Err(e) => {
            warn!(error = %e, "cannot tell pg_dump's version; it is not recorded in the manifest");
            Ok(None)
        }
    }
}

/// The databases a backup holds besides the one its connection names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Databases {
    /// Only the connection's database.
    #[default]
    Target,
    /// These too (the connection's database is always the first).
    Named(Vec<String>),
    /// Every database that is not a template and takes connections.
    All,
}

/// The further databases, in the order they are dumped (the connection's own left out, each once).
async fn further_databases(cfg: &BackupConfig) -> Result<Vec<String>> {
    if cfg.databases == Databases::Target {
        return Ok(Vec::new());
    }
    let mut conn = crate::postgres::snapshot::connect(&cfg.target).await?;
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| cfg.target.error("cannot list the databases", &e))?;
    let _ = sqlx::Connection::close(conn).await;
    let names = match &cfg.databases {
        Databases::Named(names) => {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !present.contains(n))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(Error::Config(format!(
                    "BACKUP_DATABASES names {} that the server does not have (or that take no \
                     connections): correct the list, or use `all`; nothing was written",
                    missing.join(", ")
                )));
            }
            names.clone()
        }
        _ => present,
    };
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if n != cfg.target.dbname && !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Streams the exported objects, then each database in turn (its globals and `pg_dump` in its own
/// snapshot, its row counts taken in the same snapshot meanwhile) into the archive. The databases are
/// dumped one after another: the archive is one stream, and each dump already keeps a core busy.
async fn write_archive(
    cfg: &BackupConfig,
    sink: Box<dyn ArchiveSink>,
    first: Option<Snapshot>,
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
    let written = async {
        let objects = contents
            .export
            .map(|e| e.objects.clone())
            .unwrap_or_default();
        let encode = cfg.encode.clone();
        let mut writer = tokio::task::spawn_blocking(move || -> Result<_> {
            let mut w = ArchiveWriter::new(sink, &encode, created).map_err(archive_write_error)?;
            for obj in &objects {
                w.append(&obj.path, &obj.yaml, None)
                    .map_err(archive_write_error)?;
            }
            Ok(w)
        })
        .await
        .expect("archive writer task")?;
        let Some(first) = first else {
            return Ok(Dumped {
                writer,
                databases: vec![DatabaseInfo::none(&cfg.target.dbname)],
            });
        };
        // The first database's snapshot and globals were taken in the preflight; each further one's
        // just before it is dumped.
        let mut opened = Some((first, contents.globals.cloned()));
        let targets = std::iter::once(cfg.target.clone())
            .chain(contents.further.iter().map(|n| cfg.target.with_database(n)));
        let mut databases = Vec::new();
        for (i, target) in targets.enumerate() {
            let (snapshot, globals) = match opened.take() {
                Some(first) => first,
                None => (Snapshot::open(&target).await?, read_globals(&target).await),
            };
            let dir = (i > 0).then(|| further_database_dir(i));
            let (info, w) = dump_database(
                cfg,
                writer,
                snapshot,
                &target,
                globals.as_ref(),
                dir,
                &progress,
            )
            .await?;
            writer = w;
            databases.push(DatabaseInfo {
                pg_dump_version: contents.pg_dump_version.clone(),
                ..info
            });
        }
        Ok(Dumped { writer, databases })
    }
    .await;
    ticker.abort();
    written
}

fn archive_write_error(e: std::io::Error) -> Error {
    Error::storage("cannot write archive", "the archive being written", e)
}

/// One database into the archive: its globals, then `pg_dump` in its snapshot while its rows are
/// counted in the same snapshot. `dir`: `None` for the first database's `database/`.
async fn dump_database(
    cfg: &BackupConfig,
    mut w: ArchiveWriter<Box<dyn ArchiveSink>>,
    mut snapshot: Snapshot,
    target: &PgTarget,
    globals: Option<&Globals>,
    dir: Option<String>,
    progress: &Arc<AtomicU64>,
) -> Result<(DatabaseInfo, ArchiveWriter<Box<dyn ArchiveSink>>)> {
    let mut info = DatabaseInfo {
        name: snapshot.database.clone(),
        server_version: snapshot.server_version.clone(),
        pg_dump_version: None,
        dump_format: "custom".into(),
        dump_bytes: 0,
        chunks: 0,
        tables: Vec::new(),
        dir,
    };
    info!(database = %info.name, dir = info.dir(), "dumping");
    let globals = globals.map(|g| serde_json::to_vec_pretty(g).expect("globals serialise"));
    let (entry, dir) = (info.globals_entry(), info.dir().to_owned());
    let (target_owned, dump_opts, snapshot_id, progress) = (
        target.clone(),
        cfg.dump.clone(),
        snapshot.id.clone(),
        progress.clone(),
    );
    let writing = tokio::task::spawn_blocking(move || -> Result<_> {
        if let Some(g) = &globals {
            w.append(&entry, g, None).map_err(archive_write_error)?;
        }
        let stats = dump_into(
            &mut w,
            &dir,
            &target_owned,
            Some(&snapshot_id),
            &dump_opts,
            &progress,
        )?;
        Ok((w, stats))
    });
    let counts = snapshot.count_rows(target).await;
    let written = writing.await.expect("archive writer task");
    snapshot.close().await;
    let (w, stats) = written?;
    info.dump_bytes = stats.bytes;
    info.chunks = stats.chunks;
    info.tables = counts?;
    Ok((info, w))
}

/// Ends the tar stream with the manifest, then commits the archive and its sidecar.
async fn finish_archive(
    dumped: Dumped,
    name: &ArchiveName,
    created: Timestamp,
    export: Option<&Export>,
    objects_only: bool,
) -> Result<Sidecar> {
    let file_name = name.file_name();
    let kubernetes = export.map(|e| KubernetesInfo {
        namespace: e.namespace.clone(),
        config_maps: e.config_maps,
        secrets: e.secrets,
    });
    let (compression, encrypted, safety) = (name.compression, name.encrypted, name.safety);
    let mut databases = dumped.databases.into_iter();
    let database = databases.next().expect("the first database");
    let (manifest_name, more_databases) = (file_name.clone(), databases.collect::<Vec<_>>());
    let (sink, manifest, digest) = tokio::task::spawn_blocking(move || {
        dumped.writer.finish(|entries| Manifest {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            name: manifest_name,
            created,
            finished: Some(Timestamp::now()),
            compression,
            encrypted,
            database,
            more_databases,
            kubernetes,
            entries,
            safety,
            objects_only,
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
