//! Slack: request signing (checked on the raw body before anything is parsed, constant-time), the slash
//! command grammar, and restore confirmations (a signed, user-bound, expiring button value, so a
//! confirmation survives a webhook restart and cannot be replayed by someone else or later).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a request timestamp may be from now (Slack's own recommendation).
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackRefusal {
    NotConfigured,
    MissingHeaders,
    StaleTimestamp,
    BadSignature,
    UserNotAllowed,
    ChannelNotAllowed,
}

impl SlackRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            SlackRefusal::NotConfigured => "slack_not_configured",
            SlackRefusal::MissingHeaders => "slack_missing_signature",
            SlackRefusal::StaleTimestamp => "slack_stale_timestamp",
            SlackRefusal::BadSignature => "slack_bad_signature",
            SlackRefusal::UserNotAllowed => "slack_user_not_allowed",
            SlackRefusal::ChannelNotAllowed => "slack_channel_not_allowed",
        }
    }
}

pub struct SlackAuth {
    secret: SecretString,
    confirm_key: [u8; 32],
}

impl SlackAuth {
    pub fn new(secret: SecretString) -> SlackAuth {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"eternia-backup slack confirmation key v1");
        let confirm_key = mac.finalize().into_bytes().into();
        SlackAuth {
            secret,
            confirm_key,
        }
    }

    /// `X-Slack-Signature` must be `v0=` + hex HMAC-SHA256(secret, `v0:{timestamp}:{body}`), with the
    /// timestamp within five minutes of `now`.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SlackRefusal> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(SlackRefusal::MissingHeaders);
        };
        let ts_num: i64 = ts
            .trim()
            .parse()
            .map_err(|_| SlackRefusal::MissingHeaders)?;
        if (now - ts_num).abs() > MAX_SKEW_SECS {
            return Err(SlackRefusal::StaleTimestamp);
        }
        let expected = sig
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or(SlackRefusal::BadSignature)?;
        let mut mac = HmacSha256::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"v0:");
        mac.update(ts.as_bytes());
        mac.update(b":");
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&expected)
            .map_err(|_| SlackRefusal::BadSignature)
    }

    /// A button value that only `user` can use to confirm this restore, until `expires`.
    pub fn confirmation(&self, c: &Confirmation) -> String {
        let payload = hex::encode(serde_json::to_vec(c).expect("confirmation serializes"));
        format!(
            "{payload}.{}",
            hex::encode(self.confirm_mac(payload.as_bytes()))
        )
    }

    /// The confirmation a button value carries, if this webhook signed it.
    pub fn open_confirmation(&self, value: &str) -> Option<Confirmation> {
        let (payload, mac) = value.split_once('.')?;
        let mac = hex::decode(mac).ok()?;
        let mut m = HmacSha256::new_from_slice(&self.confirm_key).expect("HMAC key");
        m.update(payload.as_bytes());
        m.verify_slice(&mac).ok()?;
        serde_json::from_slice(&hex::decode(payload).ok()?).ok()
    }

    fn confirm_mac(&self, payload: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.confirm_key).expect("HMAC key");
        m.update(payload);
        m.finalize().into_bytes().into()
    }
}

/// What a confirm button stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// `latest` or an archive name.
    pub backup: String,
    pub user: String,
    pub channel: String,
    /// Seconds since the epoch.
    pub expires: i64,
    /// Makes two confirmations of the same restore distinct (the slash command's trigger id).
    pub nonce: String,
}

/// The fields of a slash command we use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub response_url: String,
    #[serde(default)]
    pub trigger_id: String,
}

/// `payload=` of an interaction (a button click).
#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    pub user: SlackUser,
    #[serde(default)]
    pub channel: Option<SlackChannel>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub response_url: String,
    #[serde(default)]
    pub trigger_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SlackUser {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SlackChannel {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    #[serde(default)]
    pub action_id: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    List,
    Status,
    Restore { backup: String, dry_run: bool },
}

impl Command {
    /// `list`, `status`, `restore latest|<name> [dry-run]`; anything else is a usage error.
    pub fn parse(text: &str) -> Result<Command, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => Ok(Command::Help),
            ["list"] => Ok(Command::List),
            ["status"] => Ok(Command::Status),
            ["restore", backup] => Ok(Command::Restore {
                backup: (*backup).to_owned(),
                dry_run: false,
            }),
            ["restore", backup, "dry-run" | "--dry-run" | "dryrun"] => Ok(Command::Restore {
                backup: (*backup).to_owned(),
                dry_run: true,
            }),
            _ => Err(format!("unknown command `{}`", text.trim())),
        }
    }
}

pub const USAGE: &str = "Usage: `list` · `status` · `restore latest|<backup name> [dry-run]`";
