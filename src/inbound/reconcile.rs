//! Reconciliation for kintone, because kintone drops webhooks: at most 60 a minute per domain are
//! sent (the rest are dropped), none for CSV imports or multi-record updates, and a failed one is
//! not retried. Every `poll_interval_seconds` a poller per connection asks for the records waiting
//! in `trigger_status` that tsunagi has not answered yet (the status field still empty), a page
//! of 100 at a time on `$id`, and takes each exactly as a webhook would: the dedupe key is the
//! record revision, so a record a webhook already brought, or brings late, is sent once.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_kintone::{Auth, Client};

use super::kintone::{take_record, KintoneResult};
use crate::{api::AppState, config::KintoneConfig};

/// Records asked for per call.
const PAGE: usize = 100;

/// Start a poller for every kintone connection that sends on a status, until `shutdown`.
pub fn start(
    state: &AppState,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut pollers = Vec::new();
    for (index, connection) in state.config.kintone.iter().enumerate() {
        if connection.polled_status().is_none() {
            continue;
        }
        let auth = Auth::api_token(connection.api_token.expose().to_string());
        let client = Client::new(&connection.base_url, auth)?;
        let (state, shutdown) = (state.clone(), shutdown.clone());
        pollers.push(tokio::spawn(async move {
            let connection = &state.config.kintone[index];
            let every = Duration::from_secs(connection.poll_interval_seconds);
            loop {
                if let Err(e) = poll(&state, connection, &client).await {
                    tracing::warn!(connection = %connection.name, error = %e, "kintone reconciliation failed; trying at the next poll");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }));
    }
    Ok(pollers)
}

/// One look: every unanswered record in the trigger status, taken once. Returns how many were
/// sent now (the others were refused, already taken, or echoes).
pub async fn poll(
    state: &AppState,
    connection: &KintoneConfig,
    client: &Client,
) -> anyhow::Result<usize> {
    let Some(status) = connection.polled_status() else {
        return Ok(0);
    };
    let Some(status_code) = client.status_field_code(connection.app).await? else {
        tracing::warn!(connection = %connection.name, "the app has no process management; nothing to reconcile");
        return Ok(0);
    };
    let mut after = 0;
    let mut sent = 0;
    loop {
        let query = format!(
            "{status_code} in (\"{}\") and {} = \"\" and $id > {after} order by $id asc limit {PAGE}",
            quote(status),
            connection.status_field
        );
        let records = client.get_records(connection.app, &query, &[]).await?;
        for record in &records {
            let Some(id) = record.id() else { continue };
            after = after.max(id);
            let answer = take_record(state, connection, record, id, record.revision(), "poll")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if answer.result == KintoneResult::Queued {
                sent += 1;
            }
        }
        if records.len() < PAGE {
            break;
        }
    }
    if sent > 0 {
        tracing::info!(connection = %connection.name, sent, "records no webhook brought were sent");
    }
    Ok(sent)
}

/// `text` inside a kintone query's double quotes.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_backslashes_are_escaped_in_a_query_string() {
        assert_eq!(quote(r#"送信 "待ち" \ 1"#), r#"送信 \"待ち\" \\ 1"#);
    }
}
