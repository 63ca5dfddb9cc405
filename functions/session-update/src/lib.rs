//! `PUT /api/v1/metrics/session/{id}`: records activity on one of the caller's active sessions
//! (running command total, agents used, context); another user's session is 403, an unknown one
//! 404, a session that is no longer active 409.

use http::StatusCode;
use lambda_http::{Body, Error, Request, RequestExt, Response};
use shared::App;
use shared::domain::sessions::{SessionAction, SessionActivity, session_id};

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "PUT /api/v1/metrics/session/{id}";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    let raw_id = req
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .map(str::to_owned);
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::OK, async |caller, body| {
            let id = session_id(raw_id.as_deref())?;
            let activity = SessionActivity::from_json(&body)?;
            let change = app.store.update_session(&caller, id, &activity).await?;
            shared::http::response::session_change_data(change, SessionAction::Update)
        })
        .await)
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::fakes::{Given, a_working_service, error_fields, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/session-update.json");
    const START: &str = include_str!("../../../events/session-start.json");
    const SESSION: &str = "0192f0e4-7b1a-7cc3-8d2e-1f2a3b4c5d6e";

    async fn started(given: &Given) {
        let start = request(START, "acme", "alice", &json!({"id": SESSION}));
        session_start::handle(&given.app, start).await.unwrap();
    }

    async fn update(given: &Given, user: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        parts(handle(&given.app, request(EVENT, "acme", user, &body)).await.unwrap())
    }

    #[tokio::test]
    async fn activity_is_merged_into_the_session() {
        let given = a_working_service();
        started(&given).await;
        let (status, body) = update(
            &given,
            "alice",
            json!({"commands_executed": 5, "agents_used": ["a", "b"], "context": {"x": 1}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = update(
            &given,
            "alice",
            json!({"commands_executed": 3, "agents_used": ["b", "c"], "context": {"y": 2}}),
        )
        .await;
        assert_eq!(
            body["data"]["commands_executed"], 5,
            "the running total never goes down"
        );
        assert_eq!(body["data"]["agents_used"], json!(["a", "b", "c"]));
        assert_eq!(body["data"]["context"], json!({"x": 1, "y": 2}));
        assert_eq!(body["data"]["status"], "active");
    }

    #[tokio::test]
    async fn another_users_session_is_forbidden_and_unchanged() {
        let given = a_working_service();
        started(&given).await;
        let (status, _) = update(&given, "mallory", json!({"commands_executed": 99})).await;
        assert_eq!(status, 403);
        let sessions = given.store.sessions(&OrgId::parse("acme").unwrap());
        assert_eq!(sessions[0].commands_executed, 0);
    }

    #[tokio::test]
    async fn an_unknown_session_is_not_found() {
        let given = a_working_service();
        let (status, body) = update(&given, "alice", json!({})).await;
        assert_eq!(status, 404);
        assert_eq!(body["message"], "Not found: session");
    }

    #[tokio::test]
    async fn a_path_id_that_is_not_a_uuid_is_a_validation_error() {
        let given = a_working_service();
        let req = request(EVENT, "acme", "alice", &json!({})).with_path_parameters(QueryMap::from(
            std::collections::HashMap::from([("id".to_owned(), "abc".to_owned())]),
        ));
        let (status, body) = parts(handle(&given.app, req).await.unwrap());
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["id"]);
    }
}
