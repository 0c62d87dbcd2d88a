//! The restore webhook for `scripts/bench-webhook.sh`: the real actix app and auth path, with the restore
//! Jobs going to an in-memory Kubernetes API (kube-fake-client; no API server can run here). Prints
//! `LISTENING <addr>` and serves until killed. Not a timed test: the script drives it with wrk.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use eternia_backup::webhook::jobs::RestoreJobs;
use eternia_backup::webhook::jwt::{Policy, Verifier};
use eternia_backup::webhook::pattern::Pattern;
use eternia_backup::webhook::source::TrustedProxies;
use eternia_backup::webhook::{Settings, Webhook};
use k8s_openapi::api::batch::v1::CronJob;

fn template() -> CronJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "database-restore", "namespace": "backup", "uid": "bench-uid"},
        "spec": {"schedule": "0 0 31 2 *", "suspend": true, "jobTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/component": "restore"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "restore", "image": "eternia-backup", "args": ["restore", "latest"]}]}}}}}
    }))
    .expect("template")
}

fn env_number(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    // `cargo bench` passes --bench; only run when asked to serve.
    if !std::env::args().any(|a| a == "serve") {
        eprintln!(
            "usage: cargo bench --bench webhook_server -- serve   (see scripts/bench-webhook.sh)"
        );
        return;
    }
    let secret = std::env::var("BENCH_HS256_SECRET").expect("BENCH_HS256_SECRET");
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cluster = kube_fake_client::ClientBuilder::new()
            .with_object(template())
            .build()
            .await
            .expect("fake cluster");
        let policy = Policy {
            issuer: Some("bench".into()),
            audience: Some("eternia-backup".into()),
            subjects: vec![Pattern::new("ci:*")],
            claims: Vec::new(),
            max_age: Duration::from_secs(3600),
            leeway: Duration::from_secs(30),
        };
        let settings = Settings {
            verifier: Verifier::new(Some(&secret.into()), None, policy).expect("verifier"),
            slack: None,
            prefix: "eternia-backup".into(),
            // BENCH_RATE_LIMIT (per minute) and BENCH_TRUST_FORWARDED_FOR: the flood scenario.
            rate_limit_per_minute: env_number("BENCH_RATE_LIMIT").unwrap_or(0),
            rate_burst: 20,
            trusted_proxies: TrustedProxies::new(
                Vec::new(),
                std::env::var("BENCH_TRUST_FORWARDED_FOR").is_ok(),
            ),
            body_limit: 64 * 1024,
            poll_interval: Duration::from_secs(3600),
            max_backup_age: Duration::from_secs(26 * 3600),
        };
        let jobs = RestoreJobs {
            client: cluster,
            namespace: "backup".into(),
            cronjob: "database-restore".into(),
            drill_cronjob: "database-drill".into(),
            lease_namespace: "backup".into(),
            lease_name: "eternia-backup-restore".into(),
            log_tail_lines: 20,
        };
        let state = Arc::new(Webhook::new(settings, Ok(jobs), None));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        println!("LISTENING {}", listener.local_addr().expect("addr"));
        eternia_backup::webhook::server(state, listener, workers)
            .expect("server")
            .await
            .expect("serve");
    });
}
