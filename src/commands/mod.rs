//! The operations, one module each. Each takes its typed configuration and the stores (and the
//! cluster, when it talks to Kubernetes), does the work through the library, and returns a report of
//! what it did; printing it is the command line's business.

pub mod backup;
pub mod drill;
pub mod hooks;
pub mod list;
pub mod prune;
pub mod restore;
pub mod status;
pub mod verify;
pub mod which_databases;
