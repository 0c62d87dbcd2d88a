//! Restore and drill against the real PostgreSQL: create data, back up, damage, restore, compare.

use crate::helpers::*;

/// `eternia-backup restore --no-kubernetes` of `db` from the backups in `dir`.
pub fn restore_cmd(db: &TestDb, dir: &std::path::Path) -> std::process::Command {
    let mut c = bin();
    c.env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(["restore", "--no-kubernetes"]);
    c
}

fn damage(db: &TestDb) {
    db.sql("DELETE FROM customers WHERE id > 10; DROP TABLE billing.\"Invoices\"; CREATE TABLE intruder (x int)");
}

#[test]
fn clean_mode_brings_back_deleted_rows_and_dropped_tables_after_a_safety_backup() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);

    // One job: the dump streamed from the archive into pg_restore.
    let r = run(restore_cmd(&db, dir.path()).args(["latest", "--jobs", "1"])).ok();

    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT count(*) FROM billing.\"Invoices\""), "120");
    assert_eq!(
        db.sql("SELECT to_regclass('intruder') IS NULL"),
        "t",
        "exactly the backed-up state"
    );
    r.says("safety backup: eternia-backup-");
    r.says("row counts match the manifest: 2 tables by PostgreSQL's insert counters, 0 counted");
    // The safety backup holds the damaged state, so the restore can be undone.
    let backups = list_json(dir.path());
    assert_eq!(backups.len(), 2);
    let safety = backups[1]["name"].as_str().unwrap();
    run(restore_cmd(&db, dir.path()).args([safety, "--no-safety-backup"])).ok();
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
}

#[test]
fn swap_mode_restores_into_a_scratch_database_and_keeps_the_old_one() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);

    let r =
        run(restore_cmd(&db, dir.path()).args(["latest", "--mode", "swap", "--no-safety-backup"]))
            .ok();

    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT to_regclass('intruder') IS NULL"), "t");
    let kept = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("previous database kept as "))
        .and_then(|rest| rest.split(" (to undo: ").next())
        .expect("old database named")
        .to_owned();
    assert_eq!(psql(&kept, "SELECT count(*) FROM customers"), "10");
    r.says(&format!(
        "(to undo: ALTER DATABASE \"{0}\" RENAME TO \"{0}_restored\"; ALTER DATABASE \"{kept}\" RENAME TO \"{0}\"",
        db.name
    ));
    psql(
        "postgres",
        &format!("DROP DATABASE \"{kept}\" WITH (FORCE)"),
    );
}

#[test]
fn a_checksum_mismatch_stops_the_restore_before_anything_is_touched() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);
    let name = archives(dir.path()).pop().unwrap();
    let path = dir.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    // Clean mode loads beside the schemas set aside while it verifies: the mismatch, found on the way,
    // puts them back.
    run(restore_cmd(&db, dir.path()).arg("latest"))
        .failed(1)
        .says("does not match its sidecar")
        .says("the database is as it was");
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the database is as it was"
    );

    // Emptied instead (a large object keeps the schemas from being set aside), it is verified first.
    db.sql("SELECT lo_from_bytea(0, 'outside the schemas')");
    let before = list_json(dir.path()).len();
    run(restore_cmd(&db, dir.path()).arg(&name))
        .failed(1)
        .says("does not match its sidecar");
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the database was not touched"
    );
    assert_eq!(
        list_json(dir.path()).len(),
        before,
        "no safety backup was even needed"
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);
    let r = run(restore_cmd(&db, dir.path()).args(["latest", "--dry-run"])).ok();
    r.says("DRY RUN: nothing changed");
    r.says("checksums OK, 2 tables / 420 rows");
    r.says(&format!(
        "database postgres://postgres@127.0.0.1:5432/{}: mode clean",
        db.name
    ));
    r.says("table public.customers: 300 rows");
    r.says("table billing.Invoices: 120 rows");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
    assert_eq!(list_json(dir.path()).len(), 1);
}

#[test]
fn restore_by_time_picks_the_newest_backup_before_it_and_unknown_names_are_refused() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    run(restore_cmd(&db, dir.path()).args(["--before", "2001-01-01T00:00:00Z", "--dry-run"]))
        .failed(1)
        .says("created at or before");
    run(restore_cmd(&db, dir.path()).args(["--before", "2999-01-01T00:00:00Z", "--dry-run"]))
        .ok()
        .says("checksums OK");
    run(restore_cmd(&db, dir.path()).args(["eternia-backup-20200101-000000.tar.gz", "--dry-run"]))
        .failed(1)
        .says("no backup named");
    let empty = tempdir();
    run(restore_cmd(&db, empty.path()).arg("latest"))
        .failed(1)
        .says("no backup at all");
}

/// A backup whose dump leaves out one table's rows: every checksum matches (they describe what pg_dump
/// wrote), but the manifest's row counts come from the database itself.
fn backup_missing_the_invoices(db: &TestDb, dir: &std::path::Path) {
    let tools = tempdir();
    let dump = fake_pg_dump(
        tools.path(),
        r#"exec pg_dump --exclude-table-data='billing."Invoices"' "$@""#,
    );
    run(backup_cmd(db, dir).env("PG_DUMP_BIN", &dump)).ok();
}

#[test]
fn rows_missing_from_the_dump_fail_the_row_count_check_in_either_mode() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    backup_missing_the_invoices(&db, dir.path());
    damage(&db);

    let r =
        run(restore_cmd(&db, dir.path()).args(["latest", "--mode", "swap", "--no-safety-backup"]))
            .failed(1);
    r.says("billing.Invoices: 0 rows, the manifest says 120");
    r.says("was not touched");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");

    let r = run(restore_cmd(&db, dir.path()).arg("latest")).failed(1);
    r.says("billing.Invoices: 0 rows, the manifest says 120");
    r.says("eternia-backup restore eternia-backup-");
}

#[test]
fn without_table_counters_on_the_server_every_table_is_counted() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);
    psql(
        "postgres",
        &format!("ALTER DATABASE {} SET track_counts = off", db.name),
    );

    let r = run(restore_cmd(&db, dir.path()).args(["latest", "--no-safety-backup"])).ok();

    r.says("row counts match the manifest: 0 tables by PostgreSQL's insert counters, 2 counted");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
}

#[test]
fn pg_restore_failing_halfway_in_clean_mode_names_the_safety_backup() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let tools = tempdir();
    let fake = fake_pg_dump(
        tools.path(),
        "head -c 100 >/dev/null; echo 'pg_restore: error: could not execute query: ERROR: out of shared memory' >&2; exit 1",
    );
    let r = run(restore_cmd(&db, dir.path())
        .arg("latest")
        .env("PG_RESTORE_BIN", &fake))
    .failed(1);
    r.says("out of shared memory");
    r.says("eternia-backup restore eternia-backup-");
}

#[test]
fn pg_restore_failing_in_swap_mode_leaves_the_live_database_untouched() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);
    let tools = tempdir();
    let fake = fake_pg_dump(
        tools.path(),
        "head -c 100 >/dev/null; echo 'pg_restore: error: boom' >&2; exit 1",
    );
    run(restore_cmd(&db, dir.path())
        .args(["latest", "--mode", "swap", "--no-safety-backup"])
        .env("PG_RESTORE_BIN", &fake))
    .failed(1)
    .says("was not touched");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
    let leftovers = psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_restore_%'",
            db.name
        ),
    );
    assert_eq!(leftovers, "0", "the scratch database was dropped");
}

#[test]
fn an_encrypted_backup_restores_only_with_its_identity() {
    use secrecy::ExposeSecret;
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let keys = tempdir();
    let id = age::x25519::Identity::generate();
    let key_file = keys.path().join("id.txt");
    std::fs::write(&key_file, id.to_string().expose_secret()).unwrap();
    run(backup_cmd(&db, dir.path()).args(["--encrypt-to", &id.to_public().to_string()])).ok();
    damage(&db);
    run(restore_cmd(&db, dir.path()).args(["latest", "--no-safety-backup"]))
        .failed(1)
        .says("AGE_IDENTITY_FILE");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
    run(restore_cmd(&db, dir.path())
        .args(["latest", "--no-safety-backup"])
        .env("AGE_IDENTITY_FILE", &key_file))
    .ok();
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
}

#[test]
fn a_drill_restores_into_a_scratch_database_compares_and_drops_it() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let checks = dir.path().join("checks.sql");
    std::fs::write(
        &checks,
        "SELECT count(*) = 300 FROM customers; SELECT sum(amount) > 0 FROM billing.\"Invoices\"",
    )
    .unwrap();
    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["drill", "latest", "--checks"])
        .arg(&checks))
    .ok();
    r.says("drill PASS");
    let leftovers = psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_drill_%'",
            db.name
        ),
    );
    assert_eq!(leftovers, "0");

    std::fs::write(&checks, "SELECT count(*) = 999 FROM customers").unwrap();
    run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["drill", "latest", "--checks"])
        .arg(&checks))
    .failed(1)
    .says("check returned false");
}

#[test]
fn a_restore_while_a_backup_runs_stops_before_touching_anything() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    damage(&db);
    let (tools, gate) = (tempdir(), Gate::new());
    let held = fake_pg_dump(
        tools.path(),
        &format!("head -c 1000 /dev/urandom; {}", gate.shell()),
    );
    let mut running = backup_cmd(&db, dir.path())
        .env("PG_DUMP_BIN", &held)
        .spawn()
        .unwrap();
    gate.wait_reached();

    let r = run(restore_cmd(&db, dir.path()).arg("latest")).failed(1);
    r.says("backup already in progress");
    r.says("nothing was changed");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
    gate.release();
    assert!(running.wait().unwrap().success());
}

#[test]
fn a_parallel_restore_streams_the_dump_into_several_connections_and_leaves_no_file_behind() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let before = files(dir.path());
    damage(&db);
    let tmp = tempdir();

    run(restore_cmd(&db, dir.path())
        .args([
            "latest",
            "--no-safety-backup",
            "--mode",
            "swap",
            "--jobs",
            "2",
        ])
        .env("TMPDIR", tmp.path()))
    .ok()
    .says("data: streamed into 2 connections as it is verified")
    .says("post-data: indexes, constraints and triggers");

    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT count(*) FROM billing.\"Invoices\""), "120");
    assert_eq!(files(dir.path()), before, "nothing written to the volume");
    assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));
    for kept in psql(
        "postgres",
        &format!(
            "SELECT datname FROM pg_database WHERE datname LIKE '{}_pre_restore_%'",
            db.name
        ),
    )
    .lines()
    {
        psql(
            "postgres",
            &format!("DROP DATABASE \"{kept}\" WITH (FORCE)"),
        );
    }
}

#[test]
fn restore_help_offers_what_a_restore_uses_and_no_backup_only_flag() {
    let r = run(bin().args(["restore", "--help"])).ok();
    for wanted in [
        "--mode",
        "--no-safety-backup",
        "--jobs",
        "Safety backup:",
        "--encrypt-to",
        "--compression",
    ] {
        r.says(wanted);
    }
    for backup_only in [
        "--keep-days",
        "--keep-last",
        "--no-prune",
        "--notify-slack-webhook-url",
        "--notify-on-success",
    ] {
        assert!(
            !r.stdout.contains(backup_only),
            "restore --help offers {backup_only}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn a_backup_only_flag_given_to_restore_is_a_usage_error_that_names_it() {
    let dir = tempdir();
    run(bin().env("BACKUP_DIR", dir.path()).args([
        "restore",
        "latest",
        "--no-kubernetes",
        "--keep-days",
        "3",
    ]))
    .failed(2)
    .says("--keep-days");
}

#[test]
fn the_safety_backup_is_written_with_the_backup_settings_it_is_given() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();

    let r = run(restore_cmd(&db, dir.path())
        .env("BACKUP_COMPRESSION", "zstd")
        .args(["latest", "--jobs", "1"]))
    .ok();

    let safety: Vec<String> = archives(dir.path())
        .into_iter()
        .filter(|a| a.ends_with(".tar.zst"))
        .collect();
    assert_eq!(
        safety.len(),
        1,
        "one zstd safety backup: {:?}",
        archives(dir.path())
    );
    r.says(&format!("safety backup: {}", safety[0]));
}

/// A stand-in pg_restore printing what the real one prints for a conflicting row (a real server cannot be
/// made to conflict inside a restore that first empties the database): the row's values never reach the
/// error, while the constraint, the table and the line do.
#[test]
fn a_failing_pg_restore_names_the_constraint_and_table_but_never_the_rows_values() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let tools = tempdir();
    let fake = fake_pg_dump(
        tools.path(),
        r#"head -c 100 >/dev/null
echo 'pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint "customers_email_key"' >&2
echo 'DETAIL:  Key (email)=(alice.secret@example.com) already exists.' >&2
echo 'CONTEXT:  COPY customers, line 7, column email: "alice.secret@example.com"' >&2
printf '7\talice.secret@example.com\tAlice\n' >&2
exit 1"#,
    );
    let r = run(restore_cmd(&db, dir.path())
        .args(["latest", "--no-safety-backup"])
        .env("PG_RESTORE_BIN", &fake))
    .failed(1);
    r.says("customers_email_key");
    r.says("COPY customers, line 7, column email");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        !all.contains("alice.secret"),
        "row data in the output:\n{all}"
    );
}

#[test]
fn a_retried_restore_latest_restores_the_same_archive_not_the_first_tries_safety_backup() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    let backup = archives(dir.path()).pop().unwrap();
    damage(&db);

    let first = run(restore_cmd(&db, dir.path()).args(["latest", "--jobs", "1"])).ok();
    first.says(&format!("archive {backup}"));
    first.says("safety backup: eternia-backup-safety-");
    // What CI, Slack and an operator do after a timeout: the same command again.
    let again = run(restore_cmd(&db, dir.path()).args(["latest", "--jobs", "1"])).ok();
    again.says(&format!("archive {backup}"));
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(db.sql("SELECT to_regclass('intruder') IS NULL"), "t");

    let listed = list_json(dir.path());
    let kinds: Vec<(&str, &str)> = listed
        .iter()
        .map(|b| (b["name"].as_str().unwrap(), b["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds.iter().filter(|(_, k)| *k == "safety").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&(backup.as_str(), "backup")), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|(n, k)| (*k == "safety") == n.starts_with("eternia-backup-safety-"))
    );
}

#[test]
fn a_safety_backup_is_restored_by_its_name_to_undo_a_restore() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    db.sql("INSERT INTO customers (id, name) SELECT g, 'after-backup-' || g FROM generate_series(1001, 1005) g");
    let r = run(restore_cmd(&db, dir.path()).args(["latest", "--jobs", "1"])).ok();
    let safety = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("safety backup: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");

    run(restore_cmd(&db, dir.path()).args([safety.as_str(), "--jobs", "1", "--no-safety-backup"]))
        .ok();
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "305",
        "the undo brings back the replaced state"
    );
}

#[test]
fn swap_mode_keeps_the_database_level_settings_privileges_and_comment() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let role = unique("eb_app");
    let name = &db.name;
    psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN;
             ALTER DATABASE {name} SET work_mem = '12MB';
             ALTER DATABASE {name} SET search_path = \"$user\", billing, public;
             ALTER ROLE {role} IN DATABASE {name} SET statement_timeout = '5s';
             REVOKE ALL ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {role};
             COMMENT ON DATABASE {name} IS 'the app''s database';
             ALTER DATABASE {name} CONNECTION LIMIT 40"
        ),
    );
    let state = || {
        psql(
            "postgres",
            &format!(
                "SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database'),
                        (SELECT string_agg(COALESCE(r.rolname, '*') || ':' || array_to_string(s.setconfig, ','), ';' ORDER BY 1)
                           FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                          WHERE s.setdatabase = d.oid),
                        (SELECT string_agg(COALESCE(pg_get_userbyid(NULLIF(a.grantee, 0)), 'PUBLIC') || ':' || a.privilege_type, ',' ORDER BY 1)
                           FROM aclexplode(d.datacl) a WHERE a.grantee <> d.datdba)
                   FROM pg_database d WHERE d.datname = '{name}'"
            ),
        )
    };
    let before = state();
    assert!(
        before.contains("work_mem=12MB") && before.contains(&format!("{role}:CONNECT")),
        "{before}"
    );
    run(&mut backup_cmd(&db, dir.path())).ok();

    let r =
        run(restore_cmd(&db, dir.path()).args(["latest", "--mode", "swap", "--no-safety-backup"]))
            .ok();

    assert_eq!(
        state(),
        before,
        "the swapped-in database has the settings, privileges and comment"
    );
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    let previous = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("previous database kept as "))
        .and_then(|rest| rest.split(" (to undo: ").next())
        .unwrap()
        .to_owned();
    psql(
        "postgres",
        &format!("DROP DATABASE {previous} WITH (FORCE)"),
    );
    psql(
        "postgres",
        &format!(
            "REVOKE ALL ON DATABASE {name} FROM {role}; ALTER ROLE {role} IN DATABASE {name} RESET ALL"
        ),
    );
    // The role is left behind on purpose only if something above failed; here it goes.
    drop_role(&role);
}
