//! After a restore starts: poll its Job until it finishes, count the outcome, and for Slack post the
//! progress to the command's `response_url` (outbound HTTP, only to `SLACK_RESPONSE_URL_PREFIX`).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tracing::warn;

use super::Webhook;
use super::jobs::{JobError, State};
use super::slack_messages::progress_text;

/// Polls a started restore until it finishes: counts the outcome and, for Slack, posts progress and the
/// result to the `response_url`.
pub(super) fn follow(state: Arc<Webhook>, id: String, response_url: Option<String>) {
    actix_web::rt::spawn(async move {
        let Ok(jobs) = &state.jobs else { return };
        let give_up = Instant::now() + std::time::Duration::from_secs(12 * 3600);
        let mut last: Option<State> = None;
        while Instant::now() < give_up {
            tokio::time::sleep(state.poll_interval).await;
            let s = match jobs.status(&id).await {
                Ok(s) => s,
                Err(JobError::NotFound(_)) => return,
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

pub(super) async fn post_to_slack(state: &Webhook, url: &str, body: serde_json::Value) {
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
