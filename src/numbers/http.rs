//! The HTTP hook for an external cancellation-history service.
//!
//! tsunagi sends `POST <url>` with `{"number": "+819012345678", "since": "2026-01-31"}` (and
//! `Authorization: Bearer <token>` when one is configured) and expects
//! `200 {"may_have_changed": true|false, "reason": "…"?}`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{HistoryError, NumberHistory};
use crate::{config::Secret, domain::phone::PhoneNumber};

/// Asks an external service.
pub struct HttpHistory {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

/// What tsunagi asks the lookup service.
#[derive(Serialize, JsonSchema)]
pub struct HistoryQuery<'a> {
    /// The number in E.164 form.
    pub number: &'a str,
    /// The date the CRM last confirmed the number (YYYY-MM-DD).
    pub since: NaiveDate,
}

/// What the lookup service answers.
#[derive(Deserialize, JsonSchema)]
pub struct HistoryAnswer {
    /// Whether the number may have been cancelled or reassigned since `since`.
    pub may_have_changed: bool,
    /// Why, shown in the refusal.
    pub reason: Option<String>,
}

/// JSON Schemas of the hook's request and answer, committed as `schemas/number_history_hook.json`.
pub fn hook_schema() -> serde_json::Value {
    serde_json::json!({
        "request": schemars::schema_for!(HistoryQuery<'static>),
        "response": schemars::schema_for!(HistoryAnswer),
    })
}

impl HttpHistory {
    /// A hook at `url`, waiting at most `timeout`.
    pub fn new(url: &str, token: Option<Secret>, timeout: Duration) -> Result<Self, HistoryError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| HistoryError(e.to_string()))?;
        Ok(Self {
            client,
            url: url.to_string(),
            token,
        })
    }
}

#[async_trait]
impl NumberHistory for HttpHistory {
    async fn may_have_changed(
        &self,
        number: &PhoneNumber,
        since: NaiveDate,
    ) -> Result<Option<String>, HistoryError> {
        let mut request = self.client.post(&self.url).json(&HistoryQuery {
            number: number.e164(),
            since,
        });
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        // reqwest's errors name the URL, never the body, so no number reaches the log.
        let response = request
            .send()
            .await
            .map_err(|e| HistoryError(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(HistoryError(format!(
                "the service answered {}",
                response.status()
            )));
        }
        let answer: HistoryAnswer = response
            .json()
            .await
            .map_err(|e| HistoryError(format!("unreadable answer: {}", e.without_url())))?;
        Ok(answer.may_have_changed.then(|| {
            answer.reason.unwrap_or_else(|| {
                format!("the number may have been cancelled or reassigned since {since}")
            })
        }))
    }
}
