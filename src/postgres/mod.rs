//! PostgreSQL: which server (`target`), a consistent snapshot with row counts (`snapshot`), and the
//! streamed `pg_dump` (`dump`).

pub mod dump;
pub mod dump_offsets;
pub mod restore;
pub mod snapshot;
pub mod target;

pub use target::PgTarget;
