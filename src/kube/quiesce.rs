//! The application quiet during a restore: its Deployments scaled to zero before the database is
//! touched and back to their replica count afterwards, also when the restore fails. The count is kept
//! on each Deployment (annotation [`REPLICAS_BEFORE`]) until it is back, so that a restore killed in
//! between is undone by the next one (or by hand: `kubectl scale --replicas=N`).

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tracing::{info, instrument, warn};

use super::apply::FIELD_MANAGER;
use super::error::{Needs, call_failed};
use crate::error::{Error, Result};

/// The replica count a Deployment had before a restore scaled it to zero.
pub const REPLICAS_BEFORE: &str = "eternia-backup/replicas-before-restore";

const SCALE: Needs = Needs {
    rbac: "get and patch on deployments (apps) in the target namespace",
    not_found: "the Deployment names in RESTORE_DEPLOYMENTS (--restart) and the target namespace",
};

/// A Deployment scaled to zero, and the count to give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    pub name: String,
    pub replicas: i32,
}

fn api(client: Client, ns: &str) -> Api<Deployment> {
    Api::namespaced(client, ns)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The count to restore: the one an earlier, interrupted restore recorded, else the current one.
pub fn replicas_before(d: &Deployment) -> i32 {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REPLICAS_BEFORE))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

/// Scales each Deployment to zero (recording its count first) and waits until none of its pods is left.
/// On a failure, those already scaled are scaled back before the error is returned.
#[instrument(skip(client))]
pub async fn scale_to_zero(
    client: Client,
    ns: &str,
    names: &[String],
    timeout: Duration,
) -> Result<Vec<Scaled>> {
    let mut scaled = Vec::new();
    for name in names {
        match scale_one_down(client.clone(), ns, name, timeout).await {
            Ok(s) => scaled.push(s),
            Err(e) => {
                let _ = scale_back(client, ns, &scaled).await;
                return Err(e);
            }
        }
    }
    Ok(scaled)
}

async fn scale_one_down(client: Client, ns: &str, name: &str, timeout: Duration) -> Result<Scaled> {
    let deployments = api(client, ns);
    let d = deployments
        .get(name)
        .await
        .map_err(|e| call_failed(format!("get deployment/{name} in {ns}"), SCALE, e))?;
    let replicas = replicas_before(&d);
    let patch = serde_json::json!({
        "metadata": {"annotations": {REPLICAS_BEFORE: replicas.to_string()}},
        "spec": {"replicas": 0}
    });
    deployments
        .patch(name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| call_failed(format!("scale deployment/{name} in {ns} to zero"), SCALE, e))?;
    let start = Instant::now();
    loop {
        let d = deployments
            .get(name)
            .await
            .map_err(|e| call_failed(format!("get deployment/{name} in {ns}"), SCALE, e))?;
        let st = d.status.clone().unwrap_or_default();
        let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        // Terminating pods can still hold database sessions: counted where the server reports them
        // (`terminatingReplicas`, Kubernetes 1.33 on).
        let gone = st.replicas.unwrap_or(0) == 0 && st.terminating_replicas.unwrap_or(0) == 0;
        if observed && gone {
            break;
        }
        if start.elapsed() >= timeout {
            // Scaled back by the caller; the database was not touched.
            return Err(Error::Kubernetes {
                what: format!("scale deployment/{name} in {ns} to zero"),
                problem: format!(
                    "{} pods still there after {}s",
                    st.replicas.unwrap_or(0),
                    timeout.as_secs()
                ),
                hint: format!(
                    "kubectl get pods -n {ns} (a pod stuck terminating: its grace period, finalizers); nothing was changed"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    info!(
        deployment = name,
        replicas, "scaled to zero for the restore"
    );
    Ok(Scaled {
        name: name.to_owned(),
        replicas,
    })
}

/// Gives each Deployment its count back and removes the record; tries every one, returns the first error.
#[instrument(skip(client))]
pub async fn scale_back(client: Client, ns: &str, scaled: &[Scaled]) -> Result<()> {
    let deployments = api(client, ns);
    let mut first = None;
    for s in scaled {
        let patch = serde_json::json!({
            "metadata": {"annotations": {REPLICAS_BEFORE: null}},
            "spec": {"replicas": s.replicas}
        });
        match deployments
            .patch(&s.name, &params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(deployment = %s.name, replicas = s.replicas, "scaled back"),
            Err(e) => {
                let err = call_failed(
                    format!(
                        "scale deployment/{} in {ns} back to {} (run kubectl scale deployment/{} -n {ns} --replicas={})",
                        s.name, s.replicas, s.name, s.replicas
                    ),
                    SCALE,
                    e,
                );
                warn!(deployment = %s.name, error = %err, "cannot scale back");
                first.get_or_insert(err);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_to_give_back_is_the_recorded_one_when_an_earlier_restore_was_interrupted() {
        let mut d = Deployment {
            spec: Some(Default::default()),
            ..Default::default()
        };
        d.spec.as_mut().unwrap().replicas = Some(3);
        assert_eq!(replicas_before(&d), 3);
        d.spec.as_mut().unwrap().replicas = Some(0);
        d.metadata.annotations = Some([(REPLICAS_BEFORE.to_owned(), "3".to_owned())].into());
        assert_eq!(
            replicas_before(&d),
            3,
            "not the 0 the interrupted restore left"
        );
    }
}
