//! Extractors whose rejections are problem documents that name the field and the expected
//! type, and never echo what the client sent.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ProblemField};

/// A JSON body, plus the SHA-256 of its bytes (for idempotent replays).
pub struct JsonBody<T> {
    pub value: T,
    pub sha256: [u8; 32],
}

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Field names are echoed only when they look like field names; anything else might be data.
fn safe_name(name: &str) -> Option<&str> {
    (!name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

/// Renders a JSON path, replacing any key that does not look like a field name.
fn safe_path(path: &serde_path_to_error::Path, drop_last_key: bool) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let segments: Vec<&Segment> = path.iter().collect();
    let keep = if drop_last_key {
        segments
            .iter()
            .rposition(|s| matches!(s, Segment::Map { .. }))
            .unwrap_or(segments.len())
    } else {
        segments.len()
    };
    for segment in segments.into_iter().take(keep) {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(safe_name(key).unwrap_or("(unknown field)"));
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() { ".".to_owned() } else { out }
}

fn between<'a>(text: &'a str, start: &str, end: char) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let rest = &text[i..];
    Some(&rest[..rest.find(end)?])
}

/// Rewrites serde's message (which may quote the value) into "what was expected".
pub(crate) fn describe_serde_error(path: &str, message: &str) -> ProblemField {
    let field = if path == "." || path.is_empty() {
        "(body)".to_owned()
    } else {
        path.to_owned()
    };
    if message.starts_with("unknown field") {
        // The unknown key itself is never echoed (a key can be personal data too); the known
        // field names are ours and are listed.
        let known = message
            .find(", expected ")
            .map(|i| &message[i + ", expected ".len()..])
            .map(|e| e.split(" at line ").next().unwrap_or(e))
            .filter(|e| e.starts_with("one of") || e.starts_with('`'))
            .map(|e| format!("only known fields ({e})"))
            .unwrap_or_else(|| "only known fields".to_owned());
        return ProblemField {
            field,
            expected: known,
        };
    }
    if message.starts_with("missing field") {
        let name = between(message, "missing field `", '`')
            .and_then(safe_name)
            .unwrap_or("?");
        let field = if field == "(body)" {
            name.to_owned()
        } else {
            format!("{field}.{name}")
        };
        return ProblemField {
            field,
            expected: "a value (this field is required)".into(),
        };
    }
    let expected = message
        .rfind(", expected ")
        .map(|i| &message[i + ", expected ".len()..])
        .map(|e| e.split(" at line ").next().unwrap_or(e))
        .map(|e| {
            if e.starts_with("struct ") || e.starts_with("a map") {
                "a JSON object".to_owned()
            } else if e.starts_with("variant identifier") || e.starts_with("one of") {
                e.replace("variant identifier", "one of the allowed values")
            } else {
                e.to_owned()
            }
        })
        .unwrap_or_else(|| "a valid value".to_owned());
    ProblemField { field, expected }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "Request body too large",
                    "the request body exceeds the size limit",
                )
            } else {
                ApiError::bad_request("the request body could not be read")
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => v,
            Err(err) => {
                let inner = err.inner();
                return Err(match inner.classify() {
                    serde_json::error::Category::Data => {
                        let mut e = ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "validation",
                            "The request has invalid fields",
                            "",
                        );
                        let message = inner.to_string();
                        let unknown_key = message.starts_with("unknown field");
                        let field =
                            describe_serde_error(&safe_path(err.path(), unknown_key), &message);
                        e.detail = format!("`{}`: expected {}", field.field, field.expected);
                        e.errors.push(field);
                        e
                    }
                    _ => ApiError::bad_request(format!(
                        "the body is not valid JSON (line {}, column {})",
                        inner.line(),
                        inner.column()
                    )),
                });
            }
        };
        de.end().map_err(|_| {
            ApiError::bad_request("the body has trailing characters after the JSON value")
        })?;
        Ok(Self {
            value,
            sha256: Sha256::digest(&bytes).into(),
        })
    }
}

/// The optional `Idempotency-Key` header of a create request.
pub struct IdempotencyKey(pub Option<[u8; 32]>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let text = value
            .to_str()
            .ok()
            .filter(|t| !t.is_empty() && t.len() <= 255 && t.chars().all(|c| c.is_ascii_graphic()));
        match text {
            Some(t) => Ok(Self(Some(Sha256::digest(t.as_bytes()).into()))),
            None => Err(ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_the_value() {
        let f = describe_serde_error(
            "birth_date",
            "invalid type: integer `19840702`, expected a string at line 1 column 20",
        );
        assert_eq!(f.field, "birth_date");
        assert_eq!(f.expected, "a string");
        let f = describe_serde_error(
            ".",
            "unknown field `Quintanilla`, expected one of `given_name`, `family_name`",
        );
        assert_eq!(f.field, "(body)");
        assert!(!f.expected.contains("Quintanilla"));
        assert!(f.expected.contains("`given_name`"));
        let f = describe_serde_error(
            "contacts[0].kind",
            "unknown variant `fax`, expected `phone` or `email`",
        );
        assert_eq!(f.expected, "`phone` or `email`");
        assert!(!f.expected.contains("fax"));
        let f = describe_serde_error(".", "missing field `given_name`");
        assert_eq!(f.field, "given_name");
        let f = describe_serde_error(".", "invalid type: sequence, expected struct PatientCreate");
        assert_eq!(f.expected, "a JSON object");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
