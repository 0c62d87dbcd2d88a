//! Which database to talk to: from `DATABASE_URL` or the standard `PG*` variables. One place builds both
//! the `sqlx` connection and the environment for `pg_dump`, so they always agree. The password only ever
//! reaches the child's environment, never its argv, a log line or an error.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    pub dbname: String,
    pub sslmode: Option<String>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({self})")
    }
}

/// `postgres://user@host:port/db`, never with the password.
impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl PgTarget {
    /// `url` wins when given; otherwise `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    /// `PGSSLMODE` from `env` (defaults: localhost, 5432, postgres, database = user).
    pub fn resolve(
        url: Option<&SecretString>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        if let Some(url) = url {
            return Self::from_url(url.expose_secret());
        }
        let user = env("PGUSER").unwrap_or_else(|| "postgres".into());
        let port = match env("PGPORT") {
            Some(p) => p
                .parse()
                .map_err(|_| Error::config(format!("PGPORT={p:?} is not a port number")))?,
            None => 5432,
        };
        Ok(PgTarget {
            host: env("PGHOST").unwrap_or_else(|| "localhost".into()),
            port,
            dbname: env("PGDATABASE").unwrap_or_else(|| user.clone()),
            user,
            password: env("PGPASSWORD").map(SecretString::from),
            sslmode: env("PGSSLMODE"),
        })
    }

    fn from_url(raw: &str) -> Result<Self> {
        // Never echo the URL itself: it may carry the password.
        let url = url::Url::parse(raw)
            .map_err(|e| Error::config(format!("DATABASE_URL is not a valid URL ({e}); expected postgres://user:password@host:5432/dbname")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::config(format!(
                "DATABASE_URL has scheme {:?}; expected postgres://user:password@host:5432/dbname",
                url.scheme()
            )));
        }
        let decode = |s: &str| percent_decode(s);
        let user = if url.username().is_empty() {
            "postgres".to_owned()
        } else {
            decode(url.username())
        };
        let dbname = url.path().trim_start_matches('/');
        let mut sslmode = None;
        for (k, v) in url.query_pairs() {
            if k == "sslmode" {
                sslmode = Some(v.into_owned());
            }
        }
        Ok(PgTarget {
            host: url
                .host_str()
                .unwrap_or("localhost")
                .trim_matches(['[', ']'])
                .to_owned(),
            port: url.port().unwrap_or(5432),
            dbname: if dbname.is_empty() {
                user.clone()
            } else {
                decode(dbname)
            },
            user,
            password: url.password().map(|p| SecretString::from(decode(p))),
            sslmode,
        })
    }

    pub fn with_database(&self, dbname: &str) -> Self {
        PgTarget {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    pub fn connect_options(&self) -> Result<PgConnectOptions> {
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.dbname)
            .application_name("eternia-backup")
            // sqlx would log each statement (and slow ones at WARN) with its text: `ALTER DATABASE … SET`
            // carries setting values, `CREATE ROLE … PASSWORD` a verifier. The steps log what they do.
            .disable_statement_logging();
        if let Some(p) = &self.password {
            o = o.password(p.expose_secret());
        }
        if let Some(mode) = &self.sslmode {
            let mode = PgSslMode::from_str(mode).map_err(|_| {
                Error::config(format!(
                    "PGSSLMODE/sslmode {mode:?} is not a valid SSL mode"
                ))
            })?;
            o = o.ssl_mode(mode);
        }
        Ok(o)
    }

    /// Environment for `pg_dump`/`pg_restore`/`psql` children.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
            ("PGAPPNAME", "eternia-backup".to_owned()),
        ];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.expose_secret().to_owned()));
        }
        if let Some(m) = &self.sslmode {
            env.push(("PGSSLMODE", m.clone()));
        }
        env
    }

    /// Maps a connection or query failure to an error that names the cause and what to check.
    pub fn error(&self, what: &str, e: &sqlx::Error) -> Error {
        let code = e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.into_owned()));
        let hint = match code.as_deref() {
            Some("28P01") | Some("28000") => {
                "the database credentials (user and password in DATABASE_URL / PGPASSWORD, Secret backup-credentials)"
            }
            Some("3D000") => {
                "the database name (PGDATABASE or the path of DATABASE_URL): it does not exist on this server"
            }
            Some("42501") => {
                "the database user's privileges: it must be able to read every table (e.g. the owner or pg_read_all_data)"
            }
            _ => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                    "connectivity: is PostgreSQL running and reachable at this host and port (PGHOST/PGPORT, Service name, NetworkPolicy)?"
                }
                sqlx::Error::Tls(_) => "TLS settings (sslmode) and the server certificate",
                _ => "the database server logs",
            },
        };
        Error::Database {
            target: self.to_string(),
            problem: format!("{what}: {}", redact(e)),
            hint: hint.into(),
        }
    }
}

/// sqlx errors never contain the password, but keep only the message to be sure of what is printed.
/// The server's message alone: no statement (it may hold a value or a password's verifier).
pub fn redact(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => d.message().to_owned(),
        None => e.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_split_and_its_password_never_displayed() {
        let url =
            SecretString::from("postgres://app:s%40cret@db.example:6543/eternia?sslmode=require");
        let t = PgTarget::resolve(Some(&url), |_| None).unwrap();
        assert_eq!(t.to_string(), "postgres://app@db.example:6543/eternia");
        assert_eq!(t.password.as_ref().unwrap().expose_secret(), "s@cret");
        assert_eq!(t.sslmode.as_deref(), Some("require"));
        assert!(!format!("{t:?}").contains("cret"));
    }

    #[test]
    fn pg_variables_are_used_without_a_url() {
        let t = PgTarget::resolve(None, |k| match k {
            "PGHOST" => Some("127.0.0.1".into()),
            "PGUSER" => Some("backup".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(t.to_string(), "postgres://backup@127.0.0.1:5432/backup");
    }

    #[test]
    fn a_bad_url_is_a_configuration_error_that_does_not_echo_it() {
        let url = SecretString::from("mysql://u:topsecret@h/db");
        let e = PgTarget::resolve(Some(&url), |_| None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("topsecret"));
    }
}
