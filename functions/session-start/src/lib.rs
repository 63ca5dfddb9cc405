//! `POST /api/v1/metrics/session/start`: starts a session for the caller; `data.id` is the
//! session id (the client's, when it sends one).

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::domain::identified::Identify;
use shared::domain::sessions::SessionStart;

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "POST /api/v1/metrics/session/start";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::CREATED, async |caller, body| {
            let start = SessionStart::from_json(&body)?.identified();
            let stored = app.store.start_session(&caller, &start).await?;
            Ok(stored.data())
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::domain::sessions::SessionStatus;
    use shared::fakes::{a_working_service, error_fields, fixture, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/session-start.json");

    #[tokio::test]
    async fn a_session_starts_active_with_the_clients_id() {
        let given = a_working_service();
        let (status, body) = parts(handle(&given.app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["id"], "0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e");
        let sessions = given.store.sessions(&OrgId::parse("demo").unwrap());
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].status, SessionStatus::Active);
        assert_eq!(sessions[0].context["editor"], "claude-code");
    }

    #[tokio::test]
    async fn starting_twice_with_one_id_keeps_one_session() {
        let given = a_working_service();
        let (_, first) = parts(handle(&given.app, fixture(EVENT)).await.unwrap());
        let (status, second) = parts(handle(&given.app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 201);
        assert_eq!(first["data"]["id"], second["data"]["id"]);
        assert_eq!(given.store.sessions(&OrgId::parse("demo").unwrap()).len(), 1);
    }

    #[tokio::test]
    async fn an_empty_body_gets_a_server_id() {
        let given = a_working_service();
        let (status, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &json!({})))
                .await
                .unwrap(),
        );
        assert_eq!(status, 201);
        assert!(body["data"]["id"].as_str().is_some_and(|id| id.len() == 36));
        let (status, body) = parts(
            handle(
                &given.app,
                request(EVENT, "acme", "alice", &json!({"status": "completed"})),
            )
            .await
            .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["status"]);
    }
}
