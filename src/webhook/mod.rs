//! `eternia-backup serve`: a small, stateless, internet-facing service. It authenticates (JWT or Slack
//! signature), authorizes, and creates a restore Job from the chart's restore template; it never
//! restores in its own process. State lives in the Jobs and the Lease.
//!
//! - `auth` (`jwt`, `slack`, `pattern`): who may call.
//! - `http`: routes, middleware, health and metrics endpoints; `api`: the restore API; `slack_routes` and
//!   `slack_messages`: the Slack command and what it answers; `follow`: a started restore, polled.
//! - `jobs`: restore Jobs (create from the template, status, what runs now), with domain errors that
//!   `error` maps to HTTP statuses.
//! - `metrics`, `limits`: Prometheus text, rate limit and replay cache.

mod api;
pub mod auth;
pub mod error;
mod follow;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod metrics;
mod slack_messages;
mod slack_routes;
pub mod source;

pub use auth::{jwt, pattern, slack};

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::kube::Cluster;
use crate::store::{StoreConfig, StoreSet};
use jobs::RestoreJobs;
use jwt::Verifier;
use limits::{RateLimiter, SeenIds};
use metrics::Metrics;
use slack::SlackAuth;
use source::TrustedProxies;

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
    pub stores: Option<StoreSet>,
    pub prefix: String,
    pub metrics: Metrics,
    pub rate: RateLimiter,
    /// Token `jti` (hashed) → the idempotency key it was first used with.
    pub replay: SeenIds<String>,
    /// Slack trigger id → the reply already sent (Slack retries after 3 s).
    pub slack_replies: SeenIds<String>,
    /// One restore start at a time in this process (the Lease guards across replicas).
    pub start_lock: tokio::sync::Mutex<()>,
    pub proxies: TrustedProxies,
    pub body_limit: usize,
    pub poll_interval: Duration,
    pub max_backup_age: Duration,
    pub http: reqwest::Client,
}

/// Settings that do not come from the cluster: built by `cli::config` or by tests.
pub struct Settings {
    pub verifier: Verifier,
    pub slack: Option<SlackSettings>,
    pub prefix: String,
    pub rate_limit_per_minute: u32,
    pub rate_burst: u32,
    /// Whose `X-Forwarded-For` is believed (the ingress controller).
    pub trusted_proxies: TrustedProxies,
    pub body_limit: usize,
    pub poll_interval: Duration,
    /// Age past which the newest backup is LATE (`GET /v1/status`, Slack `status`).
    pub max_backup_age: Duration,
}

/// Where restore Jobs are made and the Lease they hold.
pub struct JobsConfig {
    pub namespace: String,
    pub cronjob: String,
    /// The drill CronJob (in the same namespace), whose newest Job `GET /v1/status` reports.
    pub drill_cronjob: String,
    pub lease_name: String,
    pub lease_namespace: String,
}

/// Everything `serve` needs.
pub struct WebhookConfig {
    pub settings: Settings,
    pub jobs: JobsConfig,
    /// `Err`: why backups cannot be listed here (the webhook still serves restores).
    pub stores: Result<StoreConfig>,
    pub listen: std::net::SocketAddr,
    pub workers: usize,
    pub metrics_refresh: Duration,
}

impl Webhook {
    pub fn new(
        settings: Settings,
        jobs: std::result::Result<RestoreJobs, String>,
        stores: Option<StoreSet>,
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
            proxies: settings.trusted_proxies,
            body_limit: settings.body_limit,
            poll_interval: settings.poll_interval,
            max_backup_age: settings.max_backup_age,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client builds"),
        }
    }

    /// Refreshes the backup and restore gauges (periodically, from `serve`).
    pub async fn refresh_metrics(&self) {
        if let Some(stores) = &self.stores {
            for (kind, store) in stores.by_kind() {
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
    Ok(actix_web::HttpServer::new(move || http::app(data.clone()))
        .workers(workers.max(1))
        .shutdown_timeout(20)
        .client_request_timeout(Duration::from_secs(10))
        .listen(listener)?
        .run())
}

/// `eternia-backup serve`.
pub async fn serve(cfg: WebhookConfig, cluster: Cluster) -> Result<()> {
    let WebhookConfig {
        settings,
        jobs,
        stores,
        listen,
        workers,
        metrics_refresh,
    } = cfg;
    let jobs = match cluster.client().await {
        Ok(client) => Ok(RestoreJobs {
            client,
            namespace: jobs.namespace,
            cronjob: jobs.cronjob,
            drill_cronjob: jobs.drill_cronjob,
            lease_namespace: jobs.lease_namespace,
            lease_name: jobs.lease_name,
            log_tail_lines: 20,
        }),
        Err(e) => {
            warn!(error = %e, "no Kubernetes API: restores are refused until the webhook runs in a cluster");
            Err(e.to_string())
        }
    };
    let stores = match stores {
        Ok(cfg) => StoreSet::open(&cfg).await,
        Err(e) => Err(e),
    };
    let stores = match stores {
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
    let listener = TcpListener::bind(listen).map_err(|e| {
        Error::config(format!(
            "cannot listen on {listen} ({e}); set WEBHOOK_LISTEN to a free address"
        ))
    })?;
    let refresher = {
        let state = state.clone();
        let every = metrics_refresh.max(Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                state.refresh_metrics().await;
                tokio::time::sleep(every).await;
            }
        })
    };
    info!(listen = %listen, "restore webhook listening");
    let result = server(state, listener, workers)
        .map_err(|e| Error::config(format!("cannot start the HTTP server: {e}")))?
        .await;
    refresher.abort();
    info!("restore webhook stopped");
    result.map_err(|e| Error::config(format!("HTTP server failed: {e}")))
}
