//! The restore API: `POST /v1/restores`, `GET /v1/restores/{id}`, `GET /v1/backups` (documented in
//! `docs/openapi.json`). Every restore request, accepted or refused, leaves one `audit` log line: who,
//! from where, what, result.

use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Webhook;
use super::error::ApiError;
use super::follow::follow;
use super::http::{audit, authenticate, jobs, refuse_token};
use super::jobs::{JobError, NewRestore, Started, valid_id};
use super::jwt::Refusal;
use crate::archive::ArchiveName;
use crate::store::Which;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum BackupRef {
    Name(String),
    Before(BeforeRef),
}

/// `{"before": "<RFC 3339>"}` and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BeforeRef {
    before: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestoreRequest {
    backup: BackupRef,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    reason: String,
}

/// The `restore` argument for a backup reference: `latest`, one of our archive names, or
/// `--before=<RFC 3339>`. Anything else is refused here, so no caller text reaches the Job's flags.
pub(super) fn backup_arg(prefix: &str, r: &BackupRef) -> Result<String, ApiError> {
    let which = match r {
        BackupRef::Name(n) => Which::from_arg(n),
        BackupRef::Before(BeforeRef { before }) => Which::Before(before.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "backup.before {before:?} is not an RFC 3339 time (e.g. 2026-11-27T03:00:00Z)"
            ))
        })?),
    };
    if let Which::Named(n) = &which {
        ArchiveName::parse_user(prefix, n).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok(which.to_string())
}

/// Printable, one line, at most 256 characters: it becomes a Job annotation and a log field.
fn clean_reason(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(256)
        .collect::<String>()
        .trim()
        .to_owned()
}

pub(super) fn key_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..20])
}

/// Starts (or finds) a restore under the process-wide start lock and counts the outcome.
pub(super) async fn start_restore(state: &Webhook, req: &NewRestore) -> Result<Started, ApiError> {
    let jobs = jobs(state)?;
    let _one_at_a_time = state.start_lock.lock().await;
    match jobs.start(req).await {
        Ok(s) => {
            if let Started::New(_) = &s {
                state.metrics.restore("accepted");
            }
            Ok(s)
        }
        Err(e @ JobError::Conflict(_)) => {
            state.metrics.restore("conflict");
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn create_restore(
    req: HttpRequest,
    body: Bytes,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state, "restore").await?;
    let who = format!("jwt:{}", caller.subject);
    let refuse = |e: ApiError| {
        audit(&req, &state, &who, "restore", &format!("refused: {e}"));
        e
    };
    let request: RestoreRequest = serde_json::from_slice(&body).map_err(|e| {
        refuse(ApiError::BadRequest(format!(
            "the body must be JSON like {{\"backup\": \"latest\" | \"<name>\" | {{\"before\": \"<RFC 3339>\"}}, \"dryRun\": false, \"reason\": \"...\"}} ({e})"
        )))
    })?;
    let arg = backup_arg(&state.prefix, &request.backup).map_err(refuse)?;
    let header_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if header_key.is_some_and(|k| k.len() > 200) {
        return Err(refuse(ApiError::BadRequest(
            "Idempotency-Key is longer than 200 characters".into(),
        )));
    }
    let issuer = caller.issuer.clone().unwrap_or_default();
    let idempotency_key = match (header_key, &caller.jti) {
        (Some(k), _) => Some(key_hash(&["header", &caller.subject, k])),
        (None, Some(jti)) => Some(key_hash(&["jti", &issuer, jti])),
        (None, None) => None,
    };
    if let Some(jti) = &caller.jti {
        let now = jiff::Timestamp::now().as_second();
        let key = idempotency_key.clone().unwrap_or_default();
        if let Some(first) = state.replay.insert_or_get(
            &key_hash(&["jti", &issuer, jti]),
            key.clone(),
            caller.expires,
            now,
        ) && first != key
        {
            return Err(refuse_token(&req, &state, "restore", Refusal::Replayed));
        }
    }
    let what = format!(
        "restore {arg}{}",
        if request.dry_run { " (dry run)" } else { "" }
    );
    let new = NewRestore {
        backup_arg: arg,
        dry_run: request.dry_run,
        requested_by: who.clone(),
        reason: clean_reason(&request.reason),
        idempotency_key,
    };
    match start_restore(&state, &new).await {
        Ok(Started::New(s)) => {
            audit(&req, &state, &who, &what, &format!("accepted: {}", s.id));
            follow(state.clone().into_inner(), s.id.clone(), None);
            Ok(HttpResponse::Accepted()
                .insert_header(("Location", format!("/v1/restores/{}", s.id)))
                .json(&s))
        }
        Ok(Started::Existing(s)) => {
            audit(
                &req,
                &state,
                &who,
                &what,
                &format!("same request as {}", s.id),
            );
            Ok(HttpResponse::Ok()
                .insert_header(("Location", format!("/v1/restores/{}", s.id)))
                .json(&s))
        }
        Err(e) => Err(refuse(e)),
    }
}

pub(super) async fn restore_status(
    req: HttpRequest,
    id: web::Path<String>,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state, "status").await?;
    if !valid_id(&id) {
        return Err(ApiError::NotFound(format!(
            "{:?} is not a restore id (ids are the hex strings POST /v1/restores returns)",
            id.chars().take(40).collect::<String>()
        )));
    }
    let status = jobs(&state)?.status(&id).await?;
    Ok(HttpResponse::Ok().json(status))
}

pub(super) async fn list_backups(
    req: HttpRequest,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state, "list").await?;
    let backups = all_backups(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::commands::list::render_json(&backups)))
}

fn stores(state: &Webhook) -> Result<&crate::store::StoreSet, ApiError> {
    state.stores.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "no backup store is configured here (BACKUP_DIR / S3_BUCKET); see the webhook's startup log".into(),
        )
    })
}

pub(super) async fn all_backups(
    state: &Webhook,
) -> Result<Vec<crate::store::StoredBackup>, ApiError> {
    stores(state)?
        .list()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

/// `GET /v1/status`: what `eternia-backup status --output json` prints, with what the Jobs say runs.
pub(super) async fn backup_status(
    state: &Webhook,
) -> Result<crate::commands::status::Status, ApiError> {
    let facts = match &state.jobs {
        Ok(jobs) => {
            let (running, drill) = tokio::join!(jobs.running(), jobs.last_drill());
            let (last_drill, last_drill_error) = match drill {
                Ok(d) => (d, None),
                Err(e) => (None, Some(e.to_string())),
            };
            crate::commands::status::ClusterFacts {
                restore_running: running.ok().flatten(),
                last_drill,
                last_drill_error,
            }
        }
        Err(_) => Default::default(),
    };
    crate::commands::status::run(stores(state)?, state.max_backup_age, facts)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))
}

pub(super) async fn get_status(
    req: HttpRequest,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state, "status").await?;
    Ok(HttpResponse::Ok().json(backup_status(&state).await?))
}
