//! What a database needs from the server around it, which `pg_dump` leaves out: the database's own state
//! ([`DatabaseState`]), the roles its objects belong to or are granted to (with their attributes,
//! memberships and settings, never their passwords), and who owns each object. A backup records it as the
//! archive entry `database/globals.json`; a restore into a server that lacks them creates the missing
//! roles (leaving existing ones alone) and the database as it was, and `--owner-map` uses the owners.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use tracing::{info, instrument, warn};

use super::PgTarget;
use super::database_state::{DatabaseState, quote_literal, setting_value};
use super::snapshot::quote_ident;
use super::target::redact;
use crate::error::{Error, Result};

/// The archive entry that holds the [`Globals`] (absent in archives of format version 1).
pub const GLOBALS_ENTRY: &str = "database/globals.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Globals {
    pub database: DatabaseState,
    pub roles: Vec<Role>,
    /// Every object of the database owned by a role other than the bootstrap superuser.
    #[serde(default)]
    pub owners: Vec<Owned>,
}

/// A role as `CREATE ROLE` makes it; the password is never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    pub login: bool,
    pub inherit: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub superuser: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// `ALTER ROLE … SET` in every database (`name=value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<Membership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub role: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// An object and its owner: `kind` and `identity` as `pg_identify_object` gives them (`table`,
/// `public.orders`), so that `ALTER <kind> <identity> OWNER TO …` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owned {
    pub kind: String,
    pub identity: String,
    pub owner: String,
}

/// What a [`Role`] is read from, for a role `r` of `pg_roles` ([`role_from`] reads it).
macro_rules! role_columns {
    () => {
        "r.rolname::text, r.rolcanlogin, r.rolinherit, r.rolcreatedb, r.rolcreaterole, r.rolsuper, \
         r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, \
         (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0), \
         ARRAY(SELECT pg_get_userbyid(m.roleid) || CASE WHEN m.admin_option THEN ':admin' ELSE ':' END \
               FROM pg_auth_members m WHERE m.member = r.oid ORDER BY 1)"
    };
}

/// A [`Role`] from a row of [`role_columns`].
fn role_from(r: &sqlx::postgres::PgRow) -> Role {
    Role {
        name: r.get(0),
        login: r.get(1),
        inherit: r.get(2),
        createdb: r.get(3),
        createrole: r.get(4),
        superuser: r.get(5),
        replication: r.get(6),
        bypassrls: r.get(7),
        connection_limit: r.get(8),
        valid_until: r.get(9),
        settings: r.get::<Option<Vec<String>>, _>(10).unwrap_or_default(),
        member_of: r
            .get::<Vec<String>, _>(11)
            .into_iter()
            .filter_map(|m| {
                let (role, admin) = m.rsplit_once(':')?;
                Some(Membership {
                    role: role.to_owned(),
                    admin: admin == "admin",
                })
            })
            .collect(),
    }
}

/// The roles the current database uses: owners of its objects and of itself, grantees of privileges on
/// them, roles with settings in it; then, through memberships either way, the roles those belong to and
/// the roles that belong to them (a login role that only inherits its privileges). The bootstrap
/// superuser and the predefined `pg_*` roles exist on every server and are left out (memberships in them
/// are kept).
const USED_ROLES: &str = concat!(
    "\
WITH RECURSIVE db AS (SELECT oid, datdba, datacl FROM pg_database WHERE datname = current_database()), \
seed(oid) AS ( \
  SELECT refobjid FROM pg_shdepend, db WHERE refclassid = 'pg_authid'::regclass AND dbid IN (db.oid, 0) \
    AND (dbid = db.oid OR (classid = 'pg_database'::regclass AND objid = db.oid)) \
  UNION SELECT datdba FROM db \
  UNION SELECT a.grantee FROM db, aclexplode(db.datacl) a \
  UNION SELECT s.setrole FROM pg_db_role_setting s, db WHERE s.setdatabase = db.oid), \
used(oid) AS ( \
  SELECT oid FROM seed WHERE oid <> 0 \
  UNION SELECT CASE WHEN m.member = u.oid THEN m.roleid ELSE m.member END \
    FROM pg_auth_members m JOIN used u ON u.oid IN (m.member, m.roleid) \
    WHERE u.oid <> 10 AND NOT pg_get_userbyid(u.oid) LIKE 'pg\\_%') \
SELECT ",
    role_columns!(),
    " \
FROM pg_roles r WHERE r.oid IN (SELECT oid FROM used) AND r.oid <> 10 AND r.rolname NOT LIKE 'pg\\_%' \
ORDER BY 1"
);

/// Owners recorded per object by the server. Left out: what follows the owner of another object (a
/// sequence owned by a column, which `ALTER SEQUENCE … OWNER` refuses) and what has no `ALTER … OWNER`
/// (extensions, default privileges).
const OWNERS: &str = "\
SELECT o.type, o.identity, pg_get_userbyid(d.refobjid) \
FROM pg_shdepend d, pg_identify_object(d.classid, d.objid, d.objsubid) o \
WHERE d.deptype = 'o' AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
  AND o.type NOT IN ('extension', 'default acl') \
  AND NOT (d.classid = 'pg_class'::regclass AND EXISTS (SELECT 1 FROM pg_depend x \
    WHERE x.classid = 'pg_class'::regclass AND x.objid = d.objid AND x.deptype IN ('a', 'i') \
      AND x.refclassid = 'pg_class'::regclass AND x.refobjid <> d.objid)) \
ORDER BY 1, 2";

impl Globals {
    /// The roles a restore with `ownership` needs: the owners it keeps (none with `--no-owner`, the
    /// mapped ones replaced), and unless `--no-privileges` every other role the backup uses.
    pub fn needed_roles(&self, ownership: &super::restore::Ownership) -> Vec<Role> {
        let mapped = |name: &str| ownership.owner_map.iter().any(|(old, _)| old == name);
        let owner_kept = |name: &str| !mapped(name) && !ownership.no_owner;
        let owners: BTreeSet<&str> = self
            .owners
            .iter()
            .map(|o| o.owner.as_str())
            .chain([self.database.owner.as_str()])
            .collect();
        self.roles
            .iter()
            .filter(|r| {
                if ownership.no_privileges {
                    owners.contains(r.name.as_str()) && owner_kept(&r.name)
                } else {
                    !mapped(&r.name)
                }
            })
            .cloned()
            .collect()
    }

    /// The database's recorded state as a restore with `ownership` creates it (the owner mapped or the
    /// restoring role's, no privileges with `--no-privileges`).
    pub fn database_for(&self, ownership: &super::restore::Ownership) -> DatabaseState {
        let mut state = self.database.clone();
        if let Some((_, new)) = ownership
            .owner_map
            .iter()
            .find(|(old, _)| *old == state.owner)
        {
            state.owner = new.clone();
        } else if ownership.no_owner {
            state.owner.clear();
        }
        if ownership.no_privileges {
            state.privileges = None;
        }
        state
    }

    /// The globals of the database `conn` is connected to (readable by any role: no password, no
    /// superuser needed).
    #[instrument(skip_all)]
    pub async fn read(conn: &mut PgConnection, target: &PgTarget) -> Result<Globals> {
        let database = DatabaseState::read(conn, target, &target.dbname).await?;
        let rows = sqlx::query(USED_ROLES)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| target.error("cannot read the roles the database uses", &e))?;
        let roles = rows.iter().map(role_from).collect();
        let owners = sqlx::query(OWNERS)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| target.error("cannot read who owns the database's objects", &e))?
            .into_iter()
            .map(|r| Owned {
                kind: r.get(0),
                identity: r.get(1),
                owner: r.get(2),
            })
            .collect();
        Ok(Globals {
            database,
            roles,
            owners,
        })
    }
}

/// What [`ensure_roles`] did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolesReport {
    pub created: Vec<String>,
    /// Roles created with a password from the passwords directory.
    pub with_password: Vec<String>,
    /// Existing roles whose attributes differ from the backup's: left alone, each with how it differs.
    pub left_alone: Vec<String>,
    /// What could not be given to a created role (an attribute the restoring role may not grant, a
    /// membership it may not hand out), each naming the role.
    pub not_given: Vec<String>,
}

/// Creates the roles of `roles` that do not exist on the server, with their attributes (those the
/// restoring role may set), settings and memberships; an existing role is left as it is. A created role
/// gets a password only from `passwords` (a directory with one file per role name, as a mounted Secret
/// is), never from the backup.
#[instrument(skip_all, fields(roles = roles.len()))]
pub async fn ensure_roles(
    conn: &mut PgConnection,
    target: &PgTarget,
    roles: &[Role],
    passwords: Option<&Path>,
) -> Result<RolesReport> {
    let err = |what: &str, e: &sqlx::Error| target.error(what, e);
    let existing: BTreeMap<String, Role> = {
        let names: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
        sqlx::query(concat!(
            "SELECT ",
            role_columns!(),
            " FROM pg_roles r WHERE r.rolname = ANY($1)"
        ))
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err("cannot look up roles", &e))?
        .iter()
        .map(|r| {
            let role = role_from(r);
            (role.name.clone(), role)
        })
        .collect()
    };
    let mut report = RolesReport::default();
    for r in roles {
        if let Some(have) = existing.get(&r.name) {
            let differs = attribute_differences(r, have);
            if !differs.is_empty() {
                report
                    .left_alone
                    .push(format!("{}: {}", r.name, differs.join(", ")));
            }
        }
    }
    let missing: Vec<&Role> = roles
        .iter()
        .filter(|r| !existing.contains_key(&r.name))
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    let (me, superuser, createrole): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| err("cannot read the restoring role's attributes", &e))?;
    let names = || {
        missing
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !superuser && !createrole {
        return Err(Error::Restore {
            step: "roles".into(),
            problem: format!(
                "the backup's objects belong to or are granted to roles this server does not have ({}), \
                 and the restoring role {me} may not create roles",
                names()
            ),
            hint: "create those roles first (or restore as a role with CREATEROLE), or restore with \
                   --no-owner --no-privileges (every object then belongs to the restoring role); nothing \
                   was changed"
                .into(),
        });
    }
    for r in &missing {
        let password = match passwords {
            Some(dir) => read_password(dir, &r.name)?,
            None => None,
        };
        let (sql, withheld) = create_role_sql(r, superuser, password.as_deref());
        for attribute in withheld {
            report.not_given.push(format!(
                "{}: {attribute} (only a superuser may grant it)",
                r.name
            ));
        }
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .map_err(|e| err(&format!("cannot create role {}", r.name), &e))?;
        for item in &r.settings {
            let Some((name, value)) = item.split_once('=') else {
                continue;
            };
            let set = format!(
                "ALTER ROLE {} SET {} = {}",
                quote_ident(&r.name),
                quote_ident(name),
                setting_value(name, value)
            );
            if let Err(e) = sqlx::query(&set).execute(&mut *conn).await {
                report
                    .not_given
                    .push(format!("{}: setting {name} ({})", r.name, redact(&e)));
            }
        }
        if password.is_some() {
            report.with_password.push(r.name.clone());
        }
        report.created.push(r.name.clone());
    }
    // Memberships once every role exists; only for the roles created here (existing ones are left alone).
    let created: BTreeSet<&str> = report.created.iter().map(String::as_str).collect();
    for r in missing.iter().filter(|r| created.contains(r.name.as_str())) {
        for m in &r.member_of {
            let grant = format!(
                "GRANT {} TO {}{}",
                quote_ident(&m.role),
                quote_ident(&r.name),
                if m.admin { " WITH ADMIN OPTION" } else { "" }
            );
            if let Err(e) = sqlx::query(&grant).execute(&mut *conn).await {
                report.not_given.push(format!(
                    "{}: membership in {} ({})",
                    r.name,
                    m.role,
                    redact(&e)
                ));
            }
        }
    }
    info!(created = %report.created.join(", "), "created the roles the backup needs");
    for n in &report.not_given {
        warn!(role = %n, "a created role lacks what the backup's role had");
    }
    Ok(report)
}

/// The attributes in which `have` (on the server) differs from `want` (the backup's).
fn attribute_differences(want: &Role, have: &Role) -> Vec<String> {
    let flags = |r: &Role| {
        [
            ("LOGIN", r.login),
            ("INHERIT", r.inherit),
            ("CREATEDB", r.createdb),
            ("CREATEROLE", r.createrole),
            ("SUPERUSER", r.superuser),
            ("REPLICATION", r.replication),
            ("BYPASSRLS", r.bypassrls),
        ]
    };
    let mut out: Vec<String> = flags(want)
        .into_iter()
        .zip(flags(have))
        .filter(|((_, w), (_, h))| w != h)
        .map(|((name, w), _)| {
            format!(
                "the backup's role has {}{name}, this server's has not",
                if w { "" } else { "NO" }
            )
        })
        .collect();
    if want.connection_limit != have.connection_limit {
        out.push(format!(
            "connection limit {} in the backup, {} here",
            want.connection_limit, have.connection_limit
        ));
    }
    out
}

/// `CREATE ROLE` for `r`, and the attributes left out because only a superuser may grant them.
fn create_role_sql(
    r: &Role,
    superuser: bool,
    password: Option<&str>,
) -> (String, Vec<&'static str>) {
    let flag = |on: bool, name: &str| format!(" {}{name}", if on { "" } else { "NO" });
    let mut sql = format!("CREATE ROLE {} WITH", quote_ident(&r.name));
    for (on, name) in [
        (r.login, "LOGIN"),
        (r.inherit, "INHERIT"),
        (r.createdb, "CREATEDB"),
        (r.createrole, "CREATEROLE"),
    ] {
        sql.push_str(&flag(on, name));
    }
    let mut withheld = Vec::new();
    for (on, name) in [
        (r.superuser, "SUPERUSER"),
        (r.replication, "REPLICATION"),
        (r.bypassrls, "BYPASSRLS"),
    ] {
        if on && !superuser {
            withheld.push(name);
        } else if on {
            sql.push_str(&flag(true, name));
        }
    }
    sql.push_str(&format!(" CONNECTION LIMIT {}", r.connection_limit));
    if let Some(v) = &r.valid_until {
        sql.push_str(&format!(" VALID UNTIL {}", quote_literal(v)));
    }
    if let Some(p) = password {
        // Hashed here (as psql's \password does): the password itself never reaches the server's logs.
        sql.push_str(&format!(
            " PASSWORD {}",
            quote_literal(&super::scram::verifier(p))
        ));
    }
    (sql, withheld)
}

/// The password for `role` from `dir/<role>` (a mounted Secret's key), without a trailing newline;
/// `None` when there is no such file.
fn read_password(dir: &Path, role: &str) -> Result<Option<String>> {
    if role.contains('/') || role.starts_with('.') {
        return Ok(None);
    }
    let path = dir.join(role);
    match std::fs::read_to_string(&path) {
        Ok(p) => Ok(Some(p.trim_end_matches(['\n', '\r']).to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::storage(
            "cannot read the password of a role to create",
            &path,
            e,
        )),
    }
}

/// `ALTER … OWNER TO` for every recorded object, to the owner `map` gives its owner (`old` → `new`) or
/// else its own: run in a database restored without pg_restore's ownership (`--no-owner`), so that an
/// owner the server lacks is never needed.
pub fn owner_statements(owners: &[Owned], map: &[(String, String)]) -> Vec<(String, String)> {
    // Schemas first: a new owner needs CREATE on the schema of what it is given.
    let mut owners: Vec<&Owned> = owners.iter().collect();
    owners.sort_by_key(|o| o.kind != "schema");
    owners
        .into_iter()
        .map(|o| {
            let new = map
                .iter()
                .find(|(old, _)| *old == o.owner)
                .map_or(&o.owner, |(_, new)| new);
            let kind = o.kind.to_uppercase();
            // pg_identify_object's kinds that are not ALTER's keywords.
            let kind = match kind.as_str() {
                "STATISTICS OBJECT" => "STATISTICS".to_owned(),
                "FOREIGN-DATA WRAPPER" => "FOREIGN DATA WRAPPER".to_owned(),
                _ => kind,
            };
            (
                format!("{} {}", o.kind, o.identity),
                format!("ALTER {kind} {} OWNER TO {}", o.identity, quote_ident(new)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            login: true,
            inherit: true,
            createdb: false,
            createrole: false,
            superuser: false,
            replication: true,
            bypassrls: false,
            connection_limit: 5,
            valid_until: None,
            settings: Vec::new(),
            member_of: Vec::new(),
        }
    }

    #[test]
    fn a_role_is_created_with_what_the_restoring_role_may_grant_and_the_rest_is_named() {
        let (sql, withheld) = create_role_sql(&role("app"), false, None);
        assert_eq!(
            sql,
            "CREATE ROLE \"app\" WITH LOGIN INHERIT NOCREATEDB NOCREATEROLE CONNECTION LIMIT 5"
        );
        assert_eq!(withheld, vec!["REPLICATION"]);
        let (sql, withheld) = create_role_sql(&role("app"), true, Some("pw"));
        assert!(sql.contains(" REPLICATION CONNECTION LIMIT 5 PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(!sql.contains("'pw'"), "only the verifier is sent");
        assert!(withheld.is_empty());
    }

    #[test]
    fn an_existing_role_that_differs_is_described_not_changed() {
        let mut have = role("app");
        have.login = false;
        have.connection_limit = -1;
        assert_eq!(
            attribute_differences(&role("app"), &have),
            vec![
                "the backup's role has LOGIN, this server's has not".to_owned(),
                "connection limit 5 in the backup, -1 here".to_owned()
            ]
        );
    }

    #[test]
    fn the_owner_map_gives_the_mapped_owners_objects_to_the_new_role_and_the_rest_to_their_own() {
        let owners = vec![
            Owned {
                kind: "table".into(),
                identity: "app.orders".into(),
                owner: "app_owner".into(),
            },
            Owned {
                kind: "function".into(),
                identity: "app.total(integer)".into(),
                owner: "app_owner".into(),
            },
            Owned {
                kind: "schema".into(),
                identity: "other".into(),
                owner: "someone".into(),
            },
        ];
        let sql: Vec<String> =
            owner_statements(&owners, &[("app_owner".into(), "tenant_1".into())])
                .into_iter()
                .map(|(_, s)| s)
                .collect();
        assert_eq!(
            sql,
            vec![
                "ALTER SCHEMA other OWNER TO \"someone\"",
                "ALTER TABLE app.orders OWNER TO \"tenant_1\"",
                "ALTER FUNCTION app.total(integer) OWNER TO \"tenant_1\""
            ]
        );
    }
}
