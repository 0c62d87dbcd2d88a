//! Test scaffolding: a throwaway database per test, a throwaway backup directory, and the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";

fn psql_raw(db: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAt",
            "-c",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs")
}

pub fn psql(db: &str, sql: &str) -> String {
    let out = psql_raw(db, sql);
    assert!(
        out.status.success(),
        "psql failed on {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A uniquely named database, dropped when the test ends.
pub struct TestDb {
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    pub fn create() -> TestDb {
        let name = unique("eb_test");
        psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    /// Two tables with a few hundred rows, one with jsonb.
    pub fn with_sample_data() -> TestDb {
        let db = TestDb::create();
        db.sql(
            "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, doc jsonb);
             INSERT INTO customers (name, doc) SELECT 'customer ' || g, jsonb_build_object('n', g) FROM generate_series(1, 300) g;
             CREATE SCHEMA billing;
             CREATE TABLE billing.\"Invoices\" (id bigint PRIMARY KEY, amount numeric);
             INSERT INTO billing.\"Invoices\" SELECT g, g * 1.5 FROM generate_series(1, 120) g;",
        );
        db
    }

    pub fn url(&self) -> String {
        format!("{PG}/{}", self.name)
    }

    pub fn sql(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }

    /// Adds roughly `mib` MiB of incompressible rows.
    pub fn add_random_mib(&self, mib: u32) {
        self.sql(&format!(
            "CREATE TABLE IF NOT EXISTS noise (id serial, blob text);
             INSERT INTO noise (blob) SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, {}) g, generate_series(1, 32) i GROUP BY g;",
            mib * 1024
        ));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql_raw(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Drops a role a test created (best effort: a role still owning something stays, with a unique name).
pub fn drop_role(role: &str) {
    let _ = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("DROP ROLE IF EXISTS {role}"))
        .output();
}

/// The binary with a clean environment: only what the test sets reaches it.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eternia-backup"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("RUST_LOG", "info");
    c
}

/// `eternia-backup backup --no-kubernetes` of `db` into `dir`.
pub fn backup_cmd(db: &TestDb, dir: &Path) -> Command {
    let mut c = bin();
    c.env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir)
        .args(["backup", "--no-kubernetes"]);
    c
}

pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn failed(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn says(&self, needle: &str) -> &Run {
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(
            all.contains(needle),
            "expected output to mention {needle:?}:\n{all}"
        );
        self
    }
}

pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with(".eternia-backup.lock"))
        .collect();
    v.sort();
    v
}

pub fn archives(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".tar.gz") || f.ends_with(".tar.zst") || f.ends_with(".age"))
        .collect()
}

pub fn list_json(dir: &Path) -> Vec<serde_json::Value> {
    let r = run(bin()
        .env("BACKUP_DIR", dir)
        .args(["list", "--output", "json"]))
    .ok();
    serde_json::from_str::<Vec<serde_json::Value>>(&r.stdout).expect("list prints JSON")
}

/// What a tool the test runs prints, once it has succeeded (its stderr is the failure message).
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The entries of an archive as `tar tzf` lists them, in order.
pub fn tar_entries(archive: &Path) -> Vec<String> {
    stdout_of(Command::new("tar").arg("tzf").arg(archive))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `pg_dump --schema-only` of a database (a URL), without the lines that differ between any two runs.
pub fn schema(url: &str) -> String {
    stdout_of(Command::new("pg_dump").args(["--schema-only", "--dbname", url]))
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fake `pg_dump`: a shell script with `body`.
pub fn fake_pg_dump(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-pg_dump");
    // `pg_dump --version`, which a backup asks first, is the real one's.
    std::fs::write(
        &path,
        format!("#!/bin/sh\n[ \"$1\" = --version ] && exec pg_dump --version\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A stand-in for a PostgreSQL client tool (`PG_RESTORE_BIN`, …): a bash script that can call the real one.
/// `--version` (which the binary asks before it runs a tool) goes to the real tool, named by the part of
/// `name` before its first `-`, unless `body` answers it itself.
pub fn wrapper(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let tool = name.split('-').next().unwrap_or(name);
    let version = if body.contains("--version") {
        String::new()
    } else {
        format!("[[ $1 == --version ]] && exec {tool} --version\n")
    };
    std::fs::write(
        &path,
        format!("#!/bin/bash\nset -o pipefail\n{version}{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A point a wrapper script stops at until the test releases it, so that a kill, a crash or a second
/// command lands exactly where the test wants it, whatever the speed of the machine.
pub struct Gate {
    dir: tempfile::TempDir,
}

impl Gate {
    pub fn new() -> Gate {
        Gate { dir: tempdir() }
    }

    /// Shell lines for the wrapper: mark the gate reached, then wait to be released (or the gate dropped).
    pub fn shell(&self) -> String {
        let d = self.dir.path().display();
        format!(
            "touch '{d}/reached'; while [ -d '{d}' ] && [ ! -e '{d}/release' ]; do sleep 0.02; done"
        )
    }

    /// Blocks until a wrapper has reached the gate (30 s at most).
    pub fn wait_reached(&self) {
        let reached = self.dir.path().join("reached");
        crate::backup_cli::wait_for(|| reached.exists());
    }

    pub fn release(&self) {
        std::fs::write(self.dir.path().join("release"), b"").unwrap();
    }
}

impl Drop for Gate {
    /// A wrapper whose parent was killed is let go (its gate disappears), so nothing is left waiting.
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.path().join("release"), b"");
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A small tmpfs (root only); `None` where mounting is not allowed.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str, read_only: bool) -> Option<Tmpfs> {
        let dir = tempdir();
        let opts = format!("size={size}{}", if read_only { ",ro" } else { "" });
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs {
            path: dir.path().to_owned(),
            _dir: dir,
        })
    }

    pub fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(s.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A private PostgreSQL cluster with password (scram) authentication, for credential tests: the shared
/// server trusts every local connection. Runs as the `postgres` OS user; `None` where that is not possible.
pub struct PrivatePg {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivatePg {
    pub fn start(password: &str) -> Option<PrivatePg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .max()?;
        let dir = tempfile::Builder::new()
            .prefix("eb-pg")
            .tempdir_in("/tmp")
            .ok()?;
        // A port free right now (two private clusters may run at once in this test process).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).ok()?;
        let data = dir.path().join("data");
        let as_postgres = |args: &str| {
            Command::new("runuser")
                .args(["-u", "postgres", "--", "sh", "-c", args])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let ok = as_postgres(&format!(
            "{}/initdb -D {} -U postgres --pwfile={} --auth=scram-sha-256 >/dev/null",
            bin.display(),
            data.display(),
            pwfile.display()
        )) && as_postgres(&format!(
            "{}/pg_ctl -D {} -o '-p {port} -k /tmp -c listen_addresses=127.0.0.1' -l {}/log -w start >/dev/null",
            bin.display(),
            data.display(),
            dir.path().display()
        ));
        ok.then_some(PrivatePg { port, dir, bin })
    }

    fn pg_ctl(&self, action: &str) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c"])
            .arg(format!(
                "{}/pg_ctl -D {}/data -o '-p {} -k /tmp -c listen_addresses=127.0.0.1' -l {}/log -w {action} >/dev/null",
                self.bin.display(),
                self.dir.path().display(),
                self.port,
                self.dir.path().display()
            ))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Stops the server at once, as a crash would (`pg_ctl -m immediate stop`).
    pub fn crash(&self) {
        assert!(self.pg_ctl("-m immediate stop"), "pg_ctl stop failed");
    }

    pub fn start_again(&self) {
        assert!(self.pg_ctl("start"), "pg_ctl start failed");
    }

    /// psql as `postgres` with `password` against this cluster's `postgres` database.
    pub fn psql(&self, password: &str, sql: &str) -> String {
        self.psql_in(password, "postgres", sql)
    }

    pub fn psql_in(&self, password: &str, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .env("PGPASSWORD", password)
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", "sh", "-c"])
            .arg(format!(
                "{}/pg_ctl -D {}/data -m immediate stop >/dev/null",
                self.bin.display(),
                self.dir.path().display()
            ))
            .status();
    }
}
