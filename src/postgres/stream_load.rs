//! The dump loaded as it streams out of the archive, in parallel, with no dump file on the volume.
//!
//! A custom-format dump is its table of contents, then one data block per table (and one per group of
//! large objects), in order. The streamed load:
//! 1. keeps the header and the table of contents (a few KB to MB) in a small file in `TMPDIR`: with no
//!    data in it, `pg_restore --section=pre-data` and `--section=post-data -j N` read it as they would
//!    the whole dump, so schemas, ownership, privileges, dependencies, indexes and constraints keep
//!    `pg_restore`'s exact semantics;
//! 2. sends each table's rows, as they arrive, to `--jobs` connections at once (`COPY … FROM STDIN` with
//!    the entry's own statement; a table's rows are split at line ends, so even one large table loads on
//!    every connection), and each large object's bytes with `lo_put` at 1 MiB-aligned offsets;
//! 3. builds each table's indexes and keys once its rows are in, while the next tables load (see
//!    [`EarlyPostData`]); then what else the data section holds (sequence values) with `pg_restore -L`,
//!    and the rest of post-data.
//!
//! Memory is a few 1 MiB batches per connection. A dump it does not recognise (another archive version,
//! a data entry of another kind) is handed whole to one streamed `pg_restore` instead, which the log says.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tracing::{info, instrument, warn};

use super::dump_toc::{
    BLK_BLOBS, BLK_DATA, MAX_TOC, SECTION_DATA, Stop, Toc, decode_int, parse_toc, sections,
};
use super::early_post_data::EarlyPostData;
use super::restore::{RestoreOptions, command, finish, spawn};
use super::target::PgTarget;
use crate::archive::manifest::DatabaseInfo;
use crate::error::{Error, Result};

/// Rows (or large-object bytes) sent to a connection at a time.
const BATCH: usize = 1 << 20;

/// Loads the dump of `db` into `target` with `opts.jobs` connections, fed the archive's entries as
/// verification reads them (see [`crate::archive::reader::Visit`]): every checksum is checked on the
/// way, and a mismatch stops the load. [`StreamLoad::finish`] ends it once the archive checked out.
pub struct StreamLoad {
    db: DatabaseInfo,
    target: PgTarget,
    opts: RestoreOptions,
    rt: tokio::runtime::Handle,
    state: State,
    /// The first error of any connection (or of the feeding itself).
    failed: Arc<Mutex<Option<Error>>>,
    buf: Vec<u8>,
}

impl crate::archive::reader::Visit for StreamLoad {
    fn entry(&mut self, path: &str, r: &mut dyn Read) -> io::Result<()> {
        if self.db.chunk_number(path).is_none() {
            return Ok(());
        }
        loop {
            let n = r.read(&mut self.buf)?;
            if n == 0 {
                return Ok(());
            }
            let data = std::mem::take(&mut self.buf);
            let fed = self.feed(&data[..n]);
            self.buf = data;
            if let Err(e) = fed {
                let msg = e.to_string();
                self.fail(e);
                return Err(io::Error::other(msg));
            }
        }
    }
}

impl StreamLoad {
    /// `failed` receives the loader's own error, which explains a verification that stopped early.
    pub fn new(
        db: &DatabaseInfo,
        target: &PgTarget,
        opts: &RestoreOptions,
        failed: Arc<Mutex<Option<Error>>>,
    ) -> StreamLoad {
        StreamLoad {
            db: db.clone(),
            target: target.clone(),
            opts: opts.clone(),
            rt: tokio::runtime::Handle::current(),
            state: State::Head(Vec::new()),
            failed,
            buf: vec![0u8; 256 << 10],
        }
    }

    fn fail(&self, e: Error) {
        self.failed.lock().expect("failed lock").get_or_insert(e);
    }

    fn feed(&mut self, data: &[u8]) -> Result<()> {
        if let Some(e) = self.failed.lock().expect("failed lock").take() {
            return Err(e);
        }
        match &mut self.state {
            State::Head(head) => {
                head.extend_from_slice(data);
                match parse_toc(head) {
                    Ok(toc) => {
                        let head = std::mem::take(head);
                        self.start(toc, head)
                    }
                    Err(Stop::NeedMore) if head.len() < MAX_TOC => Ok(()),
                    Err(Stop::NeedMore) => {
                        self.pipe("its table of contents is larger than 64 MiB".into())
                    }
                    Err(Stop::Unsupported(why)) => self.pipe(why),
                }
            }
            State::Parallel(p) => p.feed(data, &self.failed),
            State::Piped(child) => write_to(child, data),
            State::Done => Ok(()),
        }
    }

    /// The table of contents is read: pre-data, then the connections, then the data that followed it.
    fn start(&mut self, toc: Toc, head: Vec<u8>) -> Result<()> {
        if let Some(why) = unsupported_data(&toc) {
            self.state = State::Head(head);
            return self.pipe(why);
        }
        let data_start = toc.data_start as usize;
        let toc_file = TocFile::write(&head[..data_start])?;
        info!(
            entries = toc.entries.len(),
            "pre-data: the schema, from the dump's table of contents"
        );
        let mut pre = command(&self.target, &self.opts);
        pre.arg("--section=pre-data")
            .arg(toc_file.path())
            .stdin(Stdio::null());
        finish(spawn(&mut pre, &self.opts)?)?;
        let mut parallel = Box::new(Parallel::start(
            toc,
            toc_file,
            &self.target,
            &self.opts,
            &self.rt,
            &self.failed,
        ));
        parallel.feed(&head[data_start..], &self.failed)?;
        self.state = State::Parallel(parallel);
        Ok(())
    }

    /// Today's path: the whole dump into one `pg_restore`.
    fn pipe(&mut self, why: String) -> Result<()> {
        let State::Head(head) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("piped only from the head")
        };
        warn!(%why, "the streamed parallel load does not know this dump: it goes to one pg_restore instead");
        let mut child = spawn(
            command(&self.target, &self.opts).stdin(Stdio::piped()),
            &self.opts,
        )?;
        write_to(&mut child, &head)?;
        self.state = State::Piped(child);
        Ok(())
    }

    /// The archive checked out: the rest of the data, the sequence values, post-data.
    #[instrument(skip_all, fields(database = %self.target, archived = %self.db.name, jobs = self.opts.jobs))]
    pub fn finish(mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Head(_) => Err(Error::Restore {
                step: "streamed load".into(),
                problem: "the dump ended inside its table of contents".into(),
                hint: "the archive's dump is incomplete; restore another backup".into(),
            }),
            State::Piped(mut child) => {
                drop(child.0.stdin.take());
                finish(child)
            }
            State::Parallel(p) => p.finish(&self.rt, &self.failed),
            State::Done => Ok(()),
        }
    }
}

enum State {
    /// The header and table of contents so far.
    Head(Vec<u8>),
    Parallel(Box<Parallel>),
    /// Not recognised: everything goes to one `pg_restore` reading its standard input.
    Piped(super::restore::Running),
    Done,
}

fn write_to(child: &mut super::restore::Running, data: &[u8]) -> Result<()> {
    let stdin = child.0.stdin.as_mut().expect("piped stdin");
    stdin.write_all(data).map_err(|e| Error::Restore {
        step: "pg_restore".into(),
        problem: format!("pg_restore stopped reading the dump: {e}"),
        hint: "its error follows in the log".into(),
    })
}

/// Why the parallel load cannot take this dump (a data entry it does not know), if it cannot.
fn unsupported_data(toc: &Toc) -> Option<String> {
    toc.entries
        .iter()
        .find(|e| {
            e.has_data && !(e.desc == "BLOBS" || e.desc == "TABLE DATA" && e.copy_stmt.is_some())
        })
        .map(|e| format!("a data entry of kind {:?} ({})", e.desc, e.tag))
}

/// The header and table of contents alone, for `pg_restore` (removed when dropped, or on SIGTERM).
struct TocFile(crate::interrupt::Scratch);

impl TocFile {
    fn write(bytes: &[u8]) -> Result<TocFile> {
        let path = std::env::temp_dir().join(format!(
            ".eternia-restore-toc-{}-{}.dump",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = TocFile(crate::interrupt::scratch(path.clone()));
        // Mode 0600: the table of contents holds every definition of the database (function bodies,
        // comments), and TMPDIR may be shared.
        let written = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(bytes))
        };
        written
            .map_err(|e| Error::storage("cannot write the dump's table of contents", &path, e))?;
        Ok(file)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// A `pg_restore --use-list` file of `ids` beside it (removed when dropped, or on SIGTERM).
    fn list(
        &self,
        suffix: &str,
        ids: impl Iterator<Item = i64>,
    ) -> Result<crate::interrupt::Scratch> {
        let list = crate::interrupt::scratch(self.path().with_extension(format!("{suffix}.list")));
        let lines: String = ids.map(|id| format!("{id};\n")).collect();
        std::fs::write(list.path(), lines)
            .map_err(|e| Error::storage("cannot write the restore list", list.path(), e))?;
        Ok(list)
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A table's `COPY` statement, its name (for errors) and its data entry.
#[derive(Debug)]
struct CopyTarget {
    stmt: String,
    table: String,
    dump_id: i64,
}

/// Batch buffers, back from the connections once sent: a fresh 1 MiB buffer is mmapped (see
/// `memory.rs`) and costs a page fault every 4 KiB.
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spare {
    const KEPT: usize = 16;

    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .expect("spare lock")
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BATCH + BATCH / 4))
    }

    fn give(&self, mut buf: Vec<u8>) {
        let mut kept = self.0.lock().expect("spare lock");
        // A batch grown past a few MiB (one very wide row) is not kept.
        if kept.len() < Self::KEPT && buf.capacity() <= 4 * BATCH {
            buf.clear();
            kept.push(buf);
        }
    }
}

/// Which tables have all their rows in: batches sent per data entry, batches committed (reported by
/// the connections after each `COPY`), and the entries whose data block has ended.
struct TableLoads {
    reports: std::sync::mpsc::Receiver<(i64, usize)>,
    sent: HashMap<i64, usize>,
    committed: HashMap<i64, usize>,
    ended: Vec<i64>,
    loaded: HashSet<i64>,
}

impl TableLoads {
    fn new(reports: std::sync::mpsc::Receiver<(i64, usize)>) -> TableLoads {
        TableLoads {
            reports,
            sent: HashMap::new(),
            committed: HashMap::new(),
            ended: Vec::new(),
            loaded: HashSet::new(),
        }
    }

    /// Takes in the connections' reports, waiting up to `wait` for the first; true if a table has
    /// become loaded.
    fn update(&mut self, wait: Duration) -> bool {
        let first = if wait.is_zero() {
            self.reports.try_recv().ok()
        } else {
            self.reports.recv_timeout(wait).ok()
        };
        for (id, n) in first.into_iter().chain(self.reports.try_iter()) {
            *self.committed.entry(id).or_default() += n;
        }
        let before = self.loaded.len();
        let (sent, committed, loaded) = (&self.sent, &self.committed, &mut self.loaded);
        self.ended.retain(|id| {
            let done =
                committed.get(id).copied().unwrap_or(0) >= sent.get(id).copied().unwrap_or(0);
            if done {
                loaded.insert(*id);
            }
            !done
        });
        self.loaded.len() > before
    }
}

/// The post-data entries restored while the data loads (see [`EarlyPostData`]): one `pg_restore` at a
/// time, on one connection beside the loading ones.
struct EarlyRuns {
    plan: EarlyPostData,
    running: Option<(super::restore::Running, crate::interrupt::Scratch)>,
    runs: usize,
    /// A table was loaded since the plan was last asked.
    stale: bool,
}

impl EarlyRuns {
    /// Starts the entries that are ready when none is running; reports a run that failed.
    fn advance(
        &mut self,
        loads: &TableLoads,
        toc_file: &TocFile,
        target: &PgTarget,
        opts: &RestoreOptions,
        changed: bool,
    ) -> Result<()> {
        self.stale |= changed;
        if let Some((run, _)) = &mut self.running {
            if matches!(run.0.try_wait(), Ok(None)) {
                return Ok(());
            }
            let (run, _list) = self.running.take().expect("a run");
            finish(run)?;
        }
        if !std::mem::take(&mut self.stale) {
            return Ok(());
        }
        let ready = self.plan.ready(&loads.loaded);
        if ready.is_empty() {
            return Ok(());
        }
        self.runs += 1;
        info!(
            entries = ready.len(),
            "post-data: indexes and keys of the tables loaded, built while the rest loads"
        );
        let list = toc_file.list(&format!("early{}", self.runs), ready.iter().copied())?;
        let mut cmd = command(target, opts);
        cmd.arg("--section=post-data")
            .arg("--use-list")
            .arg(list.path())
            .arg(toc_file.path())
            .stdin(Stdio::null());
        self.running = Some((spawn(&mut cmd, opts)?, list));
        Ok(())
    }

    /// Waits for the run in progress.
    fn wait(&mut self) -> Result<()> {
        match self.running.take() {
            Some((run, _list)) => finish(run),
            None => Ok(()),
        }
    }
}

impl Drop for EarlyRuns {
    fn drop(&mut self) {
        if let Some((mut run, _)) = self.running.take() {
            let _ = run.0.kill();
            let _ = run.0.wait();
        }
    }
}

enum Work {
    Rows {
        into: Arc<CopyTarget>,
        rows: Vec<u8>,
        /// How many tables ended before this one (its place in the stream).
        seq: u64,
    },
    Blob {
        oid: u32,
        offset: i64,
        bytes: Vec<u8>,
    },
}

/// The data blocks being read and sent to the connections. Dropped before [`Parallel::finish`] (the
/// archive failed verification, a connection failed), it stops the connections: a `COPY` cut off is
/// rolled back by the server.
struct Parallel {
    toc: Toc,
    toc_file: TocFile,
    target: PgTarget,
    opts: RestoreOptions,
    copies: HashMap<i64, Arc<CopyTarget>>,
    spare: Spare,
    loads: TableLoads,
    /// How many tables' rows have all been sent.
    ended: tokio::sync::watch::Sender<u64>,
    early: EarlyRuns,
    blocks: Blocks,
    /// The rows of the current table not sent yet (less than a batch, or no line end yet).
    rows: Vec<u8>,
    /// The current large object: its oid, where the bytes in `blob` start, the bytes.
    blob: (u32, i64, Vec<u8>),
    tx: Option<tokio::sync::mpsc::Sender<Work>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Parallel {
    fn start(
        toc: Toc,
        toc_file: TocFile,
        target: &PgTarget,
        opts: &RestoreOptions,
        rt: &tokio::runtime::Handle,
        failed: &Arc<Mutex<Option<Error>>>,
    ) -> Parallel {
        let copies = toc
            .entries
            .iter()
            .filter(|e| e.desc == "TABLE DATA")
            .filter_map(|e| {
                Some((
                    e.dump_id,
                    Arc::new(CopyTarget {
                        stmt: e.copy_stmt.clone()?,
                        table: format!("{}.{}", e.namespace, e.tag),
                        dump_id: e.dump_id,
                    }),
                ))
            })
            .collect();
        let setup: Arc<Vec<String>> = Arc::new(session_setup(&toc, opts));
        let jobs = opts.jobs.max(1) as usize;
        let (tx, rx) = tokio::sync::mpsc::channel::<Work>(2 * jobs);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let spare = Spare::default();
        let (report, reports) = std::sync::mpsc::channel();
        let ended = tokio::sync::watch::Sender::new(0);
        let workers = (0..jobs)
            .map(|_| {
                let (target, setup, rx, failed) =
                    (target.clone(), setup.clone(), rx.clone(), failed.clone());
                let loader = Loader {
                    spare: spare.clone(),
                    report: report.clone(),
                    ended: ended.subscribe(),
                };
                rt.spawn(async move {
                    if let Err(e) = worker(target, setup, rx.clone(), loader).await {
                        failed.lock().expect("failed lock").get_or_insert(e);
                        // Keep taking work so that the feeder never waits on a full queue.
                        while rx.lock().await.recv().await.is_some() {}
                    }
                })
            })
            .collect();
        info!(
            jobs,
            "data: streamed into {jobs} connections as it is verified"
        );
        Parallel {
            blocks: Blocks::new(toc.int_size),
            early: EarlyRuns {
                plan: EarlyPostData::plan(&toc),
                running: None,
                runs: 0,
                stale: true,
            },
            toc,
            toc_file,
            target: target.clone(),
            opts: opts.clone(),
            copies,
            spare,
            loads: TableLoads::new(reports),
            ended,
            rows: Vec::new(),
            blob: (0, 0, Vec::new()),
            tx: Some(tx),
            workers,
        }
    }

    fn send(&self, w: Work, failed: &Arc<Mutex<Option<Error>>>) -> Result<()> {
        let tx = self.tx.as_ref().expect("sender open while feeding");
        if tx.blocking_send(w).is_err() {
            return Err(failed
                .lock()
                .expect("failed lock")
                .take()
                .unwrap_or_else(|| Error::Restore {
                    step: "streamed load".into(),
                    problem: "every connection stopped".into(),
                    hint: "the PostgreSQL server's log".into(),
                }));
        }
        Ok(())
    }

    fn feed(&mut self, data: &[u8], failed: &Arc<Mutex<Option<Error>>>) -> Result<()> {
        let mut events = Vec::new();
        self.blocks.feed(data, &mut events)?;
        for ev in events {
            match ev {
                Event::Rows { dump_id, range } => {
                    self.rows.extend_from_slice(&data[range]);
                    if self.rows.len() >= BATCH {
                        self.send_rows(dump_id, false, failed)?;
                    }
                }
                Event::TableEnd { dump_id } => {
                    self.send_rows(dump_id, true, failed)?;
                    self.loads.ended.push(dump_id);
                    // The connections holding this table's COPY open commit it now.
                    self.ended.send_modify(|n| *n += 1);
                }
                Event::BlobStart { oid } => self.blob = (oid, 0, Vec::new()),
                Event::BlobBytes { range } => {
                    self.blob.2.extend_from_slice(&data[range]);
                    if self.blob.2.len() >= BATCH {
                        self.send_blob(false, failed)?;
                    }
                }
                Event::BlobEnd => self.send_blob(true, failed)?,
            }
        }
        self.build_ready_indexes(Duration::ZERO)
    }

    /// Takes in which tables are loaded (waiting up to `wait` for a connection's report) and starts the
    /// indexes and keys that became ready (see [`EarlyRuns::advance`]).
    fn build_ready_indexes(&mut self, wait: Duration) -> Result<()> {
        let changed = self.loads.update(wait);
        self.early.advance(
            &self.loads,
            &self.toc_file,
            &self.target,
            &self.opts,
            changed,
        )
    }

    /// Sends the whole lines of the current table's rows (all of them at its end).
    fn send_rows(
        &mut self,
        dump_id: i64,
        end: bool,
        failed: &Arc<Mutex<Option<Error>>>,
    ) -> Result<()> {
        let Some(into) = self.copies.get(&dump_id).cloned() else {
            return Err(Error::Restore {
                step: "streamed load".into(),
                problem: format!("a data block for entry {dump_id}, which has no COPY statement"),
                hint: "restore with --jobs 1 (one pg_restore reads the whole dump)".into(),
            });
        };
        let cut = if end {
            self.rows.len()
        } else {
            match self.rows.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => return Ok(()),
            }
        };
        if cut == 0 {
            return Ok(());
        }
        let mut rest = self.spare.take();
        rest.extend_from_slice(&self.rows[cut..]);
        self.rows.truncate(cut);
        let mut rows = std::mem::replace(&mut self.rows, rest);
        if !rows.ends_with(b"\n") {
            rows.push(b'\n');
        }
        *self.loads.sent.entry(dump_id).or_default() += 1;
        let seq = *self.ended.borrow();
        self.send(Work::Rows { into, rows, seq }, failed)
    }

    /// Sends the current large object's bytes: whole 1 MiB pieces (so that no two connections ever
    /// write the same page of it), and the rest at its end.
    fn send_blob(&mut self, end: bool, failed: &Arc<Mutex<Option<Error>>>) -> Result<()> {
        let (oid, offset, bytes) = &mut self.blob;
        let cut = if end {
            bytes.len()
        } else {
            bytes.len() / BATCH * BATCH
        };
        if cut == 0 && !end {
            return Ok(());
        }
        let rest = bytes.split_off(cut);
        let piece = std::mem::replace(bytes, rest);
        let (oid, at) = (*oid, *offset);
        *offset += piece.len() as i64;
        if piece.is_empty() {
            return Ok(());
        }
        self.send(
            Work::Blob {
                oid,
                offset: at,
                bytes: piece,
            },
            failed,
        )
    }

    /// The data sent, every connection done: the sequence values, then post-data.
    fn finish(
        mut self,
        rt: &tokio::runtime::Handle,
        failed: &Arc<Mutex<Option<Error>>>,
    ) -> Result<()> {
        if !self.blocks.at_block_start() {
            return Err(Error::Restore {
                step: "streamed load".into(),
                problem: "the dump ended inside a data block".into(),
                hint: "the archive's dump is incomplete; restore another backup".into(),
            });
        }
        drop(self.tx.take());
        // While the last rows load, the tables done so far get their indexes.
        while self.workers.iter().any(|w| !w.is_finished()) {
            self.build_ready_indexes(Duration::from_millis(50))?;
        }
        for w in self.workers.drain(..) {
            let _ = rt.block_on(w);
        }
        if let Some(e) = failed.lock().expect("failed lock").take() {
            return Err(e);
        }
        self.early.wait()?;
        let rest = other_data_entries(&self.toc);
        if !rest.is_empty() {
            let list = self.toc_file.list("data", rest.into_iter())?;
            let mut cmd = command(&self.target, &self.opts);
            cmd.arg("--use-list")
                .arg(list.path())
                .arg(self.toc_file.path())
                .stdin(Stdio::null());
            finish(spawn(&mut cmd, &self.opts)?)?;
        }
        info!(
            early = self.early.plan.given().len(),
            "post-data: indexes, constraints and triggers (those not built while loading)"
        );
        let mut post = command(&self.target, &self.opts);
        post.arg("--section=post-data")
            .arg(format!("--jobs={}", self.opts.jobs.max(1)));
        // Everything but what was restored early (the section option keeps it to post-data).
        let _list = match self.early.plan.given() {
            given if given.is_empty() => None,
            given => {
                let list = self.toc_file.list(
                    "post",
                    self.toc
                        .entries
                        .iter()
                        .map(|e| e.dump_id)
                        .filter(|id| !given.contains(id)),
                )?;
                post.arg("--use-list").arg(list.path());
                Some(list)
            }
        };
        post.arg(self.toc_file.path()).stdin(Stdio::null());
        finish(spawn(&mut post, &self.opts)?)
    }
}

impl Drop for Parallel {
    fn drop(&mut self) {
        for w in self.workers.drain(..) {
            w.abort();
        }
    }
}

/// The data-section entries the connections do not load (sequence values, comments among the data):
/// left to `pg_restore`.
fn other_data_entries(toc: &Toc) -> Vec<i64> {
    toc.entries
        .iter()
        .zip(sections(toc))
        .filter(|(e, section)| {
            *section == SECTION_DATA && !matches!(e.desc.as_str(), "TABLE DATA" | "BLOBS")
        })
        .map(|(e, _)| e.dump_id)
        .collect()
}

/// What `pg_restore` sets on its connections before loading data (`_doSetFixedOutputState`): the dump's
/// encoding and string syntax, an empty search path, and no row security; and `--role`.
fn session_setup(toc: &Toc, opts: &RestoreOptions) -> Vec<String> {
    let mut s: Vec<String> = toc
        .entries
        .iter()
        .filter(|e| matches!(e.desc.as_str(), "ENCODING" | "STDSTRINGS"))
        .filter_map(|e| e.defn.clone())
        .collect();
    s.extend(
        [
            "SET statement_timeout = 0",
            "SET lock_timeout = 0",
            "SET idle_in_transaction_session_timeout = 0",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "SET check_function_bodies = false",
            "SET client_min_messages = warning",
            "SET row_security = off",
        ]
        .map(str::to_owned),
    );
    if let Some(role) = &opts.ownership.role {
        s.push(format!("SET ROLE {}", super::snapshot::quote_ident(role)));
    }
    s
}

/// One connection: takes batches off the shared queue, keeping a table's `COPY` open while its rows keep
/// coming, until the queue is closed.
/// What a connection gives back: the batch buffers it sent, and how many batches of a table each of its
/// `COPY`s committed.
struct Loader {
    spare: Spare,
    report: std::sync::mpsc::Sender<(i64, usize)>,
    ended: tokio::sync::watch::Receiver<u64>,
}

fn worker(
    target: PgTarget,
    setup: Arc<Vec<String>>,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Work>>>,
    mut loader: Loader,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> {
    Box::pin(async move { work(&target, &setup, &rx, &mut loader).await })
}

async fn work(
    target: &PgTarget,
    setup: &[String],
    rx: &tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Work>>,
    loader: &mut Loader,
) -> Result<()> {
    let mut conn = super::snapshot::connect(target).await?;
    for stmt in setup {
        sqlx::query(stmt.trim().trim_end_matches(';'))
            .execute(&mut conn)
            .await
            .map_err(|e| target.error("cannot set up a loading connection", &e))?;
    }
    let mut pending = take(rx).await;
    while let Some(work) = pending.take() {
        match work {
            Work::Rows { into, rows, seq } => {
                let failed = |e: sqlx::Error| Error::Restore {
                    step: format!("load table {}", into.table),
                    problem: super::target::redact(&e),
                    hint: "the PostgreSQL server's log; the table's rows were not all loaded"
                        .into(),
                };
                let mut copy = conn.copy_in_raw(&into.stmt).await.map_err(failed)?;
                copy.send(rows.as_slice()).await.map_err(failed)?;
                loader.spare.give(rows);
                let mut batches = 1;
                // The table's rows until another table's come, or its end is announced (then its COPY
                // commits at once, so that its indexes can be built while the rest loads).
                let next = loop {
                    let next = tokio::select! {
                        biased;
                        next = take(rx) => next,
                        _ = loader.ended.wait_for(|&n| n > seq) => break None,
                    };
                    match next {
                        Some(Work::Rows {
                            into: same, rows, ..
                        }) if Arc::ptr_eq(&same, &into) => {
                            copy.send(rows.as_slice()).await.map_err(failed)?;
                            loader.spare.give(rows);
                            batches += 1;
                        }
                        other => break Some(other),
                    }
                };
                copy.finish().await.map_err(failed)?;
                let _ = loader.report.send((into.dump_id, batches));
                pending = match next {
                    Some(other) => other,
                    None => take(rx).await,
                };
                continue;
            }
            Work::Blob { oid, offset, bytes } => {
                sqlx::query("SELECT pg_catalog.lo_put($1, $2, $3)")
                    .bind(oid as i64)
                    .bind(offset)
                    .bind(bytes)
                    .execute(&mut conn)
                    .await
                    .map_err(|e| Error::Restore {
                        step: format!("load large object {oid}"),
                        problem: super::target::redact(&e),
                        hint: "the PostgreSQL server's log".into(),
                    })?;
            }
        }
        pending = take(rx).await;
    }
    let _ = conn.close().await;
    Ok(())
}

async fn take(rx: &tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Work>>) -> Option<Work> {
    rx.lock().await.recv().await
}

/// A run of bytes of the fed slice.
type Span = std::ops::Range<usize>;

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Rows { dump_id: i64, range: Span },
    TableEnd { dump_id: i64 },
    BlobStart { oid: u32 },
    BlobBytes { range: Span },
    BlobEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    BlockType,
    BlockId { blobs: bool },
    ChunkLen { blobs: bool },
    Chunk { left: u64, blobs: bool },
    BlobOid,
}

/// The data blocks of a custom-format dump, read as they pass (`_ReadBuf`/`_PrintData` in
/// `pg_backup_custom.c`): a block type, the entry's dump id, then length-prefixed chunks ending with a
/// zero length; a large-object block is oids, each followed by its chunks, ending with oid 0.
struct Blocks {
    int_size: usize,
    step: Step,
    field: Vec<u8>,
    dump_id: i64,
}

impl Blocks {
    fn new(int_size: usize) -> Blocks {
        Blocks {
            int_size,
            step: Step::BlockType,
            field: Vec::new(),
            dump_id: 0,
        }
    }

    fn at_block_start(&self) -> bool {
        self.step == Step::BlockType && self.field.is_empty()
    }

    fn feed(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<()> {
        let unexpected = |what: String| Error::Restore {
            step: "streamed load".into(),
            problem: format!("unexpected {what} in the dump's data"),
            hint: "restore with --jobs 1 (one pg_restore reads the whole dump)".into(),
        };
        let mut i = 0;
        while i < data.len() {
            if let Step::Chunk { left, blobs } = self.step {
                let n = left.min((data.len() - i) as u64) as usize;
                out.push(if blobs {
                    Event::BlobBytes { range: i..i + n }
                } else {
                    Event::Rows {
                        dump_id: self.dump_id,
                        range: i..i + n,
                    }
                });
                i += n;
                self.step = match left - n as u64 {
                    0 => Step::ChunkLen { blobs },
                    left => Step::Chunk { left, blobs },
                };
                continue;
            }
            let need = if self.step == Step::BlockType {
                1
            } else {
                1 + self.int_size
            };
            let take = (need - self.field.len()).min(data.len() - i);
            self.field.extend_from_slice(&data[i..i + take]);
            i += take;
            if self.field.len() < need {
                break;
            }
            let value = if need == 1 {
                i64::from(self.field[0])
            } else {
                decode_int(&self.field)
            };
            self.field.clear();
            self.step = match (self.step, value) {
                (Step::BlockType, t) if t == i64::from(BLK_DATA) => Step::BlockId { blobs: false },
                (Step::BlockType, t) if t == i64::from(BLK_BLOBS) => Step::BlockId { blobs: true },
                (Step::BlockType, t) => return Err(unexpected(format!("block type {t}"))),
                (Step::BlockId { blobs }, id) => {
                    self.dump_id = id;
                    if blobs {
                        Step::BlobOid
                    } else {
                        Step::ChunkLen { blobs }
                    }
                }
                (Step::ChunkLen { blobs: false }, 0) => {
                    out.push(Event::TableEnd {
                        dump_id: self.dump_id,
                    });
                    Step::BlockType
                }
                (Step::ChunkLen { blobs: true }, 0) => {
                    out.push(Event::BlobEnd);
                    Step::BlobOid
                }
                (Step::ChunkLen { blobs }, n) if n > 0 => Step::Chunk {
                    left: n as u64,
                    blobs,
                },
                (Step::BlobOid, 0) => Step::BlockType,
                (Step::BlobOid, oid) => {
                    let oid = u32::try_from(oid)
                        .map_err(|_| unexpected(format!("large object {oid}")))?;
                    out.push(Event::BlobStart { oid });
                    Step::ChunkLen { blobs: true }
                }
                (step, n) => return Err(unexpected(format!("{n} in {step:?}"))),
            };
        }
        Ok(())
    }
}

/// For the fuzzer: `dump` as the loader reads it (its table of contents, then its data blocks), fed in
/// pieces of `piece` bytes. Returns how many events the blocks gave, or the first error; never panics
/// (the loader reads these bytes before their entry's checksum is known).
#[doc(hidden)]
pub fn scan(dump: &[u8], piece: usize) -> Result<usize> {
    let toc = match parse_toc(dump) {
        Ok(toc) => toc,
        Err(Stop::NeedMore) => return Ok(0),
        Err(Stop::Unsupported(why)) => {
            return Err(Error::Restore {
                step: "streamed load".into(),
                problem: why,
                hint: String::new(),
            });
        }
    };
    let _ = (unsupported_data(&toc), other_data_entries(&toc));
    let mut blocks = Blocks::new(toc.int_size);
    let mut events = 0;
    for part in dump[toc.data_start as usize..].chunks(piece.max(1)) {
        let mut out = Vec::new();
        blocks.feed(part, &mut out)?;
        for ev in &out {
            if let Event::Rows { range, .. } | Event::BlobBytes { range } = ev {
                assert!(
                    range.end <= part.len(),
                    "an event past the piece it came in"
                );
            }
        }
        events += out.len();
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `WriteInt` with 4-byte ints.
    fn int(v: i64) -> Vec<u8> {
        let mut b = vec![u8::from(v < 0)];
        b.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        b
    }

    fn blocks() -> Vec<u8> {
        let mut d = vec![BLK_DATA];
        d.extend(int(7));
        for chunk in [&b"1\ta\n2\tb\n"[..], b"3\tc\n"] {
            d.extend(int(chunk.len() as i64));
            d.extend_from_slice(chunk);
        }
        d.extend(int(0));
        d.push(BLK_BLOBS);
        d.extend(int(9));
        d.extend(int(16400));
        d.extend(int(3));
        d.extend_from_slice(b"abc");
        d.extend(int(0));
        d.extend(int(0));
        d
    }

    /// Fed in pieces of every size, the events (with their bytes) are the same.
    #[test]
    fn the_data_blocks_are_read_whatever_the_pieces_they_arrive_in() {
        let d = blocks();
        for piece in 1..=d.len() {
            let mut b = Blocks::new(4);
            let (mut rows, mut blob, mut ends) = (Vec::new(), Vec::new(), Vec::new());
            for part in d.chunks(piece) {
                let mut out = Vec::new();
                b.feed(part, &mut out).unwrap();
                for ev in out {
                    match ev {
                        Event::Rows { dump_id: 7, range } => rows.extend_from_slice(&part[range]),
                        Event::BlobBytes { range } => blob.extend_from_slice(&part[range]),
                        other => ends.push(other),
                    }
                }
            }
            assert_eq!(rows, b"1\ta\n2\tb\n3\tc\n", "piece {piece}");
            assert_eq!(blob, b"abc");
            assert_eq!(
                ends,
                [
                    Event::TableEnd { dump_id: 7 },
                    Event::BlobStart { oid: 16400 },
                    Event::BlobEnd
                ]
            );
            assert!(b.at_block_start());
        }
    }

    #[test]
    fn an_unknown_block_type_is_an_error_naming_it() {
        let mut out = Vec::new();
        let e = Blocks::new(4).feed(&[9], &mut out).unwrap_err().to_string();
        assert!(e.contains("block type 9"), "{e}");
    }
}
