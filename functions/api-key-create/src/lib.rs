//! `POST /api/v1/keys` (admins): creates an API key for a user of the caller's organization,
//! with a role (member by default), an optional name and an optional expiry, and answers the key
//! itself — the only time it is shown; only its hash is kept. See `shared::app::keys`.

use http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use shared::app::keys::{KeyAdmin, admin_only, created, issue};
use shared::domain::api_keys::request::NewKeyRequest;
use shared::http::api::{no_parameters, query_parameters};

/// What this function builds once per container: the pipeline and the key store.
pub type State = KeyAdmin;

pub const ROUTE: &str = "POST /api/v1/keys";

pub async fn handle(state: &KeyAdmin, req: Request) -> Result<Response<Body>, Error> {
    Ok(state
        .api
        .handle_json(&req, ROUTE, StatusCode::CREATED, async |caller, body| {
            admin_only(&caller)?;
            no_parameters(&query_parameters(&req))?;
            let now = chrono::Utc::now();
            let request = NewKeyRequest::from_json(&body, now)?;
            let (key, info) = issue(state.keys.as_ref(), &caller, &request, now).await?;
            Ok(created(&key, &info, now))
        })
        .await)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::fakes::{a_key_admin, error_fields, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/api-key-create.json");

    async fn create(state: &KeyAdmin, bearer: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        parts(handle(state, with_bearer(EVENT, bearer, &body)).await.unwrap())
    }

    #[tokio::test]
    async fn an_admin_gets_a_key_that_then_authenticates_as_its_user() {
        let (state, keys) = a_key_admin();
        let admin = token_as("acme", "root", "admin");
        let (status, body) = create(&state, &admin, json!({"user_id": "alice", "role": "admin"})).await;
        assert_eq!(status, 201, "{body}");
        let key = body["data"]["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("mcsk_"));
        assert_eq!(body["data"]["user_id"], "alice");
        assert_eq!(body["data"]["created_by"], "root");

        // The new admin key manages keys in its turn, as alice.
        let (status, body) = create(&state, &key, json!({"user_id": "bob"})).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["created_by"], "alice");
        assert_eq!(body["data"]["role"], "member");
        assert_eq!(keys.reads(), 1);
    }

    #[tokio::test]
    async fn members_are_forbidden_and_bad_fields_named() {
        let (state, _) = a_key_admin();
        let member = token_as("acme", "alice", "member");
        let (status, body) = create(&state, &member, json!({"user_id": "alice"})).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().starts_with("Forbidden: "));

        let admin = token_as("acme", "root", "admin");
        let body = json!({"user_id": "", "role": "owner", "expires_at": "2001-01-01T00:00:00Z", "org_id": "x"});
        let (status, body) = create(&state, &admin, body).await;
        assert_eq!(status, 400);
        assert_eq!(error_fields(&body), ["org_id", "user_id", "role", "expires_at"]);
    }
}
