//! Retention applied to a store: the pure plan from `retention`, then deletions, then stale partials.

use std::time::Duration;

use jiff::Timestamp;
use tracing::{info, instrument};

use crate::error::Result;
use crate::retention::{self, Policy, Reason};
use crate::store::{BackupKind, BackupStore, StoreSet};

/// `eternia-backup prune`.
pub struct PruneConfig {
    pub policy: Policy,
    /// A `*.partial` file or an unfinished multipart upload older than this counts as abandoned.
    pub stale_after: Duration,
    pub dry_run: bool,
}

/// Retention on every store, under the backup volume's lock; each report with its store's location.
pub async fn run(cfg: &PruneConfig, stores: &StoreSet) -> Result<Vec<(String, PruneReport)>> {
    let _lock = stores.lock()?;
    let mut reports = Vec::new();
    for store in stores.all() {
        let report = prune(
            store,
            &cfg.policy,
            Timestamp::now(),
            cfg.stale_after,
            cfg.dry_run,
        )
        .await?;
        reports.push((store.location(), report));
    }
    Ok(reports)
}

/// Interrupted backups leave `*.partial` files, interrupted `--jobs` restores a scratch dump; after a day
/// nobody is still writing them.
pub const STALE_PARTIAL_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub kept: Vec<(String, Vec<Reason>)>,
    pub deleted: Vec<String>,
    pub stale_partials: Vec<String>,
    pub dry_run: bool,
}

impl PruneReport {
    pub fn render(&self) -> String {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut out = String::new();
        for (name, reasons) in &self.kept {
            out.push_str(&format!("keep   {name} ({reasons:?})\n"));
        }
        for name in &self.deleted {
            out.push_str(&format!("{verb} {name}\n"));
        }
        for name in &self.stale_partials {
            out.push_str(&format!(
                "{verb} {name} (stale file of an interrupted backup or restore)\n"
            ));
        }
        out
    }
}

#[instrument(skip(store), fields(location = %store.location()))]
pub async fn prune(
    store: &dyn BackupStore,
    policy: &Policy,
    now: Timestamp,
    stale_after: Duration,
    dry_run: bool,
) -> Result<PruneReport> {
    let backups = store.list().await?;
    let input: Vec<(&str, Timestamp, bool)> = backups
        .iter()
        .map(|b| (b.name.as_str(), b.created, b.kind == BackupKind::Safety))
        .collect();
    let plan = retention::plan_with_safety(&input, policy, now);
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    report.kept = plan
        .keep
        .iter()
        .map(|(n, r)| (n.to_string(), r.clone()))
        .collect();
    for name in &plan.delete {
        if !dry_run {
            store.delete(name).await?;
        }
        report.deleted.push(name.to_string());
    }
    report.stale_partials = store.remove_stale_partials(stale_after, dry_run).await?;
    info!(
        kept = report.kept.len(),
        deleted = report.deleted.len(),
        stale_partials = report.stale_partials.len(),
        dry_run,
        "retention applied"
    );
    Ok(report)
}
