//! One restore at a time: a `coordination.k8s.io` Lease held (and renewed) for the whole restore. A
//! backup that finds it held skips; a second restore fails fast naming the holder. Uses only get, create
//! and update (the chart's Role), with the resourceVersion guarding against two takers at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{info, instrument, warn};

use super::error::{Needs, call_failed};
use crate::error::{Error, Result};

/// Reading the Lease (a backup checks it; the chart's backup and webhook Roles grant get).
const LEASE_READ: Needs = Needs {
    rbac: "get on leases (coordination.k8s.io) in the Lease's namespace",
    not_found: "the Lease's namespace (LEASE_NAMESPACE, the release namespace)",
};

/// Taking and renewing it (the chart's restore Role).
const LEASE_TAKE: Needs = Needs {
    rbac: "get, create and update on leases (coordination.k8s.io) in the Lease's namespace",
    not_found: "the Lease's namespace (LEASE_NAMESPACE, the release namespace)",
};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub holder: String,
    pub duration: Duration,
}

/// Who holds the lease now, if anyone (an expired lease is free).
pub fn current_holder(lease: &Lease, now: Timestamp) -> Option<String> {
    let holder = holder_identity(lease)?;
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(60));
    (renewed.as_second() + secs > now.as_second()).then_some(holder)
}

/// The holder the Lease names, expired or not.
fn holder_identity(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .clone()
        .filter(|h| !h.is_empty())
}

fn spec(cfg: &LeaseConfig, acquired: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(cfg.holder.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().clamp(1, i32::MAX as u64) as i32),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..LeaseSpec::default()
    }
}

/// Who holds the Lease `namespace/name` now, if anyone (the webhook asks whether a restore runs).
#[instrument(skip(client))]
pub async fn held_by(client: Client, namespace: &str, name: &str) -> Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let lease = api
        .get_opt(name)
        .await
        .map_err(|e| call_failed(format!("get lease {name}"), LEASE_READ, e))?;
    Ok(lease.and_then(|l| current_holder(&l, Timestamp::now())))
}

/// The holder of the restore lease other than this process, for `backup` to decide whether to skip.
pub async fn holder(client: Client, cfg: &LeaseConfig) -> Result<Option<String>> {
    Ok(held_by(client, &cfg.namespace, &cfg.name)
        .await?
        .filter(|h| *h != cfg.holder))
}

pub struct LeaseGuard {
    api: Api<Lease>,
    cfg: LeaseConfig,
    renew: tokio::task::JoinHandle<()>,
}

/// Takes the lease or fails naming its holder.
#[instrument(skip(client))]
pub async fn acquire(client: Client, cfg: &LeaseConfig) -> Result<LeaseGuard> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let held = |holder: String| Error::LeaseHeld {
        lease: format!("{}/{}", cfg.namespace, cfg.name),
        holder,
    };
    let now = Timestamp::now();
    match api
        .get_opt(&cfg.name)
        .await
        .map_err(|e| call_failed(format!("get lease {}", cfg.name), LEASE_TAKE, e))?
    {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(cfg, now)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(held("another restore (it was created a moment ago)".into()));
                }
                Err(e) => {
                    return Err(call_failed(
                        format!("create lease {}", cfg.name),
                        LEASE_TAKE,
                        e,
                    ));
                }
            }
        }
        Some(existing) => {
            if let Some(holder) = current_holder(&existing, now).filter(|h| *h != cfg.holder) {
                return Err(held(holder));
            }
            let mut taken = existing;
            taken.spec = Some(spec(cfg, now));
            match api.replace(&cfg.name, &PostParams::default(), &taken).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(held(
                        "another restore (it took the lease a moment ago)".into(),
                    ));
                }
                Err(e) => {
                    return Err(call_failed(
                        format!("update lease {}", cfg.name),
                        LEASE_TAKE,
                        e,
                    ));
                }
            }
        }
    }
    info!(lease = %cfg.name, holder = %cfg.holder, "restore lease acquired");
    let renew = tokio::spawn(renew_loop(api.clone(), cfg.clone(), now));
    Ok(LeaseGuard {
        api,
        cfg: cfg.clone(),
        renew,
    })
}

async fn renew_loop(api: Api<Lease>, cfg: LeaseConfig, acquired: Timestamp) {
    let every = (cfg.duration / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let result = async {
            let mut l = api.get(&cfg.name).await?;
            if let Some(other) = holder_identity(&l).filter(|h| *h != cfg.holder) {
                return Ok(Some(other));
            }
            l.spec = Some(spec(&cfg, acquired));
            api.replace(&cfg.name, &PostParams::default(), &l)
                .await
                .map(|_| None)
        }
        .await;
        match result {
            Ok(None) => {}
            // Never write over another holder: it took the Lease after ours expired.
            Ok(Some(other)) => {
                warn!(lease = %cfg.name, holder = %other, "the restore lease was taken by another holder; no longer renewing it");
                return;
            }
            Err(e) => warn!(lease = %cfg.name, error = %e, "could not renew the restore lease"),
        }
    }
}

impl LeaseGuard {
    /// Fails when the Lease is no longer this restore's: another holder took it (after an API outage
    /// longer than the Lease, ours expired). A restore asks before each step that changes something and
    /// stops there, so two restores never both change the database.
    #[instrument(skip(self), fields(lease = %self.cfg.name))]
    pub async fn ensure_held(&self) -> Result<()> {
        let lease = self
            .api
            .get(&self.cfg.name)
            .await
            .map_err(|e| call_failed(format!("get lease {}", self.cfg.name), LEASE_TAKE, e))?;
        match current_holder(&lease, Timestamp::now()) {
            Some(h) if h == self.cfg.holder => Ok(()),
            other => Err(Error::LeaseLost {
                lease: format!("{}/{}", self.cfg.namespace, self.cfg.name),
                holder: other.unwrap_or_else(|| "nobody (it expired)".into()),
            }),
        }
    }

    /// Gives the lease up (holder cleared) so the next backup or restore can start at once.
    pub async fn release(self) {
        self.renew.abort();
        let result = async {
            let mut l = self.api.get(&self.cfg.name).await?;
            if let Some(other) = holder_identity(&l).filter(|h| *h != self.cfg.holder) {
                return Ok(Some(other));
            }
            if let Some(s) = l.spec.as_mut() {
                s.holder_identity = None;
                s.renew_time = None;
            }
            self.api
                .replace(&self.cfg.name, &PostParams::default(), &l)
                .await
                .map(|_| None)
        }
        .await;
        match result {
            Ok(None) => info!(lease = %self.cfg.name, "restore lease released"),
            // Another holder took it after ours expired: clearing it would let a second restore start.
            Ok(Some(other)) => {
                warn!(lease = %self.cfg.name, holder = %other, "the restore lease is held by another holder now; leaving it alone")
            }
            Err(e) => {
                warn!(lease = %self.cfg.name, error = %e, "could not release the restore lease; it expires by itself")
            }
        }
    }
}
