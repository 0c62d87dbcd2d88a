//! Bad input and faults: each fails with a one-line error naming what failed and what to check,
//! exits non-zero, and leaves every earlier backup intact.

use std::os::unix::process::ExitStatusExt;

use crate::backup_cli::wait_for;
use crate::helpers::*;
use crate::restore::restore_cmd;

fn error_line(r: &Run) -> String {
    r.stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_unreachable_database_is_a_connectivity_error_and_writes_nothing() {
    let dir = tempdir();
    let r = run(bin()
        .env(
            "DATABASE_URL",
            "postgres://postgres:hunter2secret@127.0.0.1:1/app",
        )
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--no-kubernetes"]))
    .failed(1);
    let e = error_line(&r);
    assert!(
        e.contains("cannot connect") && e.contains("connectivity"),
        "{e}"
    );
    assert!(e.contains("postgres://postgres@127.0.0.1:1/app"), "{e}");
    assert!(
        !r.stderr.contains("hunter2secret"),
        "the password leaked: {}",
        r.stderr
    );
    assert!(files(dir.path()).is_empty());
}

#[test]
fn a_missing_database_names_the_database_setting_to_check() {
    let dir = tempdir();
    let r = run(bin()
        .env(
            "DATABASE_URL",
            format!("{PG}/no_such_db_{}", std::process::id()),
        )
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--no-kubernetes"]))
    .failed(1);
    let e = error_line(&r);
    assert!(
        e.contains("does not exist") && e.contains("PGDATABASE"),
        "{e}"
    );
    assert!(files(dir.path()).is_empty());
}

#[test]
fn a_wrong_password_names_the_credentials_and_never_echoes_a_password() {
    let Some(pg) = PrivatePg::start("the-right-one") else {
        eprintln!(
            "SKIPPED: cannot start a private PostgreSQL cluster (needs root and the postgres user)"
        );
        return;
    };
    let dir = tempdir();
    let r = run(bin()
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", "the-wrong-one")
        .env("PGDATABASE", "postgres")
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--no-kubernetes"]))
    .failed(1);
    let e = error_line(&r);
    assert!(
        e.contains("password authentication failed") && e.contains("credentials"),
        "{e}"
    );
    assert!(!r.stderr.contains("the-wrong-one") && !r.stderr.contains("the-right-one"));
    assert!(files(dir.path()).is_empty());

    // And with the right password through DATABASE_URL the same server is backed up.
    run(bin()
        .env(
            "DATABASE_URL",
            format!(
                "postgres://postgres:the-right-one@127.0.0.1:{}/postgres",
                pg.port
            ),
        )
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--no-kubernetes"]))
    .ok();
    assert_eq!(archives(dir.path()).len(), 1);
}

#[test]
fn an_unknown_role_names_the_credentials() {
    // The shared server trusts every local connection, so log in as a role that does not exist:
    // the server answers with the same authentication failure class (28000) a wrong password gets.
    let dir = tempdir();
    let r = run(bin()
        .env(
            "DATABASE_URL",
            "postgres://nobody_here:wrong@127.0.0.1:5432/postgres",
        )
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--no-kubernetes"]))
    .failed(1);
    let e = error_line(&r);
    assert!(e.contains("credentials"), "{e}");
    assert!(!r.stderr.contains(":wrong@"));
}

#[test]
fn pg_dump_failing_halfway_leaves_no_partial_and_keeps_the_previous_backup() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let before = files(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let tools = tempdir();
    let pg_dump = fake_pg_dump(
        tools.path(),
        "head -c 3000000 /dev/urandom; echo 'pg_dump: error: Dumping the contents of table \"big\" failed: server closed the connection unexpectedly' >&2; exit 1",
    );
    let r = run(backup_cmd(&db, dir.path()).env("PG_DUMP_BIN", &pg_dump)).failed(1);
    let e = error_line(&r);
    assert!(
        e.contains("pg_dump failed") && e.contains("server closed the connection"),
        "{e}"
    );
    assert!(e.contains("check:"), "{e}");
    assert_eq!(
        files(dir.path()),
        before,
        "nothing new stays behind, nothing old is gone"
    );
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok();
}

#[test]
fn a_missing_pg_dump_binary_says_what_to_install() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(backup_cmd(&db, dir.path()).env("PG_DUMP_BIN", "/nonexistent/pg_dump")).failed(1);
    assert!(error_line(&r).contains("PG_DUMP_BIN"), "{}", r.stderr);
    assert!(archives(dir.path()).is_empty());
}

#[test]
fn a_missing_backup_directory_says_to_check_the_mount() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let missing = dir.path().join("not-mounted");
    let r = run(&mut backup_cmd(&db, &missing)).failed(1);
    let e = error_line(&r);
    assert!(
        e.contains("not-mounted") && e.contains("PVC is mounted"),
        "{e}"
    );
}

#[test]
fn a_read_only_backup_volume_says_it_must_be_writable() {
    let Some(fs) = Tmpfs::mount("4m", true) else {
        eprintln!("SKIPPED: cannot mount tmpfs here (needs root)");
        return;
    };
    let db = TestDb::with_sample_data();
    let r = run(&mut backup_cmd(&db, &fs.path)).failed(1);
    let e = error_line(&r);
    assert!(e.contains("writable"), "{e}");
}

#[test]
fn a_full_backup_volume_fails_clearly_keeps_older_backups_and_skips_retention() {
    let Some(fs) = Tmpfs::mount("3m", false) else {
        eprintln!("SKIPPED: cannot mount tmpfs here (needs root)");
        return;
    };
    let db = TestDb::with_sample_data();
    run(&mut backup_cmd(&db, &fs.path)).ok();
    let before = files(&fs.path);
    std::thread::sleep(std::time::Duration::from_millis(1100));

    db.add_random_mib(6);
    // --keep-last 1 would delete the first backup if retention ran after the failure.
    let r = run(backup_cmd(&db, &fs.path).args(["--keep-days", "0", "--keep-last", "1"])).failed(1);
    let e = error_line(&r);
    assert!(e.contains("full") && e.contains("persistence.size"), "{e}");
    assert_eq!(files(&fs.path), before);
    run(bin().env("BACKUP_DIR", &fs.path).args(["verify", "latest"])).ok();
}

#[test]
fn a_parallel_restore_needs_no_room_on_the_backup_volume() {
    let Some(fs) = Tmpfs::mount("3m", false) else {
        eprintln!("SKIPPED: cannot mount tmpfs here (needs root)");
        return;
    };
    let db = TestDb::with_sample_data();
    // ~6 MB of dump that compresses to a few KiB: the archive fits, the dump would not.
    db.sql(
        "CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 6000) g",
    );
    run(&mut backup_cmd(&db, &fs.path)).ok();
    let before = files(&fs.path);
    db.sql("DELETE FROM customers");

    run(restore_cmd(&db, &fs.path).args(["latest", "--no-safety-backup", "--jobs", "2"]))
        .ok()
        .says("streamed into 2 connections");

    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT count(*) FROM filler"), "6000");
    assert_eq!(files(&fs.path), before, "nothing was written to the volume");
}

#[test]
fn a_backup_killed_midway_is_never_listed_and_the_next_one_succeeds() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let good = list_json(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));

    let tools = tempdir();
    // 20 MB of dump, then pg_dump stops until released: the kill lands while the archive is being written.
    let gate = Gate::new();
    let pg_dump = fake_pg_dump(
        tools.path(),
        &format!("head -c 20000000 /dev/urandom; {}", gate.shell()),
    );
    let mut child = backup_cmd(&db, dir.path())
        .env("PG_DUMP_BIN", &pg_dump)
        .spawn()
        .unwrap();
    gate.wait_reached();
    wait_for(|| files(dir.path()).iter().any(|f| f.ends_with(".partial")));
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    assert!(
        files(dir.path()).iter().any(|f| f.ends_with(".partial")),
        "the kill left a partial file behind"
    );
    assert_only_these_listed_and_they_verify(dir.path(), &good, "the partial file is never listed");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(&mut backup_cmd(&db, dir.path())).ok();
    assert_eq!(list_json(dir.path()).len(), 2);
}

#[test]
fn an_invalid_age_recipient_is_a_configuration_error_before_anything_runs() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(backup_cmd(&db, dir.path()).args(["--encrypt-to", "age1notakey"])).failed(2);
    assert!(
        error_line(&r).contains("invalid age recipient \"age1notakey\""),
        "{}",
        r.stderr
    );
    assert!(files(dir.path()).is_empty());
}

#[test]
fn a_malformed_label_selector_is_a_configuration_error() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    // Without --no-kubernetes the selector is validated before the database or the API is touched.
    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["backup", "--exclude-selector", "env in prod"]))
    .failed(2);
    assert!(error_line(&r).contains("label selector"), "{}", r.stderr);
}

/// Issue "hardening": SIGKILL at 20 points spread over a whole backup (connect, dump, compress, fsync,
/// rename, sidecar, retention). After each kill every listed backup verifies, nothing partial is listed,
/// the newest good backup is untouched, and the next backup succeeds.
#[test]
fn twenty_backups_killed_at_random_points_never_leave_a_listed_backup_that_fails_to_verify() {
    let db = TestDb::with_sample_data();
    // ~30 MB of rows so a backup takes long enough to be hit in its middle.
    db.sql("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body FROM generate_series(1, 300000) g");
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let started = std::time::Instant::now();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let full = started.elapsed().as_millis() as u64;
    // A fixed xorshift sequence: the same kill points on every run, spread over 0..1.2× a full backup.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut points = Vec::new();
    for _ in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        points.push(x % (full * 12 / 10).max(50));
    }
    let (mut completed, mut mid_write) = (0, 0);
    let partials =
        |d: &std::path::Path| files(d).iter().filter(|f| f.ends_with(".partial")).count();
    for (i, ms) in points.iter().enumerate() {
        let before = list_json(dir.path());
        let partials_before = partials(dir.path());
        let newest = before.last().unwrap()["name"].as_str().unwrap().to_owned();
        let newest_bytes = std::fs::read(dir.path().join(&newest)).unwrap();
        let mut child = backup_cmd(&db, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(*ms));
        let _ = child.kill();
        child.wait().unwrap();

        let listed = list_json(dir.path());
        if listed.len() > before.len() {
            completed += 1;
        } else if partials(dir.path()) > partials_before {
            mid_write += 1;
        }
        for b in &listed {
            let name = b["name"].as_str().unwrap();
            assert!(
                !name.ends_with(".partial"),
                "kill {i} at {ms} ms: {name} listed"
            );
            run(bin().env("BACKUP_DIR", dir.path()).args(["verify", name])).ok();
        }
        assert!(
            listed.iter().any(|b| b["name"] == newest.as_str()),
            "kill {i} at {ms} ms: the newest good backup {newest} disappeared"
        );
        assert_eq!(
            std::fs::read(dir.path().join(&newest)).unwrap(),
            newest_bytes,
            "kill {i} at {ms} ms: the newest good backup changed"
        );
    }
    eprintln!(
        "20 kills: {mid_write} while the archive was being written, {completed} after it completed, {} before it began",
        20 - mid_write - completed
    );
    assert!(
        mid_write >= 3,
        "too few kills landed mid-write ({mid_write}): the spread is off"
    );
    let before = list_json(dir.path()).len();
    run(&mut backup_cmd(&db, dir.path())).ok();
    assert_eq!(
        list_json(dir.path()).len(),
        before + 1,
        "the next backup succeeds"
    );
}

/// A `pg_restore` that creates the schema (pre-data) for real, then stops at `gate` until released and
/// fails: a restore killed at the gate has emptied (or created) its database and loaded no rows.
fn pg_restore_stopping_after_the_schema(
    tools: &std::path::Path,
    gate: &Gate,
) -> std::path::PathBuf {
    wrapper(
        tools,
        "pg_restore-stops",
        &format!(
            "pg_restore \"$@\" --section=pre-data || exit 1\n{}\nexit 1",
            gate.shell()
        ),
    )
}

fn restore_in(db: &TestDb, dir: &std::path::Path) -> std::process::Command {
    let mut c = bin();
    c.env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(["restore", "--no-kubernetes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// A sample database with enough rows that a restore takes a while, backed up once, then changed.
fn backed_up_then_changed() -> (TestDb, tempfile::TempDir) {
    let db = TestDb::with_sample_data();
    db.sql("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body FROM generate_series(1, 400000) g");
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    db.sql("DELETE FROM customers WHERE id > 10; CREATE TABLE changed_after_backup (x int); INSERT INTO changed_after_backup VALUES (42)");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    (db, dir)
}

#[test]
fn a_swap_restore_killed_midway_leaves_the_live_database_untouched_and_the_next_restore_succeeds() {
    let (db, dir) = backed_up_then_changed();
    let (tools, gate) = (tempdir(), Gate::new());
    let mut child = restore_in(&db, dir.path())
        .env(
            "PG_RESTORE_BIN",
            pg_restore_stopping_after_the_schema(tools.path(), &gate),
        )
        .args(["latest", "--mode", "swap", "--no-safety-backup"])
        .spawn()
        .unwrap();
    gate.wait_reached();
    let scratch = format!(
        "SELECT count(*) FROM pg_database WHERE datname LIKE '{}\\_restore\\_%'",
        db.name
    );
    assert_eq!(
        psql("postgres", &scratch),
        "1",
        "the kill lands while the scratch database is loaded"
    );
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the live database was not touched"
    );
    assert_eq!(db.sql("SELECT x FROM changed_after_backup"), "42");
    // Captured output this time (restore_in discards it).
    let mut again = restore_in(&db, dir.path());
    again
        .args(["latest", "--mode", "swap", "--no-safety-backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    run(&mut again).ok();
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT count(*) FROM bulk"), "400000");
}

#[test]
fn a_clean_restore_killed_midway_is_undone_by_restoring_its_safety_backup() {
    let (db, dir) = backed_up_then_changed();
    let before = list_json(dir.path()).len();
    let (tools, gate) = (tempdir(), Gate::new());
    let mut child = restore_in(&db, dir.path())
        .env(
            "PG_RESTORE_BIN",
            pg_restore_stopping_after_the_schema(tools.path(), &gate),
        )
        .arg("latest")
        .spawn()
        .unwrap();
    // Killed after the safety backup, once the database was emptied and its schema restored, before any row.
    gate.wait_reached();
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert_eq!(
        list_json(dir.path()).len(),
        before + 1,
        "the safety backup was taken"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "0",
        "the kill left a half-restored database"
    );
    let set_aside = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eternia\\_aside\\_%'";
    assert_ne!(
        db.sql(set_aside),
        "0",
        "the schemas set aside are left beside it (the way back by hand)"
    );

    let listed = list_json(dir.path());
    let safety = listed.last().unwrap()["name"].as_str().unwrap().to_owned();
    run(restore_in(&db, dir.path()).args([safety.as_str(), "--no-safety-backup"])).ok();
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the state before the restore is back"
    );
    assert_eq!(db.sql("SELECT x FROM changed_after_backup"), "42");
    assert_eq!(db.sql("SELECT count(*) FROM bulk"), "400000");
    assert_eq!(
        db.sql(set_aside),
        "0",
        "the next restore set the leftover aside too, and dropped it"
    );
}

/// A `pg_restore` that stops at `gate` before its first post-data run (the rows are loading or loaded),
/// then runs for real.
fn pg_restore_stopping_before_post_data(
    tools: &std::path::Path,
    gate: &Gate,
) -> std::path::PathBuf {
    wrapper(
        tools,
        "pg_restore-before-post-data",
        &format!(
            "if [[ \" $* \" == *\" --section=post-data \"* ]]; then {}; fi\nexec pg_restore \"$@\"",
            gate.shell()
        ),
    )
}

#[test]
fn a_clean_restore_whose_schemas_set_aside_cannot_be_dropped_succeeds_and_says_how_to_drop_them() {
    let (db, dir) = backed_up_then_changed();
    let (tools, gate) = (tempdir(), Gate::new());
    let child = restore_in(&db, dir.path())
        .env(
            "PG_RESTORE_BIN",
            pg_restore_stopping_before_post_data(tools.path(), &gate),
        )
        .args(["latest", "--mode", "clean", "--no-safety-backup"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gate.wait_reached();
    let aside = db.sql(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = 'customers' AND n.nspname LIKE 'eternia\\_aside\\_%'",
    );
    assert!(
        !aside.is_empty(),
        "the live schemas are set aside while the database loads"
    );
    // Another session reads a table set aside: its lock holds the drop after the restore up.
    let mut reader = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-qAt", "-d", &db.name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(
        reader.stdin.as_mut().unwrap(),
        "BEGIN; LOCK TABLE {aside}.customers IN ACCESS SHARE MODE;"
    )
    .unwrap();
    let held = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = '{aside}' AND c.relname = 'customers' AND l.granted"
    );
    wait_for(|| db.sql(&held) != "0");
    gate.release();
    // The drop waits for the lock; ending its session makes it fail.
    let dropping = "SELECT pid FROM pg_stat_activity WHERE query LIKE 'DROP SCHEMA IF EXISTS %eternia\\_aside\\_%' AND wait_event_type = 'Lock'";
    wait_for(|| !psql("postgres", dropping).is_empty());
    psql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM ({dropping}) d"),
    );
    let out = child.wait_with_output().unwrap();
    drop(reader.stdin.take());
    reader.wait().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the restore succeeded: {summary}");
    assert!(
        summary.contains("could not be dropped") && summary.contains("DROP SCHEMA"),
        "the summary names the schemas left and how to drop them: {summary}"
    );
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT count(*) FROM bulk"), "400000");
    let set_aside = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eternia\\_aside\\_%'";
    assert_ne!(db.sql(set_aside), "0", "the schemas set aside are left");

    run(restore_in(&db, dir.path()).args(["latest", "--mode", "clean", "--no-safety-backup"])).ok();
    assert_eq!(
        db.sql(set_aside),
        "0",
        "the next clean restore dropped them"
    );
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
}

#[test]
fn postgres_crashing_mid_dump_fails_clearly_keeps_the_previous_backup_and_the_next_run_succeeds() {
    let password = "crash-test-pw-5d1e";
    let Some(pg) = PrivatePg::start(password) else {
        eprintln!(
            "SKIPPED: cannot start a private PostgreSQL cluster here (needs root and runuser)"
        );
        return;
    };
    pg.psql(
        password,
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body FROM generate_series(1, 1000000) g",
    );
    let dir = tempdir();
    let url = format!(
        "postgres://postgres:{password}@127.0.0.1:{}/postgres",
        pg.port
    );
    let backup = || {
        let mut c = bin();
        c.env("DATABASE_URL", &url)
            .env("BACKUP_DIR", dir.path())
            .args(["backup", "--no-kubernetes"]);
        c
    };
    run(&mut backup()).ok();
    let good = list_json(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // The real pg_dump, whose output stops after 6 MiB (a chunk is in the archive) until released: the
    // server crashes while pg_dump still has most of the table to read.
    let (tools, gate) = (tempdir(), Gate::new());
    let pg_dump = wrapper(
        tools.path(),
        "pg_dump-stops",
        &format!(
            "pg_dump \"$@\" | {{ dd bs=1M count=6 iflag=fullblock status=none; {}; cat; }}",
            gate.shell()
        ),
    );
    let child = backup()
        .env("PG_DUMP_BIN", &pg_dump)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gate.wait_reached();
    pg.crash();
    gate.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    eprintln!(
        "error after the crash: {}",
        stderr.lines().last().unwrap_or_default()
    );
    assert!(
        stderr.contains("pg_dump") || stderr.contains("database"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(password),
        "the password is never printed: {stderr}"
    );
    assert_only_these_listed_and_they_verify(dir.path(), &good, "nothing half-written is listed");

    pg.start_again();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(&mut backup()).ok();
    assert_eq!(list_json(dir.path()).len(), 2, "the next run succeeds");
}

/// The next three seconds' names, as a killed run of each would have left them.
fn next_seconds(f: impl Fn(jiff::Timestamp) -> String) -> Vec<String> {
    let now = jiff::Timestamp::now();
    (0..4)
        .map(|s| f(now + jiff::SignedDuration::from_secs(s)))
        .collect()
}

#[test]
fn a_partial_left_by_a_killed_run_in_the_same_second_is_never_reused_or_removed() {
    use eternia_backup::archive::{ArchiveName, Compression};
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let planted = next_seconds(|t| {
        format!(
            "{}.partial",
            ArchiveName::new("eternia-backup", t, Compression::Gzip, false).file_name()
        )
    });
    for p in &planted {
        std::fs::write(dir.path().join(p), b"left by a killed run").unwrap();
    }
    run(&mut backup_cmd(&db, dir.path())).ok();
    for p in &planted {
        assert_eq!(
            std::fs::read(dir.path().join(p)).unwrap(),
            b"left by a killed run"
        );
    }
    assert_eq!(list_json(dir.path()).len(), 1);
}

#[test]
fn a_scratch_database_left_by_a_killed_swap_restore_is_never_reused_or_dropped() {
    let (db, dir) = backed_up_then_changed();
    let planted = next_seconds(|t| format!("{}_restore_{}", db.name, t.strftime("%Y%m%d_%H%M%S")));
    for p in &planted {
        psql("postgres", &format!("CREATE DATABASE \"{p}\""));
    }
    let mut again = restore_in(&db, dir.path());
    again
        .args(["latest", "--mode", "swap", "--no-safety-backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    run(&mut again).ok();
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    for p in &planted {
        assert_eq!(
            psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{p}'")
            ),
            "1"
        );
        psql("postgres", &format!("DROP DATABASE \"{p}\""));
    }
}

/// Exactly `good` is listed, and each of them still verifies.
fn assert_only_these_listed_and_they_verify(
    dir: &std::path::Path,
    good: &[serde_json::Value],
    why: &str,
) {
    assert_eq!(list_json(dir), good, "{why}");
    for b in good {
        run(bin()
            .env("BACKUP_DIR", dir)
            .args(["verify", b["name"].as_str().unwrap()]))
        .ok();
    }
}

/// What the Job's deadline (or a deleted pod) does: SIGTERM, then SIGKILL after the grace period. The
/// restore stops while pg_restore loads the schema of the streamed load (held at a gate), and must say
/// where it stopped and what is left, remove its scratch file (the dump's table of contents, in TMPDIR),
/// stop pg_restore and put back the schemas clean mode set aside, well inside the grace period.
#[test]
fn a_restore_stopped_by_sigterm_says_where_it_stopped_removes_its_scratch_file_and_stops_pg_restore()
 {
    let (db, dir) = backed_up_then_changed();
    let (tools, gate) = (tempdir(), Gate::new());
    let pid_file = tools.path().join("pg_restore.pid");
    let pg_restore = wrapper(
        tools.path(),
        "pg_restore-waits",
        &format!(
            "echo $$ > '{}'\n{}\nexec pg_restore \"$@\"",
            pid_file.display(),
            gate.shell()
        ),
    );
    let tmp = tempdir();
    let child = restore_in(&db, dir.path())
        .env("PG_RESTORE_BIN", &pg_restore)
        .env("TMPDIR", tmp.path())
        .args(["latest", "--jobs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gate.wait_reached();
    let scratch = || {
        files(tmp.path())
            .into_iter()
            .filter(|f| f.starts_with(".eternia-restore-"))
            .count()
    };
    assert_eq!(
        scratch(),
        1,
        "the stop lands while the table of contents is in TMPDIR"
    );
    let pg_restore_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let started = std::time::Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "stopped within the pod's grace period"
    );
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(
        stderr.contains("loading the database"),
        "names the step: {stderr}"
    );
    assert!(
        stderr.contains("eternia-backup restore eternia-backup-"),
        "names the way back: {stderr}"
    );
    assert_eq!(scratch(), 0, "the scratch file is removed");
    // SAFETY: signal 0 only asks whether the process exists.
    wait_for(|| unsafe { libc::kill(pg_restore_pid, 0) } != 0);
    assert!(
        stderr.contains("are put back: the database is as it was"),
        "{stderr}"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the schemas set aside are put back"
    );
    assert_eq!(db.sql("SELECT x FROM changed_after_backup"), "42");
}

/// `psql -c select 1` into `db` as `role` (password `pw`): its stderr when the connection is refused.
fn connect_as(role: &str, pw: &str, db: &str) -> Result<(), String> {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", role, "-d", db, "-tAc", "SELECT 1"])
        .env("PGPASSWORD", pw)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_clean_restore_refuses_the_applications_new_connections_until_it_ends_also_when_it_fails() {
    let (db, dir) = backed_up_then_changed();
    let app = unique("eb_writer");
    psql(
        "postgres",
        &format!(
            "CREATE ROLE {app} LOGIN PASSWORD 'app-pw'; ALTER DATABASE {} CONNECTION LIMIT 25",
            db.name
        ),
    );
    connect_as(&app, "app-pw", &db.name).expect("the application connects before the restore");

    for fails in [false, true] {
        let (tools, gate) = (tempdir(), Gate::new());
        let tail = if fails {
            "exit 1"
        } else {
            "exec pg_restore \"$@\""
        };
        let pg_restore = wrapper(
            tools.path(),
            "pg_restore-gated",
            &format!("{}\n{tail}", gate.shell()),
        );
        let child = restore_in(&db, dir.path())
            .env("PG_RESTORE_BIN", &pg_restore)
            .args(["latest", "--jobs", "1", "--no-safety-backup"])
            .spawn()
            .unwrap();
        gate.wait_reached();
        // The database is emptied and being loaded: the application reconnecting is turned away.
        let refused = connect_as(&app, "app-pw", &db.name).unwrap_err();
        assert!(refused.contains("too many connections"), "{refused}");
        gate.release();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.success(), !fails, "pg_restore failing: {fails}");
        connect_as(&app, "app-pw", &db.name).expect("connections are allowed again afterwards");
        assert_eq!(
            psql(
                "postgres",
                &format!(
                    "SELECT datconnlimit FROM pg_database WHERE datname = '{}'",
                    db.name
                )
            ),
            "25",
            "the limit the database had is put back"
        );
    }
    drop_role(&app);
}
