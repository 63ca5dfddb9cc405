//! A minimal Lambda Runtime API, enough to run a function's release binary as Lambda would:
//! hand it events one at a time, collect its responses, and note when it first asks for work.
//! It also serves the Extensions API as Lambda does for an internal extension (an `INVOKE`
//! event per invocation, and the next event only once the extension is done with the last),
//! and answers `POST /@connections/{id}` as API Gateway's management API, counting the pushes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

/// Responses kept for [`RuntimeApi::answers`] (a benchmark posts thousands).
const MAX_KEPT_ANSWERS: usize = 100;

#[derive(Default)]
struct State {
    events: VecDeque<(String, String)>,
    first_poll: Option<Instant>,
    responses: usize,
    answers: Vec<String>,
    errors: Vec<String>,
    extension_registered: bool,
    /// Invocations dispatched to the runtime, whose INVOKE the extension has not yet received.
    extension_events: VecDeque<String>,
    /// Invocations the extension has finished (each `event/next` after the first).
    extension_done: usize,
    extension_polls: usize,
    dispatched: usize,
    pushes: usize,
    /// When each invocation was handed to the runtime, was answered, and (with an extension)
    /// was finished by the extension, in order: the runtime takes one event at a time.
    dispatched_at: Vec<Instant>,
    answered_at: Vec<Instant>,
    extension_done_at: Vec<Instant>,
}

#[derive(Clone, Default)]
pub struct RuntimeApi {
    state: Arc<Mutex<State>>,
    event_ready: Arc<Notify>,
    answered: Arc<Notify>,
    extension_event: Arc<Notify>,
    extension_finished: Arc<Notify>,
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

    /// The first responses, as the function posted them.
    pub fn answers(&self) -> Vec<String> {
        self.lock().answers.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// Invocations an internal extension finished (0 without one).
    pub fn extension_done(&self) -> usize {
        self.lock().extension_done
    }

    pub fn pushes(&self) -> usize {
        self.lock().pushes
    }

    /// Each answered invocation's billed time as Lambda counts it: from the event handed out to
    /// the answer, or to the extension finishing with it when that is later (Lambda bills an
    /// extension's post-invocation work too). Not rounded.
    pub fn billed_durations(&self) -> Vec<Duration> {
        let state = self.lock();
        let extension = state.extension_registered;
        (0..state.answered_at.len().min(state.dispatched_at.len()))
            .map(|i| {
                let mut end = state.answered_at[i];
                if extension && let Some(done) = state.extension_done_at.get(i) {
                    end = end.max(*done);
                }
                end - state.dispatched_at[i]
            })
            .collect()
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
        if path.ends_with("/extension/register") {
            self.lock().extension_registered = true;
            let mut response = hyper::Response::new(Full::new(Bytes::from(
                r#"{"functionName":"bench","functionVersion":"$LATEST","handler":"bootstrap"}"#,
            )));
            response
                .headers_mut()
                .insert("lambda-extension-identifier", "bench-extension".parse().expect("id"));
            return response;
        }
        if path.ends_with("/extension/event/next") {
            return self.extension_next().await;
        }
        if path.contains("/@connections/") {
            self.lock().pushes += 1;
            return hyper::Response::new(Full::new(Bytes::new()));
        }
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        {
            let mut state = self.lock();
            if path.contains("/invocation/") && (path.ends_with("/response") || path.ends_with("/error")) {
                state.answered_at.push(Instant::now());
            }
            if path.ends_with("/response") {
                state.responses += 1;
                if state.answers.len() < MAX_KEPT_ANSWERS {
                    state.answers.push(String::from_utf8_lossy(&body).into_owned());
                }
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
        // Like Lambda: the next event only once the extension is done with the last one.
        loop {
            let finished = self.extension_finished.notified();
            {
                let state = self.lock();
                if !state.extension_registered || state.extension_done >= state.dispatched {
                    break;
                }
            }
            finished.await;
        }
        loop {
            let ready = self.event_ready.notified();
            let event = {
                let mut state = self.lock();
                state.first_poll.get_or_insert_with(Instant::now);
                let event = state.events.pop_front();
                if let Some((id, _)) = &event {
                    state.dispatched += 1;
                    state.dispatched_at.push(Instant::now());
                    if state.extension_registered {
                        state.extension_events.push_back(id.clone());
                    }
                }
                event
            };
            if let Some((id, body)) = event {
                self.extension_event.notify_one();
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

    async fn extension_next(&self) -> hyper::Response<Full<Bytes>> {
        {
            let mut state = self.lock();
            if state.extension_polls > 0 {
                state.extension_done += 1;
                state.extension_done_at.push(Instant::now());
            }
            state.extension_polls += 1;
        }
        self.extension_finished.notify_waiters();
        loop {
            let ready = self.extension_event.notified();
            if let Some(id) = self.lock().extension_events.pop_front() {
                let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
                let event = serde_json::json!({
                    "eventType": "INVOKE",
                    "deadlineMs": deadline,
                    "requestId": id,
                    "invokedFunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:bench",
                    "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-00000000-000000000000000000000000"},
                });
                let mut response = hyper::Response::new(Full::new(Bytes::from(event.to_string())));
                response
                    .headers_mut()
                    .insert("lambda-extension-event-identifier", id.parse().expect("id"));
                return response;
            }
            ready.await;
        }
    }
}
