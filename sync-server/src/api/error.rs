//! The API's error type and its JSON form `{"error": CODE, "message":
//! TEXT, ...}`. Messages are fixed or name fields; they never echo payload
//! content.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use satchel_protocol::wire::ErrorBody;

use crate::storage::StorageError;

/// Everything a handler can refuse with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: malformed request.
    BadRequest(String),
    /// 401: missing, unknown or expired token; failed authentication.
    Unauthenticated(&'static str),
    /// 401: a share link's passcode was missing or wrong; so many wrong
    /// passcodes the link still survives.
    WrongPasscode {
        /// The link's wrong-passcode budget left.
        remaining_attempts: u32,
    },
    /// 403: authenticated but not allowed.
    Forbidden(&'static str),
    /// 403 `record_moved`: the record's access log retires this relay (the
    /// record moved away); the message says what to do.
    Moved(String),
    /// 404: no such record, link or route.
    NotFound(&'static str),
    /// 408: the request body did not arrive within the body timeout.
    BodyTimeout,
    /// 409: conflicts with stored state.
    Conflict(String),
    /// 413: over a size or count limit.
    TooLarge {
        /// The limit (bytes or count).
        limit: u64,
        /// What was too large.
        message: String,
    },
    /// 422: an item failed verification.
    Rejected {
        /// Index of the first bad item.
        index: usize,
        /// Why (no content).
        message: String,
    },
    /// 429: over the rate limit.
    RateLimited {
        /// When to retry.
        retry_after_ms: u64,
    },
    /// 503: storage unavailable or shutting down.
    Unavailable,
    /// The relay's storage is full (507): nothing was stored.
    StorageFull,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::WrongPasscode { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) | ApiError::Moved(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::BadRequest(m) => ErrorBody::new("bad_request", m.as_str()),
            ApiError::Unauthenticated(m) => ErrorBody::new("unauthenticated", *m),
            ApiError::WrongPasscode { remaining_attempts } => ErrorBody {
                remaining_attempts: Some(*remaining_attempts),
                ..ErrorBody::new(
                    "unauthenticated",
                    "a passcode is needed, and the one given (if any) is not it",
                )
            },
            ApiError::Forbidden(m) => ErrorBody::new("forbidden", *m),
            ApiError::Moved(m) => ErrorBody::new("record_moved", m.as_str()),
            ApiError::NotFound(m) => ErrorBody::new("not_found", *m),
            ApiError::BodyTimeout => ErrorBody::new(
                "request_timeout",
                "the request body did not arrive in time; send it again on a faster connection",
            ),
            ApiError::Conflict(m) => ErrorBody::new("conflict", m.as_str()),
            ApiError::TooLarge { limit, message } => ErrorBody {
                limit: Some(*limit),
                ..ErrorBody::new("payload_too_large", message.as_str())
            },
            ApiError::Rejected { index, message } => ErrorBody {
                index: Some(u64::try_from(*index).unwrap_or(u64::MAX)),
                ..ErrorBody::new("rejected", message.as_str())
            },
            ApiError::RateLimited { retry_after_ms } => ErrorBody {
                retry_after_ms: Some(*retry_after_ms),
                ..ErrorBody::new("rate_limited", "too many requests")
            },
            ApiError::Unavailable => {
                ErrorBody::new("unavailable", "storage unavailable, retry later")
            }
            ApiError::StorageFull => ErrorBody::new(
                "storage_full",
                "the relay's storage is full: nothing was stored; retry later (the relay's operator must free space)",
            ),
        }
    }

    /// 400 with a message.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// 422 for item `index`.
    pub fn rejected(index: usize, message: impl Into<String>) -> Self {
        ApiError::Rejected {
            index,
            message: message.into(),
        }
    }

    /// 413 with the limit.
    pub fn too_large(limit: usize, message: impl Into<String>) -> Self {
        ApiError::TooLarge {
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if self == ApiError::BodyTimeout {
            // The rest of the body is not read: this connection is done.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let ApiError::RateLimited { retry_after_ms } = self {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ApiError::NotFound("not found"),
            StorageError::Conflict(m) => ApiError::Conflict(m.to_owned()),
            StorageError::Backend(detail) => {
                tracing::warn!(error = %detail, "storage error");
                ApiError::Unavailable
            }
            StorageError::Closed => ApiError::Unavailable,
            StorageError::Full => {
                tracing::error!("storage full: refusing writes until space is freed");
                ApiError::StorageFull
            }
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
