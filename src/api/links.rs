//! `GET /s/{code}`: a short link. No authentication: the handset's browser follows it. Where it
//! goes, and whether it is a click, is `links::follow`'s to say.

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};

use super::AppState;
use crate::links::{follow, is_code, Follow, Gone};

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
    if !is_code(&code) {
        return gone(Gone::Unknown);
    }
    let target = match state.links.resolve(&code).await {
        Ok(target) => target,
        Err(e) => return super::problem::ApiError::from(e).into_response(),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let now = state.admission.clock.now();
    let (url, click) = match follow(&code, target, now, method == Method::HEAD, user_agent) {
        Follow::Gone(why) => return gone(why),
        Follow::To { url, click } => (url, click),
    };
    let Ok(location) = HeaderValue::from_str(&url) else {
        return gone(Gone::Unknown);
    };
    let outcome = if click.is_some() { "click" } else { "preview" };
    metrics::counter!("tsunagi_link_redirects_total", "outcome" => outcome).increment(1);
    if let Some(click) = click {
        state.clicks.record(click).await;
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
fn gone(why: Gone) -> Response {
    metrics::counter!("tsunagi_link_redirects_total", "outcome" => why.as_str()).increment(1);
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
