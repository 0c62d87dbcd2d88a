//! Slack incoming-webhook notifications. Best effort: a failing notification is logged, never fatal.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tracing::{info, instrument, warn};

#[derive(Clone)]
pub struct Notifier {
    url: SecretString,
    pub on_success: bool,
}

impl Notifier {
    pub fn new(url: SecretString, on_success: bool) -> Self {
        Notifier { url, on_success }
    }

    /// Posts `{"text": …}`; the webhook URL (a secret) never reaches a log line.
    #[instrument(skip_all)]
    pub async fn send(&self, text: &str) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return warn!(error = %e, "notification skipped: cannot build HTTP client"),
        };
        let body = serde_json::json!({ "text": text });
        match client
            .post(self.url.expose_secret())
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => info!("notification sent"),
            Ok(r) => {
                warn!(status = %r.status(), "notification rejected by Slack; check NOTIFY_SLACK_WEBHOOK_URL")
            }
            Err(e) => {
                warn!(error = %e.without_url(), "notification failed; check NOTIFY_SLACK_WEBHOOK_URL and egress")
            }
        }
    }
}
