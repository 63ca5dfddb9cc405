//! OTLP/HTTP 1.x as a receiver speaks it: protobuf (`application/x-protobuf`) or OTLP JSON
//! (`application/json`) bodies, optionally gzip-compressed; answers in the request's own
//! encoding — an `Export…ServiceResponse` on success (with `partial_success` when points were
//! refused), a `google.rpc.Status` on failure, with `Retry-After` on 429 and 503 so exporters
//! retry, and never for a 400 (which they must not retry).
//!
//! Decompression is bounded twice before anything is parsed: at most the route's body limit
//! (413 past it) and at most [`MAX_COMPRESSION_RATIO`] times the compressed size (400 past it),
//! so a small bomb costs neither memory nor much CPU.

use std::io::Read;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;
use crate::http::response::Reply;

/// Most bytes a gzip body may expand to per compressed byte (real exports compress 4–15×).
pub const MAX_COMPRESSION_RATIO: usize = 200;

/// The body encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type` (parameters ignored); `None` for any other type.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        match value.split(';').next()?.trim().to_ascii_lowercase().as_str() {
            "application/x-protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    fn encode<T: prost::Message + Serialize>(self, message: &T) -> Vec<u8> {
        match self {
            Encoding::Protobuf => message.encode_to_vec(),
            Encoding::Json => {
                // The generated types write an absent `partialSuccess` as `null`; OTLP JSON omits it.
                let mut value = serde_json::to_value(message).unwrap_or_default();
                if let serde_json::Value::Object(fields) = &mut value {
                    fields.retain(|_, v| !v.is_null());
                }
                serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
            }
        }
    }
}

/// `google.rpc.Status`, the body of every OTLP/HTTP failure (not among `opentelemetry-proto`'s
/// generated types, so declared here with the same field numbers).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// Whether the body is gzip-compressed; `Err` for an encoding OTLP does not define.
fn is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        for coding in value.to_str().map_err(|_| ApiError::UnsupportedEncoding)?.split(',') {
            match coding.trim().to_ascii_lowercase().as_str() {
                "" | "identity" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                _ => return Err(ApiError::UnsupportedEncoding),
            }
        }
    }
    Ok(gzip)
}

/// The body as sent, or decompressed within `max_bytes` and [`MAX_COMPRESSION_RATIO`].
pub fn body<'a>(
    headers: &HeaderMap,
    bytes: &'a [u8],
    max_bytes: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, ApiError> {
    if bytes.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge { limit: max_bytes });
    }
    if !is_gzip(headers)? {
        return Ok(bytes.into());
    }
    let by_ratio = bytes.len().saturating_mul(MAX_COMPRESSION_RATIO);
    let cap = max_bytes.min(by_ratio);
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::validation("body", "Not valid gzip data"))?;
    if out.len() > cap {
        return Err(if cap == max_bytes {
            ApiError::PayloadTooLarge { limit: max_bytes }
        } else {
            ApiError::validation(
                "body",
                &format!("Compressed more than {MAX_COMPRESSION_RATIO}:1: refused as a decompression bomb"),
            )
        });
    }
    Ok(out.into())
}

/// The export request in `bytes`, or a 400 that says what is wrong with it.
pub fn decode<T: prost::Message + Default + DeserializeOwned>(encoding: Encoding, bytes: &[u8]) -> Result<T, ApiError> {
    let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("request");
    match encoding {
        Encoding::Protobuf => {
            T::decode(bytes).map_err(|e| ApiError::validation("body", &format!("Not a protobuf {what}: {e}")))
        }
        // serde would also read a struct from an array: OTLP JSON is an object.
        Encoding::Json if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => Err(ApiError::validation(
            "body",
            &format!("Not an OTLP JSON {what}: must be a JSON object"),
        )),
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::validation("body", &format!("Not an OTLP JSON {what}: {e}"))),
    }
}

/// `200` with the export's response in the request's encoding.
pub fn success<T: prost::Message + Serialize>(reply: &Reply, encoding: Encoding, message: &T) -> Response<Body> {
    reply.bytes(StatusCode::OK, encoding.content_type(), encoding.encode(message))
}

/// The error's status and headers (`Retry-After`, rate limit) with a `google.rpc.Status` body,
/// in the request's encoding (JSON when it had none we read).
pub fn failure(reply: &Reply, error: &ApiError, encoding: Option<Encoding>) -> Response<Body> {
    let encoding = encoding.unwrap_or(Encoding::Json);
    let message = match error {
        ApiError::UnsupportedMediaType => "Content-Type must be application/x-protobuf or application/json".into(),
        ApiError::UnsupportedEncoding => "Content-Encoding must be gzip or identity".into(),
        ApiError::Validation(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.public_message(),
    };
    let status = RpcStatus {
        code: grpc_code(error.status()),
        message,
    };
    let mut response = reply.error(error);
    *response.body_mut() = Body::from(encoding.encode(&status));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    response
}

/// The gRPC code OTLP pairs with an HTTP status.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_two_otlp_content_types_are_recognised() {
        assert_eq!(
            Encoding::of(&headers(&[("content-type", "application/x-protobuf")])),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::of(&headers(&[("content-type", "Application/JSON; charset=utf-8")])),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::of(&headers(&[("content-type", "text/plain")])), None);
        assert_eq!(Encoding::of(&HeaderMap::new()), None);
    }

    #[test]
    fn a_gzip_body_is_decompressed() {
        let text = br#"{"resourceMetrics":[]}"#.repeat(10);
        let compressed = gzip(&text);
        let out = body(&headers(&[("content-encoding", "gzip")]), &compressed, 1 << 20).unwrap();
        assert_eq!(out.as_ref(), text.as_slice());
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_expanded() {
        // 16 MiB of zeros compress to about 16 KiB: over the ratio, under the body limit.
        let bomb = gzip(&vec![0u8; 16 << 20]);
        let err = body(&headers(&[("content-encoding", "gzip")]), &bomb, 4 << 20).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err:?}");
        // Within the ratio but past the body limit once expanded: 413.
        let big = gzip(
            &(0..(3u32 << 19))
                .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
                .collect::<Vec<_>>(),
        );
        let err = body(&headers(&[("content-encoding", "gzip")]), &big, 1 << 20).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE, "{err:?}");
    }

    #[test]
    fn other_encodings_and_broken_gzip_are_refused_by_name() {
        let err = body(&headers(&[("content-encoding", "br")]), b"x", 100).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let err = body(&headers(&[("content-encoding", "gzip")]), b"not gzip", 100).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = body(&HeaderMap::new(), &[0; 101], 100).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_failure_is_a_status_message_in_the_requests_encoding_with_retry_after_when_retryable() {
        let reply = Reply::start(None);
        let unavailable = ApiError::Unavailable {
            dependency: crate::http::error::Dependency::Database,
            detail: "connection refused at 10.0.0.1".into(),
        };
        let response = failure(&reply, &unavailable, Some(Encoding::Protobuf));
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let status = <RpcStatus as prost::Message>::decode(response.body().as_ref()).unwrap();
        assert_eq!(status.code, 14);
        assert!(!status.message.contains("10.0.0.1"), "{}", status.message);
        let bad = ApiError::validation("body", "Not a protobuf");
        let response = failure(&reply, &bad, Some(Encoding::Json));
        assert_eq!(response.status(), 400);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        let status: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(status["message"], "body: Not a protobuf");
    }
}
