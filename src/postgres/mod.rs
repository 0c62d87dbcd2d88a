//! PostgreSQL: which server (`target`), a consistent snapshot with row counts (`snapshot`), the streamed
//! `pg_dump` (`dump`) and the offsets that make its output restorable in parallel (`dump_offsets`), and
//! the restore side: `pg_restore` streamed or from a file, database create/rename/empty, row-count
//! checks (`restore`).

pub mod dump;
pub mod dump_offsets;
pub mod restore;
pub mod snapshot;
pub mod target;

pub use target::PgTarget;

/// Reads a child's stderr to the end (so the child never blocks on a full pipe) and keeps the last
/// `keep` bytes, for the error message.
fn stderr_tail(mut r: impl std::io::Read, keep: usize) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > keep * 2 {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    String::from_utf8_lossy(&tail).into_owned()
}
