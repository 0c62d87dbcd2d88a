//! Reads an archive back and checks it against the manifest it is expected to carry: every entry's size
//! and SHA-256, chunk order, `manifest.json` last and equal to the sidecar's. Refuses absolute paths,
//! `..`, links, devices and duplicates. Streams: memory stays bounded whatever the declared sizes. The tar
//! stream is read raw, so a GNU long-name header is sized before it is read (the tar crate would read any
//! declared size into memory) and PAX headers, which eternia-backup never writes, are refused.

use std::collections::HashSet;
use std::io::{self, Read};

use super::codec::HashingReader;
use super::manifest::{MANIFEST_ENTRY, MAX_MANIFEST_BYTES, Manifest};
use crate::error::{Error, Result};

/// The longest entry name a GNU long-name header may carry (our longest: a Kubernetes object path).
const MAX_LONG_NAME: u64 = 4096;

/// Sees each entry's bytes while they are checked, on the checking thread (restore keeps the objects
/// and globals, and the streamed load takes the dump, this way). Whatever it does not read is read and
/// hashed after it.
pub trait Visit: Send + 'static {
    fn entry(&mut self, path: &str, r: &mut dyn Read) -> io::Result<()>;
}

/// Checks without looking at the contents.
impl Visit for () {
    fn entry(&mut self, _: &str, _: &mut dyn Read) -> io::Result<()> {
        Ok(())
    }
}

/// What a successful walk saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkSummary {
    pub entries: usize,
    pub bytes: u64,
}

/// A path inside an archive is safe when it is relative, has only normal components and no NUL.
pub fn is_safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// How much of each entry a walk checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryCheck {
    /// Its size and SHA-256 against the manifest.
    Checksum,
    /// Its size only: for a second read of an archive whose entries one walk checked already, and whose
    /// whole-file SHA-256 proves this read sees the same bytes.
    SizeOnly,
}

/// Walks the decoded tar stream, calling `visit` with each checked entry's reader (the visitor may read
/// all, some or none of it; the rest is drained and hashed). Any mismatch is an error naming the entry.
pub fn walk<R: Read>(
    archive_name: &str,
    decoded: R,
    expected: &Manifest,
    visit: impl FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> Result<WalkSummary> {
    walk_checking(archive_name, decoded, expected, EntryCheck::Checksum, visit)
}

/// [`walk`], checking each entry as `check` says (the layout, names, order and sizes always).
pub fn walk_checking<R: Read>(
    archive_name: &str,
    decoded: R,
    expected: &Manifest,
    check: EntryCheck,
    mut visit: impl FnMut(&str, &mut dyn Read) -> io::Result<()>,
) -> Result<WalkSummary> {
    let bad = |problem: String| Error::archive(archive_name, problem);
    let mut tar = tar::Archive::new(decoded);
    let mut seen = HashSet::new();
    let mut manifest_seen = false;
    let mut next_chunk = vec![1u32; expected.databases().count()];
    let mut bytes = 0u64;

    let entries = tar
        .entries()
        .map_err(|e| bad(format!("cannot read the tar stream: {e}")))?
        .raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| bad(format!("truncated or corrupted tar stream: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname() {
            let size = entry.size();
            if size > MAX_LONG_NAME || long_name.is_some() {
                return Err(bad(format!(
                    "a GNU long-name header of {size} bytes{}: refused before reading it (names are at most \
                     {MAX_LONG_NAME} bytes, one header per entry)",
                    if long_name.is_some() {
                        " follows another"
                    } else {
                        ""
                    }
                )));
            }
            let mut name = Vec::new();
            (&mut entry)
                .take(MAX_LONG_NAME)
                .read_to_end(&mut name)
                .map_err(|e| bad(format!("reading a long-name header: {e}")))?;
            while name.last() == Some(&0) {
                name.pop();
            }
            long_name = Some(name);
            continue;
        }
        if kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longlink()
        {
            return Err(bad(format!(
                "the archive has a {kind:?} header, which eternia-backup never writes: refused unread"
            )));
        }
        let raw_path = match long_name.take() {
            Some(n) => n,
            None => entry.path_bytes().into_owned(),
        };
        let path = String::from_utf8(raw_path)
            .map_err(|_| bad("an entry has a path that is not UTF-8".into()))?;
        if !kind.is_file() {
            return Err(bad(format!(
                "entry {path:?} is a {kind:?}, not a regular file: links and devices are refused"
            )));
        }
        if !is_safe_path(&path) {
            return Err(bad(format!(
                "entry {path:?} has an unsafe path (absolute, `..` or empty component)"
            )));
        }
        if manifest_seen {
            return Err(bad(format!(
                "entry {path:?} comes after manifest.json, which must be last"
            )));
        }
        if !seen.insert(path.clone()) {
            return Err(bad(format!("entry {path:?} appears twice")));
        }
        if path == MANIFEST_ENTRY {
            manifest_seen = true;
            let mut json = Vec::new();
            (&mut entry)
                .take(MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut json)
                .map_err(|e| bad(format!("reading manifest.json: {e}")))?;
            if json.len() as u64 > MAX_MANIFEST_BYTES {
                return Err(bad("manifest.json is larger than 16 MiB".into()));
            }
            let inner: Manifest = serde_json::from_slice(&json)
                .map_err(|e| bad(format!("manifest.json is not a valid manifest: {e}")))?;
            if &inner != expected {
                return Err(bad(
                    "manifest.json inside the archive differs from the sidecar manifest".into(),
                ));
            }
            continue;
        }
        let Some(want) = expected.entries.iter().find(|d| d.path == path) else {
            return Err(bad(format!("entry {path:?} is not listed in the manifest")));
        };
        if let Some((db, n)) = expected.chunk_of(&path) {
            if n != next_chunk[db] {
                return Err(bad(format!(
                    "dump chunk {path:?} is out of order: expected chunk {}",
                    next_chunk[db]
                )));
            }
            next_chunk[db] += 1;
        }
        if entry.size() != want.size {
            return Err(bad(format!(
                "entry {path:?} is {} bytes, the manifest says {}",
                entry.size(),
                want.size
            )));
        }
        let mut reading = match check {
            EntryCheck::Checksum => Reading::Hashed(HashingReader::new(&mut entry)),
            EntryCheck::SizeOnly => Reading::Counted(&mut entry, 0),
        };
        visit(&path, &mut reading).map_err(|e| bad(format!("reading entry {path:?}: {e}")))?;
        io::copy(&mut reading, &mut io::sink()).map_err(|e| {
            bad(format!(
                "truncated or corrupted data in entry {path:?}: {e}"
            ))
        })?;
        let (n, sha) = match reading {
            Reading::Hashed(h) => {
                let (n, sha) = h.finish();
                (n, Some(sha))
            }
            Reading::Counted(_, n) => (n, None),
        };
        if n != want.size {
            return Err(bad(format!(
                "entry {path:?} is truncated: {n} of {} bytes",
                want.size
            )));
        }
        if sha.is_some_and(|sha| sha != want.sha256) {
            return Err(bad(format!("checksum mismatch in entry {path:?}")));
        }
        bytes += n;
    }
    if !manifest_seen {
        return Err(bad(
            "manifest.json is missing: the archive is truncated".into()
        ));
    }
    if let Some(missing) = expected.entries.iter().find(|d| !seen.contains(&d.path)) {
        return Err(bad(format!(
            "entry {:?} listed in the manifest is missing",
            missing.path
        )));
    }
    for (db, next) in expected.databases().zip(next_chunk) {
        if next - 1 != db.chunks {
            return Err(bad(format!(
                "the archive has {} dump chunks of database {}, the manifest says {}",
                next - 1,
                db.name,
                db.chunks
            )));
        }
    }
    Ok(WalkSummary {
        entries: seen.len(),
        bytes,
    })
}

/// An entry read with its SHA-256, or only counted.
enum Reading<'a, R: Read> {
    Hashed(HashingReader<&'a mut R>),
    Counted(&'a mut R, u64),
}

impl<R: Read> Read for Reading<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Reading::Hashed(h) => h.read(buf),
            Reading::Counted(r, n) => {
                let got = r.read(buf)?;
                *n += got as u64;
                Ok(got)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_path;

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(is_safe_path("database/pgdump.000001"));
        assert!(is_safe_path("kubernetes/ns/ConfigMap/app.yaml"));
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
        ] {
            assert!(!is_safe_path(p), "{p}");
        }
    }
}
