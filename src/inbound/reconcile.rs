//! Reconciliation for kintone, because kintone drops webhooks: at most 60 a minute per domain are
//! sent (the rest are dropped), none for CSV imports or multi-record updates, and a failed one is
//! not retried. Every `poll_interval_seconds` a poller per connection asks for the records
//! tsunagi has not answered yet (the status field still empty, or the `trigger_field` check box
//! still checked): those in `trigger_status` (or, without a status trigger, with the check box
//! checked) that changed since the connection's polling started, and, where ADD_RECORD sends,
//! those added after the newest record seen (an `$id` mark that starts at the newest record
//! when polling starts). Pages of 100 on `$id`; each record goes through the same rules and the
//! same intake as a webhook's: the dedupe key is the record revision, so a record a webhook
//! already brought, or brings late, is sent once.
//!
//! With several instances on one store, one polls each connection at a time: it holds the
//! connection's poll lease (beside the write-back leases), renewed every poll.
//!
//! The form (each field's type, the system fields' codes) is read once and kept for
//! `FORM_KEPT`: an empty status field is asked for by its type, and records are bounded by the
//! app's 更新日時 field. A poll kintone refuses shows in `/readyz` warnings and `/metrics`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, DurationRound, Utc};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tsunagi_kintone::{form::quote, Client, Form};

use super::kintone_intake::{KintoneIntake, KintoneResult};
use crate::{
    config::{Config, KintoneConfig},
    mapping::kintone_rules::{already_answered, not_sending, record_key, Arrival, Trigger},
    providers::Events,
    store::Store,
    writeback::{connections::kintone_client, warnings::SetupWarnings},
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
/// Beside them, one that tells every poller the service clock moved (a test moving time), so
/// waits measured on that clock end when it says.
#[derive(Clone, Default, Debug)]
pub struct PollNudges {
    by_connection: Arc<HashMap<String, Arc<Notify>>>,
    clock_moved: Arc<Notify>,
}

impl PollNudges {
    /// One for every polled connection of `config`.
    pub fn for_config(config: &Config) -> Self {
        let nudges = config
            .kintone
            .iter()
            .filter(|c| c.polls())
            .map(|c| (format!("kintone:{}", c.name), Arc::new(Notify::new())))
            .collect();
        Self {
            by_connection: Arc::new(nudges),
            clock_moved: Arc::default(),
        }
    }

    /// Wake `connection`'s poller (`kintone:sales`), if it has one.
    pub fn nudge(&self, connection: &str) {
        if let Some(nudge) = self.by_connection.get(connection) {
            nudge.notify_one();
        }
    }

    /// Tell every poller the service clock moved.
    pub fn clock_moved(&self) {
        self.clock_moved.notify_waiters();
    }

    fn of(&self, connection: &str) -> Arc<Notify> {
        self.by_connection
            .get(connection)
            .cloned()
            .unwrap_or_default()
    }
}

/// What ended a poller's wait.
#[derive(Debug, PartialEq, Eq)]
enum Woken {
    /// The wait is over, on the service clock.
    Due,
    /// A webhook came: the app is busy.
    Nudged,
    /// The service stops.
    Stopping,
}

/// Wait `wait` on the service clock (a webhook nudge ends it early), or until `shutdown`.
async fn wait_on_clock(
    parts: &PollerParts,
    wait: Duration,
    nudged: &Notify,
    shutdown: &CancellationToken,
) -> Woken {
    let until = parts.events.now() + chrono::Duration::from_std(wait).unwrap_or_default();
    loop {
        let left = (until - parts.events.now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return Woken::Due;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Woken::Stopping,
            _ = nudged.notified() => return Woken::Nudged,
            _ = parts.nudges.clock_moved.notified() => {}
            _ = tokio::time::sleep(left) => {}
        }
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
    form: Option<(Form, DateTime<Utc>)>,
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

    /// The app's form, read again once it is older than `FORM_KEPT` at `now`.
    async fn form(&mut self, app: u64, now: DateTime<Utc>) -> anyhow::Result<&Form> {
        let kept = chrono::Duration::from_std(FORM_KEPT).unwrap_or_default();
        let stale = self
            .form
            .as_ref()
            .is_none_or(|(_, read)| now - *read >= kept);
        if stale {
            self.form = Some((self.client.form(app).await?, now));
        }
        Ok(&self.form.as_ref().expect("just read").0)
    }
}

/// What the pollers work with: the intake records go to, the store (leases, marks), where
/// their failures show, and what wakes them. No HTTP state.
#[derive(Clone)]
pub struct PollerParts {
    /// Where found records are taken in, as webhooks' are.
    pub intake: KintoneIntake,
    /// Leases, marks and unwritten messages.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub events: Events,
    /// Where a refused poll shows (`/readyz`).
    pub warnings: SetupWarnings,
    /// What wakes a poller when its webhooks come.
    pub nudges: PollNudges,
}

/// Start a poller for every kintone connection that polls, until `shutdown`.
pub fn start(
    connections: &[KintoneConfig],
    parts: &PollerParts,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut pollers = Vec::new();
    for connection in connections.iter().filter(|c| c.polls()) {
        let label = format!("kintone:{}", connection.name);
        let client =
            kintone_client(connection)?.with_call_hook(crate::telemetry::kintone_calls(&label));
        let poller = Poller::new(client);
        let (parts, shutdown) = (parts.clone(), shutdown.clone());
        let connection = connection.clone();
        pollers.push(tokio::spawn(run(connection, poller, parts, shutdown)));
    }
    Ok(pollers)
}

/// Poll one connection while this instance holds its poll lease, until `shutdown`.
async fn run(
    connection: KintoneConfig,
    mut poller: Poller,
    parts: PollerParts,
    shutdown: CancellationToken,
) {
    let label = format!("kintone:{}", connection.name);
    let every = Duration::from_secs(connection.poll_interval_seconds);
    let lease = poll_lease(&label);
    let owner = format!("poller-{}", ulid::Ulid::new());
    let nudged = parts.nudges.of(&label);
    let mut wait = every;
    loop {
        let now = parts.events.now();
        let held = parts
            .store
            .writeback_lease(&lease, &owner, lease_end(now, every, every), now)
            .await;
        if !matches!(held, Ok(true)) {
            if let Err(e) = held {
                tracing::warn!(connection = %connection.name, error = %e, "poll lease not taken; trying at the next poll");
            }
            if wait_on_clock(&parts, every, &Notify::new(), &shutdown).await == Woken::Stopping {
                return;
            }
            continue;
        }
        match poll(&parts, &connection, &mut poller).await {
            Ok(sent) => {
                parts.warnings.set(&lease, Vec::new());
                wait = next_wait(wait, sent, every);
            }
            Err(e) => {
                wait = every;
                tracing::warn!(connection = %connection.name, error = %e, "kintone reconciliation failed; trying at the next poll");
                metrics::counter!("tsunagi_kintone_poll_failures_total", "connection" => label.clone()).increment(1);
                let problem =
                    format!("catch-up poll failed, records whose webhook was lost wait: {e}");
                parts.warnings.set(&lease, vec![problem]);
            }
        }
        // Held through the wait ahead, no longer: a poller that dies is replaced soon after.
        let now = parts.events.now();
        if let Err(e) = parts
            .store
            .writeback_lease(&lease, &owner, lease_end(now, wait, every), now)
            .await
        {
            tracing::warn!(connection = %connection.name, error = %e, "poll lease not renewed");
        }
        match wait_on_clock(&parts, wait, &nudged, &shutdown).await {
            Woken::Stopping => break,
            Woken::Due => {}
            // Busy: poll an interval after the webhook, and at the interval from then on.
            Woken::Nudged => {
                wait = every;
                if wait_on_clock(&parts, every, &Notify::new(), &shutdown).await == Woken::Stopping
                {
                    break;
                }
            }
        }
    }
    // Another instance takes the polling over at once.
    if let Err(e) = parts.store.writeback_release(&lease, &owner).await {
        tracing::warn!(connection = %connection.name, error = %e, "poll lease not released");
    }
}

/// One look for every way the connection sends, in one query: records in the trigger status
/// (or with the trigger check box checked) changed since polling started, or added after the
/// newest one seen; each unanswered and taken once. Returns how many were sent now (the others
/// were refused, already taken, or echoes).
pub async fn poll(
    parts: &PollerParts,
    connection: &KintoneConfig,
    poller: &mut Poller,
) -> anyhow::Result<usize> {
    let label = format!("kintone:{}", connection.name);
    let started = match poller.started {
        Some(started) => started,
        None => {
            let now = parts.events.now();
            let started = parts.store.poll_start_mark(&label, now).await?;
            *poller.started.insert(started)
        }
    };
    let form = poller
        .form(connection.app, parts.events.now())
        .await?
        .clone();
    let added_after = match connection.triggers_on("ADD_RECORD") {
        true => Some(match parts.store.poll_id_mark(&label).await? {
            Some(mark) => mark,
            // Records added before the connection polled are not sent: start at the newest.
            None => newest_id(poller, connection.app).await?,
        }),
        false => None,
    };
    let Some(look) = Look::new(connection, &form, started, added_after)? else {
        return Ok(0);
    };
    let (sent, last) = take_all(parts, connection, poller, &look).await?;
    if let Some(mark) = added_after {
        let now = parts.events.now();
        parts
            .store
            .raise_poll_id_mark(&label, last.max(mark), now)
            .await?;
    }
    if sent > 0 {
        tracing::info!(connection = %connection.name, sent, "records no webhook brought were sent");
    }
    Ok(sent)
}

/// What one poll asks kintone for.
#[derive(Debug, PartialEq, Eq)]
struct Look {
    /// The query's condition, without the paging.
    condition: String,
    /// Whether a record must be in the trigger status, unless it is a new one.
    status_trigger: bool,
    /// Records with a higher id are new ones (where ADD_RECORD sends).
    added_after: Option<u64>,
}

impl Look {
    /// The look for `connection` with the app's `form`, polling since `started`; `None` when
    /// there is nothing to look for.
    fn new(
        connection: &KintoneConfig,
        form: &Form,
        started: DateTime<Utc>,
        added_after: Option<u64>,
    ) -> anyhow::Result<Option<Self>> {
        let unanswered = match &connection.trigger_field {
            // The check box is the mark: tsunagi clears it when it answers.
            Some(field) => form.checked_condition(field).ok_or_else(|| {
                anyhow::anyhow!(
                    "the trigger_field {field} is no check box with options in the app's form"
                )
            })?,
            None => form.empty_condition(&connection.status_field),
        };
        let since = match form.code_of("UPDATED_TIME") {
            Some(code) => Some(format!("{code} >= \"{}\"", changed_since(started))),
            None => {
                tracing::warn!(connection = %connection.name, "the form has no 更新日時 (UPDATED_TIME) field; records older than the connection may be sent");
                None
            }
        };
        let mut branches: Vec<Option<String>> = Vec::new();
        let mut status_trigger = false;
        match (connection.polled_status(), form.code_of("STATUS")) {
            (Some(status), Some(code)) => {
                let status = format!("{code} in (\"{}\")", quote(status));
                branches.push(Some(match &since {
                    Some(since) => format!("{status} and {since}"),
                    None => status,
                }));
                status_trigger = true;
            }
            (Some(_), None) => {
                tracing::warn!(connection = %connection.name, "the app has no process management; no status to reconcile");
            }
            (None, _) if connection.trigger_field.is_some() => branches.push(since),
            (None, _) => {}
        }
        if let Some(mark) = added_after {
            branches.push(Some(format!("$id > {mark}")));
        }
        if branches.is_empty() {
            return Ok(None);
        }
        // A branch without a bound (no 更新日時 in the form) takes every record.
        let bounded: Option<Vec<String>> = branches.into_iter().collect();
        let condition = match bounded {
            Some(branches) if branches.len() == 1 => format!("{unanswered} and {}", branches[0]),
            Some(branches) => format!("{unanswered} and ({})", branches.join(" or ")),
            None => unanswered,
        };
        Ok(Some(Self {
            condition,
            status_trigger,
            added_after,
        }))
    }

    /// Whether record `id` must be in the trigger status to send.
    fn needs_status(&self, id: u64) -> bool {
        self.status_trigger && self.added_after.is_none_or(|mark| id <= mark)
    }
}

/// The id of the app's newest record, or 0 when it has none.
async fn newest_id(poller: &Poller, app: u64) -> anyhow::Result<u64> {
    let newest = poller
        .client
        .get_records(app, "order by $id desc limit 1", &["$id"])
        .await?;
    Ok(newest.first().and_then(|r| r.id()).unwrap_or(0))
}

/// Take every record the look finds, a page at a time; returns how many were sent and the
/// highest id seen (0 if none).
async fn take_all(
    parts: &PollerParts,
    connection: &KintoneConfig,
    poller: &Poller,
    look: &Look,
) -> anyhow::Result<(usize, u64)> {
    let label = format!("kintone:{}", connection.name);
    let (mut sent, mut after) = (0, 0);
    loop {
        let query = format!(
            "{} and $id > {after} order by $id asc limit {PAGE}",
            look.condition
        );
        let records = poller
            .client
            .get_records(connection.app, &query, &[])
            .await?;
        for record in &records {
            let Some(id) = record.id() else { continue };
            after = after.max(id);
            let arrival = Arrival::Poll {
                status_trigger: look.needs_status(id),
            };
            if not_sending(Trigger::of(connection), arrival, Some(record)).is_some() {
                continue;
            }
            // One send per time the record enters the trigger status: an edit before its last
            // message reached it (or while write-back cannot) is no new trigger.
            let unwritten = parts
                .store
                .unwritten_message_for(&label, &record_key(connection.app, id))
                .await?;
            if already_answered(false, unwritten).is_some() {
                continue;
            }
            let answer = parts
                .intake
                .take(connection, record, id, record.revision(), "poll")
                .await?;
            if answer.result == KintoneResult::Queued {
                sent += 1;
            }
        }
        if records.len() < PAGE {
            return Ok((sent, after));
        }
    }
}

/// The 更新日時 bound for records changed since `started`: its minute, as kintone keeps times
/// to the minute, so a record changed in the minute polling started is not missed.
fn changed_since(started: DateTime<Utc>) -> String {
    let minute = started
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap_or(started);
    minute.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn connection(extra: &str) -> KintoneConfig {
        let text = format!(
            "[[kintone]]\nname = \"sales\"\nbase_url = \"https://example.cybozu.com\"\napp = 12\n\
             api_token = \"t\"\ninbound_token = \"0123456789abcdef\"\nphone_field = \"電話番号\"\n\
             template = \"x\"\nstatus_field = \"sms_status\"\nstatus_detail_field = \"d\"\n\
             reply_field = \"r\"\n{extra}"
        );
        Config::parse(&text, |_| None).unwrap().kintone.remove(0)
    }

    fn form() -> Form {
        serde_json::from_value(serde_json::json!({"properties": {
            "ステータス": {"type": "STATUS", "enabled": true},
            "更新日時": {"type": "UPDATED_TIME"},
            "sms_status": {"type": "DROP_DOWN", "options": {"delivered": {"index": "0"}}},
            "SMS送信": {"type": "CHECK_BOX", "options": {"送信する": {"index": "0"}}}
        }}))
        .unwrap()
    }

    fn started() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-08T00:45:37Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn one_query_asks_for_the_trigger_status_and_for_new_records_together() {
        let c = connection(
            "trigger_events = [\"ADD_RECORD\", \"UPDATE_STATUS\"]\ntrigger_status = \"SMS送信\"\n",
        );
        let look = Look::new(&c, &form(), started(), Some(300))
            .unwrap()
            .unwrap();
        assert_eq!(
            look.condition,
            "sms_status in (\"\") and (ステータス in (\"SMS送信\") and 更新日時 >= \"2026-12-08T00:45:00Z\" or $id > 300)"
        );
        assert!(
            look.needs_status(300) && !look.needs_status(301),
            "a new record needs no status"
        );
    }

    #[test]
    fn a_trigger_check_box_is_asked_for_instead_of_an_empty_status() {
        let c = connection("trigger_events = [\"UPDATE_RECORD\"]\ntrigger_field = \"SMS送信\"\n");
        let look = Look::new(&c, &form(), started(), None).unwrap().unwrap();
        assert_eq!(
            look.condition,
            "SMS送信 in (\"送信する\") and 更新日時 >= \"2026-12-08T00:45:00Z\""
        );
        assert!(!look.needs_status(1));
        let only_new = connection("");
        let look = Look::new(&only_new, &form(), started(), Some(7))
            .unwrap()
            .unwrap();
        assert_eq!(look.condition, "sms_status in (\"\") and $id > 7");
        let nothing = connection("trigger_events = [\"UPDATE_RECORD\"]\n");
        assert_eq!(Look::new(&nothing, &form(), started(), None).unwrap(), None);
    }

    #[test]
    fn records_are_bounded_by_the_minute_polling_started() {
        let started = DateTime::parse_from_rfc3339("2026-12-08T00:45:37.120Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(changed_since(started), "2026-12-08T00:45:00Z");
    }
}
