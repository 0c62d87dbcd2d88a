//! `eternia-backup serve`: a small, stateless, internet-facing service. It authenticates (JWT or Slack
//! signature), authorizes, and creates a restore Job from the chart's restore template; it never
//! restores in its own process. State lives in the Jobs and the Lease.
//!
//! - `jwt`, `slack`, `pattern`: who may call.
//! - `jobs`: restore Jobs (create from the template, status, what runs now).
//! - `routes`: the HTTP API; `metrics`, `limits`: Prometheus text, rate limit and replay cache.

pub mod error;
pub mod jobs;
pub mod jwt;
pub mod limits;
pub mod metrics;
pub mod pattern;
pub mod routes;
pub mod slack;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tracing::{info, warn};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::store::select::Stores;
use jobs::RestoreJobs;
use jwt::{JwksSource, Policy, Verifier};
use limits::{RateLimiter, SeenIds};
use metrics::Metrics;
use pattern::Pattern;
use slack::SlackAuth;

/// Slack settings: the signing secret and who may use the command where.
pub struct SlackSettings {
    pub auth: SlackAuth,
    pub allowed_users: Vec<String>,
    pub allowed_channels: Vec<String>,
    pub response_url_prefix: String,
    pub confirm_ttl: Duration,
}

/// Everything the handlers share.
pub struct Webhook {
    pub verifier: Verifier,
    pub slack: Option<SlackSettings>,
    /// `Err`: why restores cannot be orchestrated (no Kubernetes API configuration).
    pub jobs: std::result::Result<RestoreJobs, String>,
    pub stores: Option<Stores>,
    pub prefix: String,
    pub metrics: Metrics,
    pub rate: RateLimiter,
    /// Token `jti` (hashed) → the idempotency key it was first used with.
    pub replay: SeenIds<String>,
    /// Slack trigger id → the reply already sent (Slack retries after 3 s).
    pub slack_replies: SeenIds<String>,
    /// One restore start at a time in this process (the Lease guards across replicas).
    pub start_lock: tokio::sync::Mutex<()>,
    pub trust_forwarded_for: bool,
    pub body_limit: usize,
    pub poll_interval: Duration,
    pub http: reqwest::Client,
}

/// Settings that do not come from the cluster: built from `ServeArgs` or by tests.
pub struct Settings {
    pub verifier: Verifier,
    pub slack: Option<SlackSettings>,
    pub prefix: String,
    pub rate_limit_per_minute: u32,
    pub rate_burst: u32,
    pub trust_forwarded_for: bool,
    pub body_limit: usize,
    pub poll_interval: Duration,
}

impl Settings {
    pub fn from_args(global: &GlobalArgs, args: &ServeArgs) -> Result<Settings> {
        let secret = |v: &Option<String>| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .map(SecretString::from)
        };
        let jwks = match (&args.jwks_file, &args.jwks_url) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "set WEBHOOK_JWKS_FILE or WEBHOOK_JWKS_URL, not both",
                ));
            }
            (Some(f), None) => Some(JwksSource::File(f.clone())),
            (None, Some(u)) => Some(JwksSource::Url(u.clone())),
            (None, None) => None,
        };
        let policy = Policy {
            issuer: args.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: args.jwt_audience.clone().filter(|s| !s.is_empty()),
            subjects: Pattern::list(&args.allowed_subjects),
            claims: Policy::parse_claims(&args.jwt_claims).map_err(Error::config)?,
            max_age: args.jwt_max_age,
            leeway: args.jwt_leeway,
        };
        let verifier = Verifier::new(secret(&args.jwt_hs256_secret).as_ref(), jwks, policy)
            .map_err(Error::config)?;
        let slack = secret(&args.slack_signing_secret).map(|s| SlackSettings {
            auth: SlackAuth::new(s),
            allowed_users: trimmed(&args.slack_allowed_users),
            allowed_channels: trimmed(&args.slack_allowed_channels),
            response_url_prefix: args.slack_response_url_prefix.clone(),
            confirm_ttl: args.slack_confirm_ttl,
        });
        Ok(Settings {
            verifier,
            slack,
            prefix: global.prefix.clone(),
            rate_limit_per_minute: args.rate_limit,
            rate_burst: args.rate_burst,
            trust_forwarded_for: args.trust_forwarded_for,
            body_limit: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
            poll_interval: args.poll_interval,
        })
    }
}

fn trimmed(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Webhook {
    pub fn new(
        settings: Settings,
        jobs: std::result::Result<RestoreJobs, String>,
        stores: Option<Stores>,
    ) -> Webhook {
        Webhook {
            verifier: settings.verifier,
            slack: settings.slack,
            jobs,
            stores,
            prefix: settings.prefix,
            metrics: Metrics::default(),
            rate: RateLimiter::new(settings.rate_limit_per_minute, settings.rate_burst),
            replay: SeenIds::default(),
            slack_replies: SeenIds::default(),
            start_lock: tokio::sync::Mutex::new(()),
            trust_forwarded_for: settings.trust_forwarded_for,
            body_limit: settings.body_limit,
            poll_interval: settings.poll_interval,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
        }
    }

    /// Refreshes the backup and restore gauges (periodically, from `serve`).
    pub async fn refresh_metrics(&self) {
        if let Some(stores) = &self.stores {
            for (kind, store) in [
                (
                    "local",
                    stores
                        .local
                        .as_ref()
                        .map(|s| s as &dyn crate::store::BackupStore),
                ),
                (
                    "s3",
                    stores
                        .s3
                        .as_ref()
                        .map(|s| s as &dyn crate::store::BackupStore),
                ),
            ] {
                let Some(store) = store else { continue };
                match store.list().await {
                    Ok(list) => self.metrics.set_backups(kind, &list),
                    Err(e) => {
                        warn!(store = kind, error = %e, "cannot list backups for the metrics")
                    }
                }
            }
        }
        if let Ok(jobs) = &self.jobs {
            match jobs.running().await {
                Ok(r) => self.metrics.set_in_progress(r.is_some()),
                Err(e) => warn!(error = %e, "cannot tell whether a restore runs"),
            }
        }
    }
}

/// The HTTP server on `listener` (tests bind port 0). Stops gracefully on SIGTERM/SIGINT.
pub fn server(
    state: Arc<Webhook>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let data = actix_web::web::Data::from(state);
    Ok(
        actix_web::HttpServer::new(move || routes::app(data.clone()))
            .workers(workers.max(1))
            .shutdown_timeout(20)
            .client_request_timeout(Duration::from_secs(10))
            .listen(listener)?
            .run(),
    )
}

/// `eternia-backup serve`.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    let settings = Settings::from_args(global, args)?;
    let namespace = args
        .job_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "backup".into());
    let jobs = match crate::kube::client().await {
        Ok(client) => Ok(RestoreJobs {
            client,
            lease_namespace: args
                .lease_namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| namespace.clone()),
            namespace,
            cronjob: args.restore_cronjob.clone(),
            lease_name: args.lease_name.clone(),
            log_tail_lines: 20,
        }),
        Err(e) => {
            warn!(error = %e, "no Kubernetes API: restores are refused until the webhook runs in a cluster");
            Err(e.to_string())
        }
    };
    let stores = match Stores::open(&global.backup_dir, &global.prefix, &args.stores).await {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "backups cannot be listed (GET /v1/backups, backup metrics)");
            None
        }
    };
    if !settings.verifier.configured() {
        warn!(
            "no token verification configured (WEBHOOK_JWT_HS256_SECRET, WEBHOOK_JWKS_FILE/URL): every API restore request is refused"
        );
    }
    if settings.slack.is_none() {
        warn!("SLACK_SIGNING_SECRET is not set: Slack commands are refused");
    }
    settings.verifier.preload().await;
    let state = Arc::new(Webhook::new(settings, jobs, stores));
    let listener = TcpListener::bind(args.listen).map_err(|e| {
        Error::config(format!(
            "cannot listen on {} ({e}); set WEBHOOK_LISTEN to a free address",
            args.listen
        ))
    })?;
    let refresher = {
        let state = state.clone();
        let every = args.metrics_refresh.max(Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                state.refresh_metrics().await;
                tokio::time::sleep(every).await;
            }
        })
    };
    info!(listen = %args.listen, "restore webhook listening");
    let result = server(state, listener, args.workers)
        .map_err(|e| Error::config(format!("cannot start the HTTP server: {e}")))?
        .await;
    refresher.abort();
    info!("restore webhook stopped");
    result.map_err(|e| Error::config(format!("HTTP server failed: {e}")))
}
