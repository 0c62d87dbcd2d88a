//! The chart's RBAC against what the code calls: each component's Kubernetes code runs against an
//! in-memory API behind a recorder, and the (namespace, group, resource, verb) of every request is
//! compared with `chart/rbac-contract.yaml` (which `tests/chart/test_rbac.py` compares with the rendered
//! Roles). A call the contract lacks would be a 403 in a cluster; a grant no call uses is privilege
//! nobody needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eternia_backup::kube::apply::{apply_objects, rollout_restart, wait_rollout};
use eternia_backup::kube::export::{ExportFilter, export_namespace};
use eternia_backup::kube::lease::{self, LeaseConfig};
use eternia_backup::webhook::jobs::{NewRestore, RestoreJobs};
use http::Request;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use serde::Deserialize;
use serde_json::json;

const APP: &str = "eternia-production";
const RELEASE: &str = "backup";

type Call = (String, String, String, String);

/// A client whose every request is recorded as (namespace role, API group, resource, verb).
fn recording(fake: kube::Client, calls: Arc<Mutex<BTreeSet<Call>>>) -> kube::Client {
    let svc = tower::service_fn(move |req: Request<Body>| {
        let fake = fake.clone();
        calls.lock().unwrap().insert(classify(&req));
        async move { fake.send(req).await }
    });
    kube::Client::new(svc, "default")
}

fn classify(req: &Request<Body>) -> Call {
    let parts: Vec<&str> = req
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => panic!("unexpected path {}", req.uri()),
    };
    let ["namespaces", ns, resource, named @ ..] = rest else {
        panic!("a cluster-scoped call: {}", req.uri())
    };
    let role = match *ns {
        APP => "app",
        RELEASE => "release",
        other => panic!("a call into namespace {other}"),
    };
    let resource = match named {
        [_, sub] => format!("{resource}/{sub}"),
        _ => resource.to_string(),
    };
    let query = req.uri().query().unwrap_or_default();
    let verb = match (req.method().as_str(), named.is_empty()) {
        ("GET", true) if query.contains("watch=true") => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (m, _) => panic!("method {m}"),
    };
    (role.into(), group.into(), resource, verb.into())
}

#[derive(Deserialize)]
struct Contract {
    components: BTreeMap<String, BTreeMap<String, Vec<Rule>>>,
}

#[derive(Clone, Deserialize)]
struct Rule {
    #[serde(rename = "apiGroup")]
    api_group: String,
    resource: String,
    verbs: Vec<String>,
}

fn granted(component: &str) -> BTreeSet<Call> {
    let text = std::fs::read_to_string("chart/rbac-contract.yaml").unwrap();
    let c: Contract = serde_yaml_ng::from_str(&text).unwrap();
    let mut out = BTreeSet::new();
    for (role, rules) in c.components.get(component).cloned().unwrap_or_default() {
        for r in rules {
            for v in r.verbs {
                out.insert((role.clone(), r.api_group.clone(), r.resource.clone(), v));
            }
        }
    }
    out
}

/// Grants no recorded call shows, with the reason they are still needed.
fn needed_without_a_call(call: &Call) -> bool {
    // Server-side apply of an object that does not exist yet is authorized as a create too.
    matches!(
        (call.1.as_str(), call.2.as_str(), call.3.as_str()),
        ("", "configmaps" | "secrets", "create")
    )
}

fn assert_matches_contract(component: &str, calls: &BTreeSet<Call>) {
    let granted = granted(component);
    let missing: Vec<&Call> = calls.difference(&granted).collect();
    let unused: Vec<&Call> = granted
        .difference(calls)
        .filter(|c| !needed_without_a_call(c))
        .collect();
    assert!(
        missing.is_empty(),
        "{component} calls what chart/rbac-contract.yaml does not grant (403 in a cluster): {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "chart/rbac-contract.yaml grants {component} what it never calls: {unused:?}"
    );
}

fn lease_cfg(holder: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: RELEASE.into(),
        name: "eternia-backup-restore".into(),
        holder: holder.into(),
        duration: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn the_backup_job_calls_exactly_what_its_roles_grant() {
    let fake = kube_fake_client::ClientBuilder::new()
        .with_object(ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("eternia-config".into()),
                namespace: Some(APP.into()),
                ..Default::default()
            },
            ..ConfigMap::default()
        })
        .build()
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let client = recording(fake, calls.clone());
    let filter = ExportFilter {
        include: None,
        exclude: None,
        include_system: false,
        page_size: 200,
    };
    export_namespace(client.clone(), APP, &filter)
        .await
        .unwrap();
    lease::holder(client, &lease_cfg("backup-pod"))
        .await
        .unwrap();
    assert_matches_contract("backup", &calls.lock().unwrap());
}

fn deployment_rolled_out() -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "eternia-backend", "namespace": APP, "generation": 1},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "b"}},
                 "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "b", "image": "b"}]}}},
        "status": {"observedGeneration": 5, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    }))
    .unwrap()
}

#[tokio::test]
async fn the_restore_job_calls_exactly_what_its_roles_grant() {
    let existing = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("eternia-config".into()),
            namespace: Some(APP.into()),
            ..Default::default()
        },
        ..ConfigMap::default()
    };
    let fake = kube_fake_client::ClientBuilder::new()
        .with_object(existing)
        .with_object(deployment_rolled_out())
        .build()
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let client = recording(fake, calls.clone());
    let guard = lease::acquire(client.clone(), &lease_cfg("restore-pod"))
        .await
        .unwrap();
    let objects = vec![
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: eternia-config\ndata:\n  A: b\n".to_vec(),
        b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: eternia-secrets\ntype: Opaque\ndata:\n  K: dg==\n".to_vec(),
    ];
    apply_objects(client.clone(), APP, &objects, false, true)
        .await
        .unwrap();
    apply_objects(client.clone(), APP, &objects, false, false)
        .await
        .unwrap();
    rollout_restart(
        client.clone(),
        APP,
        "eternia-backend",
        "2026-11-27T03:00:00Z",
    )
    .await
    .unwrap();
    wait_rollout(
        client,
        APP,
        "eternia-backend",
        Duration::from_secs(5),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    guard.release().await;
    assert_matches_contract("restore", &calls.lock().unwrap());
}

#[tokio::test]
async fn the_webhook_calls_exactly_what_its_role_grants() {
    let template: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "database-restore", "namespace": RELEASE, "uid": "u1"},
        "spec": {"schedule": "0 0 31 2 *", "jobTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/component": "restore"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "restore", "image": "x", "args": ["restore", "latest"]}]}}}}}
    }))
    .unwrap();
    let fake = kube_fake_client::ClientBuilder::new()
        .with_object(template)
        .build()
        .await
        .unwrap();
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let jobs = RestoreJobs {
        client: recording(fake.clone(), calls.clone()),
        namespace: RELEASE.into(),
        cronjob: "database-restore".into(),
        lease_namespace: RELEASE.into(),
        lease_name: "eternia-backup-restore".into(),
        log_tail_lines: 20,
    };
    jobs.ready().await.unwrap();
    let req = NewRestore {
        backup_arg: "latest".into(),
        dry_run: false,
        requested_by: "jwt:ci".into(),
        reason: String::new(),
        idempotency_key: Some("k".repeat(40)),
    };
    let started = match jobs.start(&req).await.unwrap() {
        eternia_backup::webhook::jobs::Started::New(s) => s,
        eternia_backup::webhook::jobs::Started::Existing(_) => panic!("new"),
    };
    // A failed restore: its status carries the log tail (pods list + pods/log).
    let api: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(fake.clone(), RELEASE);
    let mut job = api.get(&started.job).await.unwrap();
    job.status = Some(
        serde_json::from_value(json!({"conditions": [{"type": "Failed", "status": "True"}]}))
            .unwrap(),
    );
    api.replace(&started.job, &Default::default(), &job)
        .await
        .unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{}-abcde", started.job), "namespace": RELEASE, "labels": {"job-name": started.job}},
        "spec": {"containers": [{"name": "restore", "image": "x"}]}
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(fake, RELEASE)
        .create(&Default::default(), &pod)
        .await
        .unwrap();
    jobs.running().await.unwrap();
    jobs.start(&req).await.unwrap();
    jobs.status(&started.id).await.unwrap();
    jobs.recent(3).await.unwrap();
    assert_matches_contract("webhook", &calls.lock().unwrap());
}
