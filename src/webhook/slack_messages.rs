//! The texts and Block Kit payloads the Slack command answers with.

use actix_web::HttpResponse;
use serde_json::json;

use super::jobs::{RestoreStatus, State};
use crate::commands::status::{Health, Status};
use crate::units::{human_age, human_size};

pub(super) fn progress_text(s: &RestoreStatus) -> String {
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

pub(super) fn confirm_blocks(
    value: &str,
    backup: &str,
    user: &str,
    minutes: u64,
) -> serde_json::Value {
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

pub(super) fn ephemeral(text: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"response_type": "ephemeral", "text": text.into()}))
}

/// One line per store: its health and newest backup; then the last drill.
pub(super) fn status_lines(s: &Status) -> String {
    let stores = s.stores.iter().map(|st| {
        let icon = if st.health == Health::Ok {
            ":white_check_mark:"
        } else {
            ":warning:"
        };
        let newest = match (&st.newest, st.age_seconds) {
            (Some(b), Some(age)) => format!(
                "newest `{}` ({}, {} old{})",
                b.name,
                human_size(b.size),
                human_age(age),
                st.duration_seconds
                    .map(|d| format!(", took {}", human_age(d.round() as i64)))
                    .unwrap_or_default()
            ),
            _ => "no complete backup".into(),
        };
        format!("{icon} {} {}: {newest}", st.location, st.health.as_str())
    });
    let drill_icon = match s.last_drill.as_ref().map(|d| d.result) {
        Some(State::Failed) => ":x:",
        Some(State::Succeeded) => ":white_check_mark:",
        _ => ":grey_question:",
    };
    stores
        .chain([format!("{drill_icon} last drill: {}", s.last_drill_text())])
        .collect::<Vec<_>>()
        .join("\n")
}
