//! `eternia-backup list` (and the webhook's `GET /v1/backups`): the complete backups of every store,
//! as a table or JSON.

use crate::error::Result;
use crate::store::{StoreSet, StoredBackup};

/// Oldest first; a backup in both stores is listed once per store.
pub async fn run(stores: &StoreSet) -> Result<Vec<StoredBackup>> {
    stores.list().await
}

/// The JSON the CLI prints and `GET /v1/backups` answers.
pub fn render_json(backups: &[StoredBackup]) -> String {
    serde_json::to_string_pretty(backups).expect("backups serialize")
}
