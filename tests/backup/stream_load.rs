//! The streamed parallel load (`--jobs` above 1): the same database as one `pg_restore` of the same dump,
//! for the shapes that matter (partitions, large objects, generated columns, a table with no columns,
//! quoted and non-ASCII names, foreign keys across tables loaded at once, a table split over several
//! connections, indexes and keys built while other tables load, a partitioned primary key); a checksum mismatch found while loading leaves the live database untouched (swap) or puts it back as it
//! was (clean: its schemas set aside while it loads); a connection dropped in the middle of a COPY names the table.

use std::process::{Command, Stdio};

use crate::backup_cli::wait_for;
use crate::helpers::*;

/// Every shape the loader must get right, with enough rows that the big table spans many batches.
fn awkward_database() -> TestDb {
    let db = TestDb::create();
    db.sql(
        r#"CREATE TABLE parent (id int PRIMARY KEY, name text);
           INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 2000) g;
           CREATE TABLE child (id bigserial PRIMARY KEY, parent_id int REFERENCES parent, body text);
           INSERT INTO child (parent_id, body) SELECT 1 + g % 2000, repeat(md5(g::text), 6) FROM generate_series(1, 40000) g;
           SELECT setval('child_id_seq', 123456);
           CREATE TABLE measures (id int, region text, v numeric) PARTITION BY LIST (region);
           CREATE TABLE measures_eu PARTITION OF measures FOR VALUES IN ('eu');
           CREATE TABLE measures_us PARTITION OF measures FOR VALUES IN ('us');
           INSERT INTO measures SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, g / 7.0 FROM generate_series(1, 3000) g;
           CREATE TABLE generated (a int, doubled int GENERATED ALWAYS AS (a * 2) STORED);
           INSERT INTO generated (a) SELECT generate_series(1, 100);
           CREATE TABLE no_columns ();
           INSERT INTO no_columns DEFAULT VALUES; INSERT INTO no_columns DEFAULT VALUES; INSERT INTO no_columns DEFAULT VALUES;
           CREATE SCHEMA "Ünïcode schema";
           CREATE TABLE "Ünïcode schema"."Tabelle ""quoted""" (id int, "naïve col" text, "tab	and
newline" text);
           INSERT INTO "Ünïcode schema"."Tabelle ""quoted""" VALUES (1, 'café', E'a\tb\nc\\d'), (2, NULL, '');
           CREATE INDEX ON child (parent_id);
           CREATE INDEX child_upper ON child (upper(body));
           ALTER TABLE child ADD CONSTRAINT body_not_empty CHECK (body <> '') NOT VALID;
           ALTER TABLE measures ADD PRIMARY KEY (id, region);
           ALTER TABLE parent ADD CONSTRAINT parent_name_unique UNIQUE (name);
           COMMENT ON INDEX child_upper IS 'built while the other tables load';
           CREATE VIEW parent_names AS SELECT name FROM parent;
           SELECT lo_from_bytea(0, convert_to(repeat('large object ', 300000), 'UTF8'));
           SELECT lo_from_bytea(0, '\x00ff00'::bytea);"#,
    );
    db
}

/// Per table, an order-independent checksum of its rows; the large objects' contents; the sequences.
fn contents(db: &str) -> Vec<String> {
    let tables = psql(
        db,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    let mut out: Vec<String> = tables
        .lines()
        .map(|t| {
            let sum = psql(
                db,
                &format!(
                    "SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, chr(10) ORDER BY x::text), '')) FROM {t} x"
                ),
            );
            format!("{t}: {sum}")
        })
        .collect();
    out.push(psql(
        db,
        "SELECT string_agg(md5(lo_get(oid)), ',' ORDER BY md5(lo_get(oid))) FROM pg_largeobject_metadata",
    ));
    out.push(psql(db, "SELECT last_value FROM child_id_seq"));
    out
}

fn restore_into(db: &TestDb, dir: &std::path::Path, into: &str, jobs: &str) -> Run {
    run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(["restore", "--no-kubernetes", "latest", "--no-safety-backup"])
        .args(["--mode", "swap", "--target-database", into, "--jobs", jobs]))
}

struct Dropped(Vec<String>);

impl Drop for Dropped {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS \"{d}\" WITH (FORCE)"))
                .output();
        }
    }
}

#[test]
fn the_streamed_parallel_load_gives_the_database_one_pg_restore_gives() {
    let db = awkward_database();
    let dir = tempdir();
    run(backup_cmd(&db, dir.path()).env("BACKUP_CHUNK_SIZE", "64KiB")).ok();
    let (parallel, single) = (format!("{}_par", db.name), format!("{}_one", db.name));
    let _cleanup = Dropped(vec![parallel.clone(), single.clone()]);

    restore_into(&db, dir.path(), &parallel, "3")
        .ok()
        .says("data: streamed into 3 connections");
    restore_into(&db, dir.path(), &single, "1").ok();

    let url = |d: &str| format!("{PG}/{d}");
    assert_eq!(
        schema(&url(&parallel)),
        schema(&url(&single)),
        "the same schema"
    );
    let (got, want) = (contents(&parallel), contents(&single));
    assert_eq!(
        got, want,
        "the same rows, large objects and sequence values"
    );
    assert_eq!(got, contents(&db.name), "and what was backed up");
    assert!(
        got.iter().any(|l| l.starts_with("public.no_columns: 3 ")),
        "{got:?}"
    );
}

/// The sample database with 2 MiB more, backed up in 64 KiB chunks (so the dump spans many entries), then
/// left with 10 customers: the database, the backup directory and the archive's name.
fn backed_up_in_many_chunks_then_trimmed() -> (TestDb, tempfile::TempDir, String) {
    let db = TestDb::with_sample_data();
    db.add_random_mib(2);
    let dir = tempdir();
    run(backup_cmd(&db, dir.path()).env("BACKUP_CHUNK_SIZE", "64KiB")).ok();
    db.sql("DELETE FROM customers WHERE id > 10");
    let name = archives(dir.path()).pop().unwrap();
    (db, dir, name)
}

#[test]
fn a_checksum_mismatch_found_while_loading_leaves_the_live_database_untouched() {
    let (db, dir, name) = backed_up_in_many_chunks_then_trimmed();
    flip_a_byte_near_the_end(&dir.path().join(&name));

    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args([
            "restore",
            "--no-kubernetes",
            "latest",
            "--mode",
            "swap",
            "--jobs",
            "2",
        ]))
    .failed(1);

    r.says("the live database").says("was not touched");
    assert!(
        r.stderr.contains("data: streamed into 2 connections"),
        "loading had begun: {}",
        r.stderr
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the live database is as it was"
    );
    let left = psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname LIKE '{}_restore_%'",
            db.name
        ),
    );
    assert_eq!(left, "0", "the scratch database is dropped");
}

/// A table `public.held_back` whose rows each pass a domain check that waits while the gate file is
/// missing (the server polls it): its COPY stops there, inside the table, for as long as the test wants.
/// Backed up with the gate open; returns the gate file, removed (closed).
fn with_a_held_back_table(
    db: &TestDb,
    dir: &std::path::Path,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let gate = tempdir();
    let open = gate.path().join("open");
    std::fs::write(&open, b"1").unwrap();
    db.sql(&format!(
        "CREATE FUNCTION public.gate(v int) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN
                WHILE (pg_catalog.pg_stat_file('{}', true)).size IS NULL LOOP PERFORM pg_catalog.pg_sleep(0.05); END LOOP;
                RETURN true;
              END $$;
         CREATE DOMAIN public.gated AS int CHECK (public.gate(VALUE));
         CREATE TABLE public.held_back (v public.gated);
         INSERT INTO public.held_back SELECT generate_series(1, 5);",
        open.display()
    ));
    run(&mut backup_cmd(db, dir)).ok();
    std::fs::remove_file(&open).unwrap();
    (gate, open)
}

fn swap_restore_into(db: &TestDb, dir: &std::path::Path, into: &str) -> std::process::Child {
    bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(["restore", "--no-kubernetes", "latest", "--no-safety-backup"])
        .args(["--mode", "swap", "--target-database", into, "--jobs", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The pid of the COPY of `held_back` waiting at the gate in the scratch database of a restore into
/// `into`, if it is there (only that one: tests running beside this one hold their own gates).
fn waiting_at_the_gate(into: &str) -> String {
    psql(
        "postgres",
        &format!(
            "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE 'COPY %held_back%' \
             AND starts_with(datname, '{into}_restore_')"
        ),
    )
}

/// A table's primary key and indexes are built as soon as its rows are in, while the tables after it
/// still load (the next table's COPY is held at the gate until the index is seen in the scratch
/// database); the restored database has all of them.
#[test]
fn a_tables_indexes_are_built_while_the_next_table_loads() {
    let db = TestDb::create();
    db.sql(
        "CREATE TABLE public.a_first (id int PRIMARY KEY, body text);
         INSERT INTO public.a_first SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
         CREATE INDEX a_first_body ON public.a_first (body);",
    );
    let dir = tempdir();
    let (_gate, open) = with_a_held_back_table(&db, dir.path());
    let into = format!("{}_early", db.name);
    let _cleanup = Dropped(vec![into.clone()]);

    let restore = swap_restore_into(&db, dir.path(), &into);
    wait_for(|| !waiting_at_the_gate(&into).is_empty());
    let scratch = psql(
        "postgres",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{into}_restore_%'"),
    );
    wait_for(|| {
        psql(
            &scratch,
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname IN ('a_first_pkey', 'a_first_body') AND i.indisvalid",
        ) == "2"
    });
    assert!(
        !waiting_at_the_gate(&into).is_empty(),
        "the next table was still loading"
    );
    std::fs::write(&open, b"1").unwrap();
    let out = restore.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("built while the rest loads"), "{stderr}");
    assert_eq!(
        psql(
            &into,
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public'"
        ),
        "a_first_body,a_first_pkey"
    );
    assert_eq!(psql(&into, "SELECT count(*) FROM public.held_back"), "5");
}

#[test]
fn a_connection_dropped_in_the_middle_of_a_copy_fails_naming_the_table() {
    let db = TestDb::create();
    let dir = tempdir();
    let (_gate, _open) = with_a_held_back_table(&db, dir.path());
    let into = format!("{}_cut", db.name);
    let _cleanup = Dropped(vec![into.clone()]);

    let restore = swap_restore_into(&db, dir.path(), &into);
    // The COPY waits at the gate: then its connection is cut.
    let waiting = || waiting_at_the_gate(&into);
    wait_for(|| !waiting().is_empty());
    psql(
        "postgres",
        &format!("SELECT pg_terminate_backend({})", waiting()),
    );
    let out = restore.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("load table public.held_back"),
        "the table is named: {stderr}"
    );
    assert!(stderr.contains("was not touched"), "{stderr}");
}

/// A byte near the end of the archive: the schema and most rows are loaded when it is found.
fn flip_a_byte_near_the_end(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() * 9 / 10;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn schemas_of(db: &TestDb) -> String {
    db.sql(
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace \
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
    )
}

/// Clean mode loads the live database while it verifies the archive, beside its schemas renamed aside:
/// once the restore is checked they are dropped, with what was created after the backup.
#[test]
fn clean_mode_loads_beside_the_schemas_set_aside_then_drops_them() {
    let (db, dir, name) = backed_up_in_many_chunks_then_trimmed();
    let before = schemas_of(&db);
    db.sql("CREATE SCHEMA after_backup; CREATE TABLE after_backup.t AS SELECT 1 AS x");

    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["restore", "--no-kubernetes", &name, "--mode", "clean"])
        .args(["--jobs", "2", "--no-safety-backup"]))
    .ok();

    r.says("the dump is verified while it loads")
        .says("set aside while it loads")
        .says("the schemas set aside are dropped");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(
        schemas_of(&db),
        before,
        "the restored schemas alone: none set aside is left, nor the one created after the backup"
    );
}

/// A checksum mismatch found once clean mode has loaded most rows drops what it restored and puts the
/// schemas set aside back: the database is as it was before the restore, and says so.
#[test]
fn a_checksum_mismatch_found_while_clean_mode_loads_puts_the_database_back_as_it_was() {
    let (db, dir, name) = backed_up_in_many_chunks_then_trimmed();
    let before = schemas_of(&db);
    flip_a_byte_near_the_end(&dir.path().join(&name));

    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["restore", "--no-kubernetes", &name, "--mode", "clean"])
        .args(["--jobs", "2", "--no-safety-backup"]))
    .failed(1);

    r.says("data: streamed into 2 connections").says(
        "the database is as it was: its schemas were set aside while it loaded, and are put back",
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the rows as they were"
    );
    assert_eq!(schemas_of(&db), before, "the schemas as they were");
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_database WHERE datname = current_database() AND datconnlimit = -1"),
        "1",
        "connections are allowed again"
    );
}

/// What lives outside the schemas (here a large object) keeps them from being set aside: clean mode
/// then checks every entry first, and reads the archive again to load it, checking the sizes and the
/// whole-file checksum the second time (the same bytes as verified). An archive changed between the two
/// reads (here by the pre-restore hook, which runs between them) fails the restore, which names the way
/// back, and the way back works.
#[test]
fn an_archive_changed_between_clean_modes_check_and_its_load_fails_with_the_way_back() {
    let (db, dir, name) = backed_up_in_many_chunks_then_trimmed();
    db.sql("SELECT lo_from_bytea(0, 'kept outside the schemas')");
    let path = dir.path().join(&name);
    let flip = format!(
        "python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, \"rb\").read()); \
         b[len(b) * 9 // 10] ^= 0x40; open(p, \"wb\").write(b)' {}",
        path.display()
    );

    let r = run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["restore", "--no-kubernetes", &name, "--mode", "clean"])
        .args(["--jobs", "2", "--pre-restore-hook", &flip]))
    .failed(1);

    r.says("its schemas cannot be set aside while it loads")
        .says("verified: every checksum matches")
        .says("data: streamed into 2 connections")
        .says("the previous state is in safety backup");
    let safety = archives(dir.path())
        .into_iter()
        .find(|n| n.contains("-safety-"))
        .expect("the safety backup was taken");
    run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args(["restore", "--no-kubernetes", &safety, "--no-safety-backup"]))
    .ok();
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "10",
        "the state before the restore is back"
    );
}
