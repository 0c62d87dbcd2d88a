//! What the commands print on stdout: one function per report. Logs go to stderr (see `telemetry`).

use crate::commands::backup::BackupSummary;
use crate::commands::drill::DrillReport;
use crate::commands::prune::PruneReport;
use crate::commands::restore::RestoreSummary;
use crate::commands::status::Status;
use crate::commands::verify::VerifyReport;
use crate::store::StoredBackup;
use crate::units::{human_age, human_size};

pub fn list_table(backups: &[StoredBackup]) -> String {
    let mut out = format!(
        "{:<44} {:<20} {:>10} {:<11} {:<9} {}\n",
        "NAME", "CREATED (UTC)", "SIZE", "COMPRESSION", "ENCRYPTED", "LOCATION"
    );
    for b in backups {
        out.push_str(&format!(
            "{:<44} {:<20} {:>10} {:<11} {:<9} {}\n",
            b.name,
            b.created.strftime("%Y-%m-%d %H:%M:%S"),
            human_size(b.size),
            b.compression.as_str(),
            if b.encrypted { "yes" } else { "no" },
            b.location
        ));
    }
    if backups.is_empty() {
        out.push_str("(no complete backups)\n");
    }
    out
}

pub fn backup(s: &BackupSummary) -> String {
    format!("{} ({})\n", s.one_line(), s.locations.join(", "))
}

pub fn verify(r: &VerifyReport) -> String {
    let at = &r.location;
    if r.contents_checked {
        format!(
            "OK {} ({at}): archive checksum and all {} entries verified\n",
            r.name, r.entries
        )
    } else {
        format!(
            "OK {} ({at}): archive checksum verified; contents not checked (encrypted: pass --identity-file or set AGE_IDENTITY_FILE)\n",
            r.name
        )
    }
}

pub fn prune(reports: &[(String, PruneReport)]) -> String {
    reports
        .iter()
        .map(|(location, r)| format!("# {location}\n{}", r.render()))
        .collect()
}

pub fn drill(r: &DrillReport) -> String {
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let mut out = format!(
        "drill {verdict} {}: verify {:.1}s, restore+checks {:.1}s, total {:.1}s (scratch database {} dropped)\n",
        r.archive,
        r.verify.as_secs_f64(),
        r.restore.as_secs_f64(),
        r.total.as_secs_f64(),
        r.scratch
    );
    for p in &r.problems {
        out.push_str(&format!("  - {p}\n"));
    }
    out
}

pub fn restore(s: &RestoreSummary) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    if s.dry_run {
        line("DRY RUN: nothing changed".into());
    }
    line(format!(
        "archive {} ({}): checksums OK, {} tables / {} rows",
        s.archive, s.location, s.tables, s.rows
    ));
    // With several databases each line about one names it.
    let several = s.databases.len() > 1;
    let of = |d: &crate::commands::restore::DatabaseRestored| {
        if several {
            format!("{}: ", d.archived)
        } else {
            String::new()
        }
    };
    if s.dry_run {
        for d in &s.databases {
            line(format!(
                "database {}: mode {}, dump {} MiB, {}",
                d.database,
                s.mode.map_or("clean", |m| m.as_str()),
                d.dump_bytes.div_ceil(1 << 20),
                if s.jobs > 1 {
                    format!("streamed into {} connections as it is verified", s.jobs)
                } else {
                    "the dump streamed into pg_restore".to_owned()
                }
            ));
            for t in &d.table_counts {
                line(format!("  table {}.{}: {} rows", t.schema, t.table, t.rows));
            }
        }
    }
    for o in &s.objects {
        line(format!("  {} {}: {:?}", o.kind, o.name, o.action));
    }
    for d in &s.restarted {
        line(format!("  restart {d}"));
    }
    if !s.dry_run {
        if s.databases.is_empty() {
            line("ConfigMaps/Secrets alone (a swap restore's safety backup): no database was touched".into());
        }
        match (&s.safety_backup, s.mode) {
            (Some(n), Some(crate::commands::restore::Mode::Swap)) => line(format!(
                "safety backup of the ConfigMaps/Secrets: {n} (to undo them: eternia-backup restore {n})"
            )),
            (Some(n), _) => line(format!(
                "safety backup: {n} (to undo: eternia-backup restore {n})"
            )),
            (None, _) => {}
        }
        for d in &s.databases {
            line(format!(
                "{}row counts match the manifest: {} tables by PostgreSQL's insert counters, {} counted",
                of(d),
                d.row_check.by_counters,
                d.row_check.counted
            ));
            if let Some(p) = &d.previous_database {
                let db = d.database.rsplit('/').next().unwrap_or(&d.database);
                line(format!(
                    "{}previous database kept as {p} (to undo: ALTER DATABASE \"{db}\" RENAME TO \"{db}_restored\"; ALTER DATABASE \"{p}\" RENAME TO \"{db}\"; drop it once the restore is confirmed)",
                    of(d)
                ));
            }
            if d.created {
                line(format!(
                    "{}database created as the backup recorded it (it did not exist on this server; to undo: \
                     DROP DATABASE {})",
                    of(d),
                    d.database.rsplit('/').next().unwrap_or(&d.database)
                ));
            }
            if d.owners_mapped > 0 {
                line(format!(
                    "{}objects given to a new owner (--owner-map): {}",
                    of(d),
                    d.owners_mapped
                ));
            }
        }
        let r = &s.roles;
        if !r.created.is_empty() {
            line(format!("roles created: {}", r.created.join(", ")));
            let without: Vec<&str> = r
                .created
                .iter()
                .filter(|c| !r.with_password.contains(c))
                .map(String::as_str)
                .collect();
            if !without.is_empty() {
                line(format!(
                    "roles created without a password (set one, or give it in --role-passwords-dir): {}",
                    without.join(", ")
                ));
            }
        }
        for n in &r.not_given {
            line(format!("role not as in the backup: {n}"));
        }
        for n in &r.left_alone {
            line(format!("existing role left as it is: {n}"));
        }
        if let Some(left) = &s.schemas_left_aside {
            line(format!("warning: {left}"));
        }
        line(format!(
            "restore of {} complete in {:.1}s",
            s.archive,
            s.duration.as_secs_f64()
        ));
    }
    out
}

pub fn status(s: &Status) -> String {
    let mut out = format!(
        "{:<40} {:<11} {:<44} {:>8} {:>10} {:>9}  {}\n",
        "STORE",
        "HEALTH",
        "NEWEST BACKUP",
        "AGE",
        "SIZE",
        "DURATION",
        "RECENT SIZES (NEWEST FIRST)"
    );
    for st in &s.stores {
        let newest = st.newest.as_ref();
        out.push_str(&format!(
            "{:<40} {:<11} {:<44} {:>8} {:>10} {:>9}  {}\n",
            st.location,
            st.health.as_str(),
            newest.map_or("-", |b| b.name.as_str()),
            st.age_seconds.map_or("-".into(), human_age),
            newest.map_or("-".into(), |b| human_size(b.size)),
            st.duration_seconds
                .map_or("-".into(), |d| human_age(d.round() as i64)),
            st.recent_sizes
                .iter()
                .map(|b| human_size(*b))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(e) = &st.error {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out.push_str(&format!(
        "restore: {}\nlast drill: {}\nLATE after {}\n",
        s.restore_running.as_deref().unwrap_or("none running"),
        s.last_drill_text(),
        human_age(s.max_age_seconds as i64)
    ));
    out
}
