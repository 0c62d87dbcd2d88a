//! Export of the application namespace's ConfigMaps and Secrets as YAML, with server-set fields stripped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, instrument};

use super::error::{Needs, call_failed};
use super::selector::Selector;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Sent to the API server as `labelSelector`.
    pub include: Option<String>,
    /// Matched client-side: objects it matches are left out.
    pub exclude: Option<Selector>,
    /// Keep `kube-root-ca.crt`, service-account tokens and Helm release Secrets.
    pub include_system: bool,
    pub page_size: u32,
}

/// One exported object. `yaml` holds Secret data: it only ever goes into the archive.
#[derive(Clone)]
pub struct ExportedObject {
    pub kind: &'static str,
    pub name: String,
    pub path: String,
    pub yaml: Vec<u8>,
}

impl std::fmt::Debug for ExportedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({} bytes)", self.kind, self.name, self.yaml.len())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Export {
    pub namespace: String,
    pub objects: Vec<ExportedObject>,
    pub config_maps: u32,
    pub secrets: u32,
}

const SKIPPED_SECRET_TYPES: &[&str] =
    &["kubernetes.io/service-account-token", "helm.sh/release.v1"];
const SKIPPED_CONFIG_MAPS: &[&str] = &["kube-root-ca.crt"];
/// Fields the API server sets; restoring them would fail or lie.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

const EXPORT: Needs = Needs {
    rbac: "list on configmaps and secrets in this namespace",
    not_found: "the namespace name (BACKUP_NAMESPACE)",
};

#[instrument(skip(client, filter), fields(namespace = namespace))]
pub async fn export_namespace(
    client: Client,
    namespace: &str,
    filter: &ExportFilter,
) -> Result<Export> {
    let mut export = Export {
        namespace: namespace.to_owned(),
        ..Export::default()
    };
    let cms: Vec<ConfigMap> = list_all(
        Api::namespaced(client.clone(), namespace),
        namespace,
        "configmaps",
        filter,
    )
    .await?;
    for cm in cms {
        let name = cm.metadata.name.clone().unwrap_or_default();
        if !filter.include_system && SKIPPED_CONFIG_MAPS.contains(&name.as_str()) {
            debug!(name, "skipping system ConfigMap");
            continue;
        }
        if excluded(&cm.metadata.labels, filter) {
            continue;
        }
        export
            .objects
            .push(to_object("ConfigMap", namespace, &name, &cm)?);
        export.config_maps += 1;
    }
    let secrets: Vec<Secret> = list_all(
        Api::namespaced(client, namespace),
        namespace,
        "secrets",
        filter,
    )
    .await?;
    for s in secrets {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ty = s.type_.as_deref().unwrap_or("Opaque");
        if !filter.include_system && SKIPPED_SECRET_TYPES.contains(&ty) {
            debug!(name, r#type = ty, "skipping system Secret");
            continue;
        }
        if excluded(&s.metadata.labels, filter) {
            continue;
        }
        export
            .objects
            .push(to_object("Secret", namespace, &name, &s)?);
        export.secrets += 1;
    }
    info!(
        config_maps = export.config_maps,
        secrets = export.secrets,
        "exported namespace objects"
    );
    Ok(export)
}

fn excluded(labels: &Option<BTreeMap<String, String>>, filter: &ExportFilter) -> bool {
    let empty = BTreeMap::new();
    filter
        .exclude
        .as_ref()
        .is_some_and(|sel| sel.matches(labels.as_ref().unwrap_or(&empty)))
}

/// Lists every page (`limit` + `continue`).
async fn list_all<K>(
    api: Api<K>,
    namespace: &str,
    resource: &str,
    filter: &ExportFilter,
) -> Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(filter.page_size.max(1));
        if let Some(sel) = &filter.include {
            lp = lp.labels(sel);
        }
        if let Some(t) = token.take() {
            lp = lp.continue_token(&t);
        }
        let page = api.list(&lp).await.map_err(|e| {
            call_failed(
                format!("list {resource} in namespace {namespace}"),
                EXPORT,
                e,
            )
        })?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

fn to_object<K: Serialize>(
    kind: &'static str,
    namespace: &str,
    name: &str,
    obj: &K,
) -> Result<ExportedObject> {
    let mut v = serde_json::to_value(obj).map_err(|e| Error::Kubernetes {
        what: format!("serialize {kind} {name}"),
        problem: e.to_string(),
        hint: "report this as a bug".into(),
    })?;
    strip_server_fields(&mut v);
    let yaml = serde_yaml_ng::to_string(&v)
        .expect("a JSON value always serializes to YAML")
        .into_bytes();
    Ok(ExportedObject {
        kind,
        name: name.to_owned(),
        path: format!("kubernetes/{namespace}/{kind}/{name}.yaml"),
        yaml,
    })
}

pub fn strip_server_fields(v: &mut serde_json::Value) {
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
        if let Some(meta) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for f in SERVER_SET_METADATA {
                meta.remove(*f);
            }
        }
    }
}
