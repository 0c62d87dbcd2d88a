//! Several databases in one archive (`BACKUP_DATABASES`): one dump each with its own row counts, restored
//! and drilled one by name or all at once; one of them failing to dump leaves no archive behind.

use std::path::Path;
use std::process::Command;

use crate::helpers::*;
use crate::restore::restore_cmd;

/// The application's database (the connection's) and a second one with other tables.
struct Two {
    app: TestDb,
    other: TestDb,
}

impl Two {
    fn create() -> Two {
        let app = TestDb::with_sample_data();
        let other = TestDb::create();
        other.sql(
            "CREATE SCHEMA reports;
             CREATE TABLE reports.daily (day date PRIMARY KEY, visits int);
             INSERT INTO reports.daily SELECT d::date, 7 FROM generate_series('2026-01-01'::date, '2026-03-31', '1 day') d;",
        );
        Two { app, other }
    }

    fn backup_cmd(&self, dir: &Path) -> Command {
        let mut c = backup_cmd(&self.app, dir);
        c.env("BACKUP_DATABASES", &self.other.name);
        c
    }

    fn backup(&self, dir: &Path) -> Run {
        run(&mut self.backup_cmd(dir))
    }

    fn damage(&self) {
        self.app
            .sql("DELETE FROM customers WHERE id > 10; CREATE TABLE intruder (x int)");
        self.other.sql("TRUNCATE reports.daily");
    }

    fn counts(&self) -> (String, String) {
        (
            self.app.sql("SELECT count(*) FROM customers"),
            self.other.sql("SELECT count(*) FROM reports.daily"),
        )
    }
}

fn sidecar(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.manifest.json"))).unwrap())
        .unwrap()
}

#[test]
fn a_backup_of_two_databases_holds_one_dump_each_with_its_own_row_counts() {
    let two = Two::create();
    let dir = tempdir();

    let r = two.backup(dir.path()).ok();

    r.says("2 databases");
    let name = &archives(dir.path())[0];
    let m = &sidecar(dir.path(), name)["manifest"];
    assert_eq!(m["format_version"], 3, "several databases: format 3");
    assert_eq!(m["database"]["name"], two.app.name.as_str());
    assert_eq!(m["more_databases"][0]["name"], two.other.name.as_str());
    assert_eq!(m["more_databases"][0]["dir"], "databases/1");
    assert_eq!(
        m["more_databases"][0]["tables"],
        serde_json::json!([{"schema": "reports", "table": "daily", "rows": 90}])
    );
    assert_eq!(m["database"]["tables"].as_array().unwrap().len(), 2);
    let e = tar_entries(&dir.path().join(name));
    for want in [
        "database/globals.json",
        "database/pgdump.000001",
        "databases/1/globals.json",
        "databases/1/pgdump.000001",
    ] {
        assert!(e.iter().any(|x| x == want), "{want} missing from {e:?}");
    }
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", name.as_str()]))
    .ok();
}

#[test]
fn restore_all_databases_brings_each_back_and_its_safety_backup_undoes_both() {
    let two = Two::create();
    let dir = tempdir();
    two.backup(dir.path()).ok();
    two.damage();

    // Two jobs: each database's dump is written to the volume during the one verification pass.
    let r =
        run(restore_cmd(&two.app, dir.path()).args(["latest", "--all-databases", "--jobs", "2"]))
            .ok();

    assert_eq!(two.counts(), ("300".into(), "90".into()));
    assert_eq!(
        two.app.sql("SELECT to_regclass('intruder') IS NULL"),
        "t",
        "clean mode"
    );
    r.says(&format!(
        "{}: row counts match the manifest",
        two.other.name
    ));
    assert!(
        !files(dir.path()).iter().any(|f| f.ends_with(".dump")),
        "the scratch dumps are removed: {:?}",
        files(dir.path())
    );
    // The safety backup holds both databases as they were (damaged), and puts both back.
    let listed = list_json(dir.path());
    let safety = listed
        .iter()
        .find(|b| b["kind"] == "safety")
        .expect("a safety backup")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    r.says(&format!("restore {safety}"));
    assert_eq!(
        sidecar(dir.path(), &safety)["manifest"]["more_databases"][0]["name"],
        two.other.name.as_str()
    );
    run(restore_cmd(&two.app, dir.path()).args([
        safety.as_str(),
        "--all-databases",
        "--no-safety-backup",
    ]))
    .ok();
    assert_eq!(two.counts(), ("10".into(), "0".into()));
}

#[test]
fn restore_of_one_database_by_name_leaves_the_other_alone() {
    let two = Two::create();
    let dir = tempdir();
    two.backup(dir.path()).ok();
    two.damage();

    run(restore_cmd(&two.app, dir.path()).args([
        "latest",
        "--database",
        two.other.name.as_str(),
        "--jobs",
        "1",
    ]))
    .ok();
    assert_eq!(two.counts(), ("10".into(), "90".into()));

    // Without --database: the archive's first database, into the configured one.
    run(restore_cmd(&two.app, dir.path()).args(["latest", "--no-safety-backup"])).ok();
    assert_eq!(two.counts(), ("300".into(), "90".into()));

    let r =
        run(restore_cmd(&two.app, dir.path()).args(["latest", "--database", "billing"])).failed(1);
    r.says("holds no database \"billing\"")
        .says(&two.app.name)
        .says(&two.other.name);
}

#[test]
fn a_drill_of_all_databases_restores_each_into_a_scratch_database_and_drops_them() {
    let two = Two::create();
    let dir = tempdir();
    two.backup(dir.path()).ok();

    let r = run(bin()
        .env("DATABASE_URL", two.app.url())
        .env("BACKUP_DIR", dir.path())
        .args(["drill", "latest", "--all-databases"]))
    .ok();

    r.says("PASS");
    let left = psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}%drill%' OR datname LIKE '{}%drill%'",
            two.app.name, two.other.name
        ),
    );
    assert_eq!(left, "0", "the scratch databases are dropped");
}

#[test]
fn one_database_failing_to_dump_leaves_no_archive_and_the_earlier_backup_untouched() {
    let two = Two::create();
    let dir = tempdir();
    two.backup(dir.path()).ok();
    let before = files(dir.path());
    let tools = tempdir();
    // pg_dump fails for the second database only, after the first one was written whole.
    let pg_dump = wrapper(
        tools.path(),
        "pg_dump-fails-for-one",
        &format!(
            "if [[ $PGDATABASE == {} ]]; then echo 'pg_dump: error: query failed: out of shared memory' >&2; exit 1; fi\nexec pg_dump \"$@\"",
            two.other.name
        ),
    );

    let r = run(two.backup_cmd(dir.path()).env("PG_DUMP_BIN", &pg_dump)).failed(1);

    r.says(&format!("on database {}", two.other.name))
        .says("out of shared memory");
    assert_eq!(files(dir.path()), before, "no new archive, no partial left");
}

#[test]
fn a_named_database_the_server_lacks_is_refused_before_anything_is_written() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();

    let r = run(backup_cmd(&db, dir.path()).env("BACKUP_DATABASES", "no_such_db_here")).failed(2);

    r.says("no_such_db_here").says("nothing was written");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn backup_databases_all_dumps_every_database_but_the_templates() {
    const PW: &str = "all-pw";
    let Some(pg) = PrivatePg::start(PW) else {
        eprintln!("SKIPPED: cannot start a private PostgreSQL cluster");
        return;
    };
    for (db, rows) in [("shop", 3), ("crm", 5)] {
        pg.psql(PW, &format!("CREATE DATABASE {db}"));
        pg.psql_in(
            PW,
            db,
            &format!("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, {rows})"),
        );
    }
    let dir = tempdir();
    let url = format!("postgres://postgres:{PW}@127.0.0.1:{}/shop", pg.port);

    run(bin()
        .env("DATABASE_URL", &url)
        .env("BACKUP_DIR", dir.path())
        .env("BACKUP_NO_KUBERNETES", "true")
        .env("BACKUP_DATABASES", "all")
        .arg("backup"))
    .ok();

    let m = &sidecar(dir.path(), &archives(dir.path())[0])["manifest"];
    let names: Vec<&str> = std::iter::once(&m["database"])
        .chain(m["more_databases"].as_array().unwrap())
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["shop", "crm", "postgres"],
        "the connection's first, then the others by name"
    );
    assert_eq!(m["more_databases"][0]["tables"][0]["rows"], 5);
}
