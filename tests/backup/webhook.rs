//! The restore webhook over real HTTP: `spawn_app()` on port 0 with the real `kube::Client` against an
//! in-memory API (kube-fake-client). Every authentication case is a real request; every orchestration
//! case is checked on the Jobs the fake cluster holds afterwards.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use eternia_backup::webhook::jobs::{LABEL_RESTORE_ID, RestoreJobs, State, job_state};
use eternia_backup::webhook::jwt::{JwksSource, Policy, Verifier};
use eternia_backup::webhook::pattern::Pattern;
use eternia_backup::webhook::slack::SlackAuth;
use eternia_backup::webhook::{Settings, SlackSettings, Webhook};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition, JobStatus};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sha2::Sha256;

const NS: &str = "backup";
const HS_SECRET: &str = "test-hs256-secret-0123456789abcdef0123456789";
const SLACK_SECRET: &str = "slack-signing-secret-for-tests";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "eternia-backup";
const SUBJECT: &str = "repo:eternia/app:environment:production";

fn restore_template() -> CronJob {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "database-restore", "namespace": NS, "uid": "c0ffee00-0000-4000-8000-000000000001"},
        "spec": {
            "schedule": "0 0 31 2 *",
            "suspend": true,
            "jobTemplate": {
                "metadata": {"labels": {
                    "app.kubernetes.io/name": "eternia-backup",
                    "app.kubernetes.io/instance": "eternia-backup",
                    "app.kubernetes.io/component": "restore"
                }},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/component": "restore"}},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": "eternia-backup-restore",
                            "containers": [{
                                "name": "restore",
                                "image": "ghcr.io/eternia/eternia-backup:0.1.0",
                                "args": ["restore", "latest", "--no-safety-backup"],
                                "envFrom": [{"secretRef": {"name": "eternia-backup-credentials"}}]
                            }]
                        }
                    }
                }
            }
        }
    }))
    .unwrap()
}

fn held_lease() -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("eternia-backup-restore".into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("database-restore-manual-x7k2p".into()),
            lease_duration_seconds: Some(60),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    }
}

struct Options {
    lease: Option<Lease>,
    jwks: Option<std::path::PathBuf>,
    rate_limit_per_minute: u32,
    rate_burst: u32,
    slack_users: Vec<String>,
    slack_response_prefix: String,
    with_template: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lease: None,
            jwks: None,
            rate_limit_per_minute: 0,
            rate_burst: 20,
            slack_users: vec!["U_ALICE".into(), "U_BOB".into()],
            slack_response_prefix: "http://127.0.0.1:".into(),
            with_template: true,
        }
    }
}

struct TestApp {
    base: String,
    http: reqwest::Client,
    cluster: kube::Client,
    _server: actix_web::dev::ServerHandle,
}

async fn spawn_app(o: Options) -> TestApp {
    let mut b = kube_fake_client::ClientBuilder::new();
    if o.with_template {
        b = b.with_object(restore_template());
    }
    if let Some(l) = o.lease {
        b = b.with_object(l);
    }
    let cluster = b.build().await.unwrap();
    let policy = Policy {
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        subjects: vec![Pattern::new("repo:eternia/app:environment:*")],
        claims: Vec::new(),
        max_age: Duration::from_secs(3600),
        leeway: Duration::from_secs(5),
    };
    let verifier = Verifier::new(
        Some(&HS_SECRET.to_string().into()),
        o.jwks.map(JwksSource::File),
        policy,
    )
    .unwrap();
    verifier.preload().await;
    let settings = Settings {
        verifier,
        slack: Some(SlackSettings {
            auth: SlackAuth::new(SLACK_SECRET.to_string().into()),
            allowed_users: o.slack_users,
            allowed_channels: Vec::new(),
            response_url_prefix: o.slack_response_prefix,
            confirm_ttl: Duration::from_secs(300),
        }),
        prefix: "eternia-backup".into(),
        rate_limit_per_minute: o.rate_limit_per_minute,
        rate_burst: o.rate_burst,
        trusted_proxies: eternia_backup::webhook::source::TrustedProxies::none(),
        body_limit: 64 * 1024,
        poll_interval: Duration::from_millis(100),
        max_backup_age: Duration::from_secs(26 * 3600),
    };
    let jobs = RestoreJobs {
        client: cluster.clone(),
        namespace: NS.into(),
        cronjob: "database-restore".into(),
        drill_cronjob: "database-drill".into(),
        lease_namespace: NS.into(),
        lease_name: "eternia-backup-restore".into(),
        log_tail_lines: 20,
    };
    let state = Arc::new(Webhook::new(settings, Ok(jobs), None));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = eternia_backup::webhook::server(state, listener, 1).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        cluster,
        _server: handle,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now(), "nbf": now(), "exp": now() + 300})
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestApp {
    async fn post_restore(&self, token: Option<&str>, body: Value) -> reqwest::Response {
        self.post_json("/v1/restores", token, body).await
    }

    /// The statuses of restore requests with a bad token, one per path, in order.
    async fn bad_token_statuses(&self, paths: &[&str]) -> Vec<u16> {
        let mut statuses = Vec::new();
        for path in paths {
            let body = json!({"backup": "latest"});
            let r = self.post_json(path, Some("bad-token"), body).await;
            statuses.push(r.status().as_u16());
        }
        statuses
    }

    /// `POST path` with a JSON body, the path sent exactly as written (percent-encoding kept).
    async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    async fn jobs(&self) -> Vec<Job> {
        let api: Api<Job> = Api::namespaced(self.cluster.clone(), NS);
        api.list(&ListParams::default()).await.unwrap().items
    }

    async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text().await.unwrap()
    }

    /// `GET path`, with a bearer token when given.
    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }

    /// A signed, fresh button click.
    async fn click(&self, user: &str, value: &str, response_url: &str) -> reqwest::Response {
        self.slack(
            "/slack/interactions",
            &click_form(user, value, response_url),
            now(),
            None,
        )
        .await
    }

    /// A signed, fresh slash command.
    async fn command(
        &self,
        user: &str,
        text: &str,
        response_url: &str,
        trigger: &str,
    ) -> reqwest::Response {
        self.slack(
            "/slack/commands",
            &command_form(user, text, response_url, trigger),
            now(),
            None,
        )
        .await
    }

    async fn slack(
        &self,
        path: &str,
        body: &str,
        ts: i64,
        tamper: Option<&str>,
    ) -> reqwest::Response {
        let sig = slack_signature(&ts.to_string(), body.as_bytes());
        let sent = tamper.unwrap_or(body).to_owned();
        self.http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", ts.to_string())
            .header("X-Slack-Signature", sig)
            .body(sent)
            .send()
            .await
            .unwrap()
    }
}

fn slack_signature(ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn refused(app: &TestApp, token: &str) -> (u16, Value) {
    let r = app
        .post_restore(Some(token), json!({"backup": "latest"}))
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

// ---------- health, docs, metrics ----------

#[tokio::test]
async fn healthz_answers_and_openapi_lists_every_route_the_app_serves() {
    let app = spawn_app(Options::default()).await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/readyz", None).await;
    assert_eq!(
        r.status(),
        200,
        "the template CronJob exists, so the webhook is ready"
    );

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for p in &paths {
        let url = format!("{}{}", app.base, p.replace("{id}", "0123abcd"));
        let method = doc["paths"][p.as_str()]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        let r = app
            .http
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), 404, "{method} {p} is documented but not served");
    }
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string("docs/openapi.json").unwrap()).unwrap();
    assert_eq!(doc, on_disk, "the served document is docs/openapi.json");
}

#[tokio::test]
async fn readyz_fails_naming_the_missing_restore_template() {
    let app = spawn_app(Options {
        with_template: false,
        ..Options::default()
    })
    .await;
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("database-restore"),
        "{body}"
    );
}

// ---------- JWT ----------

#[tokio::test]
async fn a_valid_hs256_token_creates_a_restore_job_from_the_template_with_the_requested_backup() {
    let app = spawn_app(Options::default()).await;
    let name = "eternia-backup-20261127-030000.tar.gz";
    let r = app
        .post_restore(
            Some(&hs256(&claims())),
            json!({"backup": name, "reason": "incident 42"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/restores/{id}"));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["requestedBy"], format!("jwt:{SUBJECT}"));

    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(format!("database-restore-{id}").as_str())
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["app.kubernetes.io/component"], "restore",
        "template labels are copied"
    );
    assert_eq!(labels[LABEL_RESTORE_ID], id);
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "database-restore")
    );
    assert_eq!(owner.uid, "c0ffee00-0000-4000-8000-000000000001");
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["eternia-backup.io/reason"], "incident 42");
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.as_deref().unwrap(),
        ["restore", name, "--no-safety-backup"],
        "args[1] is replaced, the template's other flags stay"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("eternia-backup-restore")
    );
    assert!(c.env_from.is_some(), "the template's secrets are kept");
}

#[tokio::test]
async fn before_and_dry_run_become_restore_flags_and_nothing_else_reaches_the_job_args() {
    let app = spawn_app(Options::default()).await;
    let r = app
        .post_restore(
            Some(&hs256(&claims())),
            json!({"backup": {"before": "2026-11-27T03:00:00Z"}, "dryRun": true}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let jobs = app.jobs().await;
    let args = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args,
        [
            "restore",
            "--before=2026-11-27T03:00:00Z",
            "--no-safety-backup",
            "--dry-run"
        ]
    );

    for bad in [
        json!({"backup": "--no-safety-backup"}),
        json!({"backup": "../etc/passwd"}),
        json!({"backup": "latest", "extra": 1}),
        json!({"backup": {"before": "yesterday"}}),
    ] {
        let r = app.post_restore(Some(&hs256(&claims())), bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(app.jobs().await.len(), 1, "refused requests create no Job");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_or_403_and_counted_by_reason() {
    let app = spawn_app(Options::default()).await;
    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    expired["nbf"] = json!(now() - 600);
    let mut future = claims();
    future["nbf"] = json!(now() + 600);
    future["exp"] = json!(now() + 900);
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_sub = claims();
    wrong_sub["sub"] = json!("repo:evil/app:environment:production");
    let mut old = claims();
    old["iat"] = json!(now() - 7200);
    let other_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .unwrap();
    let alg_none = {
        use base64::Engine;
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            e(&json!({"alg": "none", "typ": "JWT"})),
            e(&claims())
        )
    };
    let cases = [
        ("expired", hs256(&expired), "expired"),
        ("not yet valid", hs256(&future), "not_yet_valid"),
        ("wrong audience", hs256(&wrong_aud), "wrong_audience"),
        (
            "subject not allowed",
            hs256(&wrong_sub),
            "subject_not_allowed",
        ),
        ("older than the max age", hs256(&old), "token_too_old"),
        ("signed with another secret", other_secret, "bad_signature"),
        ("alg none", alg_none, "alg_none"),
        ("malformed", "not.a-token".to_string(), "malformed"),
    ];
    for (what, token, reason) in &cases {
        let (status, body) = refused(&app, token).await;
        let expected = if *reason == "subject_not_allowed" {
            403
        } else {
            401
        };
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            !body["error"].as_str().unwrap().contains(token.as_str()),
            "{what}: the token is not echoed"
        );
        let m = app.metrics().await;
        assert!(
            m.contains(&format!(
                "eternia_webhook_auth_failures_total{{reason=\"{reason}\"}} 1"
            )),
            "{what}: counted as {reason}\n{m}"
        );
    }
    let r = app.post_restore(None, json!({"backup": "latest"})).await;
    assert_eq!(r.status(), 401, "no token");
    let r = app
        .http
        .post(format!("{}/v1/restores", app.base))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({"backup": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "malformed Authorization header");
    assert!(
        app.jobs().await.is_empty(),
        "no refused token created a Job"
    );
}

/// An RSA key made for the test with openssl, and its public half as a JWKS file.
fn rsa_key(dir: &std::path::Path, name: &str) -> EncodingKey {
    let pem = dir.join(format!("{name}.pem"));
    crate::helpers::stdout_of(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem),
    );
    EncodingKey::from_rsa_pem(&std::fs::read(pem).unwrap()).unwrap()
}

fn write_jwks(path: &std::path::Path, key: &EncodingKey, kid: &str) {
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    std::fs::write(path, serde_json::to_vec(&json!({"keys": [jwk]})).unwrap()).unwrap();
}

fn rs256(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[tokio::test]
async fn rs256_tokens_verify_against_the_jwks_file_and_other_keys_or_hs_confusion_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = rsa_key(dir.path(), "trusted");
    let other = rsa_key(dir.path(), "other");
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, &trusted, "k1");
    let app = spawn_app(Options {
        jwks: Some(jwks.clone()),
        ..Options::default()
    })
    .await;

    let (status, body) = refused(&app, &rs256(&other, "k1", &claims())).await;
    assert_eq!(status, 401, "signed by another key: {body}");
    let (status, _) = refused(&app, &rs256(&trusted, "k9", &claims())).await;
    assert_eq!(status, 401, "unknown kid");
    // HS/RS confusion: an HS256 token whose secret is the trusted public key's JWK text.
    let public_as_secret = std::fs::read(&jwks).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let confused =
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(&public_as_secret)).unwrap();
    let (status, _) = refused(&app, &confused).await;
    assert_eq!(status, 401, "HS256 is verified with the HS secret only");
    assert!(app.jobs().await.is_empty());

    let r = app
        .post_restore(
            Some(&rs256(&trusted, "k1", &claims())),
            json!({"backup": "latest"}),
        )
        .await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let m = app.metrics().await;
    assert!(
        m.contains("eternia_webhook_auth_failures_total{reason=\"unknown_kid\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_jti_starts_one_restore_a_retry_gets_the_same_one_and_a_replay_for_something_else_is_refused()
 {
    let app = spawn_app(Options::default()).await;
    let mut c = claims();
    c["jti"] = json!("run-1234-attempt-1");
    let token = hs256(&c);
    let first = app
        .post_restore(Some(&token), json!({"backup": "latest"}))
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let retry = app
        .post_restore(Some(&token), json!({"backup": "latest"}))
        .await;
    assert_eq!(
        retry.status(),
        200,
        "the same token again is the same restore"
    );
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);

    let replay = app
        .http
        .post(format!("{}/v1/restores", app.base))
        .bearer_auth(&token)
        .header("Idempotency-Key", "something-else")
        .json(&json!({"backup": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        401,
        "a used jti cannot start another restore"
    );
    assert_eq!(app.jobs().await.len(), 1);
    assert!(app.metrics().await.contains("reason=\"replayed_jti\"} 1"));
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_restore() {
    let app = spawn_app(Options::default()).await;
    let send = || async {
        app.http
            .post(format!("{}/v1/restores", app.base))
            .bearer_auth(hs256(&claims()))
            .header("Idempotency-Key", "deploy-991")
            .json(&json!({"backup": "latest"}))
            .send()
            .await
            .unwrap()
    };
    let a = send().await;
    assert_eq!(a.status(), 202);
    let a: Value = a.json().await.unwrap();
    let b = send().await;
    assert_eq!(b.status(), 200);
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(app.jobs().await.len(), 1);
}

// ---------- orchestration ----------

#[tokio::test]
async fn a_held_lease_or_a_running_restore_job_gets_409_naming_it() {
    let app = spawn_app(Options {
        lease: Some(held_lease()),
        ..Options::default()
    })
    .await;
    let r = app
        .post_restore(Some(&hs256(&claims())), json!({"backup": "latest"}))
        .await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("database-restore-manual-x7k2p"),
        "{body}"
    );
    assert!(app.jobs().await.is_empty());

    let app = spawn_app(Options::default()).await;
    let r = app
        .post_restore(Some(&hs256(&claims())), json!({"backup": "latest"}))
        .await;
    assert_eq!(r.status(), 202);
    let r = app
        .post_restore(Some(&hs256(&claims())), json!({"backup": "latest"}))
        .await;
    assert_eq!(r.status(), 409, "the first restore's Job has not finished");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("database-restore-"),
        "{body}"
    );
    assert_eq!(app.jobs().await.len(), 1);
    let m = app.metrics().await;
    assert!(
        m.contains("eternia_restore_total{result=\"accepted\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("eternia_restore_total{result=\"conflict\"} 1"),
        "{m}"
    );
}

async fn set_job_status(app: &TestApp, name: &str, status: JobStatus) {
    let api: Api<Job> = Api::namespaced(app.cluster.clone(), NS);
    let mut job = api.get(name).await.unwrap();
    job.status = Some(status);
    api.replace(name, &PostParams::default(), &job)
        .await
        .unwrap();
}

fn condition(type_: &str, reason: &str) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(format!("{reason} happened")),
        ..JobCondition::default()
    }
}

#[tokio::test]
async fn status_follows_the_job_from_pending_to_running_to_succeeded_and_a_new_restore_may_start() {
    let app = spawn_app(Options::default()).await;
    let token = hs256(&claims());
    let body: Value = app
        .post_restore(Some(&token), json!({"backup": "latest"}))
        .await
        .json()
        .await
        .unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let job = body["job"].as_str().unwrap().to_owned();
    let get = || async {
        let r = app.get(&format!("/v1/restores/{id}"), Some(&token)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    assert_eq!(get().await["status"], "pending");
    set_job_status(
        &app,
        &job,
        JobStatus {
            active: Some(1),
            ..JobStatus::default()
        },
    )
    .await;
    assert_eq!(get().await["status"], "running");
    set_job_status(
        &app,
        &job,
        JobStatus {
            conditions: Some(vec![condition("Complete", "Done")]),
            succeeded: Some(1),
            ..JobStatus::default()
        },
    )
    .await;
    assert_eq!(get().await["status"], "succeeded");
    let r = app
        .post_restore(Some(&hs256(&claims())), json!({"backup": "latest"}))
        .await;
    assert_eq!(
        r.status(),
        202,
        "a finished restore does not block the next"
    );

    let r = app.get("/v1/restores/ffffffffffff", Some(&token)).await;
    assert_eq!(r.status(), 404);
    let r = app.get(&format!("/v1/restores/{id}"), None).await;
    assert_eq!(r.status(), 401, "status needs a token too");
    // The follower notices the outcome (polled: it runs on its own schedule).
    let mut seen = false;
    for _ in 0..100 {
        if app
            .metrics()
            .await
            .contains("eternia_restore_total{result=\"succeeded\"} 1")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen,
        "the restore's success reaches the metrics within 10 s"
    );
}

#[test]
fn job_conditions_map_to_restore_states() {
    let with = |s: JobStatus| Job {
        status: Some(s),
        ..Job::default()
    };
    assert_eq!(job_state(&Job::default()).0, State::Pending);
    assert_eq!(
        job_state(&with(JobStatus {
            active: Some(1),
            ..JobStatus::default()
        }))
        .0,
        State::Running
    );
    let failed = job_state(&with(JobStatus {
        conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]),
        ..JobStatus::default()
    }));
    assert_eq!(failed.0, State::Failed);
    assert!(failed.1.unwrap().contains("BackoffLimitExceeded"));
    assert_eq!(
        job_state(&with(JobStatus {
            conditions: Some(vec![condition("SuccessCriteriaMet", "x")]),
            active: Some(1),
            ..JobStatus::default()
        }))
        .0,
        State::Succeeded
    );
    let not_true = JobCondition {
        status: "False".into(),
        ..condition("Failed", "x")
    };
    assert_eq!(
        job_state(&with(JobStatus {
            conditions: Some(vec![not_true]),
            active: Some(1),
            ..JobStatus::default()
        }))
        .0,
        State::Running
    );
}

// ---------- limits ----------

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_before_anything_else() {
    let app = spawn_app(Options::default()).await;
    let big = json!({"backup": "latest", "reason": "x".repeat(70 * 1024)});
    let r = app.post_restore(Some(&hs256(&claims())), big).await;
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("a JSON error, as every other");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("WEBHOOK_BODY_LIMIT"),
        "{body}"
    );
    assert!(app.jobs().await.is_empty());
}

#[tokio::test]
async fn a_before_reference_with_anything_else_in_it_is_refused() {
    let app = spawn_app(Options::default()).await;
    let body =
        json!({"backup": {"before": "2026-11-27T03:00:00Z", "after": "2026-01-01T00:00:00Z"}});
    let r = app.post_restore(Some(&hs256(&claims())), body).await;
    assert_eq!(r.status(), 400);
    assert!(app.jobs().await.is_empty());
}

#[tokio::test]
async fn a_slack_request_with_a_bad_signature_gets_401_without_a_bearer_challenge() {
    let app = spawn_app(Options::default()).await;
    let form = command_form("U_ALICE", "list", "", "trig-sig");
    let r = app
        .slack("/slack/commands", &form, now(), Some("text=tampered"))
        .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(
        body["hint"]
            .as_str()
            .unwrap()
            .contains("SLACK_SIGNING_SECRET"),
        "{body}"
    );
}

#[tokio::test]
async fn a_source_over_the_rate_limit_gets_429_and_health_checks_are_never_limited() {
    let app = spawn_app(Options {
        rate_limit_per_minute: 60,
        rate_burst: 5,
        ..Options::default()
    })
    .await;
    let statuses = app.bad_token_statuses(&["/v1/restores"; 8]).await;
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5..], [429; 3]);
    for _ in 0..10 {
        let r = app.get("/healthz", None).await;
        assert_eq!(r.status(), 200);
    }
    assert!(
        app.metrics()
            .await
            .contains("route=\"/v1/restores\",status=\"429\"} 3")
    );
}

#[tokio::test]
async fn a_percent_encoded_path_is_rate_limited_as_the_route_it_reaches() {
    let app = spawn_app(Options {
        rate_limit_per_minute: 60,
        rate_burst: 5,
        ..Options::default()
    })
    .await;
    let spellings = [
        "/v1/restores",
        "/%761/restores",
        "/v1/%72estores",
        "/v1//restores",
    ];
    let twice: Vec<&str> = spellings.iter().flat_map(|p| [*p, *p]).collect();
    let statuses = app.bad_token_statuses(&twice).await;
    // Every spelling reached the same route (401), and together they spent one source's burst.
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(
        statuses[5..].iter().all(|s| *s == 429 || *s == 404),
        "{statuses:?}"
    );
    assert!(statuses[5..].contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_method_a_route_does_not_have_is_answered_405_not_404() {
    let app = spawn_app(Options::default()).await;
    assert_eq!(app.get("/v1/restores", None).await.status(), 405);
    let r = app.post_json("/v1/backups", None, json!({})).await;
    assert_eq!(r.status(), 405);
    assert_eq!(app.get("/v1/nothing-here", None).await.status(), 404);
}

// ---------- Slack ----------

fn command_form(user: &str, text: &str, response_url: &str, trigger: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "deprecated-verification-token"),
        ("team_id", "T1"),
        ("channel_id", "C_OPS"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/eternia-backup"),
        ("text", text),
        ("response_url", response_url),
        ("trigger_id", trigger),
    ])
    .unwrap()
}

fn click_form(user: &str, value: &str, response_url: &str) -> String {
    click_form_in("C_OPS", user, value, response_url)
}

fn click_form_in(channel: &str, user: &str, value: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user},
        "channel": {"id": channel},
        "trigger_id": format!("click-{user}"),
        "response_url": response_url,
        "actions": [{"action_id": "confirm_restore", "value": value}]
    });
    serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap()
}

/// A local stand-in for Slack's response_url: records each message posted to it.
async fn response_url_sink() -> (String, Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/response", listener.local_addr().unwrap());
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len = text[..i]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            let v: Value =
                                serde_json::from_slice(&buf[i + 4..i + 4 + len]).unwrap();
                            sink.lock().unwrap().push(v);
                            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, got)
}

fn confirm_value(reply: &Value) -> String {
    reply["blocks"][1]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_confirmation_asked_in_one_channel_cannot_be_clicked_in_another() {
    let app = spawn_app(Options::default()).await;
    let (url, _posted) = response_url_sink().await;
    let r = app
        .command("U_ALICE", "restore latest", &url, "trig-chan")
        .await;
    let value = confirm_value(&r.json().await.unwrap());

    let r = app
        .slack(
            "/slack/interactions",
            &click_form_in("C_ELSEWHERE", "U_ALICE", &value, &url),
            now(),
            None,
        )
        .await;
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("channel it was asked in"),
        "{reply}"
    );
    assert!(app.jobs().await.is_empty());
    assert!(
        app.metrics()
            .await
            .contains("reason=\"slack_confirm_other_channel\"} 1")
    );
}

#[tokio::test]
async fn a_signed_slack_restore_asks_for_confirmation_and_the_same_user_confirming_starts_it() {
    let app = spawn_app(Options::default()).await;
    let (url, posted) = response_url_sink().await;
    let r = app
        .command("U_ALICE", "restore latest", &url, "trig-1")
        .await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"].as_str().unwrap().contains("restore `latest`"),
        "{reply}"
    );
    assert!(
        app.jobs().await.is_empty(),
        "nothing starts before the confirmation"
    );
    let value = confirm_value(&reply);

    // Bob may use the command, but cannot confirm Alice's restore.
    let r = app.click("U_BOB", &value, &url).await;
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"].as_str().unwrap().contains("Only <@U_ALICE>"),
        "{reply}"
    );
    assert!(app.jobs().await.is_empty());

    let r = app.click("U_ALICE", &value, &url).await;
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .contains("started by <@U_ALICE>"),
        "{reply}"
    );
    // A second click is the same restore.
    app.click("U_ALICE", &value, &url).await;
    let jobs = app.jobs().await;
    assert_eq!(jobs.len(), 1);
    let name = jobs[0].metadata.name.clone().unwrap();
    assert_eq!(
        jobs[0].metadata.annotations.as_ref().unwrap()["eternia-backup.io/requested-by"],
        "slack:U_ALICE"
    );

    // Progress goes to the response_url.
    set_job_status(
        &app,
        &name,
        JobStatus {
            conditions: Some(vec![condition("Failed", "BackoffLimitExceeded")]),
            ..JobStatus::default()
        },
    )
    .await;
    for _ in 0..50 {
        if posted
            .lock()
            .unwrap()
            .iter()
            .any(|m| m["text"].as_str().unwrap_or("").contains("FAILED"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let msgs = posted.lock().unwrap().clone();
    let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        texts.iter().any(|t| t.contains("Only <@U_ALICE>")),
        "refusals reach the response_url: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("started by <@U_ALICE>")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("FAILED: BackoffLimitExceeded")),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_forged_or_tampered_confirmation_starts_nothing() {
    let app = spawn_app(Options::default()).await;
    let r = app.command("U_ALICE", "restore latest", "", "trig-2").await;
    let value = confirm_value(&r.json().await.unwrap());
    let (payload, mac) = value.split_once('.').unwrap();
    let forged = format!("{payload}.{}", "00".repeat(mac.len() / 2));
    let r = app.click("U_ALICE", &forged, "").await;
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"].as_str().unwrap().contains("not valid"),
        "{reply}"
    );
    assert!(app.jobs().await.is_empty());
}

#[tokio::test]
async fn slack_requests_with_a_stale_timestamp_an_altered_body_or_no_signature_are_refused() {
    let app = spawn_app(Options::default()).await;
    let form = command_form("U_ALICE", "restore latest dry-run", "", "trig-3");
    let r = app.slack("/slack/commands", &form, now() - 301, None).await;
    assert_eq!(r.status(), 401, "stale timestamp");
    let altered = form.replacen("dry-run", "dry-ruN", 1);
    assert_eq!(altered.len(), form.len());
    let r = app
        .slack("/slack/commands", &form, now(), Some(&altered))
        .await;
    assert_eq!(r.status(), 401, "one byte changed");
    let r = app
        .http
        .post(format!("{}/slack/commands", app.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no signature");
    assert!(app.jobs().await.is_empty());
    let m = app.metrics().await;
    assert!(m.contains("reason=\"slack_stale_timestamp\"} 1"), "{m}");
    assert!(m.contains("reason=\"slack_bad_signature\"} 1"), "{m}");

    let r = app.slack("/slack/commands", &form, now(), None).await;
    assert_eq!(r.status(), 200, "the same request, signed and fresh");
    assert_eq!(
        app.jobs().await.len(),
        1,
        "a dry run starts without confirmation"
    );
}

#[tokio::test]
async fn a_slack_user_not_on_the_allowlist_is_told_so_and_nothing_starts() {
    let app = spawn_app(Options::default()).await;
    let r = app
        .command("U_MALLORY", "restore latest dry-run", "", "trig-4")
        .await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert!(
        reply["text"].as_str().unwrap().contains("not allowed"),
        "{reply}"
    );
    assert!(app.jobs().await.is_empty());
    assert!(
        app.metrics()
            .await
            .contains("reason=\"slack_user_not_allowed\"} 1")
    );
}

#[tokio::test]
async fn a_slack_retry_of_the_same_trigger_is_answered_once_and_starts_one_job() {
    let app = spawn_app(Options::default()).await;
    let form = command_form("U_ALICE", "restore latest dry-run", "", "trig-5");
    let a: Value = app
        .slack("/slack/commands", &form, now(), None)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .slack("/slack/commands", &form, now(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(app.jobs().await.len(), 1);
}

// ---------- the binary ----------

struct Served {
    child: std::process::Child,
    base: String,
}

/// `eternia-backup serve` on a free port with `env`, once `/healthz` answers.
async fn serve_binary(env: &[(&str, &str)]) -> Served {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap().keep();
    let mut cmd = crate::helpers::bin();
    cmd.arg("serve")
        .env("WEBHOOK_LISTEN", format!("127.0.0.1:{port}"))
        .env("BACKUP_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return Served { child, base };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("serve did not answer /healthz within 10 s");
}

impl Served {
    /// SIGTERM, then the exit code and everything the process printed.
    fn stop(mut self) -> (Option<i32>, String) {
        use std::io::Read;
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (code, out)
    }
}

#[tokio::test]
async fn serve_without_any_credentials_answers_healthz_refuses_restores_and_stops_cleanly_on_sigterm()
 {
    let s = serve_binary(&[]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/restores", s.base))
        .bearer_auth("anything")
        .json(&json!({"backup": "latest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("not configured"),
        "{body}"
    );
    let r = http.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 503, "no Kubernetes API here");
    let (code, out) = s.stop();
    assert_eq!(code, Some(0), "graceful shutdown exits 0:\n{out}");
    assert!(out.contains("no token verification configured"), "{out}");
    assert!(out.contains("restore webhook stopped"), "{out}");
}

#[test]
fn serve_refuses_to_start_with_a_short_hs256_secret_or_a_jwks_without_a_subject_policy() {
    let short = crate::helpers::run(
        crate::helpers::bin()
            .arg("serve")
            .env("WEBHOOK_JWT_HS256_SECRET", "short-secret-9"),
    );
    assert_eq!(short.code, 2, "{short:?}");
    assert!(short.stderr.contains("shorter than 32 bytes"), "{short:?}");
    assert!(
        !short.stderr.contains("short-secret-9"),
        "the secret is not printed"
    );
    let jwks = crate::helpers::run(
        crate::helpers::bin()
            .arg("serve")
            .env(
                "WEBHOOK_JWKS_URL",
                "https://token.actions.githubusercontent.com/.well-known/jwks",
            )
            .env("WEBHOOK_JWT_AUDIENCE", "eternia-backup"),
    );
    assert_eq!(jwks.code, 2, "{jwks:?}");
    assert!(jwks.stderr.contains("WEBHOOK_ALLOWED_SUBJECTS"), "{jwks:?}");
    for open in ["*", "repo:*", "repo:eternia*"] {
        let any = crate::helpers::run(
            crate::helpers::bin()
                .arg("serve")
                .env(
                    "WEBHOOK_JWKS_URL",
                    "https://token.actions.githubusercontent.com/.well-known/jwks",
                )
                .env("WEBHOOK_JWT_AUDIENCE", "eternia-backup")
                .env(
                    "WEBHOOK_JWT_ISSUER",
                    "https://token.actions.githubusercontent.com",
                )
                .env(
                    "WEBHOOK_ALLOWED_SUBJECTS",
                    format!("repo:eternia/app:ref:refs/heads/main,{open}"),
                ),
        );
        assert_eq!(any.code, 2, "{open}: {any:?}");
        assert!(
            any.stderr.contains("matches every subject"),
            "{open}: {any:?}"
        );
    }
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_the_webhooks_output_or_metrics() {
    let slack_secret = "slack-secret-value-7f3a9c";
    let s = serve_binary(&[
        ("WEBHOOK_JWT_HS256_SECRET", HS_SECRET),
        ("WEBHOOK_JWT_AUDIENCE", AUDIENCE),
        ("WEBHOOK_JWT_ISSUER", ISSUER),
        ("SLACK_SIGNING_SECRET", slack_secret),
        ("SLACK_ALLOWED_USERS", "U_ALICE"),
        ("LOG_FORMAT", "json"),
    ])
    .await;
    let http = reqwest::Client::new();
    let good = hs256(&claims());
    let mut wrong = claims();
    wrong["aud"] = json!("other");
    let bad = hs256(&wrong);
    for token in [&good, &bad, &"garbage.token.value".to_string()] {
        http.post(format!("{}/v1/restores", s.base))
            .bearer_auth(token)
            .json(&json!({"backup": "latest"}))
            .send()
            .await
            .unwrap();
    }
    http.post(format!("{}/slack/commands", s.base))
        .header("X-Slack-Request-Timestamp", now().to_string())
        .header("X-Slack-Signature", "v0=deadbeef")
        .body("user_id=U_ALICE&text=restore+latest")
        .send()
        .await
        .unwrap();
    let metrics = http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, out) = s.stop();
    for secret in [
        HS_SECRET,
        slack_secret,
        good.as_str(),
        bad.as_str(),
        "garbage.token.value",
    ] {
        assert!(!out.contains(secret), "output leaks {secret}:\n{out}");
        assert!(!metrics.contains(secret), "metrics leak {secret}");
    }
    assert!(
        out.contains("\"target\":\"audit\""),
        "refusals are audited:\n{out}"
    );
    assert!(out.contains("wrong_audience"), "{out}");
}

// ---------- under load ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_mixed_requests_at_once_start_exactly_one_restore_and_refuse_every_invalid_one()
 {
    let app = Arc::new(spawn_app(Options::default()).await);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"forged-forged-forged-forged-forged-forged"),
    )
    .unwrap();
    let valid = hs256(&claims());
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let app = app.clone();
        let token = if i % 2 == 0 {
            valid.clone()
        } else {
            forged.clone()
        };
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let status = app
                .post_restore(Some(&token), json!({"backup": "latest"}))
                .await
                .status()
                .as_u16();
            drop(permit);
            (i % 2 == 0, status)
        }));
    }
    let mut counts: std::collections::BTreeMap<(bool, u16), usize> = Default::default();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        counts.get(&(true, 202)),
        Some(&1),
        "exactly one restore started: {counts:?}"
    );
    assert_eq!(
        counts.get(&(true, 409)),
        Some(&999),
        "every other valid request saw it running: {counts:?}"
    );
    assert_eq!(
        counts.get(&(false, 401)),
        Some(&1000),
        "every forged one refused: {counts:?}"
    );
    assert_eq!(app.jobs().await.len(), 1);
}
