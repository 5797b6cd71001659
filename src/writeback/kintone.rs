//! The kintone sink: status, detail and latest reply set with `PUT records.json` (100 records a
//! call, each at the revision read just before, so a person's edit in between is not lost), every
//! reply also posted as a record comment, and the revisions our writes give remembered, so a
//! webhook they fire after all (an echo) sends nothing.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::Mutex;
use tsunagi_kintone::{
    client::{BulkRequest, Client, ClientError, RecordUpdate, UpdatedRecord},
    error::ErrorClass,
};

use super::{
    dry_run::{messages_of, CallPlan, PlannedCall},
    warnings::SetupWarnings,
    Outcome, RecordUpdate as Update, Sink, SinkError,
};
use crate::store::Store;

/// The most records one `PUT records.json` takes.
const RECORDS_PER_CALL: usize = 100;
/// The most requests one `bulkRequest.json` takes.
const REQUESTS_PER_BULK: usize = 20;
/// Writes tried again after a revision conflict (a person saved the record meanwhile).
const CONFLICT_RETRIES: usize = 3;

/// Where a connection writes on its records (field codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KintoneFields {
    /// The message's state.
    pub status: String,
    /// Why, or empty once a later state needs no reason.
    pub detail: String,
    /// The handset's latest reply.
    pub reply: String,
    /// A check box: its first option is checked when the handset opts out (STOP, 停止) and
    /// every option cleared when it opts back in.
    pub opt_out: Option<String>,
    /// A date and time field set to when a person first clicked a short link.
    pub click: Option<String>,
    /// A check box that asked for the send: cleared with a message's first state.
    pub trigger: Option<String>,
    /// The value written for a state, where the connection names it otherwise.
    pub status_values: BTreeMap<String, String>,
    /// The option of `opt_out` an opt-out checks; the form's first option when `None`.
    pub opt_out_option: Option<String>,
    /// A process-management action run on a record once its message is delivered.
    pub action_on_delivered: Option<String>,
}

/// Writes a kintone connection's updates through the REST API.
pub struct KintoneSink {
    connection: String,
    client: Client,
    app: u64,
    fields: KintoneFields,
    store: Arc<dyn Store>,
    /// The opt-out check box's first option as last read from the form, and when.
    opt_out_option: Mutex<Option<(Instant, Option<String>)>>,
    /// Where a refused `action_on_delivered` shows (`/readyz`).
    warnings: SetupWarnings,
}

/// How long the opt-out check box's option is trusted before the form is read again, so an
/// option the admin renames is picked up without a restart.
const OPTION_KEPT: Duration = Duration::from_secs(10 * 60);

impl KintoneSink {
    /// A sink for `connection` writing records of `app` through `client`, remembering its own
    /// writes in `store`.
    pub fn new(
        connection: impl Into<String>,
        client: Client,
        app: u64,
        fields: KintoneFields,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            connection: connection.into(),
            client,
            app,
            fields,
            store,
            opt_out_option: Mutex::new(None),
            warnings: SetupWarnings::default(),
        }
    }

    /// Show a refused `action_on_delivered` in `warnings` until one runs again.
    pub fn with_warnings(mut self, warnings: SetupWarnings) -> Self {
        self.warnings = warnings;
        self
    }

    /// The option an opt-out checks, when the connection has an opt-out check box with options.
    async fn opt_out_option(&self) -> Result<Option<String>, SinkError> {
        let Some(field) = &self.fields.opt_out else {
            return Ok(None);
        };
        if let Some(option) = &self.fields.opt_out_option {
            return Ok(Some(option.clone()));
        }
        let mut kept = self.opt_out_option.lock().await;
        if let Some((read_at, option)) = kept.as_ref() {
            if read_at.elapsed() < OPTION_KEPT {
                return Ok(option.clone());
            }
        }
        let options = self
            .client
            .check_box_options(self.app, field)
            .await
            .map_err(sink_error)?;
        let first = options.and_then(|o| o.into_iter().next());
        if first.is_none() {
            tracing::warn!(connection = %self.connection, field = %field, "opt_out_field is no check box with options; opt-outs are not written back");
        }
        *kept = Some((Instant::now(), first.clone()));
        Ok(first)
    }

    /// The record id an update is for (`APP/$id`), or why it names none of this app's.
    fn id_of(&self, update: &Update) -> Result<u64, String> {
        update
            .record
            .split_once('/')
            .and_then(|(app, id)| (app.parse() == Ok(self.app)).then(|| id.parse().ok())?)
            .ok_or_else(|| format!("{:?} is no record of app {}", update.record, self.app))
    }

    /// The current revision of each record that still exists.
    async fn revisions(&self, ids: &[u64]) -> Result<BTreeMap<u64, u64>, SinkError> {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let query = format!("$id in ({}) limit {}", list.join(", "), ids.len());
        let records = self
            .client
            .get_records(self.app, &query, &["$id", "$revision"])
            .await
            .map_err(sink_error)?;
        Ok(records
            .iter()
            .filter_map(|r| Some((r.id()?, r.revision()?)))
            .collect())
    }

    /// The latest revision known of each record of `todo`, by record id.
    async fn known(&self, todo: &[(usize, u64)]) -> Result<BTreeMap<u64, u64>, SinkError> {
        let records = todo
            .iter()
            .map(|(_, id)| format!("{}/{id}", self.app))
            .collect();
        let known = self
            .store
            .known_revisions(&self.connection, records)
            .await
            .map_err(store_error)?;
        Ok(known
            .into_iter()
            .filter_map(|(record, revision)| {
                let (_, id) = record.split_once('/')?;
                Some((id.parse().ok()?, revision))
            })
            .collect())
    }

    /// Note revisions as our own writes'.
    async fn remember(&self, writes: Vec<(String, u64)>) -> Result<(), SinkError> {
        self.store
            .remember_own_writes(&self.connection, writes, chrono::Utc::now())
            .await
            .map_err(store_error)
    }

    /// Note the revisions our write gave these records, as our own writes' (their webhooks are
    /// echoes) and as the records' latest (the next write needs no read).
    async fn remember_written(&self, written: &[UpdatedRecord]) -> Result<(), SinkError> {
        let own: Vec<(String, u64)> = written
            .iter()
            .map(|w| (format!("{}/{}", self.app, w.id), w.revision))
            .collect();
        self.remember(own.clone()).await?;
        self.store
            .remember_revisions(&self.connection, own, chrono::Utc::now())
            .await
            .map_err(store_error)
    }

    /// The fields `update` sets, on record `id` at `revision` (any revision when `None`).
    fn record_update(
        &self,
        id: u64,
        revision: Option<u64>,
        update: &Update,
        opt_out_option: Option<&str>,
    ) -> RecordUpdate {
        let mut record = RecordUpdate::new(id);
        if let Some(revision) = revision {
            record = record.with_revision(revision);
        }
        if let Some(status) = &update.status {
            let value = status.status.shown_as(&self.fields.status_values);
            record = record.set(&self.fields.status, value).set(
                &self.fields.detail,
                status.detail.clone().unwrap_or_default(),
            );
        }
        if let (Some(field), true) = (&self.fields.trigger, update.opens) {
            // Answered: the check box is left for the next time someone wants a send.
            record = record.set(field, serde_json::json!([]));
        }
        if let Some(reply) = update.replies.last() {
            record = record.set(&self.fields.reply, reply.body.as_str());
        }
        if let (Some(field), Some(option), Some(consent)) =
            (&self.fields.opt_out, opt_out_option, &update.consent)
        {
            let checked: &[&str] = if consent.opted_out { &[option] } else { &[] };
            record = record.set(field, serde_json::json!(checked));
        }
        if let (Some(field), Some(click)) = (&self.fields.click, &update.click) {
            // kintone takes DATETIME values in UTC, to the minute.
            record = record.set(field, click.at.format("%Y-%m-%dT%H:%M:00Z").to_string());
        }
        record
    }

    /// Set the fields of the updates `todo` (index into `updates`, record id), settling each
    /// one's outcome; revision conflicts are read again and retried, a record kintone refuses is
    /// failed alone.
    async fn write_fields(
        &self,
        updates: &[Update],
        mut todo: Vec<(usize, u64)>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), SinkError> {
        let mut conflicts = 0;
        let opt_out_option = if todo.iter().any(|(i, _)| updates[*i].consent.is_some()) {
            self.opt_out_option().await?
        } else {
            None
        };
        // The revisions the webhooks and our own writes gave: a write at them needs no read,
        // and kintone refuses it (a conflict) if someone saved the record since.
        let mut known = self.known(&todo).await?;
        while !todo.is_empty() {
            let unknown: Vec<u64> = todo
                .iter()
                .map(|(_, id)| *id)
                .filter(|id| !known.contains_key(id))
                .collect();
            let trusted = !known.is_empty();
            let mut revisions = match unknown.is_empty() {
                true => BTreeMap::new(),
                false => self.revisions(&unknown).await?,
            };
            revisions.extend(known.iter().map(|(id, revision)| (*id, *revision)));
            todo.retain(|(i, id)| {
                let exists = revisions.contains_key(id);
                if !exists {
                    outcomes[*i] = Some(Outcome::Failed(
                        "GAIA_RE01: the record no longer exists".into(),
                    ));
                }
                exists
            });
            let records: Vec<RecordUpdate> = todo
                .iter()
                .map(|(i, id)| {
                    self.record_update(
                        *id,
                        Some(revisions[id]),
                        &updates[*i],
                        opt_out_option.as_deref(),
                    )
                })
                .collect();
            if records.is_empty() {
                return Ok(());
            }
            // A write adds one to a record's revision, and kintone may fire the echo before its
            // answer reaches us: the revision is remembered before the write, forgotten if the
            // write did not happen.
            let expected: Vec<(String, u64)> = todo
                .iter()
                .map(|(_, id)| (format!("{}/{id}", self.app), revisions[id] + 1))
                .collect();
            self.remember(expected.clone()).await?;
            let result = self.client.update_records(self.app, &records).await;
            if result.is_err() {
                self.store
                    .forget_own_writes(&self.connection, expected)
                    .await
                    .map_err(store_error)?;
            }
            match result {
                Ok(written) => {
                    self.remember_written(&written).await?;
                    for (i, _) in todo.drain(..) {
                        outcomes[i] = Some(Outcome::Written);
                    }
                }
                // A revision known from before was not the record's: read them all.
                Err(e) if trusted && refused_records(&e).is_none_or(|r| r.is_empty()) => {
                    known.clear();
                    if e.class() == ErrorClass::Conflict {
                        conflicts += 1;
                    }
                }
                Err(e) if e.class() == ErrorClass::Conflict && conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                }
                Err(e) => match refused_records(&e) {
                    // The whole call fails for one invalid record: fail that one, send the rest.
                    Some(refused) if !refused.is_empty() => {
                        let mut position = 0;
                        todo.retain(|(i, _)| {
                            let keep = match refused.get(&position) {
                                Some(reason) => {
                                    outcomes[*i] = Some(Outcome::Failed(reason.clone()));
                                    false
                                }
                                None => true,
                            };
                            position += 1;
                            keep
                        });
                    }
                    _ if e.class() == ErrorClass::Conflict => {
                        for (i, _) in todo.drain(..) {
                            outcomes[i] = Some(Outcome::Retry);
                        }
                    }
                    _ => return Err(sink_error(e)),
                },
            }
        }
        Ok(())
    }

    /// Run `action_on_delivered` on each record whose delivered state was just written. The
    /// fields are written either way: an action kintone refuses (the record is in a status
    /// without it) is logged and counted, not retried; a call that did not happen is retried
    /// with the round.
    async fn run_action_on_delivered(
        &self,
        updates: &[Update],
        ids: &BTreeMap<usize, u64>,
        outcomes: &[Option<Outcome>],
    ) -> Result<(), SinkError> {
        let Some(action) = &self.fields.action_on_delivered else {
            return Ok(());
        };
        let delivered: Vec<u64> = ids
            .iter()
            .filter(|(i, _)| outcomes[**i] == Some(Outcome::Written))
            .filter(|(i, _)| {
                updates[**i]
                    .status
                    .as_ref()
                    .is_some_and(|s| s.status == crate::domain::state::JobState::Delivered)
            })
            .map(|(_, id)| *id)
            .collect();
        let key = format!("{}#action", self.connection);
        for chunk in delivered.chunks(RECORDS_PER_CALL) {
            match self.client.run_action(self.app, action, chunk).await {
                Ok(moved) => {
                    self.warnings.set(&key, Vec::new());
                    self.remember_written(&moved).await?;
                }
                Err(e) if e.class() == ErrorClass::Final => {
                    metrics::counter!("tsunagi_kintone_action_failures_total", "connection" => self.connection.clone())
                        .increment(chunk.len() as u64);
                    tracing::warn!(connection = %self.connection, records = chunk.len(), error = %e, "action_on_delivered refused by kintone");
                    let problem = format!(
                        "action_on_delivered {action:?} was refused for {} delivered records (is it an action of their status?): {e}",
                        chunk.len()
                    );
                    self.warnings.set(&key, vec![problem]);
                }
                Err(e) => return Err(sink_error(e)),
            }
        }
        Ok(())
    }

    /// The problems of the app's form for what this connection writes: a missing or mistyped
    /// field, and every status value a drop-down or radio button lacks.
    pub async fn setup_problems(&self) -> Vec<String> {
        match self.client.form(self.app).await {
            Ok(form) => setup::problems(&form, &self.fields),
            Err(e) => vec![format!("the app's form could not be read: {e}")],
        }
    }

    /// A comment request per reply of the written updates, with the index of its update; a
    /// reply kintone would refuse as a comment fails its update.
    fn comments(
        &self,
        updates: &[Update],
        ids: &BTreeMap<usize, u64>,
        outcomes: &mut [Option<Outcome>],
    ) -> Vec<(usize, BulkRequest)> {
        let mut comments: Vec<(usize, BulkRequest)> = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            if outcomes[i] != Some(Outcome::Written) {
                continue;
            }
            for reply in &update.replies {
                let text = format!("SMS返信: {}", reply.body);
                match BulkRequest::add_comment(self.app, ids[&i], &text) {
                    Ok(request) => comments.push((i, request)),
                    Err(e) => outcomes[i] = Some(Outcome::Failed(e.to_string())),
                }
            }
        }
        comments
    }

    /// The records of `updates` this app has, by update index, failing the others.
    fn ids(&self, updates: &[Update], outcomes: &mut [Option<Outcome>]) -> BTreeMap<usize, u64> {
        let mut ids = BTreeMap::new();
        for (i, update) in updates.iter().enumerate() {
            match self.id_of(update) {
                Ok(id) => {
                    ids.insert(i, id);
                }
                Err(reason) => outcomes[i] = Some(Outcome::Failed(reason)),
            }
        }
        ids
    }

    /// Post every reply of the written updates as a comment on its record, 20 to a call; a
    /// call kintone cannot take now leaves its updates for a later round.
    async fn post_replies(
        &self,
        updates: &[Update],
        ids: &BTreeMap<usize, u64>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let comments = self.comments(updates, ids, outcomes);
        for chunk in comments.chunks(REQUESTS_PER_BULK) {
            let requests: Vec<BulkRequest> = chunk.iter().map(|(_, r)| r.clone()).collect();
            if let Err(e) = self.client.bulk_request(&requests).await {
                let outcome = match e.class() {
                    ErrorClass::Final => Outcome::Failed(e.to_string()),
                    _ => Outcome::Retry,
                };
                for (i, _) in chunk {
                    outcomes[*i] = Some(outcome.clone());
                }
            }
        }
    }
}

/// The records of a refused `PUT records.json` that kintone named (`records[i].…`), by position,
/// with their messages.
fn refused_records(e: &ClientError) -> Option<BTreeMap<usize, String>> {
    let error = e.kintone_error()?;
    let mut refused: BTreeMap<usize, String> = BTreeMap::new();
    for (key, messages) in &error.errors {
        let Some(index) = key
            .strip_prefix("records[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(n, _)| n.parse().ok())
        else {
            continue;
        };
        let reason = refused
            .entry(index)
            .or_insert_with(|| format!("{}: {key}", error.code));
        for message in messages {
            reason.push_str(&format!(" {message}"));
        }
    }
    Some(refused)
}

/// The store could not note our writes: try the round again later.
fn store_error(e: crate::store::StoreError) -> SinkError {
    SinkError::Retry {
        reason: format!("store: {e}"),
        after: None,
    }
}

/// What a refused call means for the queue.
fn sink_error(e: ClientError) -> SinkError {
    let reason = e.to_string();
    match e.class() {
        ErrorClass::Retryable | ErrorClass::Conflict => SinkError::Retry {
            reason,
            after: None,
        },
        // A wrong token or a missing field fails every record alike: hold the queue for the
        // admin rather than fail each record.
        ErrorClass::Final => SinkError::Pause {
            reason,
            after: std::time::Duration::from_secs(5 * 60),
        },
    }
}

#[async_trait]
impl Sink for KintoneSink {
    fn max_batch(&self) -> usize {
        RECORDS_PER_CALL
    }

    /// The `PUT`, at the revisions the webhooks told; the reads a record no webhook brought
    /// needs are the exception, and the comments' `bulkRequest.json` is not counted.
    fn cost(&self) -> u32 {
        1
    }

    async fn write(&self, updates: &[Update]) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; updates.len()];
        let ids = self.ids(updates, &mut outcomes);
        let todo = ids.iter().map(|(i, id)| (*i, *id)).collect();
        self.write_fields(updates, todo, &mut outcomes).await?;
        self.run_action_on_delivered(updates, &ids, &outcomes)
            .await?;
        self.post_replies(updates, &ids, &mut outcomes).await;
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Retry))
            .collect())
    }
}

/// A dry run reads nothing from kintone: it cannot know a record's revision, so its `PUT
/// records.json` carries none (a person's edit in between would not be guarded against), nor the
/// opt-out check box's option (read from the form), so an opt-out is not in the body. The bodies
/// come from the same `record_update`, `comments` and the client's own encoders.
impl CallPlan for KintoneSink {
    fn max_batch(&self) -> usize {
        RECORDS_PER_CALL
    }

    fn calls(&self, updates: &[Update]) -> (Vec<PlannedCall>, Vec<Outcome>) {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; updates.len()];
        let ids = self.ids(updates, &mut outcomes);
        let root = self.client.api_root();
        let mut calls = Vec::new();
        let records: Vec<RecordUpdate> = ids
            .iter()
            .map(|(i, id)| self.record_update(*id, None, &updates[*i], None))
            .collect();
        match BulkRequest::update_records(self.app, &records) {
            Ok(request) if !records.is_empty() => {
                calls.push(PlannedCall {
                    method: "PUT",
                    path: format!("{root}{}", request.api),
                    body: request.payload,
                    message_ids: messages_of(ids.keys().map(|i| &updates[*i])),
                });
                ids.keys()
                    .for_each(|i| outcomes[*i] = Some(Outcome::Written));
            }
            Ok(_) => {}
            Err(e) => ids
                .keys()
                .for_each(|i| outcomes[*i] = Some(Outcome::Failed(e.to_string()))),
        }
        let comments = self.comments(updates, &ids, &mut outcomes);
        for chunk in comments.chunks(REQUESTS_PER_BULK) {
            let requests: Vec<BulkRequest> = chunk.iter().map(|(_, r)| r.clone()).collect();
            calls.push(PlannedCall {
                method: "POST",
                path: format!("{root}bulkRequest.json"),
                body: self.client.bulk_request_body(&requests),
                message_ids: messages_of(chunk.iter().map(|(i, _)| &updates[*i])),
            });
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Written))
            .collect();
        (calls, outcomes)
    }
}

mod setup;
#[cfg(test)]
mod tests;
