//! The HTTP surface: the routes, the middleware (rate limit, request metrics), health, readiness,
//! metrics and the OpenAPI document, and what every handler shares: the caller's address, the `audit`
//! log line, token authentication. The restore API is in `api`, the Slack commands in `slack_routes`.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use tracing::{info, warn};

use super::Webhook;
use super::api::{create_restore, get_status, list_backups, restore_status};
use super::error::ApiError;
use super::jobs::RestoreJobs;
use super::jwt::{Caller, Refusal};
use super::slack_routes::{slack_command, slack_interaction};
use super::source::TrustedProxies;

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
        .wrap(from_fn(count_requests))
        .service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz))
        .service(web::resource("/metrics").get(metrics))
        .service(web::resource("/openapi.json").get(openapi))
        // The rate limit wraps the routes themselves: whatever spelling of the path the router matched
        // (`/%761/restores` is `/v1/restores`), the limit applies.
        .service(
            web::scope("/v1")
                .wrap(from_fn(rate_limit))
                .service(web::resource("/restores").post(create_restore))
                .service(web::resource("/restores/{id}").get(restore_status))
                .service(web::resource("/backups").get(list_backups))
                .service(web::resource("/status").get(get_status)),
        )
        .service(
            web::scope("/slack")
                .wrap(from_fn(rate_limit))
                .service(web::resource("/commands").post(slack_command))
                .service(web::resource("/interactions").post(slack_interaction)),
        )
}

/// The caller's address: the peer, or behind trusted proxies the address they saw (`source`).
fn source(req: &HttpRequest, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    Some(proxies.client(peer, forwarded))
}

fn state_of(req: &ServiceRequest) -> Data<Webhook> {
    req.app_data::<Data<Webhook>>()
        .cloned()
        .expect("webhook state")
}

/// Per-source rate limit on the routes it wraps (the restore API and Slack).
async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state_of(&req);
    if state.rate.enabled()
        && let Some(ip) = source(req.request(), &state.proxies)
        && !state.rate.allow(ip, Instant::now())
    {
        state.metrics.auth_failure("rate_limited");
        return Ok(req
            .into_response(ApiError::RateLimited.error_response())
            .map_into_boxed_body());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The request counter, by matched route pattern and status.
async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state_of(&req);
    let res = next.call(req).await?.map_into_boxed_body();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    state.metrics.request(&route, res.status().as_u16());
    // actix answers an oversized body in plain text: answer it as every other error, in JSON.
    if res.status() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        let (req, _) = res.into_parts();
        let body = ApiError::TooLarge(state.body_limit).error_response();
        return Ok(ServiceResponse::new(req, body).map_into_boxed_body());
    }
    Ok(res)
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

pub(super) fn audit(req: &HttpRequest, state: &Webhook, who: &str, what: &str, result: &str) {
    let from = source(req, &state.proxies)
        .map(|i| i.to_string())
        .unwrap_or_default();
    info!(target: "audit", who, from = %from, route = req.path(), what, result, "restore request");
}

/// Verifies the bearer token; a refusal is counted, audited and answered with 401.
pub(super) async fn authenticate(
    req: &HttpRequest,
    state: &Webhook,
    what: &str,
) -> Result<Caller, ApiError> {
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

pub(super) fn refuse_token(req: &HttpRequest, state: &Webhook, what: &str, r: Refusal) -> ApiError {
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

pub(super) fn jobs(state: &Webhook) -> Result<&RestoreJobs, ApiError> {
    state
        .jobs
        .as_ref()
        .map_err(|e| ApiError::Unavailable(format!("restores cannot be started here: {e}")))
}
