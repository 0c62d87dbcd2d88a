//! Arbitrary bytes as the custom-format dump the streamed load reads, in pieces of the sizes the first
//! byte picks: the loader parses them before any checksum is known, so it must give events or an error,
//! never panic, and every event must lie inside the piece it came in.
#![no_main]

use eternia_backup::postgres::stream_load::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, dump)) = data.split_first() else {
        return;
    };
    let _ = scan(dump, usize::from(piece) + 1);
});
