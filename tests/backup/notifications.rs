use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use crate::helpers::*;

/// A one-shot HTTP server standing in for Slack's incoming webhook; sends each request body back.
pub fn fake_slack(status: u16) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/services/T000/B000/XXXX",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut s = stream.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        let _ = tx.send(String::from_utf8_lossy(&buf[i + 4..]).into_owned());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (url, rx)
}

#[test]
fn a_failed_backup_posts_the_error_to_slack() {
    let (url, bodies) = fake_slack(200);
    let dir = tempdir();
    run(bin()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/app")
        .env("BACKUP_DIR", dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url)
        .args(["backup", "--no-kubernetes"]))
    .failed(1);
    let body = next_message(&bodies);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("backup FAILED") && text.contains("cannot connect"),
        "{text}"
    );
}

#[test]
fn success_is_posted_only_when_asked_with_name_size_and_duration() {
    let db = TestDb::with_sample_data();
    let (url, bodies) = fake_slack(200);
    let dir = tempdir();
    run(backup_cmd(&db, dir.path()).env("NOTIFY_SLACK_WEBHOOK_URL", &url)).ok();
    assert!(
        bodies
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "no message on success by default"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(backup_cmd(&db, dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url)
        .env("NOTIFY_ON_SUCCESS", "true"))
    .ok();
    let body = next_message(&bodies);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("eternia-backup-")
            && text.contains("complete")
            && text.contains("KiB")
            && text.contains("s,"),
        "{text}"
    );
}

#[test]
fn a_failing_notification_never_fails_the_backup() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let (url, _bodies) = fake_slack(500);
    let r = run(backup_cmd(&db, dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url)
        .env("NOTIFY_ON_SUCCESS", "true"))
    .ok();
    r.says("notification rejected");
    assert!(
        !r.stderr.contains("XXXX"),
        "the webhook URL is a secret: {}",
        r.stderr
    );
    // Nothing listens here at all.
    run(backup_cmd(&db, dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", "http://127.0.0.1:1/hook")
        .env("NOTIFY_ON_SUCCESS", "true"))
    .ok();
}

/// The next message the stand-in received (5 s at most).
fn next_message(bodies: &mpsc::Receiver<String>) -> serde_json::Value {
    serde_json::from_str(
        &bodies
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap(),
    )
    .unwrap()
}

/// A Block Kit body within Slack's limits: a header, sections of fields and text, nothing over its size.
fn assert_block_kit(body: &serde_json::Value) {
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{body}");
    assert_eq!(blocks[0]["type"], "header");
    let len = |v: &serde_json::Value| v.as_str().unwrap().chars().count();
    assert!(len(&blocks[0]["text"]["text"]) <= 150);
    for b in &blocks[1..] {
        assert_eq!(b["type"], "section", "{b}");
        if let Some(fields) = b["fields"].as_array() {
            assert!(fields.len() <= 10 && fields.iter().all(|f| len(&f["text"]) <= 2000));
        } else {
            assert!(len(&b["text"]["text"]) <= 3000);
        }
    }
    assert!(len(&body["text"]) <= 3000, "the fallback text too");
}

fn fields(body: &serde_json::Value) -> String {
    body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["fields"].as_array())
        .flatten()
        .map(|f| f["text"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_failure_is_posted_as_block_kit_with_the_step_and_what_to_check_and_no_secret() {
    let (url, bodies) = fake_slack(200);
    let dir = tempdir();
    let tools = tempdir();
    // pg_dump failing with a long error: the message stays within Slack's limits.
    let long = "x".repeat(6000);
    let pg_dump = fake_pg_dump(
        tools.path(),
        &format!("echo 'pg_dump: error: {long}' >&2; exit 1"),
    );
    let db = TestDb::with_sample_data();
    run(backup_cmd(&db, dir.path())
        .env("PG_DUMP_BIN", &pg_dump)
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url))
    .failed(1);
    let raw = bodies
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_block_kit(&body);
    assert_eq!(body["blocks"][0]["text"]["text"], ":x: Backup FAILED");
    let facts = fields(&body);
    assert!(
        facts.contains("*Step*\npg_dump") && facts.contains("*Check*"),
        "{facts}"
    );
    assert!(
        !raw.contains(&db.url()) && !raw.contains("XXXX"),
        "no secret in the message: {raw}"
    );
}

#[test]
fn a_success_and_a_failed_drill_are_posted_with_their_facts() {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    let (url, bodies) = fake_slack(200);
    run(backup_cmd(&db, dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url)
        .env("NOTIFY_ON_SUCCESS", "true"))
    .ok();
    let body = next_message(&bodies);
    assert_block_kit(&body);
    let facts = fields(&body);
    for label in ["*Backup*", "*Size*", "*Duration*", "*Stores*\nlocal:"] {
        assert!(facts.contains(label), "{label} in {facts}");
    }

    let checks = dir.path().join("checks.sql");
    std::fs::write(&checks, "SELECT count(*) = 1 FROM customers").unwrap();
    run(bin()
        .env("DATABASE_URL", db.url())
        .env("BACKUP_DIR", dir.path())
        .env("NOTIFY_SLACK_WEBHOOK_URL", &url)
        .args(["drill", "latest", "--checks", checks.to_str().unwrap()]))
    .failed(1);
    let body = next_message(&bodies);
    assert_block_kit(&body);
    assert_eq!(body["blocks"][0]["text"]["text"], ":x: Drill FAILED");
    assert!(body.to_string().contains("check returned false"), "{body}");
}
