//! The Slack slash command (`/restore list|status|<backup> [--dry-run]`) and its confirmation button:
//! the request signature, who may use it where, and the restore it starts.

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use super::api::{BackupRef, all_backups, backup_arg, backup_status, key_hash, start_restore};
use super::error::ApiError;
use super::follow::{follow, post_to_slack};
use super::http::audit;
use super::jobs::{NewRestore, Started};
use super::slack::{Command, Confirmation, Interaction, SlackRefusal, SlashCommand, USAGE};
use super::slack_messages::{confirm_blocks, ephemeral, progress_text, status_lines};
use super::{SlackSettings, Webhook};

/// Checks the Slack signature on the raw body; a refusal is counted, audited and answered with 401.
fn slack_verified<'a>(
    req: &HttpRequest,
    state: &'a Webhook,
    body: &[u8],
) -> Result<&'a SlackSettings, ApiError> {
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
        ApiError::SlackUnauthorized("the Slack request signature is missing, stale or wrong")
    })
}

fn slack_allowed(s: &SlackSettings, user: &str, channel: &str) -> Result<(), SlackRefusal> {
    if !s.allowed_users.iter().any(|u| u == user) {
        return Err(SlackRefusal::UserNotAllowed);
    }
    if !s.allowed_channels.is_empty() && !s.allowed_channels.iter().any(|c| c == channel) {
        return Err(SlackRefusal::ChannelNotAllowed);
    }
    Ok(())
}

pub(super) async fn slack_command(
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
                        crate::units::human_size(b.size),
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
    let backups = match backup_status(state).await {
        Ok(s) => status_lines(&s),
        Err(e) => format!(":x: {e}"),
    };
    let Ok(jobs) = &state.jobs else {
        return format!("{backups}\n:x: restores cannot be started here (no Kubernetes API)");
    };
    let running = match jobs.running().await {
        Ok(Some(what)) => format!(":arrows_counterclockwise: {what}"),
        Ok(None) => "No restore is running.".into(),
        Err(e) => format!(":x: {e}"),
    };
    let recent = jobs.recent(3).await.unwrap_or_default();
    let lines: Vec<String> = recent.iter().map(progress_text).collect();
    if lines.is_empty() {
        format!("{backups}\n{running}")
    } else {
        format!("{backups}\n{running}\nRecent:\n{}", lines.join("\n"))
    }
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

pub(super) async fn slack_interaction(
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
        Some(c) if c.channel != channel => Err((
            "slack_confirm_other_channel",
            ":no_entry: This restore can only be confirmed in the channel it was asked in."
                .to_owned(),
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
