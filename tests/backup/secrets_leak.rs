//! Every secret set at once (database password, S3 secret key, age identity, Slack webhook URL) through
//! a complete successful backup, list, verify and restore (with its safety backup), in text and JSON
//! logs: none of them appears in anything the binary prints.

use std::process::Command;

use secrecy::ExposeSecret;

use crate::helpers::*;

#[test]
fn a_full_backup_list_verify_and_restore_never_print_a_secret() {
    let password = "leak-test-pw-8c2f71d";
    let Some(pg) = PrivatePg::start(password) else {
        eprintln!(
            "SKIPPED: cannot start a private PostgreSQL cluster here (needs root and runuser)"
        );
        return;
    };
    let Some(s3) = crate::s3::s3_env() else {
        return;
    };
    pg.psql(password, "CREATE DATABASE app");
    pg.psql_in(
        password,
        "app",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
    let dir = tempdir();
    let keys = tempdir();
    let id = age::x25519::Identity::generate();
    let identity = id.to_string().expose_secret().to_owned();
    let key_file = keys.path().join("id.txt");
    std::fs::write(&key_file, &identity).unwrap();
    let (slack_url, _posted) = crate::notifications::fake_slack(200);
    let url = format!("postgres://postgres:{password}@127.0.0.1:{}/app", pg.port);
    let cmd = |args: &[&str], json: bool| {
        let mut c: Command = bin();
        s3.apply(&mut c)
            .env("DATABASE_URL", &url)
            .env("BACKUP_DIR", dir.path())
            .env("NOTIFY_SLACK_WEBHOOK_URL", &slack_url)
            .env("NOTIFY_ON_SUCCESS", "true")
            .env("AGE_IDENTITY_FILE", &key_file)
            .env("RUST_LOG", "debug")
            .env("LOG_FORMAT", if json { "json" } else { "text" })
            .args(args);
        c
    };
    let recipient = id.to_public().to_string();
    let mut all = String::new();
    for (args, json) in [
        (
            vec!["backup", "--no-kubernetes", "--encrypt-to", &recipient],
            false,
        ),
        (vec!["list"], true),
        (vec!["verify", "latest"], false),
        (vec!["restore", "latest", "--no-kubernetes"], true),
    ] {
        let r = run(&mut cmd(&args, json)).ok();
        all.push_str(&r.stdout);
        all.push_str(&r.stderr);
    }
    assert!(all.contains("restore of"), "the restore ran:\n{all}");
    assert_eq!(
        pg.psql_in(password, "app", "SELECT count(*) FROM t"),
        "1000"
    );
    for (what, secret) in [
        ("database password", password),
        ("S3 secret key", s3.secret.as_str()),
        ("age identity", identity.as_str()),
        ("Slack webhook URL", "T000/B000/XXXX"),
    ] {
        assert!(
            !all.contains(secret),
            "the {what} appears in the output:\n{all}"
        );
    }
}
