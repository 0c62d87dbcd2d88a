//! Archive file names: `<prefix>-YYYYMMDD-HHMMSS.tar.gz` (or `.tar.zst`), `.age` appended when encrypted.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Compression of the tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => ".tar.gz",
            Compression::Zstd => ".tar.zst",
        }
    }

    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 1,
            Compression::Zstd => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

pub const SIDECAR_SUFFIX: &str = ".manifest.json";
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The dump files older versions' `--jobs` restores wrote on the backup volume
/// (`.eternia-restore-<pid>.dump`): one a killed restore left behind is removed by `prune`.
const SCRATCH_DUMP_PREFIX: &str = ".eternia-restore-";
const SCRATCH_DUMP_SUFFIX: &str = ".dump";

/// True for a scratch dump's name, e.g. one a killed restore left behind.
pub fn is_scratch_dump_name(file: &str) -> bool {
    file.strip_prefix(SCRATCH_DUMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(SCRATCH_DUMP_SUFFIX))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

const STAMP: &str = "%Y%m%d-%H%M%S";

/// Names carry one-second stamps: a run that finds this second's name taken sleeps into the next one
/// rather than ever reuse it.
pub async fn sleep_into_next_second(now: Timestamp) {
    let into = 1000 - u64::from(now.subsec_millisecond().unsigned_abs()) + 5;
    tokio::time::sleep(std::time::Duration::from_millis(into)).await;
}

/// A parsed archive name. Only names of this shape belong to us: everything else in a backup location is
/// left alone by `list` and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveName {
    pub prefix: String,
    pub created: Timestamp,
    pub compression: Compression,
    pub encrypted: bool,
    /// A restore's safety backup: `<prefix>-safety-<stamp>…`, never `latest`, retained on its own.
    pub safety: bool,
}

/// What sets a safety backup's name apart: `<prefix>-safety-YYYYMMDD-HHMMSS.tar.gz`.
const SAFETY_TAG: &str = "safety-";

impl ArchiveName {
    pub fn new(
        prefix: &str,
        created: Timestamp,
        compression: Compression,
        encrypted: bool,
    ) -> Self {
        // Names have one-second resolution: drop the sub-second part so the name round-trips.
        let created =
            Timestamp::from_second(created.as_second()).expect("whole seconds of a valid time");
        ArchiveName {
            prefix: prefix.to_owned(),
            created,
            compression,
            encrypted,
            safety: false,
        }
    }

    /// The same name, as a restore's safety backup.
    pub fn as_safety(self, safety: bool) -> Self {
        ArchiveName { safety, ..self }
    }

    pub fn file_name(&self) -> String {
        let stamp = self.created.strftime(STAMP);
        let age = if self.encrypted { ".age" } else { "" };
        let tag = if self.safety { SAFETY_TAG } else { "" };
        format!(
            "{}-{tag}{stamp}{}{age}",
            self.prefix,
            self.compression.extension()
        )
    }

    pub fn sidecar_name(&self) -> String {
        format!("{}{SIDECAR_SUFFIX}", self.file_name())
    }

    /// Parses `file` if it is an archive of `prefix`; `None` for anything else.
    pub fn parse(prefix: &str, file: &str) -> Option<Self> {
        let rest = file.strip_prefix(prefix)?.strip_prefix('-')?;
        let (rest, safety) = match rest.strip_prefix(SAFETY_TAG) {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (rest, encrypted) = match rest.strip_suffix(".age") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (stamp, compression) = if let Some(s) = rest.strip_suffix(".tar.gz") {
            (s, Compression::Gzip)
        } else if let Some(s) = rest.strip_suffix(".tar.zst") {
            (s, Compression::Zstd)
        } else {
            return None;
        };
        if stamp.len() != 15
            || !stamp.bytes().enumerate().all(|(i, b)| {
                if i == 8 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
        {
            return None;
        }
        let dt = jiff::civil::DateTime::strptime(STAMP, stamp).ok()?;
        let created = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        Some(ArchiveName {
            prefix: prefix.to_owned(),
            created,
            compression,
            encrypted,
            safety,
        })
    }

    /// Parses a name given by a user, with a clear error when it is not one of ours.
    pub fn parse_user(prefix: &str, file: &str) -> Result<Self> {
        Self::parse(prefix, file).ok_or_else(|| {
            Error::config(format!(
                "{file:?} is not a backup name: expected {prefix}-YYYYMMDD-HHMMSS.tar.gz (or .tar.zst, \
                 optionally .age; a safety backup is {prefix}-safety-YYYYMMDD-HHMMSS.tar.gz), or `latest`"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_gzip_name_has_the_runbook_shape() {
        let n = ArchiveName::new(
            "eternia-backup",
            at("2026-11-27T02:00:05.123Z"),
            Compression::Gzip,
            false,
        );
        assert_eq!(n.file_name(), "eternia-backup-20261127-020005.tar.gz");
        assert_eq!(
            n.sidecar_name(),
            "eternia-backup-20261127-020005.tar.gz.manifest.json"
        );
    }

    #[test]
    fn names_round_trip_through_parse() {
        for (c, e) in [(Compression::Gzip, false), (Compression::Zstd, true)] {
            let n = ArchiveName::new("eternia-backup", at("2026-01-02T03:04:05Z"), c, e);
            assert_eq!(
                ArchiveName::parse("eternia-backup", &n.file_name()),
                Some(n)
            );
        }
    }

    #[test]
    fn a_safety_backup_has_its_own_name_that_round_trips() {
        let n = ArchiveName::new(
            "eternia-backup",
            at("2026-01-02T03:04:05Z"),
            Compression::Gzip,
            false,
        )
        .as_safety(true);
        assert_eq!(
            n.file_name(),
            "eternia-backup-safety-20260102-030405.tar.gz"
        );
        assert_eq!(
            ArchiveName::parse("eternia-backup", &n.file_name()),
            Some(n)
        );
        let plain =
            ArchiveName::parse("eternia-backup", "eternia-backup-20260102-030405.tar.gz").unwrap();
        assert!(!plain.safety);
    }

    #[test]
    fn foreign_and_partial_files_are_not_ours() {
        for f in [
            "eternia-backup-20261127-020005.tar.gz.partial",
            "eternia-backup-20261127-020005.tar.gz.manifest.json",
            "other-20261127-020005.tar.gz",
            "eternia-backup-2026112-020005.tar.gz",
            "eternia-backup-20261327-020005.tar.gz",
            "eternia-backup-20261127-020005.tar",
            "notes.txt",
        ] {
            assert_eq!(ArchiveName::parse("eternia-backup", f), None, "{f}");
        }
    }
}
