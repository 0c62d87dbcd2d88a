//! Restores run as Kubernetes Jobs created from the chart's suspended restore CronJob (same image,
//! secrets, volume and ServiceAccount as `kubectl create job --from=cronjob/...`), never in the webhook.
//! State lives in the Jobs and the Lease, so a webhook restart loses nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde::Serialize;
use tracing::{info, instrument};

use crate::kube::error::{CallError, Needs};
pub use crate::kube::job_status::{State, job_state};
use crate::kube::job_status::{finished_at, started_at};
use crate::kube::lease::held_by;

/// What went wrong orchestrating a restore Job; the HTTP layer (`webhook::error`) maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The restore template is missing or unusable, or the cluster cannot be asked.
    #[error("{0}")]
    Unavailable(String),
    #[error("kubernetes: {0}")]
    Kube(#[from] Box<CallError>),
    /// Another restore runs (what it is).
    #[error("a restore is already running: {0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

/// The chart's webhook Role in the release namespace.
const TEMPLATE: Needs = Needs {
    rbac: "get on cronjobs (batch) in the Job namespace",
    not_found: "the Job namespace (WEBHOOK_JOB_NAMESPACE, the release namespace)",
};
const JOBS: Needs = Needs {
    rbac: "create, get and list on jobs (batch) in the Job namespace",
    not_found: "the Job namespace (WEBHOOK_JOB_NAMESPACE, the release namespace)",
};

fn failed(what: impl Into<String>, needs: Needs, e: kube::Error) -> JobError {
    JobError::Kube(Box::new(CallError::new(what, needs, e)))
}

pub const LABEL_RESTORE_ID: &str = "eternia-backup.io/restore-id";
pub const LABEL_IDEMPOTENCY: &str = "eternia-backup.io/idempotency-key";
pub const LABEL_DRY_RUN: &str = "eternia-backup.io/dry-run";
pub const ANNOTATION_REQUESTED_BY: &str = "eternia-backup.io/requested-by";
pub const ANNOTATION_REASON: &str = "eternia-backup.io/reason";
pub const ANNOTATION_BACKUP: &str = "eternia-backup.io/backup";

/// Where restore Jobs come from and live.
#[derive(Clone)]
pub struct RestoreJobs {
    pub client: Client,
    pub namespace: String,
    pub cronjob: String,
    /// The drill CronJob, in the same namespace.
    pub drill_cronjob: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub log_tail_lines: i64,
}

/// A restore to start, already authorized and validated.
#[derive(Debug, Clone)]
pub struct NewRestore {
    /// The restore argument: `latest`, an archive name, or `--before=<RFC 3339>`.
    pub backup_arg: String,
    pub dry_run: bool,
    pub requested_by: String,
    pub reason: String,
    /// Same key, same restore (label value: hex, 40 characters).
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    pub id: String,
    pub job: String,
    pub status: State,
    pub backup: String,
    pub dry_run: bool,
    pub requested_by: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// What `POST` got: a new restore, or the one an earlier request with the same key started.
pub enum Started {
    New(RestoreStatus),
    Existing(RestoreStatus),
}

fn status_of(job: &Job) -> RestoreStatus {
    let meta = &job.metadata;
    let label = |k: &str| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let annotation = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let (state, message) = job_state(job);
    RestoreStatus {
        id: label(LABEL_RESTORE_ID),
        job: meta.name.clone().unwrap_or_default(),
        status: state,
        backup: annotation(ANNOTATION_BACKUP),
        dry_run: label(LABEL_DRY_RUN) == "true",
        requested_by: annotation(ANNOTATION_REQUESTED_BY),
        reason: annotation(ANNOTATION_REASON),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        started_at: started_at(job),
        finished_at: finished_at(job),
        message,
        log_tail: Vec::new(),
    }
}

/// A restore id: lowercase hex, so it is a valid label value and Job name suffix.
pub fn valid_id(id: &str) -> bool {
    (4..=20).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh id: the current time and process state hashed, 12 hex characters.
pub fn new_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(seed.as_bytes());
    h.update(Timestamp::now().as_nanosecond().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(
        COUNTER
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    hex::encode(&h.finalize()[..6])
}

/// The restore Job for `req`: the CronJob's jobTemplate with the backup argument replaced, our labels
/// and annotations added, owned by the CronJob (as `kubectl create job --from` does).
pub fn job_from_template(cronjob: &CronJob, id: &str, req: &NewRestore) -> Result<Job, JobError> {
    let cj_name = cronjob.metadata.name.clone().unwrap_or_default();
    let broken = |what: &str| {
        JobError::Unavailable(format!(
            "the restore template CronJob {cj_name} {what}; reinstall the chart (restore.cronJobName)"
        ))
    };
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .ok_or_else(|| broken("has no spec"))?;
    let mut spec = template
        .spec
        .ok_or_else(|| broken("has no jobTemplate.spec"))?;
    let pod = spec
        .template
        .spec
        .as_mut()
        .ok_or_else(|| broken("has no pod spec"))?;
    let container = match pod.containers.iter().position(|c| c.name == "restore") {
        Some(i) => &mut pod.containers[i],
        None if pod.containers.len() == 1 => &mut pod.containers[0],
        None => return Err(broken("has no container named restore")),
    };
    let args = container.args.get_or_insert_with(Vec::new);
    if args.first().map(String::as_str) != Some("restore") || args.len() < 2 {
        return Err(broken("does not run `eternia-backup restore <backup>`"));
    }
    args[1] = req.backup_arg.clone();
    if req.dry_run && !args.iter().any(|a| a == "--dry-run") {
        args.push("--dry-run".into());
    }

    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(LABEL_RESTORE_ID.into(), id.into());
    labels.insert(LABEL_DRY_RUN.into(), req.dry_run.to_string());
    if let Some(k) = &req.idempotency_key {
        labels.insert(LABEL_IDEMPOTENCY.into(), k.clone());
    }
    let pod_meta = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default);
    pod_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(LABEL_RESTORE_ID.into(), id.into());
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
    annotations.insert(ANNOTATION_REQUESTED_BY.into(), req.requested_by.clone());
    annotations.insert(ANNOTATION_BACKUP.into(), req.backup_arg.clone());
    if !req.reason.is_empty() {
        annotations.insert(ANNOTATION_REASON.into(), req.reason.clone());
    }
    let owner = cronjob.metadata.uid.clone().map(|uid| OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name: cj_name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    });
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj_name, id)),
            namespace: cronjob.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The template's `app.kubernetes.io/` labels as a selector: it matches Jobs made from the template by
/// hand too. Without such labels, only the webhook's own restore Jobs (never a backup Job).
fn template_selector(cronjob: &CronJob) -> String {
    let labels = cronjob
        .spec
        .as_ref()
        .and_then(|s| s.job_template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let selector = labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("app.kubernetes.io/"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if selector.is_empty() {
        LABEL_RESTORE_ID.to_owned()
    } else {
        selector
    }
}

pub fn job_name(cronjob: &str, id: &str) -> String {
    let base: String = cronjob.chars().take(63 - id.len() - 1).collect();
    format!("{}-{id}", base.trim_end_matches('-'))
}

impl RestoreJobs {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn template(&self) -> Result<CronJob, JobError> {
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(&self.cronjob).await {
            Ok(Some(cj)) => Ok(cj),
            Ok(None) => Err(JobError::Unavailable(format!(
                "the restore template CronJob {}/{} does not exist; install the chart or set WEBHOOK_RESTORE_CRONJOB",
                self.namespace, self.cronjob
            ))),
            Err(e) => Err(failed(format!("get cronjob {}", self.cronjob), TEMPLATE, e)),
        }
    }

    /// Readiness: the API answers and the restore template exists.
    pub async fn ready(&self) -> Result<(), JobError> {
        self.template().await.map(|_| ())
    }

    /// What is restoring right now, if anything: the Lease holder or a live restore Job.
    #[instrument(skip(self))]
    /// The newest Job of the drill CronJob.
    pub async fn last_drill(
        &self,
    ) -> crate::error::Result<Option<crate::kube::job_status::LastDrill>> {
        let source = crate::kube::job_status::DrillSource {
            namespace: self.namespace.clone(),
            cronjob: self.drill_cronjob.clone(),
        };
        crate::kube::job_status::last_drill(self.client.clone(), &source).await
    }

    pub async fn running(&self) -> Result<Option<String>, JobError> {
        let cronjob = self.template().await?;
        self.running_from(&cronjob).await
    }

    async fn running_from(&self, cronjob: &CronJob) -> Result<Option<String>, JobError> {
        let holder = held_by(self.client.clone(), &self.lease_namespace, &self.lease_name)
            .await
            .map_err(|e| JobError::Unavailable(e.to_string()))?;
        if let Some(holder) = holder {
            return Ok(Some(format!(
                "a restore holds the lease {}/{} ({holder})",
                self.lease_namespace, self.lease_name
            )));
        }
        let jobs = self
            .jobs()
            .list(&ListParams::default().labels(&template_selector(cronjob)))
            .await
            .map_err(|e| failed("list restore jobs", JOBS, e))?;
        Ok(jobs
            .items
            .iter()
            .filter(|j| !status_of(j).dry_run)
            .find(|j| !job_state(j).0.finished())
            .map(|j| {
                format!(
                    "restore job {} is still running",
                    j.metadata.name.as_deref().unwrap_or("?")
                )
            }))
    }

    /// Starts a restore unless one with the same idempotency key exists (returned instead) or another
    /// restore is running (409). The caller serializes calls within this process.
    #[instrument(skip(self), fields(backup = %req.backup_arg, dry_run = req.dry_run))]
    pub async fn start(&self, req: &NewRestore) -> Result<Started, JobError> {
        if let Some(key) = &req.idempotency_key {
            let existing = self
                .jobs()
                .list(&ListParams::default().labels(&format!("{LABEL_IDEMPOTENCY}={key}")))
                .await
                .map_err(|e| failed("list restore jobs", JOBS, e))?;
            if let Some(job) = existing.items.first() {
                return Ok(Started::Existing(status_of(job)));
            }
        }
        let cronjob = self.template().await?;
        if !req.dry_run
            && let Some(what) = self.running_from(&cronjob).await?
        {
            return Err(JobError::Conflict(what));
        }
        let id = new_id(&req.requested_by);
        let job = job_from_template(&cronjob, &id, req)?;
        let created = self
            .jobs()
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| failed("create restore job", JOBS, e))?;
        info!(job = ?created.metadata.name, "restore job created");
        Ok(Started::New(status_of(&created)))
    }

    /// The restore's status, with the log tail when it failed.
    #[instrument(skip(self))]
    pub async fn status(&self, id: &str) -> Result<RestoreStatus, JobError> {
        let name = job_name(&self.cronjob, id);
        let job = self
            .jobs()
            .get_opt(&name)
            .await
            .map_err(|e| failed(format!("get job {name}"), JOBS, e))?
            .filter(|j| status_of(j).id == id)
            .ok_or_else(|| JobError::NotFound(format!("no restore {id}")))?;
        let mut status = status_of(&job);
        if status.status == State::Failed {
            status.log_tail = self.log_tail(&name).await;
        }
        Ok(status)
    }

    /// The newest restores (for Slack `status`).
    pub async fn recent(&self, n: usize) -> Result<Vec<RestoreStatus>, JobError> {
        let jobs = self
            .jobs()
            .list(&ListParams::default().labels(LABEL_RESTORE_ID))
            .await
            .map_err(|e| failed("list restore jobs", JOBS, e))?;
        let mut all: Vec<RestoreStatus> = jobs.items.iter().map(status_of).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        all.truncate(n);
        Ok(all)
    }

    /// The last lines the restore pod printed (best effort: a missing pod or log is no error).
    async fn log_tail(&self, job: &str) -> Vec<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let Ok(list) = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
        else {
            return Vec::new();
        };
        let Some(pod) = list
            .items
            .iter()
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        else {
            return Vec::new();
        };
        let params = LogParams {
            container: Some("restore".into()),
            tail_lines: Some(self.log_tail_lines),
            limit_bytes: Some(16 * 1024),
            ..LogParams::default()
        };
        match pods
            .logs(pod.metadata.name.as_deref().unwrap_or_default(), &params)
            .await
        {
            // Posted to Slack and returned as `logTail`: never with row contents.
            Ok(text) => text
                .lines()
                .filter_map(crate::postgres::without_row_data)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}
