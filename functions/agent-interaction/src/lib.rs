//! `POST /api/v1/metrics/agent-interaction`: validates one agent interaction (with its token
//! counts) and stores it in the caller's organization.

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::App;
use shared::domain::identified::Identify;
use shared::domain::metrics::AgentInteraction;

/// What this function builds once per container: it writes metrics, so it publishes live
/// updates.
pub type State = shared::App;

pub const ROUTE: &str = "POST /api/v1/metrics/agent-interaction";

pub async fn handle(app: &App, req: Request) -> Result<Response<Body>, Error> {
    Ok(app
        .api
        .handle_json(&req, ROUTE, StatusCode::CREATED, async |caller, body| {
            let metric = AgentInteraction::from_json(&body, "")?.identified();
            let stored = app.store.insert_agent_interaction(&caller, &metric).await?;
            Ok(stored.data())
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::domain::metrics::InteractionType;
    use shared::fakes::{a_working_service, error_fields, fixture, parts, request};

    use super::*;

    const EVENT: &str = include_str!("../../../events/agent-interaction.json");

    #[tokio::test]
    async fn the_specification_example_is_stored() {
        let given = a_working_service();
        let (status, body) = parts(handle(&given.app, fixture(EVENT)).await.unwrap());
        assert_eq!(status, 201, "{body}");
        let stored = given.store.agent_interactions(&OrgId::parse("demo").unwrap());
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].agent_name, "frontend-developer");
        assert_eq!(stored[0].interaction_type, InteractionType::ToolCall);
        assert_eq!((stored[0].input_tokens, stored[0].output_tokens), (450, 1200));
        assert_eq!(body["data"]["id"], stored[0].id.unwrap().to_string());
    }

    #[tokio::test]
    async fn token_counts_must_be_non_negative_integers() {
        let given = a_working_service();
        let body = json!({
            "agent_name": "a", "interaction_type": "delegation", "input_tokens": -1,
            "output_tokens": 1.5, "processing_time_ms": 1, "success": "yes"
        });
        let (status, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &body))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["input_tokens", "output_tokens", "success"]);
    }

    #[tokio::test]
    async fn every_required_field_is_named() {
        let given = a_working_service();
        let (status, body) = parts(
            handle(&given.app, request(EVENT, "acme", "alice", &json!({})))
                .await
                .unwrap(),
        );
        assert_eq!(status, 400);
        assert_eq!(
            error_fields(&body),
            [
                "agent_name",
                "interaction_type",
                "input_tokens",
                "output_tokens",
                "processing_time_ms",
                "success"
            ]
        );
    }
}
