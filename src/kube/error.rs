//! A failed Kubernetes API call, with the hint written where the call is made: what the call needs from
//! RBAC (for a 403) and what a missing object means (for a 404). The API's error is kept as the cause.

use crate::error::Error;

/// What a call needs, as the operator reads it in the hint.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// The RBAC rule the call needs, e.g. "get and list on configmaps and secrets in this namespace".
    pub rbac: &'static str,
    /// What to check when the object (or its namespace) is not found.
    pub not_found: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {problem}; check: {hint}")]
pub struct CallError {
    pub what: String,
    pub problem: String,
    pub hint: String,
    #[source]
    pub source: kube::Error,
}

impl CallError {
    pub fn new(what: impl Into<String>, needs: Needs, e: kube::Error) -> CallError {
        let (problem, hint) = match &e {
            kube::Error::Api(s) if s.code == 403 => (
                format!("forbidden ({})", s.message),
                format!(
                    "RBAC: the ServiceAccount needs {} (chart value rbac.create)",
                    needs.rbac
                ),
            ),
            kube::Error::Api(s) if s.code == 404 => {
                (format!("not found ({})", s.message), needs.not_found.into())
            }
            kube::Error::Api(s) if s.code == 401 => (
                format!("unauthorized ({})", s.message),
                "the ServiceAccount token".into(),
            ),
            kube::Error::Api(s) => (
                format!("API error {} ({})", s.code, s.message),
                "the Kubernetes API server".into(),
            ),
            other => (
                other.to_string(),
                "connectivity to the Kubernetes API server".into(),
            ),
        };
        CallError {
            what: what.into(),
            problem,
            hint,
            source: e,
        }
    }

    /// The HTTP status the API answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.source {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

/// The crate error for a failed call.
pub fn call_failed(what: impl Into<String>, needs: Needs, e: kube::Error) -> Error {
    Error::KubeCall(Box::new(CallError::new(what, needs, e)))
}
