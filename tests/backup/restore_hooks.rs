//! Pre- and post-restore hooks (maintenance mode): a command sees the database before and after, and
//! none of the restore's credentials; a URL gets a JSON POST; a failing pre-restore hook stops the
//! restore before anything changes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use crate::helpers::*;
use crate::restore::restore_cmd;

fn backed_up_then_damaged() -> (TestDb, tempfile::TempDir, String) {
    let db = TestDb::with_sample_data();
    let dir = tempdir();
    run(&mut backup_cmd(&db, dir.path())).ok();
    db.sql("DELETE FROM customers WHERE id > 10");
    let name = archives(dir.path()).pop().unwrap();
    (db, dir, name)
}

#[test]
fn the_pre_hook_sees_the_database_untouched_and_the_post_hook_the_restored_one_without_credentials()
{
    let (db, dir, name) = backed_up_then_damaged();
    let out = tempdir();
    let log = out.path().join("hooks.log");
    let hook = format!(
        "echo \"$ETERNIA_HOOK $ETERNIA_BACKUP $ETERNIA_DATABASE ${{ETERNIA_RESULT:-}} \
         password=${{PGPASSWORD:-none}} url=${{DATABASE_URL:-none}}\" >> {log}; \
         psql -h 127.0.0.1 -U postgres -d \"$ETERNIA_DATABASE\" -qAtc 'SELECT count(*) FROM customers' >> {log}",
        log = log.display()
    );

    run(restore_cmd(&db, dir.path())
        .env("PGPASSWORD", "not-for-hooks")
        .args([
            "latest",
            "--pre-restore-hook",
            &hook,
            "--post-restore-hook",
            &hook,
        ]))
    .ok();

    let d = &db.name;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "pre-restore {name} {d}  password=none url=none\n10\n\
             post-restore {name} {d} succeeded password=none url=none\n300\n"
        )
    );
}

#[test]
fn a_failing_pre_hook_stops_the_restore_before_anything_changes_and_the_post_hook_hears_of_it() {
    let (db, dir, _) = backed_up_then_damaged();
    let out = tempdir();
    let log = out.path().join("post.log");
    let post = format!("echo \"$ETERNIA_RESULT\" > {}", log.display());

    let r = run(restore_cmd(&db, dir.path()).args([
        "latest",
        "--pre-restore-hook",
        "echo maintenance mode refused >&2; exit 3",
        "--post-restore-hook",
        &post,
    ]))
    .failed(1);

    r.says("restore failed at pre-restore hook: the command exited with exit status: 3");
    r.says("nothing was changed");
    r.says("maintenance mode refused");
    assert_eq!(db.sql("SELECT count(*) FROM customers"), "10");
    assert_eq!(archives(dir.path()).len(), 1, "not even a safety backup");
    assert!(!log.exists(), "no restore ran, so no post-restore hook");
}

/// A local HTTP endpoint that answers each request with `status` and hands over the request bodies.
fn endpoint(status: u16, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/maintenance", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            bodies.push(String::from_utf8(body).unwrap());
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
        bodies
    });
    (url, handle)
}

#[test]
fn a_hook_url_gets_a_json_post_and_a_post_hook_that_fails_is_reported_after_the_restore() {
    let (db, dir, name) = backed_up_then_damaged();
    let (pre, pre_seen) = endpoint(204, 1);
    let (post, post_seen) = endpoint(500, 1);

    let r = run(restore_cmd(&db, dir.path()).args([
        "latest",
        "--pre-restore-hook",
        &pre,
        "--post-restore-hook",
        &post,
    ]))
    .failed(1);

    let pre_body: serde_json::Value = serde_json::from_str(&pre_seen.join().unwrap()[0]).unwrap();
    assert_eq!(pre_body["event"], "pre-restore");
    assert_eq!(pre_body["backup"], name.as_str());
    assert_eq!(pre_body["database"], db.name.as_str());
    let post_body: serde_json::Value = serde_json::from_str(&post_seen.join().unwrap()[0]).unwrap();
    assert_eq!(post_body["result"], "succeeded");
    r.says("restore failed at post-restore hook: the hook URL answered 500");
    r.says("the restore itself ran");
    assert_eq!(
        db.sql("SELECT count(*) FROM customers"),
        "300",
        "restored all the same"
    );
}
