//! `eternia-backup drill`: the runbook's "Testing Backups", automated. Verify a backup, restore it into
//! a scratch database, compare row counts (and run the optional SQL checks), drop the scratch database.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{instrument, warn};

use crate::commands::restore::{Verified, restore_pass, unused_names, verified};
use crate::error::{Error, Result};
use crate::postgres::PgTarget;
use crate::postgres::restore::{self as pg, Counting, RestoreOptions};
use crate::store::{StoreSet, Which};

pub struct DrillConfig {
    pub which: Which,
    pub target: PgTarget,
    pub pg_restore: PathBuf,
    pub identity_file: Option<PathBuf>,
    /// `;`-separated SQL statements, each returning one boolean that must be true.
    pub checks: Option<String>,
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

#[instrument(skip_all, fields(database = %cfg.target))]
pub async fn run(cfg: &DrillConfig, stores: &StoreSet) -> Result<DrillReport> {
    let (target, identity) = (&cfg.target, &cfg.identity_file);
    let t0 = Instant::now();
    let (store, backup) = stores.resolve(&cfg.which).await?;
    let name = backup.name.clone();
    let Verified { manifest, .. } = verified(store, &backup, identity, None).await?;
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
                pg_restore: cfg.pg_restore.clone(),
                clean: false,
                jobs: 1,
            },
            identity.clone(),
            None,
        )
        .await?;
        let mut problems =
            pg::compare_row_counts(&into, &manifest.database.tables, Counting::Exact)
                .await?
                .differences;
        if let Some(sql) = &cfg.checks {
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
