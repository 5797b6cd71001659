//! The OpenAPI 3.0 document Salesforce External Services imports, so a Flow can send an SMS,
//! send a one-time password and check it with no Apex:
//! `GET /v1/inbound/salesforce/{name}/openapi.json`.
//!
//! It is derived from the 3.1 document of the real routes (`api::openapi::document`), so the
//! actions cannot drift from the requests the API takes. Each action's operation is copied and
//! rewritten into what External Services and Flow HTTP Callout actions accept: `$ref`s inlined
//! (no `oneOf`/`anyOf`/`allOf`), one type per schema, enums turned into strings whose values
//! are listed in the description, integers as `int32`, JSON media only (problems are still sent
//! as `application/problem+json`; Salesforce routes any status ≥ 300 to the Flow's fault path).
//! Free-form objects (`vars`, `metadata`) are left out: a Flow cannot build a map.
//!
//! The document needs no token: it holds no secret, describes the same calls as `/openapi.json`,
//! and those calls take the API key (from the Named Credential). An admin fetches it with `curl`.

use axum::{
    extract::{Path, State},
    Json,
};
use serde_json::{json, Map, Value};

use super::find;
use crate::api::{problem::ApiError, AppState};

/// An action a Flow calls: an operation of the API, renamed for Flow.
struct Action {
    /// Its path in the API.
    path: &'static str,
    /// Its `operationId` in the 3.1 document.
    api_operation: &'static str,
    /// Its `operationId` here: an Apex identifier, the action's name in Flow Builder.
    operation_id: &'static str,
    /// A path parameter shown under a clearer name (old, new): Flow shows it as an input.
    renamed_parameter: Option<(&'static str, &'static str)>,
    /// Whether the path's `{name}` is the document's connection, filled in rather than asked.
    of_connection: bool,
}

/// Send an SMS, send one for a record, send an OTP, check an OTP: every action is a POST.
const ACTIONS: [Action; 4] = [
    Action {
        path: "/v1/messages",
        api_operation: "createMessage",
        operation_id: "sendSms",
        renamed_parameter: None,
        of_connection: false,
    },
    // A record's status, replies and clicks are written back to it, as an Outbound Message's.
    Action {
        path: "/v1/salesforce/{name}/records",
        api_operation: "sendForRecord",
        operation_id: "sendSmsForRecord",
        renamed_parameter: None,
        of_connection: true,
    },
    Action {
        path: "/v1/otp",
        api_operation: "startOtp",
        operation_id: "sendOtp",
        renamed_parameter: None,
        of_connection: false,
    },
    // The route that answers 200 for every verdict, so a Screen Flow branches on `valid`.
    Action {
        path: "/v1/otp/{id}/verify",
        api_operation: "verifyOtp",
        operation_id: "checkOtp",
        renamed_parameter: Some(("id", "verification_id")),
        of_connection: false,
    },
];

/// Schema keywords External Services reads and that keep their meaning in OpenAPI 3.0; every
/// other keyword is rewritten or dropped, so no refused one (`not`, `enum`…) gets through.
const KEPT_KEYWORDS: [&str; 12] = [
    "type",
    "description",
    "properties",
    "required",
    "items",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
];

/// Formats Flow maps to a type of its own; others (`phone`) are only words, in the description.
const KEPT_FORMATS: [&str; 3] = ["date", "date-time", "int32"];

/// Serve the External Services document of a configured connection (404 for another name).
pub async fn openapi(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let connection = find(&state.config.salesforce, &name)?;
    Ok(Json(document(
        &connection.name,
        &state.config.public_base_url,
    )))
}

/// The document for the connection `name` of a tsunagi reached at `public_base_url`.
pub fn document(name: &str, public_base_url: &str) -> Value {
    let api = crate::api::openapi::document();
    let components = api["components"]["schemas"]
        .as_object()
        .expect("the API document has schemas");
    let mut paths = Map::new();
    for action in &ACTIONS {
        let operation = &api["paths"][action.path]["post"];
        assert_eq!(
            operation["operationId"], action.api_operation,
            "{} is not the operation the action was written for",
            action.path
        );
        let mut path = action.path.to_string();
        if let Some((old, new)) = action.renamed_parameter {
            path = path.replace(&format!("{{{old}}}"), &format!("{{{new}}}"));
        }
        if action.of_connection {
            path = path.replace("{name}", name);
        }
        paths.insert(
            path,
            json!({ "post": rewrite_operation(operation, action, components) }),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": format!("tsunagi ({name})"),
            "version": api["info"]["version"],
            "description": format!(
                "SMS and one-time passwords for the Salesforce connection `{name}`, as Flow \
                 actions. Authenticate with a Named Credential whose External Credential sends \
                 `Authorization: Bearer <tsunagi API key>`. Errors are RFC 9457 problems \
                 (`code`, `detail`); a Flow receives them on its fault path."
            ),
        },
        "servers": [{ "url": public_base_url.trim_end_matches('/') }],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "api_key": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tsunagi API key. Salesforce ignores this and sends what the Named Credential holds.",
                }
            }
        },
        "security": [{ "api_key": [] }],
    })
}

/// One operation as Flow reads it.
fn rewrite_operation(operation: &Value, action: &Action, components: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("operationId".into(), json!(action.operation_id));
    for key in ["summary", "description"] {
        if let Some(text) = operation.get(key) {
            out.insert(key.into(), text.clone());
        }
    }
    if let Some(parameters) = operation["parameters"].as_array() {
        let parameters: Vec<Value> = parameters
            .iter()
            .filter(|p| !(action.of_connection && p["name"] == "name"))
            .map(|p| rewrite_parameter(p, action, components))
            .collect();
        if !parameters.is_empty() {
            out.insert("parameters".into(), parameters.into());
        }
    }
    if let Some(schema) = json_schema(&operation["requestBody"]["content"]) {
        let body = json!({
            "required": true,
            "content": { "application/json": { "schema": flatten(schema, components) } },
        });
        out.insert("requestBody".into(), body);
    }
    let responses: Map<String, Value> = operation["responses"]
        .as_object()
        .expect("every operation has responses")
        .iter()
        .map(|(status, r)| (status.clone(), rewrite_response(r, components)))
        .collect();
    out.insert("responses".into(), responses.into());
    out.insert("security".into(), json!([{ "api_key": [] }]));
    out.into()
}

fn rewrite_parameter(parameter: &Value, action: &Action, components: &Map<String, Value>) -> Value {
    let mut out = parameter.clone();
    if let Some((old, new)) = action.renamed_parameter {
        if parameter["name"] == old {
            out["name"] = json!(new);
        }
    }
    out["schema"] = flatten(&parameter["schema"], components);
    out
}

/// A response with its body as JSON: its links point at operations Flow does not have, and
/// External Services ignores response headers, so neither is kept.
fn rewrite_response(response: &Value, components: &Map<String, Value>) -> Value {
    let mut out = json!({ "description": response["description"] });
    if let Some(schema) = json_schema(&response["content"]) {
        out["content"] = json!({ "application/json": { "schema": flatten(schema, components) } });
    }
    out
}

/// The schema of a content map's JSON entry (`application/json` or `…+json`).
fn json_schema(content: &Value) -> Option<&Value> {
    content
        .as_object()?
        .iter()
        .find(|(media, _)| media.as_str() == "application/json" || media.ends_with("+json"))
        .map(|(_, media)| &media["schema"])
}

/// A schema with its references inlined and in the subset Flow takes.
fn flatten(schema: &Value, components: &Map<String, Value>) -> Value {
    flatten_property(schema, components).expect("a top-level schema is not a free-form object")
}

/// `flatten`, or `None` for a free-form object, which Flow cannot fill.
fn flatten_property(schema: &Value, components: &Map<String, Value>) -> Option<Value> {
    let schema = resolve(schema, components);
    let mut out = Map::new();
    for keyword in KEPT_KEYWORDS {
        if let Some(value) = schema.get(keyword) {
            out.insert(keyword.into(), value.clone());
        }
    }
    let kind = single_type(&schema);
    out.insert("type".into(), json!(kind));
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        // Flow has no 64-bit or unsigned inputs, and every count here fits 32 bits.
        let format = if kind == "integer" { "int32" } else { format };
        if KEPT_FORMATS.contains(&format) {
            out.insert("format".into(), json!(format));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        let said = out.get("description").and_then(Value::as_str).unwrap_or("");
        let description = format!("{said} One of: {}.", values.join(", "));
        out.insert("description".into(), json!(description.trim_start()));
    }
    if let Some(items) = schema.get("items") {
        out.insert("items".into(), flatten(items, components));
    }
    if kind == "object" {
        let properties = schema.get("properties").and_then(Value::as_object)?;
        let properties: Map<String, Value> = properties
            .iter()
            .filter_map(|(name, p)| Some((name.clone(), flatten_property(p, components)?)))
            .collect();
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            let required: Vec<&Value> = required
                .iter()
                .filter(|r| r.as_str().is_some_and(|r| properties.contains_key(r)))
                .collect();
            out.insert("required".into(), json!(required));
        }
        out.insert("properties".into(), properties.into());
    }
    Some(out.into())
}

/// The schema itself: a `$ref` replaced by its component (the reference's own description
/// wins), an optional value's `oneOf` by its one non-null branch.
fn resolve(schema: &Value, components: &Map<String, Value>) -> Map<String, Value> {
    let mut own = schema.as_object().cloned().unwrap_or_default();
    let target = if let Some(reference) = own.remove("$ref") {
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .expect("references name components");
        components[name].clone()
    } else if let Some(branches) = own.remove("oneOf").or_else(|| own.remove("anyOf")) {
        let mut branches = branches
            .as_array()
            .expect("oneOf is a list")
            .iter()
            .filter(|b| b["type"] != "null")
            .cloned();
        let branch = branches.next().expect("a branch that is not null");
        assert!(
            branches.next().is_none(),
            "a union of several types has no Flow type: {schema}"
        );
        branch
    } else {
        return own;
    };
    let mut resolved = resolve(&target, components);
    resolved.extend(own);
    resolved
}

/// The one type a schema has, once `null` is taken out of a 3.1 type list.
fn single_type(schema: &Map<String, Value>) -> &str {
    let kind = match &schema["type"] {
        Value::Array(kinds) => {
            let mut kinds = kinds.iter().filter(|k| *k != "null");
            let kind = kinds.next();
            assert!(kinds.next().is_none(), "several types: {schema:?}");
            kind
        }
        kind => Some(kind),
    };
    let kind = kind
        .and_then(Value::as_str)
        .expect("every schema has a type");
    assert!(
        kind != "number",
        "HTTP Callout actions take no floating-point numbers: {schema:?}"
    );
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_reference_becomes_its_component_with_the_references_description() {
        let components = json!({
            "State": {"type": "string", "enum": ["queued", "sent"], "description": "A state."}
        });
        let schema = json!({
            "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/State"}],
            "description": "Where it is."
        });
        assert_eq!(
            flatten(&schema, components.as_object().unwrap()),
            json!({"type": "string", "description": "Where it is. One of: queued, sent."})
        );
    }

    #[test]
    fn free_form_objects_are_left_out_and_no_longer_required() {
        let schema = json!({
            "type": "object",
            "required": ["to", "vars"],
            "additionalProperties": false,
            "properties": {
                "to": {"type": "string", "format": "phone"},
                "vars": {"type": ["object", "null"]},
                "count": {"type": "integer", "format": "int64", "minimum": 0}
            }
        });
        assert_eq!(
            flatten(&schema, &Map::new()),
            json!({
                "type": "object",
                "required": ["to"],
                "properties": {
                    "to": {"type": "string"},
                    "count": {"type": "integer", "format": "int32", "minimum": 0}
                }
            })
        );
    }
}
