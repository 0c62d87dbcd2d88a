//! `eternia-backup status` (and the webhook's `GET /v1/status`, Slack's `/restore status`): per store, the
//! newest complete backup and its age against the schedule (OK, LATE, MISSING, or UNREACHABLE when the
//! store cannot be listed), its size and duration and the sizes before it; the last drill and its
//! result; and whether a restore holds the Lease. Changes nothing.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::Result;
use crate::kube::job_status::{LastDrill, State};
use crate::store::{BackupKind, StoreSet, StoredBackup};
use crate::units::human_age;

/// How many sizes the trend shows (newest first).
pub const TREND: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Health {
    Ok,
    /// The newest backup is older than the allowed age: a scheduled backup did not happen or failed.
    Late,
    /// No complete backup at all.
    Missing,
    /// The store could not be listed.
    Unreachable,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Late => "LATE",
            Health::Missing => "MISSING",
            Health::Unreachable => "UNREACHABLE",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub location: String,
    pub health: Health,
    /// The newest complete backup (safety backups are not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<StoredBackup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    /// How long the newest backup took (from its manifest; archives before format 3 do not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Sizes of the newest backups, newest first: a sudden drop is worth a look.
    pub recent_sizes: Vec<u64>,
    pub backups: usize,
    pub safety_backups: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub checked_at: Timestamp,
    /// The age past which the newest backup is LATE.
    pub max_age_seconds: u64,
    pub stores: Vec<StoreStatus>,
    /// What holds the restore Lease, when one runs (unknown without Kubernetes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_running: Option<String>,
    /// The newest Job of the drill CronJob (absent: none, or not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<LastDrill>,
    /// Why the drill Jobs could not be asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drill_error: Option<String>,
    /// Every store OK, and the last drill (if any) did not fail.
    pub healthy: bool,
}

/// What the cluster says, found by the caller (the CLI through the Lease and the drill CronJob, the
/// webhook through its Jobs): nothing without Kubernetes.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub restore_running: Option<String>,
    pub last_drill: Option<LastDrill>,
    pub last_drill_error: Option<String>,
}

impl Status {
    /// `database-drill-29876 succeeded 2d3h ago, took 3m` (or why it is not known).
    pub fn last_drill_text(&self) -> String {
        let Some(d) = &self.last_drill else {
            return match &self.last_drill_error {
                Some(e) => format!("unknown ({e})"),
                None => "none seen".into(),
            };
        };
        let result = match d.result {
            State::Succeeded => "PASSED",
            State::Failed => "FAILED",
            State::Running => "running",
            State::Pending => "pending",
        };
        let mut line = format!("{} {result}", d.job);
        if let Some(at) = d.finished_at.or(d.started_at) {
            line.push_str(&format!(
                " {} ago",
                human_age(self.checked_at.as_second() - at.as_second())
            ));
        }
        if let Some(secs) = d.duration_seconds {
            line.push_str(&format!(", took {}", human_age(secs)));
        }
        if let Some(m) = &d.message {
            line.push_str(&format!(": {m}"));
        }
        line
    }
}

/// One store's status from its listing (pure: the listing, the time, the allowed age).
pub fn assess(
    location: String,
    listed: &[StoredBackup],
    now: Timestamp,
    max_age: Duration,
) -> StoreStatus {
    let mut backups: Vec<&StoredBackup> = listed
        .iter()
        .filter(|b| b.kind == BackupKind::Backup)
        .collect();
    backups.sort_by_key(|b| std::cmp::Reverse(b.created));
    let newest = backups.first().map(|b| (*b).clone());
    let age = newest
        .as_ref()
        .map(|b| now.as_second() - b.created.as_second());
    let health = match age {
        None => Health::Missing,
        Some(a) if a > max_age.as_secs() as i64 => Health::Late,
        Some(_) => Health::Ok,
    };
    StoreStatus {
        location,
        health,
        newest,
        age_seconds: age,
        duration_seconds: None,
        recent_sizes: backups.iter().take(TREND).map(|b| b.size).collect(),
        backups: backups.len(),
        safety_backups: listed.len() - backups.len(),
        error: None,
    }
}

/// Every store's status (the newest backup's duration read from its sidecar), with what the cluster
/// says.
pub async fn run(stores: &StoreSet, max_age: Duration, cluster: ClusterFacts) -> Result<Status> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    for store in stores.all() {
        out.push(match store.list().await {
            Ok(listed) => {
                let mut st = assess(store.location(), &listed, now, max_age);
                if let Some(newest) = &st.newest {
                    st.duration_seconds = match store.sidecar(&newest.name).await {
                        Ok(sidecar) => sidecar.manifest.duration().map(|d| d.as_secs_f64()),
                        Err(e) => {
                            tracing::warn!(error = %e, backup = %newest.name, "cannot read the newest backup's manifest: its duration is unknown");
                            None
                        }
                    };
                }
                st
            }
            Err(e) => StoreStatus {
                location: store.location(),
                health: Health::Unreachable,
                newest: None,
                age_seconds: None,
                duration_seconds: None,
                recent_sizes: Vec::new(),
                backups: 0,
                safety_backups: 0,
                error: Some(e.to_string()),
            },
        });
    }
    let drill_failed = cluster
        .last_drill
        .as_ref()
        .is_some_and(|d| d.result == State::Failed);
    Ok(Status {
        checked_at: now,
        max_age_seconds: max_age.as_secs(),
        healthy: out.iter().all(|s| s.health == Health::Ok) && !drill_failed,
        stores: out,
        restore_running: cluster.restore_running,
        last_drill: cluster.last_drill,
        last_drill_error: cluster.last_drill_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Compression;

    fn backup(name: &str, created: &str, size: u64, kind: BackupKind) -> StoredBackup {
        StoredBackup {
            name: name.into(),
            created: created.parse().unwrap(),
            size,
            compression: Compression::Gzip,
            encrypted: false,
            kind,
            location: "local:/backups".into(),
            sha256: None,
        }
    }

    const DAY: Duration = Duration::from_secs(26 * 3600);

    #[test]
    fn a_store_is_ok_late_or_missing_by_the_age_of_its_newest_backup_not_of_a_safety_backup() {
        let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let listed = vec![
            backup("a", "2026-11-29T02:00:00Z", 100, BackupKind::Backup),
            backup("b", "2026-11-30T02:00:00Z", 120, BackupKind::Backup),
            backup("s", "2026-12-01T11:00:00Z", 999, BackupKind::Safety),
        ];
        let s = assess("local".into(), &listed, now, DAY);
        assert_eq!(
            s.health,
            Health::Late,
            "the newest backup is 34 h old; the safety backup does not count"
        );
        assert_eq!(s.newest.unwrap().name, "b");
        assert_eq!(s.recent_sizes, vec![120, 100]);
        assert_eq!((s.backups, s.safety_backups), (2, 1));

        let fresh = assess(
            "local".into(),
            &listed,
            "2026-11-30T12:00:00Z".parse().unwrap(),
            DAY,
        );
        assert_eq!(fresh.health, Health::Ok);
        let none = assess("local".into(), &listed[2..], now, DAY);
        assert_eq!(none.health, Health::Missing);
    }
}
