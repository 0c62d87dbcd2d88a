//! `eternia-backup list`: complete backups as a table or JSON.

use crate::store::StoredBackup;

pub fn render_json(backups: &[StoredBackup]) -> String {
    serde_json::to_string_pretty(backups).expect("backups serialize")
}

pub fn render_table(backups: &[StoredBackup]) -> String {
    let mut out = format!(
        "{:<44} {:<20} {:>10} {:<11} {:<9} {}\n",
        "NAME", "CREATED (UTC)", "SIZE", "COMPRESSION", "ENCRYPTED", "LOCATION"
    );
    for b in backups {
        out.push_str(&format!(
            "{:<44} {:<20} {:>10} {:<11} {:<9} {}\n",
            b.name,
            b.created.strftime("%Y-%m-%d %H:%M:%S"),
            human_size(b.size),
            b.compression.as_str(),
            if b.encrypted { "yes" } else { "no" },
            b.location
        ));
    }
    if backups.is_empty() {
        out.push_str("(no complete backups)\n");
    }
    out
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
