use std::process::Command;

use crate::helpers::*;

#[test]
fn a_backup_writes_one_archive_and_sidecar_that_tar_can_list_with_the_manifest_last() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();

    let r = run(&mut backup_cmd(&db, dir.path())).ok();

    let archives = archives(dir.path());
    assert_eq!(archives.len(), 1, "{:?}", files(dir.path()));
    let name = &archives[0];
    assert!(
        name.starts_with("eternia-backup-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert_eq!(name.len(), "eternia-backup-YYYYMMDD-HHMMSS.tar.gz".len());
    assert!(dir.path().join(format!("{name}.manifest.json")).exists());
    assert!(
        r.stdout.contains(&format!("backup {name} complete")),
        "{}",
        r.stdout
    );

    let entries = tar_entries(&dir.path().join(name));
    assert_eq!(
        entries
            .iter()
            .take(2)
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["database/globals.json", "database/pgdump.000001"]
    );
    assert_eq!(entries.last().map(String::as_str), Some("manifest.json"));
}

#[test]
fn the_manifest_records_exact_row_counts_server_version_and_checksums() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();

    let name = &archives(dir.path())[0];
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let m = &sidecar["manifest"];
    assert_eq!(m["format_version"], 3);
    assert_eq!(m["name"], name.as_str());
    let (created, finished): (jiff::Timestamp, jiff::Timestamp) = (
        m["created"].as_str().unwrap().parse().unwrap(),
        m["finished"].as_str().unwrap().parse().unwrap(),
    );
    assert!(
        finished >= created,
        "the backup's duration is finished - created"
    );
    assert_eq!(m["database"]["name"], db.name.as_str());
    assert!(
        m["database"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric)
    );
    let tables = m["database"]["tables"].as_array().unwrap();
    let rows = |schema: &str, table: &str| {
        tables
            .iter()
            .find(|t| t["schema"] == schema && t["table"] == table)
            .map(|t| t["rows"].as_i64().unwrap())
    };
    assert_eq!(rows("public", "customers"), Some(300));
    assert_eq!(rows("billing", "Invoices"), Some(120));
    for e in m["entries"].as_array().unwrap() {
        assert_eq!(e["sha256"].as_str().unwrap().len(), 64);
    }
    let file = std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(
        sidecar["archive"]["size"].as_u64().unwrap(),
        file.len() as u64
    );
    use sha2::Digest;
    assert_eq!(
        sidecar["archive"]["sha256"].as_str().unwrap(),
        hex::encode(sha2::Sha256::digest(&file))
    );
}

#[test]
fn the_chunks_concatenated_are_a_dump_that_pg_restore_loads_by_hand() {
    let db = TestDb::with_sample_data();
    db.add_random_mib(1);
    let dir = tempdir();
    // Small chunks so the dump is split into several entries.
    run(backup_cmd(&db, dir.path()).args(["--chunk-size", "64KiB"])).ok();
    let name = &archives(dir.path())[0];
    let work = tempdir();
    assert!(
        Command::new("tar")
            .arg("xzf")
            .arg(dir.path().join(name))
            .arg("-C")
            .arg(work.path())
            .status()
            .unwrap()
            .success()
    );
    let chunks = files(&work.path().join("database"));
    assert!(chunks.len() >= 2, "expected several chunks, got {chunks:?}");

    // The documented procedure (docs/restore-by-hand.md): cat the chunks in order, pg_restore the result.
    let dump = work.path().join("db.dump");
    let cat = format!(
        "cat {}/database/pgdump.* > {}",
        work.path().display(),
        dump.display()
    );
    assert!(
        Command::new("sh")
            .args(["-c", &cat])
            .status()
            .unwrap()
            .success()
    );
    let restored = TestDb::create();
    let st = Command::new("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--no-owner",
            "-d",
            &restored.name,
        ])
        .arg(&dump)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(restored.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(
        restored.sql("SELECT sum(amount) FROM billing.\"Invoices\""),
        db.sql("SELECT sum(amount) FROM billing.\"Invoices\"")
    );
}

#[test]
fn zstd_archives_are_named_tar_zst_and_verify() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(backup_cmd(&db, dir.path()).args(["--compression", "zstd", "--compression-level", "5"]))
        .ok();
    let name = &archives(dir.path())[0];
    assert!(name.ends_with(".tar.zst"), "{name}");
    let list = Command::new("tar")
        .arg("--zstd")
        .arg("-tf")
        .arg(dir.path().join(name))
        .output()
        .unwrap();
    if list.status.success() {
        assert!(String::from_utf8_lossy(&list.stdout).contains("manifest.json"));
    }
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok()
    .says("entries verified");
}

#[test]
fn list_shows_complete_backups_as_a_table_and_as_json() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    std::fs::write(dir.path().join("notes.txt"), "not a backup").unwrap();

    let json = list_json(dir.path());
    assert_eq!(json.len(), 1);
    let b = &json[0];
    assert_eq!(b["compression"], "gzip");
    assert_eq!(b["encrypted"], false);
    assert!(b["location"].as_str().unwrap().starts_with("local:"));
    assert!(b["size"].as_u64().unwrap() > 0);

    let table = run(bin().env("BACKUP_DIR", dir.path()).arg("list")).ok();
    assert!(table.stdout.starts_with("NAME"));
    assert!(table.stdout.contains(b["name"].as_str().unwrap()));
    assert!(!table.stdout.contains("notes.txt"));
}

#[test]
fn verify_latest_checks_every_entry() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok()
    .says("entries verified");
}

#[test]
fn progress_is_logged_while_the_dump_runs_and_logs_are_json_when_asked() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let tools = tempdir();
    // A slow dump: 3 s of output.
    let pg_dump = fake_pg_dump(
        tools.path(),
        "for i in 1 2 3 4 5 6; do head -c 100000 /dev/urandom; sleep 0.5; done",
    );
    let r = run(backup_cmd(&db, dir.path())
        .env("PG_DUMP_BIN", &pg_dump)
        .env("BACKUP_PROGRESS_INTERVAL", "1")
        .env("LOG_FORMAT", "json"))
    .ok();
    let lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let progress: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("backup in progress")
        })
        .collect();
    assert!(
        progress.len() >= 2,
        "expected progress lines in:\n{}",
        r.stderr
    );
    assert!(progress[0]["bytes_dumped"].as_u64().is_some());
    assert!(progress[0]["rate_mib_s"].is_string() && progress[0]["elapsed_s"].is_string());
    assert!(
        lines
            .iter()
            .any(|l| l["sha256"].is_string() && l["tables"].as_u64() == Some(2))
    );
}

#[test]
fn a_second_backup_while_one_runs_says_backup_already_in_progress() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let (tools, gate) = (tempdir(), Gate::new());
    let pg_dump = fake_pg_dump(
        tools.path(),
        &format!("head -c 1000 /dev/urandom; {}", gate.shell()),
    );
    let mut first = backup_cmd(&db, dir.path())
        .env("PG_DUMP_BIN", &pg_dump)
        .spawn()
        .unwrap();
    gate.wait_reached();

    let second = run(&mut backup_cmd(&db, dir.path())).failed(1);
    second.says("backup already in progress");

    gate.release();
    assert!(first.wait().unwrap().success());
    assert_eq!(archives(dir.path()).len(), 1);
}

pub fn wait_for(cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed().as_secs() < 30,
            "condition not reached in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_escape_sequences() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(backup_cmd(&db, dir.path()).env("LOG_FORMAT", "text")).ok();
    assert!(r.stderr.contains("backup starting"), "{}", r.stderr);
    assert!(
        !r.stderr.contains('\u{1b}'),
        "escape sequences in a pipe: {:?}",
        r.stderr.lines().next()
    );
}

#[test]
fn the_status_table_shows_each_store_the_restore_and_the_last_drill() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();

    let table = run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["status", "--no-kubernetes"]))
    .ok();

    table
        .says("HEALTH")
        .says("DURATION")
        .says(&format!("local:{}", dir.path().display()))
        .says(&archives(dir.path())[0])
        .says("restore: none running")
        .says("last drill: none seen");
}

/// A switch set from the environment takes what people write (`1`, `yes`, `on`, `true`, in any case);
/// anything else is a usage error naming the flag. With Kubernetes switched off by `1`, the backup runs
/// with no cluster to reach.
#[test]
fn a_switch_in_the_environment_takes_1_yes_on_and_true() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let with = |value: &str, args: &[&str]| {
        let mut c = bin();
        c.env("DATABASE_URL", db.url())
            .env("BACKUP_DIR", dir.path())
            .env("BACKUP_NO_KUBERNETES", value)
            .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
            .args(args);
        run(&mut c)
    };
    with("1", &["backup"]).ok();
    assert_eq!(archives(dir.path()).len(), 1);
    for value in ["yes", "on", "TRUE", "1"] {
        with(value, &["status"]).ok();
    }
    with("maybe", &["status"])
        .failed(2)
        .says("invalid value 'maybe' for '--no-kubernetes'");
}
