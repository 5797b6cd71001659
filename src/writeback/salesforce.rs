//! The Salesforce sink: each record's update becomes one record of an sObject Collections
//! update (200 records a call), with the fields its sObject's mapping names.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde_json::Value;
use tsunagi_salesforce::{
    rest::{
        chunks, collection_body, upsert_path, ErrorClass, RecordResult, RestClient, RestError,
        SObject, MAX_COLLECTION_CHUNKS,
    },
    SObjectDescribe,
};

use super::{
    dry_run::{messages_of, CallPlan, PlannedCall},
    Outcome, RecordUpdate, Sink, SinkError,
};
use crate::domain::{ids::MessageId, phone::PhoneNumber, state::JobState};

/// The most records one sObject Collections call takes.
const COLLECTION_LIMIT: usize = 200;
/// Text fields default to 255 characters; a longer detail would refuse the whole record. Used
/// until the object's describe gives the field's own length.
const DETAIL_CHARS: usize = 255;
/// How long after a failed describe it is asked again.
const DESCRIBE_RETRY: Duration = Duration::from_secs(5 * 60);
/// How long the queue is held when the org's daily API allowance is spent.
const DAILY_LIMIT_PAUSE: Duration = Duration::from_secs(15 * 60);
/// How long the queue is held when every record of a call is refused for a reason the admin
/// must fix (a field that does not exist, an integration user without access).
const MISCONFIGURED_PAUSE: Duration = Duration::from_secs(5 * 60);

/// Where a mapping writes on its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusFields {
    /// The phone field its records are messaged at: an opt-out reaches every record holding
    /// the number in it.
    pub phone: String,
    /// The message's state: queued, sent, delivered, undelivered, failed, rejected.
    pub status: String,
    /// Why, or empty once a later state needs no reason.
    pub detail: String,
    /// The handset's latest reply.
    pub reply: String,
    /// A checkbox set when the handset opts out (STOP, 停止) and cleared when it opts back in.
    pub opt_out: Option<String>,
    /// A date/time field set to when a person first clicked a short link.
    pub click: Option<String>,
    /// The value written for a state (by its name) where the mapping renames it.
    pub status_values: BTreeMap<String, String>,
}

impl StatusFields {
    /// The value the status field gets for `state`.
    fn status_value(&self, state: JobState) -> String {
        state.shown_as(&self.status_values).to_string()
    }
}

/// A log object upserted per message, beside the record's own fields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MessageLog {
    /// The log object's API name.
    pub object: String,
    /// Its external id field, holding tsunagi's message id.
    pub external_id_field: String,
    /// Its lookup to the record.
    pub record_field: String,
    /// Its state field.
    pub status_field: String,
    /// Its reason field, if it has one.
    pub detail_field: Option<String>,
}

/// Writes a Salesforce connection's updates through the REST API.
pub struct SalesforceSink {
    /// The connection's source name, for metrics.
    connection: String,
    client: RestClient,
    /// Per sObject API name.
    fields: BTreeMap<String, StatusFields>,
    /// Per sObject API name, for the mappings that keep a message log.
    logs: BTreeMap<String, MessageLog>,
    /// Each object's describe, read once, for its fields' lengths.
    described: Mutex<Described>,
}

/// The describes read so far, and when a describe last failed.
#[derive(Default)]
struct Described {
    known: BTreeMap<String, Arc<SObjectDescribe>>,
    failed: BTreeMap<String, Instant>,
}

impl SalesforceSink {
    /// A sink for `connection` writing through `client` into the fields each sObject's mapping
    /// names.
    pub fn new(
        connection: impl Into<String>,
        client: RestClient,
        fields: BTreeMap<String, StatusFields>,
    ) -> Self {
        Self {
            connection: connection.into(),
            client,
            fields,
            logs: BTreeMap::new(),
            described: Mutex::new(Described::default()),
        }
    }

    /// The describe of `object`, read once (again after `DESCRIBE_RETRY` when it failed).
    async fn describe(&self, object: &str) -> Option<Arc<SObjectDescribe>> {
        {
            let described = self.described.lock().expect("describes");
            if let Some(known) = described.known.get(object) {
                return Some(known.clone());
            }
            if described
                .failed
                .get(object)
                .is_some_and(|at| at.elapsed() < DESCRIBE_RETRY)
            {
                return None;
            }
        }
        let result = self.client.describe(object).await;
        let mut described = self.described.lock().expect("describes");
        match result {
            Ok(found) => {
                let found = Arc::new(found);
                described.known.insert(object.to_string(), found.clone());
                Some(found)
            }
            Err(error) => {
                tracing::warn!(connection = %self.connection, %object, %error, "describe failed: texts are cut to 255 characters meanwhile");
                described.failed.insert(object.to_string(), Instant::now());
                None
            }
        }
    }

    /// Read the describes of the mapped objects `updates` write (records and message logs).
    async fn describe_written(&self, updates: &[RecordUpdate]) {
        let objects: BTreeSet<&str> = updates
            .iter()
            .filter_map(|u| u.record.split_once('/').map(|(object, _)| object))
            .filter(|object| self.fields.contains_key(*object))
            .flat_map(|object| {
                let log = self.logs.get(object).map(|log| log.object.as_str());
                std::iter::once(object).chain(log)
            })
            .collect();
        for object in objects {
            self.describe(object).await;
        }
    }

    /// `text` cut to `object.field`'s length as described; to `fallback` characters while the
    /// object is not described (`None`: whole).
    fn fit(&self, object: &str, field: &str, text: &str, fallback: Option<usize>) -> String {
        let described = self.described.lock().expect("describes");
        match described.known.get(object).and_then(|d| d.field(field)) {
            Some(field) => field.fit(text).to_string(),
            None => match fallback {
                Some(chars) => text.chars().take(chars).collect(),
                None => text.to_string(),
            },
        }
    }

    /// A reason for `object.field`, cut to its length, or null to clear the field.
    fn detail(&self, object: &str, field: &str, reason: Option<&str>) -> Value {
        reason
            .map(|d| Value::from(self.fit(object, field, d, Some(DETAIL_CHARS))))
            .unwrap_or(Value::Null)
    }

    /// What is wrong with the org's setup for this connection's mappings, read from each
    /// object's describe, read anew; a describe that fails is a problem too.
    pub async fn setup_problems(&self) -> Vec<String> {
        *self.described.lock().expect("describes") = Described::default();
        let mut out = Vec::new();
        for (object, fields) in &self.fields {
            match self.describe(object).await {
                Some(described) => out.extend(setup::problems(object, fields, &described)),
                None => out.push(format!("{object} could not be described (see the log)")),
            }
        }
        for log in self.logs.values() {
            match self.describe(&log.object).await {
                Some(described) => out.extend(setup::log_problems(log, &described)),
                None => out.push(format!(
                    "{} could not be described (see the log)",
                    log.object
                )),
            }
        }
        out
    }

    /// Also upsert a log record per message for the sObjects `logs` names.
    pub fn with_message_logs(mut self, logs: BTreeMap<String, MessageLog>) -> Self {
        self.logs = logs;
        self
    }

    /// The log records of `updates`, grouped by log object: one per message state, with its
    /// message.
    fn log_records(
        &self,
        updates: &[RecordUpdate],
    ) -> BTreeMap<&MessageLog, Vec<(MessageId, SObject)>> {
        let mut out: BTreeMap<&MessageLog, Vec<(MessageId, SObject)>> = BTreeMap::new();
        for update in updates {
            let Some((object, id)) = update.record.split_once('/') else {
                continue;
            };
            let Some(log) = self.logs.get(object) else {
                continue;
            };
            for change in &update.messages {
                let mut record = SObject::new(&log.object)
                    .set(&log.external_id_field, change.message_id.as_str())
                    .set(&log.record_field, id)
                    .set(&log.status_field, change.status.as_str());
                if let Some(field) = &log.detail_field {
                    record = record.set(
                        field,
                        self.detail(&log.object, field, change.detail.as_deref()),
                    );
                }
                out.entry(log)
                    .or_default()
                    .push((change.message_id.clone(), record));
            }
        }
        out
    }

    /// Upsert the message logs of `updates`; a log record Salesforce refuses is reported, not
    /// retried (the record itself was written), while a refused call fails the round.
    async fn write_logs(&self, updates: &[RecordUpdate]) -> Result<(), SinkError> {
        for (log, records) in self.log_records(updates) {
            let records: Vec<SObject> = records.into_iter().map(|(_, record)| record).collect();
            for chunk in records.chunks(COLLECTION_LIMIT) {
                let response = self
                    .client
                    .upsert(&log.object, &log.external_id_field, chunk)
                    .await
                    .map_err(sink_error)?;
                let refused = response.results.iter().filter(|r| !r.success).count();
                if refused > 0 {
                    tracing::warn!(connection = %self.connection, object = %log.object, refused, "message log records refused");
                    metrics::counter!("tsunagi_writeback_log_refused_total", "connection" => self.connection.clone())
                        .increment(refused as u64);
                }
            }
        }
        Ok(())
    }

    /// The sObject record an update writes, or why it cannot be written.
    fn record(&self, update: &RecordUpdate) -> Result<SObject, String> {
        let (object, id) = update
            .record
            .split_once('/')
            .ok_or_else(|| format!("{:?} names no Salesforce record", update.record))?;
        let fields = self
            .fields
            .get(object)
            .ok_or_else(|| format!("no [[salesforce.mappings]] entry for sObject {object:?}"))?;
        let mut record = SObject::new(object).with_id(id);
        if let Some(status) = &update.status {
            record = record
                .set(&fields.status, fields.status_value(status.status))
                .set(
                    &fields.detail,
                    self.detail(object, &fields.detail, status.detail.as_deref()),
                );
        }
        if let Some(reply) = update.replies.last() {
            record = record.set(
                &fields.reply,
                self.fit(object, &fields.reply, &reply.body, None),
            );
        }
        if let (Some(field), Some(consent)) = (&fields.opt_out, &update.consent) {
            record = record.set(field, consent.opted_out);
        }
        if let (Some(field), Some(click)) = (&fields.click, &update.click) {
            record = record.set(
                field,
                click
                    .at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            );
        }
        Ok(record)
    }
}

impl SalesforceSink {
    /// The records `updates` write, with the index of the update each is for; an update that
    /// names no mapped record is failed in the outcomes, the others left to the call.
    fn records(
        &self,
        updates: &[RecordUpdate],
    ) -> (Vec<usize>, Vec<SObject>, Vec<Option<Outcome>>) {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; updates.len()];
        let mut sent = Vec::new();
        let mut records = Vec::new();
        let mut taken = Vec::new();
        for (i, update) in updates.iter().enumerate() {
            match self.record(update) {
                Ok(record) => taken.push((i, record)),
                Err(reason) => outcomes[i] = Some(Outcome::Failed(reason)),
            }
        }
        // Salesforce processes a call in chunks, one per run of records of one type, and at
        // most 10 of them: records of a type go together, types in the order they first come.
        let mut types: Vec<String> = Vec::new();
        for (_, record) in &taken {
            if !types.contains(&record.object_type) {
                types.push(record.object_type.clone());
            }
        }
        taken.sort_by_key(|(_, record)| types.iter().position(|t| *t == record.object_type));
        for (i, record) in taken {
            sent.push(i);
            records.push(record);
        }
        (sent, records, outcomes)
    }
}

impl SalesforceSink {
    /// Write each consent change written this round on the mapping's other records holding the
    /// same number. A transient failure leaves the change's update to be written again (it sets
    /// the same values); a lasting one is logged, the records it answered keep theirs.
    async fn spread_consent(&self, updates: &[RecordUpdate], outcomes: &mut [Outcome]) {
        let mut by_object: BTreeMap<&str, (opt_out_spread::Changes, Vec<usize>)> = BTreeMap::new();
        for (i, update) in updates.iter().enumerate() {
            let (Some((object, id)), Some(consent)) =
                (update.record.split_once('/'), &update.consent)
            else {
                continue;
            };
            let (Some(number), Some(fields)) = (&consent.number, self.fields.get(object)) else {
                continue;
            };
            if fields.opt_out.is_none() || outcomes[i] != Outcome::Written {
                continue;
            }
            let (changes, indices) = by_object.entry(object).or_default();
            changes.written.push(id.to_string());
            changes.by_number.insert(
                number.e164().to_string(),
                (number.clone(), consent.opted_out),
            );
            indices.push(i);
        }
        for (object, (changes, indices)) in by_object {
            if let Err(error) = self.spread(object, &changes).await {
                let transient =
                    matches!(error.class(), ErrorClass::Retryable | ErrorClass::Session);
                tracing::warn!(connection = %self.connection, %object, %error, transient, "opt-out not written on the other records holding the number");
                if transient {
                    indices.iter().for_each(|i| outcomes[*i] = Outcome::Retry);
                }
            }
        }
    }

    async fn spread(
        &self,
        object: &str,
        changes: &opt_out_spread::Changes,
    ) -> Result<(), RestError> {
        let fields = &self.fields[object];
        let opt_out = fields
            .opt_out
            .as_deref()
            .expect("only mappings with an opt-out field");
        let numbers: Vec<&PhoneNumber> = changes.by_number.values().map(|(n, _)| n).collect();
        let mut found = Vec::new();
        for chunk in numbers.chunks(opt_out_spread::NUMBERS_PER_QUERY) {
            let soql = opt_out_spread::query(object, &fields.phone, chunk)?;
            found.extend(
                self.client
                    .query(&soql, opt_out_spread::MAX_RECORDS)
                    .await?,
            );
        }
        let records = opt_out_spread::updates(object, &fields.phone, opt_out, changes, &found);
        for chunk in records.chunks(COLLECTION_LIMIT) {
            let response = self.client.update(chunk).await?;
            let refused = response.results.iter().filter(|r| !r.success).count();
            metrics::counter!("tsunagi_writeback_opt_out_records_total", "connection" => self.connection.clone())
                .increment((chunk.len() - refused) as u64);
            if refused > 0 {
                tracing::warn!(connection = %self.connection, %object, refused, "other records holding an opted-out number refused the change");
            }
        }
        Ok(())
    }
}

/// The calls grouped `records` take: as many as make no call over `MAX_COLLECTION_CHUNKS`.
fn calls_of(records: &[SObject]) -> Vec<std::ops::Range<usize>> {
    let mut calls = Vec::new();
    let mut start = 0;
    for end in 1..=records.len() {
        if chunks(&records[start..end]) > MAX_COLLECTION_CHUNKS {
            calls.push(start..end - 1);
            start = end - 1;
        }
    }
    if start < records.len() {
        calls.push(start..records.len());
    }
    calls
}

/// A dry run makes no call, so no token is asked for: the bodies come from the same `records`
/// and `log_records`, and `collection_body`, the client's own encoder.
impl CallPlan for SalesforceSink {
    fn max_batch(&self) -> usize {
        COLLECTION_LIMIT
    }

    fn calls(&self, updates: &[RecordUpdate]) -> (Vec<PlannedCall>, Vec<Outcome>) {
        let (sent, records, outcomes) = self.records(updates);
        let mut calls = Vec::new();
        let mut outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Written))
            .collect();
        for call in calls_of(&records) {
            let sent = &sent[call.clone()];
            match planned(&self.client.api_path("composite/sobjects"), &records[call]) {
                Ok(body) => calls.push(PlannedCall {
                    method: "PATCH",
                    path: self.client.api_path("composite/sobjects"),
                    body,
                    message_ids: messages_of(sent.iter().map(|i| &updates[*i])),
                }),
                Err(reason) => sent
                    .iter()
                    .for_each(|i| outcomes[*i] = Outcome::Failed(reason.clone())),
            }
        }
        for (log, records) in self.log_records(updates) {
            for chunk in records.chunks(COLLECTION_LIMIT) {
                let (ids, chunk): (Vec<MessageId>, Vec<SObject>) = chunk.iter().cloned().unzip();
                let path = upsert_path(&log.object, &log.external_id_field)
                    .map(|p| self.client.api_path(&p));
                let call = path.map_err(|e| e.to_string()).and_then(|path| {
                    let body = planned(&path, &chunk)?;
                    Ok(PlannedCall {
                        method: "PATCH",
                        path,
                        body,
                        message_ids: ids,
                    })
                });
                match call {
                    Ok(call) => calls.push(call),
                    // As for real: a refused log call is reported, the records stay written.
                    Err(reason) => {
                        tracing::warn!(connection = %self.connection, object = %log.object, %reason, "dry run: message log call not built")
                    }
                }
            }
        }
        (calls, outcomes)
    }
}

/// The body `collection_body` gives `records`, as JSON, or why it could not be made.
fn planned(path: &str, records: &[SObject]) -> Result<Value, String> {
    let body = collection_body(records).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))
}

/// What a refused call means for the queue.
fn sink_error(e: RestError) -> SinkError {
    let reason = e.to_string();
    match e.class() {
        ErrorClass::Retryable | ErrorClass::Session => SinkError::Retry {
            reason,
            after: None,
        },
        ErrorClass::LongPause => SinkError::Pause {
            reason,
            after: DAILY_LIMIT_PAUSE,
        },
        ErrorClass::Final => SinkError::Pause {
            reason,
            after: MISCONFIGURED_PAUSE,
        },
    }
}

/// Why the whole call must wait for the admin, when every record of it was refused with the
/// same error of the org's setup: failing each record would lose every status for good.
fn misconfigured(results: &[RecordResult]) -> Option<String> {
    let first = results.first()?.errors.first()?;
    let same = |r: &RecordResult| {
        !r.success
            && r.errors
                .first()
                .is_some_and(|e| e.status_code == first.status_code)
    };
    (first.is_misconfiguration() && results.iter().all(same)).then(|| {
        format!(
            "Salesforce refused every record with {}: {} (fix the field's security, picklist \
             values or length for the integration user; the statuses wait meanwhile)",
            first.status_code, first.message
        )
    })
}

/// What one record's result means for its update.
fn outcome(result: RecordResult) -> Outcome {
    if result.success {
        Outcome::Written
    } else if result.is_retryable() {
        Outcome::Retry
    } else {
        let reasons: Vec<String> = result
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.status_code, e.message))
            .collect();
        Outcome::Failed(match reasons.is_empty() {
            true => "Salesforce refused the record without saying why".into(),
            false => reasons.join("; "),
        })
    }
}

#[async_trait]
impl Sink for SalesforceSink {
    fn max_batch(&self) -> usize {
        COLLECTION_LIMIT
    }

    /// The collection update, and the message log's upsert when one is configured.
    fn cost(&self) -> u32 {
        1 + u32::from(!self.logs.is_empty())
    }

    async fn write(&self, updates: &[RecordUpdate]) -> Result<Vec<Outcome>, SinkError> {
        let mut outcomes = self.write_records(updates).await?;
        self.spread_consent(updates, &mut outcomes).await;
        Ok(outcomes)
    }
}

impl SalesforceSink {
    /// The records' own update and their message logs.
    async fn write_records(&self, updates: &[RecordUpdate]) -> Result<Vec<Outcome>, SinkError> {
        self.describe_written(updates).await;
        let (sent, records, mut outcomes) = self.records(updates);
        for call in calls_of(&records) {
            let sent = &sent[call.clone()];
            let response = self
                .client
                .update(&records[call])
                .await
                .map_err(sink_error)?;
            if let Some(usage) = response.limits.as_ref().and_then(|l| l.api_usage) {
                let connection = self.connection.clone();
                metrics::gauge!("tsunagi_salesforce_api_used", "connection" => connection.clone())
                    .set(usage.used as f64);
                metrics::gauge!("tsunagi_salesforce_api_limit", "connection" => connection)
                    .set(usage.limit as f64);
            }
            if let Some(reason) = misconfigured(&response.results) {
                return Err(SinkError::Pause {
                    reason,
                    after: MISCONFIGURED_PAUSE,
                });
            }
            for (i, result) in sent.iter().zip(response.results) {
                outcomes[*i] = Some(outcome(result));
            }
        }
        // The records took their update: a log that fails now is reported, never a reason to
        // send the update again.
        if let Err(e) = self.write_logs(updates).await {
            tracing::warn!(connection = %self.connection, error = %e, "message log not written");
            metrics::counter!("tsunagi_writeback_log_refused_total", "connection" => self.connection.clone())
                .increment(1);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Retry))
            .collect())
    }
}

mod opt_out_spread;
mod setup;
#[cfg(test)]
mod tests;
