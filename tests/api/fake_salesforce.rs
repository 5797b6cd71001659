//! A local Salesforce for write-back: the OAuth token endpoint answering with a recorded
//! client-credentials response (its `instance_url` pointed back here), and sObject Collections
//! updates that take every record and remember what they were sent.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::{
    matchers::{body_string_contains, method, path, path_regex},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

/// The collections endpoint of the API version the tests configure.
pub const COLLECTIONS: &str = "/services/data/v67.0/composite/sobjects";

/// A recorded fixture's text.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/salesforce/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Records taken, oldest first, each with when.
type Taken = Arc<Mutex<Vec<(chrono::DateTime<chrono::Utc>, Value)>>>;

/// Describes of the org's objects, by API name; an object not here is not found.
type Described = Arc<Mutex<std::collections::BTreeMap<String, Value>>>;

/// Answers a collections update with one result per record, in order, as Salesforce does, and
/// keeps the records it took. A record of a described object is refused as Salesforce refuses
/// it: a text over its field's length, or a value a restricted picklist does not hold.
struct TakeEvery(Taken, Described);

/// Why Salesforce refuses `record` by its object's describe, as the error it answers.
fn refusal(record: &Value, described: &Described) -> Option<Value> {
    let object = record["attributes"]["type"].as_str()?;
    let described = described.lock().unwrap();
    let fields = described.get(object)?["fields"].as_array()?.clone();
    let values = record.as_object()?;
    for (name, value) in values
        .iter()
        .filter(|(k, _)| *k != "attributes" && *k != "id")
    {
        let Some(field) = fields.iter().find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        }) else {
            return Some(
                json!({"statusCode": "INVALID_FIELD", "message": format!("No such column '{name}' on sobject of type {object}"), "fields": [name]}),
            );
        };
        let label = field["label"].as_str().unwrap_or(name);
        let Some(text) = value.as_str() else { continue };
        let length = field["length"].as_u64().unwrap_or(0) as usize;
        if length > 0 && text.encode_utf16().count() > length {
            return Some(
                json!({"statusCode": "STRING_TOO_LONG", "message": format!("{label}: data value too large: {text} (max length={length})"), "fields": [name]}),
            );
        }
        let takes = field["picklistValues"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["active"] == true && v["value"] == text));
        if field["restrictedPicklist"] == true && !takes {
            return Some(
                json!({"statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "message": format!("{label}: bad value for restricted picklist field: {text}"), "fields": [name]}),
            );
        }
    }
    None
}

/// Records in the org, each with `attributes.type`, `Id` and its fields, for queries.
type OrgRecords = Arc<Mutex<Vec<Value>>>;

/// Answers the one shape of SOQL tsunagi sends, `SELECT Id, F FROM O WHERE F IN ('…', …)
/// LIMIT n`, from the org's records, comparing values exactly as Salesforce does; any other
/// query is refused as malformed.
struct Query(OrgRecords);

/// The string literals of a SOQL `IN (…)` list, unescaped.
fn literals(list: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = list.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some('\'') => {}
            Some(_) => return None,
        }
        let mut literal = String::new();
        loop {
            match chars.next()? {
                '\\' => literal.push(match chars.next()? {
                    'n' => '\n',
                    c => c,
                }),
                '\'' => break,
                c => literal.push(c),
            }
        }
        out.push(literal);
    }
}

impl Respond for Query {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let soql = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let parsed = (|| {
            let rest = soql.strip_prefix("SELECT Id, ")?;
            let (field, rest) = rest.split_once(" FROM ")?;
            let (object, rest) = rest.split_once(" WHERE ")?;
            let rest = rest.strip_prefix(&format!("{field} IN ("))?;
            let (list, limit) = rest.rsplit_once(") LIMIT ")?;
            Some((
                field.to_string(),
                object.to_string(),
                literals(list)?,
                limit.parse::<usize>().ok()?,
            ))
        })();
        let Some((field, object, values, limit)) = parsed else {
            return ResponseTemplate::new(400).set_body_json(json!([{
                "message": format!("unexpected token in {soql}"),
                "errorCode": "MALFORMED_QUERY"
            }]));
        };
        let records: Vec<Value> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["attributes"]["type"] == object.as_str())
            .filter(|r| {
                r[&field]
                    .as_str()
                    .is_some_and(|v| values.iter().any(|x| x == v))
            })
            .take(limit)
            .map(
                |r| json!({"attributes": r["attributes"], "Id": r["Id"], field.clone(): r[&field]}),
            )
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "totalSize": records.len(), "done": true, "records": records
        }))
    }
}

/// Answers an object's describe, or 404 as for an object that does not exist.
struct Describe(Described);

impl Respond for Describe {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let object = request.url.path().rsplit('/').nth(1).unwrap_or_default();
        match self.0.lock().unwrap().get(object) {
            Some(described) => ResponseTemplate::new(200).set_body_json(described),
            None => ResponseTemplate::new(404).set_body_json(json!([{
                "errorCode": "NOT_FOUND",
                "message": "The requested resource does not exist"
            }])),
        }
    }
}

/// The `aud` of the JWT bearer assertion in a token request, if it carries one.
pub fn jwt_audience(request: &Request) -> Option<String> {
    use base64::Engine;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).ok()?;
    let assertion = form.iter().find(|(k, _)| k == "assertion")?.1.clone();
    let payload = assertion.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    claims["aud"].as_str().map(str::to_string)
}

/// Mints a token for any grant, but refuses a JWT whose audience is not a generic login host,
/// as Salesforce does even when the token is asked of the org's My Domain.
struct Mint(Value);

impl Respond for Mint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match jwt_audience(request) {
            Some(aud)
                if aud != "https://login.salesforce.com"
                    && aud != "https://test.salesforce.com" =>
            {
                ResponseTemplate::new(400).set_body_json(
                    json!({"error": "invalid_grant", "error_description": "audience is invalid"}),
                )
            }
            _ => ResponseTemplate::new(200).set_body_json(self.0.clone()),
        }
    }
}

/// Refresh tokens with rotation on: each refresh issues the next token and revokes the one used.
struct Rotate {
    answer: Value,
    current: RefreshTokens,
}

/// The refresh token valid now, and how many rotations came before it.
#[derive(Clone)]
pub struct RefreshTokens(Arc<Mutex<(usize, String)>>);

impl RefreshTokens {
    /// Issue `token` as an admin's new sign-in does; the one in force is revoked.
    pub fn issue(&self, token: &str) {
        self.0.lock().unwrap().1 = token.to_string();
    }
}

impl Respond for Rotate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
        let sent = form
            .iter()
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v.as_str());
        let mut current = self.current.0.lock().unwrap();
        if sent != Some(current.1.as_str()) {
            return ResponseTemplate::new(400).set_body_raw(
                fixture("token_error_refresh_token_revoked.json"),
                "application/json",
            );
        }
        current.0 += 1;
        current.1 = format!("5Aep861Rotated{}", current.0);
        let mut answer = self.answer.clone();
        answer["refresh_token"] = json!(current.1);
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

/// Runs of records of one type in a collections body: Salesforce processes each as a chunk, at
/// most 10 a call.
pub fn chunks(body: &Value) -> usize {
    let types: Vec<&Value> = body["records"]
        .as_array()
        .map(|records| records.iter().map(|r| &r["attributes"]["type"]).collect())
        .unwrap_or_default();
    types
        .iter()
        .enumerate()
        .filter(|(i, t)| *i == 0 || types[i - 1] != **t)
        .count()
}

impl Respond for TakeEvery {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        // The documented limit; Salesforce fails the whole request beyond it.
        if chunks(&body) > 10 {
            return ResponseTemplate::new(400).set_body_json(json!([{
                "message": "Cannot have more than 10 chunks in a single operation. Please rearrange the data to reduce chunking.",
                "errorCode": "INVALID_OPERATION"
            }]));
        }
        let records = body["records"].as_array().cloned().unwrap_or_default();
        let now = chrono::Utc::now();
        let results: Vec<Value> = records
            .iter()
            .map(|r| match refusal(r, &self.1) {
                Some(error) => json!({"id": r["id"], "success": false, "errors": [error]}),
                None => {
                    self.0.lock().unwrap().push((now, r.clone()));
                    json!({"id": r["id"], "success": true, "errors": []})
                }
            })
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(results)
            .insert_header("Sforce-Limit-Info", "api-usage=18/5000")
    }
}

/// The fake org.
pub struct FakeSalesforce {
    pub server: MockServer,
    taken: Taken,
    upserted: Taken,
    described: Described,
    records: OrgRecords,
}

impl FakeSalesforce {
    /// Start one that mints tokens and takes every update.
    pub async fn start() -> FakeSalesforce {
        let server = MockServer::start().await;
        let mut token: Value =
            serde_json::from_str(&fixture("token_client_credentials.json")).unwrap();
        token["instance_url"] = json!(server.uri());
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .respond_with(Mint(token))
            .mount(&server)
            .await;
        let taken = Arc::new(Mutex::new(Vec::new()));
        let described = Described::default();
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .respond_with(TakeEvery(taken.clone(), described.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(
                "^/services/data/v67.0/sobjects/[A-Za-z0-9_]+/describe$",
            ))
            .respond_with(Describe(described.clone()))
            .mount(&server)
            .await;
        let upserted = Arc::new(Mutex::new(Vec::new()));
        Mock::given(method("PATCH"))
            .and(path_regex(format!(
                "^{COLLECTIONS}/[A-Za-z0-9_]+/[A-Za-z0-9_]+$"
            )))
            .respond_with(TakeEvery(upserted.clone(), described.clone()))
            .mount(&server)
            .await;
        let records = OrgRecords::default();
        Mock::given(method("GET"))
            .and(path("/services/data/v67.0/query"))
            .respond_with(Query(records.clone()))
            .mount(&server)
            .await;
        FakeSalesforce {
            server,
            taken,
            upserted,
            described,
            records,
        }
    }

    /// Put records in the org for queries to find: each `{"Id": …, field: value, …}` of `object`.
    pub fn add_records(&self, object: &str, records: Vec<Value>) {
        let mut org = self.records.lock().unwrap();
        for mut record in records {
            record["attributes"] = json!({
                "type": object,
                "url": format!("/services/data/v67.0/sobjects/{object}/{}", record["Id"].as_str().unwrap_or_default()),
            });
            org.push(record);
        }
    }

    /// Describe `object` with the recorded describe `fixture_name`, and refuse what it refuses.
    pub fn describe(&self, object: &str, fixture_name: &str) {
        let described: Value = serde_json::from_str(&fixture(fixture_name)).unwrap();
        self.described
            .lock()
            .unwrap()
            .insert(object.to_string(), described);
    }

    /// Take refresh-token grants with rotation on, `first` being the only token valid now.
    pub async fn rotate_refresh_tokens(&self, first: &str) -> RefreshTokens {
        let tokens = RefreshTokens(Arc::new(Mutex::new((0, first.to_string()))));
        let mut answer: Value =
            serde_json::from_str(&fixture("token_refresh_rotated.json")).unwrap();
        answer["instance_url"] = json!(self.uri());
        Mock::given(method("POST"))
            .and(path("/services/oauth2/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(Rotate {
                answer,
                current: tokens.clone(),
            })
            .with_priority(1)
            .mount(&self.server)
            .await;
        tokens
    }

    /// The refresh tokens sent in token requests, oldest first.
    pub async fn refresh_tokens_sent(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| {
                let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).ok()?;
                form.into_iter()
                    .find(|(k, _)| k == "refresh_token")
                    .map(|(_, v)| v)
            })
            .collect()
    }

    /// Its base URL, for `login_url`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The records of every collections update it took, oldest first (refused calls' records
    /// are not among them).
    pub fn updated_records(&self) -> Vec<Value> {
        self.taken
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// When the first record that `matches` was taken.
    pub fn first_taken(
        &self,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.taken
            .lock()
            .unwrap()
            .iter()
            .find(|(_, r)| matches(r))
            .map(|(at, _)| *at)
    }

    /// How many collections updates it took, with the records of each.
    pub async fn update_calls(&self) -> Vec<usize> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == "PATCH" && r.url.path() == COLLECTIONS)
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                body["records"].as_array().map_or(0, Vec::len)
            })
            .collect()
    }

    /// The records of every collections upsert (on an external id) it took, oldest first.
    pub fn upserted_records(&self) -> Vec<Value> {
        self.upserted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The audiences of the JWT assertions it was sent, oldest first.
    pub async fn jwt_audiences(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(jwt_audience)
            .collect()
    }

    /// How many tokens it was asked for with `grant_type` (each connection has its own).
    pub async fn token_requests(&self, grant_type: &str) -> usize {
        let grant = format!("grant_type={grant_type}");
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/services/oauth2/token")
            .filter(|r| String::from_utf8_lossy(&r.body).contains(&grant))
            .count()
    }

    /// Answer the next `times` collections updates with `status` and the recorded error body
    /// `fixture`, before taking updates again.
    pub async fn refuse_next(&self, times: u64, status: u16, fixture_name: &str, priority: u8) {
        Mock::given(method("PATCH"))
            .and(path(COLLECTIONS))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_raw(fixture(fixture_name), "application/json"),
            )
            .up_to_n_times(times)
            .with_priority(priority)
            .mount(&self.server)
            .await;
    }

    /// How many REST writes (not token requests, not describes) it received.
    pub async fn rest_calls(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().starts_with("/services/data/") && r.method.as_str() != "GET")
            .count()
    }

    /// Wait up to 10 s until `done` holds for the records updated so far; return them.
    pub async fn wait_for(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.wait_up_to(std::time::Duration::from_secs(10), done)
            .await
    }

    /// Wait up to `limit` until `done` holds for the records updated so far; return them.
    pub async fn wait_up_to(
        &self,
        limit: std::time::Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            let records = self.updated_records();
            if done(&records) {
                return records;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "Salesforce never got the expected updates: {:?}",
            self.updated_records()
        );
    }
}
