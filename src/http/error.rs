//! One place where errors become HTTP statuses and messages a person can act on.
//! Internal details (database errors, WebRTC internals) are logged, never sent.

use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::catalog::CatalogError;
use crate::recording::RecordingError;
use crate::relay::RelayError;

/// Everything an HTTP handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad SDP, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Logged in, but the account's scope does not cover this center, institute or station.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins, or no password check free; retry after the seconds given.
    #[error("{0}")]
    TooManyRequests(String, u64),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state forbids it (a publisher is already live).
    #[error("{0}")]
    Conflict(String),
    /// The offer has no codec in common with what the resource sends.
    #[error("{0}")]
    NotAcceptable(String),
    /// The request body is larger than the route takes.
    #[error("{0}")]
    TooLarge(String),
    /// Wrong Content-Type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The server cannot take more now.
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After` (seconds): busy for a moment, not broken.
    #[error("{0}")]
    Busy(String, u64),
    /// The server failed; details are logged, not sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Busy(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// `Retry-After` when a channel or a client address has as many viewers still connecting
/// as it may: long enough for those to connect, short enough that a resident barely waits.
const CONNECTING_RETRY_SECS: u64 = 2;

impl From<RelayError> for ApiError {
    fn from(err: RelayError) -> Self {
        match err {
            RelayError::BadOffer(_) | RelayError::UnknownQuality { .. } => {
                ApiError::BadRequest(err.to_string())
            }
            RelayError::NoCommonCodec { .. } => ApiError::NotAcceptable(err.to_string()),
            RelayError::Busy(_) => ApiError::Conflict(err.to_string()),
            RelayError::NotLive(_) | RelayError::UnknownResource(_) => {
                ApiError::NotFound(err.to_string())
            }
            RelayError::Full(..) | RelayError::Closed => ApiError::Unavailable(err.to_string()),
            // Places held by viewers still connecting come back within a second (they
            // connect) or at the connect timeout (they never do).
            RelayError::Connecting(_) => ApiError::Busy(err.to_string(), CONNECTING_RETRY_SECS),
            RelayError::ClientConnecting(_) => {
                ApiError::TooManyRequests(err.to_string(), CONNECTING_RETRY_SECS)
            }
            RelayError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<RecordingError> for ApiError {
    fn from(err: RecordingError) -> Self {
        match err {
            RecordingError::NotFound(why) => ApiError::NotFound(why),
            RecordingError::Media(why) => ApiError::Internal(why),
            RecordingError::Catalog(err) => err.into(),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::UnknownChannel(_) | CatalogError::UnknownStation(_) => {
                ApiError::NotFound(err.to_string())
            }
            CatalogError::NotFound(what) => ApiError::NotFound(what),
            CatalogError::WrongKey(_) => ApiError::Unauthorized(
                "wrong stream key for this channel (send Authorization: Bearer <stream key>)"
                    .into(),
            ),
            CatalogError::Invalid { .. } => ApiError::BadRequest(err.to_string()),
            CatalogError::Conflict(reason) => ApiError::Conflict(reason),
            CatalogError::Busy(reason) => {
                ApiError::TooManyRequests(format!("{reason}; try again in 1 s"), 1)
            }
            CatalogError::Database(_) | CatalogError::Migrate(_) | CatalogError::Io(_) => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let status = self.status();
        let mut response = text(status, format!("{self}\n"));
        if let ApiError::TooManyRequests(_, seconds) | ApiError::Busy(_, seconds) = &self
            && let Ok(v) = warp::http::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}

/// A plain-text response with CORS headers already in place by the outer filter.
pub fn text(status: StatusCode, body: String) -> Response {
    let mut response = body.into_response();
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Turns warp's own rejections (no route, body too large, ...) into clear answers.
pub async fn recover(rejection: Rejection) -> Result<Response, std::convert::Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large (SDP offers are limited to 64 KiB)".to_string(),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required".to_string(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else if let Some(err) = rejection.find::<warp::reject::InvalidQuery>() {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {err}"),
        )
    } else if let Some(err) = rejection.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, format!("{err}"))
    } else if let Some(err) = rejection.find::<warp::body::BodyDeserializeError>() {
        (StatusCode::BAD_REQUEST, format!("invalid JSON body: {err}"))
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "bad request".to_string())
    };
    Ok(text(status, format!("{message}\n")))
}
