//! The HTTP API (documented in `docs/openapi.json`, served at `/openapi.json`). Every restore request,
//! accepted or refused, leaves one `audit` log line: who, from where, what, result.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Bytes, Data};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Webhook;
use super::error::ApiError;
use super::jobs::{NewRestore, RestoreStatus, Started, State, valid_id};
use super::jwt::{Caller, Refusal};
use super::slack::{Command, Confirmation, Interaction, SlackRefusal, SlashCommand, USAGE};
use crate::archive::ArchiveName;

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn app(
    data: Data<Webhook>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = data.body_limit;
    actix_web::App::new()
        .app_data(data)
        .app_data(web::PayloadConfig::new(limit))
        .wrap(from_fn(guard))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/v1/restores", web::post().to(create_restore))
        .route("/v1/restores/{id}", web::get().to(restore_status))
        .route("/v1/backups", web::get().to(list_backups))
        .route("/slack/commands", web::post().to(slack_command))
        .route("/slack/interactions", web::post().to(slack_interaction))
}

/// The caller's address: the peer, or the first X-Forwarded-For hop when configured to trust it.
fn source(req: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.peer_addr().map(|a| a.ip())
}

/// Rate limit on the API and Slack routes, then the request counter by route pattern and status.
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<Data<Webhook>>()
        .cloned()
        .expect("webhook state");
    let path = req.path();
    let limited = path.starts_with("/v1/") || path.starts_with("/slack/");
    if limited && state.rate.enabled() {
        let ip = source(req.request(), state.trust_forwarded_for);
        if let Some(ip) = ip
            && !state.rate.allow(ip, Instant::now())
        {
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
            state.metrics.request(&route, 429);
            state.metrics.auth_failure("rate_limited");
            return Ok(req
                .into_response(ApiError::RateLimited.error_response())
                .map_into_boxed_body());
        }
    }
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    state.metrics.request(&route, res.status().as_u16());
    Ok(res.map_into_boxed_body())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: Data<Webhook>) -> Result<HttpResponse, ApiError> {
    let jobs = state
        .jobs
        .as_ref()
        .map_err(|e| ApiError::Unavailable(e.clone()))?;
    jobs.ready().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

async fn metrics(state: Data<Webhook>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

fn audit(req: &HttpRequest, state: &Webhook, who: &str, what: &str, result: &str) {
    let from = source(req, state.trust_forwarded_for)
        .map(|i| i.to_string())
        .unwrap_or_default();
    info!(target: "audit", who, from = %from, route = req.path(), what, result, "restore request");
}

/// Verifies the bearer token; a refusal is counted, audited and answered with 401.
async fn authenticate(req: &HttpRequest, state: &Webhook, what: &str) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    state
        .verifier
        .verify(header)
        .await
        .map_err(|r| refuse_token(req, state, what, r))
}

fn refuse_token(req: &HttpRequest, state: &Webhook, what: &str, r: Refusal) -> ApiError {
    state.metrics.auth_failure(r.reason());
    warn!(reason = r.reason(), path = req.path(), "token refused");
    audit(
        req,
        state,
        "unauthenticated",
        what,
        &format!("refused: {}", r.reason()),
    );
    match r {
        // The token is genuine; its holder is just not allowed to do this.
        Refusal::SubjectNotAllowed | Refusal::ClaimNotAllowed => {
            ApiError::Forbidden(r.message().to_owned())
        }
        _ => ApiError::Unauthorized(r.message()),
    }
}

fn jobs(state: &Webhook) -> Result<&super::jobs::RestoreJobs, ApiError> {
    state
        .jobs
        .as_ref()
        .map_err(|e| ApiError::Unavailable(format!("restores cannot be started here: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BackupRef {
    Name(String),
    Before { before: String },
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
fn backup_arg(prefix: &str, r: &BackupRef) -> Result<String, ApiError> {
    match r {
        BackupRef::Name(n) if n == "latest" => Ok("latest".into()),
        BackupRef::Name(n) => ArchiveName::parse_user(prefix, n)
            .map(|_| n.clone())
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        BackupRef::Before { before } => before
            .parse::<jiff::Timestamp>()
            .map(|t| format!("--before={t}"))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "backup.before {before:?} is not an RFC 3339 time (e.g. 2026-11-27T03:00:00Z)"
                ))
            }),
    }
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

fn key_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..20])
}

/// Starts (or finds) a restore under the process-wide start lock and counts the outcome.
async fn start_restore(state: &Webhook, req: &NewRestore) -> Result<Started, ApiError> {
    let jobs = jobs(state)?;
    let _one_at_a_time = state.start_lock.lock().await;
    match jobs.start(req).await {
        Ok(s) => {
            if let Started::New(_) = &s {
                state.metrics.restore("accepted");
            }
            Ok(s)
        }
        Err(e @ ApiError::Conflict(_)) => {
            state.metrics.restore("conflict");
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn create_restore(
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

async fn restore_status(
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

async fn list_backups(req: HttpRequest, state: Data<Webhook>) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state, "list").await?;
    let backups = all_backups(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::commands::list::render_json(&backups)))
}

async fn all_backups(state: &Webhook) -> Result<Vec<crate::store::StoredBackup>, ApiError> {
    let stores = state.stores.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "no backup store is configured here (BACKUP_DIR / S3_BUCKET); see the webhook's startup log".into(),
        )
    })?;
    let mut backups = Vec::new();
    for store in stores.all() {
        backups.extend(
            store
                .list()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?,
        );
    }
    backups.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then_with(|| a.location.cmp(&b.location))
    });
    Ok(backups)
}

/// Polls a started restore until it finishes: counts the outcome and, for Slack, posts progress and the
/// result to the `response_url`.
fn follow(state: Arc<Webhook>, id: String, response_url: Option<String>) {
    actix_web::rt::spawn(async move {
        let Ok(jobs) = &state.jobs else { return };
        let give_up = Instant::now() + std::time::Duration::from_secs(12 * 3600);
        let mut last: Option<State> = None;
        while Instant::now() < give_up {
            tokio::time::sleep(state.poll_interval).await;
            let s = match jobs.status(&id).await {
                Ok(s) => s,
                Err(ApiError::NotFound(_)) => return,
                Err(_) => continue,
            };
            if last == Some(s.status) {
                continue;
            }
            last = Some(s.status);
            match s.status {
                State::Succeeded => state.metrics.restore("succeeded"),
                State::Failed => state.metrics.restore("failed"),
                _ => {}
            }
            if let Some(url) = &response_url {
                post_to_slack(
                    &state,
                    url,
                    json!({
                        "response_type": "in_channel",
                        "replace_original": false,
                        "text": progress_text(&s),
                    }),
                )
                .await;
            }
            if s.status.finished() {
                return;
            }
        }
    });
}

fn progress_text(s: &RestoreStatus) -> String {
    let what = if s.dry_run { "Dry run" } else { "Restore" };
    match s.status {
        State::Pending => format!(
            ":hourglass: {what} `{}` of `{}` is waiting to start",
            s.id, s.backup
        ),
        State::Running => format!(
            ":arrows_counterclockwise: {what} `{}` of `{}` is running",
            s.id, s.backup
        ),
        State::Succeeded => format!(
            ":white_check_mark: {what} `{}` of `{}` succeeded",
            s.id, s.backup
        ),
        State::Failed => {
            let mut t = format!(
                ":x: {what} `{}` of `{}` FAILED: {}",
                s.id,
                s.backup,
                s.message.as_deref().unwrap_or("see the Job's log")
            );
            if !s.log_tail.is_empty() {
                t.push_str(&format!("\n```{}```", s.log_tail.join("\n")));
            }
            t
        }
    }
}

async fn post_to_slack(state: &Webhook, url: &str, body: serde_json::Value) {
    let Some(slack) = &state.slack else { return };
    if !url.starts_with(&slack.response_url_prefix) {
        warn!("Slack response_url is outside SLACK_RESPONSE_URL_PREFIX; not calling it");
        return;
    }
    match state.http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => warn!(status = %r.status(), "Slack response_url refused the message"),
        Err(e) => warn!(error = %e.without_url(), "cannot reach the Slack response_url"),
    }
}

fn ephemeral(text: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"response_type": "ephemeral", "text": text.into()}))
}

/// Checks the Slack signature on the raw body; a refusal is counted, audited and answered with 401.
fn slack_verified<'a>(
    req: &HttpRequest,
    state: &'a Webhook,
    body: &[u8],
) -> Result<&'a super::SlackSettings, ApiError> {
    let verdict = match &state.slack {
        None => Err(SlackRefusal::NotConfigured),
        Some(s) => {
            let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
            s.auth
                .verify(
                    h("x-slack-request-timestamp"),
                    h("x-slack-signature"),
                    body,
                    jiff::Timestamp::now().as_second(),
                )
                .map(|()| s)
        }
    };
    verdict.map_err(|r| {
        state.metrics.auth_failure(r.reason());
        warn!(reason = r.reason(), "Slack request refused");
        audit(
            req,
            state,
            "slack:unverified",
            "slack",
            &format!("refused: {}", r.reason()),
        );
        ApiError::Unauthorized("the Slack request signature is missing, stale or wrong")
    })
}

fn slack_allowed(s: &super::SlackSettings, user: &str, channel: &str) -> Result<(), SlackRefusal> {
    if !s.allowed_users.iter().any(|u| u == user) {
        return Err(SlackRefusal::UserNotAllowed);
    }
    if !s.allowed_channels.is_empty() && !s.allowed_channels.iter().any(|c| c == channel) {
        return Err(SlackRefusal::ChannelNotAllowed);
    }
    Ok(())
}

async fn slack_command(
    req: HttpRequest,
    body: Bytes,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    let slack = slack_verified(&req, &state, &body)?;
    let cmd: SlashCommand = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a Slack slash command form: {e}")))?;
    let now = jiff::Timestamp::now().as_second();
    if !cmd.trigger_id.is_empty()
        && let Some(reply) = state
            .slack_replies
            .get(&format!("cmd:{}", cmd.trigger_id), now)
    {
        // Slack retried (it waits 3 s): answer the same, do nothing twice.
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(reply));
    }
    let who = format!("slack:{}", cmd.user_id);
    if let Err(r) = slack_allowed(slack, &cmd.user_id, &cmd.channel_id) {
        state.metrics.auth_failure(r.reason());
        audit(
            &req,
            &state,
            &who,
            cmd.text.trim(),
            &format!("refused: {}", r.reason()),
        );
        return Ok(ephemeral(match r {
            SlackRefusal::ChannelNotAllowed => {
                ":no_entry: eternia-backup commands are not allowed in this channel."
            }
            _ => {
                ":no_entry: You are not allowed to use eternia-backup (ask for your Slack user id to be added to SLACK_ALLOWED_USERS)."
            }
        }));
    }
    let reply = match Command::parse(&cmd.text) {
        Err(e) => json!({"response_type": "ephemeral", "text": format!("{e}. {USAGE}")}),
        Ok(Command::Help) => json!({"response_type": "ephemeral", "text": USAGE}),
        Ok(Command::List) => {
            json!({"response_type": "ephemeral", "text": slack_list(&state).await})
        }
        Ok(Command::Status) => {
            json!({"response_type": "ephemeral", "text": slack_status(&state).await})
        }
        Ok(Command::Restore { backup, dry_run }) => {
            let arg = match backup_arg(&state.prefix, &BackupRef::Name(backup.clone())) {
                Ok(a) => a,
                Err(e) => {
                    audit(
                        &req,
                        &state,
                        &who,
                        &format!("restore {backup}"),
                        &format!("refused: {e}"),
                    );
                    return Ok(ephemeral(format!(":warning: {e}")));
                }
            };
            if dry_run {
                let new = NewRestore {
                    backup_arg: arg.clone(),
                    dry_run: true,
                    requested_by: who.clone(),
                    reason: "Slack dry run".into(),
                    idempotency_key: (!cmd.trigger_id.is_empty())
                        .then(|| key_hash(&["slack", &cmd.trigger_id])),
                };
                slack_start(&req, &state, &who, &new, &cmd.response_url).await
            } else {
                let c = Confirmation {
                    backup: arg.clone(),
                    user: cmd.user_id.clone(),
                    channel: cmd.channel_id.clone(),
                    expires: now + slack.confirm_ttl.as_secs() as i64,
                    nonce: if cmd.trigger_id.is_empty() {
                        super::jobs::new_id(&cmd.user_id)
                    } else {
                        cmd.trigger_id.clone()
                    },
                };
                audit(
                    &req,
                    &state,
                    &who,
                    &format!("restore {arg}"),
                    "confirmation asked",
                );
                confirm_blocks(
                    &slack.auth.confirmation(&c),
                    &arg,
                    &cmd.user_id,
                    slack.confirm_ttl.as_secs() / 60,
                )
            }
        }
    };
    let text = reply.to_string();
    if !cmd.trigger_id.is_empty() {
        state
            .slack_replies
            .set(&format!("cmd:{}", cmd.trigger_id), text.clone(), now + 600);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text))
}

fn confirm_blocks(value: &str, backup: &str, user: &str, minutes: u64) -> serde_json::Value {
    let text = format!(
        ":warning: <@{user}>, restore `{backup}`? This replaces the live database and the app's ConfigMaps/Secrets (a safety backup is taken first). Confirm within {minutes} min."
    );
    json!({
        "response_type": "ephemeral",
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "elements": [
                {"type": "button", "action_id": "confirm_restore", "style": "danger",
                 "text": {"type": "plain_text", "text": "Restore now"}, "value": value},
                {"type": "button", "action_id": "cancel_restore",
                 "text": {"type": "plain_text", "text": "Cancel"}, "value": "cancel"}
            ]}
        ]
    })
}

/// Starts a restore for Slack and phrases the outcome as a reply.
async fn slack_start(
    req: &HttpRequest,
    state: &Data<Webhook>,
    who: &str,
    new: &NewRestore,
    response_url: &str,
) -> serde_json::Value {
    let what = format!(
        "restore {}{}",
        new.backup_arg,
        if new.dry_run { " (dry run)" } else { "" }
    );
    let user = who.trim_start_matches("slack:");
    match start_restore(state, new).await {
        Ok(Started::New(s)) => {
            audit(req, state, who, &what, &format!("accepted: {}", s.id));
            let url = (!response_url.is_empty()).then(|| response_url.to_owned());
            follow(state.clone().into_inner(), s.id.clone(), url);
            json!({"response_type": "in_channel", "replace_original": true, "text": format!(
                ":rocket: {} `{}` of `{}` started by <@{user}>; progress follows here.",
                if new.dry_run { "Dry run" } else { "Restore" }, s.id, s.backup)})
        }
        Ok(Started::Existing(s)) => {
            audit(req, state, who, &what, &format!("same request as {}", s.id));
            json!({"response_type": "ephemeral", "replace_original": true, "text": progress_text(&s)})
        }
        Err(e) => {
            audit(req, state, who, &what, &format!("refused: {e}"));
            json!({"response_type": "ephemeral", "replace_original": false, "text": format!(":x: {e}")})
        }
    }
}

async fn slack_list(state: &Webhook) -> String {
    match all_backups(state).await {
        Ok(b) if b.is_empty() => "No complete backups.".into(),
        Ok(b) => {
            let lines: Vec<String> = b
                .iter()
                .rev()
                .take(10)
                .map(|b| {
                    format!(
                        "• `{}` {} ({})",
                        b.name,
                        crate::commands::list::human_size(b.size),
                        b.location
                    )
                })
                .collect();
            format!("Newest backups:\n{}", lines.join("\n"))
        }
        Err(e) => format!(":x: {e}"),
    }
}

async fn slack_status(state: &Webhook) -> String {
    let Ok(jobs) = &state.jobs else {
        return ":x: restores cannot be started here (no Kubernetes API)".into();
    };
    let running = match jobs.running().await {
        Ok(Some(what)) => format!(":arrows_counterclockwise: {what}"),
        Ok(None) => "No restore is running.".into(),
        Err(e) => format!(":x: {e}"),
    };
    let recent = jobs.recent(3).await.unwrap_or_default();
    let lines: Vec<String> = recent.iter().map(progress_text).collect();
    if lines.is_empty() {
        running
    } else {
        format!("{running}\nRecent:\n{}", lines.join("\n"))
    }
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

async fn slack_interaction(
    req: HttpRequest,
    body: Bytes,
    state: Data<Webhook>,
) -> Result<HttpResponse, ApiError> {
    let slack = slack_verified(&req, &state, &body)?;
    let form: InteractionForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a Slack interaction form: {e}")))?;
    let i: Interaction = serde_json::from_str(&form.payload)
        .map_err(|e| ApiError::BadRequest(format!("not a Slack interaction payload: {e}")))?;
    let who = format!("slack:{}", i.user.id);
    let channel = i
        .channel
        .as_ref()
        .map(|c| c.id.as_str())
        .unwrap_or_default();
    let Some(action) = i.actions.first() else {
        return Ok(HttpResponse::Ok().finish());
    };
    if action.action_id == "cancel_restore" {
        audit(&req, &state, &who, "restore", "cancelled");
        return Ok(HttpResponse::Ok()
            .json(json!({"replace_original": true, "text": "Restore cancelled."})));
    }
    if action.action_id != "confirm_restore" {
        return Ok(HttpResponse::Ok().finish());
    }
    let now = jiff::Timestamp::now().as_second();
    let verdict = match slack.auth.open_confirmation(&action.value) {
        None => Err((
            "slack_bad_confirmation",
            ":x: This confirmation is not valid.".to_owned(),
        )),
        Some(c) if c.user != i.user.id => Err((
            "slack_confirm_other_user",
            format!(
                ":no_entry: Only <@{}>, who asked for this restore, can confirm it.",
                c.user
            ),
        )),
        Some(_) if slack_allowed(slack, &i.user.id, channel).is_err() => Err((
            "slack_user_not_allowed",
            ":no_entry: You are not allowed to use eternia-backup.".to_owned(),
        )),
        Some(c) if c.expires < now => Err((
            "slack_confirm_expired",
            ":hourglass: This confirmation has expired; run the command again.".to_owned(),
        )),
        Some(c) => Ok(c),
    };
    let reply = match verdict {
        Err((reason, text)) => {
            state.metrics.auth_failure(reason);
            audit(
                &req,
                &state,
                &who,
                "confirm restore",
                &format!("refused: {reason}"),
            );
            json!({"response_type": "ephemeral", "replace_original": false, "text": text})
        }
        Ok(c) => {
            let new = NewRestore {
                backup_arg: c.backup.clone(),
                dry_run: false,
                requested_by: who.clone(),
                reason: format!("confirmed in Slack by {}", i.user.id),
                // A double click, or Slack retrying the click, finds the same restore.
                idempotency_key: Some(key_hash(&["slack-confirm", &action.value])),
            };
            slack_start(&req, &state, &who, &new, &i.response_url).await
        }
    };
    // Slack ignores the body of a block_actions acknowledgement: the answer goes to the response_url.
    if !i.response_url.is_empty() {
        post_to_slack(&state, &i.response_url, reply.clone()).await;
    }
    Ok(HttpResponse::Ok().json(reply))
}
