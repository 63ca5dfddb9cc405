//! A stand-in for API Gateway's WebSocket API and its management API. A WebSocket handshake on
//! [`LIVE_PATH`] becomes the `$connect` event the `live-connection` function receives, and is
//! refused with its status unless that is 200; a closed socket becomes `$disconnect`.
//! `POST /@connections/{id}` sends its body to the socket (410 `GoneException` when there is
//! none) and `DELETE /@connections/{id}` closes it — what `PostToConnection` and
//! `DeleteConnection` do — so the functions' own pusher reaches local clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use lambda_runtime::LambdaEvent;
use live_connection::LiveConnection;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::gateway::{joined_headers, percent_decode, query_parameters};

/// Where the local WebSocket API is served (`ws://127.0.0.1:3000/live`).
pub const LIVE_PATH: &str = "/live";
/// The management API's path prefix; the local front is the management endpoint.
pub const CONNECTIONS_PATH: &str = "/@connections/";
/// API Gateway's largest WebSocket message.
const MAX_MESSAGE_BYTES: usize = 128 * 1024;

type Response = hyper::Response<Full<Bytes>>;

pub struct LiveFront {
    connection: Arc<LiveConnection>,
    sockets: Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>,
}

impl LiveFront {
    pub fn new(connection: Arc<LiveConnection>) -> Arc<Self> {
        Arc::new(Self {
            connection,
            sockets: Mutex::new(HashMap::new()),
        })
    }

    /// Whether this front answers the request (and [`LiveFront::respond`] must be called).
    pub fn serves(method: &Method, path: &str) -> bool {
        (method == Method::GET && path == LIVE_PATH) || path.starts_with(CONNECTIONS_PATH)
    }

    pub async fn respond(self: &Arc<Self>, req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
        match req.uri().path().strip_prefix(CONNECTIONS_PATH) {
            Some(id) => {
                // A path segment: `+` is itself, not a space.
                let id = percent_decode(&id.replace('+', "%2B"));
                self.manage(req, &id).await
            }
            None => self.upgrade(req, peer).await,
        }
    }

    /// The WebSocket handshake: `$connect` decides, then the socket is served until it closes.
    async fn upgrade(self: &Arc<Self>, mut req: hyper::Request<Incoming>, peer: SocketAddr) -> Response {
        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
            return message(StatusCode::BAD_REQUEST, "Expected a WebSocket handshake");
        };
        let connection_id = new_connection_id();
        let connect = self
            .event("$connect", "CONNECT", &connection_id, Some((&req, peer)))
            .await;
        if connect.status_code != 200 {
            return from_lambda(connect);
        }
        let (outbox, inbox) = mpsc::unbounded_channel();
        lock(&self.sockets).insert(connection_id.clone(), outbox);
        let upgrade = hyper::upgrade::on(&mut req);
        let front = self.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                    serve_socket(socket, inbox).await;
                }
                Err(err) => tracing::debug!(error = %err, "WebSocket upgrade failed"),
            }
            lock(&front.sockets).remove(&connection_id);
            front.event("$disconnect", "DISCONNECT", &connection_id, None).await;
        });
        hyper::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .body(Full::new(Bytes::new()))
            .expect("static response")
    }

    /// `PostToConnection` and `DeleteConnection`.
    async fn manage(&self, req: hyper::Request<Incoming>, connection_id: &str) -> Response {
        let method = req.method().clone();
        let Some(outbox) = lock(&self.sockets).get(connection_id).cloned() else {
            return gone();
        };
        let sent = match method {
            Method::POST => {
                let Ok(body) = Limited::new(req.into_body(), MAX_MESSAGE_BYTES).collect().await else {
                    return message(StatusCode::PAYLOAD_TOO_LARGE, "Message too long");
                };
                let body = body.to_bytes();
                let frame = match String::from_utf8(body.to_vec()) {
                    Ok(text) => Message::text(text),
                    Err(_) => Message::binary(body),
                };
                outbox.send(frame)
            }
            Method::DELETE => outbox.send(Message::Close(None)),
            _ => return message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
        };
        match sent {
            Ok(()) => hyper::Response::new(Full::new(Bytes::new())),
            Err(_) => gone(),
        }
    }

    /// Calls the `live-connection` function with the event API Gateway would send.
    async fn event(
        &self,
        route: &str,
        event_type: &str,
        connection_id: &str,
        handshake: Option<(&hyper::Request<Incoming>, SocketAddr)>,
    ) -> ApiGatewayProxyResponse {
        let now = chrono::Utc::now();
        let mut event = json!({
            "requestContext": {
                "routeKey": route,
                "eventType": event_type,
                "connectionId": connection_id,
                "messageDirection": "IN",
                "stage": "local",
                "apiId": "local",
                "domainName": "127.0.0.1",
                "requestId": uuid::Uuid::new_v4().simple().to_string(),
                "connectedAt": now.timestamp_millis(),
                "requestTimeEpoch": now.timestamp_millis(),
            },
            "isBase64Encoded": false,
        });
        if let Some((req, peer)) = handshake {
            event["headers"] = joined_headers(req.headers()).into();
            event["queryStringParameters"] = query_parameters(req.uri().query().unwrap_or_default()).into();
            event["requestContext"]["identity"] = json!({ "sourceIp": peer.ip().to_string() });
        }
        let request: ApiGatewayWebsocketProxyRequest = match serde_json::from_value(event) {
            Ok(request) => request,
            Err(err) => {
                tracing::error!(error = %err, "could not build the WebSocket event");
                return lambda_answer(500);
            }
        };
        let invocation = LambdaEvent::new(request, lambda_runtime::Context::default());
        match live_connection::handle(&self.connection, invocation).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(error = %err, route, "live-connection returned an error");
                lambda_answer(500)
            }
        }
    }
}

/// Forwards the management API's messages to the socket until either side closes.
async fn serve_socket(
    socket: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    mut inbox: mpsc::UnboundedReceiver<Message>,
) {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            outgoing = inbox.recv() => {
                let Some(frame) = outgoing else { break };
                let closing = matches!(frame, Message::Close(_));
                if sink.send(frame).await.is_err() || closing {
                    break;
                }
            }
            incoming = stream.next() => match incoming {
                // No `$default` route is deployed: client messages are not routed anywhere.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// An id shaped like API Gateway's (`L0SM9cOFvHcCIhw=`), without `/` so it fits a path.
fn new_connection_id() -> String {
    base64::engine::general_purpose::URL_SAFE.encode(&uuid::Uuid::new_v4().as_bytes()[..10])
}

fn gone() -> Response {
    let mut response = message(StatusCode::GONE, "Connection is gone");
    response
        .headers_mut()
        .insert("x-amzn-errortype", http::HeaderValue::from_static("GoneException"));
    response
}

fn message(status: StatusCode, text: &str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(json!({ "message": text }).to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn lambda_answer(status: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response
}

/// A refused handshake answers the function's status and body, as API Gateway does.
fn from_lambda(answer: ApiGatewayProxyResponse) -> Response {
    let status = u16::try_from(answer.status_code)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match answer.body {
        Some(Body::Text(text)) => Bytes::from(text),
        Some(Body::Binary(bytes)) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = answer.headers;
    response
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connects to a WebSocket API (`ws://` only) and hands over each text message received.
pub async fn watch(url: &str) -> Result<mpsc::UnboundedReceiver<String>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let (mut socket, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|err| match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                format!("handshake refused: {}", response.status())
            }
            other => other.to_string(),
        })?;
    let (updates, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(text) = frame
                && updates.send(text.to_string()).is_err()
            {
                break;
            }
        }
    });
    Ok(received)
}
