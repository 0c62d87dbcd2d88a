//! `verify` against damaged and hostile archives: nothing is trusted that does not match its manifest.

use std::path::Path;

use sha2::Digest;

use crate::helpers::*;

fn one_backup() -> (TestDb, tempfile::TempDir, String) {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(backup_cmd(&db, dir.path()).args(["--chunk-size", "64KiB"])).ok();
    let name = archives(dir.path()).pop().unwrap();
    (db, dir, name)
}

fn verify(dir: &Path, name: &str) -> Run {
    run(bin().env("BACKUP_DIR", dir).args(["verify", name]))
}

#[test]
fn one_flipped_byte_fails_verification() {
    let (_db, dir, name) = one_backup();
    let path = dir.path().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    verify(dir.path(), &name)
        .failed(1)
        .says("does not match its sidecar");
}

#[test]
fn a_truncated_archive_fails_verification() {
    let (_db, dir, name) = one_backup();
    let path = dir.path().join(&name);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    verify(dir.path(), &name).failed(1).says("truncated");
}

#[test]
fn an_archive_without_its_sidecar_is_not_listed_and_verify_calls_it_incomplete() {
    let (_db, dir, name) = one_backup();
    std::fs::remove_file(dir.path().join(format!("{name}.manifest.json"))).unwrap();
    assert!(list_json(dir.path()).is_empty());
    verify(dir.path(), &name)
        .failed(1)
        .says("sidecar manifest is missing");
    verify(dir.path(), "latest")
        .failed(1)
        .says("no backup at all");
}

/// Writes a hostile archive plus a sidecar whose whole-file checksum matches it, so that only the
/// content checks stand between it and a restore.
fn plant(
    dir: &Path,
    build: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>),
) -> String {
    let name = "eternia-backup-20260101-000000.tar.gz".to_owned();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    build(&mut b);
    let bytes = b.into_inner().unwrap().finish().unwrap();
    std::fs::write(dir.join(&name), &bytes).unwrap();
    let sidecar = serde_json::json!({
        "manifest": {
            "format_version": 1, "tool_version": "0.1.0", "name": name, "created": "2026-01-01T00:00:00Z",
            "compression": "gzip", "encrypted": false,
            "database": {"name": "app", "server_version": "15", "dump_format": "custom", "dump_bytes": 4, "chunks": 1, "tables": []},
            "kubernetes": null,
            "entries": [{"path": "database/pgdump.000001", "size": 4, "sha256": hex::encode(sha2::Sha256::digest(b"PGDM"))}]
        },
        "archive": {"file": name, "size": bytes.len(), "sha256": hex::encode(sha2::Sha256::digest(&bytes))}
    });
    std::fs::write(
        dir.join(format!("{name}.manifest.json")),
        serde_json::to_vec(&sidecar).unwrap(),
    )
    .unwrap();
    name
}

fn file_entry(b: &mut tar::Builder<impl std::io::Write>, path: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn verify_refuses_parent_directory_paths() {
    let dir = tempdir();
    let name = plant(dir.path(), |b| {
        file_entry(b, b"../../etc/cron.d/evil", b"x")
    });
    verify(dir.path(), &name).failed(1).says("unsafe path");
}

#[test]
fn verify_refuses_absolute_paths() {
    let dir = tempdir();
    let name = plant(dir.path(), |b| file_entry(b, b"/etc/passwd", b"x"));
    verify(dir.path(), &name).failed(1).says("unsafe path");
}

#[test]
fn verify_refuses_symlinks_and_devices() {
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Block,
        tar::EntryType::Link,
    ] {
        let dir = tempdir();
        let name = plant(dir.path(), |b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_path("database/pgdump.000001").unwrap();
            if kind != tar::EntryType::Block {
                h.set_link_name("/etc/shadow").unwrap();
            }
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        });
        verify(dir.path(), &name)
            .failed(1)
            .says("links and devices are refused");
    }
}

#[test]
fn verify_refuses_entries_missing_from_the_manifest_and_a_missing_manifest() {
    let dir = tempdir();
    let name = plant(dir.path(), |b| {
        file_entry(b, b"database/pgdump.000001", b"PGDM");
        file_entry(b, b"kubernetes/x/Secret/injected.yaml", b"kind: Secret");
    });
    verify(dir.path(), &name)
        .failed(1)
        .says("not listed in the manifest");

    let dir = tempdir();
    let name = plant(dir.path(), |b| {
        file_entry(b, b"database/pgdump.000001", b"PGDM")
    });
    verify(dir.path(), &name)
        .failed(1)
        .says("manifest.json is missing");
}

/// `verify` of `name` with at most `limit` bytes of data memory (RLIMIT_DATA: heap and anonymous maps).
fn verify_with_memory_limit(dir: &Path, name: &str, limit: u64) -> Run {
    use std::os::unix::process::CommandExt;
    let mut cmd = bin();
    cmd.env("BACKUP_DIR", dir).args(["verify", name]);
    // SAFETY: setrlimit is async-signal-safe and only affects the child about to exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run(&mut cmd)
}

#[test]
fn a_gigabyte_long_name_header_is_refused_unread_within_a_small_memory_limit() {
    let dir = tempdir();
    let name = plant(dir.path(), |b| {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(4 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        // 4 GiB of name, a few MiB once compressed: reading it whole needs 4 GiB of memory.
        b.append(&h, std::io::Read::take(std::io::repeat(b'a'), 4 << 30))
            .unwrap();
        file_entry(b, b"database/pgdump.000001", b"PGDM");
    });
    verify_with_memory_limit(dir.path(), &name, 1 << 30)
        .failed(1)
        .says("long-name header of 4294967296 bytes");
}

#[test]
fn a_pax_header_is_refused_unread() {
    let dir = tempdir();
    let name = plant(dir.path(), |b| {
        let mut h = tar::Header::new_ustar();
        h.set_path("pax_header").unwrap();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(1 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, std::io::Read::take(std::io::repeat(b'a'), 1 << 20))
            .unwrap();
        file_entry(b, b"database/pgdump.000001", b"PGDM");
    });
    verify(dir.path(), &name).failed(1).says("never writes");
}

#[test]
fn an_oversized_sidecar_is_refused_unread() {
    let (_db, dir, name) = one_backup();
    let sidecar = dir.path().join(format!("{name}.manifest.json"));
    let mut bytes = std::fs::read(&sidecar).unwrap();
    bytes.extend(std::iter::repeat_n(b' ', 17 << 20));
    std::fs::write(&sidecar, bytes).unwrap();
    verify(dir.path(), &name)
        .failed(1)
        .says("larger than 16 MiB");
}
