//! Which of an archive's databases a restore or a drill loads, and into which database of the server.

use crate::archive::manifest::{DatabaseInfo, Manifest};
use crate::error::{Error, Result};
use crate::postgres::PgTarget;

/// `--database NAME`, `--all-databases`, or neither (the archive's first database).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ArchivedDatabases {
    /// The archive's first (or only) database, into the configured database.
    #[default]
    First,
    /// The archived database of this name, into the server's database of the same name (or the
    /// configured one when `--target-database` names it).
    Named { name: String, into_configured: bool },
    /// Every archived database, each into the server's database of its name.
    All,
}

/// One archived database and where it goes.
#[derive(Debug, Clone)]
pub struct Planned {
    pub db: DatabaseInfo,
    pub target: PgTarget,
}

/// The databases to load, the first one first (pure: the manifest, the choice, the configured target).
pub fn plan(
    archive: &str,
    manifest: &Manifest,
    choice: &ArchivedDatabases,
    target: &PgTarget,
) -> Result<Vec<Planned>> {
    let to = |db: &DatabaseInfo, t: PgTarget| Planned {
        db: db.clone(),
        target: t,
    };
    Ok(match choice {
        ArchivedDatabases::First => vec![to(&manifest.database, target.clone())],
        ArchivedDatabases::Named {
            name,
            into_configured,
        } => {
            let Some(db) = manifest.find_database(name) else {
                let held: Vec<&str> = manifest.databases().map(|d| d.name.as_str()).collect();
                return Err(Error::archive(
                    archive,
                    format!(
                        "holds no database {name:?} (it holds {}): name one of them with --database, \
                         or use --all-databases; nothing was changed",
                        held.join(", ")
                    ),
                ));
            };
            let into = if *into_configured {
                target.clone()
            } else {
                target.with_database(name)
            };
            vec![to(db, into)]
        }
        ArchivedDatabases::All => manifest
            .databases()
            .map(|d| to(d, target.with_database(&d.name)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::manifest::further_database_dir;

    fn manifest() -> Manifest {
        let db = |name: &str, dir: Option<String>| DatabaseInfo {
            name: name.into(),
            server_version: "15.8".into(),
            pg_dump_version: None,
            dump_format: "custom".into(),
            dump_bytes: 1,
            chunks: 1,
            tables: Vec::new(),
            dir,
        };
        Manifest {
            format_version: 3,
            tool_version: "0".into(),
            name: "eternia-backup-20261201-020000.tar.gz".into(),
            created: "2026-12-01T02:00:00Z".parse().unwrap(),
            finished: None,
            compression: crate::archive::Compression::Gzip,
            encrypted: false,
            database: db("app", None),
            more_databases: vec![db("analytics", Some(further_database_dir(1)))],
            kubernetes: None,
            entries: Vec::new(),
            safety: false,
            objects_only: false,
        }
    }

    fn target() -> PgTarget {
        PgTarget::resolve(None, |k| {
            (k == "PGDATABASE").then(|| "app_restored".to_owned())
        })
        .unwrap()
    }

    fn names(p: &[Planned]) -> Vec<(&str, &str)> {
        p.iter()
            .map(|p| (p.db.name.as_str(), p.target.dbname.as_str()))
            .collect()
    }

    #[test]
    fn by_default_the_first_database_goes_into_the_configured_one() {
        let p = plan("a", &manifest(), &ArchivedDatabases::First, &target()).unwrap();
        assert_eq!(names(&p), [("app", "app_restored")]);
    }

    #[test]
    fn a_named_database_goes_into_its_own_name_unless_a_target_database_is_given() {
        let named = |into_configured| ArchivedDatabases::Named {
            name: "analytics".into(),
            into_configured,
        };
        let p = plan("a", &manifest(), &named(false), &target()).unwrap();
        assert_eq!(names(&p), [("analytics", "analytics")]);
        assert_eq!(p[0].db.dir(), "databases/1");
        let p = plan("a", &manifest(), &named(true), &target()).unwrap();
        assert_eq!(names(&p), [("analytics", "app_restored")]);
    }

    #[test]
    fn all_databases_go_each_into_its_own_name() {
        let p = plan("a", &manifest(), &ArchivedDatabases::All, &target()).unwrap();
        assert_eq!(names(&p), [("app", "app"), ("analytics", "analytics")]);
    }

    #[test]
    fn a_database_the_archive_lacks_is_refused_naming_those_it_holds() {
        let e = plan(
            "a",
            &manifest(),
            &ArchivedDatabases::Named {
                name: "billing".into(),
                into_configured: false,
            },
            &target(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"billing\"") && e.contains("app, analytics"),
            "{e}"
        );
    }
}
