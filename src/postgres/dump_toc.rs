//! The header and table of contents of a custom-format dump (`ReadHead` and `ReadToc` in
//! `pg_backup_archiver.c`), read from the bytes at its start: what the streamed load
//! (`stream_load`) needs of each entry. Archive versions 1.12 (PostgreSQL 9.0) to 1.16 (PostgreSQL 17
//! and 18); anything else is refused with the reason, and the caller hands the dump to `pg_restore`.

const MAGIC: &[u8] = b"PGDMP";
/// `pg_dump`'s archive format code for the custom format.
const FORMAT_CUSTOM: u8 = 1;
pub(crate) const BLK_DATA: u8 = 1;
pub(crate) const BLK_BLOBS: u8 = 3;
const OFFSET_NOT_SET: u8 = 1;
const OFFSET_NO_DATA: u8 = 3;
/// Archive versions 1.12 (PostgreSQL 9.0) to 1.16 (PostgreSQL 17 and 18): the layouts read below.
const VERSIONS: std::ops::RangeInclusive<u32> = version(1, 12, 0)..=version(1, 16, 255);
/// A table of contents larger than this is not read (the file is left as it is): it is held in memory.
pub(crate) const MAX_TOC: usize = 64 << 20;

const fn version(major: u32, minor: u32, rev: u32) -> u32 {
    (major * 256 + minor) * 256 + rev
}

pub(crate) const SECTION_NONE: i64 = 1;
pub(crate) const SECTION_PRE_DATA: i64 = 2;
pub(crate) const SECTION_DATA: i64 = 3;
pub(crate) const SECTION_POST_DATA: i64 = 4;

/// Each entry's section as `pg_restore` counts them (`ProcessArchiveRestoreOptions`): one without a
/// section of its own (a comment, an ACL) is in the section of the one before it, pre-data at first.
pub(crate) fn sections(toc: &Toc) -> Vec<i64> {
    let mut current = SECTION_PRE_DATA;
    toc.entries
        .iter()
        .map(|e| {
            if e.section != SECTION_NONE {
                current = e.section;
            }
            current
        })
        .collect()
}

#[derive(Debug)]
pub(crate) struct Toc {
    pub(crate) int_size: usize,
    /// Where the data blocks start: the header and the table of contents are the bytes before.
    pub(crate) data_start: u64,
    pub(crate) entries: Vec<TocEntry>,
}

/// What the streamed load needs of a table-of-contents entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TocEntry {
    pub(crate) dump_id: i64,
    pub(crate) tag: String,
    /// `TABLE DATA`, `BLOBS`, `SEQUENCE SET`, `ENCODING`, …
    pub(crate) desc: String,
    pub(crate) namespace: String,
    /// The definition of the `ENCODING` and `STDSTRINGS` entries (the others' are not kept).
    pub(crate) defn: Option<String>,
    /// `COPY … FROM stdin;` of a `TABLE DATA` entry.
    pub(crate) copy_stmt: Option<String>,
    /// Whether the dump has a data block for it.
    pub(crate) has_data: bool,
    /// 1 none, 2 pre-data, 3 data, 4 post-data (`teSection`).
    pub(crate) section: i64,
    /// The dump ids of the entries it depends on.
    pub(crate) deps: Vec<i64>,
}

#[derive(Debug)]
pub(crate) enum Stop {
    /// The table of contents goes on past the bytes seen so far.
    NeedMore,
    Unsupported(String),
}

/// A cursor over the start of the file.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    int_size: usize,
}

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::NeedMore)?;
        if end > self.b.len() {
            return Err(Stop::NeedMore);
        }
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        Ok(self.bytes(1)?[0])
    }

    /// `WriteInt`: a sign byte, then `int_size` bytes of magnitude, least significant first.
    fn int(&mut self) -> Result<i64, Stop> {
        let n = self.int_size;
        let raw = self.bytes(1 + n)?;
        Ok(decode_int(raw))
    }

    /// `WriteStr`, read (`None`: NULL).
    fn str(&mut self) -> Result<Option<String>, Stop> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Stop::Unsupported("string too long".into()))?;
        if len > MAX_TOC {
            return Err(Stop::Unsupported(format!("a {len}-byte string")));
        }
        Ok(Some(String::from_utf8_lossy(self.bytes(len)?).into_owned()))
    }

    /// `WriteStr`: a length (-1 for NULL), then that many bytes. Returns whether it was NULL.
    fn skip_str(&mut self) -> Result<bool, Stop> {
        let len = self.int()?;
        if len < 0 {
            return Ok(true);
        }
        let len = usize::try_from(len).map_err(|_| Stop::Unsupported("string too long".into()))?;
        if len > MAX_TOC {
            return Err(Stop::Unsupported(format!("a {len}-byte string")));
        }
        self.bytes(len)?;
        Ok(false)
    }
}

pub(crate) fn decode_int(raw: &[u8]) -> i64 {
    let magnitude = raw[1..]
        .iter()
        .rev()
        .fold(0i64, |acc, &b| (acc << 8) | i64::from(b));
    if raw[0] != 0 {
        magnitude.wrapping_neg()
    } else {
        magnitude
    }
}

/// Reads the header and the table of contents (`ReadHead` and `ReadToc` in `pg_backup_archiver.c`).
pub(crate) fn parse_toc(b: &[u8]) -> Result<Toc, Stop> {
    let unsupported = |what: String| Err(Stop::Unsupported(what));
    let mut c = Cursor {
        b,
        pos: 0,
        int_size: 0,
    };
    if c.bytes(MAGIC.len())? != MAGIC {
        return unsupported("not a custom-format dump".into());
    }
    let (major, minor, rev) = (c.byte()?, c.byte()?, c.byte()?);
    let v = version(major.into(), minor.into(), rev.into());
    if !VERSIONS.contains(&v) {
        return unsupported(format!("archive version {major}.{minor}.{rev}"));
    }
    let int_size = usize::from(c.byte()?);
    let off_size = usize::from(c.byte()?);
    if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
        return unsupported(format!("integer size {int_size}, offset size {off_size}"));
    }
    c.int_size = int_size;
    if c.byte()? != FORMAT_CUSTOM {
        return unsupported("not the custom format".into());
    }
    if v >= version(1, 15, 0) {
        c.byte()?; // compression algorithm
    } else {
        c.int()?; // compression level
    }
    for _ in 0..7 {
        c.int()?; // creation time
    }
    for _ in 0..3 {
        c.skip_str()?; // database name, server version, pg_dump version
    }
    let count = c.int()?;
    if count < 0 {
        return unsupported(format!("{count} entries"));
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let dump_id = c.int()?;
        if dump_id <= 0 {
            return unsupported(format!("entry id {dump_id}"));
        }
        c.int()?; // had a data dumper
        c.skip_str()?; // table oid
        c.skip_str()?; // oid
        let tag = c.str()?.unwrap_or_default();
        let desc = c.str()?.unwrap_or_default();
        let section = c.int()?;
        let defn = c.str()?;
        c.skip_str()?; // drop statement
        let copy_stmt = c.str()?.filter(|s| !s.is_empty());
        let namespace = c.str()?.unwrap_or_default();
        c.skip_str()?; // tablespace
        if v >= version(1, 14, 0) {
            c.skip_str()?; // table access method
        }
        if v >= version(1, 16, 0) {
            c.int()?; // relkind
        }
        c.skip_str()?; // owner
        c.skip_str()?; // "false": WITH OIDS
        let mut deps = Vec::new();
        while let Some(dep) = c.str()? {
            // Dependencies, ending with NULL; pg_restore ignores one that is not a number.
            if let Ok(id) = dep.trim().parse() {
                deps.push(id);
            }
        }
        let flag = c.byte()?;
        if !(OFFSET_NOT_SET..=OFFSET_NO_DATA).contains(&flag) {
            return unsupported(format!("offset flag {flag} in entry {dump_id}"));
        }
        c.bytes(off_size)?;
        let keep_defn = matches!(desc.as_str(), "ENCODING" | "STDSTRINGS");
        entries.push(TocEntry {
            dump_id,
            tag,
            desc,
            namespace,
            defn: defn.filter(|_| keep_defn),
            copy_stmt,
            has_data: flag != OFFSET_NO_DATA,
            section,
            deps,
        });
    }
    Ok(Toc {
        int_size,
        data_start: c.pos as u64,
        entries,
    })
}
