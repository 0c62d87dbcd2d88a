//! `eternia-backup restore`. Order of work: find → versions checked (client, servers) → verify every
//! checksum (nothing is changed before this passes) → safety backup of the current state (when there is
//! one) → the roles the backup needs that the server lacks → restore the database (clean or swap; created
//! as it was when missing) → owners mapped → row counts equal the manifest's → apply ConfigMaps/Secrets →
//! rollout restart → wait → summary.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{error, info, instrument, warn};

use crate::archive::codec::decoder_with_identity_file;
use crate::archive::manifest::{DatabaseInfo, Manifest, Sidecar, TableCount};
use crate::archive::reader::{EntryCheck, walk};
use crate::commands::backup::{self, BackupConfig};
use crate::commands::hooks::{self, Hooks};
use crate::commands::verify::{self, Visit};
use crate::commands::which_databases::{self, ArchivedDatabases, Planned};
use crate::error::{Error, Result};
use crate::kube::Cluster;
use crate::kube::apply::{self, Applied};
use crate::kube::lease::{LeaseConfig, LeaseGuard};
use crate::kube::quiesce;
use crate::postgres::PgTarget;
use crate::postgres::database_state::DatabaseState;
use crate::postgres::globals::{self, Globals, Role, RolesReport};
use crate::postgres::restore::{self as pg, Counting, Ownership, RestoreOptions, RowCheck};
use crate::postgres::set_aside::{self, Aside};
use crate::store::{BackupStore, StoreSet, StoredBackup, Which};

/// How often the restore looks at a restarted Deployment while it rolls out (a GET each time): the wait ends
/// within this much of the rollout completing.
const ROLLOUT_POLL: Duration = Duration::from_millis(500);

/// A database whose new connections this restore refuses, and the limit to put back: a restore stopped
/// by SIGTERM in the middle allows them again on its way out.
static REFUSING: std::sync::Mutex<Option<(PgTarget, i32)>> = std::sync::Mutex::new(None);

/// The schemas clean mode set aside while it loads: a restore stopped by SIGTERM puts them back on its
/// way out.
static ASIDE: std::sync::Mutex<Option<Aside>> = std::sync::Mutex::new(None);

/// The schemas set aside being dropped once a clean restore is loaded and checked, beside what follows
/// (the ConfigMaps/Secrets, the rollout): the restore waits for it at its end.
static DROPPING: std::sync::Mutex<Option<tokio::task::JoinHandle<Result<()>>>> =
    std::sync::Mutex::new(None);

/// The Deployments this restore scaled to zero, to scale back also after a SIGTERM.
type ScaledApp = (kube::Client, String, Vec<quiesce::Scaled>);
static SCALED: std::sync::Mutex<Option<ScaledApp>> = std::sync::Mutex::new(None);

/// The archived ConfigMaps/Secrets are small (etcd caps objects at ~1.5 MiB); larger entries are cut.
const MAX_OBJECT_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Into the database itself, after ending other sessions and emptying it (exactly the backed-up state).
    Clean,
    /// Restore into a scratch database, check it, then rename it into place (the old one is kept).
    Swap,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Clean => "clean",
            Mode::Swap => "swap",
        }
    }
}

/// The application side of a restore: where the objects go and what restarts.
#[derive(Clone)]
pub struct KubeRestore {
    pub namespace: String,
    pub deployments: Vec<String>,
    pub include_gitops: bool,
    pub rollout_timeout: Duration,
    /// Scale the Deployments to zero before the database is touched and back afterwards (instead of
    /// restarting them at the end).
    pub scale_to_zero: bool,
}

/// Everything a restore needs, parsed and validated (see `cli::config`).
pub struct RestoreConfig {
    pub which: Which,
    pub target: PgTarget,
    /// Which of the archive's databases (the first, one by name, or all).
    pub databases: ArchivedDatabases,
    pub mode: Mode,
    pub dry_run: bool,
    /// The backup of the current state taken before anything changes (`None`: no way back).
    pub safety: Option<BackupConfig>,
    pub identity_file: Option<PathBuf>,
    pub pg_restore: PathBuf,
    pub kubernetes: Option<KubeRestore>,
    /// Connections the dump streams into (see `postgres::stream_load`); 1: one streamed `pg_restore`.
    /// `None`: [`default_jobs`].
    pub jobs: Option<u32>,
    /// Held for the whole restore (only with Kubernetes and not for a dry run).
    pub lease: Option<LeaseConfig>,
    pub ownership: Ownership,
    pub roles: RolesConfig,
    pub hooks: Hooks,
}

/// The roles a restore creates when the server lacks them (see [`globals::ensure_roles`]).
#[derive(Debug, Clone)]
pub struct RolesConfig {
    pub create: bool,
    /// One file per role name with the password a created role gets.
    pub passwords_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    pub archive: String,
    pub location: String,
    /// Where the (first) dump goes (no password) and how.
    pub database: String,
    pub mode: Option<Mode>,
    pub jobs: u32,
    /// Each database loaded, the first one first.
    pub databases: Vec<DatabaseRestored>,
    pub safety_backup: Option<String>,
    pub roles: RolesReport,
    /// Tables and rows of every database loaded.
    pub tables: usize,
    pub rows: i64,
    pub objects: Vec<Applied>,
    pub restarted: Vec<String>,
    pub duration: Duration,
    pub dry_run: bool,
    /// Clean mode: the schemas set aside while the database loaded could not be dropped after (what is
    /// left, and the statement that drops it).
    pub schemas_left_aside: Option<String>,
}

/// One database of the archive, restored (or, in a dry run, planned).
#[derive(Debug, Clone, Default)]
pub struct DatabaseRestored {
    /// Its name in the archive.
    pub archived: String,
    /// Where it went (no password).
    pub database: String,
    /// The manifest's tables and row counts, and the dump's size.
    pub table_counts: Vec<TableCount>,
    pub dump_bytes: u64,
    pub previous_database: Option<String>,
    /// The database did not exist on the server: the restore created it (as the backup recorded it).
    pub created: bool,
    /// Objects given to another owner by `--owner-map`.
    pub owners_mapped: usize,
    /// How the restored row counts were found equal to the manifest's.
    pub row_check: RowCheck,
}

/// What a restore keeps while it verifies: the archived objects and each database's globals.
struct Keep {
    objects: Vec<Vec<u8>>,
    /// Each database's globals entry (path → database name), and what was read of them.
    globals_entries: BTreeMap<String, String>,
    globals: BTreeMap<String, Vec<u8>>,
    /// Stop at the first dump chunk of this archive's (only) database: see [`head`].
    stop_at: Option<DatabaseInfo>,
    stopped: bool,
}

impl Keep {
    fn new(manifest: &Manifest) -> Keep {
        Keep {
            objects: Vec::new(),
            globals_entries: manifest
                .databases()
                .map(|d| (d.globals_entry(), d.name.clone()))
                .collect(),
            globals: BTreeMap::new(),
            stop_at: None,
            stopped: false,
        }
    }

    /// The globals read, parsed.
    fn parsed_globals(&mut self, name: &str) -> Result<BTreeMap<String, Globals>> {
        let mut globals = BTreeMap::new();
        for (db, bytes) in std::mem::take(&mut self.globals) {
            let g = serde_json::from_slice(&bytes).map_err(|e| {
                Error::archive(
                    name,
                    format!("the globals of database {db} are not readable: {e}"),
                )
            })?;
            globals.insert(db, g);
        }
        Ok(globals)
    }
}

impl Visit for Keep {
    fn entry(&mut self, path: &str, r: &mut dyn Read) -> io::Result<()> {
        if let Some(db) = &self.stop_at
            && db.chunk_number(path).is_some()
        {
            self.stopped = true;
            return Err(io::Error::other("the entries before the dump are read"));
        }
        if path.starts_with("kubernetes/") {
            let mut v = Vec::new();
            r.take(MAX_OBJECT_BYTES).read_to_end(&mut v)?;
            self.objects.push(v);
        } else if let Some(db) = self.globals_entries.get(path) {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            self.globals.insert(db.clone(), v);
        }
        Ok(())
    }
}

/// A verified backup, ready to restore.
pub struct Verified {
    pub manifest: Manifest,
    pub objects: Vec<Vec<u8>>,
    /// Each database's roles, database state and owners, by its name in the archive (archives of
    /// format 2 on).
    pub globals: BTreeMap<String, Globals>,
}

/// Verifies the backup (refusing an encrypted one without its key), keeping the objects and globals.
pub async fn verified(
    store: &dyn BackupStore,
    backup: &StoredBackup,
    identity: &Option<PathBuf>,
) -> Result<Verified> {
    let name = &backup.name;
    let sidecar = store.sidecar(name).await?;
    let keep = Keep::new(&sidecar.manifest);
    let (report, mut keep) = verify::check(store, backup, identity.clone(), keep).await?;
    if !report.contents_checked {
        return Err(needs_identity(name));
    }
    let globals = keep.parsed_globals(name)?;
    Ok(Verified {
        manifest: sidecar.manifest,
        objects: keep.objects,
        globals,
    })
}

fn needs_identity(name: &str) -> Error {
    Error::Encryption(format!(
        "{name} is encrypted: restore needs the private key; set AGE_IDENTITY_FILE or pass --identity-file"
    ))
}

/// The entries before the dump of an archive of one database (its objects and globals), each checked
/// against the manifest: what a swap restore needs before it loads. The rest is verified while it loads
/// (into a scratch database, which a mismatch drops, the live database untouched).
async fn head(
    store: &dyn BackupStore,
    backup: &StoredBackup,
    identity: &Option<PathBuf>,
) -> Result<Verified> {
    let name = &backup.name;
    let sidecar = store.sidecar(name).await?;
    verify::check_sidecar(&sidecar, name)?;
    if backup.encrypted && identity.is_none() {
        return Err(needs_identity(name));
    }
    let input = store.open(name).await?;
    let (manifest, identity, n) = (sidecar.manifest.clone(), identity.clone(), name.clone());
    let mut keep = tokio::task::spawn_blocking(move || -> Result<Keep> {
        let decoded = decoder_with_identity_file(
            input,
            manifest.compression,
            manifest.encrypted,
            identity.as_deref(),
        )?;
        let mut keep = Keep::new(&manifest);
        keep.stop_at = Some(manifest.database.clone());
        match walk(&n, decoded, &manifest, |p, r| keep.entry(p, r)) {
            Err(_) if keep.stopped => Ok(keep),
            Err(e) => Err(e),
            Ok(_) => Ok(keep),
        }
    })
    .await
    .expect("head task")?;
    info!(archive = %name, objects = keep.objects.len(), "objects and globals checked; the dump is verified while it loads");
    Ok(Verified {
        globals: keep.parsed_globals(name)?,
        manifest: sidecar.manifest,
        objects: keep.objects,
    })
}

/// Restores the dump of `db` by reading the archive once more (checking every checksum again) into a
/// streamed pg_restore.
pub async fn restore_pass(
    store: &dyn BackupStore,
    name: &str,
    manifest: &Manifest,
    db: &DatabaseInfo,
    target: &PgTarget,
    opts: RestoreOptions,
    identity: Option<PathBuf>,
) -> Result<()> {
    let input = store.open(name).await?;
    load_dump(input, name, manifest, db, target, opts, identity).await
}

/// One streamed `pg_restore` of the dump of `db`, fed by a walk of the opened archive that checks every
/// entry again.
async fn load_dump(
    input: Box<dyn Read + Send>,
    name: &str,
    manifest: &Manifest,
    db: &DatabaseInfo,
    target: &PgTarget,
    opts: RestoreOptions,
    identity: Option<PathBuf>,
) -> Result<()> {
    let (manifest, db, target, name) = (
        manifest.clone(),
        db.clone(),
        target.clone(),
        name.to_owned(),
    );

    tokio::task::spawn_blocking(move || -> Result<()> {
        let decoded = decoder_with_identity_file(
            input,
            manifest.compression,
            manifest.encrypted,
            identity.as_deref(),
        )?;
        pg::pg_restore_from(&name, decoded, &manifest, &db, &target, &opts).map(|_| ())
    })
    .await
    .expect("restore task")
}

/// `eternia-backup restore`: under the restore Lease when it talks to Kubernetes.
#[instrument(skip_all, fields(database = %cfg.target, mode = ?cfg.mode, dry_run = cfg.dry_run))]
pub async fn run(
    cfg: &RestoreConfig,
    stores: &StoreSet,
    cluster: &Cluster,
) -> Result<RestoreSummary> {
    let guard = match (&cfg.lease, &cfg.kubernetes) {
        (Some(lease), Some(_)) => {
            Some(crate::kube::lease::acquire(cluster.client().await?, lease).await?)
        }
        _ => None,
    };
    // On SIGTERM the restore's step is dropped (its scratch files go with it) and the Lease given back.
    let result = tokio::select! {
        r = restore_locked(cfg, stores, cluster, guard.as_ref()) => r,
        () = crate::interrupt::requested() => Err(Error::Stopped {
            during: crate::interrupt::current_step().unwrap_or_else(|| "restoring".into()),
        }),
    };
    // A restore stopped midway (SIGTERM) left the schemas set aside, connections refused and the
    // application scaled down: put them back, allow them again and scale it back (a failure is logged).
    let aside = ASIDE.lock().expect("aside lock").take();
    if let Some(aside) = aside
        && let Err(e) = aside.put_back().await
    {
        error!(error = %e, "the database's schemas could not be put back");
    }
    let _ = reopen_connections().await;
    let _ = resume_application().await;
    if let Some(g) = guard {
        g.release().await;
    }
    result
}

/// One database this restore loads: where from, where to, whether it is there already.
struct Into {
    db: DatabaseInfo,
    target: PgTarget,
    exists: bool,
}

async fn restore_locked(
    cfg: &RestoreConfig,
    stores: &StoreSet,
    cluster: &Cluster,
    lease: Option<&LeaseGuard>,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let (store, backup) = stores.resolve(&cfg.which).await?;
    let name = backup.name.clone();
    info!(archive = %name, location = %store.location(), "restoring");
    crate::interrupt::step(format!(
        "checking versions for {name} (nothing was changed)"
    ));
    let (sidecar, into) = preflight(cfg, store, &name).await?;
    crate::interrupt::step(format!("verifying {name} (nothing was changed)"));
    let jobs = jobs_for(cfg);
    // Swap mode loads a scratch database while it verifies (a mismatch drops it); clean mode loads the
    // live database beside its schemas set aside (a mismatch puts them back), and verifies every
    // checksum first when they cannot be set aside.
    let load_while_verifying = jobs > 1
        && !cfg.dry_run
        && !sidecar.manifest.objects_only
        && sidecar.manifest.more_databases.is_empty()
        && match cfg.mode {
            Mode::Swap => true,
            Mode::Clean => clean_sets_aside(&into).await?,
        };
    let Verified {
        manifest,
        objects,
        globals,
    } = if load_while_verifying {
        head(store, &backup, &cfg.identity_file).await?
    } else {
        verified(store, &backup, &cfg.identity_file).await?
    };
    if let (false, Some(d)) = (
        cfg.ownership.owner_map.is_empty(),
        into.iter().find(|d| !globals.contains_key(&d.db.name)),
    ) {
        return Err(Error::Restore {
            step: "owner map".into(),
            problem: format!(
                "{name} does not record who owns the objects of database {} (an archive of format 1)",
                d.db.name
            ),
            hint:
                "restore it with --no-owner (or with the owners as they are); nothing was changed"
                    .into(),
        });
    }
    let mut summary = RestoreSummary {
        archive: name.clone(),
        location: store.location(),
        database: into
            .first()
            .map(|d| d.target.to_string())
            .unwrap_or_default(),
        mode: Some(cfg.mode),
        jobs,
        databases: into
            .iter()
            .map(|d| DatabaseRestored {
                archived: d.db.name.clone(),
                database: d.target.to_string(),
                table_counts: d.db.tables.clone(),
                dump_bytes: d.db.dump_bytes,
                created: !d.exists,
                ..DatabaseRestored::default()
            })
            .collect(),
        tables: into.iter().map(|d| d.db.tables.len()).sum(),
        rows: into.iter().flat_map(|d| &d.db.tables).map(|t| t.rows).sum(),
        dry_run: cfg.dry_run,
        ..RestoreSummary::default()
    };
    let kube = match &cfg.kubernetes {
        Some(k) => Some((cluster.client().await?, k)),
        None => None,
    };
    if cfg.dry_run {
        if let Some((client, k)) = &kube {
            summary.objects = apply::apply_objects(
                client.clone(),
                &k.namespace,
                &objects,
                k.include_gitops,
                true,
            )
            .await?;
            summary.restarted = k.deployments.clone();
        }
        summary.duration = started.elapsed();
        return Ok(summary);
    }

    if let Some(pre) = &cfg.hooks.pre {
        still_ours(lease).await?;
        crate::interrupt::step("running the pre-restore hook (nothing was changed)");
        hooks::run(pre, &hook_event(cfg, &name, "pre-restore", None)).await?;
    }
    // The application quiet (when asked), then the safety backup and everything that changes the
    // databases and the objects (nothing the application writes after the safety backup is lost); it
    // comes back after, whatever the result; then the post-restore hook hears of the result.
    let outcome: Result<()> = async {
        let quiet = scale_down(kube.as_ref(), lease).await?;
        let changed: Result<()> = async {
            still_ours(lease).await?;
            crate::interrupt::step("taking the safety backup (nothing was changed)");
            if !manifest.objects_only {
                summary.safety_backup = safety_backup(cfg, stores, cluster, &into).await?;
            }
            let undo = undo_text(cfg.mode, summary.safety_backup.as_deref(), &into);

            if !globals.is_empty() {
                still_ours(lease).await?;
                crate::interrupt::step(
                    "creating the roles the backup needs (the database was not touched)",
                );
                summary.roles = create_roles(cfg, &into, &globals).await?;
            }

            for (i, d) in into.iter().enumerate() {
                let load = Load {
                    store,
                    backup: &backup,
                    name: &name,
                    manifest: &manifest,
                    db: &d.db,
                    opts: RestoreOptions {
                        pg_restore: cfg.pg_restore.clone(),
                        ownership: cfg.ownership.clone(),
                        jobs,
                    },
                    identity: &cfg.identity_file,
                    globals: globals.get(&d.db.name),
                    verified_before: !load_while_verifying,
                };
                still_ours(lease).await.map_err(|e| with_undo(e, &undo))?;
                let db = &d.target.dbname;
                crate::interrupt::step(match cfg.mode {
                    Mode::Clean => format!(
                        "loading the database {db} (clean mode: it is incomplete); {undo}"
                    ),
                    Mode::Swap => format!(
                        "loading a scratch database (swap mode: the live database {db} was not touched); {undo}"
                    ),
                });
                let done = &mut summary.databases[i];
                let loaded = match cfg.mode {
                    Mode::Clean => restore_clean(&d.target, &load, &undo).await?,
                    Mode::Swap => {
                        let (loaded, previous) = restore_swap(&d.target, &load, lease)
                            .await
                            .map_err(|e| if i > 0 { with_undo(e, &undo) } else { e })?;
                        done.previous_database = previous;
                        loaded
                    }
                };
                done.row_check = loaded.check;
                done.owners_mapped = loaded.owners_mapped;
            }

            if let Some((client, k)) = &kube {
                still_ours(lease).await.map_err(|e| with_undo(e, &undo))?;
                crate::interrupt::step(format!(
                    "applying the ConfigMaps/Secrets and restarting the Deployments (the database is restored); {undo}"
                ));
                summary.objects = apply::apply_objects(
                    client.clone(),
                    &k.namespace,
                    &objects,
                    k.include_gitops,
                    false,
                )
                .await
                .map_err(|e| with_undo(e, &undo))?;
                if !quiet {
                    summary.restarted = restart(client.clone(), k).await?;
                }
            }
            Ok(())
        }
        .await;
        let back = bring_back(kube.as_ref(), changed.is_ok(), &mut summary).await;
        summary.schemas_left_aside = set_aside_dropped().await;
        changed.and(back)
    }
    .await;
    post_hook(cfg, &name, outcome).await?;
    summary.duration = started.elapsed();
    Ok(summary)
}

/// The safety backup of the current state (`None`: not asked, or no database to keep).
async fn safety_backup(
    cfg: &RestoreConfig,
    stores: &StoreSet,
    cluster: &Cluster,
    into: &[Into],
) -> Result<Option<String>> {
    let Some(safety) = &cfg.safety else {
        return Ok(None);
    };
    // Swap mode keeps the replaced database under another name: that is the way back for the data, so
    // the safety backup holds the ConfigMaps/Secrets alone (and without Kubernetes there is none).
    if cfg.mode == Mode::Swap {
        if cfg.kubernetes.is_none() {
            info!("no safety backup: swap mode keeps the replaced database as the way back");
            return Ok(None);
        }
        let mut objects = safety.clone();
        objects.objects_only = true;
        let s = backup::run(&objects, stores, cluster)
            .await
            .map_err(|e| Error::RestoreStep {
                step: "safety backup".into(),
                source: Box::new(e),
                hint: "nothing was changed; fix the cause or pass --no-safety-backup if you accept no way back for the ConfigMaps/Secrets".into(),
            })?;
        info!(safety_backup = %s.name, "safety backup of the ConfigMaps/Secrets taken; the replaced database is kept as the way back for the data");
        return Ok(Some(s.name));
    }
    let present: Vec<&PgTarget> = into
        .iter()
        .filter(|d| d.exists)
        .map(|d| &d.target)
        .collect();
    let Some(first) = present.first() else {
        info!(
            database = %cfg.target.dbname,
            "no safety backup: the database does not exist on this server, there is nothing to keep"
        );
        return Ok(None);
    };
    // Every database this restore overwrites, in one archive.
    let mut safety = safety.clone();
    safety.target = (*first).clone();
    safety.databases =
        backup::Databases::Named(present[1..].iter().map(|t| t.dbname.clone()).collect());
    let s = backup::run(&safety, stores, cluster)
        .await
        .map_err(|e| Error::RestoreStep {
            step: "safety backup".into(),
            source: Box::new(e),
            hint: "nothing was changed; fix the cause or pass --no-safety-backup if you accept no way back"
                .into(),
        })?;
    info!(safety_backup = %s.name, "safety backup taken: restore it to undo this restore");
    Ok(Some(s.name))
}

/// The way back, as a failure names it.
fn undo_text(mode: Mode, safety_backup: Option<&str>, into: &[Into]) -> String {
    if mode == Mode::Swap {
        let objects = match safety_backup {
            Some(n) => format!(
                "; the ConfigMaps/Secrets as they were are in safety backup {n}: `eternia-backup restore {n}` puts them back"
            ),
            None => String::new(),
        };
        return format!(
            "swap mode renames the live database only once the new one is loaded and checked, and keeps it (`<db>_pre_restore_<time>`, in the log){objects}"
        );
    }
    let created: Vec<&str> = into
        .iter()
        .filter(|d| !d.exists)
        .map(|d| d.target.dbname.as_str())
        .collect();
    let drop = match created.as_slice() {
        [] => String::new(),
        [db] => format!(
            "the database {db} did not exist before this restore: `DROP DATABASE {db}` undoes it"
        ),
        dbs => format!(
            "the databases {} did not exist before this restore: dropping them undoes it",
            dbs.join(", ")
        ),
    };
    let several = into.iter().filter(|d| d.exists).count() > 1;
    let back = match (safety_backup, into.iter().any(|d| d.exists)) {
        (Some(n), _) if several => format!(
            "the previous state is in safety backup {n}: `eternia-backup restore {n} --all-databases` puts it back"
        ),
        (Some(n), _) => format!(
            "the previous state is in safety backup {n}: `eternia-backup restore {n}` puts it back"
        ),
        (None, true) => "no safety backup was taken (--no-safety-backup)".into(),
        (None, false) => String::new(),
    };
    [back, drop]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn hook_event<'a>(
    cfg: &'a RestoreConfig,
    backup: &'a str,
    hook: &'static str,
    result: Option<&'static str>,
) -> hooks::HookEvent<'a> {
    hooks::HookEvent {
        hook,
        backup,
        database: &cfg.target.dbname,
        result,
    }
}

/// With `--scale-to-zero`: the Deployments scaled to zero (and recorded, to come back also after a
/// SIGTERM). `false`: not asked.
async fn scale_down(
    kube: Option<&(kube::Client, &KubeRestore)>,
    lease: Option<&LeaseGuard>,
) -> Result<bool> {
    let Some((client, k)) = kube.filter(|(_, k)| k.scale_to_zero) else {
        return Ok(false);
    };
    still_ours(lease).await?;
    crate::interrupt::step("scaling the application to zero (the database was not touched)");
    let names = k
        .deployments
        .iter()
        .map(|d| apply::deployment_name(d).map(str::to_owned))
        .collect::<Result<Vec<_>>>()?;
    let scaled =
        quiesce::scale_to_zero(client.clone(), &k.namespace, &names, k.rollout_timeout).await?;
    *SCALED.lock().expect("scaled lock") = Some((client.clone(), k.namespace.clone(), scaled));
    Ok(true)
}

/// The Deployments [`scale_down`] scaled, back to their counts; after a successful restore (`wait`),
/// their rollouts waited for.
async fn bring_back(
    kube: Option<&(kube::Client, &KubeRestore)>,
    wait: bool,
    summary: &mut RestoreSummary,
) -> Result<()> {
    let (Some(scaled), Some((client, k)), true) = (resume_application().await?, kube, wait) else {
        return Ok(());
    };
    for s in &scaled {
        apply::wait_rollout(
            client.clone(),
            &k.namespace,
            &s.name,
            k.rollout_timeout,
            ROLLOUT_POLL,
        )
        .await?;
        summary.restarted.push(format!(
            "deployment/{} (scaled back to {})",
            s.name, s.replicas
        ));
    }
    Ok(())
}

/// The post-restore hook, told the outcome; the restore's own error comes first.
async fn post_hook(cfg: &RestoreConfig, backup: &str, outcome: Result<()>) -> Result<()> {
    let Some(post) = &cfg.hooks.post else {
        return outcome;
    };
    let result = if outcome.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    let ran = hooks::run(post, &hook_event(cfg, backup, "post-restore", Some(result))).await;
    if let (Err(restore), Err(hook)) = (&outcome, &ran) {
        warn!(error = %hook, restore_error = %restore, "the post-restore hook failed too");
    }
    outcome.and(ran)
}

/// Before anything else: the server is reachable, new enough for the backup, and the `pg_restore` reads
/// its dump. Returns the backup's sidecar and the databases to load (whether each exists there).
async fn preflight(
    cfg: &RestoreConfig,
    store: &dyn BackupStore,
    name: &str,
) -> Result<(Sidecar, Vec<Into>)> {
    let sidecar = store.sidecar(name).await?;
    if sidecar.manifest.objects_only {
        if cfg.kubernetes.is_none() {
            return Err(Error::Restore {
                step: "plan".into(),
                problem: format!("{name} holds ConfigMaps/Secrets alone (a swap restore's safety backup), and --no-kubernetes leaves nothing to restore"),
                hint: "restore it with Kubernetes; its database was kept by the swap restore under another name (see that restore's summary); nothing was changed".into(),
            });
        }
        info!(archive = %name, "ConfigMaps/Secrets alone: the database is not touched");
        return Ok((sidecar, Vec::new()));
    }
    let planned = which_databases::plan(name, &sidecar.manifest, &cfg.databases, &cfg.target)?;
    let db = &sidecar.manifest.database;
    let mut conn = pg::maintenance(&cfg.target).await?;
    let server: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| cfg.target.error("cannot read the server version", &e))?;
    let pg_restore = match crate::postgres::version::client_version(&cfg.pg_restore) {
        Ok(v) => v,
        Err(e) => {
            warn!(error = %e, "cannot tell pg_restore's version; not checked against the dump's");
            server.clone()
        }
    };
    crate::postgres::version::check_restore(
        &db.server_version,
        db.pg_dump_version.as_deref(),
        &pg_restore,
        &server,
    )?;
    let mut into = Vec::new();
    for Planned { db, target } in planned {
        let exists = pg::database_exists(&mut conn, &cfg.target, &target.dbname).await?;
        into.push(Into { db, target, exists });
    }
    info!(
        backed_up_server = %db.server_version,
        pg_dump = db.pg_dump_version.as_deref().unwrap_or("unrecorded"),
        pg_restore = %pg_restore,
        server = %server,
        databases = into.len(),
        database_exists = into[0].exists,
        "versions checked"
    );
    Ok((sidecar, into))
}

/// The roles the backups of the databases need that the server lacks, created (unless
/// `--no-create-roles`). Owners that `--owner-map` renames are not needed; with `--no-owner
/// --no-privileges` no role is.
async fn create_roles(
    cfg: &RestoreConfig,
    into: &[Into],
    globals: &BTreeMap<String, Globals>,
) -> Result<RolesReport> {
    let mut needed: Vec<Role> = Vec::new();
    for g in into.iter().filter_map(|d| globals.get(&d.db.name)) {
        for r in g.needed_roles(&cfg.ownership) {
            if !needed.iter().any(|n| n.name == r.name) {
                needed.push(r);
            }
        }
    }
    if !cfg.roles.create || needed.is_empty() {
        return Ok(RolesReport::default());
    }
    let mut conn = pg::maintenance(&cfg.target).await?;
    globals::ensure_roles(
        &mut conn,
        &cfg.target,
        &needed,
        cfg.roles.passwords_dir.as_deref(),
    )
    .await
}

/// `--jobs`, or one connection per CPU this process may use, 2 to 4 (the dump streams into them:
/// no room is needed on the volume).
fn jobs_for(cfg: &RestoreConfig) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = cfg.jobs.unwrap_or_else(|| default_jobs(cpus));
    info!(
        jobs,
        "{}",
        if jobs > 1 {
            "the dump streams into parallel connections as it is verified"
        } else {
            "the dump is streamed into one pg_restore"
        }
    );
    jobs
}

/// Where the dump comes from and how pg_restore loads it.
struct Load<'a> {
    store: &'a dyn BackupStore,
    backup: &'a StoredBackup,
    name: &'a str,
    manifest: &'a Manifest,
    /// The archived database loaded.
    db: &'a DatabaseInfo,
    opts: RestoreOptions,
    identity: &'a Option<PathBuf>,
    globals: Option<&'a Globals>,
    /// Every entry was checked by a first read (clean mode): loading reads the archive again, and its
    /// whole-file checksum proves it the same bytes, so the entries' are not computed twice.
    verified_before: bool,
}

/// A loaded database, checked.
struct Loaded {
    check: RowCheck,
    owners_mapped: usize,
}

impl Load<'_> {
    /// Opens the archive (from the bucket perhaps): before anything is changed, so that a store that
    /// cannot be read fails the restore while the database is still whole.
    async fn open(&self) -> Result<Box<dyn Read + Send>> {
        self.store.open(self.name).await
    }

    /// Loads the dump into `into` and checks the row counts against the manifest.
    async fn load_into(&self, into: &PgTarget) -> Result<Loaded> {
        let input = self.open().await?;
        self.load_opened(input, into).await
    }

    async fn load_opened(&self, input: Box<dyn Read + Send>, into: &PgTarget) -> Result<Loaded> {
        if self.opts.jobs > 1 {
            self.stream_load(input, into).await?
        } else {
            load_dump(
                input,
                self.name,
                self.manifest,
                self.db,
                into,
                self.opts.clone(),
                self.identity.clone(),
            )
            .await?
        }
        let owners_mapped = self.map_owners(into).await?;
        Ok(Loaded {
            check: check_rows(into, &self.db.tables).await?,
            owners_mapped,
        })
    }

    /// The streamed parallel load (see [`crate::postgres::stream_load`]), fed by a verification of the
    /// archive: the whole-file digest and every entry's checksum (only their sizes when a first read
    /// checked them: see [`Load::verified_before`]); a mismatch stops it.
    async fn stream_load(&self, archive: Box<dyn Read + Send>, into: &PgTarget) -> Result<()> {
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let loader = crate::postgres::stream_load::StreamLoad::new(
            self.db,
            into,
            &self.opts,
            failed.clone(),
        );
        let checked = verify::check_opened(
            self.store,
            self.backup,
            Some(archive),
            self.identity.clone(),
            if self.verified_before {
                EntryCheck::SizeOnly
            } else {
                EntryCheck::Checksum
            },
            loader,
        )
        .await;
        // The loader's own failure explains a verification that stopped early: it comes first.
        if let Some(e) = failed.lock().expect("failed lock").take() {
            return Err(e);
        }
        let (_, loader) = checked?;
        tokio::task::spawn_blocking(move || loader.finish())
            .await
            .expect("load task")
    }

    /// The database's state as the backup recorded it, for a database this restore creates: owner and
    /// privileges as the ownership options say, and only what the server's roles allow (`None`: an
    /// archive that recorded none).
    async fn recorded_state(
        &self,
        conn: &mut sqlx::PgConnection,
        target: &PgTarget,
    ) -> Result<Option<DatabaseState>> {
        match self.globals {
            Some(g) => Ok(Some(
                g.database_for(&self.opts.ownership)
                    .for_roles_present(conn, target)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// With `--owner-map`: every recorded object given its owner, renamed by the map (pg_restore ran
    /// with `--no-owner`). Returns how many objects the map gave to another role.
    async fn map_owners(&self, into: &PgTarget) -> Result<usize> {
        let map = &self.opts.ownership.owner_map;
        let (false, Some(g)) = (map.is_empty(), self.globals) else {
            return Ok(0);
        };
        let mut conn = crate::postgres::snapshot::connect(into).await?;
        for (what, sql) in globals::owner_statements(&g.owners, map) {
            sqlx::query(&sql).execute(&mut conn).await.map_err(|e| Error::Restore {
                step: "owner map".into(),
                problem: format!("cannot change the owner of {what}: {}", crate::postgres::target::redact(&e)),
                hint: "the restoring role must be able to act as the new owner (GRANT <new owner> TO <restoring role>), or restore with --no-owner".into(),
            })?;
        }
        let mapped = g
            .owners
            .iter()
            .filter(|o| map.iter().any(|(old, _)| *old == o.owner))
            .count();
        info!(objects = mapped, "owners renamed by --owner-map");
        Ok(mapped)
    }
}

/// Clean mode: into the database itself, created if missing (as the backup recorded it), after ending
/// its sessions and emptying it. Everything that can fail first (the archive opened, the connections
/// made) happens before the database is emptied; while it is emptied and loaded, new connections are
/// refused (the application reconnecting must not write into a half-restored database) and allowed
/// again afterwards, also on failure. Once it is emptied, a failure names the way back (`undo`).
async fn restore_clean(target: &PgTarget, load: &Load<'_>, undo: &str) -> Result<Loaded> {
    let db = &target.dbname;
    let mut conn = pg::maintenance(target).await?;
    let created = !pg::database_exists(&mut conn, target, db).await?;
    if created {
        let state = load.recorded_state(&mut conn, target).await?;
        pg::create_database(&mut conn, target, db, state.as_ref()).await?;
        if let Some(state) = state {
            state.apply(&mut conn, target, "the backup", db).await?;
        }
    }
    let mut input = load.open().await?;
    let closed = pg::refuse_connections(&mut conn, target, db).await?;
    *REFUSING.lock().expect("refusing lock") = closed.map(|l| (target.clone(), l));
    pg::terminate_sessions(&mut conn, target, db).await?;
    let restored = async {
        if !load.verified_before {
            // Loaded as it is verified: into a database that was not there, or beside the live one's
            // schemas set aside. A failure leaves the server as it was.
            if created {
                return load_into_created(target, load, input).await;
            }
            if let Some(aside) = Aside::set(target).await? {
                return load_beside(target, load, input, aside, undo).await;
            }
            // What keeps the schemas from being set aside appeared since it was looked for. (The
            // archive opened for the load waited through this read: it is opened again.)
            verify::check(load.store, load.backup, load.identity.clone(), ()).await?;
            input = load.open().await?;
        }
        let verified = Load {
            verified_before: true,
            opts: load.opts.clone(),
            ..*load
        };
        async {
            // A database this restore just created is empty already.
            if !created {
                pg::empty_database(target).await?;
            }
            verified.load_opened(input, target).await
        }
        .await
        .map_err(|e| with_undo(e, undo))
    }
    .await;
    let reopened = reopen_connections().await;
    match (restored, reopened) {
        (Ok(loaded), Ok(())) => Ok(loaded),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(with_undo(e, undo)),
    }
}

/// Clean mode into a database this restore created, loaded as the archive is verified: a failure drops
/// it again (the server is as it was).
async fn load_into_created(
    target: &PgTarget,
    load: &Load<'_>,
    input: Box<dyn Read + Send>,
) -> Result<Loaded> {
    let e = match load.load_opened(input, target).await {
        Ok(loaded) => return Ok(loaded),
        Err(e) => e,
    };
    // No connection limit to put back on a database that goes.
    REFUSING.lock().expect("refusing lock").take();
    let db = &target.dbname;
    let dropped = async {
        let mut conn = pg::maintenance(target).await?;
        pg::drop_database(&mut conn, target, db).await
    }
    .await;
    Err(with_undo(
        e,
        &match dropped {
            Ok(()) => {
                format!("the database {db} did not exist before this restore, and is dropped again")
            }
            Err(d) => format!(
                "the database {db} did not exist before this restore and could not be dropped again ({d}): `DROP DATABASE {db}` undoes it"
            ),
        },
    ))
}

/// Clean mode can load while it verifies when the live database's schemas can be set aside (see
/// [`Aside`]), or when there is no live database yet.
async fn clean_sets_aside(into: &[Into]) -> Result<bool> {
    let [d] = into else {
        return Ok(false);
    };
    if !d.exists {
        return Ok(true);
    }
    let mut conn = crate::postgres::snapshot::connect(&d.target).await?;
    let why = set_aside::obstacle(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    if let Some(why) = &why {
        info!(%why, "clean mode verifies the archive before it changes the database: its schemas cannot be set aside while it loads");
    }
    Ok(why.is_none())
}

/// Clean mode, the database's schemas set aside: loads it as the archive is verified. Success starts
/// dropping the schemas set aside (see [`DROPPING`]); a failure (a checksum mismatch, a load that failed, row counts that differ) drops
/// what was restored and puts them back.
async fn load_beside(
    target: &PgTarget,
    load: &Load<'_>,
    input: Box<dyn Read + Send>,
    aside: Aside,
    undo: &str,
) -> Result<Loaded> {
    crate::interrupt::step(format!(
        "loading the database {} beside its schemas set aside as {}; to go back, drop the schemas the restore created, then run {}; or {undo}",
        target.dbname,
        aside.names(),
        aside.rename_back_sql()
    ));
    *ASIDE.lock().expect("aside lock") = Some(aside.clone());
    let loaded = load.load_opened(input, target).await;
    ASIDE.lock().expect("aside lock").take();
    match loaded {
        Ok(loaded) => {
            *DROPPING.lock().expect("dropping lock") = Some(tokio::spawn(aside.drop()));
            Ok(loaded)
        }
        Err(e) => match aside.put_back().await {
            Ok(()) => Err(with_undo(
                e,
                &format!(
                    "the database is as it was: its schemas were set aside while it loaded, and are put back; {undo}"
                ),
            )),
            Err(back) => {
                error!(error = %back, "the database's schemas could not be put back");
                Err(with_undo(e, &format!("{back}; {undo}")))
            }
        },
    }
}

/// Waits for the schemas set aside to be dropped, if a clean restore started that (see [`DROPPING`]).
/// The database is restored by then: a drop that failed is not the restore's failure but a warning,
/// which names the schemas left and the statement that drops them (the next clean restore of the
/// database drops them too).
async fn set_aside_dropped() -> Option<String> {
    let dropping = DROPPING.lock().expect("dropping lock").take()?;
    match dropping.await.expect("the drop of the schemas set aside") {
        Ok(()) => None,
        Err(e) => {
            warn!(error = %e, "the restore succeeded; the schemas set aside before it are left");
            Some(e.to_string())
        }
    }
}

/// Scales the Deployments this restore scaled to zero back (`None`: it scaled none).
async fn resume_application() -> Result<Option<Vec<quiesce::Scaled>>> {
    let scaled = SCALED.lock().expect("scaled lock").take();
    let Some((client, ns, scaled)) = scaled else {
        return Ok(None);
    };
    quiesce::scale_back(client, &ns, &scaled).await?;
    Ok(Some(scaled))
}

/// Allows connections again to the database this restore refused them to, if any. A failure is logged
/// (the error names the statement to run by hand) and returned.
async fn reopen_connections() -> Result<()> {
    let refusing = REFUSING.lock().expect("refusing lock").take();
    let Some((target, limit)) = refusing else {
        return Ok(());
    };
    let reopened = async {
        let mut conn = pg::maintenance(&target).await?;
        pg::allow_connections(&mut conn, &target, &target.dbname, limit).await
    }
    .await;
    if let Err(e) = &reopened {
        warn!(error = %e, "connections to the database are still refused");
    }
    reopened
}

/// Before each step that changes something: is the Lease still this restore's? (Two restores must never
/// both write.) Without Kubernetes there is no Lease to lose.
async fn still_ours(lease: Option<&LeaseGuard>) -> Result<()> {
    match lease {
        Some(l) => l.ensure_held().await,
        None => Ok(()),
    }
}

/// Swap mode: into a scratch database, checked, then renamed into place; the replaced database is kept
/// (its name returned). The scratch database gets the live one's database-level state (owner, locale,
/// settings, privileges, comment), or the backup's when there is no live one. The live database is not
/// touched unless the scratch one is good.
async fn restore_swap(
    target: &PgTarget,
    load: &Load<'_>,
    lease: Option<&LeaseGuard>,
) -> Result<(Loaded, Option<String>)> {
    let db = &target.dbname;
    let mut conn = pg::maintenance(target).await?;
    let [scratch, previous] =
        unused_names(&mut conn, target, db, ["restore", "pre_restore"]).await?;
    let exists = pg::database_exists(&mut conn, target, db).await?;
    // pg_dump leaves out what belongs to the database itself: carried over from the live database.
    let (state, from) = if exists {
        (
            Some(DatabaseState::read(&mut conn, target, db).await?),
            db.as_str(),
        )
    } else {
        (load.recorded_state(&mut conn, target).await?, "the backup")
    };
    pg::create_database(&mut conn, target, &scratch, state.as_ref()).await?;
    let untouched = |step: &str, e: Error| Error::RestoreStep {
        step: step.into(),
        source: Box::new(e),
        hint: format!("the live database {db} was not touched"),
    };
    let loaded = match load.load_into(&target.with_database(&scratch)).await {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = pg::drop_database(&mut conn, target, &scratch).await;
            return Err(untouched("restore into a scratch database", e));
        }
    };
    if let Some(state) = &state
        && let Err(e) = state.apply(&mut conn, target, from, &scratch).await
    {
        let _ = pg::drop_database(&mut conn, target, &scratch).await;
        return Err(untouched("carry the database settings over", e));
    }
    // The rename is what changes the live database: only while the Lease is still ours.
    if let Err(e) = still_ours(lease).await {
        let _ = pg::drop_database(&mut conn, target, &scratch).await;
        return Err(e);
    }
    if !exists {
        pg::rename_database(&mut conn, target, &scratch, db).await?;
        return Ok((loaded, None));
    }
    pg::rename_database(&mut conn, target, db, &previous).await?;
    if let Err(e) = pg::rename_database(&mut conn, target, &scratch, db).await {
        let _ = pg::rename_database(&mut conn, target, &previous, db).await;
        return Err(e);
    }
    info!(previous = %previous, "the replaced database is kept; drop it once the restore is confirmed");
    Ok((loaded, Some(previous)))
}

/// Rollout-restarts every Deployment, then waits for each; returns `deployment/<name>` for each.
async fn restart(client: kube::Client, k: &KubeRestore) -> Result<Vec<String>> {
    let at = Timestamp::now().to_string();
    let mut restarted = Vec::new();
    for spec in &k.deployments {
        let name = apply::deployment_name(spec)?;
        apply::rollout_restart(client.clone(), &k.namespace, name, &at).await?;
        restarted.push(format!("deployment/{name}"));
    }
    for spec in &k.deployments {
        apply::wait_rollout(
            client.clone(),
            &k.namespace,
            apply::deployment_name(spec)?,
            k.rollout_timeout,
            ROLLOUT_POLL,
        )
        .await?;
    }
    Ok(restarted)
}

/// Connections when nobody said: one per CPU, 2 to 4.
pub fn default_jobs(cpus: usize) -> u32 {
    cpus.clamp(2, 4) as u32
}

/// Adds the way back (the safety backup) to an error, keeping the step and cause it already names.
fn with_undo(e: Error, undo: &str) -> Error {
    match e {
        Error::Restore {
            step,
            problem,
            hint,
        } => Error::Restore {
            step,
            problem,
            hint: format!("{hint}; {undo}"),
        },
        Error::RestoreStep { step, source, hint } => Error::RestoreStep {
            step,
            source,
            hint: format!("{hint}; {undo}"),
        },
        other => Error::RestoreStep {
            step: "restore".into(),
            source: Box::new(other),
            hint: undo.to_owned(),
        },
    }
}

async fn check_rows(target: &PgTarget, tables: &[TableCount]) -> Result<RowCheck> {
    let check = pg::compare_row_counts(target, tables, Counting::CountersFirst).await?;
    if check.differences.is_empty() {
        info!(
            database = %target.dbname,
            tables = tables.len(),
            by_counters = check.by_counters,
            counted = check.counted,
            "row counts match the manifest"
        );
        return Ok(check);
    }
    let diffs = &check.differences;
    Err(Error::Restore {
        step: "row count check".into(),
        problem: format!(
            "{} tables of database {} differ from the manifest: {}",
            diffs.len(),
            target.dbname,
            diffs.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ),
        hint: "the restored data is not what was backed up".into(),
    })
}

/// `<db>_<kind>_<YYYYmmdd_HHMMSS>` names no database has yet. A killed restore or drill leaves its
/// scratch database behind; a run in the same second waits for the next one rather than reuse or drop it.
pub(crate) async fn unused_names<const N: usize>(
    conn: &mut sqlx::PgConnection,
    target: &PgTarget,
    db: &str,
    kinds: [&str; N],
) -> Result<[String; N]> {
    loop {
        let now = Timestamp::now();
        let stamp = now.strftime("%Y%m%d_%H%M%S").to_string();
        let names = kinds.map(|k| pg::derived_name(db, &format!("{k}_{stamp}")));
        let mut free = true;
        for n in &names {
            free &= !pg::database_exists(conn, target, n).await?;
        }
        if free {
            return Ok(names);
        }
        crate::archive::name::sleep_into_next_second(now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::default_jobs;

    #[test]
    fn parallel_by_default_with_one_connection_per_cpu_from_two_to_four() {
        assert_eq!(default_jobs(1), 2);
        assert_eq!(default_jobs(3), 3);
        assert_eq!(default_jobs(64), 4);
    }
}
