//! The backup volume (a PVC mounted at `/backups`): `*.partial`, fsync, rename; sidecar last.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tracing::{debug, info, instrument, warn};

use super::{ArchiveSink, BackupKind, BackupStore, StoredBackup};
use crate::archive::manifest::MAX_SIDECAR_BYTES;
use crate::archive::name::{PARTIAL_SUFFIX, SIDECAR_SUFFIX, is_scratch_dump_name};
use crate::archive::{ArchiveName, Sidecar};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
    prefix: String,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Self {
        LocalStore {
            dir: dir.into(),
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when an archive of this name exists here, complete or as the `.partial` a killed run left.
    pub fn name_taken(&self, name: &ArchiveName) -> bool {
        let file = name.file_name();
        self.dir.join(&file).exists() || self.dir.join(format!("{file}{PARTIAL_SUFFIX}")).exists()
    }

    /// Fails clearly when the directory is missing or not a directory.
    pub fn check_dir(&self) -> Result<()> {
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Error::storage(
                "backup directory is not a directory",
                &self.dir,
                io::Error::from(io::ErrorKind::NotADirectory),
            )),
            Err(e) => Err(Error::storage("cannot open backup directory", &self.dir, e)),
        }
    }

    fn read_sidecar(&self, archive: &str) -> Result<Sidecar> {
        let path = self.dir.join(format!("{archive}{SIDECAR_SUFFIX}"));
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_SIDECAR_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::storage("cannot read sidecar manifest", &path, e))?;
        if bytes.len() as u64 > MAX_SIDECAR_BYTES {
            return Err(Error::archive(
                archive,
                format!(
                    "sidecar manifest {} is larger than {} MiB: not ours, refused unread",
                    path.display(),
                    MAX_SIDECAR_BYTES >> 20
                ),
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::archive(
                archive,
                format!("sidecar manifest {} is not valid: {e}", path.display()),
            )
        })
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl BackupStore for LocalStore {
    fn location(&self) -> String {
        format!("local:{}", self.dir.display())
    }

    #[instrument(skip(self), fields(dir = %self.dir.display()))]
    async fn list(&self) -> Result<Vec<StoredBackup>> {
        self.check_dir()?;
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| Error::storage("cannot list backup directory", &self.dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent =
                ent.map_err(|e| Error::storage("cannot list backup directory", &self.dir, e))?;
            let file = ent.file_name().to_string_lossy().into_owned();
            let Some(name) = ArchiveName::parse(&self.prefix, &file) else {
                continue;
            };
            if !ent.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            if !self.dir.join(format!("{file}{SIDECAR_SUFFIX}")).exists() {
                debug!(archive = %file, "no sidecar manifest: incomplete backup, not listed");
                continue;
            }
            let sidecar = match self.read_sidecar(&file) {
                Ok(s) => s,
                Err(e) => {
                    warn!(archive = %file, error = %e, "unreadable sidecar manifest: not listed");
                    continue;
                }
            };
            out.push(StoredBackup {
                name: file,
                created: name.created,
                size: sidecar.archive.size,
                compression: name.compression,
                encrypted: name.encrypted,
                kind: BackupKind::of(&name),
                location: self.location(),
                sha256: Some(sidecar.archive.sha256),
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    async fn sidecar(&self, name: &str) -> Result<Sidecar> {
        self.read_sidecar(name)
    }

    #[instrument(skip(self))]
    async fn open(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.dir.join(name);
        let f = File::open(&path).map_err(|e| Error::storage("cannot open archive", &path, e))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
    }

    #[instrument(skip(self), fields(archive = %name.file_name()))]
    fn create(&self, name: &ArchiveName) -> Result<Box<dyn ArchiveSink>> {
        self.check_dir()?;
        let file_name = name.file_name();
        let final_path = self.dir.join(&file_name);
        if final_path.exists() {
            return Err(Error::storage(
                "refusing to overwrite existing archive",
                &final_path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        let partial = self.dir.join(format!("{file_name}{PARTIAL_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::storage("cannot create archive", &partial, e))?;
        Ok(Box::new(LocalSink {
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            partial,
            final_path,
            dir: self.dir.clone(),
            sidecar_name: name.sidecar_name(),
        }))
    }

    #[instrument(skip(self))]
    async fn delete(&self, name: &str) -> Result<()> {
        let sidecar = self.dir.join(format!("{name}{SIDECAR_SUFFIX}"));
        let archive = self.dir.join(name);
        for path in [&sidecar, &archive] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::storage("cannot delete", path, e)),
            }
        }
        sync_dir(&self.dir).map_err(|e| Error::storage("cannot sync directory", &self.dir, e))?;
        info!(archive = name, "deleted");
        Ok(())
    }

    #[instrument(skip(self))]
    async fn remove_stale_partials(&self, age: Duration, dry_run: bool) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| Error::storage("cannot list backup directory", &self.dir, e))?;
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for ent in rd.flatten() {
            let file = ent.file_name().to_string_lossy().into_owned();
            let ours = match file.strip_suffix(PARTIAL_SUFFIX) {
                Some(base) => {
                    let base = base.strip_suffix(SIDECAR_SUFFIX).unwrap_or(base);
                    ArchiveName::parse(&self.prefix, base).is_some()
                }
                // The dump file of a `--jobs` restore that was killed before it could remove it.
                None => is_scratch_dump_name(&file),
            };
            if !ours {
                continue;
            }
            let modified = ent.metadata().and_then(|m| m.modified()).unwrap_or(now);
            if now.duration_since(modified).unwrap_or_default() < age {
                continue;
            }
            if !dry_run {
                let path = ent.path();
                fs::remove_file(&path).map_err(|e| {
                    Error::storage("cannot delete stale file of an interrupted run", &path, e)
                })?;
                info!(file = %file, "removed stale file of an interrupted backup or restore");
            }
            removed.push(file);
        }
        Ok(removed)
    }
}

struct LocalSink {
    out: Option<BufWriter<File>>,
    partial: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
    sidecar_name: String,
}

impl Write for LocalSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("sink open").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("sink open").flush()
    }
}

impl LocalSink {
    fn finish_file(&mut self) -> io::Result<()> {
        let out = self.out.take().expect("sink open");
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

impl ArchiveSink for LocalSink {
    fn commit(mut self: Box<Self>, sidecar: &Sidecar) -> Result<()> {
        self.finish_file()
            .map_err(|e| Error::storage("cannot write archive", &self.partial, e))?;
        if self.final_path.exists() {
            return Err(Error::storage(
                "refusing to overwrite existing archive",
                &self.final_path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        fs::rename(&self.partial, &self.final_path)
            .map_err(|e| Error::storage("cannot move archive into place", &self.final_path, e))?;
        // From here the archive is ours to keep; the sidecar makes it complete.
        let sidecar_path = self.dir.join(&self.sidecar_name);
        let sidecar_partial = self
            .dir
            .join(format!("{}{PARTIAL_SUFFIX}", self.sidecar_name));
        let json = serde_json::to_vec_pretty(sidecar).expect("sidecar serializes");
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&sidecar_partial)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&sidecar_partial, &sidecar_path)?;
            sync_dir(&self.dir)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&sidecar_partial);
            let _ = fs::remove_file(&self.final_path);
            return Err(Error::storage(
                "cannot write sidecar manifest",
                &sidecar_path,
                e,
            ));
        }
        Ok(())
    }
}

impl Drop for LocalSink {
    fn drop(&mut self) {
        // Not committed (error or panic): remove the partial file so nothing half-written stays around.
        if (self.out.take().is_some() || self.partial.exists())
            && let Err(e) = fs::remove_file(&self.partial)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(file = %self.partial.display(), error = %e, "could not remove partial archive");
        }
    }
}
