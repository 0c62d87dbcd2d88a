//! A read-only REPEATABLE READ transaction whose snapshot `pg_dump` imports, so the row counts recorded
//! in the manifest describe exactly the data in the dump.

use sqlx::{Connection, PgConnection, Row};
use tracing::instrument;

use super::target::PgTarget;
use crate::archive::manifest::TableCount;
use crate::error::Result;

pub struct Snapshot {
    conn: PgConnection,
    pub id: String,
    pub database: String,
    pub server_version: String,
}

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Connects with a bounded timeout and a clear error (credentials, database name, connectivity).
pub async fn connect(target: &PgTarget) -> Result<PgConnection> {
    let opts = target.connect_options()?;
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Ok(r) => r.map_err(|e| target.error("cannot connect", &e)),
        Err(_) => Err(target.error("cannot connect", &sqlx::Error::PoolTimedOut)),
    }
}

impl Snapshot {
    #[instrument(skip_all, fields(database = %target))]
    pub async fn open(target: &PgTarget) -> Result<Snapshot> {
        let mut conn = connect(target).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| target.error("cannot start a snapshot transaction", &e))?;
        let row = sqlx::query(
            "SELECT pg_export_snapshot(), current_database(), current_setting('server_version')",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| target.error("cannot export a snapshot", &e))?;
        Ok(Snapshot {
            id: row.get(0),
            database: row.get(1),
            server_version: row.get(2),
            conn,
        })
    }

    /// Exact row counts of every user table, in the exported snapshot.
    #[instrument(skip_all)]
    pub async fn count_rows(&mut self, target: &PgTarget) -> Result<Vec<TableCount>> {
        count_rows(&mut self.conn, target).await
    }

    /// Ends the transaction (only once `pg_dump` has finished importing the snapshot).
    pub async fn close(mut self) {
        let _ = sqlx::query("COMMIT").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// Row counts of every ordinary and partitioned table outside the system schemas.
pub async fn count_rows(conn: &mut PgConnection, target: &PgTarget) -> Result<Vec<TableCount>> {
    let tables = sqlx::query(&format!(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {USER_TABLES} ORDER BY 1, 2"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| target.error("cannot list tables", &e))?;
    let mut out = Vec::with_capacity(tables.len());
    for row in tables {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let rows = count_table(conn, target, &schema, &table).await?;
        out.push(TableCount {
            schema,
            table,
            rows,
        });
    }
    Ok(out)
}

/// The tables whose rows the manifest records (`c` is `pg_class`, `n` its `pg_namespace`): ordinary and
/// partitioned tables outside the system schemas.
pub const USER_TABLES: &str = "c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/// `SELECT count(*)` of one table (its partitions and inheritance children included).
pub async fn count_table(
    conn: &mut PgConnection,
    target: &PgTarget,
    schema: &str,
    table: &str,
) -> Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(schema),
        quote_ident(table)
    );
    sqlx::query_scalar(&sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| target.error(&format!("cannot count rows of {schema}.{table}"), &e))
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
