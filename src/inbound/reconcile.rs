//! Reconciliation for kintone, because kintone drops webhooks: at most 60 a minute per domain are
//! sent (the rest are dropped), none for CSV imports or multi-record updates, and a failed one is
//! not retried. Every `poll_interval_seconds` a poller per connection asks for the records waiting
//! in `trigger_status` that tsunagi has not answered yet (the status field still empty) and that
//! changed since the connection's polling started, a page of 100 at a time on `$id`, and takes
//! each exactly as a webhook would: the dedupe key is the record revision, so a record a webhook
//! already brought, or brings late, is sent once.
//!
//! With several instances on one store, one polls each connection at a time: it holds the
//! connection's poll lease (beside the write-back leases), renewed every poll.
//!
//! The form (each field's type, the system fields' codes) is read once and kept for
//! `FORM_KEPT`: an empty status field is asked for by its type, and records are bounded by the
//! app's 更新日時 field. A poll kintone refuses shows in `/readyz` warnings and `/metrics`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound, Utc};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tsunagi_kintone::{Auth, Client, Form};

use super::kintone::{take_record, KintoneResult};
use crate::{
    api::AppState,
    config::{Config, KintoneConfig},
};

/// Records asked for per call.
const PAGE: usize = 100;
/// The longest wait between two polls of an idle app: with the form read again at each, an
/// idle app costs 2 calls in 10 minutes, 288 a day of the 10,000 kintone allows.
const IDLE_WAIT: Duration = Duration::from_secs(10 * 60);

/// The wait before the next poll: `every` after a poll that sent (or a webhook, which wakes the
/// poller), otherwise twice the last wait, up to `IDLE_WAIT` (or `every`, if that is longer).
fn next_wait(last: Duration, sent: usize, every: Duration) -> Duration {
    if sent > 0 {
        every
    } else {
        (last * 2).min(IDLE_WAIT.max(every))
    }
}

/// Per polled kintone connection, what wakes its poller: a webhook says the app is busy, and
/// webhooks past kintone's 60 a minute are dropped, so polls come at `poll_interval_seconds`
/// again.
#[derive(Clone, Default, Debug)]
pub struct PollNudges(Arc<HashMap<String, Arc<Notify>>>);

impl PollNudges {
    /// One for every polled connection of `config`.
    pub fn for_config(config: &Config) -> Self {
        let nudges = config
            .kintone
            .iter()
            .filter(|c| c.polled_status().is_some())
            .map(|c| (format!("kintone:{}", c.name), Arc::new(Notify::new())))
            .collect();
        Self(Arc::new(nudges))
    }

    /// Wake `connection`'s poller (`kintone:sales`), if it has one.
    pub fn nudge(&self, connection: &str) {
        if let Some(nudge) = self.0.get(connection) {
            nudge.notify_one();
        }
    }

    fn of(&self, connection: &str) -> Arc<Notify> {
        self.0.get(connection).cloned().unwrap_or_default()
    }
}

/// How much longer than two poll intervals a poll lease runs, so a slow poll keeps it.
const LEASE_SLACK: Duration = Duration::from_secs(10);

/// When a poll lease taken at `now` ends: after the wait ahead, one interval more for the poll
/// itself, and some slack.
fn lease_end(now: DateTime<Utc>, wait: Duration, every: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(wait + every + LEASE_SLACK).unwrap_or_default()
}

/// The key of a connection's poll lease, beside its write-back lease (`kintone:sales`).
fn poll_lease(label: &str) -> String {
    format!("{label}#poll")
}

/// How long the form is kept before it is read again.
const FORM_KEPT: Duration = Duration::from_secs(10 * 60);

/// One connection's poller: its client, the form it read, and where polling started.
pub struct Poller {
    client: Client,
    form: Option<(Form, Instant)>,
    started: Option<DateTime<Utc>>,
}

impl Poller {
    /// A poller asking kintone through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            form: None,
            started: None,
        }
    }

    /// The app's form, read again once it is older than `FORM_KEPT`.
    async fn form(&mut self, app: u64) -> anyhow::Result<&Form> {
        let stale = self
            .form
            .as_ref()
            .is_none_or(|(_, read)| read.elapsed() >= FORM_KEPT);
        if stale {
            self.form = Some((self.client.form(app).await?, Instant::now()));
        }
        Ok(&self.form.as_ref().expect("just read").0)
    }
}

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
        let label = format!("kintone:{}", connection.name);
        let client = Client::new(&connection.base_url, auth)?
            .with_call_hook(crate::telemetry::kintone_calls(&label));
        let mut poller = Poller::new(client);
        let (state, shutdown) = (state.clone(), shutdown.clone());
        pollers.push(tokio::spawn(async move {
            let connection = &state.config.kintone[index];
            let every = Duration::from_secs(connection.poll_interval_seconds);
            let lease = poll_lease(&label);
            let owner = format!("poller-{}", ulid::Ulid::new());
            let nudged = state.poll_nudges.of(&label);
            let mut wait = every;
            loop {
                let now = state.events.now();
                let held = state.store.writeback_lease(&lease, &owner, lease_end(now, every, every), now).await;
                if !matches!(held, Ok(true)) {
                    if let Err(e) = held {
                        tracing::warn!(connection = %connection.name, error = %e, "poll lease not taken; trying at the next poll");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    continue;
                }
                match poll(&state, connection, &mut poller).await {
                    Ok(sent) => {
                        state.setup_warnings.set(&label, Vec::new());
                        wait = next_wait(wait, sent, every);
                    }
                    Err(e) => {
                        wait = every;
                        tracing::warn!(connection = %connection.name, error = %e, "kintone reconciliation failed; trying at the next poll");
                        metrics::counter!("tsunagi_kintone_poll_failures_total", "connection" => label.clone()).increment(1);
                        let problem = format!("catch-up poll failed, records whose webhook was lost wait: {e}");
                        state.setup_warnings.set(&label, vec![problem]);
                    }
                }
                // Held through the wait ahead, no longer: a poller that dies is replaced soon after.
                let now = state.events.now();
                if let Err(e) = state.store.writeback_lease(&lease, &owner, lease_end(now, wait, every), now).await {
                    tracing::warn!(connection = %connection.name, error = %e, "poll lease not renewed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                    _ = nudged.notified() => {
                        wait = every;
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                }
            }
            // Another instance takes the polling over at once.
            if let Err(e) = state.store.writeback_release(&lease, &owner).await {
                tracing::warn!(connection = %connection.name, error = %e, "poll lease not released");
            }
        }));
    }
    Ok(pollers)
}

/// One look: every unanswered record in the trigger status changed since polling started, taken
/// once. Returns how many were sent now (the others were refused, already taken, or echoes).
pub async fn poll(
    state: &AppState,
    connection: &KintoneConfig,
    poller: &mut Poller,
) -> anyhow::Result<usize> {
    let Some(status) = connection.polled_status() else {
        return Ok(0);
    };
    let label = format!("kintone:{}", connection.name);
    let started = match poller.started {
        Some(started) => started,
        None => {
            let now = state.events.now();
            let started = state.store.poll_start_mark(&label, now).await?;
            *poller.started.insert(started)
        }
    };
    let form = poller.form(connection.app).await?;
    let Some(status_code) = form.code_of("STATUS").map(str::to_string) else {
        tracing::warn!(connection = %connection.name, "the app has no process management; nothing to reconcile");
        return Ok(0);
    };
    let empty = form.empty_condition(&connection.status_field);
    let since = match form.code_of("UPDATED_TIME") {
        Some(code) => format!(" and {code} >= \"{}\"", changed_since(started)),
        None => {
            tracing::warn!(connection = %connection.name, "the form has no 更新日時 (UPDATED_TIME) field; records older than the connection may be sent");
            String::new()
        }
    };
    let mut after = 0;
    let mut sent = 0;
    loop {
        let query = format!(
            "{status_code} in (\"{}\") and {empty}{since} and $id > {after} order by $id asc limit {PAGE}",
            quote(status),
        );
        let records = poller
            .client
            .get_records(connection.app, &query, &[])
            .await?;
        for record in &records {
            let Some(id) = record.id() else { continue };
            after = after.max(id);
            // One send per time the record enters the trigger status: an edit before its last
            // message reached it (or while write-back cannot) is no new trigger.
            let key = format!("{}/{id}", connection.app);
            if state.store.unwritten_message_for(&label, &key).await? {
                continue;
            }
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

/// The 更新日時 bound for records changed since `started`: its minute, as kintone keeps times
/// to the minute, so a record changed in the minute polling started is not missed.
fn changed_since(started: DateTime<Utc>) -> String {
    let minute = started
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap_or(started);
    minute.format("%Y-%m-%dT%H:%M:%SZ").to_string()
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

    #[test]
    fn an_idle_app_costs_at_most_300_calls_a_day_and_a_busy_one_is_polled_at_its_interval() {
        let every = Duration::from_secs(60);
        let (mut wait, mut elapsed, mut calls) = (every, Duration::ZERO, 0);
        let mut form_read = None::<Duration>;
        let day = Duration::from_secs(86_400);
        while elapsed < day {
            // A poll: its page, and the form when the kept one is 10 minutes old.
            calls += 1;
            if form_read.is_none_or(|read| elapsed - read >= FORM_KEPT) {
                calls += 1;
                form_read = Some(elapsed);
            }
            wait = next_wait(wait, 0, every);
            elapsed += wait;
        }
        assert!(calls <= 300, "{calls} calls a day");
        assert_eq!(next_wait(IDLE_WAIT, 3, every), every, "a poll that sent");
        let hourly = Duration::from_secs(3600);
        assert_eq!(
            next_wait(hourly, 0, hourly),
            hourly,
            "never beyond a longer interval"
        );
    }

    #[test]
    fn records_are_bounded_by_the_minute_polling_started() {
        let started = DateTime::parse_from_rfc3339("2026-12-08T00:45:37.120Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(changed_since(started), "2026-12-08T00:45:00Z");
    }
}
