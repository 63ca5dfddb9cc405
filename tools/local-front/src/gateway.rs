//! A stand-in for API Gateway's HTTP API: each request is turned into the payload-v2 event API
//! Gateway would send, converted by `lambda_http` exactly as in Lambda, and handed to the
//! function's handler; the handler's response goes back to the client unchanged, but for the CORS
//! headers API Gateway adds when the template configures `CorsConfiguration` (emulated here from
//! `ALLOWED_ORIGINS`: preflights answered by the gateway itself, GET only, `authorization` only).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use lambda_http::request::LambdaRequest;
use lambda_http::{BoxFuture, Request};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use crate::live::LiveFront;
use crate::routes::{TemplateRoute, template_routes};

/// A function's handler, as the Lambda runtime would call it.
pub type Handler = Arc<
    dyn Fn(Request) -> BoxFuture<'static, Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>>
        + Send
        + Sync,
>;

type PathParams = Vec<(String, String)>;

/// API Gateway's own payload limit.
const MAX_PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
/// API Gateway's HTTP API integration timeout.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the template's `CorsConfiguration` allows: reads, with a token, cached ten minutes.
const CORS_ALLOW_METHODS: &str = "GET";
const CORS_ALLOW_HEADERS: &str = "authorization";
const CORS_EXPOSE_HEADERS: &str = "x-ratelimit-limit,x-ratelimit-remaining,x-ratelimit-reset,retry-after,x-request-id";
const CORS_MAX_AGE_SECONDS: &str = "600";

pub struct Gateway {
    routes: Vec<(TemplateRoute, Handler)>,
    live: Option<Arc<LiveFront>>,
    allowed_origins: Vec<String>,
}

/// The origins of a comma-separated `ALLOWED_ORIGINS` (none when unset or empty).
pub fn allowed_origins(setting: Option<&str>) -> Vec<String> {
    setting
        .unwrap_or_default()
        .split(',')
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect()
}

impl Gateway {
    /// Pairs every route of the template with its binary's handler; a route whose binary has no
    /// handler, or a handler no route uses, is an error, so the front never drifts from the template.
    pub fn new(template: &str, mut handlers: HashMap<String, Handler>) -> Result<Self, String> {
        let mut routes = Vec::new();
        let mut used = Vec::new();
        for route in template_routes(template)? {
            let handler = handlers
                .get(&route.binary)
                .cloned()
                .ok_or_else(|| format!("{}: no local handler for binary {:?}", route.key(), route.binary))?;
            used.push(route.binary.clone());
            routes.push((route, handler));
        }
        handlers.retain(|binary, _| !used.contains(binary));
        if let Some(binary) = handlers.keys().next() {
            return Err(format!("handler {binary:?} has no route in template.yaml"));
        }
        Ok(Self {
            routes,
            live: None,
            allowed_origins: Vec::new(),
        })
    }

    /// Answers CORS for these origins, as API Gateway does with the template's `CorsConfiguration`.
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// Also serves the WebSocket API and its management API.
    pub fn with_live(mut self, live: Arc<LiveFront>) -> Self {
        self.live = Some(live);
        self
    }

    pub fn route_keys(&self) -> Vec<String> {
        self.routes.iter().map(|(route, _)| route.key()).collect()
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.respond(req, peer).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "connection closed");
                }
            });
        }
    }

    async fn respond(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> hyper::Response<Full<Bytes>> {
        if self.allowed_origins.is_empty() {
            return self.invoke(req, peer).await;
        }
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|value| value.to_str().ok())
            .filter(|origin| self.allowed_origins.iter().any(|allowed| allowed == origin))
            .map(str::to_owned);
        if req.method() == Method::OPTIONS && req.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD) {
            return preflight(origin.as_deref(), req.headers());
        }
        let mut response = self.invoke(req, peer).await;
        if let Some(origin) = origin {
            add_cors_headers(response.headers_mut(), &origin);
        }
        response
    }

    async fn invoke(&self, req: hyper::Request<Incoming>, peer: SocketAddr) -> hyper::Response<Full<Bytes>> {
        if let Some(live) = &self.live
            && LiveFront::serves(req.method(), req.uri().path())
        {
            return live.respond(req, peer).await;
        }
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (parts, body) = req.into_parts();
        let Some((route, params, handler)) = self.find(&parts.method, parts.uri.path()) else {
            return plain(StatusCode::NOT_FOUND, "Not Found", &request_id);
        };
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_PAYLOAD_BYTES) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", &request_id);
        }
        let Ok(body) = Limited::new(body, MAX_PAYLOAD_BYTES).collect().await else {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", &request_id);
        };
        let event = api_gateway_event(&parts, route, &params, &body.to_bytes(), peer, &request_id);
        let request: Request = match serde_json::from_value::<LambdaRequest>(event) {
            Ok(lambda_request) => lambda_request.into(),
            Err(err) => {
                tracing::error!(error = %err, "could not build the Lambda event");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &request_id);
            }
        };
        let invocation = tokio::spawn(tokio::time::timeout(INTEGRATION_TIMEOUT, handler(request)));
        match invocation.await {
            Ok(Ok(Ok(response))) => to_hyper(response, &request_id),
            Ok(Ok(Err(err))) => {
                tracing::error!(error = %err, route = %route.key(), "handler returned an error");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &request_id)
            }
            Ok(Err(_elapsed)) => plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &request_id),
            Err(join_error) => {
                tracing::error!(error = %join_error, route = %route.key(), "handler panicked");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &request_id)
            }
        }
    }

    fn find(&self, method: &Method, path: &str) -> Option<(&TemplateRoute, PathParams, Handler)> {
        self.routes.iter().find_map(|(route, handler)| {
            route
                .matches(method, path)
                .map(|params| (route, params, handler.clone()))
        })
    }
}

/// API Gateway's answer to a preflight: 204, with the permissions only for an allowed origin
/// asking for an allowed method and headers (the browser then refuses the request itself).
fn preflight(origin: Option<&str>, headers: &HeaderMap) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let asked = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let method_allowed = asked(http::header::ACCESS_CONTROL_REQUEST_METHOD) == CORS_ALLOW_METHODS;
    let headers_allowed = asked(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .split(',')
        .map(str::trim)
        .all(|name| name.is_empty() || name.eq_ignore_ascii_case(CORS_ALLOW_HEADERS));
    if let Some(origin) = origin.filter(|_| method_allowed && headers_allowed) {
        let out = response.headers_mut();
        add_cors_headers(out, origin);
        out.insert(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            http::HeaderValue::from_static(CORS_ALLOW_METHODS),
        );
        out.insert(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            http::HeaderValue::from_static(CORS_ALLOW_HEADERS),
        );
        out.insert(
            http::header::ACCESS_CONTROL_MAX_AGE,
            http::HeaderValue::from_static(CORS_MAX_AGE_SECONDS),
        );
    }
    response
}

fn add_cors_headers(headers: &mut HeaderMap, origin: &str) {
    if let Ok(origin) = http::HeaderValue::from_str(origin) {
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.insert(
        http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        http::HeaderValue::from_static(CORS_EXPOSE_HEADERS),
    );
    headers.append(http::header::VARY, http::HeaderValue::from_static("origin"));
}

/// The payload-format-2.0 event API Gateway's HTTP API sends for this request.
fn api_gateway_event(
    parts: &http::request::Parts,
    route: &TemplateRoute,
    params: &[(String, String)],
    body: &[u8],
    peer: SocketAddr,
    request_id: &str,
) -> Value {
    let now = chrono::Utc::now();
    let raw_query = parts.uri.query().unwrap_or_default();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key(),
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": joined_headers(&parts.headers),
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": route.key(),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": is_base64,
    });
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    if !params.is_empty() {
        event["pathParameters"] = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(percent_decode(v))))
            .collect::<Map<_, _>>()
            .into();
    }
    let query = query_parameters(raw_query);
    if !query.is_empty() {
        event["queryStringParameters"] = query.into();
    }
    event
}

/// Header names in lower case; repeated headers joined with commas, as API Gateway does.
pub(crate) fn joined_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                out.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    out
}

pub(crate) fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match out.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_hyper(response: lambda_http::Response<lambda_http::Body>, request_id: &str) -> hyper::Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    if let Ok(id) = request_id.parse() {
        parts.headers.insert("apigw-requestid", id);
    }
    hyper::Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}

/// API Gateway's own error responses: `{"message": "..."}`.
fn plain(status: StatusCode, message: &str, request_id: &str) -> hyper::Response<Full<Bytes>> {
    let body = json!({ "message": message }).to_string();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = request_id.parse() {
        response.headers_mut().insert("apigw-requestid", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded_and_repeats_joined() {
        let q = query_parameters("since=2025-09-08T00%3A00%3A00Z&group_by=user&group_by=day&x=a+b");
        assert_eq!(q["since"], "2025-09-08T00:00:00Z");
        assert_eq!(q["group_by"], "user,day");
        assert_eq!(q["x"], "a b");
    }

    #[test]
    fn allowed_origins_are_a_trimmed_comma_separated_list() {
        assert!(allowed_origins(None).is_empty());
        assert!(allowed_origins(Some(" , ")).is_empty());
        assert_eq!(
            allowed_origins(Some("https://a.test, https://b.test/")),
            ["https://a.test", "https://b.test"]
        );
    }

    #[test]
    fn broken_percent_escapes_are_kept() {
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
