//! `GET /s/{code}`: a short link. No authentication: the handset's browser follows it.

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};

use super::AppState;
use crate::{links::is_preview, store::NewClick};

/// Longest code looked up: longer ones were never made.
const MAX_CODE_CHARS: usize = 64;
/// Longest `User-Agent` kept with a click.
const MAX_USER_AGENT_CHARS: usize = 256;

const GONE_PAGE: &str = "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>リンクが見つかりません</title></head><body><p>このリンクは無効か、有効期限が切れています。</p><p>This link is not valid or has expired.</p></body></html>";

/// Follow a short link: 302 to the URL it stands for, counting a click unless the fetch is a
/// link preview or a scanner.
#[utoipa::path(
    get, path = "/s/{code}", operation_id = "followShortLink", tag = "links",
    params(("code" = String, Path, description = "The short link's code", max_length = 64, pattern = "^[A-Za-z0-9]+$")),
    responses(
        (status = 302, description = "To the original URL", headers(("Location" = String, description = "The original URL"))),
        (status = 404, description = "Unknown or expired code: a page saying so", body = String, content_type = "text/html"),
    )
)]
pub async fn redirect(
    State(state): State<AppState>,
    method: Method,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    if code.is_empty()
        || code.len() > MAX_CODE_CHARS
        || !code.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return gone("unknown");
    }
    let target = match state.links.resolve(&code).await {
        Ok(Some(target)) => target,
        Ok(None) => return gone("unknown"),
        Err(e) => return super::problem::ApiError::from(e).into_response(),
    };
    let now = state.admission.clock.now();
    if target.expires_at.is_some_and(|at| at <= now) {
        return gone("expired");
    }
    let Ok(location) = HeaderValue::from_str(&target.url) else {
        return gone("unknown");
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    if is_preview(method == Method::HEAD, user_agent) {
        metrics::counter!("tsunagi_link_redirects_total", "outcome" => "preview").increment(1);
    } else {
        metrics::counter!("tsunagi_link_redirects_total", "outcome" => "click").increment(1);
        state
            .clicks
            .record(NewClick {
                code,
                message_id: target.message_id,
                at: now,
                user_agent: user_agent.map(|a| a.chars().take(MAX_USER_AGENT_CHARS).collect()),
            })
            .await;
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}

/// The 404 page for a code that is unknown or expired.
fn gone(outcome: &'static str) -> Response {
    metrics::counter!("tsunagi_link_redirects_total", "outcome" => outcome).increment(1);
    (
        StatusCode::NOT_FOUND,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        GONE_PAGE,
    )
        .into_response()
}
