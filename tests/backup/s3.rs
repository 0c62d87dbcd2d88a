//! The off-site copy against a real S3 server (Garage, started by scripts/test.sh; see
//! scripts/garage.sh). Each test works under its own key prefix.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

#[derive(Clone)]
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access: String,
    pub secret: String,
    pub prefix: String,
}

/// The test server's settings, or `None` (test skipped, loudly) outside scripts/test.sh.
pub fn s3_env() -> Option<S3Env> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("S3_TEST_ENDPOINT"),
        var("S3_TEST_BUCKET"),
        var("S3_TEST_ACCESS_KEY"),
        var("S3_TEST_SECRET_KEY"),
    ) {
        (Some(endpoint), Some(bucket), Some(access), Some(secret)) => Some(S3Env {
            endpoint,
            bucket,
            region: var("S3_TEST_REGION").unwrap_or_else(|| "garage".into()),
            access,
            secret,
            prefix: unique("t"),
        }),
        _ => {
            assert!(
                var("ETERNIA_REQUIRE_S3").is_none(),
                "ETERNIA_REQUIRE_S3 is set but no S3 test server is configured"
            );
            eprintln!("SKIPPED: no S3 test server (run scripts/test.sh, which starts Garage)");
            None
        }
    }
}

impl S3Env {
    pub fn apply<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ACCESS_KEY_ID", &self.access)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_REGION", &self.region)
            .env("S3_ENDPOINT", &self.endpoint)
            .env("S3_BUCKET", &self.bucket)
            .env("S3_PREFIX", &self.prefix)
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("S3_MAX_ATTEMPTS", "2")
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(&self.access, &self.secret, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            // Garage's sqlite metadata answers 503 "database is locked" under a burst of writes while
            // other tests run: retry as the product does.
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(10)
                    .with_initial_backoff(Duration::from_millis(50)),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub async fn keys(&self) -> Vec<String> {
        let client = self.client().await;
        let mut pages = client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}/", self.prefix))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(p) = pages.next().await {
            keys.extend(
                p.unwrap()
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    }
}

fn backup_both(db: &TestDb, dir: &Path, s3: &S3Env) -> Command {
    let mut c = backup_cmd(db, dir);
    s3.apply(&mut c);
    c
}

fn list_in(dir: &Path, s3: &S3Env, store: &str) -> Vec<serde_json::Value> {
    let r = run(s3
        .apply(&mut bin())
        .env("BACKUP_DIR", dir)
        .args(["list", "--output", "json", "--store", store]))
    .ok();
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn a_backup_goes_to_the_volume_and_the_bucket_as_a_multipart_upload_with_sha256_checksums() {
    let Some(s3) = s3_env() else { return };
    let db = TestDb::with_sample_data();
    db.add_random_mib(24);
    let dir = tempdir();

    let r = run(backup_both(&db, dir.path(), &s3).args([
        "--s3-part-size",
        "5MiB",
        "--s3-checksum",
        "sha256",
        "--compression",
        "zstd",
    ]))
    .ok();
    let parts: u32 = r
        .stderr
        .lines()
        .find(|l| l.contains("uploaded to the bucket"))
        .and_then(|l| l.split("parts").nth(1))
        .map(|p| {
            p.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .expect("upload logged");
    let local = list_in(dir.path(), &s3, "local");
    let remote = list_in(dir.path(), &s3, "s3");
    // (Until the logs lost their colour codes in pipes, the digits of the escape sequences were read as
    // the part count: compare with the size instead.)
    let size = local[0]["size"].as_u64().unwrap();
    assert_eq!(
        u64::from(parts),
        size.div_ceil(5 << 20),
        "{size} bytes in 5 MiB parts"
    );
    assert!(parts >= 2, "a multipart upload: {parts} parts");
    assert_eq!(local.len(), 1);
    assert_eq!(remote.len(), 1);
    assert_eq!(local[0]["name"], remote[0]["name"]);
    assert_eq!(local[0]["size"], remote[0]["size"]);
    run(s3
        .apply(&mut bin())
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest", "--store", "s3"]))
    .ok()
    .says("entries verified");
}

#[tokio::test]
async fn the_sidecar_object_is_written_after_the_archive_so_listing_needs_both() {
    let Some(s3) = s3_env() else { return };
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(backup_both(&db, dir.path(), &s3).args(["--store", "s3"])).ok();
    let keys = s3.keys().await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let sidecar = keys.iter().find(|k| k.ends_with(".manifest.json")).unwrap();
    // An archive object without its sidecar is not a backup.
    s3.client()
        .await
        .delete_object()
        .bucket(&s3.bucket)
        .key(sidecar)
        .send()
        .await
        .unwrap();
    assert!(list_in(dir.path(), &s3, "s3").is_empty());
}

#[test]
fn a_wrong_secret_key_is_refused_with_a_clear_error_and_no_secret_in_it() {
    let Some(mut s3) = s3_env() else { return };
    s3.secret = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff".into();
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(backup_both(&db, dir.path(), &s3).args(["--store", "s3"])).failed(1);
    let err = r
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .collect::<String>();
    assert!(
        err.contains(&s3.bucket) && err.contains(&s3.endpoint),
        "{err}"
    );
    assert!(
        err.contains("AWS_SECRET_ACCESS_KEY") || err.contains("wrong access or secret key"),
        "{err}"
    );
    assert!(!r.stderr.contains(&s3.secret));
}

#[test]
fn an_unreachable_endpoint_fails_after_bounded_retries() {
    let Some(mut s3) = s3_env() else { return };
    s3.endpoint = "http://127.0.0.1:1".into();
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let start = Instant::now();
    let r = run(backup_both(&db, dir.path(), &s3).args(["--store", "s3"])).failed(1);
    assert!(start.elapsed() < Duration::from_secs(60));
    r.says("cannot reach the endpoint");
    r.says("S3_ENDPOINT");
}

#[test]
fn a_missing_bucket_is_named() {
    let Some(mut s3) = s3_env() else { return };
    s3.bucket = "no-such-bucket-here".into();
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(backup_both(&db, dir.path(), &s3).args(["--store", "s3"])).failed(1);
    r.says("no-such-bucket-here");
    r.says("S3_BUCKET");
}

#[test]
fn with_both_stores_an_unreachable_bucket_keeps_the_local_backup_and_still_fails_the_job() {
    let Some(mut s3) = s3_env() else { return };
    s3.endpoint = "http://127.0.0.1:1".into();
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let r = run(&mut backup_both(&db, dir.path(), &s3)).failed(1);
    r.says("is safe on the backup volume, but the off-site copy failed");
    assert_eq!(list_json(dir.path()).len(), 1);
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok();
}

#[tokio::test]
async fn garage_killed_mid_upload_lists_nothing_keeps_the_local_copy_and_the_next_run_uploads_it() {
    let Some(shared) = s3_env() else { return };
    // A private server so that killing it does not disturb the other tests.
    let state = tempdir();
    let port = 3930 + (std::process::id() % 50) as u16;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/garage.sh");
    let start = || {
        assert!(
            Command::new(script)
                .args(["start"])
                .arg(state.path())
                .arg(port.to_string())
                .status()
                .unwrap()
                .success()
        )
    };
    let stop = || {
        assert!(
            Command::new(script)
                .args(["stop"])
                .arg(state.path())
                .status()
                .unwrap()
                .success()
        )
    };
    start();
    let s3 = S3Env {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..shared
    };

    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let (tools, gate) = (tempdir(), Gate::new());
    // 15 MB, then the dump stops until the server is down, then 25 MB more: the upload is in flight.
    let pg_dump = fake_pg_dump(
        tools.path(),
        &format!(
            "head -c 15000000 /dev/urandom; {}; head -c 25000000 /dev/urandom",
            gate.shell()
        ),
    );
    let child = backup_both(&db, dir.path(), &s3)
        .env("PG_DUMP_BIN", &pg_dump)
        .args(["--s3-part-size", "5MiB"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    gate.wait_reached();
    stop();
    gate.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "pid {pid}: {stderr}");
    assert!(stderr.contains("off-site copy failed"), "{stderr}");
    assert_eq!(list_json(dir.path()).len(), 1, "the local copy is intact");
    run(bin()
        .env("BACKUP_DIR", dir.path())
        .args(["verify", "latest"]))
    .ok();

    start();
    assert!(
        list_in(dir.path(), &s3, "s3").is_empty(),
        "a half-uploaded backup is never listed"
    );
    // The next run uploads its own archive and the one that is missing (reconcile).
    std::thread::sleep(Duration::from_millis(1100));
    run(&mut backup_both(&db, dir.path(), &s3)).ok();
    assert_eq!(list_in(dir.path(), &s3, "s3").len(), 2);
    stop();
}

#[tokio::test]
async fn listing_and_pruning_work_across_thousands_of_objects() {
    let Some(s3) = s3_env() else { return };
    let client = s3.client().await;
    let sidecar = br#"{"not": "read by list"}"#;
    // 1,300 backups (2,600 objects: three list pages) plus foreign objects.
    let names: Vec<String> = (0..1300)
        .map(|i| {
            let t = jiff::Timestamp::from_second(1_600_000_000 + i * 3600).unwrap();
            format!("eternia-backup-{}.tar.gz", t.strftime("%Y%m%d-%H%M%S"))
        })
        .collect();
    let mut keys: Vec<(String, &[u8])> = Vec::new();
    for n in &names {
        keys.push((format!("{}/{n}", s3.prefix), b"x"));
        keys.push((format!("{}/{n}.manifest.json", s3.prefix), sidecar));
    }
    keys.push((
        format!("{}/eternia-backup-notes.txt", s3.prefix),
        b"foreign",
    ));
    use futures::StreamExt;
    futures::stream::iter(keys)
        .map(|(k, body)| {
            let client = client.clone();
            let bucket = s3.bucket.clone();
            async move {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(k)
                    .body(body.to_vec().into())
                    .send()
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let dir = tempdir();
    let listed = list_in(dir.path(), &s3, "s3");
    assert_eq!(listed.len(), 1300);
    assert_eq!(
        listed.last().unwrap()["name"].as_str().unwrap(),
        names.last().unwrap()
    );

    run(s3.apply(&mut bin()).env("BACKUP_DIR", dir.path()).args([
        "prune",
        "--store",
        "s3",
        "--keep-days",
        "0",
        "--keep-last",
        "5",
    ]))
    .ok();
    let left = list_in(dir.path(), &s3, "s3");
    assert_eq!(left.len(), 5);
    assert_eq!(
        left.last().unwrap()["name"].as_str().unwrap(),
        names.last().unwrap(),
        "the newest is kept"
    );
    assert!(
        s3.keys()
            .await
            .iter()
            .any(|k| k.ends_with("eternia-backup-notes.txt")),
        "foreign objects stay"
    );
}

#[tokio::test]
async fn prune_aborts_abandoned_multipart_uploads() {
    let Some(s3) = s3_env() else { return };
    let client = s3.client().await;
    let key = format!("{}/eternia-backup-20200101-000000.tar.gz", s3.prefix);
    let up = client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let id = up.upload_id().unwrap().to_owned();

    let dir = tempdir();
    run(s3
        .apply(&mut bin())
        .env("BACKUP_DIR", dir.path())
        .env("BACKUP_STALE_PARTIAL_AGE", "0")
        .args(["prune", "--store", "s3"]))
    .ok()
    .says("(multipart upload)");
    let open = client
        .list_multipart_uploads()
        .bucket(&s3.bucket)
        .prefix(format!("{}/", s3.prefix))
        .send()
        .await
        .unwrap();
    assert!(
        !open
            .uploads()
            .iter()
            .any(|u| u.upload_id() == Some(id.as_str())),
        "the abandoned upload was aborted"
    );
}

#[test]
fn a_backup_in_the_bucket_alone_restores_into_another_database() {
    let Some(s3) = s3_env() else { return };
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(backup_both(&db, dir.path(), &s3).args(["--store", "s3"])).ok();
    assert!(
        files(dir.path()).iter().all(|f| f.starts_with('.')),
        "nothing on the volume"
    );
    let target = TestDb::create();
    let mut c = bin();
    s3.apply(&mut c)
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .args([
            "restore",
            "latest",
            "--store",
            "s3",
            "--no-kubernetes",
            "--no-safety-backup",
            "--target-database",
            &target.name,
        ]);
    run(&mut c).ok().says("checksums OK");
    assert_eq!(target.sql("SELECT count(*) FROM customers"), "300");
}

/// Two S3-only runs in one second choose the same name. The other run is played by the test: while this
/// run's dump waits at a gate (its multipart upload already started), the other run's sidecar appears
/// under the shared name. This run must then fail rather than replace it, so no listing ever pairs one
/// run's archive with the other's sidecar. (Garage aborts an in-progress multipart upload when an object
/// is written under its key, so the same race on the archive object itself fails there on its own; on
/// AWS S3 it is `If-None-Match` on the completion that refuses it.)
#[tokio::test]
async fn a_sidecar_written_meanwhile_under_the_same_name_is_never_overwritten() {
    let Some(s3) = s3_env() else { return };
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let (tools, gate) = (tempdir(), Gate::new());
    let pg_dump = wrapper(
        tools.path(),
        "pg_dump",
        &format!("{}\nexec pg_dump \"$@\"", gate.shell()),
    );
    let child = backup_both(&db, dir.path(), &s3)
        .env("PG_DUMP_BIN", &pg_dump)
        .args(["--store", "s3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gate.wait_reached();
    let client = s3.client().await;
    // The upload is created beside the dump: wait for it to be listed, not for a time.
    let key = loop {
        let uploads = client
            .list_multipart_uploads()
            .bucket(&s3.bucket)
            .prefix(format!("{}/", s3.prefix))
            .send()
            .await
            .unwrap();
        if let Some(k) = uploads.uploads().first().and_then(|u| u.key()) {
            break k.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sidecar = format!("{key}.manifest.json");
    let theirs = b"{\"the other run's\": \"sidecar\"}".to_vec();
    client
        .put_object()
        .bucket(&s3.bucket)
        .key(&sidecar)
        .body(theirs.clone().into())
        .send()
        .await
        .unwrap();
    gate.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    let kept = client
        .get_object()
        .bucket(&s3.bucket)
        .key(&sidecar)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        kept.as_ref(),
        theirs.as_slice(),
        "the sidecar already there is untouched"
    );
    assert!(
        !s3.keys().await.contains(&key),
        "this run's archive is removed, so nothing pairs it with the other sidecar"
    );
}
