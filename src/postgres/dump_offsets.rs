//! Data offsets for a custom-format dump written out for `pg_restore -j`.
//!
//! `pg_dump` can only record where each table's data starts when it writes to a file it can seek in.
//! Every backup streams it through a pipe, so the table of contents says "position not set" for every
//! data entry, and each `pg_restore -j` worker then searches the file from the start for its table,
//! block by block (on the ~1 GB benchmark database: about a second more than with offsets).
//!
//! [`OffsetRecorder`] watches the dump go by while verification writes it to the volume: it reads the
//! table of contents (where each entry's offset field is), then follows the data blocks (where each
//! block starts). [`OffsetRecorder::patches`] then gives the in-place writes that fill the offsets in,
//! which is what `pg_dump` itself does when it can seek: same sizes, nothing moves. Anything it does not
//! recognise (an archive version it does not know, an unexpected block) means no patch at all: the file
//! stays as `pg_dump` wrote it, and `pg_restore` searches as before.

const MAGIC: &[u8] = b"PGDMP";
/// `pg_dump`'s archive format code for the custom format.
const FORMAT_CUSTOM: u8 = 1;
pub(crate) const BLK_DATA: u8 = 1;
pub(crate) const BLK_BLOBS: u8 = 3;
const OFFSET_NOT_SET: u8 = 1;
const OFFSET_SET: u8 = 2;
const OFFSET_NO_DATA: u8 = 3;
/// Archive versions 1.12 (PostgreSQL 9.0) to 1.16 (PostgreSQL 17 and 18): the layouts read below.
const VERSIONS: std::ops::RangeInclusive<u32> = version(1, 12, 0)..=version(1, 16, 255);
/// A table of contents larger than this is not read (the file is left as it is): it is held in memory.
pub(crate) const MAX_TOC: usize = 64 << 20;

const fn version(major: u32, minor: u32, rev: u32) -> u32 {
    (major * 256 + minor) * 256 + rev
}

/// Where a table-of-contents entry keeps its data offset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OffsetField {
    dump_id: i64,
    /// File position of the flag byte; the offset follows it.
    at: u64,
    flag: u8,
}

#[derive(Debug)]
pub(crate) struct Toc {
    pub(crate) int_size: usize,
    off_size: usize,
    fields: Vec<OffsetField>,
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
    let mut fields = Vec::new();
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
        while !c.skip_str()? {} // dependencies, ending with NULL
        let at = c.pos as u64;
        let flag = c.byte()?;
        if !(OFFSET_NOT_SET..=OFFSET_NO_DATA).contains(&flag) {
            return unsupported(format!("offset flag {flag} in entry {dump_id}"));
        }
        c.bytes(off_size)?;
        fields.push(OffsetField { dump_id, at, flag });
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
        });
    }
    Ok(Toc {
        int_size,
        off_size,
        fields,
        data_start: c.pos as u64,
        entries,
    })
}

/// Where the block scan is: what the next bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A block type byte (a block starts here).
    BlockType,
    /// The dump id of the block just started.
    BlockId { blobs: bool },
    /// A chunk length; 0 ends the table's data (or one large object).
    ChunkLen { blobs: bool },
    /// Chunk contents to pass over.
    Skip { left: u64, blobs: bool },
    /// The next large object's oid; 0 ends a BLOBS block.
    BlobOid,
}

/// Records, for a custom-format dump passing by, where each data block starts. Feed it every byte in
/// order; it keeps only the table of contents and a few bytes of state.
pub struct OffsetRecorder {
    pos: u64,
    head: Vec<u8>,
    next_try: usize,
    toc: Option<Toc>,
    step: Step,
    field: Vec<u8>,
    block_start: u64,
    blocks: Vec<(i64, u64)>,
    failed: Option<String>,
}

impl Default for OffsetRecorder {
    fn default() -> Self {
        OffsetRecorder {
            pos: 0,
            head: Vec::new(),
            next_try: 64 << 10,
            toc: None,
            step: Step::BlockType,
            field: Vec::new(),
            block_start: 0,
            blocks: Vec::new(),
            failed: None,
        }
    }
}

impl OffsetRecorder {
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.toc.is_some() {
            self.scan(data);
            return;
        }
        self.head.extend_from_slice(data);
        if self.head.len() < self.next_try {
            return;
        }
        self.try_toc();
    }

    fn try_toc(&mut self) {
        match parse_toc(&self.head) {
            Ok(toc) => {
                let head = std::mem::take(&mut self.head);
                self.pos = toc.data_start;
                self.block_start = toc.data_start;
                self.toc = Some(toc);
                let rest = &head[self.pos as usize..];
                self.scan(rest);
            }
            Err(Stop::NeedMore) if self.head.len() < MAX_TOC => {
                self.next_try = self.head.len() * 2;
            }
            Err(Stop::NeedMore) => self.failed = Some("the table of contents is too large".into()),
            Err(Stop::Unsupported(why)) => self.failed = Some(why),
        }
    }

    fn scan(&mut self, data: &[u8]) {
        let int_size = self.toc.as_ref().expect("toc read").int_size;
        let mut i = 0;
        while i < data.len() {
            if let Step::Skip { left, blobs } = self.step {
                let n = left.min((data.len() - i) as u64);
                i += n as usize;
                self.step = match left - n {
                    0 => Step::ChunkLen { blobs },
                    left => Step::Skip { left, blobs },
                };
                continue;
            }
            let need = if self.step == Step::BlockType {
                if self.field.is_empty() {
                    self.block_start = self.pos + i as u64;
                }
                1
            } else {
                1 + int_size
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
                (Step::BlockType, t) => {
                    self.failed = Some(format!("block type {t} at byte {}", self.block_start));
                    return;
                }
                (Step::BlockId { blobs }, id) => {
                    self.blocks.push((id, self.block_start));
                    if blobs {
                        Step::BlobOid
                    } else {
                        Step::ChunkLen { blobs }
                    }
                }
                (Step::ChunkLen { blobs }, 0) => {
                    if blobs {
                        Step::BlobOid
                    } else {
                        Step::BlockType
                    }
                }
                (Step::ChunkLen { blobs }, n) if n > 0 => Step::Skip {
                    left: n as u64,
                    blobs,
                },
                (Step::BlobOid, 0) => Step::BlockType,
                (Step::BlobOid, _) => Step::ChunkLen { blobs: true },
                (step, n) => {
                    self.failed = Some(format!("{n} in {step:?}"));
                    return;
                }
            };
        }
        self.pos += data.len() as u64;
    }

    /// The in-place writes (position, bytes) that set every data entry's offset, or why there are none.
    pub fn patches(mut self) -> Result<Vec<(u64, Vec<u8>)>, String> {
        if self.toc.is_none() && self.failed.is_none() {
            self.try_toc();
        }
        if let Some(why) = self.failed {
            return Err(why);
        }
        let toc = self
            .toc
            .ok_or("the dump ended inside its table of contents")?;
        if self.step != Step::BlockType || !self.field.is_empty() {
            return Err("the dump ended inside a data block".into());
        }
        let mut patches = Vec::with_capacity(self.blocks.len());
        let mut seen = std::collections::HashSet::new();
        for (id, start) in self.blocks {
            if !seen.insert(id) {
                return Err(format!("two data blocks for entry {id}"));
            }
            let field = toc.fields.iter().find(|f| f.dump_id == id).ok_or_else(|| {
                format!("a data block for entry {id}, which is not in the table of contents")
            })?;
            match field.flag {
                OFFSET_NOT_SET => {}
                OFFSET_SET => continue,
                _ => return Err(format!("a data block for entry {id}, listed without data")),
            }
            if toc.off_size < 8 && start >> (8 * toc.off_size) != 0 {
                return Err(format!(
                    "offset {start} does not fit in {} bytes",
                    toc.off_size
                ));
            }
            let mut bytes = vec![OFFSET_SET];
            bytes.extend_from_slice(&start.to_le_bytes()[..toc.off_size]);
            patches.push((field.at, bytes));
        }
        Ok(patches)
    }
}

/// The dump file for `pg_restore -j`, written through an [`OffsetRecorder`]: [`DumpFile::finish`] fills
/// the data offsets in (or leaves the file as `pg_dump` wrote it, saying why at debug level).
pub struct DumpFile {
    out: std::io::BufWriter<std::fs::File>,
    offsets: OffsetRecorder,
}

impl DumpFile {
    /// Creates the file with `size` bytes allocated on the volume: a volume without room fails here,
    /// before anything is written, and the writes that follow are cheaper.
    pub fn create(path: &std::path::Path, size: u64) -> std::io::Result<DumpFile> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::create(path)?;
        if size > 0 {
            let len = libc::off_t::try_from(size).unwrap_or(libc::off_t::MAX);
            // SAFETY: a valid open file descriptor; fallocate only changes the file's allocation (and
            // with KEEP_SIZE not its length: the file is as long as what is written).
            if unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) } != 0
            {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                    return Err(e);
                }
            }
        }
        Ok(DumpFile {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            offsets: OffsetRecorder::default(),
        })
    }

    /// Flushes the file and writes the offsets. No fsync: a scratch file read back at once by
    /// pg_restore (a crash starts the restore over).
    pub fn finish(self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        match self.offsets.patches() {
            Ok(patches) => {
                for (at, bytes) in &patches {
                    file.write_all_at(bytes, *at)?;
                }
                tracing::debug!(
                    entries = patches.len(),
                    "data offsets written into the dump's table of contents"
                );
            }
            Err(why) => {
                tracing::debug!(%why, "dump left without data offsets: pg_restore searches for each table's data")
            }
        }
        Ok(())
    }
}

impl std::io::Write for DumpFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.offsets.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A [`DumpFile`] written on a thread of its own, so writing the file runs beside the verification that
/// reads the dump out of the archive.
pub struct DumpWriter {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

const WRITE_BUFFER: usize = 1 << 20;

impl DumpWriter {
    pub fn create(path: &std::path::Path, size: u64) -> std::io::Result<DumpWriter> {
        use std::io::Write;
        let mut file = DumpFile::create(path, size)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            for buf in rx {
                file.write_all(&buf)?;
                let _ = give_back.try_send(buf);
            }
            file.finish()
        });
        Ok(DumpWriter {
            tx: Some(tx),
            spare,
            thread: Some(thread),
        })
    }

    /// Copies `r` to its end into the file.
    pub fn copy_from(&mut self, r: &mut dyn std::io::Read) -> std::io::Result<()> {
        use std::io::Read;
        loop {
            let mut buf = self
                .spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(WRITE_BUFFER));
            buf.clear();
            if (&mut *r).take(WRITE_BUFFER as u64).read_to_end(&mut buf)? == 0 {
                return Ok(());
            }
            let sent = self.tx.as_ref().map(|tx| tx.send(buf));
            if !matches!(sent, Some(Ok(()))) {
                // The writer stopped: its error says why.
                return Err(self
                    .join()
                    .err()
                    .unwrap_or_else(|| std::io::Error::other("the dump writer stopped")));
            }
        }
    }

    /// Waits for the last write and the offsets.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.join()
    }

    fn join(&mut self) -> std::io::Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().expect("dump writer thread"),
            None => Err(std::io::Error::other("the dump writer stopped")),
        }
    }
}

/// A verification that failed halfway still waits for the writer, so nothing writes after it returns.
impl Drop for DumpWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&v.unsigned_abs().to_le_bytes()[..4]);
        out
    }

    fn str_(s: Option<&str>) -> Vec<u8> {
        match s {
            None => int(-1),
            Some(s) => [int(s.len() as i64), s.as_bytes().to_vec()].concat(),
        }
    }

    /// A minimal archive of version 1.14 with a table's data and a BLOBS entry, as pg_dump writes it
    /// to a pipe; returns the bytes and the positions of the two offset flags.
    fn sample() -> (Vec<u8>, [usize; 3]) {
        let mut b = b"PGDMP".to_vec();
        b.extend([1, 14, 0, 4, 8, FORMAT_CUSTOM]);
        b.extend(int(0));
        for t in [1, 2, 3, 4, 5, 2026, 0] {
            b.extend(int(t));
        }
        for s in ["db", "15.0", "15.0"] {
            b.extend(str_(Some(s)));
        }
        b.extend(int(3));
        let mut flags = [0; 3];
        for (k, (id, desc, flag)) in [
            (7, "TABLE", OFFSET_NO_DATA),
            (8, "TABLE DATA", OFFSET_NOT_SET),
            (9, "BLOBS", OFFSET_NOT_SET),
        ]
        .into_iter()
        .enumerate()
        {
            b.extend(int(id));
            b.extend(int(1));
            for s in [Some("1259"), Some("0"), Some("t"), Some(desc)] {
                b.extend(str_(s));
            }
            b.extend(int(2));
            for s in [Some(""), Some(""), None, Some("public"), Some("")] {
                b.extend(str_(s));
            }
            b.extend(str_(Some("heap")));
            b.extend(str_(Some("postgres")));
            b.extend(str_(Some("false")));
            b.extend(str_(Some("6")));
            b.extend(str_(None));
            flags[k] = b.len();
            b.push(flag);
            b.extend([0; 8]);
        }
        // table data: two chunks
        b.push(BLK_DATA);
        b.extend(int(8));
        for chunk in ["1\ta\n", "2\tb\n"] {
            b.extend(int(chunk.len() as i64));
            b.extend(chunk.as_bytes());
        }
        b.extend(int(0));
        // blobs: one large object of one chunk
        b.push(BLK_BLOBS);
        b.extend(int(9));
        b.extend(int(16400));
        b.extend(int(5));
        b.extend(b"hello");
        b.extend(int(0));
        b.extend(int(0));
        (b, flags)
    }

    fn record(bytes: &[u8], piece: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let mut r = OffsetRecorder::default();
        for p in bytes.chunks(piece) {
            r.feed(p);
        }
        r.patches()
    }

    #[test]
    fn every_data_entry_gets_the_position_of_its_block_whatever_the_write_sizes() {
        let (bytes, flags) = sample();
        let data = flags[2] + 9;
        let blobs = data + 1 + 5 + (5 + 4) * 2 + 5;
        for piece in [1, 2, 3, 7, 64, 1 << 20] {
            let patches = record(&bytes, piece).unwrap();
            assert_eq!(
                patches,
                vec![
                    (
                        flags[1] as u64,
                        [vec![OFFSET_SET], (data as u64).to_le_bytes().to_vec()].concat()
                    ),
                    (
                        flags[2] as u64,
                        [vec![OFFSET_SET], (blobs as u64).to_le_bytes().to_vec()].concat()
                    ),
                ],
                "written {piece} bytes at a time"
            );
        }
    }

    #[test]
    fn anything_unexpected_means_no_patch_at_all() {
        let (bytes, flags) = sample();
        let cut = record(&bytes[..bytes.len() - 3], 4096).unwrap_err();
        assert!(cut.contains("inside a data block"), "{cut}");
        let mut other_version = bytes.clone();
        other_version[6] = 17;
        assert!(
            record(&other_version, 4096)
                .unwrap_err()
                .contains("version 1.17.0")
        );
        let mut bad_block = bytes.clone();
        bad_block[flags[2] + 9] = 2;
        assert!(
            record(&bad_block, 4096)
                .unwrap_err()
                .contains("block type 2")
        );
        let mut bad_flag = bytes.clone();
        bad_flag[flags[0]] = 9;
        assert!(
            record(&bad_flag, 4096)
                .unwrap_err()
                .contains("offset flag 9")
        );
        assert!(
            record(&bytes[..100], 4096)
                .unwrap_err()
                .contains("table of contents")
        );
    }

    #[test]
    fn damaged_dumps_never_panic_the_recorder() {
        let (bytes, _) = sample();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() as usize % b.len();
                b[i] = next() as u8;
            }
            b.truncate(b.len() - next() as usize % 8);
            let _ = record(&b, 1 + next() as usize % 64);
        }
    }
}
