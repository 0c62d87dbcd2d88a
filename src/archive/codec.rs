//! The byte layers under the tar stream: compression (gzip | zstd), optional age encryption, and a
//! SHA-256 + size counter over the bytes that reach storage.

use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::name::Compression;
use crate::error::{Error, Result};

/// Counts and hashes every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts and hashes every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads `input` to its end on a thread of its own, hashing every byte, and hands the bytes on through a
/// bounded channel (4 × 1 MiB), so the SHA-256 of the whole file runs beside the decoding instead of in
/// a pass of its own. The thread reads to the end even when the consumer stops early, so the whole-file
/// size and hash are always known; `join` the handle for them.
pub fn hash_alongside<R: Read + Send + 'static>(
    input: R,
) -> (
    ChannelReader,
    std::thread::JoinHandle<io::Result<(u64, String)>>,
) {
    let (feeder, reader) = channel();
    let handle = std::thread::spawn(move || {
        let mut hasher = Sha256::new();
        let total = pump(input, feeder, true, |b| hasher.update(b))?;
        Ok((total, hex::encode(hasher.finalize())))
    });
    (reader, handle)
}

/// Reads `input` on a thread of its own, 1 MiB ahead of the consumer (4 buffers), so whatever produces
/// the bytes (decryption, decompression) runs beside whatever consumes them (the checksums). Stops when
/// the consumer does.
pub fn read_ahead<R: Read + Send + 'static>(input: R) -> ChannelReader {
    let (feeder, reader) = channel();
    std::thread::spawn(move || pump(input, feeder, false, |_| {}));
    reader
}

/// Sends `input` in 1 MiB buffers, each seen by `each` first; a read error is sent on too. Without a
/// consumer left, goes on reading to the end only if `to_the_end`. Returns the bytes read.
fn pump<R: Read>(
    mut input: R,
    feeder: Feeder,
    to_the_end: bool,
    mut each: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut consumer = Some(feeder.tx);
    loop {
        // Buffers come back from the reader: fresh 1 MiB allocations cost a page fault every 4 KiB.
        let mut buf = feeder.spare.try_recv().unwrap_or_default();
        buf.resize(PIPE_BUFFER, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(tx) = &consumer {
                        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    }
                    return Err(e);
                }
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        buf.truncate(filled);
        each(&buf);
        total += filled as u64;
        if let Some(tx) = &consumer
            && tx.send(Ok(buf)).is_err()
        {
            // The consumer stopped (it found a problem).
            if !to_the_end {
                return Ok(total);
            }
            consumer = None;
        }
    }
}

const PIPE_BUFFER: usize = 1 << 20;
const PIPE_DEPTH: usize = 4;

/// The sending end of a [`ChannelReader`], with the buffers the reader is done with.
struct Feeder {
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

fn channel() -> (Feeder, ChannelReader) {
    let (tx, rx) = std::sync::mpsc::sync_channel(PIPE_DEPTH);
    let (back, spare) = std::sync::mpsc::sync_channel(PIPE_DEPTH + 1);
    (
        Feeder { tx, spare },
        ChannelReader {
            rx,
            back,
            current: Vec::new(),
            pos: 0,
        },
    )
}

/// The receiving end of [`hash_alongside`] and [`read_ahead`].
pub struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let done = std::mem::replace(&mut self.current, next);
                    let _ = self.back.try_send(done);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Parses age recipients (`age1…`), failing with the offending value named.
pub fn parse_recipients(values: &[String]) -> Result<Vec<age::x25519::Recipient>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            age::x25519::Recipient::from_str(v).map_err(|e| {
                Error::config(format!(
                    "invalid age recipient {v:?} in --encrypt-to/BACKUP_ENCRYPT_TO: {e}; expected a public \
                     key starting with age1 (see `age-keygen -y`)"
                ))
            })
        })
        .collect()
}

/// Reads an age identity file (as written by `age-keygen`). The file content never reaches an error.
pub fn load_identities(path: &std::path::Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned()).map_err(|e| {
        Error::Encryption(format!(
            "cannot read age identity file {}: {}; check AGE_IDENTITY_FILE / --identity-file and the mounted Secret",
            path.display(),
            e.kind()
        ))
    })?;
    file.into_identities().map_err(|_| {
        Error::Encryption(format!(
            "age identity file {} holds no usable identity; expected lines starting with AGE-SECRET-KEY-1",
            path.display()
        ))
    })
}

enum Encrypt<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Encrypt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encrypt::Plain(w) => w.write(buf),
            Encrypt::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encrypt::Plain(w) => w.flush(),
            Encrypt::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Encrypt<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Encrypt::Plain(w) => Ok(w),
            Encrypt::Age(w) => w.finish(),
        }
    }
}

/// compression ∘ encryption over `W`: what the tar builder writes into.
pub struct Encoder<W: Write> {
    inner: Compress<W>,
}

enum Compress<W: Write> {
    Gzip(flate2::write::GzEncoder<Encrypt<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Encrypt<W>>),
}

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub compression: Compression,
    pub level: i32,
    /// zstd worker threads (0 = compress on the calling thread).
    pub threads: u32,
    pub recipients: Vec<age::x25519::Recipient>,
}

impl<W: Write> Encoder<W> {
    pub fn new(out: W, opts: &EncodeOptions) -> io::Result<Self> {
        let enc = if opts.recipients.is_empty() {
            Encrypt::Plain(out)
        } else {
            let recipients = opts.recipients.iter().map(|r| r as &dyn age::Recipient);
            let encryptor = age::Encryptor::with_recipients(recipients)
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
            Encrypt::Age(encryptor.wrap_output(out)?)
        };
        let inner = match opts.compression {
            Compression::Gzip => {
                let level = opts.level.clamp(0, 9) as u32;
                Compress::Gzip(flate2::write::GzEncoder::new(
                    enc,
                    flate2::Compression::new(level),
                ))
            }
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(enc, opts.level)?;
                if opts.threads > 0 {
                    z.multithread(opts.threads)?;
                }
                Compress::Zstd(z)
            }
        };
        Ok(Encoder { inner })
    }

    /// Flushes every layer and returns the storage writer.
    pub fn finish(self) -> io::Result<W> {
        let enc = match self.inner {
            Compress::Gzip(g) => g.finish()?,
            Compress::Zstd(z) => z.finish()?,
        };
        enc.finish()
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Compress::Gzip(w) => w.write(buf),
            Compress::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Compress::Gzip(w) => w.flush(),
            Compress::Zstd(w) => w.flush(),
        }
    }
}

/// [`decoder`] with the identities read from `identity_file` when the archive is encrypted.
pub fn decoder_with_identity_file<'a, R: Read + Send + 'a>(
    input: R,
    compression: Compression,
    encrypted: bool,
    identity_file: Option<&std::path::Path>,
) -> Result<Box<dyn Read + Send + 'a>> {
    let identities = match identity_file {
        Some(path) if encrypted => load_identities(path)?,
        _ => Vec::new(),
    };
    decoder(input, compression, encrypted, &identities)
}

/// decryption ∘ decompression over a storage reader: what the tar reader reads from.
pub fn decoder<'a, R: Read + Send + 'a>(
    input: R,
    compression: Compression,
    encrypted: bool,
    identities: &[Box<dyn age::Identity>],
) -> Result<Box<dyn Read + Send + 'a>> {
    let plain: Box<dyn Read + Send + 'a> = if encrypted {
        if identities.is_empty() {
            return Err(Error::Encryption(
                "the archive is age-encrypted and no identity was given; set AGE_IDENTITY_FILE or pass \
                 --identity-file with the private key matching the backup's recipient"
                    .into(),
            ));
        }
        let decryptor = age::Decryptor::new(input).map_err(|e| {
            Error::Encryption(format!(
                "cannot read the age header: {e}; the file is not a valid age archive"
            ))
        })?;
        let reader = decryptor.decrypt(identities.iter().map(|i| i.as_ref())).map_err(|e| {
            Error::Encryption(format!(
                "cannot decrypt: {e}; check that AGE_IDENTITY_FILE holds the private key for one of the \
                 archive's recipients"
            ))
        })?;
        Box::new(reader)
    } else {
        Box::new(input)
    };
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(plain)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(plain)
                .map_err(|e| Error::Encryption(format!("zstd: {e}")))?,
        ),
    })
}
