//! Kubernetes: the client ([`Cluster`]), export of ConfigMaps/Secrets (`export`), their server-side apply
//! and the rollout restart (`apply`), the restore Lease (`lease`), Job states and the last drill
//! (`job_status`), label selectors (`selector`), and
//! errors of API calls with per-call hints (`error`).

pub mod apply;
pub mod error;
pub mod export;
pub mod job_status;
pub mod lease;
pub mod quiesce;
pub mod selector;

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// The Kubernetes API, connected on first use: the in-cluster ServiceAccount or `KUBECONFIG`, or a
/// client given up front (tests). Clones share the connection.
#[derive(Clone, Default)]
pub struct Cluster {
    client: Arc<OnceCell<kube::Client>>,
}

impl Cluster {
    /// A cluster reached through this client.
    pub fn with_client(client: kube::Client) -> Cluster {
        Cluster {
            client: Arc::new(OnceCell::new_with(Some(client))),
        }
    }

    pub async fn client(&self) -> Result<kube::Client> {
        self.client.get_or_try_init(connect).await.cloned()
    }
}

/// The in-cluster client (or `KUBECONFIG`), with guidance when there is none.
async fn connect() -> Result<kube::Client> {
    crate::tls::install_crypto_provider();
    kube::Client::try_default()
        .await
        .map_err(|e| Error::Kubernetes {
            what: "connect to the Kubernetes API".into(),
            problem: e.to_string(),
            hint: "run inside the cluster with a ServiceAccount or set KUBECONFIG; outside a cluster pass --no-kubernetes \
               to back up only the database"
                .into(),
        })
}
