//! The OpenAPI 3.1 document, generated from the handlers.

use utoipa::{
    openapi::{
        header::HeaderBuilder,
        link::LinkBuilder,
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
    },
    Modify, OpenApi,
};

use super::{
    links, messages, numbers, opt_outs, otp, problem, reports, sandbox, usage, writebacks,
};
use crate::inbound::{kintone, kintone_notifications, record_action, salesforce, twilio};

#[derive(OpenApi)]
#[openapi(
    info(title = "tsunagi", description = "Connects CRMs to SMS: durable delivery, OTP, CRM write-back."),
    paths(
        messages::create,
        messages::list,
        messages::show,
        messages::cancel,
        otp::start,
        otp::show,
        otp::check,
        otp::verify,
        numbers::list,
        numbers::add,
        numbers::show,
        numbers::remove,
        opt_outs::list,
        opt_outs::add,
        opt_outs::remove,
        opt_outs::reviews,
        opt_outs::settle,
        usage::usage,
        reports::delivery,
        links::redirect,
        sandbox::inbox,
        sandbox::reply,
        salesforce::outbound_message,
        salesforce::flow,
        record_action::send_for_record,
        kintone::webhook,
        kintone_notifications::show,
        twilio::status,
        twilio::sms,
        writebacks::list,
    ),
    components(schemas(problem::Problem, problem::ErrorCode)),
    modifiers(&BearerAuth, &CommonProblems, &Links),
    tags(
        (name = "messages", description = "Send SMS and follow their delivery"),
        (name = "otp", description = "One-time passwords with carrier-grade anti-fraud defaults"),
        (name = "numbers", description = "Managed allow and deny lists, and opt-outs"),
        (name = "usage", description = "Usage for billing (delivered messages only) and delivery reports"),
        (name = "links", description = "Short links the handsets follow; no API key"),
        (name = "sandbox", description = "Simulated handsets of the sandbox provider"),
        (name = "writebacks", description = "What dry-run write-back would have written to CRM records"),
        (name = "inbound", description = "CRMs and Twilio calling in; the secret is in the path or the signature, not an API key. Looking up what a kintone notification was answered takes an API key"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The problems every route can answer, added in one place rather than on each handler.
struct CommonProblems;

impl Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_common(operation);
            }
        }
    }
}

fn add_common(operation: &mut Operation) {
    let mut common = vec![
        ("401", "unauthorized: no valid API key"),
        (
            "503",
            "unavailable: the store (or a lookup it needs) cannot answer; nothing was changed",
        ),
    ];
    if operation.request_body.is_some() {
        common.extend([
            ("400", "invalid_request: the body is not valid JSON"),
            ("413", "payload_too_large: the body is over 64 KiB"),
            (
                "415",
                "unsupported_media_type: the body is not sent as application/json",
            ),
            (
                "422",
                "invalid_request: an unknown, missing or ill-typed field (`field` names it)",
            ),
        ]);
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(problem(description)));
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response {
            if response.description.is_empty() {
                response.description = default_description(status).into();
            }
            if status == "429" {
                response.headers.insert(
                    "Retry-After".into(),
                    HeaderBuilder::new()
                        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                );
            }
        }
    }
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" | "201" => "Success",
        "204" => "Done; no content",
        "401" => "unauthorized: no valid API key",
        "404" => "not_found",
        "422" => "A rule refuses a field (`field` names it)",
        _ => "See the problem's `code`",
    }
}

/// How a created resource is followed, so clients (and schemathesis' stateful tests) can chain calls.
struct Links;

/// (path, method, status, link name, target operation, parameters as name → runtime expression)
type LinkSpec = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const LINKS: [LinkSpec; 6] = [
    (
        "/v1/messages",
        "post",
        "202",
        "GetMessage",
        "getMessage",
        &[("id", "$response.body#/id")],
    ),
    (
        "/v1/messages",
        "post",
        "202",
        "CancelMessage",
        "cancelMessage",
        &[("id", "$response.body#/id")],
    ),
    (
        "/v1/otp",
        "post",
        "201",
        "GetOtp",
        "getOtp",
        &[("id", "$response.body#/verification_id")],
    ),
    (
        "/v1/otp",
        "post",
        "201",
        "CheckOtp",
        "checkOtp",
        &[("id", "$response.body#/verification_id")],
    ),
    (
        "/v1/numbers/{list}",
        "post",
        "201",
        "GetNumber",
        "getNumber",
        &[
            ("list", "$request.path.list"),
            ("number", "$response.body#/id"),
        ],
    ),
    (
        "/v1/numbers/{list}",
        "post",
        "201",
        "RemoveNumber",
        "removeNumber",
        &[
            ("list", "$request.path.list"),
            ("number", "$response.body#/id"),
        ],
    ),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, method, status, name, target, parameters) in LINKS {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let operation = match method {
                "post" => item.post.as_mut(),
                _ => item.get.as_mut(),
            };
            let Some(RefOr::T(response)) =
                operation.and_then(|o| o.responses.responses.get_mut(status))
            else {
                continue;
            };
            let link = parameters
                .iter()
                .fold(LinkBuilder::new().operation_id(target), |link, (k, v)| {
                    link.parameter(*k, *v)
                })
                .build();
            response.links.insert(name.to_string(), RefOr::T(link));
        }
    }
}

/// The document served at `/openapi.json` and committed as `schemas/openapi.json`.
pub fn document() -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
    camel_case_links(&mut document);
    document
}

/// utoipa 5 writes a link's `operationId` as `operation_id`, which no OpenAPI reader knows.
fn camel_case_links(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(links) = map.get_mut("links").and_then(|l| l.as_object_mut()) {
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    if let Some(id) = link.remove("operation_id") {
                        link.insert("operationId".into(), id);
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}
