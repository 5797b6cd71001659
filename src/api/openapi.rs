//! The OpenAPI 3.1 document, generated from the handlers.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::{messages, numbers, otp, problem, sandbox};

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
        numbers::list,
        numbers::add,
        numbers::show,
        numbers::remove,
        sandbox::inbox,
        sandbox::reply,
    ),
    components(schemas(problem::Problem, problem::ErrorCode)),
    modifiers(&BearerAuth),
    tags(
        (name = "messages", description = "Send SMS and follow their delivery"),
        (name = "otp", description = "One-time passwords with carrier-grade anti-fraud defaults"),
        (name = "numbers", description = "Managed allow and deny lists"),
        (name = "sandbox", description = "Simulated handsets of the sandbox provider"),
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

/// The document served at `/openapi.json` and committed as `schemas/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
