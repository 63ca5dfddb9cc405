//! `GET /api/v1/organization/settings` (any member): the caller's organization's effective
//! settings (the stage's defaults with its overrides). Admins also see what was overridden and
//! the alert webhook's signing secret; members see only the webhook's origin.

use lambda_http::{Body, Error, Request, Response};
use shared::app::settings::SettingsAdmin;
use shared::http::api::no_parameters;

/// What this function builds once per container: the pipeline and the settings store.
pub type State = SettingsAdmin;

pub const ROUTE: &str = "GET /api/v1/organization/settings";

pub async fn handle(state: &SettingsAdmin, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .api
        .handle_query(&req, ROUTE, async |caller, params| {
            no_parameters(&params)?;
            state.read(&caller).await
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::fakes::{a_settings_admin, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/settings-get.json");

    #[tokio::test]
    async fn members_read_the_effective_settings_with_only_the_webhooks_origin() {
        // GIVEN acme set a webhook and a shorter hook-event retention
        let (state, stored) = a_settings_admin();
        let acme = OrgId::parse("acme").unwrap();
        stored.set(
            &acme,
            json!({"data_retention": {"hook_events_days": 7},
                                 "alerts": {"webhook_url": "https://hooks.example.com/services/secret-path"}}),
        );
        // WHEN a member reads them
        let (status, body) = parts(
            handle(
                &state,
                with_bearer(EVENT, &token_as("acme", "bob", "member"), &json!(null)),
            )
            .await
            .unwrap(),
        );
        // THEN the effective settings, with defaults filled in and the URL reduced to its origin
        assert_eq!(status, 200, "{body}");
        let settings = &body["data"]["settings"];
        assert_eq!(settings["data_retention"]["hook_events_days"], 7);
        assert_eq!(settings["data_retention"]["command_executions_days"], 90);
        assert_eq!(settings["alerts"]["webhook_url"], "https://hooks.example.com");
        assert!(body["data"].get("webhook_secret").is_none() && body["data"].get("overrides").is_none());
    }

    #[tokio::test]
    async fn admins_see_the_overrides_and_another_organization_sees_only_its_own() {
        let (state, stored) = a_settings_admin();
        stored.set(&OrgId::parse("acme").unwrap(), json!({"otlp": {"enabled": false}}));
        let (_, admin) = parts(
            handle(
                &state,
                with_bearer(EVENT, &token_as("acme", "root", "admin"), &json!(null)),
            )
            .await
            .unwrap(),
        );
        assert_eq!(admin["data"]["overrides"], json!({"otlp": {"enabled": false}}));
        assert_eq!(admin["data"]["settings"]["otlp"]["enabled"], false);
        let (_, other) = parts(
            handle(
                &state,
                with_bearer(EVENT, &token_as("globex", "root", "admin"), &json!(null)),
            )
            .await
            .unwrap(),
        );
        assert_eq!(other["data"]["settings"]["otlp"]["enabled"], true);
        assert_eq!(other["data"]["overrides"], json!({}));
    }
}
