//! Error responses of the simulated REST API: the JSON `{"code", "message"}` body with an
//! IBM message id, and the HTML page a servlet container sends when the application fails.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::bodies::{self, INVALID_AUTH_ID, INVALID_PARAMETER, INVALID_REQUEST};
use crate::sessions::AuthFailure;

/// Error response of the REST API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// JSON error body with a CTGKM message id.
    Message {
        status: StatusCode,
        id: &'static str,
        text: String,
    },
    /// HTML error page without a message id.
    Html { status: StatusCode, reason: String },
}

impl ApiError {
    #[must_use]
    pub fn message(status: StatusCode, id: &'static str, text: &str) -> ApiError {
        ApiError::Message {
            status,
            id,
            text: text.to_owned(),
        }
    }

    /// Builds the 400 CTGKM0630E error for a missing or invalid body field.
    #[must_use]
    pub fn invalid_parameter(field: &str) -> ApiError {
        let text = format!("The parameter {field} is missing or invalid.");
        ApiError::message(StatusCode::BAD_REQUEST, INVALID_PARAMETER, &text)
    }

    /// Builds the 500 servlet page for a body that is empty or not a JSON object.
    #[must_use]
    pub fn unreadable_body() -> ApiError {
        ApiError::Html {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "the request body is empty or not a JSON object".to_owned(),
        }
    }

    /// Maps a rejected `Authorization` header to CTGKM6002E (400) or CTGKM6004E (401).
    #[must_use]
    pub fn from_auth(failure: AuthFailure) -> ApiError {
        match failure {
            AuthFailure::MissingOrMalformed => ApiError::message(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Invalid user authentication ID or invalid request format.",
            ),
            AuthFailure::UnknownId | AuthFailure::Expired => ApiError::message(
                StatusCode::UNAUTHORIZED,
                INVALID_AUTH_ID,
                "Invalid user authentication ID. Log in again.",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Message { status, id, text } => {
                (status, Json(bodies::error_body(id, &text))).into_response()
            }
            ApiError::Html { status, reason } => html_response(status, &reason),
        }
    }
}

/// Builds an HTML error page response.
#[must_use]
pub fn html_response(status: StatusCode, reason: &str) -> Response {
    let page = bodies::html_error_page(status.as_u16(), reason);
    let content_type = [(header::CONTENT_TYPE, "text/html; charset=UTF-8")];
    (status, content_type, page).into_response()
}
