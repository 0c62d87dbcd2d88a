//! Streams `pg_dump -Fc -Z0` into the archive as bounded chunks: one thread reads the pipe and hashes,
//! the caller's thread compresses and writes. Memory is a few chunk buffers whatever the database size.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use tracing::{debug, instrument};

use super::target::PgTarget;
use crate::archive::codec::sha256_hex;
use crate::archive::manifest::chunk_path_in;
use crate::archive::writer::ArchiveWriter;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct DumpOptions {
    pub pg_dump: PathBuf,
    pub chunk_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    pub bytes: u64,
    pub chunks: u32,
}

const STDERR_TAIL: usize = 4096;

/// Runs `pg_dump` against `target` in `snapshot` and appends its output to `writer` as the
/// `<dir>/pgdump.NNNNNN` chunks (see `DatabaseInfo::dir`). `progress` counts dumped bytes as they arrive.
#[instrument(skip_all, fields(database = %target, pg_dump = %opts.pg_dump.display()))]
pub fn dump_into<W: Write>(
    writer: &mut ArchiveWriter<W>,
    dir: &str,
    target: &PgTarget,
    snapshot: Option<&str>,
    opts: &DumpOptions,
    progress: &Arc<AtomicU64>,
) -> Result<DumpStats> {
    let mut cmd = Command::new(&opts.pg_dump);
    cmd.args(["--format=custom", "--compress=0", "--no-password"]);
    if let Some(id) = snapshot {
        cmd.arg(format!("--snapshot={id}"));
    }
    cmd.env_remove("PGPASSFILE")
        .envs(target.child_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Dump {
        database: target.dbname.clone(),
        status: "not started".into(),
        bytes: 0,
        stderr: format!("cannot run {}: {e}", opts.pg_dump.display()),
        hint: "install the PostgreSQL client tools (pg_dump) or point PG_DUMP_BIN at it".into(),
    })?;
    let _tracked = crate::interrupt::track(&child);
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_tail = thread::spawn(move || {
        super::stderr_tail(stderr, STDERR_TAIL)
            .trim()
            .replace('\n', " | ")
    });

    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, String)>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let chunk_size = opts.chunk_size.max(4096);
    let counter = progress.clone();
    let reader = thread::spawn(move || -> io::Result<()> {
        let mut stdout = stdout;
        loop {
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(chunk_size));
            buf.clear();
            let n = (&mut stdout)
                .take(chunk_size as u64)
                .read_to_end(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
            let sha = sha256_hex(&buf);
            if full_tx.send((buf, sha)).is_err() {
                return Ok(()); // the writer stopped; it reports why
            }
        }
    });

    let mut stats = DumpStats {
        bytes: 0,
        chunks: 0,
    };
    let mut write_err = None;
    for (buf, sha) in full_rx.iter() {
        stats.chunks += 1;
        if let Err(e) = writer.append(&chunk_path_in(dir, stats.chunks), &buf, Some(sha)) {
            write_err = Some(e);
            break;
        }
        stats.bytes += buf.len() as u64;
        debug!(
            chunk = stats.chunks,
            bytes = buf.len(),
            "dump chunk written"
        );
        let _ = empty_tx.send(buf);
    }
    drop(full_rx);
    if let Some(e) = write_err {
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        return Err(Error::storage(
            "cannot write archive",
            "the archive being written",
            e,
        ));
    }
    let read_result = reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
    let status = child.wait().map_err(|e| Error::Dump {
        database: target.dbname.clone(),
        status: "unknown".into(),
        bytes: stats.bytes,
        stderr: e.to_string(),
        hint: "the backup pod's resources".into(),
    })?;
    let tail = stderr_tail.join().unwrap_or_default();
    if !status.success() || read_result.is_err() {
        let stderr = match read_result {
            Err(e) if status.success() => format!("reading pg_dump output: {e}"),
            _ => tail,
        };
        return Err(Error::Dump {
            database: target.dbname.clone(),
            status: status.to_string(),
            bytes: stats.bytes,
            hint: dump_hint(&stderr).into(),
            stderr,
        });
    }
    if stats.bytes == 0 {
        return Err(Error::Dump {
            database: target.dbname.clone(),
            status: status.to_string(),
            bytes: 0,
            stderr: "pg_dump produced no output".into(),
            hint: "PG_DUMP_BIN points at a real pg_dump".into(),
        });
    }
    Ok(stats)
}

fn dump_hint(stderr: &str) -> &'static str {
    let s = stderr.to_ascii_lowercase();
    if s.contains("server version mismatch") || s.contains("aborting because of server version") {
        "pg_dump is older than the server: use an image whose pg_dump major version is >= the server's (or set PG_DUMP_BIN)"
    } else if s.contains("password authentication failed") || s.contains("no password supplied") {
        "the database credentials in the Secret (DATABASE_URL / PGPASSWORD)"
    } else if s.contains("permission denied") {
        "the database user's privileges: it must be able to read every table and sequence"
    } else if s.contains("could not connect") || s.contains("connection") || s.contains("terminat")
    {
        "connectivity to PostgreSQL and whether the server restarted or terminated the session during the dump"
    } else if s.contains("snapshot") {
        "the snapshot could not be imported: is the server in recovery or too old (needs PostgreSQL >= 9.2)?"
    } else {
        "the pg_dump message above and the database server logs"
    }
}
