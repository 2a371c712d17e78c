//! Middleware around every REST API request: records it in the request log, applies the
//! active faults, and sets `Content-Language` from the request's `Accept-Language`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::html_response;
use crate::bodies::{self, SIMULATED_ERROR_ID};
use crate::faults::{ErrorFormat, FaultAction, plan_for};
use crate::model::Endpoint;
use crate::request_log::{RequestNotes, RequestRecord};
use crate::sessions::parse_authorization;
use crate::sim::Sim;

/// Response extension that makes the HTTPS listener close the connection without
/// sending the response.
#[derive(Clone, Copy, Debug)]
pub struct AbortConnection;

/// Logs the request, applies the fault plan, then responds normally or with the fault.
pub async fn observe(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let endpoint = sim.classify(request.uri().path());
    let language = content_language(request.headers());
    let seq = begin_record(&sim, &request, endpoint);

    let plan = plan_for(&sim.lock().faults, endpoint);
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }

    let mut response = match plan.response {
        None => next.run(request).await,
        Some(action) => {
            let kind = action.kind();
            sim.lock().requests.update(seq, |record| {
                record.fault = Some(kind.to_owned());
            });
            if let FaultAction::Silent { hold_seconds } = action {
                tracing::debug!(seq, hold_seconds, "silent fault: no response will be sent");
                tokio::time::sleep(Duration::from_secs(hold_seconds)).await;
                return abort_connection();
            }
            fault_response(&action)
        }
    };

    let notes = response.extensions_mut().remove::<RequestNotes>();
    response
        .headers_mut()
        .insert(header::CONTENT_LANGUAGE, language);
    let status = response.status().as_u16();
    sim.lock().requests.finish(seq, status, notes);
    tracing::debug!(seq, status, ?endpoint, "REST response sent");
    response
}

fn begin_record(sim: &Sim, request: &Request, endpoint: Option<Endpoint>) -> u64 {
    let headers = request.headers();
    let auth_id = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_authorization);
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let mut state = sim.lock();
    let record = RequestRecord {
        elapsed_ms: sim.elapsed_ms(),
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        endpoint,
        session: auth_id.and_then(|id| state.sessions.number_of(id)),
        authorization_present: headers.contains_key(header::AUTHORIZATION),
        accept_language,
        ..RequestRecord::default()
    };
    state.requests.begin(record)
}

/// Builds the response of a fault that replaces the normal response (every kind but `slow`
/// and `silent`).
fn fault_response(action: &FaultAction) -> Response {
    match action {
        FaultAction::Slow { .. } | FaultAction::Silent { .. } => {
            unreachable!("slow and silent faults never replace the response body")
        }
        FaultAction::Redirect { location, status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::FOUND);
            match HeaderValue::from_str(location) {
                Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
                Err(_) => status.into_response(),
            }
        }
        FaultAction::Garbage { body } => json_typed(StatusCode::OK, body.clone()),
        FaultAction::Oversized { bytes } => {
            json_typed(StatusCode::OK, bodies::oversized_body(*bytes))
        }
        FaultAction::HttpError {
            status,
            format,
            code,
        } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match format {
                ErrorFormat::Html => {
                    let reason = status.canonical_reason().unwrap_or("simulated error");
                    html_response(status, reason)
                }
                ErrorFormat::Json => {
                    let id = code.as_deref().unwrap_or(SIMULATED_ERROR_ID);
                    let body = bodies::error_body(id, "Simulated server error.");
                    (status, Json(body)).into_response()
                }
            }
        }
    }
}

/// Builds a response labelled `application/json` whatever the body is, as a broken server
/// would send it.
fn json_typed(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn abort_connection() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(AbortConnection);
    response
}

/// Picks the first language tag of `Accept-Language`, or `en` without one.
fn content_language(headers: &HeaderMap) -> HeaderValue {
    let tag = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .and_then(|first| first.split(';').next())
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && *tag != "*");
    tag.and_then(|tag| HeaderValue::from_str(tag).ok())
        .unwrap_or_else(|| HeaderValue::from_static("en"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_with_language(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(value).expect("valid header");
        headers.insert(header::ACCEPT_LANGUAGE, value);
        headers
    }

    #[test]
    fn content_language_takes_first_tag() {
        let cases = [
            ("en", "en"),
            ("de-DE,de;q=0.9,en;q=0.8", "de-DE"),
            ("fr;q=0.5", "fr"),
            ("*", "en"),
            ("", "en"),
        ];
        for (accept, expected) in cases {
            let headers = headers_with_language(accept);
            assert_eq!(
                content_language(&headers),
                expected,
                "Accept-Language {accept:?}"
            );
        }
        assert_eq!(content_language(&HeaderMap::new()), "en");
    }
}
