//! Restore anywhere: into a freshly initialised PostgreSQL (a private `initdb` with only its bootstrap
//! superuser) where neither the database nor its roles exist; as a role that is not a superuser, with
//! and without the ownership options; versions that cannot meet; clean mode over what lives outside the
//! schemas (large objects, publications, event triggers).

use std::path::Path;
use std::process::Command;

use crate::helpers::*;
use crate::restore::restore_cmd;

const PW: &str = "bootstrap-pw";

/// The original: a database owned by an application role, its schema and objects owned by that role,
/// a read-write group role granted on them and a login role in that group, database-level settings,
/// privileges and a comment, a large object, a function. Role names are unique to the test.
struct Original {
    db: TestDb,
    owner: String,
    rw: String,
    app: String,
}

impl Original {
    fn create() -> Original {
        let db = TestDb::create();
        let u = db.name.clone();
        let (owner, rw, app) = (format!("{u}_owner"), format!("{u}_rw"), format!("{u}_app"));
        psql(
            "postgres",
            &format!(
                "CREATE ROLE {owner} NOLOGIN CONNECTION LIMIT 7;
                 CREATE ROLE {rw} NOLOGIN;
                 CREATE ROLE {app} LOGIN IN ROLE {rw};
                 ALTER ROLE {app} SET statement_timeout = '30s';
                 ALTER DATABASE {u} OWNER TO {owner};
                 ALTER DATABASE {u} SET work_mem = '12MB';
                 ALTER ROLE {app} IN DATABASE {u} SET search_path = app, public;
                 REVOKE ALL ON DATABASE {u} FROM PUBLIC;
                 GRANT CONNECT ON DATABASE {u} TO {app};
                 COMMENT ON DATABASE {u} IS 'the shop';"
            ),
        );
        db.sql(&format!(
            "SET ROLE {owner};
             CREATE SCHEMA app;
             CREATE TABLE app.orders (id bigint PRIMARY KEY, total numeric, doc oid);
             INSERT INTO app.orders SELECT g, g * 2.5, NULL FROM generate_series(1, 200) g;
             UPDATE app.orders SET doc = lo_from_bytea(0, 'the contract') WHERE id = 1;
             CREATE FUNCTION app.total_of(bigint) RETURNS numeric LANGUAGE sql AS 'SELECT total FROM app.orders WHERE id = $1';
             GRANT USAGE ON SCHEMA app TO {rw};
             GRANT SELECT, INSERT ON app.orders TO {rw};
             RESET ROLE;"
        ));
        Original { db, owner, rw, app }
    }
}

impl Drop for Original {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db.name
            ))
            .output();
        for r in [&self.app, &self.rw, &self.owner] {
            drop_role(r);
        }
    }
}

fn fresh_server() -> Option<PrivatePg> {
    let pg = PrivatePg::start(PW);
    if pg.is_none() {
        eprintln!(
            "SKIPPED: cannot start a private PostgreSQL cluster (needs root and the postgres user)"
        );
    }
    pg
}

fn url(pg: &PrivatePg, user: &str, password: &str, db: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", pg.port)
}

fn restore_into(url: &str, dir: &Path) -> Command {
    let mut c = bin();
    c.env("DATABASE_URL", url).env("BACKUP_DIR", dir).args([
        "restore",
        "--no-kubernetes",
        "latest",
    ]);
    c
}

#[test]
fn restore_latest_into_a_fresh_server_creates_the_roles_and_the_database_as_they_were() {
    let Some(pg) = fresh_server() else { return };
    let orig = Original::create();
    let dir = tempdir();
    run(&mut backup_cmd(&orig.db, dir.path())).ok();
    // One of the roles exists there already, with other attributes: it is left as it is.
    pg.psql(PW, &format!("CREATE ROLE {} LOGIN CREATEDB", orig.rw));
    let passwords = tempdir();
    std::fs::write(passwords.path().join(&orig.app), "app-secret\n").unwrap();
    let target = url(&pg, "postgres", PW, &orig.db.name);

    let r =
        run(restore_into(&target, dir.path()).env("RESTORE_ROLE_PASSWORDS_DIR", passwords.path()))
            .ok();

    r.says(&format!("roles created: {}, {}", orig.app, orig.owner));
    r.says(&format!(
        "roles created without a password (set one, or give it in --role-passwords-dir): {}",
        orig.owner
    ));
    r.says(&format!(
        "existing role left as it is: {}: the backup's role has NOLOGIN, this server's has not",
        orig.rw
    ));
    r.says("database created as the backup recorded it");
    assert!(
        !r.stdout.contains("safety backup:"),
        "nothing to keep on a server without the database"
    );
    assert_eq!(
        schema(&target),
        schema(&orig.db.url()),
        "same schema, owners and grants"
    );
    let db = &orig.db.name;
    assert_eq!(
        pg.psql_in(PW, db, "SELECT count(*), sum(total) FROM app.orders"),
        "200|50250.0"
    );
    assert_eq!(
        pg.psql_in(
            PW,
            db,
            "SELECT convert_from(lo_get(doc), 'UTF8') FROM app.orders WHERE id = 1"
        ),
        "the contract"
    );
    // The database as it was: owner, locale, settings, privileges, comment.
    let database = "SELECT pg_get_userbyid(datdba), datconnlimit, array_to_string(datacl, ','), \
                    shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()";
    assert_eq!(
        pg.psql_in(PW, db, database),
        orig.db.sql(database),
        "owner, connection limit, privileges and comment"
    );
    let settings = "SELECT coalesce(pg_get_userbyid(nullif(setrole, 0)), '-'), array_to_string(setconfig, ',') \
                    FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
                    WHERE d.datname = current_database() ORDER BY 1";
    assert_eq!(pg.psql_in(PW, db, settings), orig.db.sql(settings));
    // The roles as they were (no password from the backup): attributes, membership, their own settings.
    let role = |name: &str| {
        format!(
            "SELECT rolcanlogin, rolconnlimit, array_to_string(ARRAY(SELECT pg_get_userbyid(roleid) \
             FROM pg_auth_members WHERE member = r.oid), ','), \
             (SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = 0) \
             FROM pg_roles r WHERE rolname = '{name}'"
        )
    };
    assert_eq!(
        pg.psql(PW, &role(&orig.owner)),
        orig.db.sql(&role(&orig.owner))
    );
    assert_eq!(pg.psql(PW, &role(&orig.app)), orig.db.sql(&role(&orig.app)));
    assert_eq!(
        pg.psql(
            PW,
            &format!(
                "SELECT rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = '{}'",
                orig.rw
            )
        ),
        "t|t",
        "the existing role was not changed"
    );
    // The application's login works with the password from the Secret, and its privileges with it.
    let out = stdout_of(
        Command::new("psql")
            .args([
                "-qAt",
                "--dbname",
                &url(&pg, &orig.app, "app-secret", db),
                "-c",
            ])
            .arg("SHOW search_path; SELECT count(*) FROM orders"),
    );
    assert_eq!(out.trim(), "app, public\n200");

    // A retry (what CI does after a timeout) restores the same archive over the restored database.
    let again = run(&mut restore_into(&target, dir.path())).ok();
    again.says("safety backup: eternia-backup-safety-");
    assert!(!again.stdout.contains("roles created"), "{}", again.stdout);
    assert_eq!(pg.psql_in(PW, db, "SELECT count(*) FROM app.orders"), "200");
}

/// A restoring role like a managed server's administrator: may create databases, may not create roles,
/// is no superuser; member of `tenant`, an existing role it may give objects to.
fn restorer(pg: &PrivatePg, tenant: &str) -> String {
    pg.psql(
        PW,
        &format!(
            "CREATE ROLE restorer LOGIN CREATEDB PASSWORD 'restorer-pw';
             CREATE ROLE {tenant} NOLOGIN;
             GRANT {tenant} TO restorer;"
        ),
    );
    "restorer".into()
}

#[test]
fn a_non_superuser_restore_names_the_missing_roles_and_the_options_then_restores_with_them() {
    let Some(pg) = fresh_server() else { return };
    let orig = Original::create();
    let dir = tempdir();
    run(&mut backup_cmd(&orig.db, dir.path())).ok();
    let user = restorer(&pg, "tenant");
    let db = &orig.db.name;
    let target = url(&pg, &user, "restorer-pw", db);
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'");

    // Without options: the roles cannot be created; nothing is changed.
    let refused = run(&mut restore_into(&target, dir.path())).failed(1);
    refused.says(&format!(
        "roles this server does not have ({}, {}, {})",
        orig.app, orig.owner, orig.rw
    ));
    refused.says("may not create roles");
    refused.says("--no-owner --no-privileges");
    assert_eq!(pg.psql(PW, &exists), "0", "nothing was changed");

    // Without creating roles, pg_restore stops at the first owner it cannot set, and the error says
    // which statement and which option gets past it.
    let stuck = run(restore_into(&target, dir.path()).arg("--no-create-roles")).failed(1);
    stuck.says(&format!(
        "`ALTER SCHEMA app OWNER TO {}` failed",
        orig.owner
    ));
    stuck.says("--owner-map OLD=NEW");
    stuck.says("did not exist before this restore, and is dropped again");
    assert_eq!(pg.psql(PW, &exists), "0", "the database it created is gone");

    // --owner-map gives the owner's objects (and the database) to a role the restorer may use.
    let mapped = run(restore_into(&target, dir.path()).args([
        "--owner-map",
        &format!("{}=tenant", orig.owner),
        "--no-privileges",
    ]))
    .ok();
    mapped.says("objects given to a new owner (--owner-map): ");
    let owners = "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'orders' \
                  UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app' \
                  UNION SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'total_of' \
                  UNION SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata \
                  UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()";
    assert_eq!(pg.psql_in(PW, db, owners), "tenant");
    assert_eq!(pg.psql_in(PW, db, "SELECT count(*) FROM app.orders"), "200");
    pg.psql(PW, &format!("DROP DATABASE {db}"));

    // --no-owner --no-privileges: everything belongs to the restoring role.
    run(restore_into(&target, dir.path()).args(["--no-owner", "--no-privileges"])).ok();
    assert_eq!(pg.psql_in(PW, db, owners), user);
    assert_eq!(
        pg.psql_in(
            PW,
            db,
            "SELECT convert_from(lo_get(doc), 'UTF8') FROM app.orders WHERE id = 1"
        ),
        "the contract"
    );
}

#[test]
fn a_backup_of_a_newer_server_is_refused_before_anything_changes_naming_both_versions() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    // Only one PostgreSQL version is installed here: the sidecar says the backup came from version 99,
    // as a backup of a newer server would.
    let sidecar = files(dir.path())
        .into_iter()
        .find(|f| f.ends_with(".manifest.json"))
        .expect("a sidecar");
    let path = dir.path().join(sidecar);
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let was = original["manifest"]["database"]["server_version"]
        .as_str()
        .unwrap()
        .to_owned();
    let claim = |field: &str| {
        let mut v = original.clone();
        v["manifest"]["database"][field] = "99.1".into();
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    db.sql("DELETE FROM customers");

    claim("server_version");
    let r = run(restore_cmd(&db, dir.path()).arg("latest")).failed(1);
    r.says("the backup is of a PostgreSQL 99.1 server");
    r.says(&format!("runs {was}"));
    r.says("restore into a PostgreSQL 99 server (or newer); nothing was changed");

    claim("pg_dump_version");
    let r = run(restore_cmd(&db, dir.path()).arg("latest")).failed(1);
    r.says("the dump was written by pg_dump 99.1, and pg_restore 15.");
    r.says("run the restore with the PostgreSQL 99 client tools or newer");

    assert_eq!(db.sql("SELECT count(*) FROM customers"), "0", "not touched");
    assert_eq!(archives(dir.path()).len(), 1, "no safety backup either");
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_before_anything_is_written() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let tools = tempdir();
    let old = wrapper(
        tools.path(),
        "pg_dump",
        "[[ $1 == --version ]] && { echo 'pg_dump (PostgreSQL) 11.22'; exit 0; }; exec pg_dump \"$@\"",
    );

    let r = run(backup_cmd(&db, dir.path()).env("PG_DUMP_BIN", &old)).failed(1);

    r.says("is pg_dump 11.22, older than the PostgreSQL");
    r.says("install the PostgreSQL 15 client tools (or newer)");
    assert!(
        files(dir.path())
            .iter()
            .all(|f| !f.contains("eternia-backup-")),
        "nothing written"
    );
}

#[test]
fn a_backup_records_the_pg_dump_version_and_the_globals_in_a_format_2_archive() {
    let orig = Original::create();
    let dir = tempdir();
    run(&mut backup_cmd(&orig.db, dir.path())).ok();
    let name = archives(dir.path()).pop().unwrap();
    let sidecar: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let m = &sidecar["manifest"];
    assert_eq!(m["format_version"], 3);
    assert!(
        m["database"]["pg_dump_version"]
            .as_str()
            .unwrap()
            .starts_with("15.")
    );
    assert!(
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "database/globals.json"),
        "{m}"
    );
}

#[test]
fn a_clean_restore_replaces_large_objects_publications_and_event_triggers() {
    let db = TestDb::with_sample_data();
    let u = &db.name;
    db.sql(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, body oid);
         INSERT INTO docs VALUES (1, lo_from_bytea(0, 'first'));
         CREATE PUBLICATION {u}_pub FOR TABLE customers;
         CREATE FUNCTION note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
         CREATE EVENT TRIGGER {u}_ddl ON ddl_command_end EXECUTE FUNCTION note_ddl();"
    ));
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    db.sql("INSERT INTO docs VALUES (2, lo_from_bytea(0, 'second')); DELETE FROM customers WHERE id > 5");

    run(restore_cmd(&db, dir.path()).args(["latest", "--no-safety-backup"])).ok();

    assert_eq!(
        db.sql(
            "SELECT string_agg(convert_from(lo_get(oid), 'UTF8'), ',') FROM pg_largeobject_metadata"
        ),
        "first",
        "exactly the backed-up large objects"
    );
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "300");
    assert_eq!(
        db.sql("SELECT pubname FROM pg_publication"),
        format!("{u}_pub")
    );
    assert_eq!(
        db.sql("SELECT evtname FROM pg_event_trigger"),
        format!("{u}_ddl")
    );
}
