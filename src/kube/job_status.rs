//! What a Job's status says (pending, running, succeeded, failed; when it started and ended), and the
//! newest Job of a CronJob: the last drill, as `status` reports it.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tracing::instrument;

use super::error::{CallError, Needs};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

/// Maps a Job's status to its state (conditions first, then the pod counters), with the reason and
/// message of a failure.
pub fn job_state(job: &Job) -> (State, Option<String>) {
    let Some(status) = &job.status else {
        return (State::Pending, None);
    };
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" | "SuccessCriteriaMet" => return (State::Succeeded, None),
            "Failed" | "FailureTarget" => {
                let msg = [c.reason.as_deref(), c.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                return (State::Failed, (!msg.is_empty()).then_some(msg));
            }
            _ => {}
        }
    }
    if status.active.unwrap_or(0) > 0 {
        (State::Running, None)
    } else {
        (State::Pending, None)
    }
}

pub fn started_at(job: &Job) -> Option<Timestamp> {
    job.status.as_ref()?.start_time.as_ref().map(|t| t.0)
}

/// When the Job ended: its completion time, or (a failed Job has none) its Failed condition's time.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let s = job.status.as_ref()?;
    s.completion_time.as_ref().map(|t| t.0).or_else(|| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed" && c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    })
}

/// The newest Job of the drill CronJob.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub job: String,
    /// `succeeded` (the drill passed), `failed`, `running` or `pending`.
    pub result: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Finished minus started (a running drill: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The Job's failure reason and message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where the drill Jobs are: the CronJob and its namespace (the release's).
#[derive(Debug, Clone)]
pub struct DrillSource {
    pub namespace: String,
    pub cronjob: String,
}

const JOBS: Needs = Needs {
    rbac: "list on jobs (batch) in the release namespace",
    not_found: "the release namespace (LEASE_NAMESPACE)",
};

/// The newest Job the drill CronJob owns (scheduled, or `kubectl create job --from=cronjob/…`), or
/// `None` when it has none (drills not enabled, or none ran yet, or their Jobs were pruned).
#[instrument(skip(client), fields(namespace = %source.namespace, cronjob = %source.cronjob))]
pub async fn last_drill(client: Client, source: &DrillSource) -> Result<Option<LastDrill>> {
    let jobs: Api<Job> = Api::namespaced(client, &source.namespace);
    let list = jobs
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::KubeCall(Box::new(CallError::new("list drill jobs", JOBS, e))))?;
    Ok(newest_owned_by(&list.items, &source.cronjob).map(describe))
}

/// The newest (by creation time) of the Jobs a CronJob of this name owns.
pub fn newest_owned_by<'a>(jobs: &'a [Job], cronjob: &str) -> Option<&'a Job> {
    jobs.iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == cronjob)
        })
        .max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn describe(job: &Job) -> LastDrill {
    let (result, message) = job_state(job);
    let (started, finished) = (started_at(job), finished_at(job));
    LastDrill {
        job: job.metadata.name.clone().unwrap_or_default(),
        result,
        started_at: started,
        finished_at: finished,
        duration_seconds: match (started, finished) {
            (Some(s), Some(f)) => Some(f.as_second() - s.as_second()),
            _ => None,
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, owner: &str, created: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": owner, "uid": "u"}]
            },
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_last_drill_is_the_newest_job_of_the_drill_cronjob_with_its_result_and_duration() {
        let jobs = vec![
            job(
                "database-drill-1",
                "database-drill",
                "2026-11-22T04:00:00Z",
                serde_json::json!({"startTime": "2026-11-22T04:00:01Z", "completionTime": "2026-11-22T04:03:01Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}),
            ),
            job(
                "database-drill-2",
                "database-drill",
                "2026-11-29T04:00:00Z",
                serde_json::json!({"startTime": "2026-11-29T04:00:02Z",
                       "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                       "lastTransitionTime": "2026-11-29T04:01:02Z"}]}),
            ),
            job(
                "database-backup-3",
                "database-backup",
                "2026-11-30T02:00:00Z",
                serde_json::json!({"active": 1}),
            ),
        ];
        let last = describe(newest_owned_by(&jobs, "database-drill").unwrap());
        assert_eq!(last.job, "database-drill-2", "the newest, not the backup's");
        assert_eq!(last.result, State::Failed);
        assert_eq!(last.duration_seconds, Some(60));
        assert_eq!(last.message.as_deref(), Some("BackoffLimitExceeded"));
        let passed = describe(newest_owned_by(&jobs[..1], "database-drill").unwrap());
        assert_eq!(
            (passed.result, passed.duration_seconds),
            (State::Succeeded, Some(180))
        );
        assert!(newest_owned_by(&jobs, "other-drill").is_none());
    }
}
