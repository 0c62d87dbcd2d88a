//! Restore's Kubernetes steps through the real `kube::Client`: server-side apply of archived objects
//! (in-memory API), the rollout-restart patch and the wait (request-shape mock).

use std::collections::BTreeMap;
use std::time::Duration;

use eternia_backup::kube::apply::{Action, apply_objects, rollout_restart, wait_rollout};
use http::{Request, Response};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::client::Body;

const NS: &str = "eternia-production";

fn archived(name: &str, value: &str, extra_meta: &str) -> Vec<u8> {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: old-ns\n{extra_meta}data:\n  LOG_LEVEL: {value}\n").into_bytes()
}

fn live(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "LOG_LEVEL".to_string(),
            value.to_string(),
        )])),
        ..ConfigMap::default()
    }
}

async fn cluster() -> kube::Client {
    kube_fake_client::ClientBuilder::new()
        .with_object(live("changed", "debug"))
        .with_object(live("same", "info"))
        .with_object(live("argo-owned", "debug"))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn archived_objects_overwrite_existing_ones_create_missing_ones_and_skip_argo_cd_managed_ones()
 {
    let client = cluster().await;
    let objects = vec![
        archived("changed", "info", ""),
        archived("same", "info", ""),
        archived("missing", "warn", ""),
        archived(
            "argo-owned",
            "info",
            "  annotations:\n    argocd.argoproj.io/tracking-id: app:/ConfigMap:eternia-production/argo-owned\n",
        ),
    ];

    let plan = apply_objects(client.clone(), NS, &objects, false, true)
        .await
        .unwrap();
    let actions: Vec<_> = plan.iter().map(|a| (a.name.as_str(), a.action)).collect();
    assert_eq!(
        actions,
        [
            ("changed", Action::Update),
            ("same", Action::Unchanged),
            ("missing", Action::Create),
            ("argo-owned", Action::Skipped)
        ]
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    assert_eq!(
        api.get("changed").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "debug",
        "a dry run changes nothing"
    );

    apply_objects(client.clone(), NS, &objects, false, false)
        .await
        .unwrap();
    assert_eq!(
        api.get("changed").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "info"
    );
    assert_eq!(
        api.get("missing").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "warn"
    );
    assert_eq!(
        api.get("argo-owned").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "debug"
    );

    apply_objects(client.clone(), NS, &objects, true, false)
        .await
        .unwrap();
    assert_eq!(
        api.get("argo-owned").await.unwrap().data.unwrap()["LOG_LEVEL"],
        "info",
        "--include-gitops-managed"
    );
}

async fn next(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("a request came")
        .expect("service alive")
}

fn deployment(generation: i64, observed: i64, updated: i32, available: i32) -> Response<Body> {
    let d = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "eternia-backend", "namespace": NS, "generation": generation},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}}},
        "status": {"observedGeneration": observed, "replicas": 2, "updatedReplicas": updated, "availableReplicas": available}
    });
    Response::builder()
        .body(Body::from(serde_json::to_vec(&d).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn rollout_restart_sends_kubectls_patch_and_the_wait_follows_the_status() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), http::Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/apis/apps/v1/namespaces/eternia-production/deployments/eternia-backend"
        );
        assert!(
            req.uri()
                .query()
                .unwrap()
                .contains("fieldManager=eternia-backup")
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let body = req.into_body().collect_bytes().await.unwrap();
        let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            patch["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-11-27T03:00:00Z"
        );
        send.send_response(deployment(2, 1, 0, 2));
        // The wait: first the old generation, then half rolled out, then done.
        for resp in [
            deployment(2, 1, 0, 2),
            deployment(2, 2, 1, 1),
            deployment(2, 2, 2, 2),
        ] {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), http::Method::GET);
            send.send_response(resp);
        }
    });
    rollout_restart(
        client.clone(),
        NS,
        "eternia-backend",
        "2026-11-27T03:00:00Z",
    )
    .await
    .unwrap();
    wait_rollout(
        client,
        NS,
        "eternia-backend",
        Duration::from_secs(10),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_deployment_that_never_becomes_ready_is_named_after_the_timeout() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    tokio::spawn(async move {
        while let Ok(Some((_, send))) =
            tokio::time::timeout(Duration::from_secs(2), handle.next_request()).await
        {
            send.send_response(deployment(3, 3, 2, 1));
        }
    });
    let err = wait_rollout(
        client,
        NS,
        "eternia-backend",
        Duration::from_millis(200),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("deployment/eternia-backend")
            && err.contains("1 of 2")
            && err.contains("kubectl rollout status"),
        "{err}"
    );
}
