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

#[test]
fn stale_partial_files_older_than_a_day_are_removed_fresh_ones_stay() {
    let dir = tempdir();
    backups_on(dir.path(), &["20200101-020000"]);
    let stale = dir
        .path()
        .join("eternia-backup-20200102-020000.tar.gz.partial");
    let fresh = dir
        .path()
        .join("eternia-backup-20200103-020000.tar.gz.partial");
    std::fs::write(&stale, "interrupted").unwrap();
    std::fs::write(&fresh, "being written").unwrap();
    assert!(
        Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(&stale)
            .status()
            .unwrap()
            .success()
    );

    run(bin().env("BACKUP_DIR", dir.path()).args(["prune"])).ok();
    assert!(!stale.exists());
    assert!(fresh.exists());
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
