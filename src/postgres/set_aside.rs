//! Clean mode's way to load the live database while the archive is still being verified: its schemas
//! are renamed aside in one transaction (nothing is copied or dropped), the dump is loaded beside them,
//! and then either the set-aside schemas are dropped (the restore succeeded) or the restored ones are
//! dropped and the set-aside ones renamed back (it failed: the database is as it was).
//!
//! Only schemas can be set aside. A database holding what lives outside them and a dump would create
//! again (an extension, an event trigger, a publication, a subscription, a large object, a cast, a
//! language, a foreign-data wrapper or server, an access method, a transform) has an [`obstacle`]:
//! clean mode then verifies the whole archive first and empties the database (see
//! [`super::restore::empty_database`]).

use sqlx::{Connection, PgConnection};
use tracing::{info, instrument, warn};

use super::restore::{
    USER_SCHEMAS, fresh_public_sql, outside_objects, server_version, user_schemas,
};
use super::snapshot::{connect, quote_ident};
use super::target::PgTarget;
use crate::error::{Error, Result};

/// The first thing that keeps the schemas of the database `conn` is connected to from being set aside,
/// in words (`None`: nothing does). A query that fails (a catalog the role may not read) is one too.
pub async fn obstacle(conn: &mut PgConnection) -> Option<String> {
    let sql = format!(
        "SELECT what FROM ( \
           SELECT 'extension ' || extname FROM pg_extension WHERE oid >= 16384 \
           UNION ALL SELECT 'event trigger ' || evtname FROM pg_event_trigger \
           UNION ALL SELECT 'publication ' || pubname FROM pg_publication \
           UNION ALL SELECT 'subscription ' || subname FROM pg_subscription \
             WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           UNION ALL SELECT 'large objects' WHERE EXISTS (SELECT FROM pg_largeobject_metadata) \
           UNION ALL SELECT 'cast ' || castsource::regtype || ' AS ' || casttarget::regtype FROM pg_cast WHERE oid >= 16384 \
           UNION ALL SELECT 'language ' || lanname FROM pg_language WHERE oid >= 16384 \
           UNION ALL SELECT 'foreign-data wrapper ' || fdwname FROM pg_foreign_data_wrapper WHERE oid >= 16384 \
           UNION ALL SELECT 'foreign server ' || srvname FROM pg_foreign_server \
           UNION ALL SELECT 'access method ' || amname FROM pg_am WHERE oid >= 16384 \
           UNION ALL SELECT 'transform' FROM pg_transform WHERE oid >= 16384 \
           UNION ALL SELECT 'no CREATE privilege on the database (needed to rename schemas)' \
             WHERE NOT has_database_privilege(current_database(), 'CREATE') \
           UNION ALL SELECT 'schema ' || nspname || ', which the restoring role does not own' \
             FROM pg_namespace WHERE {USER_SCHEMAS} AND NOT pg_has_role(nspowner, 'USAGE') \
         ) o(what) LIMIT 1"
    );
    match sqlx::query_scalar::<_, String>(&sql)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(found) => found,
        Err(e) => Some(format!(
            "the catalogs could not be read ({})",
            super::target::redact(&e)
        )),
    }
}

/// A database whose schemas were renamed aside: put them back ([`Aside::put_back`]) or drop them
/// ([`Aside::drop`]).
#[derive(Debug, Clone)]
pub struct Aside {
    target: PgTarget,
    /// (the schema's name, its name while set aside)
    renamed: Vec<(String, String)>,
}

impl Aside {
    /// Renames every schema of `target` aside and creates an empty `public`, in one transaction.
    /// `None` (nothing changed, the reason logged): the database has an [`obstacle`], or a statement
    /// failed (it is rolled back).
    #[instrument(skip_all, fields(database = %target.dbname))]
    pub async fn set(target: &PgTarget) -> Result<Option<Aside>> {
        let mut conn = connect(target).await?;
        let set = async {
            let mut tx = conn.begin().await?;
            sqlx::query("SET LOCAL lock_timeout = '60s'")
                .execute(&mut *tx)
                .await?;
            if let Some(why) = obstacle(&mut tx).await {
                return Ok(Err(why));
            }
            let schemas = user_schemas(&mut tx).await?;
            let token = format!(
                "{:08x}",
                (std::process::id() as u128
                    ^ std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos())
                    & 0xffff_ffff
            );
            let renamed: Vec<(String, String)> = schemas
                .into_iter()
                .enumerate()
                .map(|(i, s)| (s, format!("eternia_aside_{token}_{i}")))
                .collect();
            let mut sql = String::new();
            for (was, aside) in &renamed {
                sql.push_str(&format!(
                    "ALTER SCHEMA {} RENAME TO {};",
                    quote_ident(was),
                    quote_ident(aside)
                ));
            }
            let version = server_version(&mut tx).await?;
            sql.push_str(&fresh_public_sql(version));
            sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(renamed))
        }
        .await;
        let _ = conn.close().await;
        match set {
            Ok(Ok(renamed)) => {
                info!(
                    schemas = renamed.len(),
                    aside = %renamed.iter().map(|(w, a)| format!("{w} → {a}")).collect::<Vec<_>>().join(", "),
                    "the database's schemas are set aside while it loads: a failure puts them back"
                );
                Ok(Some(Aside {
                    target: target.clone(),
                    renamed,
                }))
            }
            Ok(Err(why)) => {
                info!(%why, "the schemas cannot be set aside: the archive is verified first, then the database emptied");
                Ok(None)
            }
            Err(e) => {
                warn!(error = %super::target::redact(&e), "the schemas could not be set aside: the archive is verified first, then the database emptied");
                Ok(None)
            }
        }
    }

    /// The statements that give the set-aside schemas their names back (once the schemas the restore
    /// created are dropped).
    pub fn rename_back_sql(&self) -> String {
        self.renamed
            .iter()
            .map(|(was, aside)| {
                format!(
                    "ALTER SCHEMA {} RENAME TO {};",
                    quote_ident(aside),
                    quote_ident(was)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The set-aside names, for the log and for the way back by hand.
    pub fn names(&self) -> String {
        self.renamed
            .iter()
            .map(|(was, aside)| format!("{aside} (was {was})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The restore succeeded: the set-aside schemas, and everything in them, are dropped.
    #[instrument(skip_all, fields(database = %self.target.dbname))]
    pub async fn drop(self) -> Result<()> {
        let list = self
            .renamed
            .iter()
            .map(|(_, aside)| quote_ident(aside))
            .collect::<Vec<_>>()
            .join(", ");
        let what = format!(
            "the restore is done, but the schemas set aside before it could not be dropped ({}): drop them \
             by hand (DROP SCHEMA {list} CASCADE), or leave them to the next clean restore of the database, \
             which drops them",
            self.names()
        );
        let mut conn = connect(&self.target).await.map_err(|e| Error::Restore {
            step: "drop the schemas set aside".into(),
            problem: format!("{what}: {e}"),
            hint: "the PostgreSQL server's log".into(),
        })?;
        let dropped = async {
            sqlx::query("SET lock_timeout = '60s'")
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {list} CASCADE"))
                .execute(&mut conn)
                .await
        }
        .await;
        dropped.map_err(|e| self.target.error(&what, &e))?;
        let _ = conn.close().await;
        info!(
            schemas = self.renamed.len(),
            "the schemas set aside are dropped"
        );
        Ok(())
    }

    /// The restore failed: what it created is dropped (its schemas, and what it made outside them) and
    /// the set-aside schemas get their names back, in one transaction. The other sessions on the
    /// database (the restore's own connections, ending) are ended first.
    #[instrument(skip_all, fields(database = %self.target.dbname))]
    pub async fn put_back(self) -> Result<()> {
        let mut maint = super::restore::maintenance(&self.target).await?;
        super::restore::terminate_sessions(&mut maint, &self.target, &self.target.dbname).await?;
        let _ = maint.close().await;
        let mut conn = connect(&self.target).await?;
        let put = async {
            // Listed before the transaction: the lists are read-only, the changes one transaction.
            let outside = outside_objects(&mut conn).await?;
            let restored: Vec<String> = user_schemas(&mut conn)
                .await?
                .into_iter()
                .filter(|s| !self.renamed.iter().any(|(_, aside)| aside == s))
                .collect();
            let mut sql = String::from("BEGIN; SET LOCAL lock_timeout = '60s';");
            sql.push_str(&outside.drop_sql());
            for s in &restored {
                sql.push_str(&format!("DROP SCHEMA {} CASCADE;", quote_ident(s)));
            }
            sql.push_str(&self.rename_back_sql());
            sql.push_str("COMMIT;");
            sqlx::raw_sql(&sql).execute(&mut conn).await.map(|_| ())
        }
        .await;
        let _ = conn.close().await;
        put.map_err(|e| {
            self.target.error(
                &format!(
                    "the schemas set aside could not be put back ({}): drop the schemas the restore created, \
                     then run {}",
                    self.names(),
                    self.rename_back_sql()
                ),
                &e,
            )
        })?;
        info!(
            schemas = self.renamed.len(),
            "the schemas set aside are put back: the database is as it was"
        );
        Ok(())
    }
}
