use std::path::Path;
use std::process::Command;

use crate::helpers::*;

/// Copies one real backup under older names, as if it had been taken on those days.
fn backups_on(dir: &Path, stamps: &[&str]) -> Vec<String> {
    let db = TestDb::with_sample_data();
    let src = tempdir();
    run(&mut backup_cmd(&db, src.path())).ok();
    let original = archives(src.path()).pop().unwrap();
    let sidecar = std::fs::read(src.path().join(format!("{original}.manifest.json"))).unwrap();
    stamps
        .iter()
        .map(|stamp| {
            let name = format!("eternia-backup-{stamp}.tar.gz");
            std::fs::copy(src.path().join(&original), dir.join(&name)).unwrap();
            std::fs::write(dir.join(format!("{name}.manifest.json")), &sidecar).unwrap();
            name
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    list_json(dir)
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn prune_dry_run_prints_what_would_go_and_deletes_nothing() {
    let dir = tempdir();
    let all = backups_on(
        dir.path(),
        &["20200101-020000", "20200102-020000", "20200103-020000"],
    );
    let r =
        run(bin()
            .env("BACKUP_DIR", dir.path())
            .args(["prune", "--dry-run", "--keep-days", "7"]))
        .ok();
    assert!(
        r.stdout.contains(&format!("would delete {}", all[0])),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&format!("would delete {}", all[1])));
    assert!(r.stdout.contains(&format!("keep   {}", all[2])));
    assert_eq!(names(dir.path()), all);
}

#[test]
fn prune_never_deletes_the_newest_backup_and_ignores_files_it_does_not_own() {
    let dir = tempdir();
    let all = backups_on(dir.path(), &["20200101-020000", "20200102-020000"]);
    std::fs::write(
        dir.path().join("eternia-backup-20190101-000000.tar.gz"),
        "no sidecar: not ours to judge",
    )
    .unwrap();
    std::fs::write(dir.path().join("postgres.log"), "someone else's").unwrap();
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["prune", "--keep-days", "7"]))
    .ok();
    assert_eq!(names(dir.path()), vec![all[1].clone()]);
    assert!(dir.path().join("postgres.log").exists());
    assert!(
        dir.path()
            .join("eternia-backup-20190101-000000.tar.gz")
            .exists()
    );
}

#[test]
fn keep_last_and_monthly_rules_combine() {
    let dir = tempdir();
    let all = backups_on(
        dir.path(),
        &[
            "20200115-020000",
            "20200120-020000",
            "20200205-020000",
            "20200210-020000",
            "20200211-020000",
        ],
    );
    run(bin().env("BACKUP_DIR", dir.path()).args([
        "prune",
        "--keep-days",
        "0",
        "--keep-last",
        "2",
        "--keep-monthly",
        "2",
    ]))
    .ok();
    // last 2: 0211, 0210; monthly: 0211 (Feb), 0120 (Jan).
    assert_eq!(
        names(dir.path()),
        vec![all[1].clone(), all[3].clone(), all[4].clone()]
    );
}

/// Interrupted backups leave `.partial` files, interrupted `--jobs` restores their scratch dump: after a
/// day nobody is writing them, and left alone they would fill the backup volume.
#[test]
fn stale_partial_files_and_scratch_dumps_older_than_a_day_are_removed_fresh_ones_stay() {
    let dir = tempdir();
    backups_on(dir.path(), &["20200101-020000"]);
    let file = |name: &str, content: &str, two_days_old: bool| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        if two_days_old {
            assert!(
                Command::new("touch")
                    .args(["-d", "2 days ago"])
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        path
    };
    let stale = file(
        "eternia-backup-20200102-020000.tar.gz.partial",
        "interrupted",
        true,
    );
    let fresh = file(
        "eternia-backup-20200103-020000.tar.gz.partial",
        "being written",
        false,
    );
    let stale_dump = file(".eternia-restore-4242.dump", "killed restore", true);
    let fresh_dump = file(".eternia-restore-4343.dump", "restore running", false);
    let not_ours = file(".eternia-restore-notes.dump", "someone else's", true);

    let r = run(bin().env("BACKUP_DIR", dir.path()).args(["prune"])).ok();
    assert!(!stale.exists() && !stale_dump.exists(), "{}", r.stderr);
    assert!(fresh.exists() && fresh_dump.exists());
    assert!(not_ours.exists(), "only names a restore writes are removed");
}

#[test]
fn backup_applies_retention_after_it_succeeds() {
    let dir = tempdir();
    let old = backups_on(dir.path(), &["20200101-020000", "20200102-020000"]);
    let db = TestDb::with_sample_data();
    run(backup_cmd(&db, dir.path()).env("BACKUP_RETENTION_DAYS", "7")).ok();
    let left = names(dir.path());
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&old[0]) && !left.contains(&old[1]));
}

/// `BACKUP_RETENTION_DAYS=0` alone would keep only the newest backup: refused as the chart's schema refuses it.
#[test]
fn retention_days_zero_with_no_other_rule_is_refused_and_deletes_nothing() {
    let dir = tempdir();
    let all = backups_on(dir.path(), &["20200101-020000", "20200102-020000"]);
    let r = run(bin()
        .env("BACKUP_DIR", dir.path())
        .env("BACKUP_RETENTION_DAYS", "0")
        .args(["prune"]))
    .failed(2);
    r.says("BACKUP_RETENTION_DAYS");
    r.says("every backup but the newest");
    assert_eq!(names(dir.path()), all);

    let db = TestDb::with_sample_data();
    run(backup_cmd(&db, dir.path()).env("BACKUP_RETENTION_DAYS", "0"))
        .failed(2)
        .says("BACKUP_RETENTION_DAYS");
    assert_eq!(
        names(dir.path()),
        all,
        "the backup refuses before it writes anything"
    );
}
