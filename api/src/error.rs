//! The API's one error type. Everything a client reads is an RFC 9457 problem document with a
//! stable `code`; the internal cause of a 5xx goes to the log only.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use iocloud_control::{Error as DomainError, ErrorCode};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("too many requests; retry after {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("this connection already runs {limit} operations; complete one first")]
    TooManyOperations { limit: usize },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInFlight,
    #[error(
        "the first request with this Idempotency-Key stopped without an answer (its server stopped), so whether it took effect is unknown; look before retrying with a new key"
    )]
    IdempotencyOutcomeUnknown,
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the request took too long")]
    Timeout,
    #[error("this server is stopping; reconnect and resume from the last event seen")]
    ServerStopping,
    #[error("this server is busy; nothing of the request was done: retry after {} s", crate::middleware::admission::RETRY_AFTER.as_secs())]
    Overloaded,
    #[error("internal error")]
    Internal(String),
}

/// The RFC 9457 body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`urn:iocloud:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable; the same in GraphQL's `extensions.code`.
    pub code: ErrorCode,
    /// For validation errors, the field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `insufficient_capacity`: what emptied the candidates and what would fit (documented
    /// on the operations that can answer it: [`PlacementProblem`]).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub capacity: Option<CapacityProblem>,
    /// For `quota_exceeded`: the limit, what is in use and what was asked for.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub quota: Option<iocloud_control::clusters::QuotaExceeded>,
}

/// The problem document of operations that place clusters: besides the usual members, an
/// `insufficient_capacity` answer says what emptied the candidates and what would fit, and a
/// `quota_exceeded` one which limit the request would pass. Only these operations carry them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlacementProblem {
    #[serde(flatten)]
    pub problem: Problem,
    /// `insufficient_capacity`: the request field whose constraint left too few GPUs.
    pub constraint: Option<String>,
    pub requested_gpus: Option<u32>,
    /// `insufficient_capacity`: GPUs that fit every constraint up to that one.
    pub available_gpus: Option<u64>,
    /// `insufficient_capacity`: the nearest request that fits, when easing that one
    /// constraint is enough.
    pub nearest: Option<NearestRequest>,
    /// `quota_exceeded`: `max_gpus`, `max_clusters` or `max_spend_per_hour`.
    pub limit: Option<String>,
    /// `quota_exceeded`: the limit (USD per hour for spend), what is in use, what was asked.
    pub allowed: Option<String>,
    pub in_use: Option<String>,
    pub requested: Option<String>,
}

/// Why a placement found nothing (RFC 9457 extension members).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CapacityProblem {
    /// The request field whose constraint left too few GPUs.
    pub constraint: String,
    pub requested_gpus: u32,
    /// GPUs that fit every constraint up to that one.
    pub available_gpus: u64,
    /// The nearest request that fits, when easing that one constraint is enough.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nearest: Option<NearestRequest>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NearestRequest {
    pub field: String,
    /// As the request writes it (a price in USD).
    pub value: String,
    pub available_gpus: u64,
}

impl From<&iocloud_control::placement::Infeasible> for CapacityProblem {
    fn from(i: &iocloud_control::placement::Infeasible) -> Self {
        CapacityProblem {
            constraint: i.constraint.to_string(),
            requested_gpus: i.requested_gpus,
            available_gpus: i.available_gpus,
            nearest: i.nearest.as_ref().map(|n| NearestRequest {
                field: n.field.to_string(),
                value: iocloud_control::error::capacity::eased_value(n),
                available_gpus: n.available_gpus,
            }),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Domain(e) => domain_status(e),
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidBody(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::TooManyOperations { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::IdempotencyInFlight | ApiError::IdempotencyOutcomeUnknown => {
                StatusCode::CONFLICT
            }
            ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::ServerStopping | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Domain(e) => e.code(),
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::InvalidBody(_) => ErrorCode::InvalidBody,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::TooManyOperations { .. } => ErrorCode::TooManySubscriptions,
            ApiError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            ApiError::IdempotencyInFlight => ErrorCode::IdempotencyKeyInFlight,
            ApiError::IdempotencyOutcomeUnknown => ErrorCode::IdempotencyOutcomeUnknown,
            ApiError::RouteNotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Timeout => ErrorCode::Timeout,
            ApiError::ServerStopping => ErrorCode::ServerStopping,
            ApiError::Overloaded => ErrorCode::Overloaded,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn is_internal(&self) -> bool {
        match self {
            ApiError::Domain(e) => e.is_internal(),
            ApiError::Internal(_) => true,
            _ => false,
        }
    }

    /// What the client may read.
    pub fn detail(&self) -> String {
        if self.code() == ErrorCode::DatabaseUnavailable {
            return "the database could not be reached; retry after Retry-After (a create with the same Idempotency-Key)".into();
        }
        if self.is_internal() {
            "something went wrong on our side; the request id in x-request-id helps support find it"
                .into()
        } else {
            self.to_string()
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let field = match self {
            ApiError::Domain(DomainError::Validation { field, .. }) => Some(field.to_string()),
            ApiError::Domain(DomainError::InvalidEndpoint { .. }) => Some("endpoints".into()),
            _ => None,
        };
        let capacity = match self {
            ApiError::Domain(DomainError::InsufficientCapacity(why)) => Some(why.as_ref().into()),
            _ => None,
        };
        let quota = match self {
            ApiError::Domain(DomainError::QuotaExceeded(q)) => Some(q.as_ref().clone()),
            _ => None,
        };
        Problem {
            kind: format!("urn:iocloud:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            field,
            capacity,
            quota,
        }
    }
}

pub fn domain_status(e: &DomainError) -> StatusCode {
    match e {
        DomainError::Validation { .. }
        | DomainError::InvalidEndpoint { .. }
        | DomainError::InsufficientCapacity(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DomainError::Unauthenticated
        | DomainError::InvalidCredentials
        | DomainError::InvalidToken
        | DomainError::TokenExpired
        | DomainError::RefreshTokenReused => StatusCode::UNAUTHORIZED,
        DomainError::Forbidden(_) | DomainError::DeviceRetired | DomainError::QuotaExceeded(_) => {
            StatusCode::FORBIDDEN
        }
        DomainError::NotFound(_) => StatusCode::NOT_FOUND,
        DomainError::TooManyLoginAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        DomainError::Conflict {
            code: ErrorCode::DebtOutstanding,
            ..
        } => StatusCode::PAYMENT_REQUIRED,
        DomainError::Conflict { .. } | DomainError::LastOwner => StatusCode::CONFLICT,
        DomainError::Billing(_) => match e.code() {
            ErrorCode::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::InvalidAmount | ErrorCode::CurrencyMismatch | ErrorCode::AmountOverflow => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::ExternalRefReused
            | ErrorCode::HoldExceeded
            | ErrorCode::StakeLocked
            | ErrorCode::NotReversible => StatusCode::CONFLICT,
            ErrorCode::QuoteExpired => StatusCode::GONE,
            ErrorCode::PriceFeedUnavailable
            | ErrorCode::RailUnavailable
            | ErrorCode::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::CardDeclined => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::PaymentRefused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::WebhookRejected => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        DomainError::RailNotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::CardDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
        DomainError::Db(iocloud_db::DbError::NotFound) => StatusCode::NOT_FOUND,
        DomainError::Db(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Db(_) | DomainError::Internal(_) | DomainError::CorruptData { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.is_internal() {
            tracing::error!(error = ?self, "request failed");
        }
        let status = self.status();
        let mut res = (status, Json(self.problem())).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RateLimited { retry_after }
        | ApiError::Domain(DomainError::TooManyLoginAttempts { retry_after }) = &self
        {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let ApiError::ServerStopping = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
        }
        if self.code() == ErrorCode::DatabaseUnavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
        }
        if let ApiError::Overloaded = &self {
            let secs = crate::middleware::admission::RETRY_AFTER.as_secs();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::MalformedJson(format!("the body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("send the body as application/json".into())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge {
                limit: crate::config::MAX_BODY_BYTES,
            },
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::InvalidBody(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<async_graphql::ParseRequestError> for ApiError {
    fn from(e: async_graphql::ParseRequestError) -> Self {
        use async_graphql::ParseRequestError as P;
        match e {
            P::PayloadTooLarge => ApiError::BodyTooLarge {
                limit: crate::config::MAX_BODY_BYTES,
            },
            P::Io(io) if io.to_string().contains("length limit exceeded") => {
                ApiError::BodyTooLarge {
                    limit: crate::config::MAX_BODY_BYTES,
                }
            }
            P::InvalidRequest(json) => {
                ApiError::MalformedJson(format!("the body is not a GraphQL request: {json}"))
            }
            P::UnsupportedBatch => ApiError::BadRequest("send one operation per request".into()),
            other => ApiError::BadRequest(format!("the body is not a GraphQL request: {other}")),
        }
    }
}

impl From<iocloud_db::DbError> for ApiError {
    fn from(e: iocloud_db::DbError) -> Self {
        ApiError::Domain(DomainError::Db(e))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_stored_data_answers_500_without_its_detail() {
        let e = ApiError::Domain(DomainError::corrupt("clusters.status", "paused"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let problem = e.problem();
        assert_eq!((problem.status, problem.code.as_str()), (500, "internal"));
        assert!(!problem.detail.contains("paused"), "{}", problem.detail);
    }
}
