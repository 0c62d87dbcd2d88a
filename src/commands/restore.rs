//! `eternia-backup restore` and `drill`. Order of work: find → verify every checksum (nothing is changed
//! before this passes) → safety backup of the current state → restore the database (clean or swap) →
//! row counts equal the manifest's → apply ConfigMaps/Secrets → rollout restart → wait → summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{info, instrument, warn};

use crate::archive::codec::decoder_with_identity_file;
use crate::archive::manifest::{Manifest, TableCount};
use crate::commands::backup::{self, BackupPlan};
use crate::commands::verify;
use crate::error::{Error, Result};
use crate::kube::apply::{self, Applied};
use crate::kube::lease::LeaseConfig;
use crate::postgres::PgTarget;
use crate::postgres::restore::{self as pg, Counting, RestoreOptions, RowCheck};
use crate::store::BackupStore;
use crate::store::select::Stores;

/// How often the restore looks at a restarted Deployment while it rolls out (a GET each time): the wait ends
/// within this much of the rollout completing.
const ROLLOUT_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Into the database itself, after ending other sessions and emptying it (exactly the backed-up state).
    Clean,
    /// Restore into a scratch database, check it, then rename it into place (the old one is kept).
    Swap,
}

#[derive(Debug, Clone)]
pub enum Which {
    Latest,
    Named(String),
    Before(Timestamp),
}

pub struct KubeRestore {
    pub client: Option<kube::Client>,
    pub namespace: String,
    pub deployments: Vec<String>,
    pub include_gitops: bool,
    pub rollout_timeout: Duration,
}

pub struct RestorePlan {
    pub stores: Stores,
    pub which: Which,
    pub target: PgTarget,
    pub mode: Mode,
    pub dry_run: bool,
    pub safety: Option<BackupPlan>,
    pub identity_file: Option<PathBuf>,
    pub pg_restore: PathBuf,
    pub kubernetes: Option<KubeRestore>,
    /// `pg_restore -j`; above 1 the dump is first written to the backup volume (needs its size free).
    /// `None`: [`choose_jobs`] decides from the room on the volume.
    pub jobs: Option<u32>,
    /// Held for the whole restore (only with Kubernetes and not for a dry run).
    pub lease: Option<LeaseConfig>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    pub archive: String,
    pub location: String,
    /// Where the dump goes (no password) and how.
    pub database: String,
    pub mode: Option<Mode>,
    pub jobs: u32,
    /// The manifest's tables and row counts, and the dump's size.
    pub table_counts: Vec<TableCount>,
    pub dump_bytes: u64,
    pub safety_backup: Option<String>,
    pub previous_database: Option<String>,
    pub tables: usize,
    pub rows: i64,
    /// How the restored row counts were found equal to the manifest's.
    pub row_check: RowCheck,
    pub objects: Vec<Applied>,
    pub restarted: Vec<String>,
    pub duration: Duration,
    pub dry_run: bool,
}

/// Finds the backup to restore across the configured stores (local first).
pub async fn locate<'a>(
    stores: &'a Stores,
    which: &Which,
) -> Result<(&'a dyn BackupStore, String)> {
    let all = stores.all();
    match which {
        Which::Latest | Which::Named(_) => {
            let key = match which {
                Which::Named(n) => n.as_str(),
                _ => "latest",
            };
            let store = verify::store_holding(&all, key).await?;
            Ok((store, verify::find(store, key).await?.name))
        }
        Which::Before(t) => {
            let mut best: Option<(&dyn BackupStore, String, Timestamp)> = None;
            for &s in &all {
                for b in s.list().await? {
                    if b.created <= *t && best.as_ref().is_none_or(|(_, _, bt)| b.created > *bt) {
                        best = Some((s, b.name, b.created));
                    }
                }
            }
            best.map(|(s, n, _)| (s, n)).ok_or_else(|| Error::NotFound {
                what: format!("created at or before {t}"),
                location: all
                    .iter()
                    .map(|s| s.location())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// Verifies, then returns the manifest and the archived Kubernetes objects.
async fn verified(
    store: &dyn BackupStore,
    name: &str,
    identity: &Option<PathBuf>,
    extract_dump: Option<&Path>,
) -> Result<(Manifest, Vec<Vec<u8>>)> {
    let report = verify::verify(
        store,
        name,
        identity.clone(),
        extract_dump.map(Path::to_path_buf),
    )
    .await?;
    if !report.contents_checked {
        return Err(Error::Encryption(format!(
            "{name} is encrypted: restore needs the private key; set AGE_IDENTITY_FILE or pass --identity-file"
        )));
    }
    Ok((store.sidecar(name).await?.manifest, report.objects))
}

/// Restores the dump: from the file extracted during verification (`pg_restore -j`), or by reading the
/// archive once more (checking every checksum again) into a streamed pg_restore.
async fn restore_pass(
    store: &dyn BackupStore,
    name: &str,
    manifest: &Manifest,
    target: &PgTarget,
    opts: RestoreOptions,
    identity: Option<PathBuf>,
    dump_file: Option<&Path>,
) -> Result<()> {
    if let Some(file) = dump_file {
        let (file, target) = (file.to_owned(), target.clone());
        return tokio::task::spawn_blocking(move || pg::pg_restore_file(&file, &target, &opts))
            .await
            .expect("restore task");
    }
    let input = store.open(name).await?;
    let (manifest, target, name) = (manifest.clone(), target.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let decoded = decoder_with_identity_file(
            input,
            manifest.compression,
            manifest.encrypted,
            identity.as_deref(),
        )?;
        pg::pg_restore_from(&name, decoded, &manifest, &target, &opts).map(|_| ())
    })
    .await
    .expect("restore task")
}

#[instrument(skip_all, fields(database = %plan.target, mode = ?plan.mode, dry_run = plan.dry_run))]
pub async fn run(mut plan: RestorePlan) -> Result<RestoreSummary> {
    let guard = match (plan.lease.take(), &mut plan.kubernetes) {
        (Some(cfg), Some(k)) => {
            let client = match &k.client {
                Some(c) => c.clone(),
                None => crate::kube::client().await?,
            };
            k.client = Some(client.clone());
            Some(crate::kube::lease::acquire(client, &cfg).await?)
        }
        _ => None,
    };
    let result = restore_locked(plan).await;
    if let Some(g) = guard {
        g.release().await;
    }
    result
}

async fn restore_locked(plan: RestorePlan) -> Result<RestoreSummary> {
    let started = Instant::now();
    let (store, name) = locate(&plan.stores, &plan.which).await?;
    info!(archive = %name, location = %store.location(), "restoring");
    let jobs = match (plan.jobs, &plan.stores.local) {
        (Some(n), _) => n,
        (None, None) => 1,
        (None, Some(local)) => {
            let sidecar = store.sidecar(&name).await?;
            // Room for the dump, and for the safety backup (about the archive's size) taken after it.
            let need = sidecar.manifest.database.dump_bytes
                + if plan.safety.is_some() {
                    sidecar.archive.size
                } else {
                    0
                };
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let free = free_bytes(local.dir());
            let jobs = choose_jobs(free, need, cpus);
            info!(
                jobs,
                need_mib = need >> 20,
                free_mib = free.map(|f| f >> 20),
                "{}",
                if jobs > 1 {
                    "parallel pg_restore: the dump goes to the backup volume first"
                } else {
                    "the dump is streamed into one pg_restore: the backup volume has no room for it"
                }
            );
            jobs
        }
    };
    // With more than one job the dump is extracted to the volume during verification (one pass, not two).
    let dump_scratch = match (&plan.stores.local, jobs > 1 && !plan.dry_run) {
        (Some(local), true) => Some(pg::ScratchFile::new(local.dir())),
        _ => None,
    };
    let dump_file = dump_scratch.as_ref().map(|f| f.path());
    let (manifest, objects) = verified(store, &name, &plan.identity_file, dump_file).await?;
    let mut summary = RestoreSummary {
        archive: name.clone(),
        location: store.location(),
        database: plan.target.to_string(),
        mode: Some(plan.mode),
        jobs,
        table_counts: manifest.database.tables.clone(),
        dump_bytes: manifest.database.dump_bytes,
        tables: manifest.database.tables.len(),
        rows: manifest.database.tables.iter().map(|t| t.rows).sum(),
        dry_run: plan.dry_run,
        ..RestoreSummary::default()
    };

    let kube = match &plan.kubernetes {
        Some(k) => Some((
            match &k.client {
                Some(c) => c.clone(),
                None => crate::kube::client().await?,
            },
            k,
        )),
        None => None,
    };
    if plan.dry_run {
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

    if let Some(safety) = plan.safety {
        let s = backup::run(safety).await.map_err(|e| Error::Restore {
            step: "safety backup".into(),
            problem: e.to_string(),
            hint: "nothing was changed; fix the cause or pass --no-safety-backup if you accept no way back".into(),
        })?;
        info!(safety_backup = %s.name, "safety backup taken: restore it to undo this restore");
        summary.safety_backup = Some(s.name);
    }
    let undo = summary
        .safety_backup
        .as_ref()
        .map(|n| format!("the previous state is in safety backup {n}: `eternia-backup restore {n}` puts it back"))
        .unwrap_or_else(|| "no safety backup was taken (--no-safety-backup)".into());

    let db = plan.target.dbname.clone();
    let opts = |clean| RestoreOptions {
        pg_restore: plan.pg_restore.clone(),
        clean,
        jobs,
    };
    match plan.mode {
        Mode::Clean => {
            let mut conn = pg::maintenance(&plan.target).await?;
            if !pg::database_exists(&mut conn, &plan.target, &db).await? {
                pg::create_database(&mut conn, &plan.target, &db, None).await?;
            }
            pg::terminate_sessions(&mut conn, &plan.target, &db).await?;
            let restored = async {
                pg::empty_database(&plan.target).await?;
                restore_pass(
                    store,
                    &name,
                    &manifest,
                    &plan.target,
                    opts(false),
                    plan.identity_file.clone(),
                    dump_file,
                )
                .await
            };
            restored.await.map_err(|e| with_undo(e, &undo))?;
            summary.row_check = check_rows(&plan.target, &manifest)
                .await
                .map_err(|e| with_undo(e, &undo))?;
        }
        Mode::Swap => {
            let mut conn = pg::maintenance(&plan.target).await?;
            let [scratch, previous] =
                unused_names(&mut conn, &plan.target, &db, ["restore", "pre_restore"]).await?;
            let exists = pg::database_exists(&mut conn, &plan.target, &db).await?;
            pg::create_database(
                &mut conn,
                &plan.target,
                &scratch,
                exists.then_some(db.as_str()),
            )
            .await?;
            let into_scratch = plan.target.with_database(&scratch);
            let restored = async {
                restore_pass(
                    store,
                    &name,
                    &manifest,
                    &into_scratch,
                    opts(false),
                    plan.identity_file.clone(),
                    dump_file,
                )
                .await?;
                check_rows(&into_scratch, &manifest).await
            }
            .await;
            let restored = restored.map(|check| summary.row_check = check);
            if let Err(e) = restored {
                let _ = pg::drop_database(&mut conn, &plan.target, &scratch).await;
                return Err(Error::Restore {
                    step: "restore into a scratch database".into(),
                    problem: e.to_string(),
                    hint: format!("the live database {db} was not touched"),
                });
            }
            if exists {
                pg::rename_database(&mut conn, &plan.target, &db, &previous).await?;
                if let Err(e) = pg::rename_database(&mut conn, &plan.target, &scratch, &db).await {
                    let _ = pg::rename_database(&mut conn, &plan.target, &previous, &db).await;
                    return Err(e);
                }
                info!(previous = %previous, "the replaced database is kept; drop it once the restore is confirmed");
                summary.previous_database = Some(previous);
            } else {
                pg::rename_database(&mut conn, &plan.target, &scratch, &db).await?;
            }
        }
    }

    if let Some((client, k)) = kube {
        summary.objects = apply::apply_objects(
            client.clone(),
            &k.namespace,
            &objects,
            k.include_gitops,
            false,
        )
        .await
        .map_err(|e| with_undo(e, &undo))?;
        let at = Timestamp::now().to_string();
        for spec in &k.deployments {
            let name = apply::deployment_name(spec)?;
            apply::rollout_restart(client.clone(), &k.namespace, name, &at).await?;
            summary.restarted.push(format!("deployment/{name}"));
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
    }
    summary.duration = started.elapsed();
    Ok(summary)
}

/// `pg_restore -j` when nobody said: one job per CPU this process may use, 2 to 4, if the volume has
/// `need` bytes free with a 10% margin; else 1 (the dump streamed, needing no room).
pub fn choose_jobs(free: Option<u64>, need: u64, cpus: usize) -> u32 {
    match free {
        Some(free) if free / 11 * 10 >= need => cpus.clamp(2, 4) as u32,
        _ => 1,
    }
}

/// Bytes this process may still write to the filesystem holding `dir` (0 on a read-only mount).
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type, read only when the call succeeds.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    if st.f_flag & libc::ST_RDONLY != 0 {
        return Some(0);
    }
    Some(st.f_bavail.saturating_mul(st.f_frsize))
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
        other => Error::Restore {
            step: "restore".into(),
            problem: other.to_string(),
            hint: undo.to_owned(),
        },
    }
}

async fn check_rows(target: &PgTarget, manifest: &Manifest) -> Result<RowCheck> {
    let check =
        pg::compare_row_counts(target, &manifest.database.tables, Counting::CountersFirst).await?;
    if check.differences.is_empty() {
        info!(
            tables = manifest.database.tables.len(),
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
            "{} tables differ from the manifest: {}",
            diffs.len(),
            diffs.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        ),
        hint: "the restored data is not what was backed up".into(),
    })
}

#[derive(Debug, Clone)]
pub struct DrillReport {
    pub archive: String,
    pub scratch: String,
    pub passed: bool,
    pub problems: Vec<String>,
    pub verify: Duration,
    pub restore: Duration,
    pub total: Duration,
}

/// The runbook's "Testing Backups", automated: restore into a scratch database, compare row counts (and
/// run the optional SQL checks, each of which must return true), drop the scratch database.
#[instrument(skip_all, fields(database = %target))]
pub async fn drill(
    stores: &Stores,
    which: &Which,
    target: &PgTarget,
    pg_restore: PathBuf,
    identity: Option<PathBuf>,
    checks: Option<String>,
) -> Result<DrillReport> {
    let t0 = Instant::now();
    let (store, name) = locate(stores, which).await?;
    let (manifest, _) = verified(store, &name, &identity, None).await?;
    let verify_time = t0.elapsed();
    let mut conn = pg::maintenance(target).await?;
    let [scratch] = unused_names(&mut conn, target, &target.dbname, ["drill"]).await?;
    pg::create_database(&mut conn, target, &scratch, None).await?;
    let into = target.with_database(&scratch);
    let t1 = Instant::now();
    let result = async {
        restore_pass(
            store,
            &name,
            &manifest,
            &into,
            RestoreOptions {
                pg_restore,
                clean: false,
                jobs: 1,
            },
            identity,
            None,
        )
        .await?;
        let mut problems =
            pg::compare_row_counts(&into, &manifest.database.tables, Counting::Exact)
                .await?
                .differences;
        if let Some(sql) = &checks {
            problems.extend(run_checks(&into, sql).await?);
        }
        Ok::<_, Error>(problems)
    }
    .await;
    let restore_time = t1.elapsed();
    if let Err(e) = pg::drop_database(&mut conn, target, &scratch).await {
        warn!(scratch = %scratch, error = %e, "could not drop the drill database");
    }
    let problems = result?;
    Ok(DrillReport {
        archive: name,
        scratch,
        passed: problems.is_empty(),
        problems,
        verify: verify_time,
        restore: restore_time,
        total: t0.elapsed(),
    })
}

/// Each `;`-separated statement must return a single true value.
async fn run_checks(target: &PgTarget, sql: &str) -> Result<Vec<String>> {
    use sqlx::Connection;
    let mut conn = crate::postgres::snapshot::connect(target).await?;
    let mut problems = Vec::new();
    for stmt in sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with("--"))
    {
        match sqlx::query_scalar::<_, bool>(stmt)
            .fetch_one(&mut conn)
            .await
        {
            Ok(true) => {}
            Ok(false) => problems.push(format!("check returned false: {stmt}")),
            Err(e) => problems.push(format!("check failed: {stmt}: {e}")),
        }
    }
    let _ = conn.close().await;
    Ok(problems)
}

/// `<db>_<kind>_<YYYYmmdd_HHMMSS>` names no database has yet. A killed restore or drill leaves its
/// scratch database behind; a run in the same second waits for the next one rather than reuse or drop it.
async fn unused_names<const N: usize>(
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
        tokio::time::sleep(Duration::from_millis(
            1000 - u64::from(now.subsec_millisecond().unsigned_abs()) + 5,
        ))
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::choose_jobs;

    const GIB: u64 = 1 << 30;

    #[test]
    fn parallel_by_default_only_with_room_for_the_dump_and_a_margin() {
        assert_eq!(choose_jobs(Some(10 * GIB), GIB, 1), 2);
        assert_eq!(choose_jobs(Some(10 * GIB), GIB, 3), 3);
        assert_eq!(choose_jobs(Some(10 * GIB), GIB, 64), 4);
        assert_eq!(choose_jobs(Some(GIB), GIB, 8), 1, "no margin left");
        assert_eq!(choose_jobs(None, GIB, 8), 1, "free space unknown");
    }
}
