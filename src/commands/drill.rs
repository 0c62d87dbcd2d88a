//! `eternia-backup drill`: the runbook's "Testing Backups", automated. Verify a backup, restore it into
//! a scratch database, compare row counts (and run the optional SQL checks), drop the scratch database.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{instrument, warn};

use crate::commands::restore::{Verified, restore_pass, unused_names, verified};
use crate::commands::which_databases::{self, ArchivedDatabases, Planned};
use crate::error::{Error, Result};
use crate::notify::{Message, Notifier};
use crate::postgres::PgTarget;
use crate::postgres::restore::{self as pg, Counting, RestoreOptions};
use crate::store::{StoreSet, Which};

pub struct DrillConfig {
    pub which: Which,
    pub target: PgTarget,
    /// Which of the archive's databases (each into a scratch database of its own).
    pub databases: ArchivedDatabases,
    pub pg_restore: PathBuf,
    pub identity_file: Option<PathBuf>,
    /// `;`-separated SQL statements, each returning one boolean that must be true.
    pub checks: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DrillReport {
    pub archive: String,
    /// The scratch databases, one per database drilled (all dropped).
    pub scratch: String,
    pub passed: bool,
    pub problems: Vec<String>,
    pub verify: Duration,
    pub restore: Duration,
    pub total: Duration,
}

/// A drill, then a notification: a failure (or an error) always, a pass with `--notify-on-success`.
pub async fn run_and_notify(
    cfg: &DrillConfig,
    stores: &StoreSet,
    notifier: Option<&Notifier>,
) -> Result<DrillReport> {
    let result = run(cfg, stores).await;
    let Some(n) = notifier else { return result };
    let message = match &result {
        Ok(r) if r.passed && !n.on_success => None,
        Ok(r) => {
            let (headline, verdict) = if r.passed {
                (":white_check_mark: Drill passed", "PASS")
            } else {
                (":x: Drill FAILED", "FAIL")
            };
            let mut m = Message::new(
                headline,
                format!(
                    "drill {verdict} {}: {} problems",
                    r.archive,
                    r.problems.len()
                ),
            )
            .field("Backup", format!("`{}`", r.archive))
            .field("Verify", format!("{:.1} s", r.verify.as_secs_f64()))
            .field(
                "Restore and checks",
                format!("{:.1} s", r.restore.as_secs_f64()),
            )
            .field("Scratch database", format!("`{}` (dropped)", r.scratch));
            if !r.problems.is_empty() {
                m = m.detail(r.problems.join("\n"));
            }
            Some(m)
        }
        Err(e) => Some(Message::failure(
            ":x: Drill FAILED",
            format!(":x: eternia-backup: drill FAILED: {e}"),
            e,
        )),
    };
    if let Some(m) = message {
        n.send_message(&m).await;
    }
    result
}

#[instrument(skip_all, fields(database = %cfg.target))]
pub async fn run(cfg: &DrillConfig, stores: &StoreSet) -> Result<DrillReport> {
    let identity = &cfg.identity_file;
    let t0 = Instant::now();
    let (store, backup) = stores.resolve(&cfg.which).await?;
    let name = backup.name.clone();
    let Verified { manifest, .. } = verified(store, &backup, identity).await?;
    let planned = which_databases::plan(&name, &manifest, &cfg.databases, &cfg.target)?;
    let verify_time = t0.elapsed();
    let t1 = Instant::now();
    let (mut problems, mut scratches) = (Vec::new(), Vec::new());
    for (i, p) in planned.iter().enumerate() {
        // The SQL checks are about the application's database: the first one.
        let checks = cfg.checks.as_deref().filter(|_| i == 0);
        let (scratch, found) = drill_one(cfg, store, &name, &manifest, p, checks).await?;
        scratches.push(scratch);
        problems.extend(found.into_iter().map(|f| match planned.len() {
            1 => f,
            _ => format!("{}: {f}", p.db.name),
        }));
    }
    Ok(DrillReport {
        archive: name,
        scratch: scratches.join(", "),
        passed: problems.is_empty(),
        problems,
        verify: verify_time,
        restore: t1.elapsed(),
        total: t0.elapsed(),
    })
}

/// One archived database into a scratch database beside the one it would go to, checked, dropped.
/// Returns the scratch database's name and the problems found.
async fn drill_one(
    cfg: &DrillConfig,
    store: &dyn crate::store::BackupStore,
    name: &str,
    manifest: &crate::archive::manifest::Manifest,
    p: &Planned,
    checks: Option<&str>,
) -> Result<(String, Vec<String>)> {
    let target = &cfg.target;
    let mut conn = pg::maintenance(target).await?;
    let [scratch] = unused_names(&mut conn, target, &p.target.dbname, ["drill"]).await?;
    pg::create_database(&mut conn, target, &scratch, None).await?;
    let into = target.with_database(&scratch);
    let result = async {
        restore_pass(
            store,
            name,
            manifest,
            &p.db,
            &into,
            RestoreOptions {
                pg_restore: cfg.pg_restore.clone(),
                ownership: Default::default(),
                jobs: 1,
            },
            cfg.identity_file.clone(),
        )
        .await?;
        let mut problems = pg::compare_row_counts(&into, &p.db.tables, Counting::Exact)
            .await?
            .differences;
        if let Some(sql) = checks {
            problems.extend(run_checks(&into, sql).await?);
        }
        Ok::<_, Error>(problems)
    }
    .await;
    if let Err(e) = pg::drop_database(&mut conn, target, &scratch).await {
        warn!(scratch = %scratch, error = %e, "could not drop the drill database");
    }
    Ok((scratch, result?))
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
