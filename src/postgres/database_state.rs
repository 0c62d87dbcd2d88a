//! What a database carries besides its contents: owner, encoding and locale, connection limit,
//! `ALTER DATABASE … SET` settings (also per role), `GRANT … ON DATABASE` privileges and its comment.
//! `pg_dump` leaves all of this out, so a database restored into a new one (swap mode) would lose it:
//! it is read from the live database and given to the new one.

use sqlx::{PgConnection, Row};
use tracing::info;

use super::PgTarget;
use super::snapshot::quote_ident;
use crate::error::Result;

/// Settings whose value is a list of items, each quoted on its own (as `pg_dumpall` does).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
];

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `name=value` as stored in `pg_db_role_setting`, as the right-hand side of `SET name = …`.
fn setting_value(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name) {
        value
            .split(',')
            .map(|item| quote_literal(item.trim().trim_matches('"')))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        quote_literal(value)
    }
}

/// The statements that give database `to` the database-level state `from` has now, each with what it
/// carries over as an error may name it: never a value (a setting such as PostgREST's `app.jwt_secret`
/// can hold a secret).
pub async fn statements_to_copy(
    conn: &mut PgConnection,
    target: &PgTarget,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String)>> {
    let err =
        |what: &str, e: &sqlx::Error| target.error(&format!("cannot read {what} of {from}"), e);
    let to_q = quote_ident(to);
    let mut out = Vec::new();

    let row = sqlx::query(
        "SELECT datconnlimit, datacl IS NOT NULL, shobj_description(oid, 'pg_database') \
         FROM pg_database WHERE datname = $1",
    )
    .bind(from)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| err("the settings", &e))?;
    let (limit, has_acl, comment): (i32, bool, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    if limit >= 0 {
        out.push((
            "connection limit".into(),
            format!("ALTER DATABASE {to_q} CONNECTION LIMIT {limit}"),
        ));
    }
    if let Some(c) = comment {
        out.push((
            "comment".into(),
            format!("COMMENT ON DATABASE {to_q} IS {}", quote_literal(&c)),
        ));
    }

    let settings = sqlx::query(
        "SELECT COALESCE(pg_get_userbyid(NULLIF(s.setrole, 0)), ''), c.item \
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, \
              unnest(s.setconfig) WITH ORDINALITY AS c(item, n) \
         WHERE d.datname = $1 ORDER BY 1, c.n",
    )
    .bind(from)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err("the settings", &e))?;
    for r in settings {
        let (role, item): (String, String) = (r.get(0), r.get(1));
        let Some((name, value)) = item.split_once('=') else {
            continue;
        };
        let set = format!("SET {} = {}", quote_ident(name), setting_value(name, value));
        out.push(if role.is_empty() {
            (
                format!("setting {name}"),
                format!("ALTER DATABASE {to_q} {set}"),
            )
        } else {
            (
                format!("setting {name} of role {role}"),
                format!("ALTER ROLE {} IN DATABASE {to_q} {set}", quote_ident(&role)),
            )
        });
    }

    if has_acl {
        // The new database starts with the defaults (PUBLIC may connect and create temporary tables):
        // take them away, then grant exactly what the live one grants.
        out.push((
            "privileges of PUBLIC".into(),
            format!("REVOKE ALL ON DATABASE {to_q} FROM PUBLIC"),
        ));
        let grants = sqlx::query(
            "SELECT COALESCE(pg_get_userbyid(NULLIF(a.grantee, 0)), ''), a.privilege_type, a.is_grantable \
             FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 AND a.grantee <> d.datdba \
             ORDER BY 1, 2",
        )
        .bind(from)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("the privileges", &e))?;
        for g in grants {
            let (grantee, privilege, grantable): (String, String, bool) =
                (g.get(0), g.get(1), g.get(2));
            let to_whom = if grantee.is_empty() {
                "PUBLIC".to_owned()
            } else {
                quote_ident(&grantee)
            };
            out.push((
                format!("privilege {privilege} of {to_whom}"),
                format!(
                    "GRANT {privilege} ON DATABASE {to_q} TO {to_whom}{}",
                    if grantable { " WITH GRANT OPTION" } else { "" }
                ),
            ));
        }
    }
    Ok(out)
}

/// Gives `to` the database-level state of `from` (see [`statements_to_copy`]).
pub async fn copy(conn: &mut PgConnection, target: &PgTarget, from: &str, to: &str) -> Result<()> {
    let statements = statements_to_copy(conn, target, from, to).await?;
    for (what, sql) in &statements {
        sqlx::query(sql).execute(&mut *conn).await.map_err(|e| {
            target.error(
                &format!("cannot carry the {what} of {from} over to {to}"),
                &e,
            )
        })?;
    }
    info!(
        from,
        to,
        statements = statements.len(),
        "database-level settings, privileges and comment carried over"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::setting_value;

    #[test]
    fn list_settings_quote_each_item_and_others_the_whole_value() {
        assert_eq!(
            setting_value("search_path", "\"$user\", app"),
            "'$user', 'app'"
        );
        assert_eq!(setting_value("work_mem", "12MB"), "'12MB'");
        assert_eq!(setting_value("application_name", "it's"), "'it''s'");
    }
}
