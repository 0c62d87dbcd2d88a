//! Restore's rollout-restart patch and the wait through the real `kube::Client` against a request-shape mock
//! (a status sequence in a chosen order, a Deployment that never becomes ready). Server-side apply of the
//! archived objects and a real rollout run on the real API server: tests/cluster/test_workflows.py.

use std::time::Duration;

use eternia_backup::kube::apply::{rollout_restart, wait_rollout};
use http::{Request, Response};
use kube::client::Body;

const NS: &str = "eternia-production";

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
