//! Pre- and post-restore hooks, for maintenance mode and the like: a shell command, or an HTTP(S) URL
//! that gets a JSON POST. A pre-restore hook that fails stops the restore before anything changes; the
//! post-restore hook runs after the restore, whatever its result (`ETERNIA_RESULT`).
//!
//! A command gets no credentials from the restore's environment (database password, S3 keys, the Slack
//! URL): only `PATH`, `HOME`, the in-cluster API address, and `ETERNIA_HOOK` (`pre-restore`,
//! `post-restore`), `ETERNIA_BACKUP`, `ETERNIA_DATABASE` (its name) and, after, `ETERNIA_RESULT`
//! (`succeeded`, `failed`).

use std::time::Duration;

use tracing::{info, instrument};

use crate::error::{Error, Result};

/// How long a hook may take.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub pre: Option<String>,
    pub post: Option<String>,
}

/// What a hook is told.
pub struct HookEvent<'a> {
    pub hook: &'static str,
    pub backup: &'a str,
    pub database: &'a str,
    pub result: Option<&'static str>,
}

/// Runs `hook` (a command, or a URL that gets a POST) and fails when it does.
#[instrument(skip_all, fields(hook = event.hook))]
pub async fn run(hook: &str, event: &HookEvent<'_>) -> Result<()> {
    let failed = |problem: String| Error::Restore {
        step: format!("{} hook", event.hook),
        problem,
        hint: if event.hook == "pre-restore" {
            "the hook's own output above; nothing was changed".into()
        } else {
            "the hook's own output above; the restore itself ran (see its result)".into()
        },
    };
    if hook.starts_with("http://") || hook.starts_with("https://") {
        let body = serde_json::json!({
            "event": event.hook,
            "backup": event.backup,
            "database": event.database,
            "result": event.result,
        });
        let response = reqwest::Client::new()
            .post(hook)
            .timeout(HOOK_TIMEOUT)
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(format!("POST to the hook URL failed: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "the hook URL answered {}",
                response.status()
            )));
        }
        info!(status = %response.status(), "hook URL answered");
        return Ok(());
    }
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(hook).env_clear();
    for keep in [
        "PATH",
        "HOME",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
    ] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("ETERNIA_HOOK", event.hook)
        .env("ETERNIA_BACKUP", event.backup)
        .env("ETERNIA_DATABASE", event.database)
        .stdin(std::process::Stdio::null())
        // Its output goes to the restore's log (stderr), never into the summary on stdout.
        .stdout(std::io::stderr())
        .kill_on_drop(true);
    if let Some(r) = event.result {
        cmd.env("ETERNIA_RESULT", r);
    }
    let status = match tokio::time::timeout(HOOK_TIMEOUT, cmd.status()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(failed(format!("cannot run sh -c …: {e}"))),
        Err(_) => {
            return Err(failed(format!(
                "it did not finish within {} s",
                HOOK_TIMEOUT.as_secs()
            )));
        }
    };
    if !status.success() {
        return Err(failed(format!("the command exited with {status}")));
    }
    info!("hook ran");
    Ok(())
}
