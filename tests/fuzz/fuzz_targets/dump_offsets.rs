//! Arbitrary bytes as a custom-format dump written out for `pg_restore -j`, in pieces of the sizes the
//! first byte picks: the offset recorder reads them before any checksum is known, so it must give patches
//! or a reason, never panic, and every patch must lie inside the bytes it saw.
#![no_main]

use eternia_backup::postgres::dump_offsets::OffsetRecorder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, dump)) = data.split_first() else {
        return;
    };
    let mut recorder = OffsetRecorder::default();
    for p in dump.chunks(usize::from(piece) + 1) {
        recorder.feed(p);
    }
    if let Ok(patches) = recorder.patches() {
        for (at, bytes) in patches {
            assert!(at as usize + bytes.len() <= dump.len(), "a patch past the end");
        }
    }
});
