//! The webhook's one error type: every refusal or failure becomes a JSON body `{"error": ..., "hint"?: ...}`
//! with the matching status. Messages name what was wrong and what to do; they never carry a token,
//! a signature or a secret.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::jobs::JobError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A Slack request without a valid signature (no `WWW-Authenticate`: Slack signs, it sends no token).
    #[error("{0}")]
    SlackUnauthorized(&'static str),
    #[error("the request body is larger than {0} bytes (WEBHOOK_BODY_LIMIT)")]
    TooLarge(usize),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("a restore is already running: {0}")]
    Conflict(String),
    #[error("too many requests from this source; retry later")]
    RateLimited,
    #[error("{0}")]
    Unavailable(String),
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Conflict(what) => ApiError::Conflict(what),
            JobError::NotFound(what) => ApiError::NotFound(what),
            e @ (JobError::Unavailable(_) | JobError::Kube(_)) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

impl ApiError {
    fn hint(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthorized(_) => Some(
                "send Authorization: Bearer <JWT> signed with the webhook's HS256 secret or a JWKS key",
            ),
            ApiError::SlackUnauthorized(_) => Some(
                "SLACK_SIGNING_SECRET must be the Slack app's signing secret, and the clocks within 5 minutes",
            ),
            ApiError::Conflict(_) => Some(
                "wait for it to finish (GET /v1/restores/{id}) or check `kubectl get jobs,lease -n <release namespace>`",
            ),
            ApiError::Unavailable(_) => {
                Some("check the webhook's log and its access to the Kubernetes API")
            }
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) | ApiError::SlackUnauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.to_string() });
        if let Some(h) = self.hint() {
            body["hint"] = h.into();
        }
        let mut r = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if matches!(self, ApiError::RateLimited) {
            r.insert_header(("Retry-After", "1"));
        }
        r.json(body)
    }
}
