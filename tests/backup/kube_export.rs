//! The Kubernetes export through the real `kube::Client`: against an in-memory API (kube-fake-client) for
//! the exported YAML and the selectors, and against a request-shape mock for pagination and a 403's text.
//! What a backup exports from a real namespace (skipping the CA bundle, ServiceAccount tokens and Helm
//! releases, the exclude selector) runs on the real API server: tests/cluster/test_workflows.py.

use std::collections::BTreeMap;
use std::time::Duration;

use eternia_backup::kube::export::{ExportFilter, export_namespace};
use eternia_backup::kube::selector::Selector;
use http::{Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;

const NS: &str = "eternia-production";

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        uid: Some("0b0e7f4c-uid".into()),
        resource_version: Some("12345".into()),
        ..ObjectMeta::default()
    }
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, labels),
        data: Some(BTreeMap::from([("LOG_LEVEL".into(), "info".into())])),
        ..ConfigMap::default()
    }
}

fn secret(name: &str, ty: &str) -> Secret {
    Secret {
        metadata: meta(name, &[]),
        type_: Some(ty.into()),
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(b"s3cr3t-value".to_vec()),
        )])),
        ..Secret::default()
    }
}

async fn fake_cluster() -> kube::Client {
    kube_fake_client::ClientBuilder::new()
        .with_object(config_map("app-config", &[("app", "eternia")]))
        .with_object(config_map("kube-root-ca.crt", &[]))
        .with_object(config_map("scratch", &[("backup.eternia.io/skip", "true")]))
        .with_object(secret("db-credentials", "Opaque"))
        .with_object(secret(
            "default-token-abcde",
            "kubernetes.io/service-account-token",
        ))
        .with_object(secret(
            "sh.helm.release.v1.eternia.v3",
            "helm.sh/release.v1",
        ))
        .build()
        .await
        .unwrap()
}

fn filter() -> ExportFilter {
    ExportFilter {
        page_size: 100,
        ..ExportFilter::default()
    }
}

#[tokio::test]
async fn exported_yaml_is_applyable_with_server_set_fields_stripped() {
    let export = export_namespace(fake_cluster().await, NS, &filter())
        .await
        .unwrap();
    let secret = export.objects.iter().find(|o| o.kind == "Secret").unwrap();
    let v: serde_json::Value = serde_yaml_ng::from_slice(&secret.yaml).unwrap();
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["metadata"]["name"], "db-credentials");
    assert_eq!(v["metadata"]["namespace"], NS);
    for field in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
    ] {
        assert!(v["metadata"].get(field).is_none(), "{field} was kept");
    }
    assert_eq!(
        v["data"]["password"], "czNjcjN0LXZhbHVl",
        "base64 like kubectl"
    );
    assert!(
        !format!("{secret:?}").contains("czNjcjN0"),
        "Debug output never shows Secret data"
    );
}

#[tokio::test]
async fn include_and_exclude_selectors_filter_objects() {
    let only_app = ExportFilter {
        include: Some("app=eternia".into()),
        ..filter()
    };
    let e = export_namespace(fake_cluster().await, NS, &only_app)
        .await
        .unwrap();
    assert_eq!(
        e.objects
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["app-config"]
    );

    let skip = ExportFilter {
        exclude: Some(Selector::parse("backup.eternia.io/skip=true").unwrap()),
        ..filter()
    };
    let e = export_namespace(fake_cluster().await, NS, &skip)
        .await
        .unwrap();
    assert!(!e.objects.iter().any(|o| o.name == "scratch"));
    assert_eq!(e.objects.len(), 2);

    let system = ExportFilter {
        include_system: true,
        ..filter()
    };
    let e = export_namespace(fake_cluster().await, NS, &system)
        .await
        .unwrap();
    assert_eq!(e.objects.len(), 6);
}

/// A mocked API server that asserts each request's method, path and query and answers in order.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    script: Vec<(&'static str, serde_json::Value)>,
) {
    for (expected, body) in script {
        let (req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("request never came: {expected}"))
            .expect("service not dropped");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().to_string(), expected);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }
}

fn list(kind: &str, names: &[&str], cont: Option<&str>) -> serde_json::Value {
    let items: Vec<_> = names
        .iter()
        .map(|n| serde_json::json!({"metadata": {"name": n, "namespace": NS}, "data": {}}))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"continue": cont.unwrap_or("")}, "items": items})
}

#[tokio::test]
async fn export_follows_continue_tokens_and_sends_the_label_selector() {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(serve(
        handle,
        vec![
            (
                "/api/v1/namespaces/eternia-production/configmaps?&labelSelector=app%3Deternia&limit=2",
                list("ConfigMap", &["a", "b"], Some("page-2")),
            ),
            (
                "/api/v1/namespaces/eternia-production/configmaps?&labelSelector=app%3Deternia&limit=2&continue=page-2",
                list("ConfigMap", &["c"], None),
            ),
            (
                "/api/v1/namespaces/eternia-production/secrets?&labelSelector=app%3Deternia&limit=2",
                list("Secret", &["s1"], None),
            ),
        ],
    ));
    let f = ExportFilter {
        include: Some("app=eternia".into()),
        page_size: 2,
        ..ExportFilter::default()
    };
    let e = export_namespace(client, NS, &f).await.unwrap();
    server.await.unwrap();
    assert_eq!(
        e.objects
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c", "s1"]
    );
}

#[tokio::test]
async fn a_forbidden_list_names_the_rbac_to_grant() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "configmaps is forbidden", "reason": "Forbidden", "code": 403});
        send.send_response(
            Response::builder()
                .status(403)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    });
    let err = export_namespace(client, NS, &filter())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("forbidden")
            && err.contains("RBAC")
            && err.contains("list on configmaps and secrets"),
        "{err}"
    );
}
