//! A minimal Lambda Runtime API, enough to run a function's release binary as Lambda would:
//! hand it events one at a time, collect its responses, and note when it first asks for work.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    events: VecDeque<(String, String)>,
    first_poll: Option<Instant>,
    responses: usize,
    errors: Vec<String>,
}

#[derive(Clone, Default)]
pub struct RuntimeApi {
    state: Arc<Mutex<State>>,
    event_ready: Arc<Notify>,
    answered: Arc<Notify>,
}

impl RuntimeApi {
    /// Serves the API on a free port until the task is dropped; returns its address.
    pub async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.route(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    pub fn push(&self, event: String) {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().events.push_back((id, event));
        self.event_ready.notify_one();
    }

    pub fn first_poll(&self) -> Option<Instant> {
        self.lock().first_poll
    }

    pub fn responses(&self) -> usize {
        self.lock().responses
    }

    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// Waits until `count` invocations have been answered (responses or errors).
    pub async fn wait_for(&self, count: usize) {
        loop {
            let answered = self.answered.notified();
            {
                let state = self.lock();
                if state.responses + state.errors.len() >= count {
                    return;
                }
            }
            answered.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn route(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if path.ends_with("/invocation/next") {
            return self.next().await;
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        {
            let mut state = self.lock();
            if path.ends_with("/response") {
                state.responses += 1;
            } else if path.ends_with("/error") {
                state.errors.push(String::from_utf8_lossy(&body).into_owned());
            }
        }
        self.answered.notify_waiters();
        let mut response = hyper::Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::ACCEPTED;
        response
    }

    async fn next(&self) -> hyper::Response<Full<Bytes>> {
        loop {
            let ready = self.event_ready.notified();
            let event = {
                let mut state = self.lock();
                state.first_poll.get_or_insert_with(Instant::now);
                state.events.pop_front()
            };
            if let Some((id, body)) = event {
                let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
                let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                let headers = response.headers_mut();
                headers.insert("lambda-runtime-aws-request-id", id.parse().expect("id"));
                headers.insert(
                    "lambda-runtime-deadline-ms",
                    deadline.to_string().parse().expect("deadline"),
                );
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:000000000000:function:bench"
                        .parse()
                        .expect("arn"),
                );
                headers.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000".parse().expect("trace"),
                );
                return response;
            }
            ready.await;
        }
    }
}
