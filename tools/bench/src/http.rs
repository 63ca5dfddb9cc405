//! The command-execution handler behind the local front, over HTTP/1.1 with keep-alive; and the
//! front and request helpers that the live-updates section shares.
//!
//! May use `stats` and `stack`, `local_front` and the HTTP client crates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Map, Value};

use crate::stack::{Sizes, Stack, env, env_for, spec_command, token};
use crate::stats::{Stats, ms};

/// Requests sent before the samples are kept.
pub const WARM_UP: usize = 200;

/// A kept-alive HTTP/1.1 connection to a front.
pub type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn measure(stack: &Stack, sizes: &Sizes, results: &mut Map<String, Value>) {
    let (addr, mut sender) = serve_front(stack, false).await;
    let token = token("bench-http", "bench-user");
    let mut samples = Vec::with_capacity(sizes.http);
    for i in 0..sizes.http + WARM_UP {
        let elapsed = post_command(&mut sender, addr, &token).await;
        if i >= WARM_UP {
            samples.push(ms(elapsed));
        }
    }
    results.insert("handler_over_http".into(), Stats::of(&samples).json(sizes.http));
}

/// A front serving the template's routes on a free port, with live updates when `live` names the
/// connections table; its address and a kept-alive HTTP connection to it.
pub async fn serve_front(stack: &Stack, live: bool) -> (SocketAddr, Connection) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut extra = vec![];
    if live {
        extra.push(("CONNECTIONS_TABLE_NAME", stack.connections_table.clone()));
        extra.push(("LIVE_UPDATES_ENDPOINT", format!("http://{addr}")));
    }
    let vars = env_for(stack, &extra);
    let aws = shared::app::aws_config().await;
    let front = local_front::Stack::from_env(&env(&vars), &aws).expect("stack");
    tokio::spawn(Arc::new(front.gateway().expect("gateway")).serve(listener));
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    (addr, sender)
}

/// One command execution over HTTP; its wall time.
pub async fn post_command(sender: &mut Connection, addr: SocketAddr, token: &str) -> Duration {
    let req = hyper::Request::post("/api/v1/metrics/command-execution")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(spec_command().to_string())))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let started = Instant::now();
    let response = sender.send_request(req).await.expect("send");
    let status = response.status();
    let _ = response.into_body().collect().await;
    assert_eq!(status, 201);
    started.elapsed()
}
