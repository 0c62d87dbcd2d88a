//! What a database carries besides its contents: owner, encoding and locale, connection limit,
//! `ALTER DATABASE … SET` settings (also per role), `GRANT … ON DATABASE` privileges and its comment.
//! `pg_dump` leaves all of this out. It is read from a database ([`DatabaseState::read`]): the live one,
//! which swap mode gives to the database that replaces it, or the backed-up one, recorded in the archive
//! (`database/globals.json`) so that a restore into a server where the database does not exist yet
//! creates it as it was.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use tracing::{info, warn};

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

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `name=value` as stored in `pg_db_role_setting`, as the right-hand side of `SET name = …`.
pub fn setting_value(name: &str, value: &str) -> String {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseState {
    pub owner: String,
    pub encoding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctype: Option<String>,
    /// Set when the database uses the ICU locale provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icu_locale: Option<String>,
    /// -1: no limit.
    pub connection_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<Setting>,
    /// `None`: the default privileges (PUBLIC may connect and create temporary tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<Grant>>,
}

/// `ALTER DATABASE … SET name = value`, or `ALTER ROLE role IN DATABASE … SET` with a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub name: String,
    pub value: String,
}

/// `GRANT privilege ON DATABASE … TO grantee` (`None`: PUBLIC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grantee: Option<String>,
    pub privilege: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grantable: bool,
}

impl DatabaseState {
    /// The state of database `db` now.
    pub async fn read(
        conn: &mut PgConnection,
        target: &PgTarget,
        db: &str,
    ) -> Result<DatabaseState> {
        let err =
            |what: &str, e: &sqlx::Error| target.error(&format!("cannot read {what} of {db}"), e);
        // As JSON: the locale columns differ between server versions (`daticulocale` became `datlocale`).
        let row = sqlx::query(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), to_jsonb(d)::text, \
                    datconnlimit, datacl IS NOT NULL, shobj_description(oid, 'pg_database') \
             FROM pg_database d WHERE datname = $1",
        )
        .bind(db)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| err("the owner, locale and settings", &e))?;
        let json: String = row.get(2);
        let d: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let field = |k: &str| {
            d.get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let icu_locale = if field("datlocprovider").as_deref() == Some("i") {
            field("daticulocale").or_else(|| field("datlocale"))
        } else {
            None
        };
        let has_acl: bool = row.get(4);
        let mut state = DatabaseState {
            owner: row.get(0),
            encoding: row.get(1),
            collate: field("datcollate"),
            ctype: field("datctype"),
            icu_locale,
            connection_limit: row.get(3),
            comment: row.get(5),
            settings: Vec::new(),
            privileges: None,
        };

        let settings = sqlx::query(
            "SELECT pg_get_userbyid(NULLIF(s.setrole, 0)), c.item \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase, \
                  unnest(s.setconfig) WITH ORDINALITY AS c(item, n) \
             WHERE d.datname = $1 ORDER BY 1 NULLS FIRST, c.n",
        )
        .bind(db)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("the settings", &e))?;
        for r in settings {
            let (role, item): (Option<String>, String) = (r.get(0), r.get(1));
            if let Some((name, value)) = item.split_once('=') {
                state.settings.push(Setting {
                    role,
                    name: name.into(),
                    value: value.into(),
                });
            }
        }

        if has_acl {
            let grants = sqlx::query(
                "SELECT pg_get_userbyid(NULLIF(a.grantee, 0)), a.privilege_type, a.is_grantable \
                 FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 AND a.grantee <> d.datdba \
                 ORDER BY 1 NULLS FIRST, 2",
            )
            .bind(db)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| err("the privileges", &e))?;
            state.privileges = Some(
                grants
                    .into_iter()
                    .map(|g| Grant {
                        grantee: g.get(0),
                        privilege: g.get(1),
                        grantable: g.get(2),
                    })
                    .collect(),
            );
        }
        Ok(state)
    }

    /// `CREATE DATABASE name` with this owner, encoding and locale (from `template0`, so they may differ
    /// from the server's defaults).
    /// An empty owner: the restoring role.
    pub fn create_sql(&self, name: &str) -> String {
        let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
        if !self.owner.is_empty() {
            sql.push_str(&format!(" OWNER {}", quote_ident(&self.owner)));
        }
        sql.push_str(&format!(
            " TEMPLATE template0 ENCODING {}",
            quote_literal(&self.encoding)
        ));
        for (value, option) in [(&self.collate, "LC_COLLATE"), (&self.ctype, "LC_CTYPE")] {
            if let Some(v) = value {
                sql.push_str(&format!(" {option} {}", quote_literal(v)));
            }
        }
        if let Some(icu) = &self.icu_locale {
            sql.push_str(&format!(
                " LOCALE_PROVIDER icu ICU_LOCALE {}",
                quote_literal(icu)
            ));
        }
        sql
    }

    /// The statements that give database `to` this state's settings, privileges, comment and connection
    /// limit, each with what it carries as an error may name it: never a value (a setting such as
    /// PostgREST's `app.jwt_secret` can hold a secret).
    pub fn statements(&self, to: &str) -> Vec<(String, String)> {
        let to_q = quote_ident(to);
        let mut out = Vec::new();
        if self.connection_limit >= 0 {
            out.push((
                "connection limit".into(),
                format!(
                    "ALTER DATABASE {to_q} CONNECTION LIMIT {}",
                    self.connection_limit
                ),
            ));
        }
        if let Some(c) = &self.comment {
            out.push((
                "comment".into(),
                format!("COMMENT ON DATABASE {to_q} IS {}", quote_literal(c)),
            ));
        }
        for s in &self.settings {
            let set = format!(
                "SET {} = {}",
                quote_ident(&s.name),
                setting_value(&s.name, &s.value)
            );
            out.push(match &s.role {
                None => (
                    format!("setting {}", s.name),
                    format!("ALTER DATABASE {to_q} {set}"),
                ),
                Some(role) => (
                    format!("setting {} of role {role}", s.name),
                    format!("ALTER ROLE {} IN DATABASE {to_q} {set}", quote_ident(role)),
                ),
            });
        }
        if let Some(grants) = &self.privileges {
            // The new database starts with the defaults (PUBLIC may connect and create temporary
            // tables): take them away, then grant exactly what the original grants.
            out.push((
                "privileges of PUBLIC".into(),
                format!("REVOKE ALL ON DATABASE {to_q} FROM PUBLIC"),
            ));
            for g in grants {
                let to_whom = g
                    .grantee
                    .as_deref()
                    .map_or_else(|| "PUBLIC".to_owned(), quote_ident);
                out.push((
                    format!("privilege {} of {to_whom}", g.privilege),
                    format!(
                        "GRANT {} ON DATABASE {to_q} TO {to_whom}{}",
                        g.privilege,
                        if g.grantable {
                            " WITH GRANT OPTION"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        out
    }

    /// This state for a server without some of its roles: their settings and privileges are left out
    /// (each named in the log), and an owner that does not exist gives way to the restoring role.
    pub async fn for_roles_present(
        &self,
        conn: &mut PgConnection,
        target: &PgTarget,
    ) -> Result<DatabaseState> {
        let mut names: Vec<String> = self
            .settings
            .iter()
            .filter_map(|s| s.role.clone())
            .collect();
        names.extend(
            self.privileges
                .iter()
                .flatten()
                .filter_map(|g| g.grantee.clone()),
        );
        names.push(self.owner.clone());
        let present: Vec<String> =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
                .bind(&names)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| target.error("cannot look up roles", &e))?;
        let has = |r: &Option<String>| r.as_ref().is_none_or(|r| present.contains(r));
        let mut out = self.clone();
        if !out.owner.is_empty() && !present.contains(&out.owner) {
            warn!(owner = %out.owner, "the database's owner does not exist on this server: the restoring role owns it");
            out.owner.clear();
        }
        out.settings.retain(|s| {
            has(&s.role) || {
                warn!(setting = %s.name, role = ?s.role, "role missing on this server: its database setting is left out");
                false
            }
        });
        if let Some(grants) = out.privileges.as_mut() {
            grants.retain(|g| {
                has(&g.grantee) || {
                    warn!(privilege = %g.privilege, grantee = ?g.grantee, "role missing on this server: its privilege on the database is left out");
                    false
                }
            });
        }
        Ok(out)
    }

    /// Gives database `to` this state (see [`DatabaseState::statements`]); `from` names where it came
    /// from in errors and the log.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        target: &PgTarget,
        from: &str,
        to: &str,
    ) -> Result<()> {
        let statements = self.statements(to);
        for (what, sql) in &statements {
            sqlx::query(sql).execute(&mut *conn).await.map_err(|e| {
                target.error(&format!("cannot give the {what} of {from} to {to}"), &e)
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
}

/// Gives `to` the database-level state `from` has now.
pub async fn copy(conn: &mut PgConnection, target: &PgTarget, from: &str, to: &str) -> Result<()> {
    DatabaseState::read(conn, target, from)
        .await?
        .apply(conn, target, from, to)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_quote_each_item_and_others_the_whole_value() {
        assert_eq!(
            setting_value("search_path", "\"$user\", app"),
            "'$user', 'app'"
        );
        assert_eq!(setting_value("work_mem", "12MB"), "'12MB'");
        assert_eq!(setting_value("application_name", "it's"), "'it''s'");
    }

    #[test]
    fn a_recorded_state_creates_the_database_as_it_was_and_names_no_value_in_what_it_sets() {
        let state = DatabaseState {
            owner: "app owner".into(),
            encoding: "UTF8".into(),
            collate: Some("C".into()),
            ctype: Some("C".into()),
            icu_locale: None,
            connection_limit: 20,
            comment: Some("it's ours".into()),
            settings: vec![Setting {
                role: Some("api".into()),
                name: "app.jwt_secret".into(),
                value: "s3cr3t".into(),
            }],
            privileges: Some(vec![Grant {
                grantee: Some("api".into()),
                privilege: "CONNECT".into(),
                grantable: false,
            }]),
        };
        assert_eq!(
            state.create_sql("shop"),
            "CREATE DATABASE \"shop\" OWNER \"app owner\" TEMPLATE template0 ENCODING 'UTF8' \
             LC_COLLATE 'C' LC_CTYPE 'C'"
        );
        let statements = state.statements("shop");
        let sql: Vec<&str> = statements.iter().map(|(_, s)| s.as_str()).collect();
        assert!(sql.contains(&"ALTER DATABASE \"shop\" CONNECTION LIMIT 20"));
        assert!(sql.contains(&"REVOKE ALL ON DATABASE \"shop\" FROM PUBLIC"));
        assert!(sql.contains(&"GRANT CONNECT ON DATABASE \"shop\" TO \"api\""));
        assert!(
            statements.iter().all(|(what, _)| !what.contains("s3cr3t")),
            "what an error names never holds a value"
        );
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<DatabaseState>(&json).unwrap(), state);
    }
}
