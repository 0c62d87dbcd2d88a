//! Arbitrary bytes as a gzip archive against a fixed manifest (one dump chunk and the manifest): the
//! reader must refuse or pass, never panic, never allocate without bound.
#![no_main]

use std::io::Read;
use std::sync::OnceLock;

use eternia_backup::archive::codec::decoder;
use eternia_backup::archive::reader::walk;
use eternia_backup::archive::{Compression, Manifest};
use libfuzzer_sys::fuzz_target;

fn manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| serde_json::from_str(include_str!("../manifest.json")).expect("seed manifest"))
}

fuzz_target!(|data: &[u8]| {
    let (compression, body) = match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => (Compression::Zstd, rest),
        Some((_, rest)) => (Compression::Gzip, rest),
        None => return,
    };
    let Ok(d) = decoder(body, compression, false, &[]) else {
        return;
    };
    let _ = walk("fuzz.tar.gz", d, manifest(), |_, r| {
        std::io::copy(&mut r.take(16 << 20), &mut std::io::sink()).map(|_| ())
    });
});
