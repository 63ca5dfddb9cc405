//! `POST /api/v1/metrics/session/end`: completes the session named by `session_id`; the server
//! sets `session_end` and computes `total_duration_ms`. Ending twice is 409.

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::domain::sessions::{SessionAction, SessionEnd};

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "POST /api/v1/metrics/session/end";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::OK, async |caller, body| {
            let end = SessionEnd::from_json(&body)?;
            let change = app.store.end_session(&caller, &end).await?;
            shared::http::response::session_change_data(change, SessionAction::End)
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::fakes::{Given, a_working_service, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/session-end.json");
    const START: &str = include_str!("../../../events/session-start.json");
    const SESSION: &str = "0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e";

    async fn end(given: &Given, user: &str) -> (u16, serde_json::Value) {
        let body = json!({"session_id": SESSION, "productivity_score": 82.5});
        parts(handle(&given.app, request(EVENT, "acme", user, &body)).await.unwrap())
    }

    #[tokio::test]
    async fn ending_completes_the_session_once() {
        let given = a_working_service();
        session_start::handle(&given.app, request(START, "acme", "alice", &json!({"id": SESSION})))
            .await
            .unwrap();
        let (status, body) = end(&given, "alice").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["id"], SESSION);
        assert_eq!(body["data"]["status"], "completed");
        assert_eq!(body["data"]["productivity_score"], 82.5);
        // The duration is the server's: from the start to the end it set.
        let at = |field: &str| chrono::DateTime::parse_from_rfc3339(body["data"][field].as_str().unwrap()).unwrap();
        let computed = (at("session_end") - at("session_start")).num_milliseconds();
        let reported = body["data"]["total_duration_ms"].as_i64().unwrap();
        assert!(
            (reported - computed).abs() <= 1,
            "{reported} ms reported, {computed} ms between start and end"
        );
        let (status, body) = end(&given, "alice").await;
        assert_eq!(status, 409);
        assert!(body["message"].as_str().unwrap().contains("already ended"));
    }

    #[tokio::test]
    async fn only_the_owner_ends_a_session() {
        let given = a_working_service();
        session_start::handle(&given.app, request(START, "acme", "alice", &json!({"id": SESSION})))
            .await
            .unwrap();
        assert_eq!(end(&given, "bob").await.0, 403);
        assert_eq!(end(&given, "alice").await.0, 200);
    }
}
