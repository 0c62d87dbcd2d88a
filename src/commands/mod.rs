//! One module per subcommand: each takes typed arguments, does the work through the library, and
//! returns what it did.

pub mod backup;
pub mod list;
pub mod prune;
pub mod restore;
pub mod verify;
