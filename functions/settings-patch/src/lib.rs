//! `PATCH /api/v1/organization/settings` (admins): merges the body into the organization's
//! overrides (RFC 7386 merge patch: `null` puts a field back to the stage's default). Checked
//! whole: a 400 names every field out of range or unknown. Functions see the change within
//! `SETTINGS_CACHE_MS`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::app::settings::{SettingsAdmin, Write};
use shared::http::api::{no_parameters, query_parameters};

/// What this function builds once per container: the pipeline and the settings store.
pub type State = SettingsAdmin;

pub const ROUTE: &str = "PATCH /api/v1/organization/settings";

pub async fn handle(state: &SettingsAdmin, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .api
        .handle_json(&req, ROUTE, StatusCode::OK, async |caller, body| {
            no_parameters(&query_parameters(&req))?;
            state.write(&caller, &body, Write::Merge).await
        })
        .await)
}

#[cfg(test)]
mod tests {
    use lambda_http::RequestExt;
    use serde_json::{Value, json};
    use shared::domain::ids::OrgId;
    use shared::fakes::{a_settings_admin, error_fields, parts, token_as, with_bearer};
    use shared::ports::settings::SettingsStore;

    use super::*;

    const EVENT: &str = include_str!("../../../events/settings-patch.json");

    async fn patch(state: &SettingsAdmin, role: &str, body: &Value) -> (u16, Value) {
        parts(
            handle(state, with_bearer(EVENT, &token_as("acme", "lead", role), body))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn an_admins_patch_merges_and_null_restores_the_default() {
        let (state, stored) = a_settings_admin();
        let (status, body) = patch(&state, "admin", &json!({"data_retention": {"hook_events_days": 7}})).await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = patch(&state, "admin", &json!({"performance": {"concurrent_requests": 2}})).await;
        assert_eq!(
            body["data"]["settings"]["data_retention"]["hook_events_days"], 7,
            "kept"
        );
        assert_eq!(body["data"]["settings"]["performance"]["concurrent_requests"], 2);
        let (_, body) = patch(&state, "admin", &json!({"data_retention": {"hook_events_days": null}})).await;
        assert_eq!(
            body["data"]["settings"]["data_retention"]["hook_events_days"], 90,
            "default again"
        );
        let acme = OrgId::parse("acme").unwrap();
        let kept = stored.get(&acme).await.unwrap().unwrap();
        assert_eq!(kept.version, 3);
        assert_eq!(
            kept.overrides,
            json!({"data_retention": {}, "performance": {"concurrent_requests": 2}})
        );
    }

    #[tokio::test]
    async fn a_parameter_the_route_does_not_take_is_refused_and_nothing_is_stored() {
        // GIVEN an admin who believes `dry_run` is honoured
        let (state, stored) = a_settings_admin();
        let query = lambda_http::aws_lambda_events::query_map::QueryMap::from(std::collections::HashMap::from([(
            "dry_run".to_owned(),
            "true".to_owned(),
        )]));
        let body = json!({"otlp": {"enabled": false}});
        let req = with_bearer(EVENT, &token_as("acme", "lead", "admin"), &body).with_query_string_parameters(query);
        // WHEN the patch is sent with it THEN it is a 400 naming it, and nothing is stored
        let (status, answer) = parts(handle(&state, req).await.unwrap());
        assert_eq!(
            (status, error_fields(&answer)),
            (400, vec!["dry_run".to_owned()]),
            "{answer}"
        );
        assert!(stored.get(&OrgId::parse("acme").unwrap()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_member_cannot_change_settings_and_nothing_is_stored() {
        let (state, stored) = a_settings_admin();
        let (status, _) = patch(&state, "member", &json!({"otlp": {"enabled": false}})).await;
        assert_eq!(status, 403);
        assert!(stored.get(&OrgId::parse("acme").unwrap()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn out_of_range_fields_are_each_named_and_nothing_is_stored() {
        let (state, stored) = a_settings_admin();
        // Malformed fields, and one past the stage's ceiling in a section that is otherwise valid.
        let (status, body) = patch(
            &state,
            "admin",
            &json!({"data_retention": {"user_sessions_days": 0}, "performance": {"processing_timeout_ms": 10},
                    "theme": "dark", "rate_limiting": {"max_requests": 1_000_000}}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let mut fields = error_fields(&body);
        fields.sort();
        assert_eq!(
            fields,
            [
                "data_retention.user_sessions_days",
                "performance.processing_timeout_ms",
                "rate_limiting.max_requests",
                "theme"
            ]
        );
        assert!(stored.get(&OrgId::parse("acme").unwrap()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn setting_a_webhook_makes_its_signing_secret_once() {
        let (state, _) = a_settings_admin();
        let url = json!({"alerts": {"webhook_url": "https://hooks.example.com/a"}});
        let (_, first) = patch(&state, "admin", &url).await;
        let secret = first["data"]["webhook_secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
        let (_, second) = patch(&state, "admin", &json!({"alerts": {"high_error_rate_threshold": 1}})).await;
        assert_eq!(second["data"]["webhook_secret"], secret.as_str(), "kept, not rotated");
    }
}
