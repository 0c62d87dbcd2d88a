use std::io::Read;

use secrecy::ExposeSecret;

use crate::helpers::*;

fn keypair(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let id = age::x25519::Identity::generate();
    let path = dir.join("identity.txt");
    std::fs::write(
        &path,
        format!("# test key\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    (id.to_public().to_string(), path)
}

#[test]
fn an_encrypted_backup_needs_only_the_public_key_and_decrypts_with_the_identity() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let keys = tempdir();
    let (recipient, identity) = keypair(keys.path());

    run(backup_cmd(&db, dir.path()).args(["--encrypt-to", &recipient])).ok();

    let name = archives(dir.path()).pop().unwrap();
    assert!(name.ends_with(".tar.gz.age"), "{name}");
    let bytes = std::fs::read(dir.path().join(&name)).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    assert_eq!(list_json(dir.path())[0]["encrypted"], true);

    // Without the identity only the whole-file checksum can be checked, and verify says so.
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok()
    .says("contents not checked");
    // With it, every entry.
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .env("AGE_IDENTITY_FILE", &identity)
        .args(["verify", "latest"]))
    .ok()
    .says("entries verified");

    // And the plain tar.gz is inside.
    let ids = age::IdentityFile::from_file(identity.to_string_lossy().into_owned())
        .unwrap()
        .into_identities()
        .unwrap();
    let dec = age::Decryptor::new(&bytes[..]).unwrap();
    let mut plain = Vec::new();
    dec.decrypt(ids.iter().map(|i| i.as_ref()))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(&plain[..2], &[0x1f, 0x8b], "a gzip stream");
}

#[test]
fn verifying_with_the_wrong_identity_fails_and_names_the_key_to_check() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let keys = tempdir();
    let (recipient, _) = keypair(keys.path());
    let other = tempdir();
    let (_, wrong_identity) = keypair(other.path());
    run(backup_cmd(&db, dir.path()).args(["--encrypt-to", &recipient])).ok();

    let r = run(bin()
        .env("BACKUP_DIR", dir.path())
        .env("AGE_IDENTITY_FILE", &wrong_identity)
        .args(["verify", "latest"]))
    .failed(1);
    r.says("cannot decrypt");
    r.says("AGE_IDENTITY_FILE");
    assert!(
        !r.stderr.contains("AGE-SECRET-KEY"),
        "the identity leaked: {}",
        r.stderr
    );
}
