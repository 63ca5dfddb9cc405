//! `PUT /api/v1/organization/settings` (admins): replaces the organization's overrides with the
//! body (a partial settings document; whatever it leaves out is the stage's default). Checked
//! whole: a 400 names every field out of range or unknown. Functions see the change within
//! `SETTINGS_CACHE_MS`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::app::settings::{SettingsAdmin, Write};
use shared::http::api::{no_parameters, query_parameters};

/// What this function builds once per container: the pipeline and the settings store.
pub type State = SettingsAdmin;

pub const ROUTE: &str = "PUT /api/v1/organization/settings";

pub async fn handle(state: &SettingsAdmin, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .api
        .handle_json(&req, ROUTE, StatusCode::OK, async |caller, body| {
            no_parameters(&query_parameters(&req))?;
            state.write(&caller, &body, Write::Replace).await
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::domain::ids::OrgId;
    use shared::fakes::{a_settings_admin, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/settings-put.json");

    #[tokio::test]
    async fn a_put_replaces_the_overrides_whole() {
        let (state, stored) = a_settings_admin();
        stored.set(&OrgId::parse("acme").unwrap(), json!({"otlp": {"enabled": false}}));
        let body = json!({"data_retention": {"otlp_days": 30}});
        let (status, answer) = parts(
            handle(&state, with_bearer(EVENT, &token_as("acme", "lead", "admin"), &body))
                .await
                .unwrap(),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["overrides"], body);
        assert_eq!(
            answer["data"]["settings"]["otlp"]["enabled"], true,
            "what the body left out is the default"
        );
        assert_eq!(answer["data"]["settings"]["data_retention"]["otlp_days"], 30);
    }

    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_a_400() {
        let (state, _) = a_settings_admin();
        let (status, _) = parts(
            handle(
                &state,
                with_bearer(EVENT, &token_as("acme", "lead", "admin"), &json!([1])),
            )
            .await
            .unwrap(),
        );
        assert_eq!(status, 400);
    }
}
