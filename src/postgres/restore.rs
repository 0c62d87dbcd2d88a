//! Streams the dump chunks of a verified archive into `pg_restore`, and the database operations around
//! it: terminating sessions, scratch databases, renames, row-count checks against the manifest.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};
use tracing::{info, instrument, warn};

use super::database_state::DatabaseState;
use super::snapshot::{USER_TABLES, connect, count_table, quote_ident};
use super::target::PgTarget;
use crate::archive::manifest::{DatabaseInfo, Manifest, TableCount};
use crate::archive::reader::walk;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pg_restore: PathBuf,
    pub ownership: Ownership,
    /// Connections the streamed load uses (see [`super::stream_load`]), and `pg_restore -j` of its
    /// post-data; 1: one streamed `pg_restore`.
    pub jobs: u32,
}

/// Who owns what is restored: the backed-up owners by default; for a restoring role that may not act as
/// them (managed PostgreSQL), `--no-owner`/`--role`, or owners renamed (`--owner-map`, applied after
/// loading from the owners the archive records, so the old owners need not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub no_owner: bool,
    pub no_privileges: bool,
    pub role: Option<String>,
    pub owner_map: Vec<(String, String)>,
}

impl Ownership {
    /// Whether pg_restore leaves ownership out (`--no-owner`, or owners set afterwards by the map).
    pub fn pg_restore_no_owner(&self) -> bool {
        self.no_owner || !self.owner_map.is_empty()
    }
}

const STDERR_TAIL: usize = 16 << 10;

pub(super) fn command(target: &PgTarget, opts: &RestoreOptions) -> Command {
    let mut cmd = Command::new(&opts.pg_restore);
    cmd.args(["--no-password", "--exit-on-error", "--dbname"])
        .arg(&target.dbname);
    if opts.ownership.pg_restore_no_owner() {
        cmd.arg("--no-owner");
    }
    if opts.ownership.no_privileges {
        cmd.arg("--no-privileges");
    }
    if let Some(role) = &opts.ownership.role {
        cmd.arg(format!("--role={role}"));
    }
    cmd.env_remove("PGPASSFILE")
        .envs(target.child_env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Walks the decoded archive (checking every checksum again) and streams the dump of `db` into one
/// `pg_restore`.
#[instrument(skip_all, fields(database = %target, archived = %db.name))]
pub fn pg_restore_from<R: Read>(
    archive_name: &str,
    decoded: R,
    manifest: &Manifest,
    db: &DatabaseInfo,
    target: &PgTarget,
    opts: &RestoreOptions,
) -> Result<u64> {
    let mut child = spawn(command(target, opts).stdin(Stdio::piped()), opts)?;
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let fed = write_dump(archive_name, decoded, manifest, db, &mut stdin);
    drop(stdin);
    // pg_restore's own failure explains a broken pipe while feeding it: report that first.
    finish(child)?;
    fed
}

/// Writes the dump chunks of `db`, in order, to `out` (checking every entry of the archive on the way).
pub fn write_dump<R: Read>(
    archive_name: &str,
    decoded: R,
    manifest: &Manifest,
    db: &DatabaseInfo,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut fed = 0u64;
    walk(archive_name, decoded, manifest, |path, r| {
        if db.chunk_number(path).is_some() {
            fed += io::copy(r, out)?;
        }
        Ok(())
    })?;
    Ok(fed)
}

pub(super) struct Running(
    pub(super) std::process::Child,
    thread::JoinHandle<String>,
    crate::interrupt::Tracked,
);

pub(super) fn spawn(cmd: &mut Command, opts: &RestoreOptions) -> Result<Running> {
    let mut child = cmd.spawn().map_err(|e| Error::Restore {
        step: "start pg_restore".into(),
        problem: format!("cannot run {}: {e}", opts.pg_restore.display()),
        hint: "install the PostgreSQL client tools (pg_restore) or set PG_RESTORE_BIN".into(),
    })?;
    let stderr = child.stderr.take().expect("piped stderr");
    let tracked = crate::interrupt::track(&child);
    Ok(Running(
        child,
        thread::spawn(move || super::stderr_tail(stderr, STDERR_TAIL)),
        tracked,
    ))
}

pub(super) fn finish(Running(mut child, tail, _tracked): Running) -> Result<()> {
    let status = child.wait().map_err(|e| Error::Restore {
        step: "pg_restore".into(),
        problem: e.to_string(),
        hint: "the restore pod's resources".into(),
    })?;
    let stderr = tail.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    // The last lines say what failed; row contents (DETAIL, the values CONTEXT quotes) never leave.
    let mut last: Vec<String> = stderr
        .lines()
        .filter_map(super::without_row_data)
        .rev()
        .take(5)
        .collect();
    last.reverse();
    Err(Error::Restore {
        step: "pg_restore".into(),
        problem: format!("{status}: {}", last.join(" | ")),
        hint: failure_hint(&stderr),
    })
}

/// What to do about a failed pg_restore, from the statement it failed on (`Command was: …`): an owner or
/// grantee the server lacks or the restoring role may not act as names the option that gets past it.
pub fn failure_hint(stderr: &str) -> String {
    let command = stderr
        .lines()
        .rev()
        .filter_map(super::without_row_data)
        .find_map(|l| {
            l.trim()
                .strip_prefix("Command was:")
                .map(|c| c.trim().trim_end_matches(';').to_owned())
        });
    let role_problem = stderr.contains("does not exist") && stderr.contains("role")
        || stderr.contains("must be member of role")
        || stderr.contains("must be able to SET ROLE")
        || stderr.contains("permission denied");
    match command {
        Some(c) if role_problem && c.contains(" OWNER TO ") => format!(
            "`{c}` failed: the owner does not exist on this server or the restoring role may not act as it; \
             create the role (or let the restore create it: drop --no-create-roles), restore with \
             --owner-map OLD=NEW to give its objects to a role you can use, or with --no-owner"
        ),
        Some(c) if role_problem && (c.starts_with("GRANT") || c.starts_with("REVOKE")) => format!(
            "`{c}` failed: the grantee does not exist on this server or the restoring role may not grant \
             it; create the role, or restore with --no-privileges"
        ),
        Some(c) => format!(
            "`{c}` failed; the database server logs say more; a restoring role that is not a superuser \
             may need --no-owner, --no-privileges or --owner-map"
        ),
        None => {
            "the database server logs; the restoring user needs to own (or be superuser over) the \
                 restored objects (or restore with --no-owner / --owner-map)"
                .into()
        }
    }
}

/// Refuses new connections to `db` (`CONNECTION LIMIT 0`) and returns the limit to put back. Superusers
/// are exempt from the limit, which is what lets the restoring role itself in; a restoring role that is
/// not a superuser would lock itself out, so then nothing is changed (`None`) and the log says so.
pub async fn refuse_connections(
    conn: &mut PgConnection,
    target: &PgTarget,
    db: &str,
) -> Result<Option<i32>> {
    let row = sqlx::query(
        "SELECT d.datconnlimit, r.rolsuper FROM pg_database d, pg_roles r \
         WHERE d.datname = $1 AND r.rolname = current_user",
    )
    .bind(db)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| target.error(&format!("cannot read the connection limit of {db}"), &e))?;
    let (limit, superuser): (i32, bool) = (row.get(0), row.get(1));
    if !superuser {
        warn!(
            database = db,
            "new connections stay allowed during the restore: the restoring role is not a superuser, and a \
             connection limit of 0 would lock it out too; stop the application first (scale it to zero)"
        );
        return Ok(None);
    }
    sqlx::query(&format!(
        "ALTER DATABASE {} CONNECTION LIMIT 0",
        quote_ident(db)
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| target.error(&format!("cannot refuse new connections to {db}"), &e))?;
    info!(
        database = db,
        "new connections refused until the restore ends"
    );
    Ok(Some(limit))
}

/// Puts the connection limit of `db` back to what [`refuse_connections`] found.
pub async fn allow_connections(
    conn: &mut PgConnection,
    target: &PgTarget,
    db: &str,
    limit: i32,
) -> Result<()> {
    sqlx::query(&format!(
        "ALTER DATABASE {} CONNECTION LIMIT {limit}",
        quote_ident(db)
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        target.error(
            &format!("cannot allow connections to {db} again (run ALTER DATABASE {db} CONNECTION LIMIT {limit})"),
            &e,
        )
    })?;
    info!(database = db, "connections allowed again");
    Ok(())
}

/// Connection to the maintenance database (`postgres`) of the same server.
pub async fn maintenance(target: &PgTarget) -> Result<PgConnection> {
    connect(&target.with_database("postgres")).await
}

pub async fn database_exists(
    conn: &mut PgConnection,
    target: &PgTarget,
    name: &str,
) -> Result<bool> {
    sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map(|r| r.is_some())
        .map_err(|e| target.error("cannot look up databases", &e))
}

/// Ends every other session on `db` (the application reconnects after the rollout restart).
pub async fn terminate_sessions(
    conn: &mut PgConnection,
    target: &PgTarget,
    db: &str,
) -> Result<u64> {
    let rows = sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(db)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| target.error(&format!("cannot terminate sessions on {db}"), &e))?;
    if !rows.is_empty() {
        info!(
            database = db,
            sessions = rows.len(),
            "terminated other sessions"
        );
    }
    Ok(rows.len() as u64)
}

/// Creates `name`; `like` a database's recorded state, with its owner, encoding and locale (from
/// `template0`, so they may differ from the server's defaults).
pub async fn create_database(
    conn: &mut PgConnection,
    target: &PgTarget,
    name: &str,
    like: Option<&DatabaseState>,
) -> Result<()> {
    let sql = match like {
        Some(state) => state.create_sql(name),
        None => format!("CREATE DATABASE {}", quote_ident(name)),
    };
    sqlx::query(&sql)
        .execute(&mut *conn)
        .await
        .map_err(|e| target.error(&format!("cannot create database {name}"), &e))?;
    Ok(())
}

pub async fn drop_database(conn: &mut PgConnection, target: &PgTarget, name: &str) -> Result<()> {
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .execute(&mut *conn)
    .await
    .map_err(|e| target.error(&format!("cannot drop database {name}"), &e))?;
    Ok(())
}

/// Renames `from` to `to`, ending sessions on `from` first (retried: an application may reconnect).
pub async fn rename_database(
    conn: &mut PgConnection,
    target: &PgTarget,
    from: &str,
    to: &str,
) -> Result<()> {
    let sql = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(from),
        quote_ident(to)
    );
    let mut last = None;
    for _ in 0..5 {
        terminate_sessions(conn, target, from).await?;
        match sqlx::query(&sql).execute(&mut *conn).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                warn!(from, to, error = %e, "rename failed; retrying");
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    }
    Err(target.error(
        &format!("cannot rename database {from} to {to}"),
        &last.expect("an attempt failed"),
    ))
}

/// How the restored tables' row counts were checked against the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowCheck {
    /// Tables whose insert counter equals the manifest's count, with no row deleted.
    pub by_counters: usize,
    /// Tables counted with `SELECT count(*)`.
    pub counted: usize,
    /// How each differing table differs (empty: every table matches the manifest).
    pub differences: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// `SELECT count(*)` of every table: reads every page (a drill wants that).
    Exact,
    /// For tables this restore has just created: PostgreSQL's per-table counters of inserted and deleted
    /// rows first, `SELECT count(*)` for every table whose counters do not show exactly the manifest's
    /// rows. A freshly created table holds what was inserted into it minus what was deleted, so counters
    /// that show the manifest's count with no delete are that count; anything else (a stale or disabled
    /// counter, a session that wrote meanwhile) is counted before anything is reported.
    CountersFirst,
}

/// Compares the row counts in `target` with the manifest.
#[instrument(skip_all, fields(database = %target, counting = ?how))]
pub async fn compare_row_counts(
    target: &PgTarget,
    expected: &[TableCount],
    how: Counting,
) -> Result<RowCheck> {
    let mut conn = connect(target).await?;
    let mut to_count: Vec<&TableCount> = expected.iter().collect();
    if how == Counting::CountersFirst {
        pg_restore_sessions_gone(&mut conn, target).await?;
        let counters = row_counters(&mut conn, target).await?;
        to_count.retain(|want| {
            counters.get(&(want.schema.clone(), want.table.clone())) != Some(&(want.rows, 0))
        });
    }
    let mut check = RowCheck {
        by_counters: expected.len() - to_count.len(),
        ..RowCheck::default()
    };
    // Listing the tables is only needed to tell "missing" from "counted differently".
    let present: HashSet<(String, String)> = if to_count.is_empty() {
        HashSet::new()
    } else {
        user_tables(&mut conn, target).await?
    };
    for want in to_count {
        if !present.contains(&(want.schema.clone(), want.table.clone())) {
            check
                .differences
                .push(format!("{}.{}: missing", want.schema, want.table));
            continue;
        }
        let rows = count_table(&mut conn, target, &want.schema, &want.table).await?;
        check.counted += 1;
        if rows != want.rows {
            check.differences.push(format!(
                "{}.{}: {} rows, the manifest says {}",
                want.schema, want.table, rows, want.rows
            ));
        }
    }
    let _ = conn.close().await;
    Ok(check)
}

async fn user_tables(
    conn: &mut PgConnection,
    target: &PgTarget,
) -> Result<HashSet<(String, String)>> {
    sqlx::query_as(&format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_TABLES}"
    ))
    .fetch_all(&mut *conn)
    .await
    .map(|rows| rows.into_iter().collect())
    .map_err(|e| target.error("cannot list tables", &e))
}

/// A session reports its counters as it ends, before it leaves `pg_stat_activity`; pg_restore's can
/// still be ending when pg_restore has exited. Waits (up to 10 s) until they are gone.
async fn pg_restore_sessions_gone(conn: &mut PgConnection, target: &PgTarget) -> Result<()> {
    for _ in 0..1000 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'pg_restore' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| target.error("cannot list the sessions of the restored database", &e))?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// (inserted, deleted) rows per user table, its partitions and inheritance children included (as
/// `count(*)` includes them), from the cumulative statistics.
async fn row_counters(
    conn: &mut PgConnection,
    target: &PgTarget,
) -> Result<HashMap<(String, String), (i64, i64)>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&format!(
        "WITH RECURSIVE tree(root, rel) AS ( \
           SELECT c.oid, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_TABLES} \
           UNION ALL SELECT t.root, i.inhrelid FROM tree t JOIN pg_inherits i ON i.inhparent = t.rel) \
         SELECT n.nspname::text, c.relname::text, \
           sum(pg_stat_get_tuples_inserted(t.rel))::bigint, sum(pg_stat_get_tuples_deleted(t.rel))::bigint \
         FROM tree t JOIN pg_class c ON c.oid = t.root JOIN pg_namespace n ON n.oid = c.relnamespace \
         GROUP BY 1, 2"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| target.error("cannot read the table statistics", &e))?;
    Ok(rows
        .into_iter()
        .map(|(schema, table, ins, del)| ((schema, table), (ins, del)))
        .collect())
}

/// The schemas a restore replaces: all but the system's (a `WHERE` condition on `pg_namespace`).
pub(super) const USER_SCHEMAS: &str = "nspname NOT IN ('pg_catalog', 'information_schema') \
     AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'";

/// The user schemas of the database `conn` is connected to, by name.
pub(super) async fn user_schemas(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(&format!(
        "SELECT nspname::text FROM pg_namespace WHERE {USER_SCHEMAS} ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await
}

/// `public` as a fresh database of the server's version has it.
pub(super) fn fresh_public_sql(version: i32) -> String {
    let mut sql = String::from("CREATE SCHEMA public;");
    if version >= 150000 {
        sql.push_str("ALTER SCHEMA public OWNER TO pg_database_owner; GRANT USAGE ON SCHEMA public TO PUBLIC;");
    } else {
        sql.push_str("GRANT ALL ON SCHEMA public TO PUBLIC;");
    }
    sql
}

pub(super) async fn server_version(conn: &mut PgConnection) -> sqlx::Result<i32> {
    sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *conn)
        .await
}

/// What lives outside the schemas and pg_dump restores: event triggers (one on sql_drop would fire on
/// the drops of schemas), subscriptions, publications, large objects. Left in place, pg_restore would
/// fail on them.
pub(super) struct Outside {
    triggers: Vec<String>,
    subscriptions: Vec<String>,
    publications: Vec<String>,
}

pub(super) async fn outside_objects(conn: &mut PgConnection) -> sqlx::Result<Outside> {
    let names = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
    Ok(Outside {
        triggers: names("SELECT evtname::text FROM pg_event_trigger ORDER BY 1")
            .fetch_all(&mut *conn)
            .await?,
        // Only a superuser may read them all; a role that cannot has none to drop.
        subscriptions: names(
            "SELECT subname::text FROM pg_subscription \
             WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default(),
        publications: names("SELECT pubname::text FROM pg_publication ORDER BY 1")
            .fetch_all(&mut *conn)
            .await?,
    })
}

impl Outside {
    /// Drops them all, event triggers first. A subscription is detached from its slot first (the slot
    /// belongs to the publisher).
    pub(super) fn drop_sql(&self) -> String {
        let mut sql = String::new();
        for t in &self.triggers {
            sql.push_str(&format!("DROP EVENT TRIGGER {};", quote_ident(t)));
        }
        for sub in &self.subscriptions {
            let q = quote_ident(sub);
            sql.push_str(&format!(
                "ALTER SUBSCRIPTION {q} DISABLE; ALTER SUBSCRIPTION {q} SET (slot_name = NONE); DROP SUBSCRIPTION {q};"
            ));
        }
        for p in &self.publications {
            sql.push_str(&format!("DROP PUBLICATION {};", quote_ident(p)));
        }
        sql.push_str("SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata;");
        sql
    }
}

/// Empties `target` as a freshly created database would be: every user schema (with everything in it)
/// dropped, `public` recreated with the defaults of the server's version. `pg_restore --clean` alone
/// cannot do this: objects that are not in the dump (a table created after the backup) would survive and
/// block dropping their schema.
pub async fn empty_database(target: &PgTarget) -> Result<()> {
    let mut conn = connect(target).await?;
    let schemas = user_schemas(&mut conn)
        .await
        .map_err(|e| target.error("cannot list schemas", &e))?;
    let version = server_version(&mut conn)
        .await
        .map_err(|e| target.error("cannot read the server version", &e))?;
    let outside = outside_objects(&mut conn)
        .await
        .map_err(|e| target.error("cannot list event triggers and publications", &e))?;
    // Fail clearly rather than hang if a session that reconnected holds a lock.
    let mut sql = String::from("BEGIN; SET LOCAL lock_timeout = '60s';");
    sql.push_str(&outside.drop_sql());
    for s in &schemas {
        sql.push_str(&format!("DROP SCHEMA {} CASCADE;", quote_ident(s)));
    }
    sql.push_str(&fresh_public_sql(version));
    sql.push_str("COMMIT;");
    sqlx::raw_sql(&sql)
        .execute(&mut conn)
        .await
        .map_err(|e| target.error("cannot empty the database before the restore", &e))?;
    let _ = conn.close().await;
    info!(
        database = %target.dbname,
        schemas = schemas.len(),
        event_triggers = outside.triggers.len(),
        publications = outside.publications.len(),
        subscriptions = outside.subscriptions.len(),
        "emptied the database for the restore"
    );
    Ok(())
}

/// `<base>_<suffix>` within PostgreSQL's 63-byte identifier limit.
pub fn derived_name(base: &str, suffix: &str) -> String {
    let keep = 63usize.saturating_sub(suffix.len() + 1);
    let mut cut = base.len().min(keep);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{suffix}", &base[..cut])
}

#[cfg(test)]
mod tests {
    use super::derived_name;

    #[test]
    fn derived_names_fit_the_identifier_limit() {
        assert_eq!(
            derived_name("eternia", "pre_restore_20261127_020000"),
            "eternia_pre_restore_20261127_020000"
        );
        let long = "x".repeat(80);
        assert_eq!(derived_name(&long, "drill_1").len(), 63);
    }
}
