//! `DELETE /api/v1/keys/{id}` (admins): revokes one of the caller's organization's API keys
//! and answers its description; an unknown id and another organization's key are one answer,
//! 404. Containers that cached the key refuse it within `API_KEY_CACHE_MS` (at most 60 s).

use lambda_http::{Body, Error, Request, RequestExt, Response};
use shared::app::keys::{KeyAdmin, admin_only, revoke};
use shared::http::api::no_parameters;

/// What this function builds once per container: the pipeline and the key store.
pub type State = KeyAdmin;

pub const ROUTE: &str = "DELETE /api/v1/keys/{id}";

pub async fn handle(state: &KeyAdmin, req: Request) -> Result<Response<Body>, Error> {
    let raw_id = req
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .map(str::to_owned);
    Ok(state
        .api
        .handle_query(&req, ROUTE, async |caller, params| {
            admin_only(&caller)?;
            no_parameters(&params)?;
            revoke(state.keys.as_ref(), &caller, raw_id.as_deref(), chrono::Utc::now()).await
        })
        .await)
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use serde_json::json;
    use shared::domain::api_keys::request::NewKeyRequest;
    use shared::domain::ids::{Caller, OrgId, Role, UserId};
    use shared::fakes::{a_key_admin, parts, token_as, with_bearer};

    use super::*;

    const EVENT: &str = include_str!("../../../events/api-key-revoke.json");

    async fn revoked(state: &KeyAdmin, bearer: &str, id: &str) -> (u16, serde_json::Value) {
        let params = QueryMap::from(std::collections::HashMap::from([("id".to_owned(), id.to_owned())]));
        let req = with_bearer(EVENT, bearer, &json!(null)).with_path_parameters(params);
        parts(handle(state, req).await.unwrap())
    }

    #[tokio::test]
    async fn a_revoked_key_is_refused_and_other_organizations_get_404() {
        let (state, keys) = a_key_admin();
        let root = Caller {
            org: OrgId::parse("acme").unwrap(),
            user: UserId::parse("root").unwrap(),
            role: Role::Admin,
        };
        let now = chrono::Utc::now();
        let request = NewKeyRequest::from_json(&json!({"user_id": "alice"}), now).unwrap();
        let (key, _) = shared::app::keys::issue(keys.as_ref(), &root, &request, now)
            .await
            .unwrap();
        let id = key.id.as_str();

        assert_eq!(revoked(&state, key.text(), id).await.0, 403, "a member key");
        let (status, other) = revoked(&state, &token_as("other", "root", "admin"), id).await;
        assert_eq!(status, 404);
        let (_, unknown) = revoked(&state, &token_as("acme", "root", "admin"), &"0".repeat(32)).await;
        assert_eq!(other["message"], unknown["message"], "one answer for both");
        assert_eq!(
            revoked(&state, &token_as("acme", "root", "admin"), "not-an-id").await.0,
            400
        );

        let (status, body) = revoked(&state, &token_as("acme", "root", "admin"), id).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["status"], "revoked");
        // The fakes' authentication caches nothing: refused at once.
        assert_eq!(revoked(&state, key.text(), id).await.0, 401);
    }
}
