//! The one error type of the command-line boundary. Every variant says what failed, where, and what to
//! check; none of them ever carries a secret (passwords, keys, Secret values).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, environment or values: exit code 2.
    #[error("configuration error: {0}")]
    Config(String),

    #[error(
        "backup already in progress: another eternia-backup holds the lock {}; wait for it to finish \
         (the lock is released automatically when that process exits)",
        lock.display()
    )]
    AlreadyRunning { lock: PathBuf },

    #[error("database {target}: {problem}; check: {hint}")]
    Database {
        target: String,
        problem: String,
        hint: String,
    },

    #[error(
        "pg_dump failed ({status}) on database {database} after {bytes} bytes: {stderr}; check: {hint}"
    )]
    Dump {
        database: String,
        status: String,
        bytes: u64,
        stderr: String,
        hint: String,
    },

    #[error("kubernetes: {what}: {problem}; check: {hint}")]
    Kubernetes {
        what: String,
        problem: String,
        hint: String,
    },

    /// A Kubernetes API call failed; the hint says what that call needs.
    #[error("kubernetes: {0}")]
    KubeCall(#[source] Box<crate::kube::error::CallError>),

    #[error("storage: {what} {}: {source}; check: {hint}", path.display())]
    Storage {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        hint: String,
    },

    /// An archive failed verification or could not be read: nothing was changed.
    #[error("archive {name}: {problem}; {hint}")]
    Archive {
        name: String,
        problem: String,
        hint: String,
    },

    #[error(
        "no backup {what} in {location}; run `eternia-backup list` to see the complete backups"
    )]
    NotFound { what: String, location: String },

    #[error("backup {backup} succeeded, but retention failed: {source}")]
    Retention {
        backup: String,
        #[source]
        source: Box<Error>,
    },

    #[error("S3 {op} {location}: {problem}; check: {hint}")]
    S3 {
        op: String,
        location: String,
        problem: String,
        hint: String,
    },

    /// The local backup is safe, the off-site copy is not: the job must still fail so the CronJob alerts.
    #[error(
        "backup {backup} is safe on the backup volume, but the off-site copy failed: {problem}; the next backup retries the upload"
    )]
    Offsite { backup: String, problem: String },

    #[error(
        "a restore is in progress: lease {lease} is held by {holder}; wait for it to finish (kubectl get lease -n <namespace>)"
    )]
    LeaseHeld { lease: String, holder: String },

    /// The restore's Lease was taken by another holder (or expired) while it ran: it stopped before the
    /// next step that would change anything.
    #[error(
        "the restore lost its lease {lease} (now held by {holder}) and stopped before changing anything more; \
         check the Kubernetes API server's availability and which restore holds the lease (kubectl get lease -n <namespace>)"
    )]
    LeaseLost { lease: String, holder: String },

    /// A scheduled backup found a restore running: not a failure (exit 0), so the CronJob does not alert.
    #[error(
        "backup skipped: a restore is in progress (lease {lease} held by {holder}); the next scheduled backup runs as usual"
    )]
    SkippedForRestore { lease: String, holder: String },

    #[error("restore failed at {step}: {problem}; check: {hint}")]
    Restore {
        step: String,
        problem: String,
        hint: String,
    },

    /// A step of a restore failed because of another error, kept as the cause.
    #[error("restore failed at {step}: {source}; check: {hint}")]
    RestoreStep {
        step: String,
        #[source]
        source: Box<Error>,
        hint: String,
    },

    /// `status` found a store that is not OK, or a failed last drill: exit 1, for a monitoring check.
    #[error(
        "backups need attention: {problems}; check the backup and drill CronJobs' last runs (kubectl get jobs)"
    )]
    Unhealthy { problems: String },

    /// SIGTERM: the Job's deadline passed, or its pod was deleted. Exit code 143.
    #[error(
        "stopped by SIGTERM (the Job's deadline passed, or the pod or Job was deleted) while {during}; \
         the files it was writing were removed"
    )]
    Stopped { during: String },

    #[error("encryption: {0}")]
    Encryption(String),
}

impl Error {
    /// The process exit code for this error (0 success, 1 failure, 2 usage or configuration).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            Error::SkippedForRestore { .. } => 0,
            Error::Stopped { .. } => 143,
            _ => 1,
        }
    }

    /// Which step failed, for a notification's "Step" field.
    pub fn step(&self) -> String {
        match self {
            Error::Config(_) => "configuration".into(),
            Error::Database { .. } => "database".into(),
            Error::Dump { .. } => "pg_dump".into(),
            Error::Kubernetes { what, .. } => what.clone(),
            Error::KubeCall(c) => c.what.clone(),
            Error::Storage { what, .. } => (*what).into(),
            Error::Archive { .. } => "archive".into(),
            Error::S3 { op, .. } => format!("S3 {op}"),
            Error::Restore { step, .. } | Error::RestoreStep { step, .. } => step.clone(),
            Error::Retention { .. } => "retention".into(),
            Error::Offsite { .. } => "off-site copy".into(),
            _ => "eternia-backup".into(),
        }
    }

    /// What to check, when the error says it apart from its message.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Database { hint, .. }
            | Error::Dump { hint, .. }
            | Error::Kubernetes { hint, .. }
            | Error::Storage { hint, .. }
            | Error::S3 { hint, .. }
            | Error::Restore { hint, .. }
            | Error::RestoreStep { hint, .. } => Some(hint),
            Error::KubeCall(c) => Some(&c.hint),
            Error::Archive { hint, .. } => Some(hint),
            _ => None,
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    pub(crate) fn storage(
        what: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let hint = storage_hint(&source);
        Error::Storage {
            what,
            path: path.into(),
            source,
            hint,
        }
    }

    pub(crate) fn archive(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Archive {
            name: name.into(),
            problem: problem.into(),
            hint: "the archive is corrupted or was tampered with: do not restore it, use an older backup \
                   (eternia-backup list) or the off-site copy"
                .into(),
        }
    }
}

/// What an operator should look at for a given I/O failure on the backup volume.
pub(crate) fn storage_hint(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "the backup directory exists and the PVC is mounted (BACKUP_DIR)".into(),
        PermissionDenied | ReadOnlyFilesystem => {
            "the backup volume is writable by this user (PVC mounted read-write, fsGroup)".into()
        }
        StorageFull | QuotaExceeded => {
            "PVC storage capacity: the volume is full; prune old backups or grow persistence.size"
                .into()
        }
        _ => "the backup volume (PVC) is healthy and has free space".into(),
    }
}
