//! `eternia-backup status` against a volume and against a bucket (the real S3 server): each state its own
//! test, with the exit code a monitoring check reads (0 healthy, 1 needs attention).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::s3::{S3Env, s3_env};

/// Where the backups are: the volume, or the bucket alone.
enum Store {
    Volume,
    Bucket(S3Env),
}

impl Store {
    /// The volume, then the bucket (when the test server runs).
    fn each() -> Vec<Store> {
        std::iter::once(Store::Volume)
            .chain(s3_env().map(Store::Bucket))
            .collect()
    }

    fn on(&self, c: &mut Command, dir: &Path) {
        c.env("BACKUP_DIR", dir);
        if let Store::Bucket(s3) = self {
            s3.apply(c).args(["--store", "s3"]);
        }
    }

    fn backup(&self, db: &TestDb, dir: &Path) {
        let mut c = backup_cmd(db, dir);
        self.on(&mut c, dir);
        run(&mut c).ok();
    }

    /// `status --output json` with this allowed age: the run and its JSON.
    fn status(&self, dir: &Path, max_age: &str) -> (Run, serde_json::Value) {
        let mut c = bin();
        c.args([
            "status",
            "--no-kubernetes",
            "--output",
            "json",
            "--max-age",
            max_age,
        ]);
        self.on(&mut c, dir);
        let r = run(&mut c);
        let json = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("status prints JSON ({e}): {r:?}"));
        (r, json)
    }

    fn name(&self) -> &'static str {
        match self {
            Store::Volume => "local",
            Store::Bucket(_) => "s3",
        }
    }
}

#[test]
fn a_store_without_a_complete_backup_is_missing_and_needs_attention() {
    for store in Store::each() {
        let dir = tempdir();
        // A partial archive (a backup that died) does not count.
        std::fs::write(
            dir.path()
                .join("eternia-backup-20261201-020000.tar.gz.partial"),
            b"x",
        )
        .unwrap();

        let (r, json) = store.status(dir.path(), "26h");

        let r = r.failed(1);
        assert_eq!(
            json["stores"][0]["health"],
            "MISSING",
            "{}: {json}",
            store.name()
        );
        assert!(json["stores"][0].get("newest").is_none());
        assert_eq!(json["healthy"], false);
        r.says("backups need attention").says("MISSING");
    }
}

#[test]
fn a_fresh_backup_is_ok_with_its_size_and_duration() {
    let db = TestDb::with_sample_data();
    for store in Store::each() {
        let dir = tempdir();
        store.backup(&db, dir.path());

        let (r, json) = store.status(dir.path(), "26h");

        r.ok();
        let s = &json["stores"][0];
        assert_eq!(s["health"], "OK", "{}: {json}", store.name());
        assert!(
            s["location"].as_str().unwrap().starts_with(store.name()),
            "{s}"
        );
        assert!(s["newest"]["size"].as_u64().unwrap() > 0);
        let took = s["duration_seconds"].as_f64().unwrap();
        assert!((0.0..120.0).contains(&took), "{took}");
        assert_eq!(s["recent_sizes"].as_array().unwrap().len(), 1);
        assert_eq!(json["healthy"], true);
    }
}

#[test]
fn a_backup_older_than_the_allowed_age_is_late_and_needs_attention() {
    let db = TestDb::with_sample_data();
    for store in Store::each() {
        let dir = tempdir();
        store.backup(&db, dir.path());
        // Ages only grow: once a whole second has passed, the backup is older than a 0 s allowance.
        let done = Instant::now();
        crate::backup_cli::wait_for(|| done.elapsed() > Duration::from_millis(1100));

        let (r, json) = store.status(dir.path(), "0");

        let r = r.failed(1);
        assert_eq!(
            json["stores"][0]["health"],
            "LATE",
            "{}: {json}",
            store.name()
        );
        assert!(json["stores"][0]["age_seconds"].as_i64().unwrap() >= 1);
        r.says("LATE");
    }
}

#[test]
fn a_bucket_that_cannot_be_listed_is_unreachable_and_needs_attention() {
    let dir = tempdir();
    let mut c = bin();
    c.env("BACKUP_DIR", dir.path())
        .env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .env("AWS_REGION", "garage")
        // A port nothing listens on.
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("S3_BUCKET", "backups")
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_MAX_ATTEMPTS", "1")
        .args([
            "status",
            "--no-kubernetes",
            "--output",
            "json",
            "--store",
            "s3",
        ]);

    let r = run(&mut c).failed(1);

    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["stores"][0]["health"], "UNREACHABLE", "{json}");
    assert!(
        json["stores"][0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    r.says("UNREACHABLE");
}
