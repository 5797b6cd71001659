//! JSON request bodies: another media type is a 415, malformed JSON a 400, a wrong or unknown
//! field a 422 naming it.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequest, Request},
    http::{header, StatusCode},
};
use serde::de::DeserializeOwned;

use super::problem::{ApiError, ErrorCode};

/// The raw body, or a problem when it could not be read (too large, cut short).
fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is larger than this route takes (64 KiB; 1 MiB for a Salesforce Flow call)",
            )
        } else {
            ApiError::new(e.status(), ErrorCode::InvalidRequest, e.body_text())
        }
    })
}

/// A JSON request body parsed into `T`, with the bytes it came from (idempotency hashes them).
///
/// An extractor rather than a middleware, so that a method a route does not have is still
/// answered 405 before the body is looked at.
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The body as received.
    pub bytes: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            )
            .field("Content-Type"));
        }
        let bytes = read(Bytes::from_request(request, state).await)?;
        let value = parse_json(&bytes)?;
        Ok(Self { value, bytes })
    }
}

/// `application/json` or a `+json` type, parameters such as `charset` aside.
fn is_json(value: Option<&header::HeaderValue>) -> bool {
    let Some(essence) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parse a JSON body into `T`, naming the offending field on failure.
fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        let path = e.path().to_string();
        let field = named_field(&message)
            .map(|name| {
                if path == name || path.ends_with(&format!(".{name}")) {
                    path.clone()
                } else if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            })
            .unwrap_or(path);
        let field = if field == "." { "(body)".into() } else { field };
        ApiError::unprocessable(ErrorCode::InvalidRequest, &field, strip_position(&message))
    })
}

/// serde names an unknown or missing field only in its message: "unknown field `x`, expected …".
fn named_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
        .and_then(|rest| rest.split('`').next())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        to: String,
        count: Option<u32>,
    }

    #[test]
    fn a_well_formed_body_parses() {
        let s: Sample = parse_json(&Bytes::from_static(br#"{"to":"x","count":2}"#)).unwrap();
        assert_eq!((s.to.as_str(), s.count), ("x", Some(2)));
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Sample>(&Bytes::from(body.to_string())).unwrap_err()
    }

    #[test]
    fn unknown_field_is_named() {
        let e = format!("{:?}", err(r#"{"to":"x","colour":1}"#));
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = format!("{:?}", err(r#"{"to":"x","count":"many"}"#));
        assert!(e.contains("field: Some(\"count\")"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = format!("{:?}", err(r#"{"count":1}"#));
        assert!(e.contains("field: Some(\"to\")"), "{e}");
    }

    #[test]
    fn json_media_types_are_recognised_with_parameters() {
        let json = |v: &'static str| is_json(Some(&header::HeaderValue::from_static(v)));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(json("application/merge-patch+json"));
        assert!(!json("text/plain"));
        assert!(!json("application/x-www-form-urlencoded"));
        assert!(!json("text/json+xml"));
        assert!(!is_json(None));
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let e = format!("{:?}", err(r#"{"to":"#));
        assert!(e.contains("400"), "{e}");
    }
}
