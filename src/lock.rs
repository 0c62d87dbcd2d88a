//! One backup (or prune) at a time per backup directory: an advisory lock on `.eternia-backup.lock`,
//! released by the kernel when the process exits, however it exits.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = ".eternia-backup.lock";

#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::storage("cannot open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::AlreadyRunning { lock: path }),
            Err(TryLockError::Error(e)) => Err(Error::storage("cannot lock", &path, e)),
        }
    }
}
