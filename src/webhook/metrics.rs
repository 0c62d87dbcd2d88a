//! Prometheus metrics in the text exposition format. Label values are fixed sets (route patterns,
//! status codes, refusal reasons, store names), never caller input, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::store::{BackupKind, StoredBackup};

#[derive(Default)]
struct Values {
    requests: BTreeMap<(String, u16), u64>,
    auth_failures: BTreeMap<&'static str, u64>,
    restores: BTreeMap<&'static str, u64>,
    in_progress: Option<bool>,
    /// Per store: (count, newest created, newest size).
    backups: BTreeMap<String, (usize, Option<i64>, Option<u64>)>,
}

#[derive(Default)]
pub struct Metrics {
    v: Mutex<Values>,
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut v = self.v.lock().expect("metrics lock");
        *v.requests.entry((route.to_owned(), status)).or_default() += 1;
    }

    pub fn auth_failure(&self, reason: &'static str) {
        *self
            .v
            .lock()
            .expect("metrics lock")
            .auth_failures
            .entry(reason)
            .or_default() += 1;
    }

    /// `result`: accepted, conflict, succeeded, failed.
    pub fn restore(&self, result: &'static str) {
        *self
            .v
            .lock()
            .expect("metrics lock")
            .restores
            .entry(result)
            .or_default() += 1;
    }

    pub fn set_in_progress(&self, running: bool) {
        self.v.lock().expect("metrics lock").in_progress = Some(running);
    }

    /// A store's listing; safety backups are left out (a restore's own snapshot is not a backup that ran).
    pub fn set_backups(&self, store: &str, listed: &[StoredBackup]) {
        let backups: Vec<&StoredBackup> = listed
            .iter()
            .filter(|b| b.kind == BackupKind::Backup)
            .collect();
        let newest = backups.iter().max_by_key(|b| b.created);
        self.v.lock().expect("metrics lock").backups.insert(
            store.to_owned(),
            (
                backups.len(),
                newest.map(|b| b.created.as_second()),
                newest.map(|b| b.size),
            ),
        );
    }

    pub fn render(&self) -> String {
        let v = self.v.lock().expect("metrics lock");
        let mut out = String::with_capacity(2048);
        let newest = v
            .backups
            .values()
            .filter_map(|(_, t, s)| t.zip(*s))
            .max_by_key(|(t, _)| *t);
        header(
            &mut out,
            "eternia_backup_last_success_timestamp_seconds",
            "gauge",
            "Creation time of the newest complete backup in any store.",
        );
        if let Some((t, _)) = newest {
            let _ = writeln!(out, "eternia_backup_last_success_timestamp_seconds {t}");
        }
        header(
            &mut out,
            "eternia_backup_last_size_bytes",
            "gauge",
            "Size of the newest complete backup.",
        );
        if let Some((_, s)) = newest {
            let _ = writeln!(out, "eternia_backup_last_size_bytes {s}");
        }
        header(
            &mut out,
            "eternia_backup_count",
            "gauge",
            "Complete backups per store.",
        );
        for (store, (n, _, _)) in &v.backups {
            let _ = writeln!(out, "eternia_backup_count{{store=\"{store}\"}} {n}");
        }
        header(
            &mut out,
            "eternia_backup_newest_timestamp_seconds",
            "gauge",
            "Creation time of the newest complete backup, per store.",
        );
        for (store, (_, t, _)) in &v.backups {
            if let Some(t) = t {
                let _ = writeln!(
                    out,
                    "eternia_backup_newest_timestamp_seconds{{store=\"{store}\"}} {t}"
                );
            }
        }
        header(
            &mut out,
            "eternia_backup_newest_size_bytes",
            "gauge",
            "Size of the newest complete backup, per store.",
        );
        for (store, (_, _, s)) in &v.backups {
            if let Some(s) = s {
                let _ = writeln!(
                    out,
                    "eternia_backup_newest_size_bytes{{store=\"{store}\"}} {s}"
                );
            }
        }
        header(
            &mut out,
            "eternia_restore_total",
            "counter",
            "Restore requests by result (accepted, conflict) and restore Jobs by outcome (succeeded, failed).",
        );
        for (result, n) in &v.restores {
            let _ = writeln!(out, "eternia_restore_total{{result=\"{result}\"}} {n}");
        }
        header(
            &mut out,
            "eternia_restore_in_progress",
            "gauge",
            "1 while a restore holds the Lease or a restore Job runs.",
        );
        if let Some(r) = v.in_progress {
            let _ = writeln!(out, "eternia_restore_in_progress {}", u8::from(r));
        }
        header(
            &mut out,
            "eternia_webhook_requests_total",
            "counter",
            "HTTP requests by route pattern and status.",
        );
        for ((route, status), n) in &v.requests {
            let _ = writeln!(
                out,
                "eternia_webhook_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "eternia_webhook_auth_failures_total",
            "counter",
            "Refused requests by reason.",
        );
        for (reason, n) in &v.auth_failures {
            let _ = writeln!(
                out,
                "eternia_webhook_auth_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
