//! The one error type of the API, and the status code and public message of each case.

use http::StatusCode;

use crate::domain::ratelimit::RateStatus;
use crate::domain::validation::FieldError;
use crate::http::auth::AuthError;
use crate::ports::api_keys::KeyStoreError;
use crate::ports::queue::QueueUnavailable;
use crate::ports::store::{ID_TAKEN_MESSAGE, StoreError};

/// A dependency whose outage turns into a 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Queue,
    RateLimiter,
    /// The token issuer's key server (JWKS).
    KeyServer,
    /// The API keys table.
    ApiKeys,
    /// The organization settings' item.
    Settings,
    /// The work outlasted the organization's `performance.processing_timeout_ms`.
    Deadline,
}

impl Dependency {
    pub fn public_message(self) -> &'static str {
        match self {
            Dependency::Database => "Database temporarily unavailable",
            Dependency::Queue => "Queue temporarily unavailable",
            Dependency::RateLimiter => "Rate limiter temporarily unavailable",
            Dependency::KeyServer => "Token keys temporarily unavailable",
            Dependency::ApiKeys => "API keys temporarily unavailable",
            Dependency::Settings => "Organization settings temporarily unavailable",
            Dependency::Deadline => {
                "Processing took longer than the organization allows (processing_timeout_ms); try again"
            }
        }
    }
}

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_UNAVAILABLE_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {0}")]
    Unauthorized(AuthError),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A `Content-Encoding` other than identity: compressed bodies are not accepted, so no
    /// decompression bomb can reach the parser.
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// Logged as "rate limited (user)" or "(organization)": which budget refused it.
    #[error("rate limited ({})", crate::domain::validation::Choice::as_str(.0.scope))]
    RateLimited(RateStatus),
    /// `detail` goes to the logs only, never to the client.
    #[error("{dependency:?} unavailable: {detail}")]
    Unavailable { dependency: Dependency, detail: String },
    /// `0` goes to the logs only, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client sees; never internal detail.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Validation(_) => "Validation failed".into(),
            ApiError::Unauthorized(reason) => reason.to_string(),
            ApiError::Forbidden(what) => format!("Forbidden: {what}"),
            ApiError::NotFound(what) => format!("Not found: {what}"),
            ApiError::Conflict(what) => what.clone(),
            ApiError::PayloadTooLarge { limit } => {
                format!("Payload too large: the limit is {limit} bytes")
            }
            ApiError::UnsupportedMediaType => "Content-Type must be application/json".into(),
            ApiError::UnsupportedEncoding => {
                "Content-Encoding must be identity: compressed bodies are not accepted".into()
            }
            ApiError::RateLimited(status) if status.scope == crate::domain::ratelimit::Scope::BatchesInFlight => {
                format!(
                    "Too many batches in flight for this organization (at most {}, setting performance.concurrent_requests)",
                    status.limit
                )
            }
            ApiError::RateLimited(_) => "Rate limit exceeded".into(),
            ApiError::Unavailable { dependency, .. } => dependency.public_message().into(),
            ApiError::Internal(_) => "Internal server error".into(),
        }
    }

    pub fn validation(field: &str, message: &str) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<AuthError> for ApiError {
    /// An unreadable key server or key store is an outage (503), every other refusal a 401.
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::KeysUnavailable(detail) => ApiError::Unavailable {
                dependency: Dependency::KeyServer,
                detail,
            },
            AuthError::KeyStoreUnavailable(detail) => ApiError::Unavailable {
                dependency: Dependency::ApiKeys,
                detail,
            },
            other => ApiError::Unauthorized(other),
        }
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => ApiError::Unavailable {
                dependency: Dependency::Database,
                detail,
            },
            StoreError::IdTaken => ApiError::Conflict(ID_TAKEN_MESSAGE.into()),
            // The validator should have caught it: a 400 naming the field, never a 500 (the
            // reason is the server's own words about the value, not internal state).
            StoreError::Rejected { field, reason } => {
                tracing::error!(reason, "the database refused a record the validator accepted");
                ApiError::validation(
                    field.as_deref().unwrap_or("body"),
                    "Refused by the database: the value is out of the range it can store",
                )
            }
            StoreError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<crate::ports::settings::SettingsUnavailable> for ApiError {
    fn from(err: crate::ports::settings::SettingsUnavailable) -> Self {
        ApiError::Unavailable {
            dependency: Dependency::Settings,
            detail: err.to_string(),
        }
    }
}

impl From<KeyStoreError> for ApiError {
    fn from(err: KeyStoreError) -> Self {
        match err {
            KeyStoreError::Unavailable(detail) => ApiError::Unavailable {
                dependency: Dependency::ApiKeys,
                detail,
            },
            KeyStoreError::IdTaken => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<QueueUnavailable> for ApiError {
    fn from(err: QueueUnavailable) -> Self {
        ApiError::Unavailable {
            dependency: Dependency::Queue,
            detail: err.0,
        }
    }
}

impl From<crate::domain::batch::EnvelopeTooLarge> for ApiError {
    fn from(err: crate::domain::batch::EnvelopeTooLarge) -> Self {
        ApiError::PayloadTooLarge { limit: err.limit }
    }
}
