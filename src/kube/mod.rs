//! Kubernetes: export of ConfigMaps/Secrets (`export`), label selectors (`selector`) and the client.

pub mod apply;
pub mod export;
pub mod lease;
pub mod selector;

use crate::error::{Error, Result};

/// The in-cluster client (or `KUBECONFIG`), with guidance when there is none.
pub async fn client() -> Result<kube::Client> {
    crate::tls::install_crypto_provider();
    kube::Client::try_default().await.map_err(|e| Error::Kubernetes {
        what: "connect to the Kubernetes API".into(),
        problem: e.to_string(),
        hint: "run inside the cluster with a ServiceAccount or set KUBECONFIG; outside a cluster pass --no-kubernetes \
               to back up only the database"
            .into(),
    })
}
