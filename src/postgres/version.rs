//! Which PostgreSQL versions meet: the server a backup dumps and the `pg_dump` that dumps it, the dump
//! and the `pg_restore` that reads it, the server that was backed up and the one restored into. Each
//! mismatch that cannot work fails before anything is written, naming both versions and the fix.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The major version of `15.18 (Debian 15.18-0+deb12u1)`, `16beta2`, `9.6.24` (→ 9).
pub fn major(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `pg_dump --version` → `15.18 (Debian 15.18-0+deb12u1)`.
pub fn client_version(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| Error::Config(format!("cannot run {} --version: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    // "pg_dump (PostgreSQL) 15.18 (Debian …)"
    let version = line
        .split_once(") ")
        .map(|(_, v)| v)
        .unwrap_or(line)
        .to_owned();
    if !out.status.success() || major(&version).is_none() {
        return Err(Error::Config(format!(
            "{} --version printed {line:?}, not a PostgreSQL client version",
            bin.display()
        )));
    }
    Ok(version)
}

/// A `pg_dump` older than the server refuses it (and would miss what the newer server has).
pub fn check_dump_client(pg_dump: &str, server: &str, bin: &Path, database: &str) -> Result<()> {
    match (major(pg_dump), major(server)) {
        (Some(client), Some(srv)) if client < srv => Err(Error::Dump {
            database: database.into(),
            status: "not started".into(),
            bytes: 0,
            stderr: format!(
                "{} is pg_dump {pg_dump}, older than the PostgreSQL {server} server it would dump",
                bin.display()
            ),
            hint: format!(
                "install the PostgreSQL {srv} client tools (or newer) and point PG_DUMP_BIN at its pg_dump \
                 (the image ships the newest client its base image offers); nothing was written"
            ),
        }),
        _ => Ok(()),
    }
}

/// Before a restore changes anything: the `pg_restore` must read the dump (written by `pg_dump`), and the
/// server restored into must not be older than the one backed up (a dump uses what its server has).
pub fn check_restore(
    backup_server: &str,
    pg_dump: Option<&str>,
    pg_restore: &str,
    target_server: &str,
) -> Result<()> {
    if let (Some(dumped_by), Some(d), Some(r)) =
        (pg_dump, pg_dump.and_then(major), major(pg_restore))
        && r < d
    {
        return Err(Error::Restore {
            step: "version check".into(),
            problem: format!(
                "the dump was written by pg_dump {dumped_by}, and pg_restore {pg_restore} cannot read a newer \
                 dump"
            ),
            hint: format!(
                "run the restore with the PostgreSQL {d} client tools or newer (PG_RESTORE_BIN, or a newer \
                 eternia-backup image); nothing was changed"
            ),
        });
    }
    if let (Some(b), Some(t)) = (major(backup_server), major(target_server))
        && t < b
    {
        return Err(Error::Restore {
            step: "version check".into(),
            problem: format!(
                "the backup is of a PostgreSQL {backup_server} server, and the server restored into runs \
                 {target_server}: a dump restores into the same major version or a newer one"
            ),
            hint: format!("restore into a PostgreSQL {b} server (or newer); nothing was changed"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_are_read_from_what_servers_and_clients_print() {
        assert_eq!(major("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major("16beta2"), Some(16));
        assert_eq!(major("9.6.24"), Some(9));
        assert_eq!(major("devel"), None);
    }

    #[test]
    fn a_restore_refuses_an_older_client_or_server_naming_both_versions() {
        assert!(check_restore("15.4", Some("15.4"), "15.18", "15.18").is_ok());
        assert!(check_restore("14.9", Some("15.1"), "16.2", "16.2").is_ok());
        let e = check_restore("16.2", Some("16.2"), "16.2", "15.18").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("16.2") && e.contains("15.18"), "{e}");
        assert!(e.contains("restore into a PostgreSQL 16 server"), "{e}");
        let e = check_restore("15.1", Some("17.0"), "15.18", "17.1").unwrap_err();
        assert!(e.to_string().contains("pg_restore 15.18"), "{e}");
        assert!(
            check_restore("15.1", None, "15.18", "15.18").is_ok(),
            "archives that did not record pg_dump's version"
        );
    }

    #[test]
    fn a_backup_refuses_a_pg_dump_older_than_the_server() {
        let e = check_dump_client(
            "14.9",
            "15.18 (Debian)",
            Path::new("/usr/bin/pg_dump"),
            "app",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pg_dump 14.9") && e.contains("15.18"), "{e}");
        assert!(check_dump_client("16.1", "15.18", Path::new("pg_dump"), "app").is_ok());
    }
}
