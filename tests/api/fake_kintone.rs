//! A local kintone for write-back: `GET records.json` answers each asked `$id` with its current
//! revision, `PUT records.json` takes every record (its revision must match) and gives it the
//! next revision, and `bulkRequest.json` takes the comments.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

/// Records by id: their revision, and every update and comment they took.
#[derive(Default)]
pub struct Records {
    /// Current revision per record id.
    pub revisions: BTreeMap<u64, u64>,
    /// Field values written, oldest first, as `(id, record)`.
    pub updates: Vec<(u64, Value)>,
    /// When each of `updates` was taken, in the same order.
    pub updated_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// Comments posted, oldest first, as `(id, text)`.
    pub comments: Vec<(u64, String)>,
    /// Records waiting in the trigger status, by id, as `GET records.json` shows them; one
    /// without a 更新日時 changed just now.
    pub waiting: BTreeMap<u64, Value>,
    /// Records in another status (added, say), by id, as `GET records.json` shows them.
    pub added: BTreeMap<u64, Value>,
    /// The type of the `sms_status` field in the form; `SINGLE_LINE_TEXT` unless set.
    pub status_type: Option<&'static str>,
    /// The options of a `SMS送信` check box in the form, when it has one.
    pub trigger_options: Option<Vec<&'static str>>,
    /// Process-management actions run, oldest first, as `(id, action)`.
    pub actions: Vec<(u64, String)>,
}

impl Records {
    /// When record `id` first took a write that `matches`.
    pub fn first_written(
        &self,
        id: u64,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.updates
            .iter()
            .zip(&self.updated_at)
            .find(|((written, r), _)| *written == id && matches(r))
            .map(|(_, at)| *at)
    }

    /// Whether tsunagi wrote `value` into `field` of record `id`.
    pub fn wrote(&self, id: u64, field: &str, value: impl Into<Value>) -> bool {
        let value = value.into();
        self.updates
            .iter()
            .any(|(written, r)| *written == id && r[field]["value"] == value)
    }

    /// Whether tsunagi wrote a status on record `id`.
    pub fn answered(&self, id: u64) -> bool {
        self.updates
            .iter()
            .any(|(written, r)| *written == id && r["sms_status"]["value"] != "")
    }

    /// Whether record `id` has its `SMS送信` check box checked: as it was made, unless an update
    /// set it since.
    pub fn trigger_checked(&self, id: u64, record: &Value) -> bool {
        let written = self
            .updates
            .iter()
            .rev()
            .find(|(written, r)| *written == id && r.get("SMS送信").is_some());
        let value = match written {
            Some((_, r)) => &r["SMS送信"]["value"],
            None => &record["SMS送信"]["value"],
        };
        value.as_array().is_some_and(|checked| !checked.is_empty())
    }

    /// The records past `after` the poll's `look` finds that tsunagi has not answered (by
    /// `SMS送信` still checked when it asks so, else by no status written), up to 100, by `$id`.
    fn unanswered(&self, after: u64, look: &Look) -> Vec<Value> {
        let mut pool = self.waiting.clone();
        pool.extend(self.added.clone());
        // kintone keeps 更新日時 to the minute, as `YYYY-MM-DDTHH:MM:00Z`: text order is time order.
        let changed_since =
            |record: &Value| match (&look.since, record["更新日時"]["value"].as_str()) {
                (Some(since), Some(changed)) => changed >= since.as_str(),
                _ => true,
            };
        pool.range(after + 1..)
            .filter(|(id, record)| match look.by_check_box {
                true => self.trigger_checked(**id, record),
                false => !self.answered(**id),
            })
            .filter(|(id, record)| {
                let in_status =
                    look.in_status && self.waiting.contains_key(id) && changed_since(record);
                let changed = look.changed && changed_since(record);
                let added = look.added_after.is_some_and(|mark| **id > mark);
                in_status || changed || added
            })
            .take(100)
            .map(|(id, record)| {
                let mut record = record.clone();
                let revision = self.revisions.get(id).copied().unwrap_or(1);
                record["$revision"] =
                    json!({"type": "__REVISION__", "value": revision.to_string()});
                record
            })
            .collect()
    }
}

/// What a poll's query asks for, beside its paging: records in the trigger status, records
/// changed (with the trigger check box), records added after a mark, each bounded by 更新日時.
struct Look {
    in_status: bool,
    changed: bool,
    added_after: Option<u64>,
    since: Option<String>,
    by_check_box: bool,
}

impl Look {
    fn of(query: &str) -> Self {
        let since = query
            .split_once("更新日時 >= \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(since, _)| since.to_string());
        let in_status = query.contains("ステータス in (");
        // The paging `$id > ` is the last; an earlier one is the new records' mark.
        let paging = query.rfind("$id > ").unwrap_or(query.len());
        let added_after = query[..paging].rfind("$id > ").and_then(|at| {
            query[at + 6..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        });
        Look {
            in_status,
            changed: !in_status && since.is_some(),
            added_after,
            since,
            by_check_box: query.contains("SMS送信 in ("),
        }
    }
}

struct Read(Arc<Mutex<Records>>);

impl Respond for Read {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        if query.starts_with("order by $id desc limit 1") {
            let records = self.0.lock().unwrap();
            let newest = (records.waiting.keys().chain(records.added.keys()))
                .chain(records.revisions.keys())
                .max()
                .map(|id| json!({"$id": {"type": "__ID__", "value": id.to_string()}}));
            let found: Vec<Value> = newest.into_iter().collect();
            return ResponseTemplate::new(200)
                .set_body_json(json!({"records": found, "totalCount": null}));
        }
        if let Some((_, after)) = query.rsplit_once("$id > ") {
            // The reconciliation poll: a page on `$id`.
            let after: u64 = after
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_default();
            let records = self.0.lock().unwrap();
            let choice = matches!(records.status_type, Some("DROP_DOWN" | "RADIO_BUTTON"));
            if choice && query.contains("sms_status = \"\"") {
                // kintone takes only `in` and `not in` on a choice field.
                return ResponseTemplate::new(400).set_body_raw(
                    std::fs::read(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/fixtures/kintone/error_query_operator.json"
                    ))
                    .unwrap(),
                    "application/json",
                );
            }
            let found = records.unanswered(after, &Look::of(&query));
            return ResponseTemplate::new(200)
                .set_body_json(json!({"records": found, "totalCount": null}));
        }
        let ids: Vec<u64> = query
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| {
                list.split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut records = self.0.lock().unwrap();
        let found: Vec<Value> = ids
            .iter()
            .map(|id| {
                let revision = *records.revisions.entry(*id).or_insert(1);
                json!({
                    "$id": {"type": "__ID__", "value": id.to_string()},
                    "$revision": {"type": "__REVISION__", "value": revision.to_string()}
                })
            })
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"records": found, "totalCount": null}))
    }
}

struct Write(Arc<Mutex<Records>>);

impl Respond for Write {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut records = self.0.lock().unwrap();
        let updates = body["records"].as_array().cloned().unwrap_or_default();
        // A revision that is not the record's refuses the whole call, as kintone does.
        let stale = updates.iter().any(|r| {
            let current = records
                .revisions
                .get(&r["id"].as_u64().unwrap_or_default())
                .copied()
                .unwrap_or(1);
            r["revision"]
                .as_i64()
                .is_some_and(|given| given != -1 && given as u64 != current)
        });
        if stale {
            return ResponseTemplate::new(409).set_body_raw(
                std::fs::read(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/kintone/error_revision_conflict.json"
                ))
                .unwrap(),
                "application/json",
            );
        }
        let mut written = Vec::new();
        for r in updates {
            let id = r["id"].as_u64().unwrap_or_default();
            let revision = records.revisions.entry(id).or_insert(1);
            *revision += 1;
            written.push(json!({"id": id.to_string(), "revision": revision.to_string()}));
            records.updates.push((id, r["record"].clone()));
            records.updated_at.push(chrono::Utc::now());
        }
        ResponseTemplate::new(200).set_body_json(json!({ "records": written }))
    }
}

struct Bulk(Arc<Mutex<Records>>);

impl Respond for Bulk {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut records = self.0.lock().unwrap();
        let mut results = Vec::new();
        for r in body["requests"].as_array().cloned().unwrap_or_default() {
            let p = &r["payload"];
            records.comments.push((
                p["record"].as_u64().unwrap_or_default(),
                p["comment"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
            results.push(json!({"id": records.comments.len().to_string()}));
        }
        ResponseTemplate::new(200).set_body_json(json!({ "results": results }))
    }
}

/// `PUT records/status.json`: each record takes the action, and 2 on its revision as kintone
/// gives a status action.
struct Action(Arc<Mutex<Records>>);

impl Respond for Action {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let mut records = self.0.lock().unwrap();
        let mut moved = Vec::new();
        for r in body["records"].as_array().cloned().unwrap_or_default() {
            let id = r["id"].as_u64().unwrap_or_default();
            let action = r["action"].as_str().unwrap_or_default().to_string();
            records.actions.push((id, action));
            let revision = records.revisions.entry(id).or_insert(1);
            *revision += 2;
            moved.push(json!({"id": id.to_string(), "revision": revision.to_string()}));
        }
        ResponseTemplate::new(200).set_body_json(json!({ "records": moved }))
    }
}

/// The form: process management, the system 更新日時 and the SMS status field of its type.
struct FormFields(Arc<Mutex<Records>>);

impl Respond for FormFields {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let records = self.0.lock().unwrap();
        let status_type = records.status_type.unwrap_or("SINGLE_LINE_TEXT");
        let choice = |options: &[&str]| -> Value {
            options
                .iter()
                .enumerate()
                .map(|(i, o)| (o.to_string(), json!({"label": o, "index": i.to_string()})))
                .collect::<serde_json::Map<String, Value>>()
                .into()
        };
        let mut properties = json!({
            "ステータス": {"type": "STATUS", "code": "ステータス", "label": "ステータス", "enabled": true},
            "更新日時": {"type": "UPDATED_TIME", "code": "更新日時", "label": "更新日時", "noLabel": false},
            "sms_status": {"type": status_type, "code": "sms_status", "label": "SMS状態", "noLabel": false},
            "sms_status_detail": {"type": "SINGLE_LINE_TEXT", "code": "sms_status_detail", "label": "SMS詳細"},
            "sms_reply": {"type": "MULTI_LINE_TEXT", "code": "sms_reply", "label": "SMS返信"},
            "配信停止": {"type": "CHECK_BOX", "code": "配信停止", "label": "配信停止", "options": choice(&["停止"])}
        });
        if status_type != "SINGLE_LINE_TEXT" {
            // A choice field offering tsunagi's own (English) state names.
            let states = [
                "queued",
                "scheduled",
                "sending",
                "sent",
                "delivered",
                "undelivered",
                "failed",
                "canceled",
                "rejected",
            ];
            properties["sms_status"]["options"] = choice(&states);
        }
        if let Some(options) = &records.trigger_options {
            properties["SMS送信"] = json!({"type": "CHECK_BOX", "code": "SMS送信", "label": "SMS送信", "options": choice(options), "defaultValue": []});
        }
        ResponseTemplate::new(200).set_body_json(json!({"properties": properties, "revision": "5"}))
    }
}

/// The fake domain.
pub struct FakeKintone {
    pub server: MockServer,
    pub records: Arc<Mutex<Records>>,
}

impl FakeKintone {
    /// Start one that reads revisions, takes updates and comments.
    pub async fn start() -> FakeKintone {
        Self::start_at("/k/v1/").await
    }

    /// Start one whose APIs are under `root` (`/k/guest/5/v1/` for an app in a guest space).
    pub async fn start_at(root: &str) -> FakeKintone {
        let server = MockServer::start().await;
        let records = Arc::new(Mutex::new(Records::default()));
        let path = |api: &str| path(format!("{root}{api}"));
        Mock::given(method("PUT"))
            .and(path("records/status.json"))
            .respond_with(Action(records.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("records.json"))
            .respond_with(Read(records.clone()))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path("records.json"))
            .respond_with(Write(records.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("app/form/fields.json"))
            .respond_with(FormFields(records.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("bulkRequest.json"))
            .respond_with(Bulk(records.clone()))
            .mount(&server)
            .await;
        FakeKintone { server, records }
    }

    /// Its base URL, for `base_url`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Wait up to 10 s until `done` holds for what it took so far.
    pub async fn wait_for(&self, done: impl Fn(&Records) -> bool) {
        self.wait_up_to(std::time::Duration::from_secs(10), done)
            .await
    }

    /// Wait up to `limit` until `done` holds for what it took so far.
    pub async fn wait_up_to(&self, limit: std::time::Duration, done: impl Fn(&Records) -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if done(&self.records.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let records = self.records.lock().unwrap();
        panic!(
            "kintone never got the expected writes: {:?} {:?}",
            records.updates, records.comments
        );
    }
}
