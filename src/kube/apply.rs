//! Restore side of Kubernetes: server-side apply of the archived ConfigMaps/Secrets (field manager
//! `eternia-backup`, overwriting existing objects), then rollout restart of Deployments and a wait for them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, instrument};

use super::error::{Needs, call_failed};
use crate::error::{Error, Result};

/// Applying the archived objects (the chart's restore Role in the application namespace).
const APPLY: Needs = Needs {
    rbac: "get, create and patch on configmaps and secrets in the target namespace",
    not_found: "the target namespace (BACKUP_NAMESPACE, or --target-namespace) exists",
};

/// Restarting and watching the application's Deployments.
const RESTART: Needs = Needs {
    rbac: "get and patch on deployments (apps) in the target namespace",
    not_found: "the Deployment names in RESTORE_DEPLOYMENTS (--restart) and the target namespace",
};

pub const FIELD_MANAGER: &str = "eternia-backup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    /// Managed by Argo CD: self-heal would revert it, so it is left alone unless asked.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: String,
    pub name: String,
    pub action: Action,
}

/// Argo CD marks what it manages with a tracking annotation or the instance label.
fn gitops_managed(meta: &serde_json::Value) -> bool {
    meta.pointer("/annotations/argocd.argoproj.io~1tracking-id")
        .is_some()
        || meta
            .pointer("/labels/argocd.argoproj.io~1instance")
            .is_some()
}

/// Applies each archived object (`yaml`) into `namespace`. With `dry_run` only decides the action.
#[instrument(skip(client, objects), fields(namespace, count = objects.len()))]
pub async fn apply_objects(
    client: Client,
    namespace: &str,
    objects: &[Vec<u8>],
    include_gitops: bool,
    dry_run: bool,
) -> Result<Vec<Applied>> {
    let mut out = Vec::new();
    for yaml in objects {
        let mut v: serde_json::Value =
            serde_yaml_ng::from_slice(yaml).map_err(|e| Error::Kubernetes {
                what: "read an archived object".into(),
                problem: e.to_string(),
                hint: "the archive passed verification, so this is a bug: report it".into(),
            })?;
        v["metadata"]["namespace"] = serde_json::Value::String(namespace.to_owned());
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let action = if !include_gitops && gitops_managed(&v["metadata"]) {
            Action::Skipped
        } else {
            match kind.as_str() {
                "ConfigMap" => {
                    apply_one::<ConfigMap>(&client, namespace, &name, v, dry_run).await?
                }
                "Secret" => apply_one::<Secret>(&client, namespace, &name, v, dry_run).await?,
                other => {
                    return Err(Error::Kubernetes {
                        what: format!("apply {other} {name}"),
                        problem: "only ConfigMaps and Secrets are restored".into(),
                        hint: "the archive content".into(),
                    });
                }
            }
        };
        info!(kind, name, ?action, dry_run, "kubernetes object");
        out.push(Applied { kind, name, action });
    }
    Ok(out)
}

async fn apply_one<K>(
    client: &Client,
    ns: &str,
    name: &str,
    desired: serde_json::Value,
    dry_run: bool,
) -> Result<Action>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| call_failed(format!("get {name} in {ns}"), APPLY, e))?;
    let action = match &existing {
        None => Action::Create,
        Some(cur) => {
            let cur = serde_json::to_value(cur).unwrap_or_default();
            let same = ["data", "binaryData", "stringData", "type"]
                .iter()
                .all(|f| cur.get(*f) == desired.get(*f) || desired.get(*f).is_none());
            if same {
                Action::Unchanged
            } else {
                Action::Update
            }
        }
    };
    if !dry_run && action != Action::Unchanged {
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|e| call_failed(format!("apply {name} in {ns}"), APPLY, e))?;
    }
    Ok(action)
}

/// `deployment/NAME` or `NAME` → `NAME`.
pub fn deployment_name(spec: &str) -> Result<&str> {
    let name = spec
        .strip_prefix("deployment/")
        .or_else(|| spec.strip_prefix("deployments/"))
        .unwrap_or(spec);
    if name.is_empty() || name.contains('/') {
        return Err(Error::config(format!(
            "--restart {spec:?}: expected deployment/NAME"
        )));
    }
    Ok(name)
}

/// The same patch `kubectl rollout restart` sends.
pub fn restart_patch(at: &str) -> serde_json::Value {
    serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
}

#[instrument(skip(client))]
pub async fn rollout_restart(client: Client, ns: &str, name: &str, at: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(name, &pp, &Patch::Merge(&restart_patch(at)))
        .await
        .map_err(|e| call_failed(format!("restart deployment/{name} in {ns}"), RESTART, e))?;
    Ok(())
}

/// True when the Deployment's rollout finished (what `kubectl rollout status` waits for).
pub fn rollout_complete(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else { return false };
    st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && st.updated_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= st.updated_replicas.unwrap_or(0)
        && st.available_replicas.unwrap_or(0) >= want
}

#[instrument(skip(client))]
pub async fn wait_rollout(
    client: Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let start = Instant::now();
    loop {
        let d = api
            .get(name)
            .await
            .map_err(|e| call_failed(format!("get deployment/{name} in {ns}"), RESTART, e))?;
        if rollout_complete(&d) {
            info!(
                deployment = name,
                secs = start.elapsed().as_secs(),
                "rollout complete"
            );
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let st = d.status.unwrap_or_default();
            let conditions: BTreeMap<String, String> = st
                .conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.type_, c.message.unwrap_or(c.status)))
                .collect();
            return Err(Error::Kubernetes {
                what: format!("wait for deployment/{name} in {ns}"),
                problem: format!(
                    "rollout not complete after {}s ({} of {} replicas updated and available; {conditions:?})",
                    timeout.as_secs(),
                    st.available_replicas.unwrap_or(0),
                    d.spec.and_then(|s| s.replicas).unwrap_or(1)
                ),
                hint: format!(
                    "kubectl rollout status deployment/{name} -n {ns}; kubectl describe pods -n {ns} (image, probes, the restored config)"
                ),
            });
        }
        tokio::time::sleep(poll).await;
    }
}
