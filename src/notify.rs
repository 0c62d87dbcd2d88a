//! Slack incoming-webhook notifications, as Block Kit: a header, the facts as fields (backup, size,
//! duration, stores), and the error with its step and hint when something failed; `text` carries the same
//! in one line for clients that show no blocks. One message per event. Best effort: a failing notification
//! is logged, never fatal. Never a secret: the webhook URL is one and stays out of every log line, and
//! the messages are made from what the errors and summaries say, which never hold one.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::{info, instrument, warn};

/// Block Kit's limits (api.slack.com/reference/block-kit): header text, section text, field text, fields.
pub const MAX_HEADER: usize = 150;
pub const MAX_SECTION: usize = 3000;
pub const MAX_FIELD: usize = 2000;
pub const MAX_FIELDS: usize = 10;

#[derive(Clone)]
pub struct Notifier {
    url: SecretString,
    pub on_success: bool,
}

/// One notification: a headline, `(label, value)` facts, and an optional detail (an error).
#[derive(Debug, Clone, Default)]
pub struct Message {
    headline: String,
    text: String,
    fields: Vec<(String, String)>,
    detail: Option<String>,
}

/// `s` cut to at most `max` characters, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Message {
    /// `headline` (e.g. ":x: Backup FAILED") and `text`, the one-line fallback.
    pub fn new(headline: impl Into<String>, text: impl Into<String>) -> Message {
        Message {
            headline: headline.into(),
            text: text.into(),
            ..Message::default()
        }
    }

    /// A failure: the step and what to check as fields, the whole error below.
    pub fn failure(headline: &str, text: String, e: &crate::error::Error) -> Message {
        let mut m = Message::new(headline, text).field("Step", e.step());
        if let Some(h) = e.hint() {
            m = m.field("Check", h);
        }
        m.detail(e.to_string())
    }

    pub fn field(mut self, label: &str, value: impl Into<String>) -> Message {
        if self.fields.len() < MAX_FIELDS {
            self.fields.push((label.to_owned(), value.into()));
        }
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Message {
        self.detail = Some(detail.into());
        self
    }

    /// The JSON body Slack's incoming webhook takes.
    pub fn to_json(&self) -> Value {
        let mut blocks = vec![json!({
            "type": "header",
            "text": {"type": "plain_text", "text": cut(&self.headline, MAX_HEADER), "emoji": true}
        })];
        if !self.fields.is_empty() {
            let fields: Vec<Value> = self
                .fields
                .iter()
                .map(|(k, v)| json!({"type": "mrkdwn", "text": cut(&format!("*{k}*\n{v}"), MAX_FIELD)}))
                .collect();
            blocks.push(json!({"type": "section", "fields": fields}));
        }
        if let Some(d) = &self.detail {
            // In a code block, so Slack renders names and paths as they are.
            let body = cut(d, MAX_SECTION - 8);
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{body}```")}}));
        }
        json!({"text": cut(&self.text, MAX_SECTION), "blocks": blocks})
    }
}

impl Notifier {
    pub fn new(url: SecretString, on_success: bool) -> Self {
        Notifier { url, on_success }
    }

    /// Posts a plain `{"text": …}` message.
    pub async fn send(&self, text: &str) {
        self.post(json!({ "text": text })).await
    }

    /// Posts a Block Kit message.
    pub async fn send_message(&self, message: &Message) {
        self.post(message.to_json()).await
    }

    /// The webhook URL (a secret) never reaches a log line.
    #[instrument(skip_all)]
    async fn post(&self, body: Value) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return warn!(error = %e, "notification skipped: cannot build HTTP client"),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_stays_within_block_kits_limits() {
        let long = "x".repeat(10_000);
        let mut m = Message::new(long.clone(), long.clone()).detail(long.clone());
        for i in 0..15 {
            m = m.field(&format!("f{i}"), long.clone());
        }
        let v = m.to_json();
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(chars(&blocks[0]["text"]["text"]) <= MAX_HEADER);
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), MAX_FIELDS);
        assert!(fields.iter().all(|f| chars(&f["text"]) <= MAX_FIELD));
        assert!(chars(&blocks[2]["text"]["text"]) <= MAX_SECTION);
        assert!(chars(&v["text"]) <= MAX_SECTION);
    }
}
